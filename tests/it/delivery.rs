//! Notifications through the whole daemon (SPEC §6-§8): callbacks posted
//! over HTTP to an in-process daemon, alerts delivered to a real SMTP
//! server and real HTTP servers; outages, restarts, chat-service errors,
//! silences, the admin API's auth and `callwatch notify-test`.

mod harness;
mod trace;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use callwatch::config::{Config, ReceiverKind, SmtpConfig};

use crate::notify::http_sink::{Canned, Sink};
use crate::notify::smtp_sink::SmtpSink;
use harness::{add_receiver, free_port, now_secs, webhook, Dirs, Running, FIRST_CALL_RULE};

/// Asserts nothing more arrives at `sink` for `quiet`.
async fn assert_quiet(sink: &mut Sink, quiet: Duration) {
    tokio::time::sleep(quiet).await;
    if let Some(extra) = sink.try_next() {
        panic!(
            "unexpected extra request: {}",
            String::from_utf8_lossy(&extra.body)
        );
    }
}

/// The `user_id` labels of a webhook body's alerts, with their status.
fn users(body: &Value) -> Vec<(String, String)> {
    body["alerts"]
        .as_array()
        .expect("alerts array")
        .iter()
        .map(|a| {
            (
                a["labels"]["user_id"].as_str().unwrap_or("").to_string(),
                a["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_trace_anomaly_fires_and_resolves_by_email_and_webhook() {
    let Some(mut smtp) = SmtpSink::start(None).await else {
        return;
    };
    let mut hook = Sink::start(Canned::new(200, "")).await;
    let dirs = Dirs::with_repo_rule("missed_call_streak");
    let mut config = dirs.config();
    config.smtp = SmtpConfig {
        host: "127.0.0.1".into(),
        port: smtp.port,
        from: "callwatch@example.com".into(),
        ..SmtpConfig::default()
    };
    add_receiver(
        &mut config,
        "oncall",
        ReceiverKind::Email {
            to: vec!["oncall@example.com".into()],
        },
    );
    add_receiver(&mut config, "ops", webhook(hook.url("/hook")));
    let d = Running::start(config).await;

    let records = trace::offline_u0001(now_secs(), 2);
    let split = records
        .iter()
        .position(trace::is_resolving)
        .expect("the resolving callback is in the fixture");
    for r in &records[..split] {
        d.post(r).await;
    }

    let fired = hook.next_within(Duration::from_secs(10)).await;
    assert_eq!(fired.path, "/hook");
    let body = fired.json();
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "ops");
    let alert = &body["alerts"][0];
    assert_eq!(body["alerts"].as_array().map(Vec::len), Some(1));
    assert_eq!(alert["rule"], "missed_call_streak");
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["user_id"], "u0001");
    assert_eq!(alert["labels"]["team"], "mobile");
    assert!(alert["value"].as_i64().is_some_and(|v| v >= 5), "{alert}");
    assert_eq!(alert["ends_at"], Value::Null);
    let mail = smtp.next().await;
    assert_eq!(mail["rcpt_tos"], json!(["oncall@example.com"]));
    let subject = mail["subject"].as_str().unwrap_or("");
    assert!(
        subject.starts_with("[FIRING:1] missed_call_streak"),
        "{subject}"
    );
    assert!(
        mail["body"]
            .as_str()
            .is_some_and(|b| b.contains("u0001 left")),
        "{mail}"
    );

    for r in &records[split..] {
        d.post(r).await;
    }
    let resolved = hook.next_within(Duration::from_secs(10)).await.json();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["fingerprint"], alert["fingerprint"]);
    assert!(resolved["alerts"][0]["ends_at"].is_string(), "{resolved}");
    let mail = smtp.next().await;
    let subject = mail["subject"].as_str().unwrap_or("");
    assert!(
        subject.starts_with("[RESOLVED] missed_call_streak"),
        "{subject}"
    );
    // One firing and one resolved message each, nothing else (no other
    // user of the trace reaches five misses in a row).
    assert_quiet(&mut hook, Duration::from_secs(2)).await;
    assert_eq!(d.notifications("ops", "sent").await, 2);
    assert_eq!(d.notifications("oncall", "sent").await, 2);
    d.stop().await;
}

/// A config whose only receiver, `ops`, is a webhook on a port where
/// nothing listens yet, and the address to bring it up on.
fn webhook_down(dirs: &Dirs) -> (Config, SocketAddr) {
    let addr = free_port();
    let mut config = dirs.config();
    config.alerting.group_wait = Duration::ZERO;
    add_receiver(&mut config, "ops", webhook(format!("http://{addr}/hook")));
    (config, addr)
}

/// Brings the webhook up on `addr` and expects alice's firing alert there
/// once, and nothing else.
async fn expect_alice_once(d: &Running, addr: SocketAddr) {
    let mut hook = Sink::start_on(addr, Canned::new(200, "")).await;
    // With max_retry_interval = 1s the next attempt comes within ~1 s.
    let got = hook.next_within(Duration::from_secs(10)).await.json();
    assert_eq!(got["status"], "firing");
    assert_eq!(users(&got), [("alice".to_string(), "firing".to_string())]);
    assert_quiet(&mut hook, Duration::from_secs(3)).await;
    assert_eq!(d.notifications("ops", "sent").await, 1);
}

#[tokio::test]
async fn a_webhook_down_for_30s_gets_the_alert_exactly_once() {
    let dirs = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
    let (config, addr) = webhook_down(&dirs);
    let d = Running::start(config).await;

    let t0 = Instant::now();
    d.start_call("alice", "iOS", "c1").await;
    // The first attempts are refused while nothing listens.
    d.wait_notifications("ops", "failed", 2, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(t0.elapsed())).await;
    expect_alice_once(&d, addr).await;
    d.stop().await;
}

#[tokio::test]
async fn a_restart_while_retrying_still_delivers_exactly_once() {
    let dirs = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
    let (config, addr) = webhook_down(&dirs);
    let d = Running::start(config.clone()).await;
    d.start_call("alice", "iOS", "c1").await;
    d.wait_notifications("ops", "failed", 1, Duration::from_secs(10))
        .await;
    d.stop().await;

    // Same state dir: the queued notification and the alert's state
    // (firing, already notified) come back. The rebuilt window still
    // fires; that must not notify again.
    let d = Running::start(config).await;
    expect_alice_once(&d, addr).await;
    d.stop().await;
}

#[tokio::test]
async fn the_admin_api_wants_the_bearer_token_when_one_is_set() {
    let dirs = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
    let mut config = dirs.config();
    config.server.admin_token = "s3cret".into();
    let d = Running::start(config).await;
    for path in ["/api/v1/alerts", "/api/v1/rules", "/api/v1/silences"] {
        // Loopback alone is not enough once a token is set.
        let (status, body) = d.api(Method::GET, path, None, None).await;
        assert_eq!(status, 401, "{path} without a token: {body}");
        let (status, _) = d.api(Method::GET, path, Some("wrong"), None).await;
        assert_eq!(status, 401, "{path} with a wrong token");
        let (status, body) = d.api(Method::GET, path, Some("s3cret"), None).await;
        assert_eq!(status, 200, "{path} with the token: {body}");
    }
    let (status, _) = d
        .api(Method::DELETE, "/api/v1/silences/x", Some("s3cre"), None)
        .await;
    assert_eq!(status, 401);
    // Operational endpoints stay open.
    let metrics = d.metrics().await;
    assert!(metrics.contains("callwatch_"), "{metrics}");
    d.stop().await;
}
