//! Built-in alerts the engine raises about rules themselves: a rule
//! suspended for using more than its CPU budget
//! (`callwatch_rule_suspended`) and a rule refusing new keys at its key
//! limit (`callwatch_rule_keys_limit`). They are ordinary alert objects:
//! the alert's `rule` is the built-in name, its `rule` label the rule it
//! is about (so routes written for that rule's owners match it), and it
//! goes where that rule's alerts go. Pure like the engine: time is passed
//! in, transitions are returned.

use std::collections::BTreeMap;

use crate::alert::Transition;
use crate::alert::{fingerprint, Alert, AlertStatus, ResolveReason};
use crate::rules::Rule;

/// A rule was suspended for exceeding its CPU budget.
pub const RULE_SUSPENDED: &str = "callwatch_rule_suspended";
/// A rule refused new keys at its `max_keys`.
pub const RULE_KEYS_LIMIT: &str = "callwatch_rule_keys_limit";

/// Whether `name` is one of the built-in alerts.
pub fn is_builtin(name: &str) -> bool {
    name == RULE_SUSPENDED || name == RULE_KEYS_LIMIT
}

/// The rule an alert comes from: the rule itself, or for a built-in
/// alert the rule it is about.
pub fn source_rule(alert: &Alert) -> &str {
    if is_builtin(&alert.rule) {
        alert.labels.get("rule").map_or(&alert.rule, String::as_str)
    } else {
        &alert.rule
    }
}

/// What a built-in alert says when it fires.
pub struct Raise {
    pub severity: &'static str,
    pub summary: String,
    pub value: serde_json::Value,
}

struct Firing {
    alert: Alert,
    /// The rule's `notify` list, which built-in alerts follow too.
    notify: Option<Vec<String>>,
    notified: i64,
}

/// The built-in alerts currently firing, by (alert name, rule).
#[derive(Default)]
pub struct BuiltinAlerts {
    firing: BTreeMap<(&'static str, String), Firing>,
}

impl BuiltinAlerts {
    pub fn is_firing(&self, name: &'static str, rule: &str) -> bool {
        self.firing.contains_key(&(name, rule.to_string()))
    }

    /// Fires `name` for `rule` at `now`; the transition to notify the
    /// first time, `None` while it already fires.
    pub fn raise(
        &mut self,
        name: &'static str,
        rule: &Rule,
        raise: Raise,
        now: i64,
    ) -> Option<Transition> {
        let id = (name, rule.name().to_string());
        if self.firing.contains_key(&id) {
            return None;
        }
        let spec = rule.spec();
        let key = BTreeMap::from([("rule".to_string(), rule.name().to_string())]);
        // The rule's own labels first (its team, its routing), then what
        // this alert is.
        let mut labels = spec.labels.clone();
        labels.extend(key.clone());
        labels.insert("severity".into(), raise.severity.into());
        let alert = Alert {
            rule: name.to_string(),
            status: AlertStatus::Firing,
            severity: raise.severity.into(),
            summary: raise.summary,
            labels,
            value: raise.value,
            fingerprint: fingerprint(name, &key),
            starts_at: now,
            ends_at: None,
            key,
            annotations: BTreeMap::new(),
            evidence: Vec::new(),
            url: None,
            reason: None,
        };
        let notify = (!spec.notify.is_empty()).then(|| spec.notify.clone());
        let t = Transition {
            alert: alert.clone(),
            notify: notify.clone(),
            at: now,
        };
        self.firing.insert(
            id,
            Firing {
                alert,
                notify,
                notified: now,
            },
        );
        Some(t)
    }

    /// Resolves `name` for `rule` if it fires.
    pub fn resolve(&mut self, name: &'static str, rule: &str, now: i64) -> Option<Transition> {
        let f = self.firing.remove(&(name, rule.to_string()))?;
        let mut alert = f.alert;
        alert.status = AlertStatus::Resolved;
        alert.ends_at = Some(now);
        alert.reason = Some(ResolveReason::Cleared);
        Some(Transition {
            alert,
            notify: f.notify,
            at: now,
        })
    }

    /// Resolves every alert of `name` whose rule `keep` rejects.
    pub fn resolve_unless(
        &mut self,
        name: &'static str,
        keep: impl Fn(&str) -> bool,
        now: i64,
    ) -> Vec<Transition> {
        let gone: Vec<String> = self
            .firing
            .keys()
            .filter(|(n, rule)| *n == name && !keep(rule))
            .map(|(_, rule)| rule.clone())
            .collect();
        gone.iter()
            .filter_map(|rule| self.resolve(name, rule, now))
            .collect()
    }

    /// Firing alerts due for a repeat notification at `now`.
    pub fn repeats(&mut self, repeat_secs: i64, now: i64) -> Vec<Transition> {
        if repeat_secs <= 0 {
            return Vec::new();
        }
        self.firing
            .values_mut()
            .filter(|f| now - f.notified >= repeat_secs)
            .map(|f| {
                f.notified = now;
                Transition {
                    alert: f.alert.clone(),
                    notify: f.notify.clone(),
                    at: now,
                }
            })
            .collect()
    }

    /// Every firing built-in alert, as the transition that announced it.
    pub fn transitions(&self, now: i64) -> impl Iterator<Item = Transition> + '_ {
        self.firing.values().map(move |f| Transition {
            alert: f.alert.clone(),
            notify: f.notify.clone(),
            at: now,
        })
    }

    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.firing.values().map(|f| &f.alert)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::RulesConfig;
    use crate::engine::{Engine, EngineSettings};
    use crate::event::Event;
    use crate::rules::load_source;

