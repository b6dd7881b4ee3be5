//! Hot reload of the real binary through `POST /api/v1/reload` and SIGHUP:
//! edits take effect without a restart, broken rules are refused with
//! `path:line:col` and the previous set keeps alerting, and an unchanged
//! rule keeps its windows and its firing alert (no second notification).
//!
//! The rules directory is also polled every 2 s. So that each reload here
//! is the one under test, edits keep the file's length and modification
//! time, which the poller compares.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::daemon::Home;
use super::sink::Sink;

const THRESHOLD: &str = r#"const RULE = #{
    events: ["not_answer_call"],
    group_by: ["user_id"],
    window: "30m",
};

fn check(w) {
    let n = w.count();
    if n >= 3 { `${w.key.user_id}: ${n} unanswered` }
}
"#;

const STEADY: &str = r#"const RULE = #{
    events: ["reject_call"],
    group_by: ["user_id"],
    window: "30m",
};

fn check(w) {
    w.count() >= 2
}
"#;

/// Rewrites `path` with `text` (same length) and puts the old modification
/// time back, so only an explicit reload notices.
fn edit_unnoticed(path: &Path, text: &str) {
    let before = std::fs::metadata(path).expect("rule metadata");
    assert_eq!(before.len() as usize, text.len(), "edits keep the length");
    std::fs::write(path, text).expect("write rule");
    let f = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open rule");
    f.set_modified(before.modified().expect("mtime"))
        .expect("restore mtime");
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Posts one legacy callee callback (`event` by `user`) and expects a 200.
pub async fn post_event(client: &reqwest::Client, home: &Home, user: &str, event: &str) {
    let command = format!("callee_{event}");
    post_callback(client, home, "1400000001", &command, user).await;
}

/// Posts one legacy callback (`command`, e.g. `caller_start_call`, by
/// `user` of app `sdkappid`) now, and expects a 200.
pub async fn post_callback(
    client: &reqwest::Client,
    home: &Home,
    sdkappid: &str,
    command: &str,
    user: &str,
) {
    let call_id: u64 = rand::random();
    let url = home.url(&format!(
        "/callback?sdkappid={sdkappid}&command={command}&contenttype=json&optplatform=iOS"
    ));
    let (role, event) = command.split_once('_').unwrap_or(("", command));
    let body = json!({
        "UserId": user, "RoomId": "1", "TotalNum": 2, "MediaType": "Audio",
        "CallType": "Single", "CallId": format!("{call_id:x}"), "Role": role,
        "Event": event, "CallResult": "", "EventTime": now_secs(),
    });
    let r = client
        .post(url)
        .body(body.to_string())
        .send()
        .await
        .expect("post callback");
    assert_eq!(r.status(), 200, "callback refused");
}

/// Waits until the sink has a firing alert of `rule` for `user`.
pub async fn wait_firing(sink: &Sink, rule: &str, user: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = sink.bodies().iter().any(|b| {
            b["alerts"].as_array().into_iter().flatten().any(|a| {
                a["rule"] == rule && a["labels"]["user_id"] == user && a["status"] == "firing"
            })
        });
        if found {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no firing {rule} alert for {user}; received: {:?}",
            sink.bodies()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many firing notifications of `rule` for `user` arrived.
fn firing_count(sink: &Sink, rule: &str, user: &str) -> usize {
    sink.bodies()
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["rule"] == rule && a["labels"]["user_id"] == user && a["status"] == "firing")
        .count()
}

/// `POST /api/v1/reload`: status and JSON body.
async fn reload(client: &reqwest::Client, home: &Home) -> (u16, Value) {
    let r = client
        .post(home.url("/api/v1/reload"))
        .send()
        .await
        .expect("reload");
    (r.status().as_u16(), r.json().await.expect("reload body"))
}

/// Waits until stderr shows `needle` after the first `after` bytes.
async fn wait_log(home: &Home, after: usize, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = home.stderr();
        if log.get(after..).is_some_and(|l| l.contains(needle)) {
            return;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in log:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_by_api_and_sighup() {
    let sink = Sink::start().await;
    let home = Home::new(
        &[("threshold", THRESHOLD), ("steady", STEADY)],
        &sink.config(r#"["rule", "user_id"]"#),
    );
    let mut daemon = home.start().await;
    let client = reqwest::Client::new();
    let rule_path = home.rules_dir().join("threshold.rhai");

    // The unchanged rule fires once before any reload; frank is one event
    // short of firing.
    post_event(&client, &home, "bob", "reject_call").await;
    post_event(&client, &home, "bob", "reject_call").await;
    post_event(&client, &home, "frank", "reject_call").await;
    wait_firing(&sink, "steady", "bob").await;
    post_event(&client, &home, "alice", "not_answer_call").await;
    post_event(&client, &home, "alice", "not_answer_call").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(firing_count(&sink, "threshold", "alice"), 0, "3 needed yet");

    // An edited threshold takes effect at once, windows rebuilt from the
    // journal: alice's two events now fire it.
    edit_unnoticed(&rule_path, &THRESHOLD.replace("n >= 3", "n >= 2"));
    let (status, report) = reload(&client, &home).await;
    assert_eq!(status, 200);
    assert_eq!(
        report["report"]["changed"],
        json!(["threshold"]),
        "{report}"
    );
    wait_firing(&sink, "threshold", "alice").await;

    // The unchanged rule kept its window: one more event fires frank.
    post_event(&client, &home, "frank", "reject_call").await;
    wait_firing(&sink, "steady", "frank").await;

    // A broken rule is refused with path:line:col; the old set keeps
    // alerting.
    let broken = THRESHOLD
        .replace("n >= 3", "n >= 2")
        .replace("fn check(w) {", "fn check(w) ]");
    edit_unnoticed(&rule_path, &broken);
    let (status, body) = reload(&client, &home).await;
    assert_eq!(status, 400);
    let errors = body["errors"].to_string();
    let at = format!("{}:7:", rule_path.display());
    assert!(errors.contains(&at), "errors name {at}…: {errors}");
    // The position is also data, for tools that jump to it.
    let detail = &body["details"][0];
    assert_eq!(detail["kind"], "rule", "{body}");
    assert_eq!(detail["path"], rule_path.display().to_string(), "{body}");
    assert_eq!(detail["line"], 7, "{body}");
    assert!(detail["col"].as_u64().is_some_and(|c| c > 0), "{body}");
    post_event(&client, &home, "carol", "not_answer_call").await;
    post_event(&client, &home, "carol", "not_answer_call").await;
    wait_firing(&sink, "threshold", "carol").await;

    // The same through SIGHUP.
    let mark = home.stderr().len();
    daemon.signal("HUP");
    wait_log(&home, mark, "reload rejected").await;
    let log = home.stderr()[mark..].to_string();
    assert!(log.contains("threshold.rhai:7:"), "{log}");
    // In the log too the position is data: fields a log search can use.
    let path = format!("path={:?}", rule_path.display().to_string());
    for field in [path.as_str(), "kind=\"rule\"", "line=7", "col="] {
        assert!(log.contains(field), "the log line has {field}: {log}");
    }
    post_event(&client, &home, "dave", "not_answer_call").await;
    post_event(&client, &home, "dave", "not_answer_call").await;
    wait_firing(&sink, "threshold", "dave").await;

    // A good edit through SIGHUP takes effect.
    edit_unnoticed(&rule_path, &THRESHOLD.replace("n >= 3", "n >= 1"));
    let mark = home.stderr().len();
    daemon.signal("HUP");
    wait_log(&home, mark, "reloaded").await;
    post_event(&client, &home, "erin", "not_answer_call").await;
    wait_firing(&sink, "threshold", "erin").await;

    // Nothing already firing was notified again by any of the reloads.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (rule, user) in [
        ("steady", "bob"),
        ("steady", "frank"),
        ("threshold", "alice"),
        ("threshold", "carol"),
        ("threshold", "dave"),
    ] {
        assert_eq!(
            firing_count(&sink, rule, user),
            1,
            "{rule}/{user} notified once; received: {:?}",
            sink.bodies()
        );
    }
    assert!(
        daemon.child.try_wait().expect("wait").is_none(),
        "no restart"
    );

    // After reloads (which share the engine's queue) SIGTERM still drains
    // and exits 0.
    daemon.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = daemon.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "SIGTERM did not stop the daemon");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
}
