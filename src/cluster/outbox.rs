//! The cluster's outbox: alert transitions in a JetStream stream, delivered
//! by the leader once.
//!
//! Every node runs the same engine over the same ordered callbacks, so
//! every node computes the same transitions. Each publishes its own to the
//! OUTBOX stream with `Nats-Msg-Id` = [`transition_id`], a digest of what
//! the transition is (alert fingerprint, status, start), so JetStream
//! stores one copy however many nodes publish it. Only the leader reads the
//! stream, through one durable consumer: it routes and groups what it
//! reads, and a message is acknowledged only once every receiver it was
//! routed to has been sent the notification carrying it. Each send is
//! recorded first in the `delivered` KV bucket (key: transition and
//! receiver), with the leader's term. A new leader resumes the same
//! consumer: what the old one left unacknowledged is redelivered after
//! `ack_wait`, and the delivered records keep it from going again to a
//! receiver that already got it.
//!
//! What is left: a leader that dies after a receiver accepted a message
//! and before the record was written causes one duplicate to that
//! receiver (webhook delivery is not transactional); docs/cluster.md.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream, AckKind};
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::episode::{self, Decision};
use super::lease::ensure_bucket;
use crate::alert::Alert;
use crate::engine::Transition;

/// The durable consumer the leader reads through.
pub const CONSUMER: &str = "leader";

/// Where the outbox lives: plain values, so this module does not depend
/// on how the cluster is configured.
#[derive(Clone, Debug)]
pub struct OutboxSettings {
    /// The stream of transitions (e.g. `CALLWATCH_OUTBOX`).
    pub stream: String,
    /// Its subject.
    pub subject: String,
    /// The KV bucket of delivered (transition, receiver) records.
    pub delivered_bucket: String,
    pub replicas: usize,
    /// How long transitions and delivered records are kept.
    pub retention: Duration,
    /// How long the leader may hold a message unacknowledged before it is
    /// redelivered (the leader extends it while it still works on one).
    /// A new leader gets its predecessor's work after this: keep it near
    /// `leader_ttl`.
    pub ack_wait: Duration,
}

/// A failure of the cluster outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("setting up {what}: {message}")]
    Setup { what: String, message: String },
    #[error("publishing a transition to the outbox: {0}")]
    Publish(String),
    #[error("delivered record: {0}")]
    Record(String),
}

/// The deterministic id of a transition: what every node computes for the
/// same alert change, so the stream keeps one copy.
pub fn transition_id(alert: &Alert) -> String {
    let mut h = Sha256::new();
    h.update(alert.fingerprint.as_bytes());
    h.update([0]);
    h.update(alert.status.as_str().as_bytes());
    h.update([0]);
    h.update(alert.starts_at.to_le_bytes());
    hex::encode(&h.finalize()[..16])
}