    fn rule(max_keys: &str) -> Arc<Rule> {
        let source = format!(
            "const RULE = #{{ events: [\"start_call\"], group_by: [\"user_id\"], window: \"1h\",\n\
             labels: #{{ team: \"mobile\" }}, {max_keys} }};\n\
             fn check(w) {{ w.count() >= 2 }}"
        );
        let loaded = load_source(
            "r",
            "rules/r.rhai".as_ref(),
            &source,
            &RulesConfig::default(),
        );
        Arc::new(loaded.unwrap_or_else(|e| panic!("{e:?}")))
    }

    fn ev(t: i64, user: &str) -> Event {
        Event {
            sdkappid: 1_400_000_001,
            event: "start_call".into(),
            user_id: Some(user.into()),
            event_time: t,
            ..Event::default()
        }
    }

    #[test]
    fn past_max_keys_new_keys_are_refused_counted_and_alerted_until_back_under() {
        let mut e = Engine::new(vec![rule("max_keys: 2")], EngineSettings::default());
        assert!(e.on_event(ev(100, "alice"), 100, true).is_empty());
        assert!(e.on_event(ev(100, "bob"), 100, true).is_empty());
        let out = e.on_event(ev(101, "carol"), 101, true);
        let [t] = out.as_slice() else {
            panic!("expected the key-limit alert, got {out:?}");
        };
        assert_eq!(t.alert.rule, RULE_KEYS_LIMIT);
        assert_eq!(t.alert.status, AlertStatus::Firing);
        assert_eq!(t.alert.labels["rule"], "r");
        assert_eq!(t.alert.labels["team"], "mobile", "the rule's own labels");
        assert_eq!(t.alert.value, serde_json::json!(2));
        // Refused once, alerted once; known keys are still evaluated.
        assert!(e.on_event(ev(102, "dave"), 102, true).is_empty());
        let fired = e.on_event(ev(103, "alice"), 103, true);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].alert.rule, "r");
        let (_, keys, stats) = &e.stats()[0];
        assert_eq!((*keys, stats.keys_refused), (2, 2));
        assert!(e.active_alerts().iter().any(|a| a.rule == RULE_KEYS_LIMIT));
        // Still refusing since the last tick: keeps firing.
        assert!(e
            .on_tick(110)
            .iter()
            .all(|t| t.alert.rule != RULE_KEYS_LIMIT));
        // Windows emptied, keys forgotten, nothing refused: resolved.
        let out = e.on_tick(4000);
        let resolved: Vec<_> = out
            .iter()
            .filter(|t| t.alert.rule == RULE_KEYS_LIMIT)
            .collect();
        assert_eq!(resolved.len(), 1, "{out:?}");
        assert_eq!(resolved[0].alert.status, AlertStatus::Resolved);
        assert_eq!(e.stats()[0].1, 0);
        assert!(e.on_event(ev(4001, "erin"), 4001, true).is_empty());
        assert_eq!(e.stats()[0].1, 1, "new keys are tracked again");
    }

    #[test]
    fn the_default_limit_comes_from_the_config() {
        let settings = EngineSettings {
            max_keys_per_rule: 1,
            ..EngineSettings::default()
        };
        let mut e = Engine::new(vec![rule("")], settings);
        e.on_event(ev(100, "alice"), 100, true);
        let out = e.on_event(ev(100, "bob"), 100, true);
        assert_eq!(out.len(), 1);
        assert_eq!(e.snapshot().rules[0].max_keys, 1);
        assert_eq!(e.snapshot().rules[0].keys_refused, 1);
    }

    #[test]
    fn a_bad_max_keys_is_a_load_error_at_its_position() {
        for bad in ["0", "-3", "\"many\"", "1.5"] {
            let source = format!(
                "const RULE = #{{\n    events: [\"start_call\"],\n    window: \"1h\",\n    max_keys: {bad},\n}};\nfn check(w) {{ true }}"
            );
            let errs = load_source(
                "r",
                "rules/r.rhai".as_ref(),
                &source,
                &RulesConfig::default(),
            )
            .expect_err("max_keys must be a positive whole number");
            let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
            assert!(
                text.iter()
                    .any(|e| e.starts_with("rules/r.rhai:4:5: ") && e.contains("max_keys")),
                "{bad}: {text:?}"
            );
        }
    }

    #[test]
    fn replay_prints_the_key_limit_alert_in_order() {
        let rules = vec![rule("max_keys: 1")];
        let lines: String = ["alice", "bob"]
            .iter()
            .enumerate()
            .map(|(i, u)| {
                format!(
                    "{{\"query\":{{\"sdkappid\":\"1400000001\",\"command\":\"caller_start_call\"}},\
                     \"body\":{{\"UserId\":\"{u}\",\"CallId\":\"c{i}\",\"Role\":\"caller\",\
                     \"Event\":\"start_call\",\"EventTime\":{}}}}}\n",
                    1_700_000_000 + i
                )
            })
            .collect();
        let inputs: Vec<(String, Box<dyn std::io::BufRead + Send>)> =
            vec![("t.jsonl".into(), Box::new(std::io::Cursor::new(lines)))];
        let mut out = Vec::new();
        let config = crate::config::Config::default();
        crate::replay::replay_on(1, &config, rules, inputs, &mut out).expect("replay");
        let text = String::from_utf8(out).expect("utf-8");
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().unwrap_or("null")).expect("a JSON line");
        assert_eq!(first["rule"], RULE_KEYS_LIMIT, "{text}");
        assert_eq!(first["labels"]["rule"], "r", "{text}");
        assert_eq!(first["receivers"], serde_json::json!(["log"]), "{text}");
    }
}
