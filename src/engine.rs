//! The rule engine: routes each event into the windows of the rules that
//! accept it (one window per rule and key), runs `check` when a window
//! changes or on ticks, and drives each key's alert state machine. Pure:
//! engine time is passed in by the caller (wall clock live, event time in
//! `replay`), and the engine returns alert transitions instead of sending.

use std::collections::HashMap;
use std::sync::Arc;

use hashbrown::hash_map::EntryRef;

use crate::alert::{Alert, AlertStatus, Condition, Evidence, Policy, ResolveReason, Tracker};
use crate::budget::{CpuBudget, CpuMeter};
use crate::builtin::{BuiltinAlerts, Raise, RULE_KEYS_LIMIT, RULE_SUSPENDED};
use crate::event::Event;
use crate::rules::{CheckCtx, CheckOutcome, Key, KeyBuf, KeyView, Rule};
use crate::window::Window;

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

/// An alert that must be notified, with where the rule wants it to go.
/// Serialisable: it waits in the store until its notification is queued.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// `w.state`, `None` while empty: few rules keep state, and the 16
    /// bytes an empty map takes inline would push every key state into
    /// the allocator's next size class.
    state: Option<Box<rhai::Map>>,
    /// `None` while inactive, which is what most keys are.
    tracker: Option<Box<Tracker>>,
}

struct RuleSlot {
    rule: Arc<Rule>,
    policy: Policy,
    /// Boxed so the table's empty slots (a hash table runs up to half
    /// empty after it grows) cost a pointer, not a whole key state.
    keys: KeyMap<Box<KeyState>>,
    stats: RuleStats,
    /// Keys whose alert phase or `w.state` changed since the last
    /// [`Engine::take_dirty`].
    dirty: KeySet,
    /// `RULE.max_keys`, else `rules.max_keys_per_rule`.
    max_keys: usize,
    /// `keys_refused` at the last tick, to tell whether keys are still
    /// being refused.
    refused_at_tick: u64,
    /// Why the rule is suspended (it then takes no events and runs no
    /// checks until a reload brings an edited version).
    suspended: Option<String>,
    cpu: CpuMeter,
}

/// How much one key and one rule may hold.
#[derive(Clone, Copy)]
struct KeyLimits {
    events: usize,
    keys: usize,
}

impl KeyState {
    fn new(width_secs: i64, max_events: usize) -> KeyState {
        KeyState {
            window: Window::new(width_secs, max_events),
            state: None,
            tracker: None,
        }
    }

    fn is_active(&self) -> bool {
        self.tracker.is_some()
    }

    fn has_state(&self) -> bool {
        self.state.is_some()
    }

    /// Keeps `state` if it holds anything.
    fn set_state(&mut self, state: rhai::Map) {
        self.state = Some(Box::new(state)).filter(|m| !m.is_empty());
    }

    fn phase_name(&self) -> &'static str {
        self.tracker.as_ref().map_or("inactive", |t| t.phase_name())
    }
}

