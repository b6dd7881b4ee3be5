//! Built-in alerts the engine raises about rules themselves: a rule
//! suspended for using more than its CPU budget
//! (`callwatch_rule_suspended`) and a rule refusing new keys at its key
//! limit (`callwatch_rule_keys_limit`). They are ordinary alert objects:
//! the alert's `rule` is the built-in name, its `rule` label the rule it
//! is about (so routes written for that rule's owners match it), and it
//! goes where that rule's alerts go. Pure like the engine: time is passed
//! in, transitions are returned.

use std::collections::BTreeMap;

use crate::alert::{fingerprint, Alert, AlertStatus};
use crate::engine::Transition;
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
    pub value: f64,
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
            value: serde_json::Number::from_f64(raise.value)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            fingerprint: fingerprint(name, &key),
            starts_at: now,
            ends_at: None,
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
