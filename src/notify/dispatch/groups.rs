//! Grouping and its timers: the grouper and what each pending id is still
//! owed, the flush of due groups into the durable outbox (retrying what
//! the store refused, in order), and the dispatcher task that wakes for
//! the next due group.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Dispatcher;
use crate::notify::group::Grouper;
use crate::notify::Notification;

/// A due notification with the pending ids it still owes (`done`) and
/// finishes (`finished`) once queued.
pub(super) type Queueable = (Notification, Vec<i64>, Vec<i64>);

/// The grouper and, for each pending id in it, how many receivers' groups
/// still hold it.
pub(super) struct Groups {
    pub(super) grouper: Grouper,
    pub(super) owed: HashMap<i64, usize>,
}

impl Dispatcher {
    pub(super) fn unqueued(&self) -> std::sync::MutexGuard<'_, Vec<Queueable>> {
        self.unqueued.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn groups(&self) -> std::sync::MutexGuard<'_, Groups> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn flush(&self, now: SystemTime) {
        let due: Vec<_> = {
            let mut groups = self.groups();
            let Groups { grouper, owed } = &mut *groups;
            grouper
                .due_tracked(now)
                .into_iter()
                .map(|(n, ids)| {
                    // Still owed elsewhere → `done` for this receiver;
                    // owed nowhere else → `finished`.
                    let (mut done, mut finished) = (Vec::new(), Vec::new());
                    for id in ids {
                        match owed.get_mut(&id) {
                            Some(left) if *left > 1 => {
                                *left -= 1;
                                done.push(id);
                            }
                            _ => {
                                owed.remove(&id);
                                finished.push(id);
                            }
                        }
                    }
                    (n, done, finished)
                })
                .collect()
        };
        // What failed before goes first, so a receiver's notifications
        // keep their order; what fails now waits for the next flush.
        let mut waiting = std::mem::take(&mut *self.unqueued());
        let retried = waiting.len();
        waiting.extend(due);
        let mut failed = Vec::new();
        for (n, done, finished) in waiting {
            if !failed.is_empty() {
                failed.push((n, done, finished));
                continue;
            }
            if let Err(e) = self.outbox.enqueue_releasing(&n, &done, &finished) {
                if let Some(held_back) = self.log_rate.check_now("enqueue") {
                    tracing::error!(receiver = %n.receiver, error = %e, similar_since_last_log = held_back, "notification could not be queued; retrying every second");
                }
                failed.push((n, done, finished));
            }
        }
        if retried > 0 && failed.is_empty() {
            tracing::info!(
                notifications = retried,
                "queued notifications the store had refused"
            );
        }
        // Another thread may have flushed meanwhile; its leftovers are newer.
        let mut q = self.unqueued();
        failed.append(&mut q);
        *q = failed;
    }

    /// Moves due groups into the outbox until `shutdown`; then queues every
    /// waiting group at once so nothing decided is lost.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let now = SystemTime::now();
            self.release_unsuppressed(now);
            self.flush(now);
            let wait = self
                .groups()
                .grouper
                .next_due()
                .and_then(|t| t.duration_since(now).ok())
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.drain();
    }

    /// Queues every waiting group now, ignoring group_wait (at shutdown).
    pub fn drain(&self) {
        self.flush(SystemTime::now() + Duration::from_secs(100 * 365 * 24 * 3600));
    }
}
