//! The durable outbox: every notification is written to the store before
//! its first attempt, then one worker per receiver delivers its queue in
//! order, retrying with exponential backoff and jitter (or the service's
//! `Retry-After`) until `alerting.give_up_after`. Because the queue lives
//! in SQLite, a restart resumes where the last run stopped.
//!
//! What a receiver says is bounded: a `Retry-After` is honoured only up to
//! `alerting.max_retry_interval`, no retry is planned past the give-up
//! time, and give-up is also checked on a timer, so nothing is parked
//! forever. A receiver's queue holds at most
//! `alerting.max_queued_per_receiver` notifications (the oldest go), and
//! a few of its attempts run at once, so one that hangs until its timeout
//! does not hold the rest back.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::{Notification, NotifyError, Receivers};
use crate::lograte::LogRate;
use crate::metrics::{Metrics, ReceiverLabels};
use crate::store::{lock, OutboxItem, SharedStore, Store, StoreError};
use crate::time::now_ms;

/// Attempts of one receiver in flight at once. More than one, so a send
/// stuck until the receiver's timeout does not hold back the others; few,
/// so a struggling service is not hit by the whole queue at once.
pub const IN_FLIGHT_PER_RECEIVER: usize = 4;

/// What a delivery attempt may do now (cluster mode, see [`Fence`]).
pub enum Gate {
    Send,
    /// Not now (this node does not lead): the notification stays queued.
    Wait,
    /// Already delivered (by an earlier term): remove it unsent.
    Drop,
}

/// Cluster mode's hold on delivery (docs/cluster.md): only the leader
/// sends, and every send is recorded for the next leader.
pub trait Fence: Send + Sync {
    fn check<'a>(
        &'a self,
        receiver: &'a str,
        n: &'a Notification,
    ) -> std::pin::Pin<Box<dyn Future<Output = Gate> + Send + 'a>>;
    fn sent<'a>(
        &'a self,
        receiver: &'a str,
        n: &'a Notification,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
    /// Delivery to `receiver` was given up: nothing more is owed to it.
    fn given_up<'a>(
        &'a self,
        receiver: &'a str,
        n: &'a Notification,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// Shared handle to the outbox.
