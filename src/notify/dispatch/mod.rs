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
//!
//! A transition a silence, an inhibition or a muted route keeps back is
//! held (in memory, see [`super::hold`]) and sent once nothing keeps it
//! back any more, as Alertmanager does: an alert still firing when its
//! silence, inhibition or mute ends goes out then, not at its next
//! repeat, possibly hours later. It waits `group_wait` at most, even if
//! its group was notified moments ago: it is news nobody has heard, and
//! holding it for the group's `group_interval` (minutes) would leave
//! on-call thinking the quiet was still on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use super::group::{GroupSettings, Grouper};
use super::hold::{Holds, Quiet, Reason};
use super::outbox::Outbox;
use super::{Notification, Receivers};
use crate::alert::Alert;
use crate::alert::Transition;
use crate::config::Config;
use crate::engine::Snapshot;
use crate::lograte::LogRate;
use crate::metrics::{Metrics, ReceiverLabels};
use crate::store::{Silence, Store};

/// A transition and its id in the store's pending table (`None` if it
/// could not be saved: it is still delivered, just not crash-proof).
pub type Tracked = (Option<i64>, Transition);

/// A due notification with the pending ids it still owes (`done`) and
/// finishes (`finished`) once queued.
type Queueable = (Notification, Vec<i64>, Vec<i64>);

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
    /// What silences, inhibitions and mutes keep back. Never locked
    /// together with `groups`.
    held: Mutex<Holds>,
    /// The engine's view of active alerts: the sources of inhibition.
    alerts: OnceLock<Arc<RwLock<Snapshot>>>,
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    wake: Notify,
    /// Due notifications the outbox could not take (the store failed),
    /// with the pending ids they release; retried before anything newer.
    unqueued: Mutex<Vec<Queueable>>,
    log_rate: LogRate,
    /// Cluster mode: the engine's transitions go to the cluster outbox
    /// instead (docs/cluster.md); the leader routes them back in through
    /// [`Dispatcher::submit_from_cluster`].
    cluster: OnceLock<tokio::sync::mpsc::UnboundedSender<Vec<Tracked>>>,
    /// Taken while the engine publishes its alerts and submits the
    /// transitions that changed them, and while held alerts are released:
    /// a release must not see an inhibiting alert gone before that
    /// alert's resolve is routed, or the released alert would be sent
    /// ahead of it.
    gate: Mutex<()>,
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
            held: Mutex::new(Holds::default()),
            alerts: OnceLock::new(),
            outbox,
            metrics,
            wake: Notify::new(),
            unqueued: Mutex::new(Vec::new()),
            log_rate: LogRate::new(Duration::from_secs(10)),
            cluster: OnceLock::new(),
            gate: Mutex::new(()),
        }
    }

    /// Runs `publish` (the engine making its active alerts visible) and
    /// submits `transitions` as one step as far as releasing held alerts
    /// goes (see `gate`).
    pub fn publish_and_submit(&self, publish: impl FnOnce(), transitions: Vec<Tracked>) {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        publish();
        self.submit(transitions);
    }

    /// Cluster mode: sends the engine's transitions to `publish` from now
    /// on. Call before [`Dispatcher::resume`].
    pub fn set_cluster(&self, publish: tokio::sync::mpsc::UnboundedSender<Vec<Tracked>>) {
        let _ = self.cluster.set(publish);
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

    fn unqueued(&self) -> std::sync::MutexGuard<'_, Vec<Queueable>> {
        self.unqueued.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, Groups> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored silences; `None` (logged, with what happens `instead`)
    /// if they cannot be read.
    fn read_silences(&self, instead: &str) -> Option<Vec<Silence>> {
        match self.store().silences() {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot read silences; {instead}");
                None
            }
        }
    }

    /// Reads the active alerts (inhibition sources) from the engine's
    /// published snapshot from now on. Until then nothing inhibits.
    pub fn watch_alerts(&self, snapshot: Arc<RwLock<Snapshot>>) {
        let _ = self.alerts.set(snapshot);
    }

    /// The alerts now pending or firing, as the engine last published them.
    fn active_alerts(&self) -> Vec<Alert> {
        match self.alerts.get() {
            Some(s) => match s.read() {
                Ok(s) => s.alerts.clone(),
                Err(p) => p.into_inner().alerts.clone(),
            },
            None => Vec::new(),
        }
    }

    /// For the API: per alert (with its rule's `notify` list), the
    /// fingerprints of the alerts inhibiting it and the time intervals
    /// muting it at `now`.
    pub fn quiet_status(
        &self,
        alerts: &[(Alert, Option<Vec<String>>)],
        now: i64,
    ) -> Vec<(Vec<String>, Vec<String>)> {
        let config = self.config();
        let active: Vec<Alert> = alerts.iter().map(|(a, _)| a.clone()).collect();
        let quiet = Quiet {
            config: &config,
            silences: &[],
            active: &active,
            now,
        };
        alerts
            .iter()
            .map(|(a, notify)| quiet.status(a, notify.as_deref()))
            .collect()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Holds> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        crate::store::lock(&self.store)
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
        if let Some(publish) = self.cluster.get() {
            // Cluster mode: not yet in the cluster outbox, or not known
            // to be; publishing again is harmless (same message id).
            let tracked = pending.into_iter().filter_map(|(id, body, _)| {
                serde_json::from_str::<Transition>(&body)
                    .ok()
                    .map(|t| (Some(id), t))
            });
            let _ = publish.send(tracked.collect());
            return;
        }
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
        self.route(
            tracked.into_iter().map(|t| (t, None)).collect(),
            &reached,
            SystemTime::now(),
        );
    }

    fn release(&self, ids: &[i64]) {
        if let Err(e) = self.store().release_pending(ids) {
            tracing::error!(error = %e, "cannot release pending notifications");
        }
    }

    /// Cluster mode, on the leader: routes one transition read from the
    /// cluster outbox, leaving out the receivers it already `reached`
    /// (docs/cluster.md). Saved as pending first, like the engine's own.
    /// Returns the receivers it is now owed to (none: settled).
    pub fn submit_from_cluster(&self, t: Transition, reached: Vec<String>) -> Vec<String> {
        let owed = {
            let silences = self.read_silences("notifying anyway").unwrap_or_default();
            let (active, config) = (self.active_alerts(), self.config());
            let quiet = Quiet {
                config: &config,
                silences: &silences,
                active: &active,
                now: crate::time::unix_secs(SystemTime::now()),
            };
            let plan = quiet.plan(&t.alert, t.notify.as_deref());
            let owed = plan
                .into_iter()
                .filter(|(r, why)| why.is_none() && !reached.contains(r));
            owed.map(|(r, _)| r).collect()
        };
        let body = serde_json::to_string(&t).unwrap_or_default();
        let id = match self.store().apply_kv_pending("cluster", &[], &[body]) {
            Ok(ids) => ids.first().copied(),
            Err(e) => {
                tracing::error!(error = %e, "cannot save a transition from the cluster as pending");
                None
            }
        };
        let reached = id
            .map(|id| HashMap::from([(id, reached)]))
            .unwrap_or_default();
        self.route(vec![((id, t), None)], &reached, SystemTime::now());
        owed
    }

    /// Routes alert transitions into the grouper (what a silence,
    /// inhibition or mute keeps back is held and counted).
    pub fn submit(&self, transitions: Vec<Tracked>) {
        let transitions = match self.cluster.get() {
            None => transitions,
            Some(publish) => match publish.send(transitions) {
                Ok(()) => return,
                Err(back) => back.0,
            },
        };
        let jobs = transitions.into_iter().map(|t| (t, None)).collect();
        self.route(jobs, &HashMap::new(), SystemTime::now());
    }

    /// Routes each transition to its receivers (or, with `Some(receiver)`,
    /// to that one only: releasing what was held for it), leaving out
    /// the receivers `reached` says a previous run already queued it for.
    fn route(
        &self,
        jobs: Vec<(Tracked, Option<String>)>,
        reached: &HashMap<i64, Vec<String>>,
        now: SystemTime,
    ) {
        if jobs.is_empty() {
            return;
        }
        // Better a notification too many than a lost one.
        let silences = self.read_silences("notifying anyway").unwrap_or_default();
        let active = self.active_alerts();
        let config = self.config();
        let quiet = Quiet {
            config: &config,
            silences: &silences,
            active: &active,
            now: crate::time::unix_secs(now),
        };
        let mut groups = self.groups();
        let mut unowed = Vec::new();
        let mut held_back: Vec<(String, Transition)> = Vec::new();
        // Sent (per receiver) or unrouted (all receivers): whatever was
        // held back for them is outdated.
        let mut settled: Vec<(String, Option<String>)> = Vec::new();
        for ((id, t), only) in jobs {
            let mut plan = quiet.plan(&t.alert, t.notify.as_deref());
            if let Some(done) = id.and_then(|id| reached.get(&id)) {
                plan.retain(|(r, _)| !done.contains(r));
            }
            if let Some(only) = &only {
                plan.retain(|(r, _)| r == only);
            }
            let fingerprint = &t.alert.fingerprint;
            if plan.is_empty() && only.is_none() {
                settled.push((fingerprint.clone(), None));
            }
            let mut receivers = Vec::new();
            for (r, reason) in plan {
                let Some(reason) = reason else {
                    settled.push((fingerprint.clone(), Some(r.clone())));
                    receivers.push(r);
                    continue;
                };
                match &reason {
                    Reason::Silenced(by) => {
                        tracing::info!(rule = %t.alert.rule, fingerprint = %fingerprint, receiver = %r, silence = %by, "alert silenced")
                    }
                    Reason::Inhibited(by) => {
                        tracing::info!(rule = %t.alert.rule, fingerprint = %fingerprint, receiver = %r, inhibited_by = ?by, "alert inhibited")
                    }
                    Reason::Muted(by) => {
                        tracing::info!(rule = %t.alert.rule, fingerprint = %fingerprint, receiver = %r, muted_by = ?by, "alert muted")
                    }
                }
                self.metrics
                    .notifications
                    .get_or_create(&ReceiverLabels {
                        receiver: r.clone(),
                        outcome: reason.name().into(),
                    })
                    .inc();
                held_back.push((r, t.clone()));
            }
            if receivers.is_empty() {
                unowed.extend(id);
                continue;
            }
            if let Some(id) = id {
                groups.owed.insert(id, receivers.len());
            }
            for r in &receivers {
                if only.is_some() {
                    // Released from a hold: due within `group_wait`.
                    groups.grouper.submit_released(r, t.alert.clone(), now);
                } else {
                    groups.grouper.submit_tracked(r, t.alert.clone(), now, id);
                }
            }
        }
        drop(groups);
        {
            let mut held = self.held();
            for (fingerprint, receiver) in &settled {
                match receiver {
                    Some(r) => held.settle(fingerprint, r),
                    None => held.settle_all(fingerprint),
                }
            }
            for (r, t) in held_back {
                held.hold(&r, t);
            }
        }
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

    /// Holds the firing alerts of a restarted engine that a silence,
    /// inhibition or mute keeps back now: what was held before the restart
    /// was only in memory. Whether each was sent before the hold began is
    /// not known, so each counts as sent: when the hold ends it goes out
    /// again, and so does a resolve that comes first (better a
    /// notification too many than a lost one). Call once at start.
    pub fn hold_suppressed(&self, firing: Vec<Transition>) {
        if firing.is_empty() {
            return;
        }
        let Some(silences) = self.read_silences("not holding silenced alerts") else {
            return;
        };
        let config = self.config();
        // The engine has not published its alerts yet: the restored
        // firing alerts are the inhibition sources.
        let active: Vec<Alert> = firing.iter().map(|t| t.alert.clone()).collect();
        let quiet = Quiet {
            config: &config,
            silences: &silences,
            active: &active,
            now: crate::time::unix_secs(SystemTime::now()),
        };
        let mut held = self.held();
        for t in firing {
            for (r, reason) in quiet.plan(&t.alert, t.notify.as_deref()) {
                if reason.is_some() {
                    held.hold_announced(&r, t.clone());
                }
            }
        }
    }

    /// Routes the transitions held back that nothing keeps back any more
    /// (a silence ended or was deleted, an inhibiting alert resolved, a
    /// mute interval ended), each to the receiver it was held from.
    fn release_unsuppressed(&self, now: SystemTime) {
        if self.held().is_empty() {
            return;
        }
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        let Some(silences) = self.read_silences("holding silenced alerts") else {
            return;
        };
        let active = self.active_alerts();
        let config = self.config();
        let quiet = Quiet {
            config: &config,
            silences: &silences,
            active: &active,
            now: crate::time::unix_secs(now),
        };
        let free = self.held().take_free(|t, receiver| {
            quiet
                .plan(&t.alert, t.notify.as_deref())
                .iter()
                .any(|(r, reason)| r == receiver && reason.is_some())
        });
        if !free.is_empty() {
            tracing::info!(
                alerts = free.len(),
                "silence, inhibition or mute over: sending what it held back"
            );
            let jobs = free
                .into_iter()
                .map(|(t, r)| ((None, t), Some(r)))
                .collect();
            self.route(jobs, &HashMap::new(), now);
        }
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

#[cfg(test)]
mod quiet_tests;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alert::AlertStatus;

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
                key: BTreeMap::new(),
                annotations: BTreeMap::new(),
                evidence: Vec::new(),
                url: None,
                reason: None,
                fingerprint: format!("fp-{rule}"),
            },
            notify: Some(notify.iter().map(|s| s.to_string()).collect()),
            at: 1_700_000_000,
        }
    }

    pub(super) struct Run {
        pub(super) store: Arc<Mutex<Store>>,
        pub(super) dispatcher: Dispatcher,
    }

    /// A dispatcher over the store in `dir`, as one run of the daemon
    /// would build it (group_wait 30 s, so nothing is due on submit).
    fn run(dir: &std::path::Path) -> Run {
        run_with(dir, |_| {})
    }

    /// [`run`] with the config changed by `tweak` first.
    pub(super) fn run_with(dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> Run {
        let mut config = Config::default();
        config.alerting.group_wait = Duration::from_secs(30);
        tweak(&mut config);
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
        pub(super) fn submit(&self, ts: Vec<Transition>) {
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

        /// The notifications queued for `receiver`, oldest first.
        pub(super) fn notifications(&self, receiver: &str) -> Vec<super::super::Notification> {
            lock(&self.store)
                .due(receiver, i64::MAX, 100)
                .expect("due")
                .iter()
                .map(|item| serde_json::from_str(&item.payload).expect("payload"))
                .collect()
        }

        /// Rules of the queued notifications for `receiver`.
        fn queued(&self, receiver: &str) -> Vec<Vec<String>> {
            let rules = |n: super::super::Notification| n.alerts.into_iter().map(|a| a.rule);
            self.notifications(receiver)
                .into_iter()
                .map(|n| rules(n).collect())
                .collect()
        }

        pub(super) fn pending(&self) -> usize {
            lock(&self.store).pending().expect("pending").len()
        }
    }

    pub(super) fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
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

    fn silence_rule(r: &Run, rule: &str, ends_at: i64) {
        let silence = crate::store::Silence {
            id: format!("s-{rule}"),
            matchers: vec![crate::store::Matcher {
                name: "rule".into(),
                value: rule.into(),
                is_regex: false,
                is_equal: true,
            }],
            starts_at: crate::time::unix_secs(SystemTime::now()) - 3600,
            ends_at,
            comment: String::new(),
            created_by: String::new(),
            updated_at: 0,
        };
        lock(&r.store).put_silence(&silence).expect("put silence");
    }

    fn resolved(rule: &str, notify: &[&str]) -> Transition {
        let mut t = transition(rule, notify);
        t.alert.status = AlertStatus::Resolved;
        t.alert.ends_at = Some(t.at + 600);
        t.at += 600;
        t
    }

    /// A dispatcher loop iteration `days` from now, when every group is
    /// due (`drain` would mark groups sent a century ahead, holding back
    /// the group's next notification as long).
    fn tick(r: &Run, days: u64) {
        r.dispatcher.release_unsuppressed(SystemTime::now());
        r.dispatcher
            .flush(SystemTime::now() + Duration::from_secs(days * 86_400));
    }

    /// Ends the silence on `rule` and lets the dispatcher notice (day 2).
    fn end_silence(r: &Run, rule: &str) {
        silence_rule(r, rule, crate::time::unix_secs(SystemTime::now()) - 1);
        tick(r, 2);
    }

    /// Statuses of the alerts queued for `receiver`, in order.
    pub(super) fn statuses(r: &Run, receiver: &str) -> Vec<String> {
        let alerts = r.notifications(receiver).into_iter().flat_map(|n| n.alerts);
        alerts.map(|a| a.status.as_str().to_string()).collect()
    }

    #[test]
    fn an_alert_firing_when_its_silence_ends_is_sent_then() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = run(dir.path());
        silence_rule(&r, "a", crate::time::unix_secs(SystemTime::now()) + 3600);
        r.submit(vec![transition("a", &["ops"]), transition("b", &["ops"])]);
        tick(&r, 1);
        assert_eq!(r.queued("ops"), vec![vec!["b"]], "a is silenced");
        end_silence(&r, "a");
        assert_eq!(r.queued("ops"), vec![vec!["b"], vec!["a"]]);
        assert_eq!(statuses(&r, "ops"), ["firing", "firing"]);
        // Sent once: nothing is held any more.
        tick(&r, 3);
        assert_eq!(r.queued("ops").len(), 2);
    }

    #[test]
    fn an_alert_that_fired_and_resolved_under_a_silence_is_never_sent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = run(dir.path());
        silence_rule(&r, "a", crate::time::unix_secs(SystemTime::now()) + 3600);
        r.submit(vec![transition("a", &["ops"])]);
        r.submit(vec![resolved("a", &["ops"])]);
        end_silence(&r, "a");
        assert!(r.queued("ops").is_empty());
    }

    #[test]
    fn a_resolve_a_silence_held_back_is_sent_when_it_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = run(dir.path());
        r.submit(vec![transition("a", &["ops"])]);
        tick(&r, 1);
        silence_rule(&r, "a", crate::time::unix_secs(SystemTime::now()) + 3600);
        // A repeat and the resolve, both under the silence.
        let mut repeat = transition("a", &["ops"]);
        repeat.at += 300;
        r.submit(vec![repeat]);
        r.submit(vec![resolved("a", &["ops"])]);
        tick(&r, 1);
        assert_eq!(statuses(&r, "ops"), ["firing"]);
        end_silence(&r, "a");
        assert_eq!(statuses(&r, "ops"), ["firing", "resolved"]);
    }

    #[test]
    fn a_transition_sent_after_a_silence_replaces_what_it_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = run(dir.path());
        silence_rule(&r, "a", crate::time::unix_secs(SystemTime::now()) + 3600);
        r.submit(vec![transition("a", &["ops"])]);
        // Deleted through the API, and the alert resolved and fired again
        // before the dispatcher looked: only the new firing goes out.
        silence_rule(&r, "a", crate::time::unix_secs(SystemTime::now()) - 1);
        let mut again = transition("a", &["ops"]);
        again.at += 900;
        again.alert.starts_at += 900;
        r.submit(vec![again]);
        tick(&r, 1);
        assert_eq!(r.queued("ops"), vec![vec!["a"]]);
    }

    #[test]
    fn silenced_or_unrouted_transitions_are_not_kept_pending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = run(dir.path());
        r.submit(vec![transition("a", &[])]);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn a_released_alert_does_not_wait_for_its_groups_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = run(dir.path());
        // One group per rule: alice (silenced) shares it with bob.
        let alert = |user: &str| {
            let mut t = transition("a", &["ops"]);
            t.alert.labels.insert("user_id".into(), user.into());
            t.alert.fingerprint = format!("fp-{user}");
            t
        };
        let silence = crate::store::Silence {
            id: "s-alice".into(),
            matchers: vec![crate::store::Matcher {
                name: "user_id".into(),
                value: "alice".into(),
                is_regex: false,
                is_equal: true,
            }],
            starts_at: crate::time::unix_secs(SystemTime::now()) - 60,
            ends_at: crate::time::unix_secs(SystemTime::now()) + 3600,
            comment: String::new(),
            created_by: String::new(),
            updated_at: 0,
        };
        lock(&r.store).put_silence(&silence).expect("put silence");
        r.submit(vec![alert("alice"), alert("bob")]);
        // Bob's group goes out now (as after group_wait).
        r.dispatcher
            .flush(SystemTime::now() + Duration::from_secs(30));
        assert_eq!(r.notifications("ops").len(), 1);
        lock(&r.store)
            .put_silence(&crate::store::Silence {
                ends_at: crate::time::unix_secs(SystemTime::now()) - 1,
                ..silence
            })
            .expect("end silence");
        let now = SystemTime::now();
        r.dispatcher.release_unsuppressed(now);
        // group_interval is 5 min; alice goes out after group_wait (30 s).
        r.dispatcher.flush(now + Duration::from_secs(29));
        assert_eq!(r.notifications("ops").len(), 1, "group_wait first");
        r.dispatcher.flush(now + Duration::from_secs(31));
        let sent = r.notifications("ops");
        assert_eq!(sent.len(), 2, "alice must not wait for group_interval");
        let users: Vec<&str> = sent[1]
            .alerts
            .iter()
            .map(|a| a.labels["user_id"].as_str())
            .collect();
        assert_eq!(users, ["alice", "bob"]);
    }
}