/// The delivered-record key of a transition and a receiver (receiver names
/// may hold characters KV keys cannot).
fn record_key(id: &str, receiver: &str) -> String {
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    h.update([0]);
    h.update(receiver.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// The key of an alert's episode record in the delivered bucket (apart
/// from the per-receiver records, which are bare digests).
fn episode_key(fingerprint: &str) -> String {
    let mut h = Sha256::new();
    h.update(fingerprint.as_bytes());
    format!("episode.{}", hex::encode(&h.finalize()[..16]))
}

/// The stream and bucket, shared by the publishing and the leading side.
pub struct ClusterOutbox {
    js: jetstream::Context,
    settings: OutboxSettings,
    delivered: kv::Store,
    /// Messages the leader read and still owes a receiver, by transition id.
    inflight: Mutex<HashMap<String, Inflight>>,
}

struct Inflight {
    message: jetstream::Message,
    owed: HashSet<String>,
}

impl ClusterOutbox {
    /// Creates (or updates) the stream and the bucket; every node runs this.
    pub async fn setup(
        js: &jetstream::Context,
        settings: OutboxSettings,
    ) -> Result<ClusterOutbox, OutboxError> {
        let cfg = stream::Config {
            name: settings.stream.clone(),
            description: Some("callwatch: alert transitions for the leader to deliver".into()),
            subjects: vec![settings.subject.clone()],
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            max_age: settings.retention,
            // Nodes publish the same transition at about the same time; a
            // late node (catching up after a restart) may be much later.
            duplicate_window: settings.retention.min(Duration::from_secs(24 * 3600)),
            ..Default::default()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match js.create_or_update_stream(cfg.clone()).await {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "outbox stream not ready yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => {
                    return Err(OutboxError::Setup {
                        what: format!("stream {}", settings.stream),
                        message: e.to_string(),
                    })
                }
            }
        }
        let delivered = ensure_bucket(
            js,
            kv::Config {
                bucket: settings.delivered_bucket.clone(),
                description: "callwatch: which transition reached which receiver".into(),
                history: 1,
                max_age: settings.retention,
                num_replicas: settings.replicas,
                storage: stream::StorageType::File,
                ..Default::default()
            },
        )
        .await
        .map_err(|message| OutboxError::Setup {
            what: format!("bucket {}", settings.delivered_bucket),
            message,
        })?;
        Ok(ClusterOutbox {
            js: js.clone(),
            settings,
            delivered,
            inflight: Mutex::new(HashMap::new()),
        })
    }

    fn inflight(&self) -> std::sync::MutexGuard<'_, HashMap<String, Inflight>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes a transition, waiting for JetStream to store it (or to say
    /// it already has it).
    pub async fn publish(&self, t: &Transition) -> Result<(), OutboxError> {
        let body = serde_json::to_vec(t).map_err(|e| OutboxError::Publish(e.to_string()))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", transition_id(&t.alert).as_str());
        self.js
            .publish_with_headers(self.settings.subject.clone(), headers, body.into())
            .await
            .map_err(|e| OutboxError::Publish(e.to_string()))?
            .await
            .map_err(|e| OutboxError::Publish(e.to_string()))?;
        Ok(())
    }

    /// The value of record `key` in the delivered bucket, if one is there
    /// (not deleted), as the bucket's stream leader has it. `Store::entry`
    /// reads with a direct get, which any replica may answer, also one
    /// that has not applied the newest puts yet: a new leader could then
    /// miss what the old one recorded a moment before and send it again.
    async fn record(&self, key: &str) -> Result<Option<Bytes>, OutboxError> {
        // The subject `Store::entry` reads; a message without a (known)
        // operation is a put, as there.
        let subject = format!("{}{key}", self.delivered.prefix);
        match self
            .delivered
            .stream
            .get_last_raw_message_by_subject(&subject)
            .await
        {
            Ok(m) => {
                let op = m
                    .headers
                    .get("KV-Operation")
                    .and_then(|op| op.as_str().parse::<kv::Operation>().ok());
                let removed = matches!(op, Some(kv::Operation::Delete | kv::Operation::Purge))
                    || m.headers
                        .get(async_nats::header::NATS_MARKER_REASON)
                        .is_some();
                Ok((!removed).then_some(m.payload))
            }
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(OutboxError::Record(e.to_string())),
        }
    }

    /// The receivers among `receivers` that transition `id` already reached.
    pub async fn reached(
        &self,
        id: &str,
        receivers: &[String],
    ) -> Result<Vec<String>, OutboxError> {
        let mut reached = Vec::new();
        for r in receivers {
            if self.record(&record_key(id, r)).await?.is_some() {
                reached.push(r.clone());
            }
        }
        Ok(reached)
    }

    /// Decides whether transition `id` is another node's copy of a change
    /// already accepted for delivery ([`super::episode`]); a new one is
    /// recorded before it is routed, so a later leader decides alike.
    async fn episode(&self, id: &str, alert: &Alert) -> Result<Decision, OutboxError> {
        let key = episode_key(&alert.fingerprint);
        let last = self
            .record(&key)
            .await?
            .and_then(|value| serde_json::from_slice::<episode::Accepted>(&value).ok());
        let decision = episode::decide(last.as_ref(), id, alert);
        if decision == Decision::New {
            let value = serde_json::to_vec(&episode::Accepted::next(last.as_ref(), id, alert))
                .map_err(|e| OutboxError::Record(e.to_string()))?;
            self.delivered
                .put(key, value.into())
                .await
                .map_err(|e| OutboxError::Record(e.to_string()))?;
        }
        Ok(decision)
    }

    /// Records that `receiver` was sent every alert of a notification, by
    /// the leader of `term`, and acknowledges the messages nothing more is
    /// owed for.
    pub async fn sent(&self, receiver: &str, alerts: &[Alert], term: u64) {
        for a in alerts {
            let id = transition_id(a);
            let put = self
                .delivered
                .put(record_key(&id, receiver), Bytes::from(term.to_string()))
                .await;
            if let Err(e) = put {
                // The message stays unacknowledged: a new leader would send
                // it again to this receiver. Better than losing it.
                tracing::error!(receiver, error = %e, "cannot record a delivery");
                continue;
            }
            self.settle(&id, Some(receiver)).await;
        }
    }

    /// Drops `receiver` (or, with `None`, every receiver) from what
    /// transition `id` owes, acknowledging its message when nothing is left.
    pub async fn settle(&self, id: &str, receiver: Option<&str>) {
        let done = {
            let mut inflight = self.inflight();
            let Some(f) = inflight.get_mut(id) else {
                return;
            };
            match receiver {
                Some(r) => {
                    f.owed.remove(r);
                }
                None => f.owed.clear(),
            }
            if f.owed.is_empty() {
                inflight.remove(id)
            } else {
                None
            }
        };
        if let Some(f) = done {
            if let Err(e) = f.message.ack().await {
                tracing::warn!(error = %e, "cannot acknowledge an outbox message; it will come again");
            }
        }
    }

    /// The leader's durable consumer (created if missing).
    async fn consumer(&self) -> Result<consumer::PullConsumer, OutboxError> {
        let stream = self
            .js
            .get_stream(&self.settings.stream)
            .await
            .map_err(|e| OutboxError::Setup {
                what: format!("stream {}", self.settings.stream),
                message: e.to_string(),
            })?;
        stream
            .get_or_create_consumer(
                CONSUMER,
                consumer::pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.settings.ack_wait,
                    deliver_policy: consumer::DeliverPolicy::All,
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| OutboxError::Setup {
                what: format!("consumer {CONSUMER}"),
                message: e.to_string(),
            })
    }

    /// Reads the outbox while `leading` holds: each transition goes to
    /// `route` with the receivers it already reached, which returns the
    /// receivers it now owes (none: acknowledged at once). Messages held
    /// are kept from redelivery while this runs. Returns when `leading`
    /// says this node no longer leads, or on a consumer error (the caller
    /// tries again while it still leads).
    pub async fn lead<R>(
        self: &Arc<Self>,
        leading: impl Fn() -> bool,
        receivers: &[String],
        route: R,
    ) -> Result<(), OutboxError>
    where
        R: Fn(Transition, Vec<String>) -> Vec<String>,
    {
        let consumer = self.consumer().await?;
        let mut messages = consumer.messages().await.map_err(|e| OutboxError::Setup {
            what: format!("consumer {CONSUMER}"),
            message: e.to_string(),
        })?;
        let mut progress = tokio::time::interval(self.settings.ack_wait / 3);
        loop {
            if !leading() {
                // What is held goes back to the stream for the next leader.
                self.inflight().clear();
                return Ok(());
            }
            let message = tokio::select! {
                m = messages.next() => m,
                _ = progress.tick() => {
                    self.keep_alive().await;
                    continue;
                }
            };
            let message = match message {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "outbox consumer");
                    continue;
                }
                None => return Ok(()),
            };
            let t: Transition = match serde_json::from_slice(&message.payload) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "dropping an unreadable outbox message");
                    let _ = message.ack_with(AckKind::Term).await;
                    continue;
                }
            };
            let id = transition_id(&t.alert);
            if let Some(f) = self.inflight().get_mut(&id) {
                // Redelivered while still in a group here: keep the newest
                // handle, do not route it twice.
                f.message = message;
                continue;
            }
            match self.episode(&id, &t.alert).await {
                Ok(Decision::Copy) => {
                    tracing::debug!(fingerprint = %t.alert.fingerprint, status = t.alert.status.as_str(), "dropping another node's copy of a transition already accepted");
                    let _ = message.ack_with(AckKind::Term).await;
                    continue;
                }
                Ok(Decision::New | Decision::Same) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read or write an episode record; retrying later");
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                    continue;
                }
            }
            let reached = match self.reached(&id, receivers).await {
                Ok(r) => r,
                Err(e) => {
                    // Not knowing what was sent, send nothing yet: it
                    // comes back after ack_wait.
                    tracing::warn!(error = %e, "cannot read delivered records; retrying later");
                    let _ = message
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                    continue;
                }
            };
            let owed = route(t, reached);
            if owed.is_empty() {
                if let Err(e) = message.ack().await {
                    tracing::warn!(error = %e, "cannot acknowledge an outbox message");
                }
                continue;
            }
            self.inflight().insert(
                id,
                Inflight {
                    message,
                    owed: owed.into_iter().collect(),
                },
            );
        }
    }

    /// Tells JetStream the leader still works on the messages it holds.
    async fn keep_alive(&self) {
        let held: Vec<_> = self
            .inflight()
            .values()
            .map(|f| f.message.clone())
            .collect();
        for m in held {
            let _ = m.ack_with(AckKind::Progress).await;
        }
    }

    /// Transitions read and not yet acknowledged.
    pub fn inflight_len(&self) -> usize {
        self.inflight().len()
    }
}
