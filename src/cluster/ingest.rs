//! Cluster-mode ingest: an accepted callback is published to the stream as
//! its recorded-callback line (docs/recording.md), with `Nats-Msg-Id` set
//! to its dedup identity, and acknowledged only once JetStream has stored
//! it on a quorum of replicas. Tencent's retries of one delivery, on
//! whichever node they land, carry the same id and are stored once.

use std::sync::Arc;
use std::time::Instant;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::HeaderMap;

use super::{Cluster, ACK_TIMEOUT};
use crate::ingest::{Stored, StreamSink};
use crate::metrics::Metrics;

/// Why a callback could not be stored; the message names the cause and
/// goes into the 503's body.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// Publishes accepted callbacks to the stream.
#[derive(Clone)]
pub struct Publisher {
    cluster: Cluster,
    subject: String,
    metrics: Arc<Metrics>,
}

/// Publishes one recorded-callback line with `Nats-Msg-Id` = `id` and
/// waits for JetStream's acknowledgement. Runs in its own task: a client
/// that gives up mid-request cannot cut a publish in half.
impl StreamSink for Publisher {
    fn publish(
        &self,
        id: String,
        line: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Stored, String>> + Send>> {
        let this = self.clone();
        Box::pin(async move {
            tokio::spawn(async move { this.publish_inner(id, line).await.map_err(|e| e.0) })
                .await
                .unwrap_or_else(|e| Err(format!("publish task failed: {e}")))
        })
    }
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
