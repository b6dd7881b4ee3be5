//! Notifications of a 3-node cluster on a real 3-server JetStream cluster,
//! to a real webhook: every node computes the transition, the receiver
//! gets it once (from the leader); a silence made on one node and expired
//! on another holds, then releases, the leader's notification.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::delivery::harness::{add_receiver, now_secs, webhook, Dirs, Running, FIRST_CALL_RULE};
use crate::notify::http_sink::{Canned, Sink};
use crate::support::nats::{NatsCluster, TcpProxy};

use super::nodes::cluster_config;

/// The `user_id`s of a webhook body's alerts.
fn users(body: &Value) -> Vec<String> {
    let alerts = body["alerts"].as_array().expect("alerts array");
    alerts
        .iter()
        .map(|a| a["labels"]["user_id"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn leader_gauge(d: &Running) -> f64 {
    crate::support::metric(&d.metrics().await, "callwatch_cluster_leader", &[])
}

/// Waits until exactly one node says it leads; its index.
async fn leader(nodes: &[Running], limit: Duration) -> usize {
    let start = Instant::now();
    loop {
        let mut leading = Vec::new();
        for (i, d) in nodes.iter().enumerate() {
            if leader_gauge(d).await == 1.0 {
                leading.push(i);
            }
        }
        assert!(leading.len() <= 1, "two leaders: {leading:?}");
        if let [one] = leading[..] {
            return one;
        }
        assert!(start.elapsed() < limit, "no leader within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_quiet(hook: &mut Sink, quiet: Duration) {
    tokio::time::sleep(quiet).await;
    if let Some(extra) = hook.try_next() {
        panic!("sent twice: {}", String::from_utf8_lossy(&extra.body));
    }
}

/// Silences Android alerts through `nodes[on]` and waits until every
/// node lists the silence as active; its id.
async fn silence_android(nodes: &[Running], on: usize) -> String {
    let body = json!({
        "matchers": [{"name": "platform", "value": "Android", "isRegex": false}],
        "endsAt": callwatch::alert::format_rfc3339(now_secs() + 3600),
        "comment": "rollout",
        "createdBy": "ops",
    });
    let (status, reply) = nodes[on]
        .api(Method::POST, "/api/v1/silences", None, Some(&body))
        .await;
    assert_eq!(status, 200, "{reply}");
    let id = reply["silenceID"].as_str().expect("silenceID").to_string();
    for d in nodes {
        let start = Instant::now();
        loop {
            let (_, s) = d
                .api(Method::GET, &format!("/api/v1/silences/{id}"), None, None)
                .await;
            if s["status"]["state"] == "active" {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "silence not on {}: {s}",
                d.url("")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    id
}

/// Expires silence `id` through `node`; the webhook then gets bob's
/// alert, once.
async fn expire_and_expect_bob(node: &Running, id: &str, hook: &mut Sink) {
    let (status, reply) = node
        .api(
            Method::DELETE,
            &format!("/api/v1/silences/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let got = hook.next_within(Duration::from_secs(20)).await.json();
    assert_eq!(users(&got), ["bob"]);
    assert_quiet(hook, Duration::from_secs(3)).await;
}

/// Three nodes on `nats` with the first-call rule, each alert its own
/// group sent at once to the webhook `hook`.
async fn first_call_nodes(nats: &NatsCluster, hook: &Sink) -> (Vec<Running>, Vec<Dirs>) {
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..3 {
        let d = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
        let mut config = d.config();
        config.alerting.group_wait = Duration::ZERO;
        config.alerting.group_by = vec!["rule".into(), "user_id".into()];
        add_receiver(&mut config, "ops", webhook(hook.url("/hook")));
        config.cluster = Some(cluster_config(&nats.urls(), &format!("cw-{i}")));
        nodes.push(Running::start(config).await);
        dirs.push(d);
    }
    (nodes, dirs)
}

#[tokio::test]
async fn three_nodes_notify_once_and_share_silences() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let mut hook = Sink::start(Canned::new(200, "")).await;
    let (nodes, _dirs) = first_call_nodes(&nats, &hook).await;
    let lead = leader(&nodes, Duration::from_secs(15)).await;
    let (a, b) = ((lead + 1) % 3, (lead + 2) % 3);

    // Posted to a follower; every node's engine fires; one notification.
    nodes[a].start_call("alice", "iOS", "call-alice").await;
    let got = hook.next_within(Duration::from_secs(10)).await.json();
    assert_eq!(users(&got), ["alice"]);
    assert_quiet(&mut hook, Duration::from_secs(3)).await;

    // A silence made on a follower stops the leader.
    let id = silence_android(&nodes, a).await;
    nodes[b].start_call("bob", "Android", "call-bob").await;
    assert_quiet(&mut hook, Duration::from_secs(3)).await;

    // Expired on the other follower: the leader sends bob's alert, once.
    expire_and_expect_bob(&nodes[b], &id, &mut hook).await;

    for d in nodes {
        d.stop().await;
    }
}

/// A silence that ends after the leader changed: the new leader never
/// routed the silenced alert (the old one held it in memory), yet it
/// releases it, once.
#[tokio::test]
async fn a_silence_ending_after_a_change_of_leader_releases_the_alert_once() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let mut hook = Sink::start(Canned::new(200, "")).await;
    let (mut nodes, _dirs) = first_call_nodes(&nats, &hook).await;
    let lead = leader(&nodes, Duration::from_secs(15)).await;
    let id = silence_android(&nodes, (lead + 1) % 3).await;
    nodes[(lead + 1) % 3]
        .start_call("bob", "Android", "call-bob")
        .await;
    assert_quiet(&mut hook, Duration::from_secs(3)).await;

    // The leader stops (its lease handed on); another takes over.
    nodes.remove(lead).stop().await;
    let new_lead = leader(&nodes, Duration::from_secs(30)).await;
    let other = 1 - new_lead;
    expire_and_expect_bob(&nodes[other], &id, &mut hook).await;
    for d in nodes {
        d.stop().await;
    }
}

#[tokio::test]
async fn a_leader_cut_off_from_nats_stops_and_another_delivers_its_pending_once() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let ttl = Duration::from_secs(2);
    // The webhook is down at first: the leader's attempt stays pending.
    let addr = crate::delivery::harness::free_port();
    let mut proxies = Vec::new();
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..3 {
        let proxy = TcpProxy::start(nats.addr(i)).await;
        let d = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
        let mut config = d.config();
        config.alerting.group_wait = Duration::ZERO;
        add_receiver(&mut config, "ops", webhook(format!("http://{addr}/hook")));
        let mut c = cluster_config(&[proxy.url()], &format!("cw-{i}"));
        c.leader_ttl = ttl;
        config.cluster = Some(c);
        nodes.push(Running::start(config).await);
        proxies.push(proxy);
        dirs.push(d);
    }
    let lead = leader(&nodes, Duration::from_secs(15)).await;
    nodes[(lead + 1) % 3]
        .start_call("alice", "iOS", "call-alice")
        .await;
    // The leader has tried (and failed) at least once.
    let start = Instant::now();
    while nodes[lead].notifications("ops", "failed").await == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no attempt by the leader"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let cut = Instant::now();
    proxies[lead].cut();
    let mut hook = Sink::start_on(addr, Canned::new(200, "")).await;
    let got = hook.next_within(ttl + Duration::from_secs(8)).await;
    let took = cut.elapsed();
    assert_eq!(users(&got.json()), ["alice"]);
    eprintln!(
        "pending notification delivered {took:?} after the leader was cut off (leader_ttl {ttl:?})"
    );
    assert!(took <= ttl * 2 + Duration::from_secs(2), "took {took:?}");
    // The cut-off node neither leads nor is ready; the others agree on one.
    assert_eq!(leader_gauge(&nodes[lead]).await, 0.0);
    let ready = crate::support::client()
        .get(nodes[lead].url("/readyz"))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status().as_u16(), 503);
    let others: Vec<&Running> = (0..3).filter(|&i| i != lead).map(|i| &nodes[i]).collect();
    let mut leading = 0.0;
    for d in &others {
        leading += leader_gauge(d).await;
    }
    assert_eq!(leading, 1.0, "one new leader");

    // Back on the network, the old leader's queued attempt is not sent.
    proxies[lead].restore();
    assert_quiet(&mut hook, Duration::from_secs(5)).await;
    for d in nodes {
        d.stop().await;
    }
}

/// A notification the leader gives up on (the receiver refuses it for
/// good) releases its outbox message: nothing stays held for ever, and no
/// later leader gets it again for that receiver.
#[tokio::test]
async fn a_given_up_notification_releases_its_outbox_message() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    // 400 is not worth retrying: given up at the first attempt.
    let mut hook = Sink::start(Canned::new(400, "no")).await;
    let d = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
    let mut config = d.config();
    config.alerting.group_wait = Duration::ZERO;
    add_receiver(&mut config, "ops", webhook(hook.url("/hook")));
    config.cluster = Some(cluster_config(&nats.urls(), "cw-0"));
    let node = Running::start(config).await;
    let nodes = [node];
    leader(&nodes, Duration::from_secs(30)).await;
    nodes[0].start_call("alice", "iOS", "call-alice").await;
    hook.next_within(Duration::from_secs(30)).await;
    nodes[0]
        .wait_notifications("ops", "given_up", 1, Duration::from_secs(30))
        .await;

    let client = async_nats::connect(nats.server_addrs())
        .await
        .expect("connecting to NATS");
    let js = async_nats::jetstream::new(client);
    let start = Instant::now();
    loop {
        let stream = js
            .get_stream("CALLWATCH_OUTBOX")
            .await
            .expect("the outbox stream");
        let info = stream.consumer_info("leader").await.expect("consumer info");
        if info.num_ack_pending == 0 && info.num_pending == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the given-up transition is still held: {} unacknowledged, {} pending",
            info.num_ack_pending,
            info.num_pending
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let [node] = nodes;
    node.stop().await;
}
