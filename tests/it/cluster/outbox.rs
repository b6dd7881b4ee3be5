//! The cluster outbox against a real 3-server JetStream cluster: the same
//! transitions published by two nodes are stored once, and a new leader
//! gets what the old one left unacknowledged, minus the receivers it had
//! already reached, and nothing that was fully delivered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use tokio::sync::mpsc;

use callwatch::alert::{Alert, AlertStatus};
use callwatch::cluster::outbox::{transition_id, ClusterOutbox, OutboxSettings};
use callwatch::engine::Transition;

use crate::support::nats::NatsCluster;

const ACK_WAIT: Duration = Duration::from_secs(2);

fn settings() -> OutboxSettings {
    OutboxSettings {
        stream: "OUTBOX_TEST".into(),
        subject: "outbox-test.transitions".into(),
        delivered_bucket: "DELIVERED_TEST".into(),
        replicas: 3,
        retention: Duration::from_secs(3600),
        ack_wait: ACK_WAIT,
    }
}

fn transition(fingerprint: &str, status: AlertStatus, starts_at: i64) -> Transition {
    Transition {
        alert: Alert {
            rule: "r".into(),
            status,
            severity: "warning".into(),
            summary: "s".into(),
            labels: BTreeMap::from([("rule".to_string(), "r".to_string())]),
            value: serde_json::Value::Null,
            starts_at,
            ends_at: None,
            key: BTreeMap::new(),
            annotations: BTreeMap::new(),
            evidence: Vec::new(),
            url: None,
            reason: None,
            fingerprint: fingerprint.into(),
        },
        notify: Some(vec!["ops".into(), "mail".into()]),
        at: starts_at,
    }
}

async fn node(url: &str) -> Arc<ClusterOutbox> {
    let client = async_nats::connect(url).await.expect("connecting");
    Arc::new(
        ClusterOutbox::setup(&jetstream::new(client), settings())
            .await
            .expect("outbox setup"),
    )
}

type Routed = mpsc::UnboundedReceiver<(String, Vec<String>)>;

/// Leads on `outbox` in a task; what it routes comes out of the channel
/// as (transition id, receivers already reached).
fn lead(outbox: &Arc<ClusterOutbox>) -> (tokio::task::JoinHandle<()>, Routed) {
    let (tx, rx) = mpsc::unbounded_channel();
    let outbox = outbox.clone();
    let receivers = vec!["ops".to_string(), "mail".to_string()];
    let task = tokio::spawn(async move {
        let route = |t: Transition, reached: Vec<String>| {
            let owed: Vec<String> = receivers
                .iter()
                .filter(|r| !reached.contains(r))
                .cloned()
                .collect();
            let _ = tx.send((transition_id(&t.alert), reached));
            owed
        };
        outbox
            .lead(|| true, &receivers, route)
            .await
            .expect("leading");
    });
    (task, rx)
}

async fn next(rx: &mut Routed, limit: Duration) -> (String, Vec<String>) {
    tokio::time::timeout(limit, rx.recv())
        .await
        .expect("a transition routed in time")
        .expect("the leader task ended")
}

#[tokio::test]
async fn a_new_leader_resumes_what_the_old_one_left_and_nothing_else() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let a = node(&nats.url(0)).await;
    let b = node(&nats.url(1)).await;
    let t1 = transition("fp1", AlertStatus::Firing, 1_700_000_000);
    let t2 = transition("fp2", AlertStatus::Firing, 1_700_000_000);
    let t3 = transition("fp1", AlertStatus::Resolved, 1_700_000_000);
    // Both nodes computed the same transitions: stored once each.
    for t in [&t1, &t2, &t3] {
        a.publish(t).await.expect("publish on a");
        b.publish(t).await.expect("publish on b");
    }
    let client = async_nats::connect(nats.url(2)).await.expect("connect");
    let mut info = jetstream::new(client)
        .get_stream("OUTBOX_TEST")
        .await
        .expect("stream");
    assert_eq!(info.info().await.expect("info").state.messages, 3);

    let (task, mut routed) = lead(&a);
    let first: Vec<_> = [
        next(&mut routed, Duration::from_secs(5)).await,
        next(&mut routed, Duration::from_secs(5)).await,
        next(&mut routed, Duration::from_secs(5)).await,
    ]
    .into();
    let ids: Vec<&str> = first.iter().map(|(id, _)| id.as_str()).collect();
    let (id1, id2, id3) = (
        transition_id(&t1.alert),
        transition_id(&t2.alert),
        transition_id(&t3.alert),
    );
    assert_eq!(ids, [id1.as_str(), id2.as_str(), id3.as_str()]);
    assert!(first.iter().all(|(_, reached)| reached.is_empty()));
    // t2 reaches both receivers; t1 only ops; t3 nobody: then A dies.
    a.sent("ops", &[t1.alert.clone(), t2.alert.clone()], 7)
        .await;
    a.sent("mail", std::slice::from_ref(&t2.alert), 7).await;
    assert_eq!(a.inflight_len(), 2, "t1 and t3 still owed");
    // Held past ack_wait while A lives: progress keeps it from redelivery.
    tokio::time::sleep(ACK_WAIT * 2).await;
    assert!(
        routed.try_recv().is_err(),
        "nothing redelivered to a live leader"
    );
    task.abort();
    drop(a);

    let (_task, mut routed) = lead(&b);
    let mut resumed = vec![
        next(&mut routed, ACK_WAIT + Duration::from_secs(3)).await,
        next(&mut routed, Duration::from_secs(2)).await,
    ];
    resumed.sort();
    let mut want = vec![(id1, vec!["ops".to_string()]), (id3, vec![])];
    want.sort();
    assert_eq!(resumed, want, "t1 still owes mail, t3 both; t2 is done");
    tokio::time::sleep(ACK_WAIT * 2).await;
    assert!(routed.try_recv().is_err(), "t2 is never redelivered");
}
