//! The NATS harness itself: three routed servers form one JetStream
//! cluster that stores a replicated stream once per `Nats-Msg-Id` and keeps
//! taking writes with one server killed.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::support::nats::{NatsCluster, TcpProxy};

/// A replicated stream may be asked for before the servers agree on a meta
/// leader for stream placement; retry briefly like an operator would.
async fn create_stream(js: &jetstream::Context, cfg: stream::Config) -> stream::Stream {
    let mut last = None;
    for _ in 0..50 {
        match js.get_or_create_stream(cfg.clone()).await {
            Ok(s) => return s,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("creating stream {}: {last:?}", cfg.name);
}

#[tokio::test]
async fn three_servers_store_a_replicated_stream_once_per_msg_id() {
    let Some(mut nats) = NatsCluster::start(3).await else {
        return;
    };
    let client = async_nats::connect(nats.server_addrs())
        .await
        .expect("connecting to the cluster");
    let js = jetstream::new(client);
    let mut s = create_stream(
        &js,
        stream::Config {
            name: "SMOKE".into(),
            subjects: vec!["smoke.>".into()],
            num_replicas: 3,
            duplicate_window: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .await;
    let info = s.info().await.expect("stream info");
    assert_eq!(info.config.num_replicas, 3);
    let cluster = info.cluster.as_ref().expect("a clustered stream");
    assert_eq!(cluster.replicas.len(), 2, "a leader and two replicas");

    // Twice, each retried while the new stream's replicas settle on a
    // busy machine: the same Nats-Msg-Id makes a retry harmless.
    for _ in 0..2 {
        let mut acked = None;
        for _ in 0..10 {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", "callback-1");
            let sent = js
                .publish_with_headers("smoke.a", headers, "x".into())
                .await;
            match sent.expect("publish").await {
                Ok(ack) => {
                    acked = Some(ack);
                    break;
                }
                Err(e) => eprintln!("no PubAck yet: {e}"),
            }
        }
        acked.expect("a PubAck within 10 tries");
    }
    assert_eq!(s.info().await.expect("info").state.messages, 1);

    // One server down: two of three are still a quorum for the stream.
    nats.kill(0);
    let mut stored = false;
    for _ in 0..50 {
        let ack = js
            .publish("smoke.b", "y".into())
            .await
            .expect("publish")
            .await;
        if ack.is_ok() {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(stored, "no PubAck with one of three servers killed");
    nats.restart(0).await;

    // A client cut off by the proxy loses its connection; the cluster does
    // not notice.
    let proxy = TcpProxy::start(nats.addr(1)).await;
    let cut_client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(1))
        .connect(proxy.url())
        .await
        .expect("connecting through the proxy");
    cut_client.flush().await.expect("flush through the proxy");
    proxy.cut();
    tokio::time::timeout(Duration::from_secs(5), async {
        while cut_client.connection_state() == async_nats::connection::State::Connected {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the cut-off client notices within 5 s");
    proxy.restore();
    tokio::time::timeout(Duration::from_secs(10), async {
        while cut_client.connection_state() != async_nats::connection::State::Connected {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the client reconnects after the cut");
    assert!(proxy.accepted() >= 2, "a second connection after the cut");
}
