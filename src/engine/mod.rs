//! The rule engine: routes each event into the windows of the rules that
//! accept it (one window per rule and key), runs `check` when a window
//! changes or on ticks, and drives each key's alert state machine. Pure:
//! engine time is passed in by the caller (wall clock live, event time in
//! `replay`), and the engine returns alert transitions instead of sending.

use std::sync::Arc;

use crate::alert::{Alert, AlertStatus, Evidence, Policy};
// Transitions are the alert module's; this path is kept for callers.
pub use crate::alert::Transition;
use crate::budget::CpuBudget;
use crate::builtin::BuiltinAlerts;
use crate::event::Event;
use crate::rules::{Key, KeyBuf, Rule};
use crate::window::Window;

mod persist;
mod reload;
mod slot;
mod view;

pub use persist::{KeyRecord, Persist};
use slot::{evaluate_key, key_limit_alert, KeyLimits, RuleSlot};
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
mod tests {
    use super::*;
    use crate::alert::{ResolveReason, Tracker};
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
