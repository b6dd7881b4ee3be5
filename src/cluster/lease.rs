//! The leader lease: which one node of a cluster groups and delivers
//! notifications. A key in a JetStream KV bucket names the holder; it is
//! taken with `create` (only if absent) or, once a contender has seen the
//! same revision unchanged for a whole `leader_ttl`, with a compare-and-set
//! `update` on that revision. The holder renews it with `update(key,
//! revision)` every quarter of `leader_ttl`. The revision at which a node
//! took the lease is its *term*, the fencing token its writes carry.
//!
//! Safety: a holder counts itself leader only until three quarters of
//! `leader_ttl` after it *sent* its last successful renewal, while a
//! contender waits a whole `leader_ttl` after it *saw* that renewal's
//! revision, which is later. So a holder cut off from NATS stops delivering
//! before anybody else can start, whatever the servers do, provided the
//! nodes' clocks run at about the same rate (no wall-clock agreement is
//! needed: each side measures its own monotonic time).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;
use tokio::time::Instant;

/// The key holding the leader's node name.
pub const KEY: &str = "leader";

/// What a node is now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Leading since the lease revision `term`.
    Leader {
        term: u64,
    },
}

/// The lease's settings: plain values so the lease does not depend on how
/// the cluster is configured.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// The KV bucket holding the lease.
    pub bucket: String,
    /// This node's name, written as the holder.
    pub node: String,
    /// `cluster.leader_ttl`.
    pub ttl: Duration,
    /// JetStream replicas of the bucket.
    pub replicas: usize,
}

/// A failure to set up the lease bucket.
#[derive(Debug, thiserror::Error)]
#[error("setting up the leader lease bucket {bucket}: {message}")]
pub struct LeaseError {
    bucket: String,
    message: String,
}

