//! Inhibition in the real binary: an app-wide alert keeps the per-user
//! warnings of its app (not of another app) from the webhook, the admin
//! API shows them with `inhibited_by`, and when the app-wide alert
//! resolves, the user warning still firing goes out.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::daemon::{get_json, Home};
use super::reload::post_callback;
use super::sink::Sink;

/// Fires for an app while a call of the probe user `down` is in its 6 s
/// window: the stand-in for an app-wide flatline.
const APP_DOWN: &str = r#"
const RULE = #{ events: ["start_call"], group_by: ["sdkappid"], window: "6s", severity: "critical" };
fn filter(e) { e.user_id == "down" }
fn check(w) { w.count() > 0 }
"#;

/// A warning per user who starts a call (other than the probe).
const USER_CALLS: &str = r#"
const RULE = #{ events: ["start_call"], group_by: ["sdkappid", "user_id"], window: "1h", severity: "warning" };
fn filter(e) { e.user_id != "down" }
fn check(w) { w.count() > 0 }
"#;

const INHIBIT: &str = r#"
[[inhibit_rules]]
source_match = { rule = "app_down" }
target_match = { severity = "warning" }
equal = ["sdkappid"]

[rules]
tick = "1s"
"#;

async fn start_call(client: &reqwest::Client, home: &Home, sdkappid: &str, user: &str) {
    post_callback(client, home, sdkappid, "caller_start_call", user).await;
}

/// (rule, user_id, status) of every alert the sink received, in order.
fn received(sink: &Sink) -> Vec<(String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    sink.bodies()
        .iter()
        .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
        .map(|a| {
            (
                text(&a["rule"]),
                text(&a["labels"]["user_id"]),
                text(&a["status"]),
            )
        })
        .collect()
}

async fn wait_for(sink: &Sink, want: (&str, &str, &str)) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let want = (want.0.to_string(), want.1.to_string(), want.2.to_string());
    while !received(sink).contains(&want) {
        assert!(
            Instant::now() < deadline,
            "no {want:?}; received {:?}",
            received(sink)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_app_wide_alert_inhibits_user_alerts_of_its_app_until_it_resolves() {
    let sink = Sink::start().await;
    let home = Home::new(
        &[("app_down", APP_DOWN), ("user_calls", USER_CALLS)],
        &format!("{}{INHIBIT}", sink.config("[\"rule\"]")),
    );
    let daemon = home.start().await;
    let client = reqwest::Client::new();

    start_call(&client, &home, "1400000001", "down").await;
    wait_for(&sink, ("app_down", "", "firing")).await;
    start_call(&client, &home, "1400000001", "alice").await;
    start_call(&client, &home, "1400000002", "bob").await;
    wait_for(&sink, ("user_calls", "bob", "firing")).await;

    // The API shows alice's warning held back by app_down.
    let alerts = get_json(&home.url("/api/v1/alerts")).await;
    let list = alerts["alerts"].as_array().cloned().unwrap_or_default();
    let find = |rule: &str, user: &str| {
        list.iter()
            .find(|a| a["rule"] == rule && a["labels"]["user_id"].as_str().unwrap_or("") == user)
            .cloned()
            .unwrap_or_else(|| panic!("{rule}/{user} not in {alerts}"))
    };
    let down = find("app_down", "");
    let alice = find("user_calls", "alice");
    if down["status"] == "firing" {
        assert_eq!(
            alice["inhibited_by"],
            json!([down["fingerprint"]]),
            "{alerts}"
        );
        assert!(
            !received(&sink).iter().any(|(_, u, _)| u == "alice"),
            "alice's warning was sent while app_down fired: {:?}",
            received(&sink)
        );
    }
    assert_eq!(find("user_calls", "bob")["inhibited_by"], json!([]));
    assert_eq!(find("user_calls", "bob")["muted_by"], json!([]));

    // The probe's call leaves app_down's window: it resolves, and then
    // alice's warning, still firing, goes out. The two are different
    // groups, which a receiver may be sent in parallel, so their arrival
    // order is not promised; what is, is that alice's warning is sent only
    // once app_down has resolved.
    wait_for(&sink, ("user_calls", "alice", "firing")).await;
    wait_for(&sink, ("app_down", "", "resolved")).await;
    let arrivals = sink.arrivals();
    let alerts_of = |b: &Value| b["alerts"].as_array().cloned().unwrap_or_default();
    let resolved_at = arrivals
        .iter()
        .flat_map(|(_, b)| alerts_of(b))
        .find(|a| a["rule"] == "app_down" && a["status"] == "resolved")
        .and_then(|a| a["ends_at"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("app_down resolved without ends_at: {arrivals:?}"));
    let resolved_at = humantime::parse_rfc3339(&resolved_at).expect("ends_at is RFC 3339");
    let alice_at = arrivals
        .iter()
        .find(|(_, b)| {
            alerts_of(b)
                .iter()
                .any(|a| a["labels"]["user_id"] == "alice" && a["status"] == "firing")
        })
        .map(|(at, _)| *at)
        .expect("alice's warning arrived");
    assert!(
        alice_at >= resolved_at,
        "alice's warning arrived at {alice_at:?}, before app_down resolved at {resolved_at:?}"
    );
    daemon.kill();
}
