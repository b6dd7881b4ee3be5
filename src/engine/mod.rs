//! The rule engine: routes each event into the windows of the rules that
//! accept it (one window per rule and key), runs `check` when a window
//! changes or on ticks, and drives each key's alert state machine. Pure:
//! engine time is passed in by the caller (wall clock live, event time in
//! `replay`), and the engine returns alert transitions instead of sending.

use std::sync::Arc;

use crate::alert::{Alert, AlertStatus, Evidence, Policy};
// Transitions are the alert module's; this path is kept for callers.
pub use crate::alert::Transition;
use crate::builtin::BuiltinAlerts;
use crate::event::Event;
use crate::rules::{Key, KeyBuf, Rule};
use crate::window::Window;

mod persist;
mod reload;
mod settings;
mod slot;
mod view;

pub use persist::{KeyRecord, Persist};
pub use settings::EngineSettings;
use slot::{evaluate_key, key_limit_alert, RuleSlot};
pub use view::{RuleInfo, RuleSettings, Snapshot};

/// Per-rule maps of keys. Keys are user ids from outside, so the hasher
/// must not be predictable: hashbrown's default, foldhash, is seeded at
/// random per map and costs a fraction of SipHash, which matters with one
/// lookup per event per rule.
type KeyMap<V> = hashbrown::HashMap<Key, V>;
type KeySet = hashbrown::HashSet<Key>;

/// Counters the engine keeps; the caller mirrors them into metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleStats {
    pub evaluations: u64,
    pub errors: u64,
    pub late_events: u64,
    /// New keys not tracked because the rule was at its `max_keys`.
    pub keys_refused: u64,
    /// Times the rule was suspended for exceeding its CPU budget.
    pub suspensions: u64,
    pub last_error: Option<String>,
    /// Seconds per `check` call since the last [`Engine::take_durations`]
    /// (bounded; only for the duration histogram, never for decisions).
    pub durations: Vec<f64>,
    /// Seconds spent in `check` in all (for `replay --summary`).
    pub eval_secs: f64,
}

/// Most `check` durations kept between two metric publications.
const MAX_DURATIONS: usize = 4096;

/// All rules' windows and alert states.
pub struct Engine {
    slots: Vec<RuleSlot>,
    settings: EngineSettings,
    future_events: u64,
    /// The key of the event being routed, reused for every event and rule.
    key: KeyBuf,
    builtin: BuiltinAlerts,
}

impl Transition {
    /// `alert` of `rule` at engine time `at`, going where the rule's
    /// `notify` says (routes decide when it says nothing).
    fn of(rule: &Rule, alert: Alert, at: i64) -> Transition {
        let notify = &rule.spec().notify;
        Transition {
            alert,
            notify: (!notify.is_empty()).then(|| notify.clone()),
            at,
        }
    }
}

fn policy_of(rule: &Rule, settings: &EngineSettings) -> Policy {
    let spec = rule.spec();
    Policy {
        rule: rule.name().to_string(),
        severity: spec.severity.as_str().to_string(),
        for_secs: spec.for_secs,
        repeat_secs: spec.repeat_secs.unwrap_or(settings.repeat_secs),
        resolve: spec.resolve,
        keep_firing_for_secs: spec.keep_firing_for_secs,
        labels: spec.labels.clone(),
        annotations: rule.annotations().clone(),
        external_url: settings.external_url.clone(),
        evidence_events: settings.evidence_events,
    }
}

/// Completes an alert about to be notified: the newest events of `window`
/// as evidence unless `check` chose some. Done only for transitions, so
/// evaluations that notify nothing pay nothing for it.
fn with_evidence(mut alert: Alert, window: &Window, max: usize) -> Alert {
    if alert.evidence.is_empty() {
        alert.evidence = window
            .events()
            .rev()
            .take(max)
            .map(|e| Evidence::of(e))
            .collect();
    }
    alert
}

impl Engine {
    pub fn new(rules: Vec<Arc<Rule>>, settings: EngineSettings) -> Engine {
        let slots = rules
            .into_iter()
            .map(|rule| RuleSlot::new(rule, &settings))
            .collect();
        Engine {
            slots,
            settings,
            future_events: 0,
            key: KeyBuf::default(),
            builtin: BuiltinAlerts::default(),
        }
    }

    /// The widest window of any rule, in seconds (how much history a
    /// restart must replay).
    pub fn max_window_secs(&self) -> i64 {
        self.slots
            .iter()
            .map(|s| s.rule.spec().window_secs)
            .max()
            .unwrap_or(0)
    }

    /// Events whose time was clamped to now.
    pub fn future_events(&self) -> u64 {
        self.future_events
    }

    /// Drains the recorded `check` durations per rule.
    pub fn take_durations(&mut self) -> Vec<(String, Vec<f64>)> {
        self.slots
            .iter_mut()
            .map(|s| {
                (
                    s.rule.name().to_string(),
                    std::mem::take(&mut s.stats.durations),
                )
            })
            .collect()
    }

    /// Where the rule named `name` is in this engine's rule order (0 if
    /// there is no such rule).
    pub fn rule_position(&self, name: &str) -> usize {
        self.slots
            .iter()
            .position(|s| s.rule.name() == name)
            .unwrap_or(0)
    }

