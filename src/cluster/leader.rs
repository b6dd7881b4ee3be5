//! The notification side of a cluster node, put together: the lease, the
//! cluster outbox and the shared silences, and the hooks that bind them to
//! the dispatcher and the local delivery queue. Every node publishes its
//! engine's transitions; the leader reads them back, routes and groups
//! them, and its delivery queue sends only while it leads, recording each
//! send. See docs/cluster.md.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;

use super::lease::{Lease, LeaseSettings, Role};
use super::outbox::{transition_id, ClusterOutbox, OutboxSettings};
use super::silences::ClusterSilences;
use crate::notify::dispatch::{Dispatcher, Tracked};
use crate::notify::outbox::{Fence, Gate, Outbox};
use crate::notify::Notification;
use crate::store::Store;

/// Names of the JetStream objects, derived from `cluster.stream`.
pub fn names(stream: &str) -> (String, String, String, String) {
    (
        format!("{stream}_OUTBOX"),
        format!("{stream}_LEADER"),
        format!("{stream}_DELIVERED"),
        format!("{stream}_SILENCES"),
    )
}

/// What a cluster node runs for notifications.
pub struct LeaderSide {
    pub lease: Arc<Lease>,
    pub outbox: Arc<ClusterOutbox>,
    pub silences: Arc<ClusterSilences>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Only the leader sends; each send is recorded under its term.
struct LeaderFence {
    lease: Arc<Lease>,
    outbox: Arc<ClusterOutbox>,
}

impl Fence for LeaderFence {
    fn check<'a>(
        &'a self,
        receiver: &'a str,
        n: &'a Notification,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Gate> + Send + 'a>> {
        Box::pin(async move {
            if !self.lease.is_leader() {
                return Gate::Wait;
            }
            // Queued in an earlier term and sent by another leader since.
            let ids: Vec<String> = n.alerts.iter().map(transition_id).collect();
            let mut all_reached = !ids.is_empty();
            for id in &ids {
                match self.outbox.reached(id, &[receiver.to_string()]).await {
                    Ok(r) if !r.is_empty() => {}
                    Ok(_) => all_reached = false,
                    // Not knowing, wait: sending could repeat it.
                    Err(_) => return Gate::Wait,
                }
            }
            if all_reached && !n.test {
                for id in &ids {
                    self.outbox.settle(id, Some(receiver)).await;
                }
                return Gate::Drop;
            }
            Gate::Send
        })
    }

    fn sent<'a>(
        &'a self,
        receiver: &'a str,
        n: &'a Notification,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let term = self.lease.term().unwrap_or(0);
            self.outbox.sent(receiver, &n.alerts, term).await;
        })
    }

    fn given_up<'a>(
        &'a self,
        receiver: &'a str,
        n: &'a Notification,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            // Given up (recorded in the alert's history like on a single
            // node): the message must not stay held for ever, nor be
            // redelivered to the next leader for the same receiver.
            for a in &n.alerts {
                self.outbox.settle(&transition_id(a), Some(receiver)).await;
            }
        })
    }
}

/// Everything [`LeaderSide::start`] needs, as plain values.
pub struct LeaderSettings {
    pub stream: String,
    pub node: String,
    pub leader_ttl: Duration,
    pub replicas: usize,
    pub retention: Duration,
}

impl From<&crate::config::ClusterConfig> for LeaderSettings {
    fn from(c: &crate::config::ClusterConfig) -> LeaderSettings {
        LeaderSettings {
            stream: c.stream.clone(),
            node: c.node.clone(),
            leader_ttl: c.leader_ttl,
            replicas: c.replicas,
            retention: c.retention,
        }
    }
}

impl LeaderSide {
    /// Sets up the lease, outbox and silences; mirrors silences into
    /// `store`; fences `delivery`; and, while this node leads, feeds the
    /// cluster outbox to `dispatcher`.
    pub async fn start(
        js: &jetstream::Context,
        settings: LeaderSettings,
        store: Arc<Mutex<Store>>,
        dispatcher: Arc<Dispatcher>,
        delivery: &Outbox,
        receivers: Vec<String>,
        gauge: Gauge,
    ) -> anyhow::Result<LeaderSide> {
        let (outbox_stream, lease_bucket, delivered, silences_bucket) = names(&settings.stream);
        let silences =
            Arc::new(ClusterSilences::setup(js, &silences_bucket, settings.replicas).await?);
        let outbox = Arc::new(
            ClusterOutbox::setup(
                js,
                OutboxSettings {
                    subject: format!("{outbox_stream}.transitions"),
                    stream: outbox_stream,
                    delivered_bucket: delivered,
                    replicas: settings.replicas,
                    retention: settings.retention,
                    ack_wait: settings.leader_ttl,
                },
            )
            .await?,
        );
        let lease = Arc::new(
            Lease::start(
                js,
                LeaseSettings {
                    bucket: lease_bucket,
                    node: settings.node,
                    ttl: settings.leader_ttl,
                    replicas: settings.replicas,
                },
                gauge,
            )
            .await?,
        );
        delivery.set_fence(Arc::new(LeaderFence {
            lease: lease.clone(),
            outbox: outbox.clone(),
        }));
        let l = lease.clone();
        let mut tasks = vec![
            silences.mirror(store),
            silences.purger(Duration::from_secs(600), move || l.is_leader()),
        ];
        let (l, o) = (lease.clone(), outbox.clone());
        tasks.push(tokio::spawn(async move {
            let mut role = l.watch();
            let mut led = false;
            loop {
                if !matches!(*role.borrow_and_update(), Role::Leader { .. }) {
                    led = false;
                    if role.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                if !led {
                    led = true;
                    dispatcher.hold_suppressed_on_lead();
                }
                let leading = || l.is_leader();
                let route = |t, reached| dispatcher.submit_from_cluster(t, reached);
                if let Err(e) = o.lead(leading, &receivers, route).await {
                    tracing::warn!(error = %e, "reading the cluster outbox; retrying");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
        Ok(LeaderSide {
            lease,
            outbox,
            silences,
            tasks,
        })
    }

    /// A channel the engine's transitions go into instead of the local
    /// dispatcher: each is published to the cluster outbox (retried until
    /// JetStream takes it), then released from the local pending table.
    pub fn publisher(&self, store: Arc<Mutex<Store>>) -> mpsc::UnboundedSender<Vec<Tracked>> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Tracked>>();
        let outbox = self.outbox.clone();
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                for (id, t) in batch {
                    while let Err(e) = outbox.publish(&t).await {
                        tracing::warn!(error = %e, "transition not in the cluster outbox yet; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    if let Some(id) = id {
                        let released = store
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .release_pending(&[id]);
                        if let Err(e) = released {
                            tracing::error!(error = %e, "cannot release a published transition");
                        }
                    }
                }
            }
        });
        tx
    }
}

impl LeaderSide {
    /// Orderly stop: hands the lease on at once.
    pub async fn release(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.lease.release().await;
    }
}

impl Drop for LeaderSide {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
