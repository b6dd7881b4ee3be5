//! What the dispatcher holds back, and why. A transition is kept from a
//! receiver while a silence covers its alert, while a firing alert
//! inhibits it (`[[inhibit_rules]]`), or while its route is muted
//! (`mute_time_intervals`, or outside `active_time_intervals`). It is
//! held here, newest per alert and receiver, and goes out once nothing
//! keeps it back any more, so an alert still firing when the quiet ends
//! is sent then, not at its next repeat hours later. One mechanism for
//! every reason; only the reason differs.
//!
//! Pure: the silences, the active alerts and the time are passed in.

use std::collections::HashMap;

use super::route;
use super::silence;
use crate::alert::Transition;
use crate::alert::{Alert, AlertStatus};
use crate::config::Config;
use crate::quiet::inhibit;
use crate::store::Silence;

/// Why a transition is kept from a receiver.
#[derive(Debug, Clone, PartialEq)]
pub enum Reason {
    /// By the silence with this id.
    Silenced(String),
    /// By these firing alerts (fingerprints).
    Inhibited(Vec<String>),
    /// By these time intervals.
    Muted(Vec<String>),
}

impl Reason {
    /// The name used in logs, metrics (`outcome`) and `replay`.
    pub fn name(&self) -> &'static str {
        match self {
            Reason::Silenced(_) => "silenced",
            Reason::Inhibited(_) => "inhibited",
            Reason::Muted(_) => "muted",
        }
    }
}

/// What decisions are made against: config, silences, the alerts now
/// pending or firing (inhibition sources), and the time.
pub struct Quiet<'a> {
    pub config: &'a Config,
    pub silences: &'a [Silence],
    pub active: &'a [Alert],
    pub now: i64,
}

impl Quiet<'_> {
    /// The receivers `alert` goes to (its rule's `notify`, else routes),
    /// each with why it is held back now (`None`: send). A silence or an
    /// inhibition holds every receiver; a mute only its route's.
    pub fn plan(&self, alert: &Alert, notify: Option<&[String]>) -> Vec<(String, Option<Reason>)> {
        let config = self.config;
        let deliveries = route::deliveries(
            alert,
            notify,
            &config.routes,
            &config.alerting.default_receivers,
            &config.time_intervals,
            self.now,
        );
        let all = match self
            .silences
            .iter()
            .find(|s| silence::silences(s, &alert.labels, self.now))
        {
            Some(s) => Some(Reason::Silenced(s.id.clone())),
            None => {
                let by = inhibit::inhibited_by(&config.inhibit_rules, alert, self.active);
                (!by.is_empty()).then_some(Reason::Inhibited(by))
            }
        };
        deliveries
            .into_iter()
            .map(|d| {
                let reason = all
                    .clone()
                    .or_else(|| (!d.muted_by.is_empty()).then_some(Reason::Muted(d.muted_by)));
                (d.receiver, reason)
            })
            .collect()
    }

    /// For the API: the alerts inhibiting `alert`, and the time intervals
    /// muting it for at least one of its receivers.
    pub fn status(&self, alert: &Alert, notify: Option<&[String]>) -> (Vec<String>, Vec<String>) {
        let inhibited_by = inhibit::inhibited_by(&self.config.inhibit_rules, alert, self.active);
        let mut muted_by: Vec<String> = Vec::new();
        let deliveries = route::deliveries(
            alert,
            notify,
            &self.config.routes,
            &self.config.alerting.default_receivers,
            &self.config.time_intervals,
            self.now,
        );
        for name in deliveries.into_iter().flat_map(|d| d.muted_by) {
            if !muted_by.contains(&name) {
                muted_by.push(name);
            }
        }
        (inhibited_by, muted_by)
    }
}

/// The newest transition of an alert kept from one receiver, and whether
/// that receiver was ever sent the alert's firing (a resolve is only
/// worth sending if it was).
struct Held {
    transition: Transition,
    announced: bool,
}

/// Held transitions, by fingerprint and then receiver.
#[derive(Default)]
pub struct Holds(HashMap<String, HashMap<String, Held>>);

impl Holds {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps `t` back from `receiver` until nothing holds it any more.
    pub fn hold(&mut self, receiver: &str, t: Transition) {
        let fingerprint = t.alert.fingerprint.clone();
        let firing = t.alert.status == AlertStatus::Firing;
        let by_receiver = self.0.entry(fingerprint.clone()).or_default();
        let announced = match by_receiver.remove(receiver) {
            // Fired and resolved while held: nobody was told it fired,
            // so nobody needs telling it stopped.
            Some(h) if !firing && !h.announced => {
                if by_receiver.is_empty() {
                    self.0.remove(&fingerprint);
                }
                return;
            }
            Some(h) => h.announced,
            // A resolve, or a repeat (sent after the first firing), with
            // nothing held: the firing went out before the hold began.
            None => !firing || t.at > t.alert.starts_at,
        };
        by_receiver.insert(
            receiver.to_string(),
            Held {
                transition: t,
                announced,
            },
        );
    }

    /// Holds `t` for `receiver` as already announced (on start, when
    /// whether it was is not known: better once too often than never).
    pub fn hold_announced(&mut self, receiver: &str, t: Transition) {
        self.0
            .entry(t.alert.fingerprint.clone())
            .or_default()
            .insert(
                receiver.to_string(),
                Held {
                    transition: t,
                    announced: true,
                },
            );
    }

    /// `receiver` was sent a newer transition of the alert: what was
    /// held for it is outdated.
    pub fn settle(&mut self, fingerprint: &str, receiver: &str) {
        if let Some(by_receiver) = self.0.get_mut(fingerprint) {
            by_receiver.remove(receiver);
            if by_receiver.is_empty() {
                self.0.remove(fingerprint);
            }
        }
    }

    /// The alert goes nowhere any more: drop all that was held for it.
    pub fn settle_all(&mut self, fingerprint: &str) {
        self.0.remove(fingerprint);
    }

    /// Takes out every held transition `still_held(t, receiver)` says is
    /// no longer kept back, with its receiver.
    pub fn take_free(
        &mut self,
        mut still_held: impl FnMut(&Transition, &str) -> bool,
    ) -> Vec<(Transition, String)> {
        let mut free = Vec::new();
        for by_receiver in self.0.values_mut() {
            let done: Vec<String> = by_receiver
                .iter()
                .filter(|(r, h)| !still_held(&h.transition, r))
                .map(|(r, _)| r.clone())
                .collect();
            for r in done {
                if let Some(h) = by_receiver.remove(&r) {
                    free.push((h.transition, r));
                }
            }
        }
        self.0.retain(|_, by_receiver| !by_receiver.is_empty());
        // Deterministic order: oldest transition first.
        free.sort_by(|(a, ra), (b, rb)| {
            (a.at, &a.alert.fingerprint, ra).cmp(&(b.at, &b.alert.fingerprint, rb))
        });
        free
    }
}
