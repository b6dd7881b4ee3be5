//! One rule's slot in the engine: its keys (each a window, `w.state` and
//! an alert tracker), how an event is admitted to a key, how keys are
//! evaluated, and the rule's CPU budget and key limit. Pure but for the
//! monotonic clock the CPU budget reads.

use std::sync::Arc;

use hashbrown::hash_map::EntryRef;

use super::{policy_of, with_evidence, EngineSettings, KeyMap, KeySet, RuleStats, MAX_DURATIONS};
use crate::alert::{AlertStatus, Condition, Policy, ResolveReason, Tracker, Transition};
use crate::budget::{CpuBudget, CpuMeter};
use crate::builtin::{BuiltinAlerts, Raise, RULE_KEYS_LIMIT, RULE_SUSPENDED};
use crate::event::Event;
use crate::rules::{CheckCtx, CheckOutcome, KeyBuf, KeyView, Rule};
use crate::window::Window;

/// One key of one rule. Kept small, since a rule may track a million keys
/// (BENCHMARKS.md): the key lives only in the map that owns this, alert
/// labels are built when an alert needs them, and the tracker (a whole
/// alert object) exists only while the key's alert is pending or firing.
pub(super) struct KeyState {
    pub(super) window: Window,
    /// `w.state`, `None` while empty: few rules keep state, and the 16
    /// bytes an empty map takes inline would push every key state into
    /// the allocator's next size class.
    pub(super) state: Option<Box<rhai::Map>>,
    /// `None` while inactive, which is what most keys are.
    pub(super) tracker: Option<Box<Tracker>>,
}

pub(super) struct RuleSlot {
    pub(super) rule: Arc<Rule>,
    pub(super) policy: Policy,
    /// Boxed so the table's empty slots (a hash table runs up to half
    /// empty after it grows) cost a pointer, not a whole key state.
    pub(super) keys: KeyMap<Box<KeyState>>,
    pub(super) stats: RuleStats,
    /// Keys whose alert phase or `w.state` changed since the last
    /// [`Engine::take_dirty`].
    pub(super) dirty: KeySet,
    /// `RULE.max_keys`, else `rules.max_keys_per_rule`.
    pub(super) max_keys: usize,
    /// `keys_refused` at the last tick, to tell whether keys are still
    /// being refused.
    pub(super) refused_at_tick: u64,
    /// Why the rule is suspended (it then takes no events and runs no
    /// checks until a reload brings an edited version).
    pub(super) suspended: Option<String>,
    pub(super) cpu: CpuMeter,
}

/// How much one key and one rule may hold.
#[derive(Clone, Copy)]
pub(super) struct KeyLimits {
    pub(super) events: usize,
    pub(super) keys: usize,
}

impl KeyState {
    pub(super) fn new(width_secs: i64, max_events: usize) -> KeyState {
        KeyState {
            window: Window::new(width_secs, max_events),
            state: None,
            tracker: None,
        }
    }

    pub(super) fn is_active(&self) -> bool {
        self.tracker.is_some()
    }

    pub(super) fn has_state(&self) -> bool {
        self.state.is_some()
    }

    /// Keeps `state` if it holds anything.
    pub(super) fn set_state(&mut self, state: rhai::Map) {
        self.state = Some(Box::new(state)).filter(|m| !m.is_empty());
    }

    pub(super) fn phase_name(&self) -> &'static str {
        self.tracker.as_ref().map_or("inactive", |t| t.phase_name())
    }
}

impl RuleSlot {
    /// Puts `event` into its key's window if the rule accepts it and it is
    /// not older than the window; returns the key's state, with the key
    /// left in `key`. Takes the slot's parts so the caller can go on to
    /// evaluate with the others.
    pub(super) fn admit<'k>(
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
    pub(super) fn evaluate_keys(&mut self, now: i64, tick_only: bool, out: &mut Vec<Transition>) {
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

    pub(super) fn new(rule: Arc<Rule>, settings: &EngineSettings) -> RuleSlot {
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
    pub(super) fn charge(
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
    pub(super) fn check_key_limit(
        &mut self,
        builtin: &mut BuiltinAlerts,
        now: i64,
    ) -> Option<Transition> {
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
pub(super) fn key_limit_alert(
    slot: &RuleSlot,
    builtin: &mut BuiltinAlerts,
    now: i64,
) -> Option<Transition> {
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

pub(super) fn evaluate_key(
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

pub(super) fn evaluate_inner(
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
        Transition::of(rule, alert, now)
    })
}
