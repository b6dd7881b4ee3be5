//! `callwatch replay`: feeds recorded callbacks (SPEC §3) through the rules
//! offline, in event time, and prints one JSON line per alert transition.
//! Engine time is the newest event time seen and ticks happen every
//! `rules.tick` of event time, so the same input gives the same bytes.

use std::io::{BufRead, Write};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use crate::config::Config;
use crate::engine::{Engine, EngineSettings, RuleStats, Transition};
use crate::event::Event;
use crate::ingest::line::decode_line;
use crate::journal::each_line;
use crate::rules::Rule;

/// A replay failure: bad input (exit 1) or an output error.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Input(String),
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

/// How the read loop stopped early: reading the input, a bad line, or
/// the engine side gone.
enum Step {
    Read(std::io::Error),
    Failed(ReplayError),
    Stopped,
}

impl From<std::io::Error> for Step {
    fn from(e: std::io::Error) -> Step {
        Step::Read(e)
    }
}

impl From<ReplayError> for Step {
    fn from(e: ReplayError) -> Step {
        Step::Failed(e)
    }
}

/// Reads and decodes every input in order, sending batches of events; a
/// bad line or read error is sent last.
fn read_inputs(inputs: Vec<(String, Box<dyn BufRead + Send>)>, tx: SyncSender<Batch>) {
    let mut callbacks = 0;
    let mut events = Vec::new();
    for (name, reader) in inputs {
        let read = each_line(reader, |line_no, line| {
            let decoded = decode_line(line)
                .map_err(|e| ReplayError::Input(format!("{name}:{line_no}: {e}")))?
                .decoded;
            callbacks += 1;
            events.extend(decoded.events);
            if callbacks == BATCH {
                let batch = Batch::Events {
                    callbacks: std::mem::take(&mut callbacks),
                    events: std::mem::take(&mut events),
                };
                // The engine side is gone: nothing more to do.
                tx.send(batch).map_err(|_| Step::Stopped)?;
            }
            Ok(())
        });
        let failed = match read {
            Ok(()) => continue,
            Err(Step::Stopped) => return,
            Err(Step::Read(e)) => ReplayError::Input(format!("{name}: {e}")),
            Err(Step::Failed(e)) => e,
        };
        // What came before the bad line is replayed first.
        let _ = tx.send(Batch::Events { callbacks, events });
        let _ = tx.send(Batch::Failed(failed));
        return;
    }
    let _ = tx.send(Batch::Events { callbacks, events });
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

fn emit(out: &mut dyn Write, t: &Transition, config: &Config) -> Result<(), ReplayError> {
    writeln!(out, "{}", render(t, config)).map_err(ReplayError::Output)
}

/// What the reader thread hands the engine: the events of up to
/// [`BATCH`] callbacks, or the input error that ends the replay.
enum Batch {
    Events { callbacks: u64, events: Vec<Event> },
    Failed(ReplayError),
}

/// Callbacks per batch: large enough that the channel costs nothing per
/// event, small enough that the two threads overlap from the start.
const BATCH: u64 = 1024;

/// Replays `inputs` (name, reader) through `rules`, writing alert lines.
/// A rule whose script fails is counted in the summary and leaves the
/// other rules' output untouched; only bad input stops the replay.
///
/// Reading and decoding run on a second thread, ahead of the rules: the
/// engine still sees every event in input order, so the output is the
/// same bytes as a single-threaded replay, in about the time of the
/// slower of the two halves.
pub fn replay(
    config: &Config,
    rules: Vec<Arc<Rule>>,
    inputs: Vec<(String, Box<dyn BufRead + Send>)>,
    out: &mut dyn Write,
) -> Result<ReplaySummary, ReplayError> {
    let mut engine = Engine::new(rules, engine_settings(config));
    let tick = (config.rules.tick.as_secs() as i64).max(1);
    let mut now: Option<i64> = None;
    let mut next_tick = i64::MAX;
    let mut callbacks = 0u64;
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(8);
    std::thread::scope(|scope| -> Result<(), ReplayError> {
        scope.spawn(move || read_inputs(inputs, tx));
        // A send fails only once the engine side has stopped, after an
        // output error; the reader then stops too.
        for batch in rx {
            let events = match batch {
                Batch::Events {
                    callbacks: n,
                    events,
                } => {
                    callbacks += n;
                    events
                }
                Batch::Failed(e) => return Err(e),
            };
            for event in events {
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
                        emit(out, &tr, config)?;
                    }
                    next_tick += tick;
                }
                let n = current.max(t);
                now = Some(n);
                for tr in engine.on_event(event, n, true) {
                    emit(out, &tr, config)?;
                }
            }
        }
        Ok(())
    })?;
    out.flush()?;
    Ok(ReplaySummary {
        callbacks,
        rules: engine.stats(),
    })
}
