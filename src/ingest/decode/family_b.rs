//! Family B (docs/callbacks.md): the IM-style call callbacks, whose nested
//! bodies (user lists, call records, member changes) become one event per
//! user concerned.

use serde_json::{Map, Value};

use super::{snake_case, DecodeError, Fields, Member, END_CALL, MEMBER_CHANGED, START_CALL};
use crate::event::{Event, Text};

pub(super) fn decode_b(
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
