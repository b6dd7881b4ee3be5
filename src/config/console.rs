//! `[console]`: what the web console's data endpoints may cost. A
//! backtest (`POST /api/v1/backtest`) runs one pasted rule over the
//! journal, so its wall time, its Rhai operations, how far back it reads
//! and how many alert lines it returns are all bounded; the alert history
//! (transitions and notifications per alert) is bounded in rows.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, Config, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// A backtest still running after this long is stopped and answers
    /// what it found so far, marked truncated.
    #[serde(with = "humantime_serde")]
    pub backtest_timeout: Duration,
    /// The longest `since` a backtest may ask for; a longer one is cut
    /// to this.
    #[serde(with = "humantime_serde")]
    pub backtest_max_since: Duration,
    /// Rhai operations one backtest may run in all (its `filter` and
    /// `check` calls together); each call is also held to
    /// `rules.max_operations`.
    pub backtest_max_operations: u64,
    /// Alert lines a backtest returns at most; more are counted, not sent.
    pub backtest_max_alerts: usize,
    /// Rows kept in each of the alert history's two tables (transitions,
    /// notifications); the oldest go first.
    pub history_max_rows: u64,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            backtest_timeout: Duration::from_secs(20),
            backtest_max_since: Duration::from_secs(24 * 3600),
            backtest_max_operations: 2_000_000_000,
            backtest_max_alerts: 1000,
            history_max_rows: 20_000,
        }
    }
}

impl Config {
    pub(super) fn validate_console(&self) -> Result<(), ConfigError> {
        let c = &self.console;
        for (key, zero) in [
            ("console.backtest_timeout", c.backtest_timeout.is_zero()),
            ("console.backtest_max_since", c.backtest_max_since.is_zero()),
            (
                "console.backtest_max_operations",
                c.backtest_max_operations == 0,
            ),
            ("console.backtest_max_alerts", c.backtest_max_alerts == 0),
            ("console.history_max_rows", c.history_max_rows == 0),
        ] {
            if zero {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        Ok(())
    }
}
