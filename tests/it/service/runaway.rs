//! A runaway rule next to a normal one, on the real binary under load:
//! the runaway rule is suspended (logged once, counted, built-in alert in
//! the API and notified), normal callbacks never get 503 and the normal
//! rule keeps firing; a reload of a fixed version resumes it; SIGTERM is
//! quick. And a stop that leaves callbacks unevaluated: they come back
//! from the journal at the next start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::daemon::{get_json, post_start_call, Home, Proc};
use super::sink::Sink;
use crate::support::metric;

/// Burns all of `rules.max_operations` on every check.
const RUNAWAY: &str = r#"const RULE = #{ events: ["start_call"], window: "30m" };

fn check(w) {
    let n = 0;
    loop { n += 1; }
}
"#;

const FIXED: &str = r#"const RULE = #{ events: ["start_call"], window: "30m" };

fn check(w) {
    false
}
"#;

const NORMAL: &str = r#"const RULE = #{ events: ["start_call"], window: "30m" };

fn check(w) {
    if w.count() >= 5900 { `${w.count()} calls started` }
}
"#;

/// Posts `per_user` start_call callbacks for each of `users` users from
/// 16 clients; returns (200s, other statuses).
async fn load(home: &Home, users: usize, per_user: usize) -> (u64, Vec<u16>) {
    let ok = Arc::new(AtomicU64::new(0));
    let url = home.url("/callback?sdkappid=1400000001&command=caller_start_call");
    let mut tasks = Vec::new();
    for t in 0..16 {
        let (ok, url) = (ok.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut other = Vec::new();
            for round in 0..per_user {
                for u in (t..users).step_by(16) {
                    let (user, call) = (format!("u{u}"), format!("{u}-{round}"));
                    let r = post_start_call(&client, &url, &user, &call).await;
                    match r.status().as_u16() {
                        200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        s => other.push(s),
                    }
                }
            }
            other
        }));
    }
    let mut other = Vec::new();
    for t in tasks {
        other.extend(t.await.expect("load task"));
    }
    (ok.load(Ordering::Relaxed), other)
}

