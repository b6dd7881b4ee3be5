//! The dispatcher: the step between the engine's alert transitions and the
//! outbox. For each transition it picks the receivers (rule `notify`,
//! routes, default), drops silenced alerts, and feeds the grouper; groups
//! that are due become notifications persisted in the outbox.
//!
//! A transition arrives already saved in the store as *pending* (in the
//! same commit as the alert state that caused it). It stays pending until
//! every receiver it goes to has a notification carrying it in the
//! outbox, so a crash at any point between the engine and the outbox, or
//! while a group waits out `group_wait`, neither loses it nor sends it
//! twice: [`Dispatcher::resume`] resubmits what is left on the next start.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use super::group::{GroupSettings, Grouper};
use super::outbox::Outbox;
use super::silence;
use super::{receivers_for, Receivers};
use crate::config::Config;
use crate::engine::Transition;
use crate::metrics::{Metrics, ReceiverLabels};
use crate::store::Store;

/// A transition and its id in the store's pending table (`None` if it
/// could not be saved: it is still delivered, just not crash-proof).
pub type Tracked = (Option<i64>, Transition);

/// The grouper and, for each pending id in it, how many receivers' groups
/// still hold it.
struct Groups {
    grouper: Grouper,
    owed: HashMap<i64, usize>,
}

