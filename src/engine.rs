//! The rule engine: routes each event into the windows of the rules that
//! accept it (one window per rule and key), runs `check` when a window
//! changes or on ticks, and drives each key's alert state machine. Pure:
//! engine time is passed in by the caller (wall clock live, event time in
//! `replay`), and the engine returns alert transitions instead of sending.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::alert::{Alert, Condition, Policy, Tracker};
use crate::event::Event;
use crate::rules::{CheckCtx, CheckOutcome, Key, Rule};
use crate::window::Window;

/// Counters the engine keeps; the caller mirrors them into metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleStats {
    pub evaluations: u64,
    pub errors: u64,
    pub late_events: u64,
    pub last_error: Option<String>,
}

/// An alert that must be notified, with where the rule wants it to go.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub alert: Alert,
    /// The rule's `notify` list, which bypasses routes.
    pub notify: Option<Vec<String>>,
    /// Engine time of the transition.
    pub at: i64,
}

/// One key of one rule. Kept small, since a rule may track a million keys
/// (BENCHMARKS.md): the key lives only in the map that owns this, alert
/// labels are built when an alert needs them, and the tracker (a whole
/// alert object) exists only while the key's alert is pending or firing.
struct KeyState {
    window: Window,
    state: rhai::Map,
    /// `None` while inactive, which is what most keys are.
    tracker: Option<Box<Tracker>>,
}

impl KeyState {
    fn is_active(&self) -> bool {
        self.tracker.is_some()
    }
}

struct RuleSlot {
    rule: Arc<Rule>,
    policy: Policy,
    /// Boxed so the table's empty slots (a hash table runs up to half
    /// empty after it grows) cost a pointer, not a whole key state.
    keys: HashMap<Key, Box<KeyState>>,
    stats: RuleStats,
}

/// What the admin API shows of one rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RuleInfo {
    pub name: String,
    pub path: String,
    pub config: serde_json::Value,
    pub keys: usize,
    pub evaluations: u64,
    pub errors: u64,
    pub late_events: u64,
    pub last_error: Option<String>,
}

/// A point-in-time view of the engine for the admin API.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Snapshot {
    pub alerts: Vec<Alert>,
    pub rules: Vec<RuleInfo>,
}

fn spec_json(rule: &Rule, policy: &Policy) -> serde_json::Value {
    let spec = rule.spec();
    let where_: serde_json::Map<String, serde_json::Value> = spec
        .where_
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
        .collect();
    serde_json::json!({
        "events": spec.events,
        "where": where_,
        "group_by": spec.group_by,
        "window_secs": spec.window_secs,
        "severity": spec.severity.as_str(),
        "for_secs": spec.for_secs,
        "repeat_secs": policy.repeat_secs,
        "labels": spec.labels,
        "notify": spec.notify,
        "resolve": spec.resolve,
    })
}

/// Engine settings that are not per rule.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Default `repeat` for rules that set none.
    pub repeat_secs: i64,
    /// Event times further ahead than this are treated as now.
    pub max_clock_skew_secs: i64,
    pub max_events_per_key: usize,
}

/// All rules' windows and alert states.
pub struct Engine {
    slots: Vec<RuleSlot>,
    settings: EngineSettings,
    future_events: u64,
}

fn policy_of(rule: &Rule, settings: &EngineSettings) -> Policy {
    let spec = rule.spec();
    Policy {
        rule: rule.name().to_string(),
        severity: spec.severity.as_str().to_string(),
        for_secs: spec.for_secs,
        repeat_secs: spec.repeat_secs.unwrap_or(settings.repeat_secs),
        resolve: spec.resolve,
        labels: spec.labels.clone(),
    }
}

