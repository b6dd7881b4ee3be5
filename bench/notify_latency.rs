//! Notification latency: from the 200 of the callback that makes a rule
//! fire to the webhook receiving the notification, through the whole
//! daemon (journal, engine, dispatcher, durable outbox, HTTP).
//!
//! Run: `cargo bench --bench notify_latency [-- N]` (N alerts, default 1000).
//!
//! The daemon runs in-process on 127.0.0.1:0 with a temp state dir,
//! `group_wait = "0s"` and one rule that fires on the first `start_call` of
//! every call id. Callbacks are posted one at a time, each after the
//! previous notification arrived, so every alert is measured alone.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;
use warp::Filter;

use callwatch::config::{Config, ReceiverConfig, ReceiverKind};

mod stats;
use stats::percentile;

const RULE: &str = r#"
// Fires once for every call id: one alert per callback.
const RULE = #{
    events: ["start_call"],
    group_by: ["call_id"],
    window: "1m",
};

fn check(w) {
    true
}
"#;

/// A webhook that reports (call_id, arrival) for every notification.
async fn webhook() -> (String, mpsc::UnboundedReceiver<(String, Instant)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let route = warp::post()
        .and(warp::body::json())
        .map(move |body: Value| {
            let at = Instant::now();
            if let Some(alerts) = body["alerts"].as_array() {
                for a in alerts {
                    if let Some(id) = a["labels"]["call_id"].as_str() {
                        let _ = tx.send((id.to_string(), at));
                    }
                }
            }
            warp::reply()
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind webhook");
    let addr = listener.local_addr().expect("webhook addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (format!("http://{addr}/hook"), rx)
}

fn config(state: &std::path::Path, rules: &std::path::Path, hook: String) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.rules.dir = rules.to_path_buf();
    c.state.dir = state.to_path_buf();
    c.alerting.group_wait = Duration::ZERO;
    c.alerting.group_by = vec!["call_id".into()];
    c.receivers.push(ReceiverConfig {
        name: "hook".into(),
        send_resolved: true,
        timeout: Duration::from_secs(10),
        rate_limit_per_minute: 0,
        kind: ReceiverKind::Webhook {
            url: hook,
            headers: Default::default(),
        },
    });
    c.alerting.default_receivers = vec!["hook".into()];
    c.validate().expect("valid config");
    c
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn run(n: usize) {
    let state = tempfile::tempdir().expect("state dir");
    let rules = tempfile::tempdir().expect("rules dir");
    std::fs::write(rules.path().join("every_call.rhai"), RULE).expect("write rule");
    let (hook, mut arrivals) = webhook().await;
    let daemon = callwatch::app::start(config(state.path(), rules.path(), hook))
        .await
        .expect("daemon starts");
    while !daemon.is_ready() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let url = format!(
        "http://{}/callback?sdkappid=1400000001&command=caller_start_call&contenttype=json&clientip=10.0.0.1&optplatform=iOS",
        daemon.addr
    );
    let client = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(n);
    let mut early: HashMap<String, Instant> = HashMap::new();
    for i in 0..n {
        let call_id = format!("bench-{i:06}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let body = json!({
            "UserId": format!("u{}", i % 100), "RoomId": "1", "TotalNum": 2,
            "MediaType": "audio", "CallType": "single", "CallId": call_id,
            "Role": "caller", "Event": "start_call", "CallResult": "", "EventTime": now,
        });
        let r = client
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("callback");
        let acked = Instant::now();
        assert_eq!(r.status(), 200, "callback refused");
        let arrived = loop {
            if let Some(at) = early.remove(&call_id) {
                break at;
            }
            let (id, at) = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
                .await
                .expect("notification within 10 s")
                .expect("webhook running");
            if id == call_id {
                break at;
            }
            early.insert(id, at);
        };
        latencies.push(arrived.saturating_duration_since(acked));
    }
    daemon.shutdown().await.expect("shutdown");
    latencies.sort();
    let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    println!("notify_latency: {n} alerts, callback 200 -> webhook receipt");
    println!(
        "  p50 {}  p90 {}  p99 {}  max {}  mean {}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(*latencies.last().expect("samples")),
        ms(mean),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a bare number is the alert count.
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(run(n));
}