/// Creates (or opens) a KV bucket, retrying while JetStream is still
/// electing a meta leader after the servers start.
pub async fn ensure_bucket(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match js.create_or_update_key_value(config.clone()).await {
            Ok(store) => return Ok(store),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(bucket = %config.bucket, error = %e, "bucket not ready yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The lease as this node holds or waits for it. Dropping it stops the
/// renewals without releasing the key (as a crashed node would); call
/// [`Lease::release`] on an orderly shutdown so the next leader need not
/// wait out the ttl.
pub struct Lease {
    shared: Arc<Shared>,
    role: watch::Receiver<Role>,
    task: tokio::task::JoinHandle<()>,
    kv: kv::Store,
}

/// What the renewal task and the readers share: the term and until when
/// it may be used (checked on every read, so a renewal task that is
/// stuck cannot keep a stale leader delivering).
struct Shared {
    lead: Mutex<Option<(u64, Instant)>>,
    gauge: Gauge,
}

impl Shared {
    fn lead(&self) -> std::sync::MutexGuard<'_, Option<(u64, Instant)>> {
        self.lead.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn term(&self) -> Option<u64> {
        match *self.lead() {
            Some((term, until)) if Instant::now() < until => Some(term),
            _ => None,
        }
    }
}

impl Lease {
    /// Opens the bucket and starts contending. `gauge` is set to 1 while
    /// this node leads and 0 otherwise (`callwatch_cluster_leader`).
    pub async fn start(
        js: &jetstream::Context,
        settings: LeaseSettings,
        gauge: Gauge,
    ) -> Result<Lease, LeaseError> {
        let kv = ensure_bucket(
            js,
            kv::Config {
                bucket: settings.bucket.clone(),
                description: "callwatch: the node that delivers notifications".into(),
                history: 1,
                num_replicas: settings.replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            },
        )
        .await
        .map_err(|message| LeaseError {
            bucket: settings.bucket.clone(),
            message,
        })?;
        gauge.set(0);
        let shared = Arc::new(Shared {
            lead: Mutex::new(None),
            gauge,
        });
        let (tx, role) = watch::channel(Role::Follower);
        let task = tokio::spawn(contend(kv.clone(), settings, shared.clone(), tx));
        Ok(Lease {
            shared,
            role,
            task,
            kv,
        })
    }

    /// This node's term if it leads now (its lease not yet lapsed).
    pub fn term(&self) -> Option<u64> {
        self.shared.term()
    }

    pub fn is_leader(&self) -> bool {
        self.term().is_some()
    }

    /// Changes of role, as the renewal task sees them (a lapse while the
    /// task is stuck shows in [`Lease::term`] first).
    pub fn watch(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Stops contending and, if this node holds the lease, deletes it (only
    /// at the revision it holds, so a newer holder is never removed).
    pub async fn release(&self) {
        self.task.abort();
        let held = self.shared.lead().take();
        self.shared.gauge.set(0);
        if let Some(entry) = held.and(self.kv.entry(KEY).await.ok().flatten()) {
            let _ = self
                .kv
                .delete_expect_revision(KEY, Some(entry.revision))
                .await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.gauge.set(0);
    }
}

/// Takes the lease when free, then renews it; steps down when a renewal
/// is refused (someone else holds it) or none succeeded in time.
async fn contend(kv: kv::Store, s: LeaseSettings, shared: Arc<Shared>, role: watch::Sender<Role>) {
    let renew_every = s.ttl / 4;
    // A term lasts this long after the renewal that extended it was sent.
    let valid_for = s.ttl * 3 / 4;
    // Followers look often, so a lapsed lease is taken soon after ttl.
    let poll = (s.ttl / 10).max(Duration::from_millis(50));
    let value = Bytes::from(s.node.clone());
    // The revision a follower saw and since when it has not changed.
    let mut seen: Option<(u64, Instant)> = None;
    // The holder's current revision.
    let mut revision = 0u64;
    loop {
        let leading = *role.borrow();
        match leading {
            Role::Leader { term } => {
                tokio::time::sleep(renew_every).await;
                let sent = Instant::now();
                let renewed =
                    tokio::time::timeout(renew_every, kv.update(KEY, value.clone(), revision))
                        .await;
                match renewed {
                    Ok(Ok(r)) => {
                        revision = r;
                        *shared.lead() = Some((term, sent + valid_for));
                    }
                    Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                        tracing::warn!(term, "leader lease taken by another node; stepping down");
                        step_down(&shared, &role);
                    }
                    other => {
                        let error = match other {
                            Ok(Err(e)) => e.to_string(),
                            _ => "timed out".into(),
                        };
                        if shared.term().is_none() {
                            tracing::warn!(term, %error, "leader lease not renewed within leader_ttl; stepping down");
                            step_down(&shared, &role);
                        } else {
                            tracing::debug!(term, %error, "leader lease renewal failed; retrying");
                        }
                    }
                }
            }
            Role::Follower => {
                let sent = Instant::now();
                let taken = match tokio::time::timeout(poll * 4, kv.entry(KEY)).await {
                    Ok(Ok(entry)) => try_take(&kv, &value, entry, &mut seen, s.ttl).await,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "cannot read the leader lease");
                        None
                    }
                    Err(_) => None,
                };
                if let Some(r) = taken {
                    revision = r;
                    seen = None;
                    *shared.lead() = Some((r, sent + valid_for));
                    shared.gauge.set(1);
                    tracing::info!(term = r, node = %s.node, "became the cluster leader");
                    role.send_replace(Role::Leader { term: r });
                    continue;
                }
                tokio::time::sleep(poll).await;
            }
        }
    }
}

/// Takes the lease if it is free (absent or deleted), or has shown the
/// same revision for a whole `ttl`; the new revision on success.
async fn try_take(
    kv: &kv::Store,
    value: &Bytes,
    entry: Option<kv::Entry>,
    seen: &mut Option<(u64, Instant)>,
    ttl: Duration,
) -> Option<u64> {
    let now = Instant::now();
    let entry = match entry {
        Some(e) if e.operation == kv::Operation::Put => e,
        // No holder: `create` succeeds for exactly one contender.
        _ => return kv.create(KEY, value.clone()).await.ok(),
    };
    match *seen {
        Some((rev, since)) if rev == entry.revision => {
            if now.duration_since(since) < ttl {
                return None;
            }
            tracing::info!(
                holder = %String::from_utf8_lossy(&entry.value),
                "leader lease not renewed within leader_ttl; taking it over"
            );
            // Compare-and-set: of several contenders one wins.
            kv.update(KEY, value.clone(), entry.revision).await.ok()
        }
        _ => {
            *seen = Some((entry.revision, now));
            None
        }
    }
}

fn step_down(shared: &Shared, role: &watch::Sender<Role>) {
    *shared.lead() = None;
    shared.gauge.set(0);
    role.send_replace(Role::Follower);
}