/// Polls `/api/v1/alerts` until `want` holds for its alerts.
async fn wait_alerts(home: &Home, what: &str, want: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let v = get_json(&home.url("/api/v1/alerts")).await;
        let alerts = v["alerts"].as_array().cloned().unwrap_or_default();
        if want(&alerts) {
            return alerts;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: never seen; alerts: {}",
            alerts.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_suspension(a: &Value) -> bool {
    a["rule"] == "callwatch_rule_suspended" && a["labels"]["rule"] == "runaway"
}

/// SIGTERM, then how long the exit took.
async fn terminate(mut daemon: Proc) -> Duration {
    let t = Instant::now();
    daemon.signal("TERM");
    loop {
        if let Some(status) = daemon.child.try_wait().expect("wait") {
            assert!(status.success(), "exit status {status}");
            return t.elapsed();
        }
        assert!(t.elapsed() < Duration::from_secs(60), "SIGTERM ignored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_rule_is_suspended_and_everything_else_keeps_up() {
    const USERS: usize = 2000;
    let sink = Sink::start().await;
    // The runaway rule holds the engine for its allowance (0.25 × 2 s =
    // 0.5 s of engine time) before it is suspended; meanwhile 16 clients
    // queue 1 200 – 1 400 callbacks on a fast machine, which the 2 048
    // places absorb. (With a 4 s window, 1 s, they queued 2 500 and some
    // got 503.) A budget that never suspended it would fill the queue in
    // under a second of the 6 000 posts.
    let home = Home::new(
        &[("runaway", RUNAWAY), ("normal", NORMAL)],
        &format!(
            "[server]\nqueue_capacity = 2048\n\
             [rules]\ncpu_budget = 0.25\ncpu_budget_window = \"2s\"\n{}",
            sink.config(r#"["rule"]"#)
        ),
    );
    let daemon = home.start().await;

    let t = Instant::now();
    let (ok, other) = load(&home, USERS, 3).await;
    eprintln!(
        "runaway: {ok} callbacks answered 200 in {:?}, {} otherwise",
        t.elapsed(),
        other.len()
    );
    assert!(other.is_empty(), "normal traffic refused: {other:?}");

    // Suspended: in the API, notified, counted, logged once.
    wait_alerts(&home, "suspension alert", |a| a.iter().any(is_suspension)).await;
    let notified = || {
        sink.bodies().iter().any(|b| {
            b["alerts"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|a| is_suspension(a) && a["status"] == "firing")
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !notified() {
        assert!(Instant::now() < deadline, "suspension never notified");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The normal rule kept up: it evaluated every callback, fired, and
    // was not suspended.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rules = get_json(&home.url("/api/v1/rules")).await;
        let normal = rules["rules"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == "normal"))
            .cloned()
            .expect("normal in /api/v1/rules");
        assert!(normal["suspended"].is_null(), "{normal}");
        // Every callback, plus ticks re-checking the firing alert.
        if normal["evaluations"].as_u64() >= Some(ok) {
            break;
        }
        assert!(Instant::now() < deadline, "normal rule behind: {normal}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_alerts(&home, "the normal rule's alert", |a| {
        a.iter()
            .any(|a| a["rule"] == "normal" && a["status"] == "firing")
    })
    .await;
    let rules = get_json(&home.url("/api/v1/rules")).await;
    let runaway = rules["rules"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == "runaway"))
        .cloned()
        .expect("runaway in /api/v1/rules");
    assert!(runaway["suspended"].is_string(), "{runaway}");
    let text = reqwest::get(home.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert_eq!(
        metric(
            &text,
            "callwatch_rule_suspensions_total",
            &[("rule", "runaway")]
        ),
        1.0
    );
    assert_eq!(
        home.stderr().matches("suspended until a reload").count(),
        1,
        "logged once"
    );

    // A fixed version resumes it and resolves the alert.
    home.write_rule("runaway", FIXED);
    let r = reqwest::Client::new()
        .post(home.url("/api/v1/reload"))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status().as_u16(), 200);
    wait_alerts(&home, "suspension resolved", |a| {
        !a.iter().any(is_suspension)
    })
    .await;
    let rules = get_json(&home.url("/api/v1/rules")).await;
    assert!(
        rules["rules"]
            .as_array()
            .is_some_and(|r| r.iter().all(|r| r["suspended"].is_null())),
        "{rules}"
    );

    let took = terminate(daemon).await;
    eprintln!("runaway: SIGTERM exit after {took:?}");
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
}

/// Slow (about 20 000 loop rounds a check) but within its budget.
const SLOW_COUNT: &str = r#"const RULE = #{ events: ["start_call"], window: "1h" };

fn check(w) {
    let i = 0;
    while i < 20000 { i += 1; }
    if w.count() >= 300 { #{ summary: `${w.count()} calls`, value: w.count() } }
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_its_timeout_and_the_next_start_evaluates_the_rest() {
    let home = Home::new(
        &[("slow_count", SLOW_COUNT)],
        "[server]\nshutdown_timeout = \"2s\"\n[rules]\ncpu_budget = 0\nmax_operations = 1000000\n",
    );
    let daemon = home.start().await;
    let (ok, other) = load(&home, 100, 3).await;
    assert_eq!((ok, other.len()), (300, 0));
    let took = terminate(daemon).await;
    eprintln!("slow rule: SIGTERM exit after {took:?} with callbacks queued");
    // The log line below is the proof the timeout was kept; the bound is
    // only a backstop, wide enough for a loaded CI host (6.7 s was seen
    // at load 20 for the 2 s timeout).
    assert!(took < Duration::from_secs(15), "SIGTERM took {took:?}");
    assert!(
        home.stderr().contains("shutdown_timeout reached"),
        "the engine queue was still full at the deadline:\n{}",
        home.stderr()
    );

    // Every acknowledged callback is counted after the restart.
    let _daemon = home.start().await;
    let alerts = wait_alerts(&home, "slow_count alert", |a| {
        a.iter().any(|a| a["rule"] == "slow_count")
    })
    .await;
    let alert = alerts
        .iter()
        .find(|a| a["rule"] == "slow_count")
        .expect("found above");
    assert_eq!(alert["value"], 300, "{alert}");
}
