//! Backtests: one rule, pasted in the console, run over the journal's
//! callbacks received in the last `since` (`POST /api/v1/backtest`). It
//! answers the alert lines `replay` would print for it, in event time
//! (the same [`Timeline`]), with the ticks run on to the end of the
//! range, as the live daemon would have run them.
//!
//! It runs off the ingest path and on a budget: one at a time, on its own
//! thread at the lowest CPU priority, stopped once it has run for
//! `console.backtest_timeout` or run `console.backtest_max_operations`
//! Rhai operations (a spinning rule fails its calls from then on, and the
//! reading stops); what it found so far is still answered, marked
//! truncated. It owns no HTTP (`api/backtest.rs`) and changes nothing: the
//! live rules, windows and alerts never see it.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::Config;
use crate::engine::{Engine, EngineSettings};
use crate::ingest::line::decode_line;
use crate::journal;
use crate::rules::RuleError;
use crate::timeline::Timeline;

/// What the console posts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The rule's name (its file stem): `[A-Za-z0-9_-]`, at most 64.
    #[serde(default)]
    pub name: Option<String>,
    /// The rule's Rhai source.
    pub source: String,
    /// How far back from now, e.g. `"6h"` (default `"1h"`).
    #[serde(default)]
    pub since: Option<String>,
}

/// Why a backtest gave no result.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// Another backtest runs; it ends within `retry_after`.
    #[error("a backtest is already running (one at a time); retry in {}s", retry_after.as_secs())]
    Busy { retry_after: Duration },
    /// The request itself is wrong.
    #[error("{0}")]
    Bad(String),
    /// The rule does not load: every problem with its position.
    #[error("the rule does not load: {} problem(s)", .0.len())]
    Load(Vec<RuleError>),
    /// The journal could not be read, or the run failed.
    #[error("{0}")]
    Failed(String),
}

