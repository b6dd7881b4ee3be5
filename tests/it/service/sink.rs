//! A webhook sink: a real HTTP server on 127.0.0.1:0 that answers 200 and
//! keeps every JSON body it was sent, in arrival order, with the time
//! each arrived.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::Value;
use warp::Filter;

pub struct Sink {
    pub addr: SocketAddr,
    bodies: Arc<Mutex<Vec<(SystemTime, Value)>>>,
}

impl Sink {
    pub async fn start() -> Sink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sink");
        let addr = listener.local_addr().expect("sink addr");
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        let route = warp::post()
            .and(warp::body::bytes())
            .map(move |body: bytes::Bytes| {
                let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
                kept.lock().expect("sink lock").push((SystemTime::now(), v));
                warp::reply()
            });
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Sink { addr, bodies }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Config sections sending every alert to this sink at once (no
    /// group_wait or group_interval), grouped by `group_by` (a TOML array).
    pub fn config(&self, group_by: &str) -> String {
        webhook_toml(&self.url(), "0s", "0s", group_by)
    }

    /// Every body received so far.
    pub fn bodies(&self) -> Vec<Value> {
        self.arrivals().into_iter().map(|(_, v)| v).collect()
    }

    /// Every body received so far with the time it arrived.
    pub fn arrivals(&self) -> Vec<(SystemTime, Value)> {
        self.bodies.lock().expect("sink lock").clone()
    }

    /// Every alert of every body: (rule, fingerprint, status, starts_at).
    pub fn alerts(&self) -> Vec<(String, String, String, String)> {
        self.bodies()
            .iter()
            .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
            .map(|a| alert_identity(&a))
            .collect()
    }
}

/// (rule, fingerprint, status, starts_at) of an alert object (docs/alerts.md).
pub fn alert_identity(a: &Value) -> (String, String, String, String) {
    let s = |k: &str| a[k].as_str().unwrap_or_default().to_string();
    (s("rule"), s("fingerprint"), s("status"), s("starts_at"))
}

/// Config sections sending every alert to the webhook at `url` (receiver
/// `hook`, the only default), with `group_wait` and `group_interval` (TOML
/// durations), grouped by `group_by` (a TOML array).
pub fn webhook_toml(url: &str, group_wait: &str, group_interval: &str, group_by: &str) -> String {
    format!(
        r#"
[alerting]
group_wait = "{group_wait}"
group_interval = "{group_interval}"
group_by = {group_by}
default_receivers = ["hook"]

[[receivers]]
name = "hook"
type = "webhook"
url = "{url}"
"#
    )
}
