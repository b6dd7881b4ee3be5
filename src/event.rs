//! The normalised call event (the fields rules see): the one type that flows from the
//! callback decoders through the windows into the rules. It knows how to
//! answer a field by name (for `where`, `distinct`, `sum`...) but nothing
//! about HTTP, journals or Rhai.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Text fields are [`CompactString`]s: nearly every value a callback
/// carries (ids, platforms, event names) fits in its 24 inline bytes, so
/// an event is one allocation instead of a dozen. Windows hold millions of
/// events, and decoding them is the hot path of recovery and replay.
pub type Text = CompactString;

/// One step of one call as seen by one user.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Event {
    pub sdkappid: u64,
    pub command: Text,
    pub platform: Option<Text>,
    pub client_ip: Option<Text>,
    pub user_id: Option<Text>,
    pub room_id: Option<Text>,
    pub total_num: Option<i64>,
    pub media_type: Option<Text>,
    pub call_type: Option<Text>,
    pub call_id: Option<Text>,
    pub role: Option<Text>,
    /// The step without role prefix, e.g. `not_answer_call`.
    pub event: Text,
    /// `""` or e.g. `normal_end`.
    pub call_result: Text,
    /// Unix seconds.
    pub event_time: i64,
    pub start_call_ts: Option<i64>,
    pub accept_ts: Option<i64>,
    pub end_ts: Option<i64>,
    /// Body fields the decoder does not know, kept verbatim.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

/// A field's value, borrowed from an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    Str(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Field<'_> {
    /// The numeric value, for `sum/avg/min/max/percentile`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Field::Int(i) => Some(i as f64),
            Field::Float(f) => Some(f),
            Field::Str(_) | Field::Bool(_) => None,
        }
    }

    /// The value as a label or key string.
    pub fn to_text(&self) -> String {
        match *self {
            Field::Str(s) => s.to_string(),
            Field::Int(i) => i.to_string(),
            Field::Float(f) => f.to_string(),
            Field::Bool(b) => b.to_string(),
        }
    }
}

/// The event fields rules see, in order; `extra` holds the rest.
pub const FIELDS: &[&str] = &[
    "sdkappid",
    "command",
    "platform",
    "client_ip",
    "user_id",
    "room_id",
    "total_num",
    "media_type",
    "call_type",
    "call_id",
    "role",
    "event",
    "call_result",
    "event_time",
    "start_call_ts",
    "accept_ts",
    "end_ts",
    "ring_secs",
    "talk_secs",
];

/// Every value the `event` field takes: the steps of both callback
/// families without their role prefix, and the call-status commands and
/// call results that name an event when a callback has no `Event`.
pub const EVENT_NAMES: &[&str] = &[
    "start_call",
    "receive_call",
    "accept_call",
    "call_accepted",
    "not_answer_call",
    "call_missed",
    "reject_call",
    "call_rejected",
    "ignore_call",
    "call_busy",
    "cancel_call",
    "call_canceled",
    "call_failed",
    "call_end",
    "call_interrupted",
    "invite_user",
    "join_in_group_call",
    "cancel",
    "reject",
    "not_answer",
    "normal_end",
    "interrupt",
    "offline",
];

/// Values of `call_result` besides `""` (no result yet): family A's
/// call-status commands (the first six) and family B's results.
pub const CALL_RESULTS: &[&str] = &[
    "cancel",
    "reject",
    "not_answer",
    "normal_end",
    "call_busy",
    "interrupt",
    "offline",
];

/// Platforms TUICallKit reports in `optplatform`. Tencent adds new ones,
/// so an unknown platform is worth a warning, not an error.
pub const PLATFORMS: &[&str] = &[
    "iOS",
    "Android",
    "Web",
    "miniProgram",
    "Flutter",
    "uni-app",
    "Windows",
    "Mac",
];

