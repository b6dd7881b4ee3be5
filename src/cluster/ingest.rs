//! Cluster-mode ingest: an accepted callback is published to the stream as
//! its recorded-callback line (docs/recording.md), with `Nats-Msg-Id` set
//! to its dedup identity, and acknowledged only once JetStream has stored
//! it on a quorum of replicas. Tencent's retries of one delivery, on
//! whichever node they land, carry the same id and are stored once.

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::HeaderMap;
use sha2::{Digest, Sha256};

use super::{Cluster, ACK_TIMEOUT};
use crate::metrics::Metrics;

/// What JetStream said of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now.
    New,
    /// Already stored within the duplicate window (a retry): not stored
    /// again and not evaluated again, but acknowledged.
    Duplicate,
}

/// Why a callback could not be stored; the message names the cause and
/// goes into the 503's body.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// Publishes accepted callbacks to the stream.
pub struct Publisher {
    cluster: Cluster,
    subject: String,
    metrics: Arc<Metrics>,
}

/// `Nats-Msg-Id` for a delivery: a digest of the identity Tencent keeps
/// across retries (app, command, and call, user and event time of each
/// event; docs/callbacks.md), written out field by field so every node
/// and version computes the same id (the in-memory dedup set's hash is
/// seeded per process).
pub fn msg_id(sdkappid: u64, command: &str, events: &[(&str, &str, i64)]) -> String {
    let mut h = Sha256::new();
    h.update(sdkappid.to_string());
    h.update([0]);
    h.update(command);
    for (call, user, time) in events {
        h.update([0]);
        h.update(call);
        h.update([0]);
        h.update(user);
        h.update([0]);
        h.update(time.to_string());
    }
    hex::encode(&h.finalize()[..16])
}

impl Publisher {
    pub fn new(cluster: Cluster, metrics: Arc<Metrics>) -> Publisher {
        let subject = cluster.config.subject();
        Publisher {
            cluster,
            subject,
            metrics,
        }
    }

    /// Publishes one recorded-callback line and waits for JetStream's
    /// acknowledgement. Runs in its own task: a client that gives up
    /// mid-request cannot cut a publish in half.
    pub async fn publish(
        self: &Arc<Self>,
        id: String,
        line: Vec<u8>,
    ) -> Result<Stored, Unavailable> {
        let this = self.clone();
        tokio::spawn(async move { this.publish_inner(id, line).await })
            .await
            .unwrap_or_else(|e| Err(Unavailable(format!("publish task failed: {e}"))))
    }

    async fn publish_inner(&self, id: String, line: Vec<u8>) -> Result<Stored, Unavailable> {
        if !self.cluster.connected() {
            return Err(self.disconnected());
        }
        let started = Instant::now();
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
        let ack = async {
            self.cluster
                .js
                .publish_with_headers(self.subject.clone(), headers, line.into())
                .await?
                .await
        };
        // The context's timeout bounds the ack; this bounds the whole
        // publish, which can also wait for the client's send buffer.
        let ack = tokio::time::timeout(ACK_TIMEOUT, ack)
            .await
            .map_err(|_| self.timed_out())?;
        match ack {
            Ok(ack) => {
                self.metrics
                    .stream
                    .publish_seconds
                    .observe(started.elapsed().as_secs_f64());
                Ok(if ack.duplicate {
                    Stored::Duplicate
                } else {
                    Stored::New
                })
            }
            Err(e) => Err(match e.kind() {
                _ if !self.cluster.connected() => self.disconnected(),
                PublishErrorKind::TimedOut => self.timed_out(),
                PublishErrorKind::StreamNotFound => Unavailable(format!(
                    "no JetStream server answered for stream {} (no quorum, or the stream is missing); callback not stored",
                    self.cluster.config.stream
                )),
                _ => Unavailable(format!("JetStream refused the callback: {e}")),
            }),
        }
    }

    fn disconnected(&self) -> Unavailable {
        Unavailable(format!(
            "not connected to any NATS server ({}); callback not stored",
            self.cluster.config.nats.join(", ")
        ))
    }

    fn timed_out(&self) -> Unavailable {
        Unavailable(format!(
            "JetStream did not acknowledge within {} ms (no quorum of the stream's {} replicas?); callback not stored",
            ACK_TIMEOUT.as_millis(),
            self.cluster.config.replicas
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::msg_id;

    #[test]
    fn msg_id_is_stable_and_tells_deliveries_apart() {
        let a = msg_id(1400000001, "CallStatusChange", &[("c1", "u1", 1700000000)]);
        let b = msg_id(1400000001, "CallStatusChange", &[("c1", "u2", 1700000000)]);
        // Field boundaries count: ("c1u", "1") is another delivery.
        let c = msg_id(1400000001, "CallStatusChange", &[("c1u", "1", 1700000000)]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 32);
        // Fixed across builds and hosts: nodes of different versions
        // must give one delivery the same id.
        assert_eq!(
            a,
            msg_id(1400000001, "CallStatusChange", &[("c1", "u1", 1700000000)])
        );
    }
}
