//! Decoding of TUICallKit callbacks (SPEC §2) into [`Event`]s: telling the
//! two callback families apart, type-checking the known fields, normalising
//! case and units, and keeping unknown fields. Pure: the same query and body
//! always give the same events, which is what lets `replay` re-read the
//! journal. Authentication and size checks live in `ingest::auth`/`routes`.

use serde_json::{Map, Number, Value};

use compact_str::ToCompactString;

use crate::event::{Event, Text};

/// The query string of a callback, as name → value (the last value wins).
pub type Query = Map<String, Value>;

/// Which of the SPEC §2 families a callback belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Legacy call event / call status callbacks (`command=caller_start_call`).
    A,
    /// Current IM-style call callbacks (`CallbackCommand=Call.CallbackAfter…`).
    B,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::A => "call_event",
            Family::B => "call_callback",
        }
    }
}

/// Family A call-event commands (SPEC §2 A).
pub const FAMILY_A_COMMANDS: &[&str] = &[
    "caller_start_call",
    "caller_call_accepted",
    "caller_call_missed",
    "caller_call_rejected",
    "caller_call_busy",
    "caller_cancel_call",
    "caller_call_failed",
    "caller_call_end",
    "caller_call_interrupted",
    "callee_receive_call",
    "callee_accept_call",
    "callee_not_answer_call",
    "callee_reject_call",
    "callee_ignore_call",
    "callee_call_canceled",
    "callee_call_end",
    "callee_call_interrupted",
    "invite_user",
    "join_in_group_call",
];

/// Family A call-status commands: the command is the call's result.
pub const CALL_STATUS_COMMANDS: &[&str] = &[
    "cancel",
    "reject",
    "not_answer",
    "normal_end",
    "call_busy",
    "interrupt",
];

/// Family B commands (SPEC §2 B).
pub const START_CALL: &str = "Call.CallbackAfterStartCall";
pub const END_CALL: &str = "Call.CallbackAfterEndCall";
pub const MEMBER_CHANGED: &str = "Call.CallbackAfterMemberChanged";
pub const FAMILY_B_COMMANDS: &[&str] = &[START_CALL, END_CALL, MEMBER_CHANGED];

/// Why a callback could not be decoded. Always names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body must be a JSON object")]
    NotObject,
    #[error("missing command: neither `command` nor `CallbackCommand` given")]
    NoCommand,
    #[error("field {field}: expected {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
    },
    #[error("field {0}: required")]
    Missing(String),
    #[error("body nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// Deepest nesting of arrays and objects accepted in a body. Real
/// callbacks nest three or four levels; the journal line wraps the body in
/// one more, and must stay well inside serde_json's read limit (128) or
/// the callback could not be read back after a restart.
pub const MAX_DEPTH: usize = 64;

/// Nesting depth of a JSON value (a scalar is 0).
pub(crate) fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

impl DecodeError {
    fn wrong(field: impl Into<String>, expected: &'static str) -> Self {
        DecodeError::WrongType {
            field: field.into(),
            expected,
        }
    }
}

/// A decoded callback: its family, canonical command and events.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub family: Family,
    /// Lowercase for family A, Tencent's spelling for family B.
    pub command: String,
    /// Whether the command is one SPEC §2 lists (others are still accepted).
    pub known_command: bool,
    /// The query's SDKAppID, 0 if it has none (only possible off-line).
    pub sdkappid: u64,
    pub events: Vec<Event>,
}

