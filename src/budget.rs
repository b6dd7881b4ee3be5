//! The per-rule CPU budget: how much of the engine thread's time one rule
//! (its `filter` and `check` calls, its share of ticks) may take over a
//! window before the engine suspends it, so one runaway rule cannot make
//! every other rule and ingest fall behind. Reads the monotonic clock, so
//! it runs only in the live daemon; replay and rule tests stay
//! deterministic without it. Elapsed time rather than thread CPU time: on
//! a starved machine a runaway rule never gets enough CPU to exceed a CPU
//! allowance, yet it is what keeps the engine behind.

use std::time::{Duration, Instant};

/// `rules.cpu_budget` over `rules.cpu_budget_window`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuBudget {
    /// Share of the window (0 to 1) one rule may use.
    pub share: f64,
    pub window: Duration,
}

impl CpuBudget {
    /// The budget a config asks for; `None` when `rules.cpu_budget` is 0.
    pub fn from_config(rules: &crate::config::RulesConfig) -> Option<CpuBudget> {
        (rules.cpu_budget > 0.0).then_some(CpuBudget {
            share: rules.cpu_budget,
            window: rules.cpu_budget_window,
        })
    }

    /// Time a rule may use per window.
    pub fn allowance(&self) -> Duration {
        self.window.mul_f64(self.share)
    }
}

/// Engine time one rule used in the current window.
#[derive(Debug, Clone, Default)]
pub struct CpuMeter {
    window_start: Option<Instant>,
    used: Duration,
}

impl CpuMeter {
    /// Adds `spent`, measured up to `at`, to the window (a new window starts
    /// once the current one is over). Returns the share of the window
    /// used when that is over the budget.
    pub fn charge(&mut self, spent: Duration, at: Instant, budget: &CpuBudget) -> Option<f64> {
        let start = *self.window_start.get_or_insert(at);
        if at.duration_since(start) >= budget.window {
            self.window_start = Some(at);
            self.used = Duration::ZERO;
        }
        self.used += spent;
        (self.used > budget.allowance())
            .then(|| self.used.as_secs_f64() / budget.window.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_share_within_a_window_trips_and_a_new_window_starts_clean() {
        let budget = CpuBudget {
            share: 0.5,
            window: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let mut m = CpuMeter::default();
        assert_eq!(m.charge(Duration::from_secs(3), t0, &budget), None);
        // Past the window: the 3 s no longer count.
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(m.charge(Duration::from_secs(4), t1, &budget), None);
        let over = m.charge(Duration::from_secs(2), t1 + Duration::from_secs(1), &budget);
        assert_eq!(over, Some(0.6));
    }
}
