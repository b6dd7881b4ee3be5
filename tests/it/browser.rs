//! The web console in a real headless Chromium against the real daemon,
//! fed by `callwatch simulate --post`: every page loads without console
//! errors and fits a phone; the simulated anomaly's alert shows with its
//! evidence, a silence made on its page keeps its notifications from a
//! real webhook sink until it is expired on the silences page; the live
//! callbacks view shows a new callback without a reload and filters; the
//! playground backtests a rule and shows a syntax error at its line.
//! With an admin token, a browser on another host (a network namespace)
//! gets the login form, a wrong token is refused, the right one opens a
//! session, and cross-site posts are refused.

mod driver;
mod login;

use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::Value;

use crate::service::daemon::{example_rules, get_json, Home};
use crate::service::sink::Sink;
use driver::Browser;

/// Webhook on every alert at once, a repeat every 2 s while one fires
/// (so a silence has notifications to keep back), ticks every second.
fn config(sink: &Sink) -> String {
    let hook = sink
        .config("[\"rule\"]")
        .replace("[alerting]\n", "[alerting]\nrepeat = \"2s\"\n");
    format!("{hook}\n[rules]\ntick = \"1s\"\n")
}

/// Sends simulated traffic with user u0007 offline to the daemon; returns
/// when it has all been accepted.
fn simulate_offline_user(home: &Home) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .args(["simulate", "--post", &home.url("/callback")])
        .args([
            "--calls", "240", "--rate", "4", "--speed", "30", "--users", "30",
        ])
        .args(["--family", "a", "--anomaly", "offline:user=u0007"])
        .output()
        .expect("run callwatch simulate");
    assert!(
        out.status.success(),
        "simulate --post failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits for the active alert of `rule` for `user` (up to 30 s).
async fn wait_alert(home: &Home, rule: &str, user: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alerts = get_json(&home.url("/api/v1/alerts")).await;
        let found = alerts["alerts"].as_array().and_then(|l| {
            l.iter()
                .find(|a| {
                    a["rule"] == rule && a["labels"]["user_id"] == user && a["status"] == "firing"
                })
                .cloned()
        });
        if let Some(a) = found {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "no firing {rule} for {user}: {alerts}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A `caller_start_call` callback from `user`, posted now.
async fn start_call(client: &reqwest::Client, home: &Home, user: &str) {
    crate::service::reload::post_callback(client, home, "1400000001", "caller_start_call", user)
        .await;
}

/// Notifications the sink got about the alert `fingerprint`.
fn notified(sink: &Sink, fingerprint: &str) -> usize {
    sink.bodies()
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["fingerprint"] == fingerprint)
        .count()
}

async fn wait_notified(sink: &Sink, fingerprint: &str, more_than: usize, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while notified(sink, fingerprint) <= more_than {
        assert!(Instant::now() < deadline, "no notification {why}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens `path`, waits for `css`, checks the console stayed clean and the
/// page fits a phone, and shoots it.
async fn visit(b: &Browser, home: &Home, path: &str, css: &str, shot: &str) {
    b.open(&home.url(path), css).await;
    // Scripts fetch after load; give them a moment to fail, if they do.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "{path}: console errors: {errors:#?}");
    assert!(
        !b.overflows_phone().await,
        "{path} scrolls sideways at 360 px"
    );
    b.shoot(shot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_alerts_silences_in_a_real_browser() {
    let Some(b) = Browser::start_or_skip().await else {
        return;
    };
    let sink = Sink::start().await;
    let home = Home::new(&example_rules(&["missed_call_streak"]), &config(&sink));
    let _daemon = home.start().await;
    simulate_offline_user(&home);
    let alert = wait_alert(&home, "missed_call_streak", "u0007").await;
    let fp = alert["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();

    // The alert on the list, with its evidence.
    visit(
        &b,
        &home,
        "/ui/alerts",
        &format!("li[data-fingerprint='{fp}']"),
        "alerts",
    )
    .await;
    let card = b
        .client
        .find(Locator::Css(&format!("li[data-fingerprint='{fp}']")))
        .await
        .expect("alert card");
    let text = card.html(false).await.expect("card html");
    assert!(text.contains("u0007") && text.contains("firing"), "{text}");
    assert!(
        text.contains("Evidence:") && text.contains("not_answer_call"),
        "{text}"
    );

    for (path, css, shot) in [
        ("/ui/rules", "table.rules", "rules"),
        ("/ui/rules/missed_call_streak", "#source", "rule"),
        ("/ui/silences", "#matchers", "silences"),
        ("/ui/playground", "#source", "playground"),
    ] {
        visit(&b, &home, path, css, shot).await;
    }

    // Repeats arrive while it fires: that is what the silence must stop.
    let before = notified(&sink, &fp);
    wait_notified(&sink, &fp, before, "repeated while firing").await;

    // Silence it from its page, prefilled from its labels.
    visit(
        &b,
        &home,
        &format!("/ui/alerts/{fp}"),
        "#silence-form",
        "alert",
    )
    .await;
    let prefilled = b
        .client
        .find(Locator::Css("#matchers"))
        .await
        .expect("matchers")
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default();
    assert!(prefilled.contains("user_id=u0007"), "{prefilled}");
    b.set_value("#comment", "u0007 is on holiday").await;
    b.click("#silence-form button[type=submit]").await;
    b.wait_text("#alert-state", "silenced", |t| t == "silenced")
        .await;
    let silenced_at = notified(&sink, &fp);
    // Three repeat intervals: without the silence, at least one would go.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        notified(&sink, &fp),
        silenced_at,
        "a notification went out for a silenced alert"
    );
    let api = get_json(&home.url("/api/v1/alerts")).await;
    assert!(api.to_string().contains("silenced_by"), "{api}");

    // Expire it from the silences page: the alert goes out again.
    b.open(&home.url("/ui/silences"), "li.silence.state-active")
        .await;
    b.click("li.silence.state-active form button").await;
    b.client.accept_alert().await.expect("confirm the expiry");
    b.wait_for("li.silence.state-expired").await;
    wait_notified(&sink, &fp, silenced_at, "after the silence expired").await;
    b.open(&home.url(&format!("/ui/alerts/{fp}")), "#alert-state")
        .await;
    b.wait_text("#alert-state", "firing", |t| t == "firing")
        .await;
    // Its history: the firing and the webhook deliveries.
    let t = b
        .wait_text("#transitions", "the firing", |t| t.contains("firing"))
        .await;
    assert!(t.contains("pending") || t.contains("inactive"), "{t}");
    let n = b
        .wait_text("#notifications", "the webhook", |t| t.contains("hook"))
        .await;
    assert!(n.contains("delivered") || n.contains("sent"), "{n}");
    b.shoot("alert-history").await;
    assert!(b.console_errors().await.is_empty());
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_callbacks_live_and_playground_in_a_real_browser() {
    let Some(b) = Browser::start_or_skip().await else {
        return;
    };
    let home = Home::new(
        &example_rules(&["missed_call_streak"]),
        "[rules]\ntick = \"1s\"\n",
    );
    let _daemon = home.start().await;
    simulate_offline_user(&home);
    let client = reqwest::Client::new();

    // Live: a callback posted now shows within 2 s, without a reload.
    visit(&b, &home, "/ui/callbacks", "#events tbody tr", "callbacks").await;
    b.wait_text("#live-state", "live", |t| t.starts_with("live"))
        .await;
    let posted = Instant::now();
    start_call(&client, &home, "probe-live").await;
    b.wait_text("#events tbody", "the new callback", |t| {
        t.contains("probe-live")
    })
    .await;
    let shown = posted.elapsed();
    assert!(shown < Duration::from_secs(2), "shown after {shown:?}");
    let bars = b
        .client
        .find_all(Locator::Css("#per-minute rect"))
        .await
        .expect("bars");
    assert!(!bars.is_empty(), "the per-minute chart has bars");

    // Filters: only the filtered user's callbacks, also live.
    b.open(&home.url("/ui/callbacks?user=probe-a"), "#events")
        .await;
    b.wait_text("#live-state", "live", |t| t.starts_with("live"))
        .await;
    start_call(&client, &home, "probe-b").await;
    start_call(&client, &home, "probe-a").await;
    let rows = b
        .wait_text("#events tbody", "probe-a", |t| t.contains("probe-a"))
        .await;
    assert!(!rows.contains("probe-b") && !rows.contains("u00"), "{rows}");
    assert!(b.console_errors().await.is_empty());

    // Playground: the missed-call rule over the journal finds u0007.
    let source = example_rules(&["missed_call_streak"]).remove(0).1;
    b.open(&home.url("/ui/playground"), "#source").await;
    b.set_value("#source", &source).await;
    b.click("#run").await;
    let table = b
        .wait_text("#backtest-alerts", "u0007's alert", |t| t.contains("u0007"))
        .await;
    assert!(table.contains("firing"), "{table}");
    b.wait_for("#timeline circle").await;
    b.shoot_at("playground-alerts", Some("#result")).await;

    // A syntax error shows at its line.
    let broken = "const RULE = #{ events: [\"start_call\"], window: \"1m\" };\n\nfn check(w) {\n    w.count( > 3\n}\n";
    b.set_value("#source", broken).await;
    b.click("#run").await;
    let err = b.wait_for("#errors li").await;
    assert_eq!(
        err.attr("data-line").await.expect("attr").as_deref(),
        Some("4")
    );
    let gutter = b
        .wait_text("#gutter", "the marked line", |t| t.contains("▶4"))
        .await;
    assert!(gutter.contains("▶4"), "{gutter}");
    b.shoot_at("playground-error", Some("#result")).await;
    b.close().await;
}
