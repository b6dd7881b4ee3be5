//! Decoding of TUICallKit callbacks into [`Event`]s: telling the
//! two callback families apart, type-checking the known fields, normalising
//! case and units, and keeping unknown fields. Pure: the same query and body
//! always give the same events, which is what lets `replay` re-read the
//! journal. The shared field readers live here, each family's body layout
//! in `family_a`/`family_b`. Authentication and size checks live in
//! `ingest::auth`/`routes`.

use serde_json::{Map, Number, Value};

use compact_str::ToCompactString;

use crate::event::{Event, Text};

mod family_a;
mod family_b;
pub(crate) mod members;

use family_a::decode_a;
pub use family_a::A_FIELDS;
use family_b::decode_b;

/// The query string of a callback, as name → value (the last value wins).
pub type Query = Map<String, Value>;

/// Which of the two callback families a callback belongs to.
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

/// Family A call-event commands (legacy call event callbacks).
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
pub const CALL_STATUS_COMMANDS: &[&str] = crate::event::CALL_RESULTS.split_at(6).0;

/// Family B commands (current IM-style call callbacks).
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
    /// Whether the command is a documented one (others are still accepted).
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
        // A query has a handful of parameters and is asked for a dozen
        // names, most of them absent: comparing the names (a length
        // check first) costs less than hashing the key with SipHash, the
        // map's hasher. Names are unique in a map, so the first match is
        // the one `get` would find.
        if self.len() <= 16 {
            return self
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| Member::from(v));
        }
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
    if let Some(done) = members::decode_body(query, body, received_at_ms) {
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

    /// A string value, lowercased (values arrive in either case).
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
    // Most values arrive in snake_case already (`start_call`): then the
    // loop below would give them back unchanged, a char at a time.
    let b = s.as_bytes();
    let snake = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_';
    if b.first() != Some(&b'_') && b.iter().all(snake) && !b.windows(2).any(|w| w == b"__") {
        return Text::from(s);
    }
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
        for s in ["", "a", "_a", "a__b", "a_", "ab_9c", "a_b__", "__"] {
            let slow: String = s
                .split('_')
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join("_");
            let slow = if s.ends_with('_') && !slow.is_empty() {
                slow + "_"
            } else {
                slow
            };
            assert_eq!(snake_case(s), slow, "{s:?}");
        }
    }
}
