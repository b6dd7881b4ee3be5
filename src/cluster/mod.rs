//! Cluster mode over NATS JetStream (docs/cluster.md): the connection to
//! the NATS servers and the stream of accepted callbacks every node
//! publishes to and evaluates from.
//!
//! # Layout
//! - [`ingest`]: publishing an accepted callback, acknowledged only once
//!   JetStream stored it.
//! - [`feed`]: the stream, in order, into this node's engine; lag and
//!   readiness.
//! - [`export`]: reading the stream back for `callwatch export` and
//!   `callwatch replay --stream`.
//! - [`lease`]: the leader lease in a KV bucket, with its term as fencing token.
//! - [`outbox`]: transitions in the OUTBOX stream, delivered by the leader once.
//! - [`episode`]: telling another node's copy of a transition from a new one.
//! - [`position`]: where in the stream the saved alert states were
//!   computed, so a restarted node evaluates on from exactly there.
//! - [`silences`]: silences in a KV bucket, applied on every node.
//! - [`ticks`]: the engine tick as stream messages, so every node's
//!   clock-driven transitions happen at the same place and time.
//! - [`leader`]: those three bound to the dispatcher and the delivery queue.

pub mod episode;
pub mod export;
pub mod feed;
pub mod ingest;
pub mod leader;
pub mod lease;
pub mod outbox;
pub mod position;
pub mod silences;
pub mod ticks;

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::config::ClusterConfig;

/// How long a publish waits for JetStream's acknowledgement. Tencent
/// gives up on a callback after 2 s; answering 503 before that tells it
/// to retry rather than leaving it to guess.
pub const ACK_TIMEOUT: Duration = Duration::from_millis(1500);

/// How long connecting at start may take before the daemon gives up
/// (systemd then restarts it).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// A failure to reach or set up JetStream.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster.credentials {path}: {source}")]
    Credentials {
        path: String,
        source: std::io::Error,
    },
    #[error("cluster.tls_ca {0}: not found")]
    TlsCa(String),
    #[error("connecting to NATS ({servers}): {message}")]
    Connect { servers: String, message: String },
    #[error("setting up JetStream stream {stream}: {message}")]
    Stream { stream: String, message: String },
}

/// A connection to the NATS servers and JetStream.
#[derive(Clone)]
pub struct Cluster {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub config: ClusterConfig,
}

impl Cluster {
    /// Connects with the section's credentials, user/password or CA, and
    /// keeps reconnecting for ever once connected (a NATS outage makes
    /// callbacks 503 until it ends, it does not stop the daemon).
    pub async fn connect(config: &ClusterConfig) -> Result<Cluster, ClusterError> {
        let servers = config.nats.join(", ");
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("callwatch {}", config.node))
            .connection_timeout(Duration::from_secs(3))
            .max_reconnects(None)
            // Publishes made while disconnected would otherwise wait in
            // the client and be sent (and stored) after their request
            // was already answered 503; that is harmless thanks to
            // Nats-Msg-Id, but a small buffer bounds memory.
            .client_capacity(4096);
        if !config.credentials.is_empty() {
            opts = opts
                .credentials_file(&config.credentials)
                .await
                .map_err(|source| ClusterError::Credentials {
                    path: config.credentials.clone(),
                    source,
                })?;
        }
        if !config.user.is_empty() {
            opts = opts.user_and_password(config.user.clone(), config.password.clone());
        }
        if !config.tls_ca.is_empty() {
            let path = std::path::PathBuf::from(&config.tls_ca);
            if !path.exists() {
                return Err(ClusterError::TlsCa(config.tls_ca.clone()));
            }
            opts = opts.add_root_certificates(path).require_tls(true);
        }
        let client = tokio::time::timeout(CONNECT_TIMEOUT, opts.connect(config.nats.as_slice()))
            .await
            .map_err(|_| ClusterError::Connect {
                servers: servers.clone(),
                message: format!("no server answered within {CONNECT_TIMEOUT:?}"),
            })?
            .map_err(|e| ClusterError::Connect {
                servers: servers.clone(),
                message: e.to_string(),
            })?;
        let js = jetstream::context::ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            .build(client.clone());
        Ok(Cluster {
            client,
            js,
            config: config.clone(),
        })
    }

    /// Whether the client holds a connection to some NATS server now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The stream's settings: the callbacks' subject, file storage,
    /// `replicas`, `retention` as max age and `dedup_window` as the
    /// duplicate window (a retry within it carries the same Nats-Msg-Id
    /// and is stored once).
    pub fn stream_config(&self, dedup_window: Duration) -> stream::Config {
        stream::Config {
            name: self.config.stream.clone(),
            description: Some("callwatch: accepted call callbacks".into()),
            subjects: vec![self.config.subject(), self.config.tick_subject()],
            storage: stream::StorageType::File,
            num_replicas: self.config.replicas,
            max_age: self.config.retention,
            // JetStream refuses a duplicate window longer than max_age.
            duplicate_window: dedup_window.min(self.config.retention),
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        }
    }

    /// Creates the stream, or brings an existing one to the configured
    /// settings (every node runs this; the same config makes it a no-op).
    pub async fn ensure_stream(
        &self,
        dedup_window: Duration,
    ) -> Result<stream::Stream, ClusterError> {
        let err = |message: String| ClusterError::Stream {
            stream: self.config.stream.clone(),
            message,
        };
        let cfg = self.stream_config(dedup_window);
        // JetStream may still be electing its meta leader right after the
        // servers start: retry for a while.
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        loop {
            match self.js.create_or_update_stream(cfg.clone()).await {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!(error = %e, "stream not ready yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(err(e.to_string())),
            }
        }
        self.js
            .get_stream(&self.config.stream)
            .await
            .map_err(|e| err(e.to_string()))
    }
}