pub struct Outbox {
    /// Cluster mode only.
    fence: std::sync::OnceLock<Arc<dyn Fence>>,
    store: SharedStore,
    receivers: Arc<Receivers>,
    metrics: Arc<Metrics>,
    give_up_after_ms: i64,
    max_retry: Duration,
    /// `alerting.max_queued_per_receiver`.
    max_queued: usize,
    /// Repeated failures (a receiver down, a full disk) log once a while.
    log_rate: LogRate,
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

impl Outbox {
    pub fn new(
        store: SharedStore,
        receivers: Arc<Receivers>,
        metrics: Arc<Metrics>,
        give_up_after: Duration,
        max_retry: Duration,
    ) -> Outbox {
        Outbox {
            fence: std::sync::OnceLock::new(),
            store,
            receivers,
            metrics,
            give_up_after_ms: give_up_after.as_millis() as i64,
            max_retry,
            max_queued: usize::MAX,
            log_rate: LogRate::new(Duration::from_secs(10)),
            wake: Notify::new(),
            stopping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Cluster mode: delivers only as `fence` allows, and tells it of each
    /// send.
    pub fn set_fence(&self, fence: Arc<dyn Fence>) {
        let _ = self.fence.set(fence);
    }

    /// Keeps at most `n` notifications queued per receiver.
    pub fn with_max_queued(mut self, n: usize) -> Outbox {
        self.max_queued = n.max(1);
        self
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
            if self.max_queued != usize::MAX {
                let dropped = store.take_oldest_beyond(&n.receiver, self.max_queued)?;
                self.dropped(&n.receiver, &dropped);
                record_settled(&store, &n.receiver, &dropped, "dropped", now_ms());
            }
            self.metrics
                .outbox_size
                .set(store.outbox_len().unwrap_or(0) as i64);
        }
        self.wake.notify_waiters();
        Ok(())
    }

    fn count(&self, receiver: &str, outcome: &str) {
        self.count_n(receiver, outcome, 1);
    }

    fn count_n(&self, receiver: &str, outcome: &str, n: u64) {
        self.metrics
            .notifications
            .get_or_create(&ReceiverLabels {
                receiver: receiver.to_string(),
                outcome: outcome.to_string(),
            })
            .inc_by(n);
    }

    /// Accounts for notifications pushed out of a full queue.
    fn dropped(&self, receiver: &str, items: &[OutboxItem]) {
        if items.is_empty() {
            return;
        }
        self.count_n(receiver, "dropped", items.len() as u64);
        if let Some(held_back) = self.log_rate.check_now(&format!("{receiver} full")) {
            tracing::error!(
                receiver = %receiver,
                dropped = items.len(),
                similar_since_last_log = held_back,
                max_queued_per_receiver = self.max_queued,
                "outbox queue of receiver full; oldest notification dropped"
            );
        }
    }

    /// Gives up, on the clock rather than at an attempt, on notifications
    /// older than `alerting.give_up_after`.
    /// Returns them, for the cluster fence to release.
    fn give_up_expired(&self, name: &str, now: i64) -> Vec<Notification> {
        let expired = lock(&self.store).take_expired(name, now - self.give_up_after_ms);
        match expired {
            Ok(items) => {
                for item in &items {
                    tracing::error!(
                        receiver = %name,
                        attempts = item.attempts,
                        last_error = item.last_error.as_deref().unwrap_or(""),
                        "notification given up"
                    );
                }
                if !items.is_empty() {
                    let store = lock(&self.store);
                    record_settled(&store, name, &items, "given_up", now);
                    drop(store);
                    self.count_n(name, "given_up", items.len() as u64);
                    self.publish_size();
                }
                items
                    .iter()
                    .filter_map(|i| serde_json::from_str(&i.payload).ok())
                    .collect()
            }
            Err(e) => {
                if let Some(held_back) = self.log_rate.check_now(&format!("{name} expire")) {
                    tracing::error!(receiver = %name, error = %e, similar_since_last_log = held_back, "cannot give up old notifications");
                }
                Vec::new()
            }
        }
    }

    fn publish_size(&self) {
        let len = lock(&self.store).outbox_len().unwrap_or(0);
        self.metrics.outbox_size.set(len as i64);
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
        // Attempts in progress, and the outbox id each works on.
        let mut in_flight = JoinSet::new();
        let mut busy: HashMap<tokio::task::Id, i64> = HashMap::new();
        loop {
            if self.is_stopping() {
                // Attempts in progress may finish (see `run`).
                while in_flight.join_next().await.is_some() {}
                return;
            }
            // Listen before reading the queue: `notify_waiters` keeps no
            // permit, so an enqueue between the read and the wait would
            // otherwise leave the new item for the fallback poll.
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let now = now_ms();
            for n in self.give_up_expired(&name, now) {
                if let Some(fence) = self.fence.get() {
                    fence.given_up(&name, &n).await;
                }
            }
            let free = IN_FLIGHT_PER_RECEIVER - in_flight.len();
            let mut wait_ms = 1000;
            if free > 0 {
                let due = lock(&self.store).due(&name, now, IN_FLIGHT_PER_RECEIVER + busy.len());
                match due {
                    Ok(due) => {
                        let fresh: Vec<OutboxItem> = due
                            .into_iter()
                            .filter(|i| !busy.values().any(|b| *b == i.id))
                            .take(free)
                            .collect();
                        let started = fresh.len();
                        for item in fresh {
                            let id = item.id;
                            let this = self.clone();
                            let name = name.clone();
                            let handle = in_flight.spawn(async move {
                                this.attempt(&name, item).await;
                            });
                            busy.insert(handle.id(), id);
                        }
                        if started == 0 {
                            // Nothing new is due: sleep until the next
                            // item is (one in flight may be due already).
                            let next = lock(&self.store).next_due(&name).ok().flatten();
                            wait_ms = next.map_or(1000, |t| {
                                if t <= now {
                                    250
                                } else {
                                    (t - now).clamp(1, 1000)
                                }
                            });
                        } else if started == free {
                            wait_ms = 1000;
                        } else {
                            wait_ms = 0;
                        }
                    }
                    Err(e) => {
                        if let Some(held_back) = self.log_rate.check_now(&format!("{name} read")) {
                            tracing::error!(receiver = %name, error = %e, similar_since_last_log = held_back, "cannot read the outbox");
                        }
                    }
                }
            }
            if wait_ms == 0 {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
                _ = woken => {}
                Some(done) = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => e.id(),
                    };
                    busy.remove(&id);
                }
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
        if let Some(fence) = self.fence.get() {
            match fence.check(name, &n).await {
                Gate::Send => {}
                Gate::Wait => return,
                Gate::Drop => {
                    let _ = lock(&self.store).remove(item.id);
                    return;
                }
            }
        }
        let result = receiver.send(&n).await;
        if let (Ok(()), Some(fence)) = (&result, self.fence.get()) {
            fence.sent(name, &n).await;
        }
        let now = now_ms();
        // The store lock is not held across the fence's await.
        let gave_up = {
            let store = lock(&self.store);
            let error = result.as_ref().err().map(|e| e.to_string());
            let outcome = match result {
                Ok(()) => {
                    tracing::info!(receiver = %name, alerts = n.alerts.len(), status = n.status.as_str(), attempts = item.attempts + 1, "notification delivered");
                    store.remove(item.id).map(|_| "sent")
                }
                Err(e) => self.failed(&store, name, &item, &e, now),
            };
            let gave_up = matches!(outcome, Ok("given_up"));
            match outcome {
                Ok(o) => {
                    self.count(name, o);
                    let delivery = crate::store::Delivery {
                        receiver: name,
                        at_ms: now,
                        outcome: o,
                        attempt: item.attempts + 1,
                        error: error.as_deref(),
                    };
                    if !n.test {
                        crate::history::record_delivery(&store, &n.alerts, &delivery);
                    }
                }
                Err(e) => tracing::error!(receiver = %name, error = %e, "outbox update failed"),
            }
            self.metrics
                .outbox_size
                .set(store.outbox_len().unwrap_or(0) as i64);
            gave_up
        };
        if let (true, Some(fence)) = (gave_up, self.fence.get()) {
            fence.given_up(name, &n).await;
        }
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
        let delay = e.retry_after().map_or_else(
            || backoff(item.attempts, self.max_retry),
            |asked| asked.min(self.max_retry),
        );
        let next = retry_at(now, delay, item.created_at + self.give_up_after_ms);
        if let Some(held_back) = self.log_rate.check_now(&format!("{name} retry")) {
            tracing::warn!(receiver = %name, error = %e, retry_in_ms = next - now, similar_since_last_log = held_back, "notification failed, will retry");
        }
        store.reschedule(item.id, next, &e.to_string())?;
        Ok("failed")
    }
}

/// When to try again after `delay`: never before `now` (a huge delay must
/// not wrap around into the past) and never after `give_up_at`.
fn retry_at(now: i64, delay: Duration, give_up_at: i64) -> i64 {
    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    now.saturating_add(delay_ms).min(give_up_at).max(now)
}

/// Records `outcome` in the alert history for queued notifications
/// settled without an attempt (`given_up` on the clock, `dropped` from a
/// full queue).
fn record_settled(store: &Store, receiver: &str, items: &[OutboxItem], outcome: &str, at_ms: i64) {
    for item in items {
        // An unreadable payload is reported where it is read.
        let Ok(n) = serde_json::from_str::<Notification>(&item.payload) else {
            continue;
        };
        if n.test {
            continue;
        }
        let d = crate::store::Delivery {
            receiver,
            at_ms,
            outcome,
            attempt: item.attempts,
            error: item.last_error.as_deref(),
        };
        crate::history::record_delivery(store, &n.alerts, &d);
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

    #[test]
    fn retry_times_stay_between_now_and_give_up() {
        assert_eq!(retry_at(1000, Duration::from_secs(2), 10_000), 3000);
        assert_eq!(retry_at(1000, Duration::MAX, 10_000), 10_000);
        assert_eq!(
            retry_at(1000, Duration::from_secs(u64::MAX / 2), i64::MAX),
            i64::MAX
        );
        assert_eq!(retry_at(5000, Duration::from_secs(1), 4000), 5000);
    }
}