impl Engine {
    pub fn new(rules: Vec<Arc<Rule>>, settings: EngineSettings) -> Engine {
        let slots = rules
            .into_iter()
            .map(|rule| RuleSlot {
                policy: policy_of(&rule, &settings),
                rule,
                keys: HashMap::new(),
                stats: RuleStats::default(),
            })
            .collect();
        Engine {
            slots,
            settings,
            future_events: 0,
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

    /// Per-rule counters and keys tracked, in rule order.
    pub fn stats(&self) -> Vec<(String, usize, RuleStats)> {
        self.slots
            .iter()
            .map(|s| (s.rule.name().to_string(), s.keys.len(), s.stats.clone()))
            .collect()
    }

    /// Alerts and rule statistics, for the admin API.
    pub fn snapshot(&self) -> Snapshot {
        let rules = self
            .slots
            .iter()
            .map(|s| RuleInfo {
                name: s.rule.name().to_string(),
                path: s.rule.path().display().to_string(),
                config: spec_json(&s.rule, &s.policy),
                keys: s.keys.len(),
                evaluations: s.stats.evaluations,
                errors: s.stats.errors,
                late_events: s.stats.late_events,
                last_error: s.stats.last_error.clone(),
            })
            .collect();
        Snapshot {
            alerts: self.active_alerts(),
            rules,
        }
    }

    /// Alerts currently pending or firing.
    pub fn active_alerts(&self) -> Vec<Alert> {
        let mut out: Vec<Alert> = self
            .slots
            .iter()
            .flat_map(|s| s.keys.values())
            .filter_map(|k| k.tracker.as_ref()?.current().cloned())
            .collect();
        out.sort_by(|a, b| (&a.rule, &a.fingerprint).cmp(&(&b.rule, &b.fingerprint)));
        out
    }

    /// Feeds one event at engine time `now`. With `evaluate = false` the
    /// windows are filled but no rule runs (rebuilding after a restart).
    pub fn on_event(&mut self, event: Event, now: i64, evaluate: bool) -> Vec<Transition> {
        let mut event = event;
        if event.event_time > now + self.settings.max_clock_skew_secs {
            // A client's bad clock must neither be rejected nor expire
            // everyone's windows.
            event.event_time = now;
            self.future_events += 1;
        }
        let event = Arc::new(event);
        let mut out = Vec::new();
        let max_events = self.settings.max_events_per_key;
        for slot in &mut self.slots {
            match slot.rule.accepts(&event) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    slot.note_error(&format!("filter: {e}"), None);
                    continue;
                }
            }
            let width = slot.rule.spec().window_secs;
            if event.event_time <= now - width {
                slot.stats.late_events += 1;
                continue;
            }
            let key = slot.rule.key_of(&event);
            // Looked up before inserting so the key is cloned only for a
            // new key, and stays at hand for `check`.
            if !slot.keys.contains_key(&key) {
                let ks = KeyState {
                    window: Window::new(width, max_events),
                    state: rhai::Map::new(),
                    tracker: None,
                };
                slot.keys.insert(key.clone(), Box::new(ks));
            }
            let Some(ks) = slot.keys.get_mut(&key) else {
                continue;
            };
            ks.window.push(event.clone());
            ks.window.expire(now);
            if evaluate {
                let (rule, policy) = (&slot.rule, &slot.policy);
                if let Some(t) = evaluate_key(rule, policy, &mut slot.stats, &key, ks, now) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// Evaluates every key now (after windows were rebuilt on start).
    pub fn evaluate_all(&mut self, now: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        for slot in &mut self.slots {
            let RuleSlot {
                rule,
                policy,
                keys,
                stats,
            } = slot;
            for (key, ks) in keys.iter_mut() {
                ks.window.expire(now);
                if let Some(t) = evaluate_key(rule, policy, stats, key, ks, now) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// The engine tick: expires windows, evaluates keys whose window lost
    /// events or that have an active alert, and forgets idle keys.
    pub fn on_tick(&mut self, now: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        for slot in &mut self.slots {
            let RuleSlot {
                rule,
                policy,
                keys,
                stats,
            } = slot;
            for (key, ks) in keys.iter_mut() {
                let expired = ks.window.expire(now);
                if expired || ks.is_active() {
                    if let Some(t) = evaluate_key(rule, policy, stats, key, ks, now) {
                        out.push(t);
                    }
                }
            }
            keys.retain(|_, ks| !(ks.window.is_empty() && !ks.is_active() && ks.state.is_empty()));
        }
        // Deterministic order for replay output.
        out.sort_by(|a, b| {
            (&a.alert.rule, &a.alert.fingerprint).cmp(&(&b.alert.rule, &b.alert.fingerprint))
        });
        out
    }
}

impl RuleSlot {
    fn note_error(&mut self, message: &str, key: Option<&BTreeMap<String, String>>) {
        self.stats.errors += 1;
        self.stats.last_error = Some(message.to_string());
        tracing::warn!(rule = %self.rule.name(), key = ?key, error = %message, "rule error");
    }
}

fn evaluate_key(
    rule: &Rule,
    policy: &Policy,
    stats: &mut RuleStats,
    key: &Key,
    ks: &mut KeyState,
    now: i64,
) -> Option<Transition> {
    stats.evaluations += 1;
    let outcome = rule.check(CheckCtx {
        window: &mut ks.window,
        key,
        state: &mut ks.state,
        now,
    });
    let condition = match outcome {
        Ok(CheckOutcome::NotFiring) => None,
        Ok(CheckOutcome::Firing {
            summary,
            severity,
            labels,
            value,
        }) => Some(Condition {
            summary,
            severity: severity.map(|s| s.as_str().to_string()),
            labels,
            value,
        }),
        Err(e) => {
            // A broken evaluation leaves the alert as it was: an error is
            // not evidence that the problem went away.
            stats.errors += 1;
            stats.last_error = Some(e.to_string());
            tracing::warn!(rule = %rule.name(), key = %key, error = %e, "rule check failed");
            return None;
        }
    };
    if condition.is_none() && !ks.is_active() {
        // Not firing and nothing to resolve: the common case, decided
        // without building labels or a tracker.
        return None;
    }
    let tracker = ks.tracker.get_or_insert_with(Box::default);
    let notify = tracker.observe(policy, &key.labels(), condition.as_ref(), now);
    if !tracker.is_active() {
        ks.tracker = None;
    }
    notify.map(|alert| Transition {
        alert,
        notify: Some(rule.spec().notify.clone()).filter(|n| !n.is_empty()),
        at: now,
    })
}
