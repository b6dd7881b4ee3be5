//! The leader lease against a real 3-server JetStream cluster: one leader
//! among contenders, takeover after a holder vanishes, and a holder cut
//! off from NATS gives up before anyone else can lead.

use std::time::Duration;

use async_nats::jetstream;
use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use callwatch::cluster::lease::{Lease, LeaseSettings};

use crate::support::nats::{NatsCluster, TcpProxy};

const TTL: Duration = Duration::from_secs(2);

fn settings(node: &str) -> LeaseSettings {
    LeaseSettings {
        bucket: "LEASE_TEST".into(),
        node: node.into(),
        ttl: TTL,
        replicas: 3,
    }
}

async fn contender(url: &str, node: &str) -> (Lease, Gauge) {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(1))
        .connect(url)
        .await
        .expect("connecting");
    let gauge = Gauge::default();
    let lease = Lease::start(&jetstream::new(client), settings(node), gauge.clone())
        .await
        .expect("lease");
    (lease, gauge)
}

/// Which of `leases` lead now.
fn leaders(leases: &[Option<(Lease, Gauge)>]) -> Vec<usize> {
    (0..leases.len())
        .filter(|&i| leases[i].as_ref().is_some_and(|(l, _)| l.is_leader()))
        .collect()
}

/// Waits until exactly one of `leases` leads, checking that never two do.
async fn one_leader(leases: &[Option<(Lease, Gauge)>], limit: Duration) -> usize {
    let start = Instant::now();
    loop {
        let now = leaders(leases);
        assert!(now.len() <= 1, "two leaders at once: {now:?}");
        if let [one] = now[..] {
            return one;
        }
        assert!(start.elapsed() < limit, "no leader within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn one_of_three_contenders_leads_and_another_takes_over_when_it_dies() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let mut leases = Vec::new();
    for i in 0..3 {
        leases.push(Some(contender(&nats.url(i), &format!("cw-{i}")).await));
    }
    let first = one_leader(&leases, Duration::from_secs(10)).await;
    // It stays the only one for several renewals.
    let settle = Instant::now();
    while settle.elapsed() < TTL * 2 {
        assert_eq!(leaders(&leases), vec![first], "leadership must be stable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, gauge) = leases[first].as_ref().expect("leader");
    assert_eq!(gauge.get(), 1, "callwatch_cluster_leader on the leader");
    for (i, l) in leases.iter().enumerate() {
        if i != first {
            assert_eq!(l.as_ref().expect("lease").1.get(), 0);
        }
    }

    // The holder vanishes without releasing (SIGKILL of its process).
    let killed = Instant::now();
    leases[first] = None;
    let second = one_leader(&leases, TTL + Duration::from_secs(2)).await;
    let took = killed.elapsed();
    assert_ne!(second, first);
    eprintln!("takeover after the holder vanished: {took:?} (leader_ttl {TTL:?})");

    // An orderly release gives the lease up at once rather than letting
    // it lapse: when `release` returns, the key no longer names the
    // releasing node (a timing bound would not hold on a loaded host).
    let (lease, _) = leases[second].take().expect("second");
    let released = Instant::now();
    lease.release().await;
    let client = async_nats::connect(nats.url(0)).await.expect("connecting");
    let kv = jetstream::new(client)
        .get_key_value("LEASE_TEST")
        .await
        .expect("the lease bucket");
    let holder = kv
        .get(callwatch::cluster::lease::KEY)
        .await
        .expect("reading the lease");
    let released_node = format!("cw-{second}");
    assert_ne!(
        holder.as_deref(),
        Some(released_node.as_bytes()),
        "the released lease still names its holder"
    );
    one_leader(&leases, TTL + Duration::from_secs(2)).await;
    eprintln!(
        "takeover after an orderly release: {:?}",
        released.elapsed()
    );
}

#[tokio::test]
async fn a_holder_cut_off_from_nats_stops_leading_before_another_starts() {
    let Some(nats) = NatsCluster::start(3).await else {
        return;
    };
    let proxy = TcpProxy::start(nats.addr(0)).await;
    // The cut-off node contends first so that it is the leader.
    let mut leases = vec![Some(contender(&proxy.url(), "cw-cut").await)];
    one_leader(&leases, Duration::from_secs(10)).await;
    for i in 1..3 {
        leases.push(Some(contender(&nats.url(i), &format!("cw-{i}")).await));
    }
    assert_eq!(one_leader(&leases, Duration::from_secs(5)).await, 0);

    let cut = Instant::now();
    proxy.cut();
    let mut stopped = None;
    let started = loop {
        let now = leaders(&leases);
        assert!(now.len() <= 1, "two leaders at once: {now:?}");
        if stopped.is_none() && !now.contains(&0) {
            stopped = Some(cut.elapsed());
        }
        if let Some(&other) = now.iter().find(|&&i| i != 0) {
            break (other, cut.elapsed());
        }
        assert!(cut.elapsed() < TTL * 3, "nobody took over");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let stopped = stopped.expect("the cut-off holder stopped first");
    eprintln!(
        "cut-off holder stopped after {stopped:?}; node {} led after {:?}",
        started.0, started.1
    );
    assert!(
        stopped < started.1,
        "stop {stopped:?} must precede takeover {:?}",
        started.1
    );
    assert_eq!(leases[0].as_ref().expect("cut").1.get(), 0);

    // Back on the network it stays a follower: the lease moved on.
    proxy.restore();
    tokio::time::sleep(TTL * 2).await;
    assert_eq!(leaders(&leases), vec![started.0]);
}
