//! `callwatch replay`: feeds recorded callbacks (SPEC §3) through the rules
//! offline, in event time, and prints one JSON line per alert transition.
//! Engine time is the newest event time seen and ticks happen every
//! `rules.tick` of event time, so the same input gives the same bytes.

use std::io::{BufRead, Write};
use std::sync::Arc;

use crate::config::Config;
use crate::engine::{Engine, EngineSettings, RuleStats, Transition};
use crate::ingest::decode;
use crate::journal::{read_records, JournalError};
use crate::rules::Rule;

/// A replay failure: bad input (exit 1) or an output error.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Input(String),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// What a replay went through, for the caller to report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplaySummary {
    /// Callbacks read.
    pub callbacks: u64,
    /// Per rule, in rule order: name, keys tracked at the end, counters
    /// (evaluations, contained script errors, late events).
    pub rules: Vec<(String, usize, RuleStats)>,
}

impl ReplaySummary {
    /// Script errors of all rules together.
    pub fn errors(&self) -> u64 {
        self.rules.iter().map(|(_, _, s)| s.errors).sum()
    }
}

/// Engine settings from the config.
pub fn engine_settings(config: &Config) -> EngineSettings {
    EngineSettings {
        repeat_secs: config.alerting.repeat.as_secs() as i64,
        max_clock_skew_secs: config.server.max_clock_skew.as_secs() as i64,
        max_events_per_key: config.rules.max_events_per_key,
    }
}

/// One output line: the alert object plus `at` and `receivers`.
pub fn render(t: &Transition, config: &Config) -> String {
    let receivers = crate::notify::receivers_for(
        &t.alert,
        t.notify.as_deref(),
        &config.routes,
        &config.alerting.default_receivers,
    );
    let mut v = serde_json::to_value(&t.alert).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "at".into(),
            serde_json::Value::from(crate::alert::format_rfc3339(t.at)),
        );
        obj.insert("receivers".into(), serde_json::Value::from(receivers));
    }
    v.to_string()
}

/// Replays `inputs` (name, reader) through `rules`, writing alert lines.
/// A rule whose script fails is counted in the summary and leaves the
/// other rules' output untouched; only bad input stops the replay.
pub fn replay(
    config: &Config,
    rules: Vec<Arc<Rule>>,
    inputs: Vec<(String, Box<dyn BufRead>)>,
    out: &mut dyn Write,
) -> Result<ReplaySummary, ReplayError> {
    let mut engine = Engine::new(rules, engine_settings(config));
    let tick = (config.rules.tick.as_secs() as i64).max(1);
    let mut now: Option<i64> = None;
    let mut next_tick = i64::MAX;
    let mut callbacks = 0u64;
    for (name, reader) in inputs {
        for item in read_records(&name, reader) {
            let (line, record) = item.map_err(|e| match e {
                JournalError::Io(e) => ReplayError::Input(format!("{name}: {e}")),
                other => ReplayError::Input(other.to_string()),
            })?;
            callbacks += 1;
            let received = record.received_at.unwrap_or(0);
            let decoded = decode::decode(&record.query, &record.body, received)
                .map_err(|e| ReplayError::Input(format!("{name}:{line}: {e}")))?;
            for event in decoded.events {
                let t = event.event_time;
                let current = match now {
                    None => {
                        next_tick = t + tick;
                        t
                    }
                    Some(n) => n,
                };
                // Ticks due before this event happen first, in event time.
                while next_tick <= t {
                    for tr in engine.on_tick(next_tick) {
                        writeln!(out, "{}", render(&tr, config))?;
                    }
                    next_tick += tick;
                }
                let n = current.max(t);
                now = Some(n);
                for tr in engine.on_event(event, n, true) {
                    writeln!(out, "{}", render(&tr, config))?;
                }
            }
        }
    }
    out.flush()?;
    Ok(ReplaySummary {
        callbacks,
        rules: engine.stats(),
    })
}
