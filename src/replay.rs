//! `callwatch replay`: feeds recorded callbacks (docs/recording.md)
//! through the rules offline, in event time, and prints one JSON line per
//! alert transition. Engine time comes from the events ([`Timeline`]), so
//! the same input gives the same bytes.
//!
//! Silences and grouping are ignored, but inhibition and muted routes are
//! not: they change what would be sent, so a line they change says so
//! (`suppressed`), judged in event time against the alerts fired so far.

mod input;
mod summary;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use crate::alert::Transition;
use crate::alert::{Alert, AlertStatus};
use crate::config::Config;
use crate::engine::{Engine, EngineSettings, RuleStats};
use crate::event::Event;
use crate::ingest::line::{decode_line, LineError};
use crate::journal::each_line;
use crate::progress::Progress;
use crate::rules::Rule;
use crate::timeline::{Cause, Timeline};
pub use input::{open_all, total_size, Input};
pub use summary::{error_report, summary_table, Tally};

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

/// The error of a line that does not decode, naming file and line.
fn line_error(name: &str, line_no: usize, e: LineError) -> ReplayError {
    ReplayError::Input(match e {
        LineError::Record(e) => format!(
            "{name}:{line_no}: cannot be parsed as JSON Lines (one recorded callback, a JSON object, per line): {e}"
        ),
        LineError::Decode(e) => format!("{name}:{line_no}: bad callback: {e}"),
    })
}