pub struct Dispatcher {
    /// Routes and default receivers; swapped on reload.
    config: std::sync::RwLock<Arc<Config>>,
    store: Arc<Mutex<Store>>,
    groups: Mutex<Groups>,
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    wake: Notify,
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
            config: std::sync::RwLock::new(Arc::new(config.clone())),
            store,
            groups: Mutex::new(Groups {
                grouper,
                owed: HashMap::new(),
            }),
            outbox,
            metrics,
            wake: Notify::new(),
        }
    }

    /// Uses `config`'s routes and default receivers from now on.
    pub fn set_config(&self, config: &Config) {
        let new = Arc::new(config.clone());
        match self.config.write() {
            Ok(mut c) => *c = new,
            Err(p) => *p.into_inner() = new,
        }
    }

    fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, Groups> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resubmits the transitions a previous run saved as pending but did
    /// not get into the outbox for every receiver (a crash, or groups
    /// still waiting when it stopped), skipping receivers already reached.
    /// Call once at start, before the engine delivers anything.
    pub fn resume(&self) {
        let pending = match self.store().pending() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read pending notifications");
                return;
            }
        };
        if pending.is_empty() {
            return;
        }
        tracing::info!(
            transitions = pending.len(),
            "resuming notifications a previous run had not queued"
        );
        let mut tracked = Vec::with_capacity(pending.len());
        let mut reached = HashMap::new();
        for (id, body, done) in pending {
            match serde_json::from_str::<Transition>(&body) {
                Ok(t) => {
                    tracked.push((Some(id), t));
                    reached.insert(id, done);
                }
                Err(e) => {
                    tracing::error!(id, error = %e, "dropping an unreadable pending notification");
                    self.release(&[id]);
                }
            }
        }
        self.route(tracked, &reached);
    }

    fn release(&self, ids: &[i64]) {
        if let Err(e) = self.store().release_pending(ids) {
            tracing::error!(error = %e, "cannot release pending notifications");
        }
    }

    /// Routes alert transitions into the grouper (silenced ones are only
    /// counted).
    pub fn submit(&self, transitions: Vec<Tracked>) {
        self.route(transitions, &HashMap::new());
    }

    fn route(&self, transitions: Vec<Tracked>, reached: &HashMap<i64, Vec<String>>) {
        if transitions.is_empty() {
            return;
        }
        let now = SystemTime::now();
        let silences = match self.store().silences() {
            Ok(s) => s,
            Err(e) => {
                // Better a notification too many than a lost one.
                tracing::error!(error = %e, "cannot read silences; notifying anyway");
                Vec::new()
            }
        };
        let config = self.config();
        let mut groups = self.groups();
        let mut unowed = Vec::new();
        for (id, t) in transitions {
            let mut receivers = receivers_for(
                &t.alert,
                t.notify.as_deref(),
                &config.routes,
                &config.alerting.default_receivers,
            );
            if let Some(done) = id.and_then(|id| reached.get(&id)) {
                receivers.retain(|r| !done.contains(r));
            }
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
                unowed.extend(id);
                continue;
            }
            if receivers.is_empty() {
                unowed.extend(id);
                continue;
            }
            if let Some(id) = id {
                groups.owed.insert(id, receivers.len());
            }
            for r in &receivers {
                groups.grouper.submit_tracked(r, t.alert.clone(), now, id);
            }
        }
        drop(groups);
        self.release(&unowed);
        // Groups already due (group_wait = 0, or an interval that has
        // passed) go to the durable outbox right here, on the caller's
        // thread, rather than after the dispatcher task wakes: the alert
        // state was just saved as firing, and the shorter the time until
        // its notification is saved too, the smaller the window in which a
        // crash could lose it.
        self.flush(now);
        self.wake.notify_one();
    }

    fn flush(&self, now: SystemTime) {
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
        for (n, done, finished) in due {
            if let Err(e) = self.outbox.enqueue_releasing(&n, &done, &finished) {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alert::{Alert, AlertStatus};

    fn transition(rule: &str, notify: &[&str]) -> Transition {
        Transition {
            alert: Alert {
                rule: rule.into(),
                status: AlertStatus::Firing,
                severity: "warning".into(),
                summary: "s".into(),
                labels: BTreeMap::from([("rule".to_string(), rule.to_string())]),
                value: serde_json::Value::Null,
                starts_at: 1_700_000_000,
                ends_at: None,
                fingerprint: format!("fp-{rule}"),
            },
            notify: Some(notify.iter().map(|s| s.to_string()).collect()),
            at: 1_700_000_000,
        }
    }

    struct Run {
        store: Arc<Mutex<Store>>,
        dispatcher: Dispatcher,
    }

    /// A dispatcher over the store in `dir`, as one run of the daemon
    /// would build it (group_wait 30 s, so nothing is due on submit).
    fn run(dir: &std::path::Path) -> Run {
        let mut config = Config::default();
        config.alerting.group_wait = Duration::from_secs(30);
        let store = Arc::new(Mutex::new(Store::open(dir).expect("open store")));
        let receivers = Arc::new(Receivers::from_config(&config).expect("receivers"));
        let metrics = Arc::new(Metrics::new());
        let outbox = Arc::new(Outbox::new(
            store.clone(),
            receivers.clone(),
            metrics.clone(),
            Duration::from_secs(3600),
            Duration::from_secs(60),
        ));
        let dispatcher = Dispatcher::new(&config, &receivers, store.clone(), outbox, metrics);
        Run { store, dispatcher }
    }

    impl Run {
        /// Saves transitions as the engine thread does, then submits them.
        fn submit(&self, ts: Vec<Transition>) {
            let bodies: Vec<String> = ts
                .iter()
                .map(|t| serde_json::to_string(t).expect("serialise"))
                .collect();
            let ids = lock(&self.store)
                .apply_kv_pending("keys", &[], &bodies)
                .expect("save pending");
            self.dispatcher
                .submit(ids.into_iter().map(Some).zip(ts).collect());
        }

        /// Rules of the queued notifications for `receiver`.
        fn queued(&self, receiver: &str) -> Vec<Vec<String>> {
            lock(&self.store)
                .due(receiver, i64::MAX, 100)
                .expect("due")
                .iter()
                .map(|item| {
                    let n: super::super::Notification =
                        serde_json::from_str(&item.payload).expect("payload");
                    n.alerts.into_iter().map(|a| a.rule).collect()
                })
                .collect()
        }

        fn pending(&self) -> usize {
            lock(&self.store).pending().expect("pending").len()
        }
    }

    fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
        store.lock().expect("store lock")
    }

    #[test]
    fn a_crash_while_groups_wait_loses_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let first = run(dir.path());
            first.submit(vec![
                transition("a", &["ops", "mail"]),
                transition("b", &["ops"]),
            ]);
            assert!(first.queued("ops").is_empty(), "group_wait holds them");
            assert_eq!(first.pending(), 2);
            // Dropped without drain: the process died.
        }
        let second = run(dir.path());
        second.dispatcher.resume();
        second.dispatcher.drain();
        // Default grouping is by rule: one notification per rule.
        assert_eq!(second.queued("ops"), vec![vec!["a"], vec!["b"]]);
        assert_eq!(second.queued("mail"), vec![vec!["a"]]);
        assert_eq!(second.pending(), 0, "every receiver has them now");

        // A third start finds nothing left to send.
        drop(second);
        let third = run(dir.path());
        third.dispatcher.resume();
        third.dispatcher.drain();
        assert_eq!(third.queued("ops").len(), 2);
        assert_eq!(third.queued("mail").len(), 1);
    }

    #[test]
    fn a_receiver_already_reached_is_not_sent_it_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let first = run(dir.path());
            first.submit(vec![transition("a", &["ops", "mail"])]);
            // `ops` got its notification; the process died before `mail`.
            let due = first
                .dispatcher
                .groups()
                .grouper
                .due_tracked(SystemTime::now() + Duration::from_secs(60));
            let (n, ids) = due
                .into_iter()
                .find(|(n, _)| n.receiver == "ops")
                .expect("ops group");
            first
                .dispatcher
                .outbox
                .enqueue_releasing(&n, &ids, &[])
                .expect("enqueue");
        }
        let second = run(dir.path());
        second.dispatcher.resume();
        second.dispatcher.drain();
        assert_eq!(second.queued("ops"), vec![vec!["a"]]);
        assert_eq!(second.queued("mail"), vec![vec!["a"]]);
        assert_eq!(second.pending(), 0);
    }

    #[test]
    fn silenced_or_unrouted_transitions_are_not_kept_pending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = run(dir.path());
        r.submit(vec![transition("a", &[])]);
        assert_eq!(r.pending(), 0);
    }
}
