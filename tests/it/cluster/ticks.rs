//! Clock-driven transitions in a cluster: the engine tick comes from the
//! stream, so a `for:` ripening and a window emptying happen on every node
//! at the same tick, stamped alike, and the webhook gets each once.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::delivery::harness::{add_receiver, webhook, Dirs, Running};
use crate::notify::http_sink::{Canned, Sink};
use crate::support::nats::NatsCluster;

use super::nodes::cluster_config;

/// Pending at a call start, firing 3 s later, resolved once the call has
/// left the 8 s window: both changes are decided at a tick.
const RIPENING_RULE: &str = r#"
const RULE = #{
    events: ["start_call"],
    group_by: ["platform", "user_id"],
    window: "8s",
    for: "3s",
    severity: "warning",
};

fn check(w) {
    w.count() >= 1
}
"#;

/// `(to, at)` of each transition in an alert's history on one node.
async fn history(node: &Running, fingerprint: &str) -> Vec<(String, String)> {
    let (status, h) = node
        .api(
            Method::GET,
            &format!("/api/v1/alerts/{fingerprint}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{h}");
    h["transitions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            let field = |k: &str| t[k].as_str().unwrap_or("").to_string();
            (field("to"), field("at"))
        })
        .collect()
}

fn alert(body: &Value) -> &Value {
    &body["alerts"][0]
}

#[tokio::test]
async fn clock_driven_transitions_are_stamped_alike_on_every_node_and_sent_once() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let mut hook = Sink::start(Canned::new(200, "")).await;
    let tick = Duration::from_secs(2);
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..3 {
        let d = Dirs::with_rules(&[("ripening", RIPENING_RULE)]);
        let mut config = d.config();
        config.rules.tick = tick;
        config.alerting.group_wait = Duration::ZERO;
        config.alerting.group_interval = Duration::ZERO;
        config.alerting.group_by = vec!["rule".into(), "user_id".into()];
        add_receiver(&mut config, "ops", webhook(hook.url("/hook")));
        config.cluster = Some(cluster_config(&nats.urls(), &format!("cw-{i}")));
        nodes.push(Running::start(config).await);
        dirs.push(d);
    }

    nodes[1].start_call("carol", "Web", "call-carol").await;
    // Generous limits for a loaded machine: the rule needs about 3 s to
    // fire and 8 s more to resolve.
    let fired = hook.next_within(Duration::from_secs(60)).await.json();
    assert_eq!(alert(&fired)["status"], "firing", "{fired}");
    let resolved = hook.next_within(Duration::from_secs(60)).await.json();
    assert_eq!(alert(&resolved)["status"], "resolved", "{resolved}");
    assert_eq!(alert(&resolved)["starts_at"], alert(&fired)["starts_at"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    if let Some(extra) = hook.try_next() {
        panic!("sent again: {}", String::from_utf8_lossy(&extra.body));
    }

    // Every node went through the same changes at the same ticks: the
    // stream's, at multiples of `rules.tick`, not each node's own.
    let fp = alert(&fired)["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    let first = history(&nodes[0], &fp).await;
    let to: Vec<&str> = first.iter().map(|(to, _)| to.as_str()).collect();
    assert!(
        to.ends_with(&["firing", "resolved"]),
        "history of {fp}: {first:?}"
    );
    for (to, at) in &first {
        if to == "pending" {
            continue; // caused by the callback, at its receive time
        }
        let secs: u64 = at
            .trim_end_matches('Z')
            .rsplit(':')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("time {at}"));
        assert_eq!(secs % tick.as_secs(), 0, "{to} at {at}, not on a tick");
    }
    for n in &nodes[1..] {
        assert_eq!(history(n, &fp).await, first, "{} differs", n.url(""));
    }
    for n in nodes {
        n.stop().await;
    }
}