/// One member of a JSON object, as the field readers see it.
#[derive(Debug, Clone, Copy)]
pub enum Member<'v> {
    Null,
    Str(&'v str),
    Num(&'v Number),
    Bool(bool),
    /// An array or object.
    Other(&'v Value),
}

impl<'v> From<&'v Value> for Member<'v> {
    fn from(v: &'v Value) -> Member<'v> {
        match v {
            Value::Null => Member::Null,
            Value::String(s) => Member::Str(s),
            Value::Number(n) => Member::Num(n),
            Value::Bool(b) => Member::Bool(*b),
            other => Member::Other(other),
        }
    }
}

impl Member<'_> {
    /// The value as text: strings as they are, anything else as JSON.
    pub fn to_text(self) -> Option<Text> {
        match self {
            Member::Null => None,
            Member::Str(s) => Some(s.into()),
            Member::Num(n) => Some(n.to_compact_string()),
            Member::Bool(b) => Some(b.to_compact_string()),
            Member::Other(v) => Some(v.to_compact_string()),
        }
    }
}

/// A JSON object the decoders read: a parsed [`Map`], or the members of
/// a journal line borrowed in one pass (`ingest::line`), so both decode
/// through the same field readers and cannot disagree.
pub trait Object {
    /// The member named `key` (the last one, if the name repeats).
    fn member(&self, key: &str) -> Option<Member<'_>>;
    /// Every member, in order.
    fn members(&self) -> impl Iterator<Item = (&str, Member<'_>)>;
    /// The members not named in `known`, as they would parse into a
    /// [`Map`] (a repeated name keeps its first place and last value).
    fn extra(&self, known: &[&str]) -> Map<String, Value>;
}

impl Object for Map<String, Value> {
    fn member(&self, key: &str) -> Option<Member<'_>> {
        self.get(key).map(Member::from)
    }

    fn members(&self) -> impl Iterator<Item = (&str, Member<'_>)> {
        self.iter().map(|(k, v)| (k.as_str(), Member::from(v)))
    }

    fn extra(&self, known: &[&str]) -> Map<String, Value> {
        self.iter()
            .filter(|(k, _)| !known.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Looks up a query parameter under any of its documented spellings.
pub fn query_param<'q>(query: &'q impl Object, names: &[&str]) -> Option<Member<'q>> {
    names.iter().find_map(|n| query.member(n)).or_else(|| {
        // Tencent's docs are inconsistent about case; accept any.
        query
            .members()
            .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
            .map(|(_, v)| v)
    })
}

/// A query parameter as text (see [`Member::to_text`]).
pub fn query_text(query: &impl Object, names: &[&str]) -> Option<Text> {
    query_param(query, names)?.to_text()
}

/// The SDKAppID of a callback, if present and numeric.
pub fn sdkappid(query: &impl Object) -> Result<u64, String> {
    match query_param(query, &["sdkappid", "SdkAppid", "SDKAppID"]) {
        None => Err("missing sdkappid".into()),
        Some(Member::Num(n)) => n
            .as_u64()
            .ok_or_else(|| format!("sdkappid {n} is not valid")),
        Some(Member::Str(s)) => s
            .trim()
            .parse()
            .map_err(|_| format!("sdkappid {s:?} is not a number")),
        Some(other) => Err(format!(
            "sdkappid {} is not a number",
            other.to_text().unwrap_or_else(|| "null".into())
        )),
    }
}

/// Which family a callback belongs to and its command, from query and body.
pub fn family_and_command(
    query: &impl Object,
    body: &impl Object,
) -> Result<(Family, String), DecodeError> {
    let b_cmd =
        query_text(query, &["CallbackCommand"]).or_else(|| match body.member("CallbackCommand") {
            Some(Member::Str(s)) => Some(s.into()),
            _ => None,
        });
    if let Some(cmd) = b_cmd {
        let canonical = FAMILY_B_COMMANDS
            .iter()
            .find(|c| c.eq_ignore_ascii_case(&cmd))
            .map_or_else(|| cmd.to_string(), |c| c.to_string());
        return Ok((Family::B, canonical));
    }
    match query_text(query, &["command"]) {
        Some(cmd) => Ok((Family::A, cmd.trim().to_ascii_lowercase())),
        None => Err(DecodeError::NoCommand),
    }
}

/// Decodes one callback (query + raw body) into events.
/// `received_at_ms` stands in for a missing event time.
pub fn decode_bytes(
    query: &Query,
    body: &[u8],
    received_at_ms: i64,
) -> Result<Decoded, DecodeError> {
    // Family A in one pass; the rest (and every error) the general way.
    if let Some(done) = super::line::decode_body(query, body, received_at_ms) {
        return done;
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    if depth(&value) > MAX_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    decode(query, &value, received_at_ms)
}

/// Decodes one callback whose body is already parsed.
pub fn decode(query: &Query, body: &Value, received_at_ms: i64) -> Result<Decoded, DecodeError> {
    let obj = body.as_object().ok_or(DecodeError::NotObject)?;
    let (family, command) = family_and_command(query, obj)?;
    match family {
        Family::A => decode_family_a(query, obj, command, received_at_ms),
        Family::B => {
            let base = base_event(query, &command);
            let sdkappid = base.sdkappid;
            let (known_command, events) = decode_b(obj, base, &command, received_at_ms)?;
            Ok(Decoded {
                family,
                command,
                known_command,
                sdkappid,
                events,
            })
        }
    }
}

/// Decodes a family A callback (whose `command` was already found).
pub fn decode_family_a(
    query: &impl Object,
    body: &impl Object,
    command: String,
    received_at_ms: i64,
) -> Result<Decoded, DecodeError> {
    let base = base_event(query, &command);
    let sdkappid = base.sdkappid;
    let (known_command, events) = decode_a(body, base, &command, received_at_ms)?;
    Ok(Decoded {
        family: Family::A,
        command,
        known_command,
        sdkappid,
        events,
    })
}

/// The fields every event of a callback takes from its query.
fn base_event(query: &impl Object, command: &str) -> Event {
    Event {
        sdkappid: sdkappid(query).unwrap_or(0),
        command: command.into(),
        platform: query_text(query, &["optplatform", "OptPlatform"]),
        client_ip: query_text(query, &["clientip", "ClientIP"]),
        ..Event::default()
    }
}

// ---- field readers: every one names the field it rejects ----

struct Fields<'a, O: ?Sized> {
    obj: &'a O,
    prefix: &'static str,
}

impl<'a, O: Object + ?Sized> Fields<'a, O> {
    fn new(obj: &'a O, prefix: &'static str) -> Self {
        Fields { obj, prefix }
    }

    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn get(&self, key: &str) -> Option<Member<'a>> {
        self.obj.member(key).filter(|v| !matches!(v, Member::Null))
    }

    /// A string; numbers are accepted (Tencent sends accounts as either).
    fn id(&self, key: &str) -> Result<Option<Text>, DecodeError> {
        match self.get(key) {
            None => Ok(None),
            Some(Member::Str(s)) => Ok(Some(s.into())),
            Some(Member::Num(n)) => Ok(Some(n.to_compact_string())),
            Some(_) => Err(DecodeError::wrong(self.name(key), "a string or number")),
        }
    }

    /// A string value, lowercased (SPEC §2: values arrive in either case).
    fn lower(&self, key: &str) -> Result<Option<Text>, DecodeError> {
        match self.get(key) {
            None => Ok(None),
            Some(Member::Str(s)) => {
                let mut t = Text::from(s.trim());
                t.make_ascii_lowercase();
                Ok(Some(t))
            }
            Some(_) => Err(DecodeError::wrong(self.name(key), "a string")),
        }
    }

    /// A string value in snake_case (`NormalEnd` → `normal_end`).
    fn snake(&self, key: &str) -> Result<Option<Text>, DecodeError> {
        match self.get(key) {
            None => Ok(None),
            Some(Member::Str(s)) => Ok(Some(snake_case(s))),
            Some(_) => Err(DecodeError::wrong(self.name(key), "a string")),
        }
    }

    /// An integer; integral floats and numeric strings are accepted.
    fn int(&self, key: &str) -> Result<Option<i64>, DecodeError> {
        let bad = || DecodeError::wrong(self.name(key), "an integer");
        match self.get(key) {
            None => Ok(None),
            Some(Member::Num(n)) => match n.as_i64() {
                Some(i) => Ok(Some(i)),
                None => match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                    _ => Err(bad()),
                },
            },
            Some(Member::Str(s)) if s.trim().is_empty() => Ok(None),
            Some(Member::Str(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// A Unix time in seconds; values in milliseconds are recognised by size.
    fn time(&self, key: &str) -> Result<Option<i64>, DecodeError> {
        Ok(self.int(key)?.map(to_seconds).filter(|t| *t > 0))
    }

    /// Body fields not in `known`, kept for rules as `extra`.
    fn extra(&self, known: &[&str]) -> Map<String, Value> {
        self.obj.extra(known)
    }
}

/// Nested members, which only family B has (and which therefore only
/// parsed maps need).
impl<'a> Fields<'a, Map<String, Value>> {
    fn array(&self, key: &str) -> Result<&'a [Value], DecodeError> {
        match self.get(key) {
            None => Ok(&[]),
            Some(Member::Other(Value::Array(a))) => Ok(a),
            Some(_) => Err(DecodeError::wrong(self.name(key), "an array")),
        }
    }

    fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, DecodeError> {
        match self.get(key) {
            None => Ok(None),
            Some(Member::Other(Value::Object(o))) => Ok(Some(o)),
            Some(_) => Err(DecodeError::wrong(self.name(key), "an object")),
        }
    }
}

/// Milliseconds → seconds for values that can only be milliseconds
/// (anything past the year 33658 in seconds).
fn to_seconds(t: i64) -> i64 {
    if t > 1_000_000_000_000 {
        t / 1000
    } else {
        t
    }
}

/// `NormalEnd` → `normal_end`, `Hang Up` → `hang_up`, `not_answer` stays.
pub fn snake_case(s: &str) -> Text {
    let mut out = Text::with_capacity(s.len() + 4);
    let mut prev_lower = false;
    for c in s.trim().chars() {
        if c == ' ' || c == '-' || c == '_' {
            if !out.ends_with('_') && !out.is_empty() {
                out.push('_');
            }
            prev_lower = false;
        } else if c.is_ascii_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        }
    }
    out
}

/// The known body fields of family A (everything else goes to `extra`).
pub const A_FIELDS: &[&str] = &[
    "UserId",
    "RoomId",
    "TotalNum",
    "MediaType",
    "CallType",
    "CallId",
    "Role",
    "Event",
    "CallResult",
    "EventTime",
    "StartCallTs",
    "AcceptTs",
    "EndTs",
];

fn call_type_a(f: &Fields<'_, impl Object + ?Sized>) -> Result<Option<Text>, DecodeError> {
    match f.get("CallType") {
        // Some SDK versions send 1 (one-to-one) / 2 (group).
        Some(Member::Num(n)) => Ok(match n.as_i64() {
            Some(1) => Some("single".into()),
            Some(2) => Some("group".into()),
            _ => Some(n.to_compact_string()),
        }),
        _ => Ok(f.lower("CallType")?.map(|t| match t.as_str() {
            "singlecall" | "single_call" => "single".into(),
            "multicall" | "multi_call" | "groupcall" => "group".into(),
            _ => t,
        })),
    }
}

fn decode_a(
    obj: &(impl Object + ?Sized),
    mut e: Event,
    command: &str,
    received_at_ms: i64,
) -> Result<(bool, Vec<Event>), DecodeError> {
    let f = Fields::new(obj, "");
    e.user_id = f.id("UserId")?;
    e.room_id = f.id("RoomId")?;
    e.total_num = f.int("TotalNum")?;
    e.media_type = f.lower("MediaType")?;
    e.call_type = call_type_a(&f)?;
    e.call_id = f.id("CallId")?;
    e.role = f.lower("Role")?;
    let body_event = f.snake("Event")?;
    e.call_result = f.snake("CallResult")?.unwrap_or_default();
    e.event_time = f.time("EventTime")?.unwrap_or(received_at_ms / 1000);
    e.start_call_ts = f.time("StartCallTs")?;
    e.accept_ts = f.time("AcceptTs")?;
    e.end_ts = f.time("EndTs")?;
    e.extra = f.extra(A_FIELDS);

    let status = CALL_STATUS_COMMANDS.contains(&command);
    let known = status || FAMILY_A_COMMANDS.contains(&command);
    // The event name: the body's `Event`, else the command without its role
    // prefix (whose role fills in a missing `Role`).
    let (prefix_role, bare) = match command.split_once('_') {
        Some((r @ ("caller" | "callee"), rest)) => (Some(r), rest),
        _ => (None, command),
    };
    if e.role.is_none() {
        e.role = prefix_role.map(Text::from);
    }
    e.event = body_event.unwrap_or_else(|| bare.into());
    if status && e.call_result.is_empty() {
        e.call_result = command.into();
    }
    Ok((known, vec![e]))
}

fn decode_b(
    obj: &Map<String, Value>,
    base: Event,
    command: &str,
    received_at_ms: i64,
) -> Result<(bool, Vec<Event>), DecodeError> {
    let top = Fields::new(obj, "");
    let event_time = top.time("EventTime")?.unwrap_or(received_at_ms / 1000);
    let base = Event { event_time, ..base };
    match command {
        START_CALL => decode_start_call(&top, base).map(|e| (true, e)),
        END_CALL => decode_end_call(&top, base).map(|e| (true, e)),
        MEMBER_CHANGED => decode_member_changed(&top, base).map(|e| (true, e)),
        _ => {
            // An IM-style command this version does not know: keep one
            // event so it is counted and visible to rules.
            let mut e = base;
            e.call_id = top.id("CallId")?;
            e.event = snake_case(command.rsplit('.').next().unwrap_or(command));
            e.extra = top.extra(&["CallbackCommand", "EventTime", "CallId"]);
            Ok((false, vec![e]))
        }
    }
}

fn decode_start_call(
    top: &Fields<'_, Map<String, Value>>,
    base: Event,
) -> Result<Vec<Event>, DecodeError> {
    let info_obj = top.object("CallInfo")?;
    let empty = Map::new();
    let info = Fields::new(info_obj.unwrap_or(&empty), "CallInfo.");
    let users = top.array("UserList")?;
    let group_id = info.id("ChatGroupId")?.filter(|g| !g.is_empty());
    let mut template = base;
    template.call_id = info.id("CallId")?;
    template.room_id = info.id("RoomId")?;
    template.media_type = info.lower("CallMediaType")?;
    template.total_num = Some(users.len() as i64);
    template.call_type = Some(if group_id.is_some() || users.len() > 2 {
        "group".into()
    } else {
        "single".into()
    });
    template.start_call_ts = Some(template.event_time);
    template.extra = top.extra(&["CallbackCommand", "CallInfo", "UserList", "EventTime"]);
    if let Some(g) = group_id {
        template
            .extra
            .insert("ChatGroupId".into(), Value::from(g.as_str()));
    }
    let mut events = Vec::with_capacity(users.len());
    for (i, u) in users.iter().enumerate() {
        let prefix = format!("UserList[{i}].");
        let uo = u
            .as_object()
            .ok_or_else(|| DecodeError::wrong(format!("UserList[{i}]"), "an object"))?;
        let uf = Fields::new(uo, "");
        let named = |k: &str| format!("{prefix}{k}");
        let user = uf
            .id("User_Account")
            .map_err(|_| DecodeError::wrong(named("User_Account"), "a string or number"))?;
        let status = uf
            .lower("Status")
            .map_err(|_| DecodeError::wrong(named("Status"), "a string"))?
            .unwrap_or_default();
        let mut e = template.clone();
        e.user_id = user;
        if status == "calling" {
            e.role = Some("caller".into());
            e.event = "start_call".into();
        } else {
            e.role = Some("callee".into());
            e.event = "receive_call".into();
        }
        events.push(e);
    }
    Ok(events)
}

fn decode_end_call(
    top: &Fields<'_, Map<String, Value>>,
    base: Event,
) -> Result<Vec<Event>, DecodeError> {
    let rec_obj = top
        .object("CallRecord")?
        .ok_or_else(|| DecodeError::Missing("CallRecord".into()))?;
    let rec = Fields::new(rec_obj, "CallRecord.");
    let callees = rec.array("CalleeList_Account")?;
    let mut e = base;
    e.event = "call_end".into();
    e.role = Some("caller".into());
    e.call_id = rec.id("CallId")?;
    e.user_id = rec.id("Caller_Account")?;
    e.media_type = rec.lower("MediaType")?;
    e.call_type = rec.lower("CallType")?.map(|t| match t.as_str() {
        "singlecall" => "single".into(),
        "multicall" => "group".into(),
        _ => t,
    });
    e.start_call_ts = rec.time("StartTime")?;
    e.accept_ts = rec.time("AcceptTime")?;
    e.end_ts = rec.time("EndTime")?;
    e.call_result = rec.snake("CallResult")?.unwrap_or_default();
    e.room_id = rec.id("RoomId")?;
    e.total_num = Some(callees.len() as i64 + 1);
    let mut extra = top.extra(&["CallbackCommand", "CallRecord", "EventTime"]);
    let callee_ids: Vec<Value> = callees
        .iter()
        .map(|c| match c {
            Value::Number(n) => Value::from(n.to_string()),
            other => other.clone(),
        })
        .collect();
    extra.insert("CalleeList_Account".into(), Value::Array(callee_ids));
    for (k, v) in rec.extra(&[
        "CallId",
        "Caller_Account",
        "MediaType",
        "CallType",
        "StartTime",
        "AcceptTime",
        "EndTime",
        "CallResult",
        "CalleeList_Account",
        "RoomId",
    ]) {
        extra.insert(k, v);
    }
    e.extra = extra;
    Ok(vec![e])
}

/// Maps a member-change `ActionType` (in any of Tencent's spellings) to an
/// event name and the changed user's role, when the action implies one.
fn member_action(action: &str) -> (Text, Option<&'static str>) {
    let norm: String = action
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    match norm.as_str() {
        "answer" | "accept" => ("accept_call".into(), Some("callee")),
        "reject" => ("reject_call".into(), Some("callee")),
        "notanswer" => ("not_answer_call".into(), Some("callee")),
        "hangup" => ("call_end".into(), None),
        "join" => ("join_in_group_call".into(), Some("callee")),
        "offline" => ("call_interrupted".into(), None),
        "invite" | "invited" => ("invite_user".into(), Some("callee")),
        "cancelinvite" | "cancncelinvite" | "canncelinvite" => {
            ("call_canceled".into(), Some("callee"))
        }
        _ => (snake_case(action), None),
    }
}

fn decode_member_changed(
    top: &Fields<'_, Map<String, Value>>,
    base: Event,
) -> Result<Vec<Event>, DecodeError> {
    let changed = top.array("ChangedUserList")?;
    let all = top.array("UserList")?;
    let mut template = base;
    template.call_id = top.id("CallId")?;
    template.total_num = (!all.is_empty()).then_some(all.len() as i64);
    template.extra = top.extra(&[
        "CallbackCommand",
        "CallId",
        "UserList",
        "ChangedUserList",
        "EventTime",
    ]);
    let mut events = Vec::with_capacity(changed.len());
    for (i, u) in changed.iter().enumerate() {
        let uo = u
            .as_object()
            .ok_or_else(|| DecodeError::wrong(format!("ChangedUserList[{i}]"), "an object"))?;
        let uf = Fields::new(uo, "");
        let user = uf.id("User_Account").map_err(|_| {
            DecodeError::wrong(
                format!("ChangedUserList[{i}].User_Account"),
                "a string or number",
            )
        })?;
        let action = match uf.get("ActionType") {
            Some(Member::Str(s)) => s.to_string(),
            Some(Member::Num(n)) => n.to_string(),
            None => {
                return Err(DecodeError::Missing(format!(
                    "ChangedUserList[{i}].ActionType"
                )))
            }
            Some(_) => {
                return Err(DecodeError::wrong(
                    format!("ChangedUserList[{i}].ActionType"),
                    "a string",
                ))
            }
        };
        let (event, role) = member_action(&action);
        let mut e = template.clone();
        e.user_id = user;
        e.event = event;
        e.role = role.map(Text::from);
        if e.event == "call_interrupted" {
            e.call_result = "offline".into();
        }
        events.push(e);
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> Query {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect()
    }

    fn a_query(cmd: &str) -> Query {
        q(&[
            ("sdkappid", "1400000001"),
            ("command", cmd),
            ("contenttype", "json"),
            ("clientip", "1.2.3.4"),
            ("optplatform", "Android"),
        ])
    }

    #[test]
    fn family_a_normalises_case_and_room() {
        let body = json!({"UserId":"alice","RoomId":12345,"TotalNum":2,"MediaType":"Audio",
            "CallType":"Single","CallId":"c1","Role":"Callee","Event":"Not_Answer_Call",
            "CallResult":"Not_Answer","EventTime":1704856873,"Vendor":"x"});
        let d = decode(&a_query("callee_not_answer_call"), &body, 0).expect("decodes");
        assert_eq!(d.family, Family::A);
        assert!(d.known_command);
        let e = &d.events[0];
        assert_eq!(e.sdkappid, 1400000001);
        assert_eq!(e.room_id.as_deref(), Some("12345"));
        assert_eq!(e.media_type.as_deref(), Some("audio"));
        assert_eq!(e.call_type.as_deref(), Some("single"));
        assert_eq!(e.role.as_deref(), Some("callee"));
        assert_eq!(e.event, "not_answer_call");
        assert_eq!(e.call_result, "not_answer");
        assert_eq!(e.platform.as_deref(), Some("Android"));
        assert_eq!(e.start_call_ts, None);
        assert_eq!(e.extra["Vendor"], "x");
    }

    #[test]
    fn call_status_sets_result_and_event() {
        let d = decode(
            &a_query("Normal_End"),
            &json!({"UserId":"a","EventTime":5}),
            0,
        )
        .expect("decodes");
        assert_eq!(d.command, "normal_end");
        assert_eq!(d.events[0].event, "normal_end");
        assert_eq!(d.events[0].call_result, "normal_end");
        let d = decode(
            &a_query("interrupt"),
            &json!({"UserId":"a","Event":"call_interrupted","CallResult":"Interrupt"}),
            9_000,
        )
        .expect("decodes");
        assert_eq!(d.events[0].event, "call_interrupted");
        assert_eq!(d.events[0].call_result, "interrupt");
        assert_eq!(d.events[0].event_time, 9);
    }

    #[test]
    fn bodies_too_deep_to_read_back_are_refused() {
        let nested = |n: usize| {
            format!(
                "{{\"UserId\":\"a\",\"x\":{}1{}}}",
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        let q = a_query("caller_start_call");
        assert!(decode_bytes(&q, nested(MAX_DEPTH - 1).as_bytes(), 0).is_ok());
        let err = decode_bytes(&q, nested(MAX_DEPTH).as_bytes(), 0).map(|_| ());
        assert!(matches!(err, Err(DecodeError::TooDeep)), "{err:?}");
        // Why: what is accepted must parse again inside a journal line.
        let body: Value = serde_json::from_str(&nested(MAX_DEPTH - 1)).expect("valid JSON");
        let line = crate::journal::Record {
            received_at: Some(0),
            query: q,
            body,
        }
        .to_line();
        assert!(serde_json::from_slice::<crate::journal::Record>(&line).is_ok());
    }

    #[test]
    fn unknown_command_is_accepted() {
        let d = decode(&a_query("caller_future_thing"), &json!({}), 1000).expect("decodes");
        assert!(!d.known_command);
        assert_eq!(d.events[0].event, "future_thing");
        assert_eq!(d.events[0].role.as_deref(), Some("caller"));
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = decode(
            &a_query("caller_start_call"),
            &json!({"EventTime":"soon"}),
            0,
        )
        .expect_err("rejects");
        assert!(err.to_string().contains("EventTime"), "{err}");
        let err =
            decode(&a_query("caller_start_call"), &json!({"UserId":[1]}), 0).expect_err("rejects");
        assert!(err.to_string().contains("UserId"), "{err}");
        assert_eq!(
            decode(&a_query("x"), &json!([1]), 0).expect_err("rejects"),
            DecodeError::NotObject
        );
    }

    #[test]
    fn family_b_start_call() {
        let query = q(&[
            ("SdkAppid", "1400000001"),
            ("CallbackCommand", "Call.CallbackAfterStartCall"),
            ("OptPlatform", "iOS"),
        ]);
        let body = json!({"CallbackCommand":"Call.CallbackAfterStartCall",
            "CallInfo":{"CallId":"c2","CallMediaType":"Video","ChatGroupId":"","RoomId":"r","RoomIdType":2},
            "UserList":[{"User_Account":"alice","Status":"Calling"},{"User_Account":12,"Status":"Waiting"}],
            "EventTime":1704856873123i64});
        let d = decode(&query, &body, 0).expect("decodes");
        assert_eq!(d.family, Family::B);
        assert_eq!(d.events.len(), 2);
        assert_eq!(d.events[0].event, "start_call");
        assert_eq!(d.events[0].role.as_deref(), Some("caller"));
        assert_eq!(d.events[1].event, "receive_call");
        assert_eq!(d.events[1].user_id.as_deref(), Some("12"));
        assert_eq!(d.events[1].event_time, 1704856873);
        assert_eq!(d.events[1].media_type.as_deref(), Some("video"));
        assert_eq!(d.events[1].call_type.as_deref(), Some("single"));
    }

    #[test]
    fn family_b_end_call_and_members() {
        let query = q(&[
            ("SdkAppid", "1400000001"),
            ("CallbackCommand", "Call.CallbackAfterEndCall"),
        ]);
        let body = json!({"CallbackCommand":"Call.CallbackAfterEndCall","CallRecord":{
            "CallId":"c3","Caller_Account":"alice","MediaType":"Audio","CallType":"MultiCall",
            "StartTime":100,"AcceptTime":110,"EndTime":170,"CallResult":"NormalEnd",
            "CalleeList_Account":["bob",7],"RoomId":9,"RoomIdType":1},"EventTime":170000});
        let d = decode(&query, &body, 0).expect("decodes");
        let e = &d.events[0];
        assert_eq!(e.event, "call_end");
        assert_eq!(e.call_type.as_deref(), Some("group"));
        assert_eq!(e.call_result, "normal_end");
        assert_eq!(e.ring_secs(), Some(10));
        assert_eq!(e.talk_secs(), Some(60));
        assert_eq!(e.total_num, Some(3));

        let query = q(&[
            ("SdkAppid", "1400000001"),
            ("CallbackCommand", "Call.CallbackAfterMemberChanged"),
        ]);
        let body = json!({"CallbackCommand":"Call.CallbackAfterMemberChanged","CallId":"c4",
            "UserList":["a","b","c"],"ChangedUserList":[
                {"User_Account":"b","ActionType":"Answer"},{"User_Account":"c","ActionType":"Hang Up"},
                {"User_Account":"d","ActionType":"Canncel_Invite"},{"User_Account":"e","ActionType":"Offline"}],
            "EventTime":1704856873000i64});
        let d = decode(&query, &body, 0).expect("decodes");
        let names: Vec<_> = d.events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(
            names,
            [
                "accept_call",
                "call_end",
                "call_canceled",
                "call_interrupted"
            ]
        );
        assert_eq!(d.events[3].call_result, "offline");
    }

    #[test]
    fn snake_case_spellings() {
        assert_eq!(snake_case("NormalEnd"), "normal_end");
        assert_eq!(snake_case("NotAnswer"), "not_answer");
        assert_eq!(snake_case("CallBusy"), "call_busy");
        assert_eq!(snake_case("not_answer"), "not_answer");
        assert_eq!(snake_case("Hang Up"), "hang_up");
    }
}
