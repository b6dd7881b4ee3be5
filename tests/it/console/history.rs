//! `GET /api/v1/alerts/{fingerprint}`: an alert fired and resolved by
//! callbacks posted over HTTP, notified to a real webhook server that
//! first refuses: its transitions and every delivery outcome are in the
//! history, which survives a restart.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::delivery::harness::{webhook_and_short_rule, Running};
use crate::notify::http_sink::Canned;

#[tokio::test]
async fn an_alerts_transitions_and_notifications_are_kept() {
    let (mut hook, _dirs, config) = webhook_and_short_rule(Canned::new(503, "busy")).await;
    let d = Running::start(config.clone()).await;

    d.start_call("alice", "iOS", "c1").await;
    // Refused once, then taken on the retry.
    let first = hook.next().await.json();
    hook.reply(Canned::new(200, ""));
    let fingerprint = first["alerts"][0]["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    let path = format!("/api/v1/alerts/{fingerprint}");

    // While firing: the active alert, as GET /api/v1/alerts shows it.
    hook.next().await;
    d.wait_notifications("ops", "sent", 1, Duration::from_secs(5))
        .await;
    let (status, v) = d.api(Method::GET, &path, None, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["alert"]["status"], "firing", "{v}");
    assert_eq!(v["alert"]["labels"]["user_id"], "alice", "{v}");
    assert_eq!(v["alert"]["silenced_by"], serde_json::json!([]), "{v}");

    // The window empties: resolved and sent.
    let resolved = hook.next_within(Duration::from_secs(20)).await.json();
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
    d.wait_notifications("ops", "sent", 2, Duration::from_secs(5))
        .await;
    d.stop().await;

    // After a restart, from the store alone.
    let d = Running::start(config).await;
    let (status, v) = d.api(Method::GET, &path, None, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["alert"]["status"], "resolved", "{v}");
    assert_eq!(v["alert"]["fingerprint"], fingerprint.as_str(), "{v}");
    let transitions: Vec<(String, String)> = v["transitions"]
        .as_array()
        .expect("transitions")
        .iter()
        .map(|t| {
            (
                t["from"].as_str().unwrap_or("").to_string(),
                t["to"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        transitions,
        [
            ("inactive".to_string(), "firing".to_string()),
            ("firing".to_string(), "resolved".to_string())
        ],
        "{v}"
    );
    assert!(
        v["transitions"][0]["at"]
            .as_str()
            .is_some_and(|s| s.ends_with('Z')),
        "{v}"
    );
    assert_eq!(v["transitions"][1]["reason"], "expired", "{v}");
    let notes: Vec<(String, String, String, u64)> = v["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .map(|n| {
            (
                n["receiver"].as_str().unwrap_or("").to_string(),
                n["outcome"].as_str().unwrap_or("").to_string(),
                n["status"].as_str().unwrap_or("").to_string(),
                n["attempt"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let want = [
        ("ops", "failed", "firing", 1),
        ("ops", "sent", "firing", 2),
        ("ops", "sent", "resolved", 1),
    ];
    let want: Vec<(String, String, String, u64)> = want
        .iter()
        .map(|(r, o, s, a)| (r.to_string(), o.to_string(), s.to_string(), *a))
        .collect();
    assert_eq!(notes, want, "{v}");
    let error = v["notifications"][0]["error"].as_str().expect("error");
    assert!(error.contains("503"), "{error}");
    assert_eq!(v["notifications"][1]["error"], Value::Null);

    let (status, v) = d
        .api(Method::GET, "/api/v1/alerts/0123456789abcdef", None, None)
        .await;
    assert_eq!(status, 404, "{v}");
    assert!(v["error"]
        .as_str()
        .is_some_and(|e| e.contains("0123456789abcdef")));
    d.stop().await;
}
