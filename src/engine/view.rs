//! The engine as the admin API sees it: a point-in-time [`Snapshot`] of
//! active alerts and per-rule statistics.

use super::Engine;
use crate::alert::{Alert, Policy};
use crate::rules::Rule;

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

impl Engine {
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
}