impl RuleSlot {
    /// Puts `event` into its key's window if the rule accepts it and it is
    /// not older than the window; returns the key's state, with the key
    /// left in `key`. Takes the slot's parts so the caller can go on to
    /// evaluate with the others.
    fn admit<'k>(
        rule: &Rule,
        stats: &mut RuleStats,
        keys: &'k mut KeyMap<Box<KeyState>>,
        key: &mut KeyBuf,
        event: &Arc<Event>,
        now: i64,
        limits: KeyLimits,
    ) -> Option<&'k mut KeyState> {
        match rule.accepts(event) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                let message = format!("filter: {e}");
                tracing::warn!(rule = %rule.name(), error = %message, "rule error");
                stats.errors += 1;
                stats.last_error = Some(message);
                return None;
            }
        }
        let width = rule.spec().window_secs;
        if event.event_time <= now - width {
            stats.late_events += 1;
            return None;
        }
        rule.key_into(event, key);
        // One hash, and an allocation only for a key not seen before.
        let at_limit = keys.len() >= limits.keys;
        let ks = match keys.entry_ref(key.as_bytes()) {
            EntryRef::Occupied(o) => o.into_mut(),
            // Past the limit a new key costs nothing but a count.
            EntryRef::Vacant(_) if at_limit => {
                stats.keys_refused += 1;
                return None;
            }
            EntryRef::Vacant(v) => {
                v.insert_with_key(key.to_key(), Box::new(KeyState::new(width, limits.events)))
            }
        };
        ks.window.push(event.clone());
        Some(ks)
    }

    /// Expires every key's window and evaluates the keys: all of them, or
    /// (`tick_only`) those whose window lost events or whose alert is
    /// active.
    fn evaluate_keys(&mut self, now: i64, tick_only: bool, out: &mut Vec<Transition>) {
        let RuleSlot {
            rule,
            policy,
            keys,
            stats,
            dirty,
            ..
        } = self;
        for (key, ks) in keys.iter_mut() {
            let expired = ks.window.expire(now);
            if tick_only && !expired && !ks.is_active() {
                continue;
            }
            let key = rule.key_view(key);
            if let Some(t) = evaluate_key(rule, policy, stats, dirty, key, ks, now) {
                out.push(t);
            }
        }
    }

    fn new(rule: Arc<Rule>, settings: &EngineSettings) -> RuleSlot {
        RuleSlot {
            policy: policy_of(&rule, settings),
            max_keys: rule.spec().max_keys.unwrap_or(settings.max_keys_per_rule),
            rule,
            keys: KeyMap::default(),
            stats: RuleStats::default(),
            dirty: KeySet::default(),
            refused_at_tick: 0,
            suspended: None,
            cpu: CpuMeter::default(),
        }
    }

    /// Charges `spent` engine time to the rule; past its budget the rule is
    /// suspended (logged once, counted) and the built-in alert raised.
    fn charge(
        &mut self,
        spent: std::time::Duration,
        budget: &CpuBudget,
        builtin: &mut BuiltinAlerts,
        now: i64,
    ) -> Option<Transition> {
        let share = self.cpu.charge(spent, std::time::Instant::now(), budget)?;
        let name = self.rule.name();
        let reason = format!(
            "used {:.0} % of the engine's time within {} (budget {:.0} %)",
            share * 100.0,
            humantime::format_duration(budget.window),
            budget.share * 100.0
        );
        tracing::error!(rule = %name, "rule {reason}: suspended until a reload brings an edited version");
        self.stats.suspensions += 1;
        let raise = Raise {
            severity: "critical",
            summary: format!("rule {name} suspended: it {reason}"),
            value: serde_json::Number::from_f64((share * 100.0).round() / 100.0)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
        };
        self.suspended = Some(reason);
        builtin.raise(RULE_SUSPENDED, &self.rule, raise, now)
    }

    /// At a tick: the key-limit alert fires while keys are refused and
    /// resolves once none was refused since the last tick and the rule
    /// is under its limit (no alert flapping while a flood goes on).
    fn check_key_limit(&mut self, builtin: &mut BuiltinAlerts, now: i64) -> Option<Transition> {
        let refusing = self.stats.keys_refused != self.refused_at_tick;
        self.refused_at_tick = self.stats.keys_refused;
        let name = self.rule.name();
        let firing = builtin.is_firing(RULE_KEYS_LIMIT, name);
        if refusing && !firing {
            return key_limit_alert(self, builtin, now);
        }
        if firing && !refusing && self.keys.len() < self.max_keys {
            return builtin.resolve(RULE_KEYS_LIMIT, name, now);
        }
        None
    }
}

