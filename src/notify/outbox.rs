//! The durable outbox: every notification is written to the store before
//! its first attempt, then one worker per receiver delivers its queue in
//! order, retrying with exponential backoff and jitter (or the service's
//! `Retry-After`) until `alerting.give_up_after`. Because the queue lives
//! in SQLite, a restart resumes where the last run stopped.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::Notify;

use super::{Notification, NotifyError, Receivers};
use crate::ingest::now_ms;
use crate::metrics::{Metrics, ReceiverLabels};
use crate::store::{OutboxItem, Store, StoreError};

/// Shared handle to the outbox.
pub struct Outbox {
    store: Arc<Mutex<Store>>,
    receivers: Arc<Receivers>,
    metrics: Arc<Metrics>,
    give_up_after_ms: i64,
    max_retry: Duration,
    wake: Notify,
    /// Set at shutdown: workers finish the attempt in progress and stop.
    stopping: std::sync::atomic::AtomicBool,
}

/// Delay before retry number `attempts + 1`: 1 s doubling, ±20 % jitter so
/// a fleet of failures does not retry in step, never more than `max`
/// (`alerting.max_retry_interval`).
pub fn backoff(attempts: u32, max: Duration) -> Duration {
    let max_ms = max.as_millis() as u64;
    let base = 1000u64.saturating_mul(1u64 << attempts.min(20)).min(max_ms);
    let jitter = rand::rng().random_range(0.8..1.2);
    Duration::from_millis(((base as f64 * jitter) as u64).min(max_ms))
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    // A poisoned lock means a panic mid-call; SQLite's own transactions
    // keep the data consistent, so carrying on is safe.
    store.lock().unwrap_or_else(|p| p.into_inner())
}

impl Outbox {
    pub fn new(
        store: Arc<Mutex<Store>>,
        receivers: Arc<Receivers>,
        metrics: Arc<Metrics>,
        give_up_after: Duration,
        max_retry: Duration,
    ) -> Outbox {
        Outbox {
            store,
            receivers,
            metrics,
            give_up_after_ms: give_up_after.as_millis() as i64,
            max_retry,
            wake: Notify::new(),
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Persists a notification, which the receiver's worker then delivers,
    /// and in the same transaction releases the pending transitions it
    /// carries (see [`Store::enqueue_releasing`]).
    pub fn enqueue_releasing(
        &self,
        n: &Notification,
        done: &[i64],
        finished: &[i64],
    ) -> Result<(), StoreError> {
        {
            let store = lock(&self.store);
            let domain = self
                .receivers
                .get(&n.receiver)
                .and_then(|r| r.mail_domain());
            let threaded = match domain {
                Some(domain) => Some(super::thread::stamp(&store, n, domain)?),
                None => None,
            };
            let payload =
                serde_json::to_string(threaded.as_ref().unwrap_or(n)).map_err(|source| {
                    StoreError::Json {
                        op: "enqueue",
                        source,
                    }
                })?;
            store.enqueue_releasing(&n.receiver, &payload, now_ms(), done, finished)?;
            self.metrics
                .outbox_size
                .set(store.outbox_len().unwrap_or(0) as i64);
        }
        self.wake.notify_waiters();
        Ok(())
    }

    fn count(&self, receiver: &str, outcome: &str) {
        self.metrics
            .notifications
            .get_or_create(&ReceiverLabels {
                receiver: receiver.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Runs one worker per receiver until `shutdown` resolves. A send in
    /// progress at shutdown is abandoned; it stays queued and is retried on
    /// the next start.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let mut workers = tokio::task::JoinSet::new();
        let names: Vec<String> = self
            .receivers
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        for name in names {
            let this = self.clone();
            workers.spawn(async move { this.worker(name).await });
        }
        shutdown.await;
        // An attempt cut off after the service got the message but before
        // the row is removed would be sent again on the next start, so
        // attempts in progress may finish (each is bounded by its
        // receiver's timeout); only a stuck one is aborted.
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_waiters();
        let finished = tokio::time::timeout(Duration::from_secs(15), async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!("outbox workers still busy at shutdown; aborting them");
            workers.abort_all();
            while workers.join_next().await.is_some() {}
        }
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    async fn worker(self: Arc<Self>, name: String) {
        loop {
            if self.is_stopping() {
                return;
            }
            // Listen before reading the queue: `notify_waiters` keeps no
            // permit, so an enqueue between the read and the wait would
            // otherwise leave the new item for the 1 s fallback poll.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = now_ms();
            let due = lock(&self.store).due(&name, now, 16);
            let due = match due {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(receiver = %name, error = %e, "cannot read the outbox");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if due.is_empty() {
                let next = lock(&self.store).next_due(&name).ok().flatten();
                let wait = next.map_or(1000, |t| (t - now).clamp(1, 1000)) as u64;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    _ = woken => {}
                }
                continue;
            }
            for item in due {
                if self.is_stopping() {
                    return;
                }
                self.attempt(&name, item).await;
            }
        }
    }

    async fn attempt(&self, name: &str, item: OutboxItem) {
        let Some(receiver) = self.receivers.get(name) else {
            tracing::error!(receiver = %name, "notification for an unknown receiver dropped");
            let _ = lock(&self.store).remove(item.id);
            return;
        };
        let n: Notification = match serde_json::from_str(&item.payload) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(receiver = %name, error = %e, "unreadable notification dropped");
                let _ = lock(&self.store).remove(item.id);
                self.count(name, "given_up");
                return;
            }
        };
        let result = receiver.send(&n).await;
        let now = now_ms();
        let store = lock(&self.store);
        let outcome = match result {
            Ok(()) => {
                tracing::info!(receiver = %name, alerts = n.alerts.len(), status = n.status.as_str(), attempts = item.attempts + 1, "notification delivered");
                store.remove(item.id).map(|_| "sent")
            }
            Err(e) => self.failed(&store, name, &item, &e, now),
        };
        match outcome {
            Ok(o) => self.count(name, o),
            Err(e) => tracing::error!(receiver = %name, error = %e, "outbox update failed"),
        }
        self.metrics
            .outbox_size
            .set(store.outbox_len().unwrap_or(0) as i64);
    }

    fn failed(
        &self,
        store: &Store,
        name: &str,
        item: &OutboxItem,
        e: &NotifyError,
        now: i64,
    ) -> Result<&'static str, StoreError> {
        let age = now - item.created_at;
        if !e.is_retryable() || age >= self.give_up_after_ms {
            tracing::error!(receiver = %name, error = %e, attempts = item.attempts + 1, "notification given up");
            store.remove(item.id)?;
            return Ok("given_up");
        }
        let delay = e
            .retry_after()
            .unwrap_or_else(|| backoff(item.attempts, self.max_retry));
        tracing::warn!(receiver = %name, error = %e, retry_in_ms = delay.as_millis() as u64, "notification failed, will retry");
        store.reschedule(item.id, now + delay.as_millis() as i64, &e.to_string())?;
        Ok("failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let max = Duration::from_secs(300);
        let b0 = backoff(0, max).as_millis();
        assert!((800..=1200).contains(&b0), "{b0}");
        let b3 = backoff(3, max).as_millis();
        assert!((6400..=9600).contains(&b3), "{b3}");
        let big = backoff(30, max);
        assert!(big >= max * 8 / 10 && big <= max, "{big:?}");
        let capped = backoff(3, Duration::from_secs(2));
        assert!(capped <= Duration::from_secs(2), "{capped:?}");
    }
}