    /// Per-rule counters and keys tracked, in rule order.
    pub fn stats(&self) -> Vec<(String, usize, RuleStats)> {
        self.slots
            .iter()
            .map(|s| (s.rule.name().to_string(), s.keys.len(), s.stats.clone()))
            .collect()
    }

    /// Every firing alert as the transition that announced it, at `now`
    /// (for the dispatcher to learn, on start, which silences hold what).
    pub fn firing_transitions(&self, now: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        for slot in &self.slots {
            for ks in slot.keys.values() {
                let Some(alert) = ks.tracker.as_ref().and_then(|t| t.current()) else {
                    continue;
                };
                if alert.status == AlertStatus::Firing {
                    out.push(Transition::of(&slot.rule, alert.clone(), now));
                }
            }
        }
        out.extend(self.builtin.transitions(now));
        out
    }

    /// Alerts currently pending or firing.
    pub fn active_alerts(&self) -> Vec<Alert> {
        let mut out: Vec<Alert> = self
            .slots
            .iter()
            .flat_map(|s| s.keys.values())
            .filter_map(|k| k.tracker.as_ref()?.shown())
            .chain(self.builtin.alerts().cloned())
            .collect();
        out.sort_by(|a, b| (&a.rule, &a.fingerprint).cmp(&(&b.rule, &b.fingerprint)));
        out
    }

    /// Feeds one event at engine time `now`. With `evaluate = false` the
    /// windows are filled but no rule runs (rebuilding after a restart).
    pub fn on_event(&mut self, event: Event, now: i64, evaluate: bool) -> Vec<Transition> {
        self.on_shared_event(&Arc::new(event), now, evaluate)
    }

    /// [`Engine::on_event`] for an event other engines may hold too
    /// (replay runs one engine per share of the rules on the same events).
    /// Borrowed: only a window that takes the event adds a reference, and
    /// most events are taken by none of one share's rules.
    pub fn on_shared_event(
        &mut self,
        event: &Arc<Event>,
        now: i64,
        evaluate: bool,
    ) -> Vec<Transition> {
        let adjusted;
        let event = if event.event_time > now + self.settings.max_clock_skew_secs {
            // A client's bad clock must neither be rejected nor expire
            // everyone's windows. (A copy: other engines may hold it.)
            let mut e = Event::clone(event);
            e.event_time = now;
            self.future_events += 1;
            adjusted = Arc::new(e);
            &adjusted
        } else {
            event
        };
        let mut out = Vec::new();
        // One clock read per rule: each rule is charged the time since
        // the previous read.
        let mut mark = self.settings.cpu_budget.map(|_| std::time::Instant::now());
        for slot in &mut self.slots {
            if slot.suspended.is_some() {
                continue;
            }
            let limits = self.settings.key_limits(slot);
            let RuleSlot {
                rule,
                policy,
                keys,
                stats,
                dirty,
                ..
            } = slot;
            let key = &mut self.key;
            let refused = stats.keys_refused;
            match RuleSlot::admit(rule, stats, keys, key, event, now, limits) {
                Some(ks) => {
                    ks.window.expire(now);
                    if evaluate {
                        let key = key.view(&rule.spec().group_by);
                        if let Some(t) = evaluate_key(rule, policy, stats, dirty, key, ks, now) {
                            out.push(t);
                        }
                    }
                }
                None if stats.keys_refused != refused => {
                    out.extend(key_limit_alert(slot, &mut self.builtin, now));
                }
                None => {}
            }
            if let (Some(budget), Some(mark)) = (&self.settings.cpu_budget, mark.as_mut()) {
                let t = std::time::Instant::now();
                let spent = t.saturating_duration_since(*mark);
                *mark = t;
                out.extend(slot.charge(spent, budget, &mut self.builtin, now));
            }
        }
        out
    }

    /// Rule names and source digests, in order.
    pub fn rule_digests(&self) -> Vec<(String, String)> {
        self.slots
            .iter()
            .map(|s| {
                (
                    s.rule.name().to_string(),
                    s.rule.source_digest().to_string(),
                )
            })
            .collect()
    }

    /// Evaluates every key now (after windows were rebuilt on start).
    pub fn evaluate_all(&mut self, now: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        for slot in &mut self.slots {
            self.settings
                .evaluate_slot(slot, &mut self.builtin, now, false, &mut out);
        }
        out
    }

    /// The engine tick: expires windows, evaluates keys whose window lost
    /// events or that have an active alert, and forgets idle keys.
    pub fn on_tick(&mut self, now: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        for slot in &mut self.slots {
            if !self
                .settings
                .evaluate_slot(slot, &mut self.builtin, now, true, &mut out)
            {
                continue;
            }
            slot.keys
                .retain(|_, ks| !(ks.window.is_empty() && !ks.is_active() && !ks.has_state()));
            out.extend(slot.check_key_limit(&mut self.builtin, now));
        }
        out.extend(self.builtin.repeats(self.settings.repeat_secs, now));
        // Deterministic order for replay output.
        out.sort_by(|a, b| {
            (&a.alert.rule, &a.alert.fingerprint).cmp(&(&b.alert.rule, &b.alert.fingerprint))
        });
        out
    }
}

#[cfg(test)]
mod tests;