impl BacktestError {
    /// `[{path, line, col, message}]` of a load failure; empty otherwise.
    pub fn errors_json(&self) -> Vec<Value> {
        match self {
            BacktestError::Load(errors) => errors
                .iter()
                .map(|e| {
                    json!({
                        "path": e.path.display().to_string(),
                        "line": e.line,
                        "col": e.col,
                        "message": e.message,
                    })
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// What a backtest found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Callbacks read from the range (each may carry several events).
    pub callbacks: u64,
    /// The alert lines, as `replay` prints them, up to
    /// `console.backtest_max_alerts`.
    pub alerts: Vec<Value>,
    /// Alert lines in all (more than `alerts` holds when truncated).
    pub alerts_total: u64,
    /// The alerts were cut, or the budget stopped the run early.
    pub truncated: bool,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// Failed `filter`/`check` calls, and the last failure with its
    /// position.
    pub rule_errors: u64,
    pub last_error: Option<String>,
    /// The range read: received at or after `from_ms`, up to `to_ms`.
    pub from_ms: i64,
    pub to_ms: i64,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn to_json(&self) -> Value {
        json!({
            "callbacks": self.callbacks,
            "alerts": self.alerts,
            "alerts_total": self.alerts_total,
            "truncated": self.truncated,
            "stopped": self.stopped,
            "rule_errors": self.rule_errors,
            "last_error": self.last_error,
            "from_ms": self.from_ms,
            "to_ms": self.to_ms,
            "elapsed_ms": self.elapsed.as_millis() as u64,
        })
    }
}

/// Runs backtests one at a time (see the module doc).
pub struct Backtester {
    config: Arc<Config>,
    /// When the running backtest started; `None` when idle.
    running: Arc<Mutex<Option<Instant>>>,
}

/// Clears the running mark when the backtest thread ends, however it ends.
struct RunningGuard(Arc<Mutex<Option<Instant>>>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// `since` when the request gives none.
const DEFAULT_SINCE: Duration = Duration::from_secs(3600);

impl Backtester {
    /// Backtests against the journal and rule limits of `config`.
    pub fn new(config: &Config) -> Backtester {
        Backtester {
            config: Arc::new(config.clone()),
            running: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs `req` over the journal up to `now_ms` on the backtest thread
    /// and waits for it; refuses at once when one is running already.
    pub async fn run(&self, req: Request, now_ms: i64) -> Result<Outcome, BacktestError> {
        let name = req.name.unwrap_or_else(|| "playground".into());
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(BacktestError::Bad(format!(
                "name {name:?}: use 1 to 64 letters, digits, '_' or '-'"
            )));
        }
        let since = match req.since.as_deref() {
            None => DEFAULT_SINCE,
            Some(s) => humantime::parse_duration(s.trim()).map_err(|e| {
                BacktestError::Bad(format!("since {s:?}: {e} (e.g. \"90m\", \"6h\")"))
            })?,
        };
        let since = since.min(self.config.console.backtest_max_since);
        let guard = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(started) = *running {
                let left = (started + self.config.console.backtest_timeout)
                    .saturating_duration_since(Instant::now());
                return Err(BacktestError::Busy {
                    retry_after: Duration::from_secs(left.as_secs() + 1),
                });
            }
            *running = Some(Instant::now());
            RunningGuard(self.running.clone())
        };
        let config = self.config.clone();
        let from_ms = now_ms - since.as_millis() as i64;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("backtest".into())
            .spawn(move || {
                lower_priority();
                let job = Job {
                    config: &config,
                    name: &name,
                    source: &req.source,
                    from_ms,
                    to_ms: now_ms,
                };
                let outcome = job.run();
                // Free before answering: a client that posts again as
                // soon as it has its answer must not be refused.
                drop(guard);
                // The requester may have gone; the result is then dropped.
                let _ = tx.send(outcome);
            })
            .map_err(|e| BacktestError::Failed(format!("starting the backtest thread: {e}")))?;
        rx.await
            .map_err(|_| BacktestError::Failed("the backtest thread failed".into()))?
    }
}

/// The budget of one run, shared with the Rhai progress hook.
struct Budget {
    deadline: Instant,
    timeout: Duration,
    max_operations: u64,
    operations: AtomicU64,
    /// Why it stopped, once it has.
    stopped: OnceLock<String>,
}

impl Budget {
    fn stop(&self, why: String) -> String {
        self.stopped.get_or_init(|| why).clone()
    }

    fn out_of_time(&self) -> bool {
        if self.stopped.get().is_some() {
            return true;
        }
        if Instant::now() < self.deadline {
            return false;
        }
        self.stop(format!(
            "stopped after console.backtest_timeout ({})",
            humantime::format_duration(self.timeout)
        ));
        true
    }

    /// Called at every Rhai operation: `Some(reason)` ends the call.
    fn on_operation(&self) -> Option<String> {
        if let Some(why) = self.stopped.get() {
            return Some(why.clone());
        }
        let n = self.operations.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.max_operations {
            return Some(self.stop(format!(
                "stopped after console.backtest_max_operations ({}) Rhai operations",
                self.max_operations
            )));
        }
        // The clock is read every few thousand operations only: a spin
        // is caught within microseconds of the deadline all the same.
        if n.is_multiple_of(4096) && self.out_of_time() {
            return self.stopped.get().cloned();
        }
        None
    }
}

/// One backtest, on the backtest thread.
struct Job<'a> {
    config: &'a Config,
    name: &'a str,
    source: &'a str,
    from_ms: i64,
    to_ms: i64,
}

impl Job<'_> {
    fn run(&self) -> Result<Outcome, BacktestError> {
        let started = Instant::now();
        let console = &self.config.console;
        let budget = Arc::new(Budget {
            deadline: started + console.backtest_timeout,
            timeout: console.backtest_timeout,
            max_operations: console.backtest_max_operations,
            operations: AtomicU64::new(0),
            stopped: OnceLock::new(),
        });
        let mut engine = crate::rules::build_engine(&self.config.rules);
        let hook = budget.clone();
        engine.on_progress(move |_| hook.on_operation().map(Into::into));
        let path = PathBuf::from(format!("{}.rhai", self.name));
        let rule = crate::rules::load_source_on(engine, self.name, &path, self.source)
            .map_err(BacktestError::Load)?;
        let tick = (self.config.rules.tick.as_secs() as i64).max(1);
        let mut timeline = Timeline::new(
            Engine::new(vec![Arc::new(rule)], EngineSettings::from(self.config)),
            tick,
        );
        let max_alerts = console.backtest_max_alerts;
        let mut out = Outcome {
            callbacks: 0,
            alerts: Vec::new(),
            alerts_total: 0,
            truncated: false,
            stopped: None,
            rule_errors: 0,
            last_error: None,
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            elapsed: Duration::ZERO,
        };
        let mut collect = |transitions: Vec<crate::alert::Transition>| {
            for t in transitions {
                out.alerts_total += 1;
                if out.alerts.len() < max_alerts {
                    let line = crate::replay::render(&t, self.config);
                    out.alerts
                        .push(serde_json::from_str(&line).unwrap_or(Value::Null));
                }
            }
        };
        let mut callbacks = 0u64;
        for segment in self.segments()? {
            if budget.out_of_time() {
                break;
            }
            let file = match std::fs::File::open(&segment) {
                Ok(f) => f,
                // Pruned since it was listed: older than anything kept.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(BacktestError::Failed(format!(
                        "reading {}: {e}",
                        segment.display()
                    )))
                }
            };
            let read = journal::each_line(BufReader::with_capacity(1 << 16, file), |_, line| {
                // Checked per line as well: a rule that filters
                // everything out runs no Rhai at all.
                if callbacks.is_multiple_of(256) && budget.out_of_time() {
                    return Err(std::io::Error::other("out of budget"));
                }
                // A torn line at the end of the segment being written.
                let Ok(l) = decode_line(line) else {
                    return Ok(());
                };
                if l.received_at
                    .is_none_or(|t| t < self.from_ms || t > self.to_ms)
                {
                    return Ok(());
                }
                callbacks += 1;
                for e in l.decoded.events {
                    timeline.feed(&Arc::new(e), |_, transitions, _| collect(transitions));
                }
                Ok(())
            });
            if let Err(e) = read {
                if budget.stopped.get().is_none() {
                    return Err(BacktestError::Failed(format!(
                        "reading {}: {e}",
                        segment.display()
                    )));
                }
            }
        }
        if !budget.out_of_time() {
            // On to the end of the range, as the live engine's ticks
            // would have gone: `for` and resolving by an emptied window.
            timeline.tick_through(self.to_ms / 1000, |_, transitions, _| collect(transitions));
        }
        out.callbacks = callbacks;
        if let Some((_, _, stats)) = timeline.engine().stats().into_iter().next() {
            out.rule_errors = stats.errors;
            out.last_error = stats.last_error;
        }
        out.stopped = budget.stopped.get().cloned();
        out.truncated = out.stopped.is_some() || out.alerts_total > out.alerts.len() as u64;
        out.elapsed = started.elapsed();
        Ok(out)
    }

    /// Journal segments that may hold records of the range, oldest first:
    /// one whose newest record is older than the range is skipped unread.
    fn segments(&self) -> Result<Vec<PathBuf>, BacktestError> {
        let dir = journal::journal_dir(&self.config.state.dir);
        let all = journal::segments(&dir)
            .map_err(|e| BacktestError::Failed(format!("listing {}: {e}", dir.display())))?;
        Ok(all
            .into_iter()
            .filter(|p| newest_ms(p).is_none_or(|t| t >= self.from_ms))
            .collect())
    }
}