/// Raises the key-limit alert of `slot`'s rule (if not firing yet).
fn key_limit_alert(slot: &RuleSlot, builtin: &mut BuiltinAlerts, now: i64) -> Option<Transition> {
    let name = slot.rule.name();
    let raise = Raise {
        severity: "warning",
        summary: format!(
            "rule {name} tracks its limit of {} keys; new keys are not tracked",
            slot.max_keys
        ),
        value: serde_json::Value::from(slot.max_keys),
    };
    builtin.raise(RULE_KEYS_LIMIT, &slot.rule, raise, now)
}

/// The durable part of one key: its alert state and `w.state`, what a
/// restart must restore (windows come back from the journal).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyRecord {
    pub rule: String,
    pub key: Vec<(String, String)>,
    pub tracker: Tracker,
    pub state: serde_json::Map<String, serde_json::Value>,
}

impl KeyRecord {
    /// The store key: rule and key values, unambiguous.
    pub fn id(&self) -> String {
        serde_json::json!([self.rule, self.key]).to_string()
    }
}

/// A change to persist: the record, or its id when the key went idle.
#[derive(Debug, Clone, PartialEq)]
pub enum Persist {
    Put(Box<KeyRecord>),
    Delete(String),
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
    pub max_keys: usize,
    pub keys_refused: u64,
    /// Why the rule is suspended, while it is.
    pub suspended: Option<String>,
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
        "max_keys": spec.max_keys,
        "keep_firing_for_secs": spec.keep_firing_for_secs,
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
    /// Most events an alert shows as evidence.
    pub evidence_events: usize,
    /// `server.external_url`, for each alert's `url`.
    pub external_url: Option<String>,
    /// Keys a rule tracks unless its `RULE.max_keys` says otherwise.
    pub max_keys_per_rule: usize,
    /// `None`: rules are never suspended for their CPU use (the default,
    /// since measuring it reads the clock; see [`EngineSettings::live`]).
    pub cpu_budget: Option<CpuBudget>,
}

impl Default for EngineSettings {
    fn default() -> EngineSettings {
        EngineSettings::from(&crate::config::Config::default())
    }
}

impl From<&crate::config::Config> for EngineSettings {
    /// Deterministic settings (replay, rule tests): no CPU budget.
    fn from(config: &crate::config::Config) -> EngineSettings {
        EngineSettings {
            repeat_secs: config.alerting.repeat.as_secs() as i64,
            max_clock_skew_secs: config.server.max_clock_skew.as_secs() as i64,
            max_events_per_key: config.rules.max_events_per_key,
            evidence_events: config.alerting.evidence_events,
            external_url: Some(config.server.external_url.trim_end_matches('/').to_string())
                .filter(|u| !u.is_empty()),
            max_keys_per_rule: config.rules.max_keys_per_rule,
            cpu_budget: None,
        }
    }
}

impl EngineSettings {
    /// The daemon's settings: as [`From`], with the CPU budget.
    pub fn live(config: &crate::config::Config) -> EngineSettings {
        EngineSettings {
            cpu_budget: CpuBudget::from_config(&config.rules),
            ..EngineSettings::from(config)
        }
    }

    /// Evaluates a rule's keys (all, or for a tick those due), charging
    /// the time to its CPU budget. False for a suspended rule, which
    /// runs nothing.
    fn evaluate_slot(
        &self,
        slot: &mut RuleSlot,
        builtin: &mut BuiltinAlerts,
        now: i64,
        tick_only: bool,
        out: &mut Vec<Transition>,
    ) -> bool {
        if slot.suspended.is_some() {
            return false;
        }
        let started = self.cpu_budget.map(|_| std::time::Instant::now());
        slot.evaluate_keys(now, tick_only, out);
        if let (Some(budget), Some(started)) = (&self.cpu_budget, started) {
            let spent = started.elapsed();
            out.extend(slot.charge(spent, budget, builtin, now));
        }
        true
    }

