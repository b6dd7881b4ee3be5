//! The committed trace fixture, moved to the present. The daemon keeps
//! events out of windows they are too old for, so a recorded trace is
//! shifted until its newest callback happened a moment ago.
//!
//! `offline_u0001.jsonl` is the first 42 s (241 callbacks) of a trace of
//! 60 calls at 2/s among 4 users from 1767225600, made by the Python
//! generator `callwatch simulate` replaced, with u0001 offline from 0 to
//! 20 s (today: `callwatch simulate --family a --calls 60 --rate 2
//! --users 4 --anomaly offline:user=u0001:from=0:to=20` is the same kind
//! of traffic, not the same bytes): u0001 ignores the calls of
//! its first 20 s, which ring out ~30 s later as `not_answer_call`s, so
//! `missed_call_streak` fires for u0001 at 40 s; u0001 answering call
//! [`RESOLVING_CALL`] at 41 s resolves it.

use std::path::Path;

use serde_json::Value;

/// The call whose `accept_call` by u0001 breaks the streak.
pub const RESOLVING_CALL: &str = "d791a0fe8300089a-00000038";

/// Body fields holding Unix seconds.
const TIME_FIELDS: [&str; 4] = ["EventTime", "StartCallTs", "AcceptTs", "EndTs"];

/// The fixture's callbacks, shifted so the last one is `ago` seconds old.
pub fn offline_u0001(now: i64, ago: i64) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/delivery/offline_u0001.jsonl");
    let text = std::fs::read_to_string(&path).expect("fixture");
    let mut records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("fixture line is JSON"))
        .collect();
    let last = records
        .iter()
        .filter_map(|r| r["body"]["EventTime"].as_i64())
        .max()
        .expect("event times");
    let shift = now - ago - last;
    for r in &mut records {
        for f in TIME_FIELDS {
            if let Some(t) = r["body"][f].as_i64() {
                r["body"][f] = Value::from(t + shift);
            }
        }
        if let Some(t) = r["received_at"].as_i64() {
            r["received_at"] = Value::from(t + shift * 1000);
        }
    }
    records
}

/// Whether `r` is u0001 answering [`RESOLVING_CALL`].
pub fn is_resolving(r: &Value) -> bool {
    let b = &r["body"];
    b["CallId"] == RESOLVING_CALL && b["UserId"] == "u0001" && b["Event"] == "accept_call"
}
