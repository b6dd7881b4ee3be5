//! What is held back: silences, inhibitions and muted routes, seen
//! through the engine's active alerts. It holds transitions that something
//! keeps back (in memory, see [`crate::notify::hold`]) and routes them
//! again once nothing does; the API's quiet status reads the same rules.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use super::Dispatcher;
use crate::alert::{Alert, AlertStatus, Transition};
use crate::engine::Snapshot;
use crate::notify::hold::{Holds, Quiet};
use crate::store::Silence;

impl Dispatcher {
    /// The stored silences; `None` (logged, with what happens `instead`)
    /// if they cannot be read.
    pub(super) fn read_silences(&self, instead: &str) -> Option<Vec<Silence>> {
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
    pub(super) fn active_alerts(&self) -> Vec<Alert> {
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

    pub(super) fn held(&self) -> std::sync::MutexGuard<'_, Holds> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds the firing alerts of a restarted engine that a silence,
    /// inhibition or mute keeps back now: what was held before the restart
    /// was only in memory. Whether each was sent before the hold began is
    /// not known, so each counts as sent: when the hold ends it goes out
    /// again, and so does a resolve that comes first (better a
    /// notification too many than a lost one). Call once at start (and,
    /// in cluster mode, on becoming the leader).
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

    /// Cluster mode, on becoming the leader: holds the firing alerts that
    /// a silence, inhibition or mute keeps back now. The previous leader
    /// held them in its memory, so without this a silence that ends after
    /// a change of leader would release nothing. One that the previous
    /// leader had sent before the hold began is found in the delivered
    /// records when released, and not sent again.
    pub fn hold_suppressed_on_lead(&self) {
        let Some(snapshot) = self.alerts.get() else {
            return;
        };
        let (alerts, notify): (Vec<Alert>, HashMap<String, Vec<String>>) = {
            let s = snapshot.read().unwrap_or_else(|p| p.into_inner());
            let notify = s
                .rules
                .iter()
                .map(|r| (r.name.clone(), r.config.spec.notify.clone()))
                .collect();
            (s.alerts.clone(), notify)
        };
        let now = crate::time::unix_secs(SystemTime::now());
        let firing = alerts
            .into_iter()
            .filter(|a| a.status == AlertStatus::Firing)
            .map(|alert| Transition {
                notify: notify.get(&alert.rule).filter(|n| !n.is_empty()).cloned(),
                alert,
                at: now,
            })
            .collect();
        self.hold_suppressed(firing);
    }

    /// Routes the transitions held back that nothing keeps back any more
    /// (a silence ended or was deleted, an inhibiting alert resolved, a
    /// mute interval ended), each to the receiver it was held from.
    pub(super) fn release_unsuppressed(&self, now: SystemTime) {
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
}
