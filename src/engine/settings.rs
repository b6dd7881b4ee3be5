//! The engine's settings that are not per rule (from the config: live with
//! a CPU budget, or deterministic for replay and rule tests), and how they
//! bound one rule's evaluation.

use super::slot::{KeyLimits, RuleSlot};
use super::Transition;
use crate::budget::CpuBudget;
use crate::builtin::BuiltinAlerts;

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
    pub(super) fn evaluate_slot(
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

    pub(super) fn key_limits(&self, slot: &RuleSlot) -> KeyLimits {
        KeyLimits {
            events: self.max_events_per_key,
            keys: slot.max_keys,
        }
    }
}
