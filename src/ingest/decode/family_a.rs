//! Family A (docs/callbacks.md): call-event and call-status callbacks, one flat
//! body each, decoded into one event.

use compact_str::ToCompactString;

use super::{DecodeError, Fields, Member, Object, CALL_STATUS_COMMANDS, FAMILY_A_COMMANDS};
use crate::event::{Event, Text};

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

pub(super) fn decode_a(
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
