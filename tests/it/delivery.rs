//! Notifications through the whole daemon: callbacks posted over HTTP to
//! an in-process daemon, alerts delivered to a real SMTP server and real
//! HTTP servers; outages, restarts, chat-service errors, silences, the
//! admin API (auth, silences in Alertmanager's names, error bodies) and
//! `callwatch notify-test`.

mod admin_api;
pub(crate) mod harness;
pub(crate) mod trace;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use callwatch::config::{Config, ReceiverKind};

use crate::notify::http_sink::{Canned, Sink};
use crate::notify::smtp_sink::SmtpSink;
use harness::{
    add_mail_receiver, add_receiver, free_port, now_secs, short_first_call_rule, webhook,
    webhook_and_short_rule, Dirs, Running, FIRST_CALL_RULE,
};

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
    // The repo's rule, with the streak threshold lowered to what the
    // fixture's 42 s of an offline user reach (5 unanswered calls); the
    // production threshold (7) is covered by the replay fixtures.
    let source = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/missed_call_streak.rhai"),
    )
    .expect("repo rule");
    assert!(
        source.contains("n >= 7"),
        "threshold moved; update this test"
    );
    let source = source.replace("n >= 7", "n >= 5");
    let dirs = Dirs::with_rules(&[("missed_call_streak", &source)]);
    let mut config = dirs.config();
    add_mail_receiver(&mut config, smtp.port);
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

/// Asserts `/metrics` has the notifications counter with `labels_value`.
async fn assert_in_metrics(d: &Running, labels_value: &str) {
    let metrics = d.metrics().await;
    let line = format!("callwatch_notifications_total{labels_value}");
    assert!(metrics.contains(&line), "{line} not in {metrics}");
}