/// Reads and decodes every input in order, sending batches of events; a
/// bad line or read error is sent last.
fn read_inputs(inputs: Vec<(String, Box<dyn BufRead + Send>)>, tx: SyncSender<Batch>) {
    let mut callbacks = 0;
    let mut events = Vec::new();
    for (name, reader) in inputs {
        let mut in_file = 0u64;
        let read = each_line(reader, |line_no, line| {
            let decoded = decode_line(line)
                .map_err(|e| line_error(&name, line_no, e))?
                .decoded;
            callbacks += 1;
            in_file += 1;
            events.extend(decoded.events.into_iter().map(Arc::new));
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
            Ok(()) if in_file == 0 => {
                if tx.send(Batch::NoCallbacks(name)).is_err() {
                    return;
                }
                continue;
            }
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
    /// Per rule, the alert lines printed.
    pub tally: BTreeMap<String, Tally>,
    /// Inputs that held no callback at all (likely the wrong file).
    pub empty_inputs: Vec<String>,
}

impl ReplaySummary {
    /// Script errors of all rules together.
    pub fn errors(&self) -> u64 {
        self.rules.iter().map(|(_, _, s)| s.errors).sum()
    }
}

/// One output line: the alert object plus `at` and `receivers`, with no
/// alert firing that could inhibit it.
pub fn render(t: &Transition, config: &Config) -> String {
    render_among(t, config, &[])
}

/// One output line, judged against the alerts firing in `active`: the
/// alert object plus `at` and `receivers` (those it would go to). If an
/// inhibition or a muted route keeps it from some receiver, also
/// `suppressed` (`"inhibited"` or `"muted"`) and `inhibited_by`
/// (fingerprints) or `muted_by` (time interval names).
pub fn render_among(t: &Transition, config: &Config, active: &[Alert]) -> String {
    let quiet = crate::notify::hold::Quiet {
        config,
        silences: &[],
        active,
        now: t.at,
    };
    let mut receivers = Vec::new();
    let mut why: Option<crate::notify::hold::Reason> = None;
    for (r, reason) in quiet.plan(&t.alert, t.notify.as_deref()) {
        match reason {
            None => receivers.push(r),
            // Inhibition holds every receiver, so it is the only reason.
            Some(reason) => why = why.or(Some(reason)),
        }
    }
    let mut v = serde_json::to_value(&t.alert).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "at".into(),
            serde_json::Value::from(crate::time::format_rfc3339(t.at)),
        );
        obj.insert("receivers".into(), serde_json::Value::from(receivers));
        if let Some(reason) = why {
            obj.insert("suppressed".into(), reason.name().into());
            let (key, by) = match reason {
                crate::notify::hold::Reason::Inhibited(by) => ("inhibited_by", by),
                crate::notify::hold::Reason::Muted(by) => ("muted_by", by),
                crate::notify::hold::Reason::Silenced(id) => ("silenced_by", vec![id]),
            };
            obj.insert(key.into(), serde_json::Value::from(by));
        }
    }
    v.to_string()
}

/// The alerts firing so far in event time, by fingerprint: what may
/// inhibit the next line.
#[derive(Default)]
struct Firing(BTreeMap<String, Alert>);

impl Firing {
    fn update(&mut self, t: &Transition) {
        if t.alert.status == AlertStatus::Firing {
            self.0.insert(t.alert.fingerprint.clone(), t.alert.clone());
        } else {
            self.0.remove(&t.alert.fingerprint);
        }
    }
}

/// Prints `placed` (in output order): each engine call's transitions
/// first update the firing alerts, as the daemon's engine publishes its
/// alerts before the dispatcher sees their transitions.
fn emit_all(
    out: &mut dyn Write,
    placed: &[Placed],
    config: &Config,
    firing: &mut Firing,
) -> Result<(), ReplayError> {
    let quiet = !config.inhibit_rules.is_empty() || !config.time_intervals.is_empty();
    for step in placed.chunk_by(|a, b| a.step == b.step) {
        if quiet {
            for p in step {
                firing.update(&p.transition);
            }
        }
        let active: Vec<Alert> = if config.inhibit_rules.is_empty() {
            Vec::new()
        } else {
            firing.0.values().cloned().collect()
        };
        for p in step {
            writeln!(out, "{}", render_among(&p.transition, config, &active))
                .map_err(ReplayError::Output)?;
        }
    }
    Ok(())
}

/// What the reader thread hands the engine: the events of up to
/// [`BATCH`] callbacks, or the input error that ends the replay.
enum Batch {
    Events {
        callbacks: u64,
        events: Vec<Arc<Event>>,
    },
    Failed(ReplayError),
    /// An input ended without a single callback.
    NoCallbacks(String),
}

/// Callbacks per batch: large enough that the channels cost nothing per
/// event, small enough that the threads overlap from the start.
const BATCH: u64 = 1024;

/// Batches the engine threads may be ahead of the merge (each channel
/// holds one more than this). The shares of rules differ in cost (on the
/// example rules, two shares make 709k and 552k evaluations per 1M
/// callbacks), and a deep queue lets the cheaper share and the reader run
/// ahead instead of idling while the dearest catches up: 16 against 3
/// measured 367k against 354k callbacks/s (medians of 8 alternating runs,
/// 1M callbacks, 2 cores). A batch is shared by every engine thread, so
/// this holds at most 16 × 1024 events more in memory.
const IN_FLIGHT: usize = 16;

/// A transition with where it goes in the output: the engine call that
/// produced it (every worker makes the same calls, in the same order) and,
/// for an event, its rule's position among all rules.
struct Placed {
    step: u64,
    /// 0 for a tick's transitions.
    rule_index: usize,
    transition: Transition,
}

impl Placed {
    /// Where a single engine would print it: by call; within an event, in
    /// rule order (one transition per rule at most); within a tick, by
    /// rule name and fingerprint, as `Engine::on_tick` sorts them.
    fn output_order(&self) -> (u64, usize, &str, &str) {
        let alert = &self.transition.alert;
        (self.step, self.rule_index, &alert.rule, &alert.fingerprint)
    }
}

/// One share of the rules, run over the whole event stream: engine time
/// and ticks follow the events exactly as in a single engine.
struct Worker {
    timeline: Timeline,
    /// Position of each of this worker's rules among all rules.
    rule_index: Vec<usize>,
    step: u64,
}

impl Worker {
    fn run_batch(&mut self, events: &[Arc<Event>]) -> Vec<Placed> {
        let mut out = Vec::new();
        let Worker {
            timeline,
            rule_index,
            step,
        } = self;
        for event in events {
            timeline.feed(event, |kind, transitions, engine| {
                *step += 1;
                out.extend(transitions.into_iter().map(|tr| Placed {
                    step: *step,
                    rule_index: match kind {
                        Cause::Tick => 0,
                        Cause::Event => {
                            rule_index[engine.rule_position(crate::builtin::source_rule(&tr.alert))]
                        }
                    },
                    transition: tr,
                }));
            });
        }
        out
    }
}

/// Replays `inputs` (name, reader) through `rules`, writing alert lines.
/// A rule whose script fails is counted in the summary and leaves the
/// other rules' output untouched; only bad input stops the replay.
///
/// The work is spread over the machine's cores: one thread reads and
/// decodes, and the rules are shared out among engine threads that each
/// see every event in input order. Rules never see each other's windows,
/// so each thread's transitions are exactly those a single engine would
/// give for its rules; they are put back into a single engine's order
/// before printing, and the output is the same bytes however many threads
/// ran.
pub fn replay(
    config: &Config,
    rules: Vec<Arc<Rule>>,
    inputs: Vec<(String, Box<dyn BufRead + Send>)>,
    out: &mut dyn Write,
) -> Result<ReplaySummary, ReplayError> {
    replay_with(config, rules, inputs, out, &Progress::hidden())
}

/// [`replay`], showing how far it got on `progress` (per batch of
/// callbacks; the position follows the readers `progress` tracks).
pub fn replay_with(
    config: &Config,
    rules: Vec<Arc<Rule>>,
    inputs: Vec<(String, Box<dyn BufRead + Send>)>,
    out: &mut dyn Write,
    progress: &Progress,
) -> Result<ReplaySummary, ReplayError> {
    // One share per core. With only three batches in flight, one share
    // more than cores evened out the rules' uneven costs (2.98 s against
    // 3.3 s for 1M callbacks on two cores); with sixteen the cheaper share
    // simply runs ahead, and every extra share is one more thread walking
    // every event: 384k against 365k callbacks/s (medians of 10
    // alternating runs), and 346k against 308k in a noisier series.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    run(cores, config, rules, inputs, out, progress)
}

/// [`replay`] with the rules shared out among (at most) `threads` engine
/// threads.
pub fn replay_on(
    threads: usize,
    config: &Config,
    rules: Vec<Arc<Rule>>,
    inputs: Vec<(String, Box<dyn BufRead + Send>)>,
    out: &mut dyn Write,
) -> Result<ReplaySummary, ReplayError> {
    run(threads, config, rules, inputs, out, &Progress::hidden())
}

/// Counts each printed line into its rule's [`Tally`]: a `firing` line
/// for an alert already firing is a repeat.
#[derive(Default)]
struct Tallies {
    by_rule: BTreeMap<String, Tally>,
    firing: HashSet<String>,
}

impl Tallies {
    fn count(&mut self, t: &Transition) {
        let tally = self.by_rule.entry(t.alert.rule.clone()).or_default();
        let fp = &t.alert.fingerprint;
        match t.alert.status {
            AlertStatus::Firing if self.firing.contains(fp) => tally.repeated += 1,
            AlertStatus::Firing => {
                self.firing.insert(fp.clone());
                tally.fired += 1;
            }
            AlertStatus::Resolved => {
                self.firing.remove(fp);
                tally.resolved += 1;
            }
            _ => {}
        }
    }
}

fn run(
    threads: usize,
    config: &Config,
    rules: Vec<Arc<Rule>>,
    inputs: Vec<(String, Box<dyn BufRead + Send>)>,
    out: &mut dyn Write,
    progress: &Progress,
) -> Result<ReplaySummary, ReplayError> {
    let shares = threads.min(rules.len()).max(1);
    let tick = (config.rules.tick.as_secs() as i64).max(1);
    let mut workers: Vec<Worker> = (0..shares)
        .map(|w| {
            let (rule_index, mine): (Vec<usize>, Vec<Arc<Rule>>) = rules
                .iter()
                .enumerate()
                .filter(|(i, _)| i % shares == w)
                .map(|(i, r)| (i, r.clone()))
                .unzip();
            Worker {
                timeline: Timeline::new(Engine::new(mine, EngineSettings::from(config)), tick),
                rule_index,
                step: 0,
            }
        })
        .collect();
    let mut callbacks = 0u64;
    let mut tallies = Tallies::default();
    let mut empty_inputs = Vec::new();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(8);
    std::thread::scope(|scope| -> Result<(), ReplayError> {
        scope.spawn(move || read_inputs(inputs, tx));
        let mut lanes = Vec::new();
        for worker in &mut workers {
            let (to_worker, batches) =
                std::sync::mpsc::sync_channel::<Arc<Vec<Arc<Event>>>>(IN_FLIGHT + 1);
            let (results, from_worker) =
                std::sync::mpsc::sync_channel::<Vec<Placed>>(IN_FLIGHT + 1);
            scope.spawn(move || {
                // Both channels close when the main thread stops early.
                for events in batches {
                    if results.send(worker.run_batch(&events)).is_err() {
                        return;
                    }
                }
            });
            lanes.push((to_worker, from_worker));
        }
        // Batches handed to the workers whose results are not merged yet:
        // a few in flight keep every worker busy while the others and the
        // merge catch up, instead of all of them waiting for the slowest
        // after every batch.
        let mut in_flight = 0;
        let mut firing = Firing::default();
        let mut merge_one = |out: &mut dyn Write| -> Result<(), ReplayError> {
            let mut placed = Vec::new();
            for (_, from_worker) in &lanes {
                placed.extend(from_worker.recv().unwrap_or_default());
            }
            placed.sort_by(|a, b| a.output_order().cmp(&b.output_order()));
            for p in &placed {
                tallies.count(&p.transition);
            }
            emit_all(out, &placed, config, &mut firing)
        };
        // A send fails only once the engine side has stopped, after an
        // output error; the reader then stops too.
        let mut failed = None;
        for batch in rx {
            let events = match batch {
                Batch::Events {
                    callbacks: n,
                    events,
                } => {
                    callbacks += n;
                    Arc::new(events)
                }
                Batch::Failed(e) => {
                    failed = Some(e);
                    break;
                }
                Batch::NoCallbacks(name) => {
                    empty_inputs.push(name);
                    continue;
                }
            };
            progress.update(callbacks, "callbacks");
            for (to_worker, _) in &lanes {
                let _ = to_worker.send(events.clone());
            }
            in_flight += 1;
            if in_flight > IN_FLIGHT {
                merge_one(out)?;
                in_flight -= 1;
            }
        }
        // What came before a bad line is printed before its error.
        for _ in 0..in_flight {
            merge_one(out)?;
        }
        failed.map_or(Ok(()), Err)
    })?;
    let mut stats: Vec<Option<(String, usize, RuleStats)>> = vec![None; rules.len()];
    for w in &workers {
        for (i, s) in w.rule_index.iter().zip(w.timeline.engine().stats()) {
            stats[*i] = Some(s);
        }
    }
    out.flush()?;
    Ok(ReplaySummary {
        callbacks,
        rules: stats.into_iter().flatten().collect(),
        tally: tallies.by_rule,
        empty_inputs,
    })
}