    fn key_limits(&self, slot: &RuleSlot) -> KeyLimits {
        KeyLimits {
            events: self.max_events_per_key,
            keys: slot.max_keys,
        }
    }
}

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
                max_keys: s.max_keys,
                keys_refused: s.stats.keys_refused,
                suspended: s.suspended.clone(),
            })
            .collect();
        Snapshot {
            alerts: self.active_alerts(),
            rules,
        }
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

    /// Restores a key's alert state and `w.state` (on start, before the
    /// windows are rebuilt). Records of rules that no longer exist are
    /// ignored.
    pub fn restore(&mut self, record: KeyRecord) {
        let Some(slot) = self.slots.iter_mut().find(|s| s.rule.name() == record.rule) else {
            return;
        };
        let key = Key::from_pairs(&slot.rule.spec().group_by, &record.key);
        let width = slot.rule.spec().window_secs;
        let max_events = self.settings.max_events_per_key;
        let tracker = Some(Box::new(record.tracker)).filter(|t| t.is_active());
        let mut ks = KeyState {
            tracker,
            ..KeyState::new(width, max_events)
        };
        ks.set_state(crate::rules::map_from_json(&record.state));
        slot.keys.insert(key, Box::new(ks));
    }

    /// What changed since the last call, to be written to the store.
    pub fn take_dirty(&mut self) -> Vec<Persist> {
        let mut out = Vec::new();
        for slot in &mut self.slots {
            let name = slot.rule.name().to_string();
            for key in slot.dirty.drain() {
                let mut record = KeyRecord {
                    rule: name.clone(),
                    key: slot.rule.key_view(&key).to_pairs(),
                    tracker: Tracker::default(),
                    state: Default::default(),
                };
                match slot.keys.get(&key) {
                    Some(ks) if ks.is_active() || ks.has_state() => {
                        record.tracker = ks.tracker.as_deref().cloned().unwrap_or_default();
                        record.state = ks
                            .state
                            .as_deref()
                            .map(crate::rules::map_to_json)
                            .unwrap_or_default();
                        out.push(Persist::Put(Box::new(record)));
                    }
                    // Idle or forgotten: nothing to restore.
                    _ => out.push(Persist::Delete(record.id())),
                }
            }
        }
        out
    }

    /// Swaps in a new rule set. Rules whose source did not change keep
    /// their windows, alert states and statistics. New and edited rules
    /// get windows rebuilt from `history` (recent events, oldest first);
    /// an edited rule keeps its keys' alert states and `w.state`. Alerts of
    /// removed rules are resolved.
    pub fn reload(
        &mut self,
        rules: Vec<Arc<Rule>>,
        history: &[Event],
        now: i64,
    ) -> Vec<Transition> {
        let mut old: HashMap<String, RuleSlot> = self
            .slots
            .drain(..)
            .map(|s| (s.rule.name().to_string(), s))
            .collect();
        let mut fresh = Vec::new();
        for rule in rules {
            match old.remove(rule.name()) {
                Some(slot) if slot.rule.source_digest() == rule.source_digest() => {
                    self.slots.push(slot);
                }
                previous => {
                    let edited = previous.is_some();
                    let mut slot = RuleSlot::new(rule, &self.settings);
                    if let Some(p) = previous {
                        // Keys keep their alert state across an edit;
                        // windows are refilled below.
                        let width = slot.rule.spec().window_secs;
                        let (from, to) = (&p.rule.spec().group_by, &slot.rule.spec().group_by);
                        for (key, ks) in p.keys {
                            if ks.is_active() || ks.has_state() {
                                slot.keys.insert(
                                    // Under an edited `group_by` the key
                                    // keeps the fields it was made of.
                                    key.regroup(from, to),
                                    Box::new(KeyState {
                                        window: Window::new(
                                            width,
                                            self.settings.max_events_per_key,
                                        ),
                                        ..*ks
                                    }),
                                );
                            }
                        }
                        slot.stats = p.stats;
                        slot.refused_at_tick = slot.stats.keys_refused;
                    }
                    fresh.push((self.slots.len(), edited));
                    self.slots.push(slot);
                }
            }
        }
        let mut out = Vec::new();
        for (_, mut slot) in old {
            for (key, ks) in slot.keys.iter_mut() {
                let Some(tracker) = ks.tracker.as_mut() else {
                    continue;
                };
                let labels = slot.rule.key_view(key).labels();
                if let Some(mut alert) = tracker.observe(&slot.policy, &labels, None, now) {
                    alert.reason = Some(ResolveReason::RuleRemoved);
                    let alert = with_evidence(alert, &ks.window, slot.policy.evidence_events);
                    out.push(Transition::of(&slot.rule, alert, now));
                }
            }
        }
        for &(i, edited) in &fresh {
            let slot = &mut self.slots[i];
            let limits = self.settings.key_limits(slot);
            for e in history {
                let event = Arc::new(e.clone());
                RuleSlot::admit(
                    &slot.rule,
                    &mut slot.stats,
                    &mut slot.keys,
                    &mut self.key,
                    &event,
                    now,
                    limits,
                );
            }
            let from = out.len();
            slot.evaluate_keys(now, false, &mut out);
            if edited {
                // What the edit itself resolved.
                for t in &mut out[from..] {
                    if t.alert.status == AlertStatus::Resolved {
                        t.alert.reason = Some(ResolveReason::RuleChanged);
                    }
                }
            }
        }
        // An edited rule runs again; a removed one raises nothing.
        let slots = &self.slots;
        let suspended = |name: &str| {
            slots
                .iter()
                .any(|s| s.rule.name() == name && s.suspended.is_some())
        };
        let present = |name: &str| slots.iter().any(|s| s.rule.name() == name);
        out.extend(self.builtin.resolve_unless(RULE_SUSPENDED, suspended, now));
        out.extend(self.builtin.resolve_unless(RULE_KEYS_LIMIT, present, now));
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

fn evaluate_key(
    rule: &Rule,
    policy: &Policy,
    stats: &mut RuleStats,
    dirty: &mut KeySet,
    key: KeyView<'_>,
    ks: &mut KeyState,
    now: i64,
) -> Option<Transition> {
    let phase_before = ks.phase_name();
    let had_state = ks.has_state();
    let t = evaluate_inner(rule, policy, stats, key, ks, now);
    if t.is_some() || ks.phase_name() != phase_before || had_state || ks.has_state() {
        dirty.get_or_insert_with(key.as_bytes(), |_| key.to_key());
    }
    t
}

fn evaluate_inner(
    rule: &Rule,
    policy: &Policy,
    stats: &mut RuleStats,
    key: KeyView<'_>,
    ks: &mut KeyState,
    now: i64,
) -> Option<Transition> {
    stats.evaluations += 1;
    // The monotonic clock only feeds the duration metric; engine time
    // (`now`) alone drives decisions, so replay stays deterministic.
    let started = std::time::Instant::now();
    // A key without state lends the script an empty map, boxed only if
    // the script fills it.
    let mut fresh = rhai::Map::new();
    let outcome = rule.check(CheckCtx {
        window: &mut ks.window,
        key,
        state: ks.state.as_deref_mut().unwrap_or(&mut fresh),
        now,
    });
    if ks.state.as_ref().is_some_and(|m| m.is_empty()) {
        ks.state = None;
    } else if !fresh.is_empty() {
        ks.set_state(fresh);
    }
    let took = started.elapsed().as_secs_f64();
    stats.eval_secs += took;
    // Kept only while there is room (replay never drains).
    if stats.durations.len() < MAX_DURATIONS {
        stats.durations.push(took);
    }
    let condition = match outcome {
        Ok(CheckOutcome::NotFiring) => None,
        Ok(CheckOutcome::Firing {
            summary,
            severity,
            labels,
            value,
            annotations,
            evidence,
        }) => Some(Condition {
            summary,
            severity: severity.map(|s| s.as_str().to_string()),
            labels,
            value,
            annotations,
            evidence,
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
    notify.map(|mut alert| {
        if alert.status == AlertStatus::Resolved {
            alert.reason = Some(if ks.window.is_empty() {
                ResolveReason::Expired
            } else {
                ResolveReason::Cleared
            });
        }
        let alert = with_evidence(alert, &ks.window, policy.evidence_events);
        if let Some(t) = ks.tracker.as_mut() {
            t.remember_evidence(&alert.evidence);
        }
        Transition::of(rule, alert, now)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RulesConfig;
    use crate::rules::load_source;

    fn rule(group_by: &str, check: &str) -> Arc<Rule> {
        let source = format!(
            "const RULE = #{{ events: [\"start_call\"], group_by: {group_by}, window: \"1h\" }};\n\
             fn check(w) {{ {check} }}"
        );
        let rule = load_source("r", "r.rhai".as_ref(), &source, &RulesConfig::default());
        Arc::new(rule.unwrap_or_else(|e| panic!("{e:?}")))
    }

    fn engine(rule: Arc<Rule>) -> Engine {
        Engine::new(
            vec![rule],
            EngineSettings {
                repeat_secs: 3600,
                max_clock_skew_secs: 60,
                max_events_per_key: 100,
                ..EngineSettings::default()
            },
        )
    }

    fn ev(t: i64, user: &str) -> Event {
        Event {
            sdkappid: 1_400_000_001,
            event: "start_call".into(),
            user_id: Some(user.into()),
            platform: Some("web".into()),
            event_time: t,
            ..Event::default()
        }
    }

    fn user_key() -> Vec<(String, String)> {
        vec![("user_id".to_string(), "alice".to_string())]
    }

    #[test]
    fn state_is_persisted_while_not_empty() {
        // Keeps the count in `w.state` until the second event, then clears it.
        let mut e = engine(rule(
            "[\"user_id\"]",
            "if w.count() < 2 { w.state = #{ n: w.count() } } else { w.state = #{} } false",
        ));
        e.on_event(ev(100, "alice"), 100, true);
        let put = e.take_dirty();
        let [Persist::Put(record)] = put.as_slice() else {
            panic!("expected one put, got {put:?}");
        };
        assert_eq!(record.key, user_key());
        assert_eq!(record.state.get("n"), Some(&serde_json::json!(1)));
        let id = record.id();
        e.on_event(ev(101, "alice"), 101, true);
        assert_eq!(e.take_dirty(), vec![Persist::Delete(id)]);
    }

    #[test]
    fn an_event_from_the_future_enters_at_now_and_others_keep_theirs() {
        let mut e = engine(rule("[]", "`${w.last().event_time}`"));
        let shared = Arc::new(ev(100_000, "alice"));
        let fired = e.on_shared_event(&shared, 1_000, true);
        assert_eq!(fired[0].alert.summary, "1000");
        assert_eq!(e.future_events(), 1);
        // Another engine holding the same event still sees its own time.
        assert_eq!(shared.event_time, 100_000);
        // Within the skew it keeps its time.
        let fired = e.on_event(ev(1_050, "alice"), 1_000, true);
        assert!(fired.is_empty(), "still firing, no new transition");
        assert_eq!(e.future_events(), 1);
    }

    #[test]
    fn a_restored_key_is_the_key_its_events_make() {
        let mut e = engine(rule("[\"user_id\"]", "false"));
        let state = serde_json::json!({ "n": 1 });
        e.restore(KeyRecord {
            rule: "r".into(),
            key: user_key(),
            tracker: Tracker::default(),
            state: state.as_object().cloned().unwrap_or_default(),
        });
        e.on_event(ev(100, "alice"), 100, true);
        assert_eq!(e.stats()[0].1, 1, "one key, not a restored and a new one");
    }

    #[test]
    fn a_key_kept_across_a_group_by_edit_keeps_its_labels() {
        let mut e = engine(rule("[\"user_id\"]", "w.count() > 0"));
        let fired = e.on_event(ev(100, "alice"), 100, true);
        assert_eq!(fired.len(), 1);
        let fingerprint = fired[0].alert.fingerprint.clone();
        // Same name, now per platform: alice's alert resolves under its
        // old labels when its (now empty) window is checked.
        let resolved = e.reload(vec![rule("[\"platform\"]", "w.count() > 0")], &[], 100);
        let [t] = resolved.as_slice() else {
            panic!("expected one resolve, got {resolved:?}");
        };
        assert_eq!(t.alert.fingerprint, fingerprint);
        assert_eq!(
            t.alert.labels.get("user_id").map(String::as_str),
            Some("alice")
        );
        assert_eq!(t.alert.labels.get("platform"), None);
    }

    fn resolved_reasons(ts: &[Transition]) -> Vec<(AlertStatus, Option<ResolveReason>)> {
        ts.iter()
            .map(|t| (t.alert.status, t.alert.reason))
            .collect()
    }

    #[test]
    fn transitions_carry_evidence_and_resolve_reasons() {
        // Fires while alice has at least two calls in the window.
        let mut e = engine(rule("[\"user_id\"]", "w.count() >= 2"));
        e.on_event(ev(100, "alice"), 100, true);
        let fired = e.on_event(
            Event {
                call_id: Some("c-2".into()),
                ..ev(101, "alice")
            },
            101,
            true,
        );
        let [t] = fired.as_slice() else {
            panic!("expected one firing, got {fired:?}");
        };
        let calls: Vec<_> = t.alert.evidence.iter().map(|e| e.event_time).collect();
        assert_eq!(calls, [101, 100], "newest first");
        assert_eq!(t.alert.evidence[0].call_id.as_deref(), Some("c-2"));
        assert_eq!(t.alert.key["user_id"], "alice");
        // The API's current alert shows the evidence last notified (it is
        // not gathered again on every evaluation).
        assert_eq!(e.active_alerts()[0].evidence, t.alert.evidence);
        // One event leaves the window: still one in it, the check clears.
        let cleared = e.on_tick(100 + 3600);
        assert_eq!(
            resolved_reasons(&cleared),
            [(AlertStatus::Resolved, Some(ResolveReason::Cleared))]
        );
        assert_eq!(cleared[0].alert.evidence.len(), 1);

        // A rule that fires on any event resolves as expired when its
        // window empties.
        let mut e = engine(rule("[\"user_id\"]", "w.count() > 0"));
        e.on_event(ev(100, "alice"), 100, true);
        let expired = e.on_tick(100 + 3600);
        assert_eq!(
            resolved_reasons(&expired),
            [(AlertStatus::Resolved, Some(ResolveReason::Expired))]
        );
        assert!(expired[0].alert.evidence.is_empty());

        // An edit that stops it firing, then a removal.
        let mut e = engine(rule("[\"user_id\"]", "w.count() > 0"));
        e.on_event(ev(100, "alice"), 100, true);
        let history = [ev(100, "alice")];
        let changed = e.reload(vec![rule("[\"user_id\"]", "w.count() > 5")], &history, 100);
        assert_eq!(
            resolved_reasons(&changed),
            [(AlertStatus::Resolved, Some(ResolveReason::RuleChanged))]
        );
        e.reload(vec![rule("[\"user_id\"]", "w.count() > 0")], &history, 100);
        let removed = e.reload(Vec::new(), &[], 100);
        assert_eq!(
            resolved_reasons(&removed),
            [(AlertStatus::Resolved, Some(ResolveReason::RuleRemoved))]
        );
        assert_eq!(removed[0].alert.evidence.len(), 1);
    }
}
