//! Silences shared by the cluster: a JetStream KV bucket, one key per
//! silence id, the silence as JSON. The admin API of any node writes there
//! (then into its own store, so a read right after a write sees it), and
//! every node watches the bucket and mirrors each silence into its local
//! store, where the dispatcher and the API read them as in single-node
//! mode. So a silence created on one node, and its expiry on another, hold
//! on the leader, whichever node that is.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;

use super::lease::ensure_bucket;
use crate::store::{Silence, Store, SILENCE_RETENTION_SECS};

/// The shared silences bucket.
pub struct ClusterSilences {
    kv: kv::Store,
}

/// A failure to reach the silences bucket.
#[derive(Debug, thiserror::Error)]
#[error("silences bucket {bucket}: {message}")]
pub struct SilencesError {
    bucket: String,
    message: String,
}

impl ClusterSilences {
    /// Creates (or opens) the bucket.
    pub async fn setup(
        js: &jetstream::Context,
        bucket: &str,
        replicas: usize,
    ) -> Result<ClusterSilences, SilencesError> {
        let kv = ensure_bucket(
            js,
            kv::Config {
                bucket: bucket.to_string(),
                description: "callwatch: silences".into(),
                history: 1,
                num_replicas: replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            },
        )
        .await
        .map_err(|message| SilencesError {
            bucket: bucket.to_string(),
            message,
        })?;
        Ok(ClusterSilences { kv })
    }

    fn error(&self, message: impl ToString) -> SilencesError {
        SilencesError {
            bucket: self.kv.name.clone(),
            message: message.to_string(),
        }
    }

    /// Stores a silence for every node, waiting for JetStream's
    /// acknowledgement (a quorum of replicas has it).
    pub async fn put(&self, s: &Silence) -> Result<(), SilencesError> {
        let body = serde_json::to_vec(s).map_err(|e| self.error(e))?;
        self.kv
            .put(&s.id, body.into())
            .await
            .map_err(|e| self.error(format!("saving silence {:?}: {e}", s.id)))?;
        Ok(())
    }

    /// Purges the keys of silences that ended before `cutoff` (Unix
    /// seconds): the bucket would otherwise grow with every silence ever
    /// made. Returns how many went.
    pub async fn purge_ended_before(&self, cutoff: i64) -> Result<usize, SilencesError> {
        let mut keys = self.kv.keys().await.map_err(|e| self.error(e))?;
        let mut ended = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| self.error(e))?;
            let value = self.kv.get(&key).await.map_err(|e| self.error(e))?;
            let Some(value) = value else { continue };
            match serde_json::from_slice::<Silence>(&value) {
                Ok(s) if s.ends_at < cutoff => ended.push(key),
                Ok(_) => {}
                // Not a silence this version can read: left for a newer one.
                Err(_) => {}
            }
        }
        for key in &ended {
            self.kv.purge(key).await.map_err(|e| self.error(e))?;
        }
        Ok(ended.len())
    }

    /// Every `every`, while `leading` says this node leads, purges
    /// silences expired for longer than [`SILENCE_RETENTION_SECS`] (one
    /// node does it; any could).
    pub fn purger(
        self: &Arc<Self>,
        every: Duration,
        leading: impl Fn() -> bool + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if !leading() {
                    continue;
                }
                let cutoff = crate::time::now_secs() - SILENCE_RETENTION_SECS;
                match this.purge_ended_before(cutoff).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        silences = n,
                        "purged long-expired silences from the cluster"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "purging expired silences from the cluster")
                    }
                }
            }
        })
    }

    /// Mirrors the bucket into `store` until the task is aborted: every
    /// silence as it is now, then every change. A broken watch (NATS
    /// unreachable) is restarted; it resumes with each key's newest value,
    /// so nothing written meanwhile is missed.
    pub fn mirror(self: &Arc<Self>, store: Arc<Mutex<Store>>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = this.mirror_once(&store).await {
                    tracing::warn!(error = %e, "silences watch interrupted; restarting");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    async fn mirror_once(&self, store: &Mutex<Store>) -> Result<(), SilencesError> {
        let mut watch = self
            .kv
            .watch_with_history(">")
            .await
            .map_err(|e| self.error(e))?;
        while let Some(entry) = watch.next().await {
            let entry = entry.map_err(|e| self.error(e))?;
            if entry.operation != kv::Operation::Put {
                // Silences are expired, not deleted; a key removed by hand
                // leaves the local copy to age out with housekeeping.
                continue;
            }
            let s: Silence = match serde_json::from_slice(&entry.value) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(key = %entry.key, error = %e, "ignoring an unreadable silence in the bucket");
                    continue;
                }
            };
            let saved = store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put_silence(&s);
            match saved {
                Ok(()) => tracing::debug!(id = %s.id, "silence from the cluster applied"),
                Err(e) => {
                    tracing::error!(id = %s.id, error = %e, "cannot save a silence from the cluster")
                }
            }
        }
        Ok(())
    }
}
