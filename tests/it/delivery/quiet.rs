//! Inhibition through the whole daemon: an app-wide alert holds back the
//! per-user warnings of its app (shown in `/api/v1/alerts` with
//! `inhibited_by`), not those of another app, and when it resolves the
//! user alert still firing goes out.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::harness::{add_receiver, now_secs, start_call, webhook, Dirs, Running};
use super::users;
use crate::notify::http_sink::{Canned, Sink};
use callwatch::quiet::InhibitRule;

/// Fires for an app while a call by the probe user `down` is in its
/// (short) window: the stand-in for an app-wide flatline.
const APP_DOWN: &str = r#"
const RULE = #{ events: ["start_call"], group_by: ["sdkappid"], window: "3s", severity: "critical" };
fn filter(e) { e.user_id == "down" }
fn check(w) { w.count() > 0 }
"#;

/// A warning per user who starts a call (other than the probe).
const USER_CALLS: &str = r#"
const RULE = #{ events: ["start_call"], group_by: ["sdkappid", "user_id"], window: "1h", severity: "warning" };
fn filter(e) { e.user_id != "down" }
fn check(w) { w.count() > 0 }
"#;

fn with_app(mut record: Value, sdkappid: &str) -> Value {
    record["query"]["sdkappid"] = Value::from(sdkappid);
    record
}

#[tokio::test]
async fn an_app_wide_alert_inhibits_user_alerts_of_its_app_until_it_resolves() {
    let mut hook = Sink::start(Canned::new(200, "")).await;
    let dirs = Dirs::with_rules(&[("app_down", APP_DOWN), ("user_calls", USER_CALLS)]);
    let mut config = dirs.config();
    add_receiver(&mut config, "ops", webhook(hook.url("/hook")));
    config.inhibit_rules = vec![InhibitRule {
        source_match: [("rule".to_string(), "app_down".to_string())].into(),
        target_match: [("severity".to_string(), "warning".to_string())].into(),
        equal: vec!["sdkappid".into()],
        ..InhibitRule::default()
    }];
    let d = Running::start(config).await;

    let now = now_secs();
    d.post(&with_app(
        start_call("down", "iOS", "c0", now),
        "1400000001",
    ))
    .await;
    let first = hook.next_within(Duration::from_secs(10)).await.json();
    assert_eq!(first["alerts"][0]["rule"], "app_down");
    d.post(&with_app(
        start_call("alice", "iOS", "c1", now),
        "1400000001",
    ))
    .await;
    d.post(&with_app(start_call("bob", "iOS", "c2", now), "1400000002"))
        .await;
    let second = hook.next_within(Duration::from_secs(10)).await.json();
    assert_eq!(
        users(&second),
        [("bob".to_string(), "firing".to_string())],
        "alice's warning is inhibited: {second}"
    );

    // The API shows the inhibition while app_down fires.
    let (status, alerts) = d.api(Method::GET, "/api/v1/alerts", None, None).await;
    assert_eq!(status, 200);
    let list = alerts["alerts"].as_array().cloned().unwrap_or_default();
    let find = |rule: &str, user: &str| {
        list.iter()
            .find(|a| a["rule"] == rule && a["labels"]["user_id"].as_str().unwrap_or("") == user)
            .cloned()
            .unwrap_or_else(|| panic!("{rule}/{user} not in {alerts}"))
    };
    let down = find("app_down", "");
    assert_eq!(
        find("user_calls", "alice")["inhibited_by"],
        Value::from(vec![down["fingerprint"].clone()])
    );
    assert_eq!(
        find("user_calls", "bob")["inhibited_by"],
        Value::Array(vec![])
    );
    assert_eq!(find("user_calls", "bob")["muted_by"], Value::Array(vec![]));
    assert!(d.notifications("ops", "inhibited").await >= 1);

    // The probe's call leaves app_down's 3 s window: it resolves, and
    // alice's warning, still firing, goes out.
    let mut seen = Vec::new();
    while !seen.contains(&("alice".to_string(), "firing".to_string())) {
        let body = hook.next_within(Duration::from_secs(15)).await.json();
        seen.extend(users(&body));
    }
    assert!(
        seen.contains(&(String::new(), "resolved".to_string())),
        "app_down resolved first: {seen:?}"
    );
    d.stop().await;
}
