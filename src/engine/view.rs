//! The engine as the admin API sees it: a point-in-time [`Snapshot`] of
//! active alerts and per-rule statistics.

use super::Engine;
use crate::alert::Alert;
use crate::rules::RuleSpec;

/// What the admin API shows of one rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RuleInfo {
    pub name: String,
    pub path: String,
    pub config: RuleSettings,
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

/// A rule's settings as loaded, with the repeat in force (the rule's
/// own or `alerting.repeat`). The admin API decides how they read as JSON
/// (`api::rule_settings`).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSettings {
    pub spec: RuleSpec,
    pub repeat_secs: i64,
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
                config: RuleSettings {
                    spec: s.rule.spec().clone(),
                    repeat_secs: s.policy.repeat_secs,
                },
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
