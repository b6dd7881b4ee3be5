//! The daemon in-process for delivery tests: a config on 127.0.0.1:0 with
//! temp state and rules dirs, start/restart/stop on the same state dir,
//! callbacks and admin calls over real HTTP, and `/metrics` reading.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tempfile::TempDir;

use callwatch::app::{self, Daemon};
use callwatch::config::{Config, ReceiverConfig, ReceiverKind, SmtpConfig};

use crate::notify::http_sink::{Canned, Sink};
use crate::support;

/// A rule that fires for each distinct `user_id` on its first `start_call`
/// and stays firing for the window (no resolve within a test).
pub const FIRST_CALL_RULE: &str = r#"
// Test rule: any call start fires for its caller.
const RULE = #{
    events: ["start_call"],
    group_by: ["platform", "user_id"],
    window: "10m",
    severity: "warning",
};

fn check(w) {
    w.count() >= 1
}
"#;

/// `FIRST_CALL_RULE` with a 3 s window: its alerts resolve within a test.
pub fn short_first_call_rule() -> String {
    FIRST_CALL_RULE.replace(r#"window: "10m""#, r#"window: "3s""#)
}

/// A real webhook server answering `canned` (until told otherwise), dirs
/// holding the short first-call rule, and a config that sends each
/// transition at once (no `group_wait`) to that webhook as receiver `ops`.
pub async fn webhook_and_short_rule(canned: Canned) -> (Sink, Dirs, Config) {
    let hook = Sink::start(canned).await;
    let dirs = Dirs::with_rules(&[("first_call", &short_first_call_rule())]);
    let mut config = dirs.config();
    config.alerting.group_wait = Duration::ZERO;
    add_receiver(&mut config, "ops", webhook(hook.url("/hook")));
    (hook, dirs, config)
}

/// Temp state and rules dirs that outlive daemon restarts.
pub struct Dirs {
    state: TempDir,
    rules: TempDir,
}

impl Dirs {
    /// A rules dir holding `rules` as (name, source) pairs.
    pub fn with_rules(rules: &[(&str, &str)]) -> Dirs {
        let d = Dirs {
            state: tempfile::tempdir().expect("state tempdir"),
            rules: tempfile::tempdir().expect("rules tempdir"),
        };
        for (name, source) in rules {
            std::fs::write(d.rules.path().join(format!("{name}.rhai")), source)
                .expect("write rule");
        }
        d
    }

    /// A rules dir holding a copy of the repository's rule `name`.
    pub fn state(&self) -> PathBuf {
        self.state.path().to_path_buf()
    }

    /// A config with fast timings for tests: listen on 127.0.0.1:0, a 1 s
    /// tick, 1 s group_wait/group_interval and a 1 s retry cap. The only
    /// receiver is the built-in `log` until a test adds its own.
    pub fn config(&self) -> Config {
        let mut c = Config::default();
        c.server.listen = "127.0.0.1:0".into();
        c.rules.dir = self.rules.path().to_path_buf();
        c.rules.tick = Duration::from_secs(1);
        c.state.dir = self.state();
        c.alerting.group_wait = Duration::from_secs(1);
        c.alerting.group_interval = Duration::from_secs(1);
        c.alerting.max_retry_interval = Duration::from_secs(1);
        c
    }
}

/// Adds a receiver to `c` and makes it a default receiver.
pub fn add_receiver(c: &mut Config, name: &str, kind: ReceiverKind) {
    c.receivers.push(ReceiverConfig {
        name: name.into(),
        send_resolved: true,
        timeout: Duration::from_secs(5),
        rate_limit_per_minute: 0,
        kind,
    });
    if c.alerting.default_receivers == ["log"] {
        c.alerting.default_receivers.clear();
    }
    c.alerting.default_receivers.push(name.into());
}

/// Mails go through the SMTP server on 127.0.0.1:`port`; adds receiver
/// `oncall`, mailing oncall@example.com.
pub fn add_mail_receiver(c: &mut Config, port: u16) {
    c.smtp = SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        from: "callwatch@example.com".into(),
        ..SmtpConfig::default()
    };
    add_receiver(
        c,
        "oncall",
        ReceiverKind::Email {
            to: vec!["oncall@example.com".into()],
        },
    );
}

/// A webhook receiver kind posting to `url`.
pub fn webhook(url: String) -> ReceiverKind {
    ReceiverKind::Webhook {
        url,
        headers: Default::default(),
    }
}

/// The daemon plus an HTTP client pointed at it.
pub struct Running {
    pub daemon: Daemon,
    http: reqwest::Client,
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

impl Running {
    /// Starts the daemon and waits until it is ready.
    pub async fn start(config: Config) -> Running {
        config.validate().expect("test config is valid");
        let daemon = app::start(config).await.expect("daemon starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !daemon.is_ready() {
            assert!(Instant::now() < deadline, "daemon not ready within 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Running {
            daemon,
            http: reqwest::Client::new(),
        }
    }

    pub async fn stop(self) {
        self.daemon.shutdown().await.expect("clean shutdown");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.daemon.addr)
    }

    /// Posts one recorded callback (§3 format) to `/callback`; 200 expected.
    pub async fn post(&self, record: &Value) {
        let query = record["query"].as_object().expect("query object");
        let body = record["body"].to_string();
        support::post_record(&self.http, &self.url(""), query, &body)
            .await
            .assert_ok();
    }

    /// Posts a `caller_start_call` by `user` on `platform`, now.
    pub async fn start_call(&self, user: &str, platform: &str, call_id: &str) {
        self.post(&start_call(user, platform, call_id, now_secs()))
            .await;
    }

    /// An admin API request from loopback, with `token` as bearer if given.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.expect("api request");
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// `callwatch_notifications_total{receiver, outcome}`, 0 when absent.
    pub async fn notifications(&self, receiver: &str, outcome: &str) -> u64 {
        let text = self.metrics().await;
        notifications_in(&text, receiver, outcome)
    }

    /// Waits up to `limit` for the notifications counter to reach `n`.
    pub async fn wait_notifications(&self, receiver: &str, outcome: &str, n: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.notifications(receiver, outcome).await;
            if got >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{receiver}/{outcome}: {got} notifications after {limit:?}, wanted {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads one notifications counter out of Prometheus text.
pub fn notifications_in(text: &str, receiver: &str, outcome: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("callwatch_notifications_total{"))
        .filter(|l| l.contains(&format!("receiver=\"{receiver}\"")))
        .filter(|l| l.contains(&format!("outcome=\"{outcome}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A legacy-API `caller_start_call` callback at `event_time`.
pub fn start_call(user: &str, platform: &str, call_id: &str, event_time: i64) -> Value {
    serde_json::json!({
        "query": {
            "sdkappid": "1400000001",
            "command": "caller_start_call",
            "contenttype": "json",
            "clientip": "10.0.0.1",
            "optplatform": platform,
        },
        "body": {
            "UserId": user, "RoomId": "1", "TotalNum": 2, "MediaType": "audio",
            "CallType": "single", "CallId": call_id, "Role": "caller",
            "Event": "start_call", "CallResult": "", "EventTime": event_time,
        },
    })
}

/// A free 127.0.0.1 port with nothing listening on it (yet).
pub fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}