/// The fields whose values the decoders normalise to a closed set, with
/// that set: a rule comparing them with anything else never matches.
pub fn enumerated_values(field: &str) -> Option<&'static [&'static str]> {
    match field {
        "role" => Some(&["caller", "callee"]),
        "media_type" => Some(&["audio", "video"]),
        "call_type" => Some(&["single", "group"]),
        "event" => Some(EVENT_NAMES),
        "call_result" => Some(CALL_RESULTS),
        _ => None,
    }
}

fn text(v: &Option<Text>) -> Option<Field<'_>> {
    v.as_deref().map(Field::Str)
}

impl Event {
    /// Seconds from start to accept, when both are known.
    pub fn ring_secs(&self) -> Option<i64> {
        Some(self.accept_ts? - self.start_call_ts?)
    }

    /// Seconds from accept to end, when both are known.
    pub fn talk_secs(&self) -> Option<i64> {
        Some(self.end_ts? - self.accept_ts?)
    }

    /// A field by its event-model name, falling back to unknown body
    /// fields (scalars only, as `extra.NAME` or plain `NAME`), so rules
    /// can group and filter on them too.
    pub fn get(&self, name: &str) -> Option<Field<'_>> {
        match name {
            "sdkappid" => Some(Field::Int(self.sdkappid as i64)),
            "command" => Some(Field::Str(&self.command)),
            "platform" => text(&self.platform),
            "client_ip" => text(&self.client_ip),
            "user_id" => text(&self.user_id),
            "room_id" => text(&self.room_id),
            "total_num" => self.total_num.map(Field::Int),
            "media_type" => text(&self.media_type),
            "call_type" => text(&self.call_type),
            "call_id" => text(&self.call_id),
            "role" => text(&self.role),
            "event" => Some(Field::Str(&self.event)),
            "call_result" => Some(Field::Str(&self.call_result)),
            "event_time" => Some(Field::Int(self.event_time)),
            "start_call_ts" => self.start_call_ts.map(Field::Int),
            "accept_ts" => self.accept_ts.map(Field::Int),
            "end_ts" => self.end_ts.map(Field::Int),
            "ring_secs" => self.ring_secs().map(Field::Int),
            "talk_secs" => self.talk_secs().map(Field::Int),
            other => match self
                .extra
                .get(other.strip_prefix("extra.").unwrap_or(other))?
            {
                Value::String(s) => Some(Field::Str(s)),
                Value::Bool(b) => Some(Field::Bool(*b)),
                Value::Number(n) => n
                    .as_i64()
                    .map(Field::Int)
                    .or_else(|| n.as_f64().map(Field::Float)),
                _ => None,
            },
        }
    }

    /// The event as the JSON map rules and tests see, with
    /// `ring_secs`/`talk_secs` derived and missing values as null.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for name in FIELDS {
            let v = match self.get(name) {
                Some(Field::Str(s)) => Value::from(s),
                Some(Field::Int(i)) => Value::from(i),
                Some(Field::Float(f)) => Value::from(f),
                Some(Field::Bool(b)) => Value::from(b),
                None => Value::Null,
            };
            m.insert((*name).to_string(), v);
        }
        m.insert("extra".into(), Value::Object(self.extra.clone()));
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_fields() {
        let e = Event {
            start_call_ts: Some(100),
            accept_ts: Some(107),
            end_ts: Some(160),
            ..Event::default()
        };
        assert_eq!(e.get("ring_secs"), Some(Field::Int(7)));
        assert_eq!(e.get("talk_secs"), Some(Field::Int(53)));
        assert_eq!(Event::default().get("ring_secs"), None);
    }

    #[test]
    fn extra_fields_are_reachable() {
        let mut e = Event::default();
        e.extra.insert("Region".into(), Value::from("eu"));
        e.extra.insert("Score".into(), Value::from(4.5));
        assert_eq!(e.get("Region"), Some(Field::Str("eu")));
        assert_eq!(e.get("extra.Region"), Some(Field::Str("eu")));
        assert_eq!(e.get("Score").and_then(|f| f.as_f64()), Some(4.5));
        assert_eq!(e.to_json()["extra"]["Region"], "eu");
        assert_eq!(e.to_json()["user_id"], Value::Null);
    }
}
