//! The dispatcher: the step between the engine's alert transitions and the
//! outbox. It first persists the alert states the transitions carry (so a
//! restart neither re-notifies a firing alert nor forgets a resolve), then
//! for each transition picks the receivers (rule `notify`, routes,
//! default), drops silenced alerts, and feeds the grouper; groups that are
//! due become notifications persisted in the outbox.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use super::group::{GroupSettings, Grouper};
use super::outbox::Outbox;
use super::silence;
use super::{receivers_for, Receivers};
use crate::config::Config;
use crate::engine::{SavedAlert, Transition};
use crate::metrics::{Metrics, ReceiverLabels};
use crate::store::Store;

pub struct Dispatcher {
    config: Config,
    store: Arc<Mutex<Store>>,
    grouper: Mutex<Grouper>,
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    wake: Notify,
}

/// Store space of alert states, by fingerprint.
const ALERTS: &str = "alerts";

/// The alert states saved by earlier runs, for [`crate::engine::Engine::restore`].
pub fn saved_alerts(store: &Store) -> Vec<SavedAlert> {
    let rows = match store.kv(ALERTS) {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "cannot read saved alert states; firing alerts may notify again");
            return Vec::new();
        }
    };
    rows.into_iter()
        .filter_map(|(fingerprint, json)| match serde_json::from_str(&json) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(%fingerprint, error = %e, "unreadable saved alert state skipped");
                None
            }
        })
        .collect()
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Dispatcher {
    pub fn new(
        config: &Config,
        receivers: &Receivers,
        store: Arc<Mutex<Store>>,
        outbox: Arc<Outbox>,
        metrics: Arc<Metrics>,
    ) -> Dispatcher {
        let mut grouper = Grouper::new(GroupSettings::from(&config.alerting));
        for r in receivers.iter() {
            if let Some(every) = r.resend_interval() {
                grouper.resend_every(r.name(), every);
            }
        }
        Dispatcher {
            config: config.clone(),
            store,
            grouper: Mutex::new(grouper),
            outbox,
            metrics,
            wake: Notify::new(),
        }
    }

    fn grouper(&self) -> std::sync::MutexGuard<'_, Grouper> {
        self.grouper.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Saves the keys' alert states, active ones by value and inactive
    /// ones deleted, in one transaction.
    fn save_states(&self, store: &Store, transitions: &[Transition]) {
        let entries: Vec<(String, Option<String>)> = transitions
            .iter()
            .filter_map(|t| {
                let value = if t.saved.tracker.is_active() {
                    Some(serde_json::to_string(&t.saved).ok()?)
                } else {
                    None
                };
                Some((t.alert.fingerprint.clone(), value))
            })
            .collect();
        if let Err(e) = store.put_kv_all(ALERTS, &entries) {
            tracing::error!(error = %e, "cannot save alert states; a restart may notify again");
        }
    }

    /// Saves the alert states, then routes the transitions into the grouper
    /// (silenced ones are only counted).
    pub fn submit(&self, transitions: Vec<Transition>) {
        if transitions.is_empty() {
            return;
        }
        let now = SystemTime::now();
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        self.save_states(&store, &transitions);
        let silences = store.silences();
        drop(store);
        let silences = match silences {
            Ok(s) => s,
            Err(e) => {
                // Better a notification too many than a lost one.
                tracing::error!(error = %e, "cannot read silences; notifying anyway");
                Vec::new()
            }
        };
        let mut grouper = self.grouper();
        for t in transitions {
            let receivers = receivers_for(
                &t.alert,
                t.notify.as_deref(),
                &self.config.routes,
                &self.config.alerting.default_receivers,
            );
            let silenced_by = silences
                .iter()
                .find(|s| silence::silences(s, &t.alert.labels, unix(now)));
            if let Some(s) = silenced_by {
                tracing::info!(rule = %t.alert.rule, fingerprint = %t.alert.fingerprint, silence = %s.id, "alert silenced");
                for r in &receivers {
                    self.metrics
                        .notifications
                        .get_or_create(&ReceiverLabels {
                            receiver: r.clone(),
                            outcome: "silenced".into(),
                        })
                        .inc();
                }
                continue;
            }
            for r in &receivers {
                grouper.submit(r, t.alert.clone(), now);
            }
        }
        drop(grouper);
        self.wake.notify_one();
    }

    fn flush(&self, now: SystemTime) {
        let due = self.grouper().due(now);
        for n in due {
            if let Err(e) = self.outbox.enqueue(&n) {
                tracing::error!(receiver = %n.receiver, error = %e, "notification could not be queued");
            }
        }
    }

    /// Moves due groups into the outbox until `shutdown`; then queues every
    /// waiting group at once so nothing decided is lost.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let now = SystemTime::now();
            self.flush(now);
            let wait = self
                .grouper()
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
