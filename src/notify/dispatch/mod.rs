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
//!
//! This file owns the routing of a transition; `held.rs` what is held back,
//! `groups.rs` grouping and its timers, `cluster.rs` the cluster-mode hooks.

mod cluster;
mod groups;
mod held;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use groups::{Groups, Queueable};

use super::group::{GroupSettings, Grouper};
use super::hold::{Holds, Reason};
use super::outbox::Outbox;
use super::Receivers;
use crate::alert::Transition;
use crate::config::Config;
use crate::engine::Snapshot;
use crate::lograte::LogRate;
use crate::metrics::{Metrics, ReceiverLabels};
use crate::store::Store;

/// A transition and its id in the store's pending table (`None` if it
/// could not be saved: it is still delivered, just not crash-proof).
pub type Tracked = (Option<i64>, Transition);

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

    /// Uses `config`'s routes and default receivers from now on.
    pub fn set_config(&self, config: &Config) {
        let new = Arc::new(config.clone());
        match self.config.write() {
            Ok(mut c) => *c = new,
            Err(p) => *p.into_inner() = new,
        }
    }

    pub(super) fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(super) fn store(&self) -> std::sync::MutexGuard<'_, Store> {
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

    pub(super) fn release(&self, ids: &[i64]) {
        if let Err(e) = self.store().release_pending(ids) {
            tracing::error!(error = %e, "cannot release pending notifications");
        }
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
    pub(super) fn route(
        &self,
        jobs: Vec<(Tracked, Option<String>)>,
        reached: &HashMap<i64, Vec<String>>,
        now: SystemTime,
    ) {
        if jobs.is_empty() {
            return;
        }
        let inputs = self.routing_inputs(now);
        let quiet = inputs.quiet();
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
}

#[cfg(test)]
mod quiet_tests;
#[cfg(test)]
mod tests;