#[tokio::test]
async fn a_chat_error_inside_a_200_is_a_failure_and_is_retried() {
    let sign_error = r#"{"errcode":310000,"errmsg":"sign not match"}"#;
    let mut robot = Sink::start(Canned::new(200, sign_error)).await;
    let dirs = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
    let mut config = dirs.config();
    config.alerting.group_wait = Duration::ZERO;
    let kind = ReceiverKind::Dingtalk {
        url: robot.url("/robot/send?access_token=t0ken"),
        secret: String::new(),
    };
    add_receiver(&mut config, "robot", kind);
    let d = Running::start(config).await;

    d.start_call("alice", "iOS", "c1").await;
    let first = robot.next().await.json();
    assert_eq!(first["msgtype"], "markdown");
    d.wait_notifications("robot", "failed", 1, Duration::from_secs(10))
        .await;
    assert_in_metrics(&d, r#"{receiver="robot",outcome="failed"}"#).await;
    assert_eq!(d.notifications("robot", "sent").await, 0);

    robot.reply(Canned::new(200, r#"{"errcode":0,"errmsg":"ok"}"#));
    d.wait_notifications("robot", "sent", 1, Duration::from_secs(10))
        .await;
    assert_in_metrics(&d, r#"{receiver="robot",outcome="sent"} 1"#).await;
    // Every attempt carried the same message; nothing more once it went.
    let mut last = first.clone();
    while let Some(r) = robot.try_next() {
        last = r.json();
    }
    assert_eq!(last, first);
    assert_quiet(&mut robot, Duration::from_secs(2)).await;
    assert_eq!(d.notifications("robot", "sent").await, 1);
    d.stop().await;
}

/// Posts a silence for `platform` ending in an hour; returns its id.
async fn silence_platform(d: &Running, platform: &str) -> String {
    let ends_at = callwatch::alert::format_rfc3339(now_secs() + 3600);
    let body = json!({
        "matchers": [{"name": "platform", "value": platform, "isRegex": false}],
        "endsAt": ends_at,
        "comment": "release rollout",
        "createdBy": "ops",
    });
    let (status, reply) = d
        .api(Method::POST, "/api/v1/silences", None, Some(&body))
        .await;
    assert_eq!(status, 200, "{reply}");
    reply["silenceID"]
        .as_str()
        .expect("silenceID in reply")
        .to_string()
}

/// The silences listed by the API, as (id, state) pairs.
async fn silences(d: &Running) -> Vec<(String, String)> {
    let (status, list) = d.api(Method::GET, "/api/v1/silences", None, None).await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .expect("a list")
        .iter()
        .map(|s| {
            assert_eq!(s["comment"], "release rollout");
            assert_eq!(s["createdBy"], "ops");
            assert_eq!(s["matchers"][0]["value"], "Android");
            (
                s["id"].as_str().unwrap_or("").to_string(),
                s["status"]["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Starts a call by `user` on `platform` and expects `user`'s alert alone
/// at `hook` (`sent`), or nothing at all (silenced).
async fn call_and_expect(d: &Running, hook: &mut Sink, user: &str, platform: &str, sent: bool) {
    d.start_call(user, platform, &format!("call-{user}")).await;
    if sent {
        let got = hook.next_within(Duration::from_secs(10)).await.json();
        assert_eq!(users(&got), [(user.to_string(), "firing".to_string())]);
    } else {
        assert_quiet(hook, Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn silences_stop_matching_alerts_survive_restarts_and_expire() {
    let mut hook = Sink::start(Canned::new(200, "")).await;
    let dirs = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
    let mut config = dirs.config();
    config.alerting.group_wait = Duration::ZERO;
    // One notification per user, so each shows exactly who got through.
    config.alerting.group_by = vec!["rule".into(), "user_id".into()];
    add_receiver(&mut config, "ops", webhook(hook.url("/hook")));
    let d = Running::start(config.clone()).await;

    let id = silence_platform(&d, "Android").await;
    assert_eq!(silences(&d).await, [(id.clone(), "active".to_string())]);
    call_and_expect(&d, &mut hook, "alice", "Android", false).await;
    call_and_expect(&d, &mut hook, "bob", "iOS", true).await;
    assert_eq!(d.notifications("ops", "silenced").await, 1);
    // A silenced alert is still tracked.
    let (_, alerts) = d.api(Method::GET, "/api/v1/alerts", None, None).await;
    assert_eq!(
        alerts["alerts"].as_array().map(Vec::len),
        Some(2),
        "{alerts}"
    );
    d.stop().await;

    let d = Running::start(config).await;
    assert_eq!(silences(&d).await, [(id.clone(), "active".to_string())]);
    call_and_expect(&d, &mut hook, "carol", "Android", false).await;
    call_and_expect(&d, &mut hook, "dave", "iOS", true).await;

    let path = format!("/api/v1/silences/{id}");
    let (status, expired) = d.api(Method::DELETE, &path, None, None).await;
    assert_eq!(status, 200, "{expired}");
    assert_eq!(silences(&d).await, [(id.clone(), "expired".to_string())]);
    // The alerts it held back that still fire go out now, not at their next
    // repeat: carol's, and alice's from before the restart.
    let mut unsilenced = Vec::new();
    for _ in 0..2 {
        let got = hook.next_within(Duration::from_secs(10)).await.json();
        unsilenced.extend(users(&got));
    }
    unsilenced.sort();
    let firing = |u: &str| (u.to_string(), "firing".to_string());
    assert_eq!(unsilenced, [firing("alice"), firing("carol")]);
    call_and_expect(&d, &mut hook, "erin", "Android", true).await;
    let (status, _) = d
        .api(Method::DELETE, "/api/v1/silences/nope", None, None)
        .await;
    assert_eq!(status, 404);
    d.stop().await;
}

/// Runs `callwatch notify-test -c config receiver`: (exit code, stdout, stderr).
async fn notify_test_cli(config: &std::path::Path, receiver: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .arg("notify-test")
        .arg("-c")
        .arg(config)
        .arg(receiver)
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run callwatch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn notify_test_reports_success_and_the_services_error() {
    let mut hook = Sink::start(Canned::new(200, "")).await;
    let sign_error = r#"{"errcode":310000,"errmsg":"sign not match"}"#;
    let mut robot = Sink::start(Canned::new(200, sign_error)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("callwatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[receivers]]
name = "ops"
type = "webhook"
url = "{}"

[[receivers]]
name = "robot"
type = "dingtalk"
url = "{}"
secret = "SECtest"
"#,
            hook.url("/hook"),
            robot.url("/robot/send?access_token=t0ken"),
        ),
    )
    .expect("write config");

    let (code, stdout, stderr) = notify_test_cli(&config, "ops").await;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.starts_with("ok: "), "{stdout}");
    assert!(stdout.contains("webhook"), "{stdout}");
    let got = hook.next().await.json();
    assert_eq!(got["alerts"][0]["rule"], "callwatch_test");

    let (code, stdout, stderr) = notify_test_cli(&config, "robot").await;
    assert_ne!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("errcode 310000"), "{stderr}");
    assert!(stderr.contains("sign not match"), "{stderr}");
    // The robot URL's token stays out of the message.
    assert!(!stderr.contains("t0ken"), "{stderr}");
    robot.next().await;

    let (code, _, stderr) = notify_test_cli(&config, "nobody").await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nobody"), "{stderr}");
}

#[tokio::test]
async fn a_resolve_that_happened_while_down_is_sent_after_the_restart() {
    let (mut hook, _dirs, config) = webhook_and_short_rule(Canned::new(200, "")).await;

    let d = Running::start(config.clone()).await;
    d.start_call("alice", "iOS", "c1").await;
    let fired = hook.next().await.json();
    assert_eq!(users(&fired), [("alice".to_string(), "firing".to_string())]);
    d.stop().await;

    // The window empties while the daemon is down.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let d = Running::start(config).await;
    let resolved = hook.next().await.json();
    assert_eq!(
        users(&resolved),
        [("alice".to_string(), "resolved".to_string())]
    );
    assert_eq!(
        resolved["alerts"][0]["starts_at"],
        fired["alerts"][0]["starts_at"]
    );
    assert_quiet(&mut hook, Duration::from_secs(2)).await;
    d.stop().await;
}

#[tokio::test]
async fn a_resolved_mail_answers_the_firing_mail_across_a_restart() {
    let Some(mut smtp) = SmtpSink::start(None).await else {
        return;
    };
    let mut hook = Sink::start(Canned::new(200, "")).await;
    let rule = short_first_call_rule().replace(
        r#"severity: "warning","#,
        r#"severity: "warning",
    annotations: #{
        description: "{{ labels.user_id }} started a call on {{ labels.platform }}",
        runbook_url: "https://wiki.example.com/first-call",
    },"#,
    );
    let dirs = Dirs::with_rules(&[("first_call", &rule)]);
    let mut config = dirs.config();
    config.alerting.group_wait = Duration::ZERO;
    config.alerting.timezone = "Asia/Shanghai".into();
    config.server.external_url = "https://cw.example.com/".into();
    add_mail_receiver(&mut config, smtp.port);
    add_receiver(&mut config, "ops", webhook(hook.url("/hook")));

    let d = Running::start(config.clone()).await;
    d.start_call("alice", "iOS", "call-alice-1").await;
    let fired = smtp.next().await;
    let subject = fired["subject"].as_str().unwrap_or_default();
    assert_eq!(
        subject,
        "[FIRING:1] first_call (warning) platform=iOS user_id=alice"
    );
    let first_id = fired["message_id"]
        .as_str()
        .expect("a Message-ID")
        .to_string();
    assert_eq!(fired["in_reply_to"], Value::Null);
    for part in ["body", "html"] {
        let text = fired[part].as_str().unwrap_or_default();
        for want in [
            "alice started a call on iOS",
            "https://wiki.example.com/first-call",
            "call-alice-1",
            "CST (+08:00)",
        ] {
            assert!(text.contains(want), "{want:?} not in {part}: {text}");
        }
    }
    let body = hook.next().await.json();
    let alert = &body["alerts"][0];
    assert_eq!(alert["evidence"][0]["call_id"], "call-alice-1");
    let url = format!(
        "https://cw.example.com/ui/alerts/{}",
        alert["fingerprint"].as_str().unwrap_or_default()
    );
    assert_eq!(alert["url"], url.as_str());
    d.stop().await;

    // The window empties while the daemon is down; the resolve goes out
    // after the restart and still answers the first mail.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let d = Running::start(config).await;
    let resolved = smtp.next().await;
    assert!(
        resolved["subject"]
            .as_str()
            .is_some_and(|s| s.starts_with("[RESOLVED] first_call")),
        "{resolved}"
    );
    assert_eq!(resolved["in_reply_to"], first_id.as_str());
    assert_eq!(resolved["references"], first_id.as_str());
    assert_ne!(resolved["message_id"], first_id.as_str());
    let text = resolved["body"].as_str().unwrap_or_default();
    assert!(text.contains("expired"), "{text}");
    let body = hook.next().await.json();
    assert_eq!(body["alerts"][0]["reason"], "expired");
    d.stop().await;
}
