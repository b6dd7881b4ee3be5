//! The recorded trace fixture (`trace.jsonl`), shifted to the present so a
//! live daemon treats it as current traffic.
//!
//! The fixture is the first 45 s (lines with `received_at` ≤ start + 45 s)
//! of a trace of 2000 calls at 10/s among 20 users from 1767225600, made
//! by the Python generator `callwatch simulate` replaced, with the
//! anomalies `offline:user=u0007:from=0:to=5` and `fail:from=8:to=16:p=0.8`: 1536 callbacks in which
//! `call_failure_spike` fires and resolves and `missed_call_streak` fires
//! and resolves for u0007, driven by event order only (no `for`, no
//! window expiry within 45 s), so a live run and `replay` agree.

use serde_json::Value;

/// One callback ready to send.
#[derive(Debug, Clone)]
pub struct Callback {
    /// Milliseconds after the first callback at which it is due.
    pub due_ms: u64,
    pub query: String,
    pub body: Value,
}

impl Callback {
    /// The recorded-callback line for this callback (no `received_at`).
    pub fn record(&self) -> Value {
        let query: serde_json::Map<String, Value> = form_urlencoded::parse(self.query.as_bytes())
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        serde_json::json!({"query": query, "body": self.body})
    }
}

/// The fixture with every time field moved so the first callback's event
/// time is `now_secs`.
pub fn shifted(now_secs: i64) -> Vec<Callback> {
    let text = include_str!("trace.jsonl");
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("fixture line"))
        .collect();
    let first_ms = records[0]["received_at"].as_i64().expect("received_at");
    let shift = now_secs - first_ms / 1000;
    records
        .into_iter()
        .map(|r| {
            let mut body = r["body"].clone();
            for k in ["EventTime", "StartCallTs", "AcceptTs", "EndTs"] {
                if let Some(t) = body[k].as_i64() {
                    body[k] = Value::from(t + shift);
                }
            }
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in r["query"].as_object().expect("query") {
                q.append_pair(k, v.as_str().unwrap_or_default());
            }
            Callback {
                due_ms: (r["received_at"].as_i64().expect("received_at") - first_ms) as u64,
                query: q.finish(),
                body,
            }
        })
        .collect()
}