/// When the newest readable record of a segment was received.
fn newest_ms(segment: &Path) -> Option<i64> {
    journal::tail::scan(segment).ok()?.newest_received_at
}

/// Puts the calling thread at the lowest CPU priority: `SCHED_IDLE`
/// (it runs only on a core nothing else wants), or at least nice 19 when
/// that is refused, so a backtest never takes time from ingest or the
/// engine.
// The crate denies `unsafe_code`; libc has no safe wrapper for a thread's
// scheduling policy, and a crate for two calls is not worth it.
#[allow(unsafe_code)]
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: both calls only read the struct passed and change the
    // scheduling of the calling thread (pid 0 / its own tid).
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            if libc::setpriority(libc::PRIO_PROCESS, tid, 19) != 0 {
                tracing::debug!("cannot lower the backtest thread's priority");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_stops_on_operations_and_on_time() {
        let budget = Budget {
            deadline: Instant::now() + Duration::from_secs(3600),
            timeout: Duration::from_secs(3600),
            max_operations: 10,
            operations: AtomicU64::new(0),
            stopped: OnceLock::new(),
        };
        for _ in 0..10 {
            assert_eq!(budget.on_operation(), None);
        }
        let why = budget.on_operation().expect("stopped");
        assert!(
            why.contains("console.backtest_max_operations (10)"),
            "{why}"
        );
        assert!(budget.out_of_time(), "stays stopped");

        let late = Budget {
            deadline: Instant::now(),
            timeout: Duration::from_secs(2),
            max_operations: u64::MAX,
            operations: AtomicU64::new(0),
            stopped: OnceLock::new(),
        };
        assert!(late.out_of_time());
        let why = late.on_operation().expect("stopped");
        assert!(why.contains("console.backtest_timeout (2s)"), "{why}");
    }
}
