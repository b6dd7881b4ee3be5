//! Running one rule test file: loading the rules it names, gathering its
//! events (recorded, generated and inline), driving an engine through
//! them in event time as `replay` does, and judging each `[[expect]]` at
//! its time. Finding files and printing are the caller's business.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::events::{inline_events, open_input, recorded_events, simulated};
use super::file::{self, Source, TestFile, TestFileError};
use super::report::{judge, Mismatch};
use crate::config::Config;
use crate::engine::{Engine, EngineSettings, RuleStats};
use crate::event::Event;
use crate::rules::Rule;
use crate::timeline::Timeline;

/// How one test file went.
#[derive(Debug)]
pub enum Outcome {
    Pass,
    /// The `[[expect]]` entries that did not hold, in file order.
    Fail(Vec<Mismatch>),
    /// The file (or a rule or input it names) is broken: one or more
    /// `path:line:col: message` lines.
    Error(String),
}

/// One test file's outcome and the rules that hit script errors in it.
#[derive(Debug)]
pub struct FileReport {
    pub path: PathBuf,
    pub outcome: Outcome,
    /// Rules with contained script errors: name and counters.
    pub script_errors: Vec<(String, RuleStats)>,
}

/// Runs the test file at `path`.
pub fn run_file(config: &Config, path: &Path) -> FileReport {
    let mut report = FileReport {
        path: path.to_path_buf(),
        outcome: Outcome::Pass,
        script_errors: Vec::new(),
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            report.outcome = Outcome::Error(format!("{}: {e}", path.display()));
            return report;
        }
    };
    let src = Source { path, text: &text };
    report.outcome = match prepare(config, &src) {
        Ok(test) => {
            let (mismatches, stats) = evaluate(config, test);
            report.script_errors = stats
                .into_iter()
                .filter(|(_, _, s)| s.errors > 0)
                .map(|(name, _, s)| (name, s))
                .collect();
            if mismatches.is_empty() {
                Outcome::Pass
            } else {
                Outcome::Fail(mismatches)
            }
        }
        Err(e) => Outcome::Error(e),
    };
    report
}

/// A test ready to run.
struct Prepared {
    rules: Vec<Arc<Rule>>,
    start: i64,
    /// Every event, in event-time order (stable: file order breaks ties).
    events: Vec<Arc<Event>>,
    expectations: Vec<file::Expectation>,
}

fn prepare(config: &Config, src: &Source<'_>) -> Result<Prepared, String> {
    let test: TestFile = file::parse(src).map_err(|e| e.to_string())?;
    let dir = src.path.parent().unwrap_or(Path::new(""));
    let rules = load_rules(config, src, dir, test.rules.as_deref())?;
    let names: Vec<String> = rules.iter().map(|r| r.name().to_string()).collect();
    let start = file::start(src, test.start.as_ref()).map_err(|e| e.to_string())?;
    let expectations = file::expectations(src, &test.expect, &names).map_err(|e| e.to_string())?;
    let mut events = Vec::new();
    for input in &test.input {
        let path = dir.join(input.get_ref());
        let name = path.display().to_string();
        let reader = open_input(&path).map_err(|e| {
            src.error(input.span(), format!("input {name}: {e}"))
                .to_string()
        })?;
        events.extend(recorded_events(&name, reader)?);
    }
    if let Some(sim) = &test.simulate {
        events.extend(simulated(src, sim, start).map_err(|e| e.to_string())?);
    }
    events.extend(inline_events(src, &test.events, start).map_err(|e| e.to_string())?);
    events.sort_by_key(|e| e.event_time);
    Ok(Prepared {
        rules,
        start,
        events: events.into_iter().map(Arc::new).collect(),
        expectations,
    })
}

/// The rules under test: the files (or directories) the test names,
/// relative to it, else the config's rules directory.
fn load_rules(
    config: &Config,
    src: &Source<'_>,
    dir: &Path,
    listed: Option<&[toml::Spanned<String>]>,
) -> Result<Vec<Arc<Rule>>, String> {
    let joined = |errs: Vec<crate::rules::RuleError>| {
        errs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let Some(listed) = listed else {
        let rules = crate::rules::load_dir(&config.rules.dir, &config.rules).map_err(joined)?;
        return Ok(rules.into_iter().map(Arc::new).collect());
    };
    let mut rules: Vec<Rule> = Vec::new();
    let mut errors = Vec::new();
    for entry in listed {
        let path = dir.join(entry.get_ref());
        let at = |message: String| src.error(entry.span(), message);
        let loaded = if path.is_dir() {
            crate::rules::load_dir(&path, &config.rules)
        } else if path.is_file() {
            crate::rules::load_file(&path, &config.rules).map(|r| vec![r])
        } else {
            errors.push(at(format!("rules: no rule file {}", path.display())).to_string());
            continue;
        };
        match loaded {
            Ok(loaded) => {
                for r in loaded {
                    if rules.iter().any(|o| o.name() == r.name()) {
                        errors.push(
                            at(format!("rules: a second rule named {:?}", r.name())).to_string(),
                        );
                    }
                    rules.push(r);
                }
            }
            Err(errs) => errors.push(joined(errs)),
        }
    }
    if rules.is_empty() && errors.is_empty() {
        errors.push(no_rules(src));
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    Ok(rules.into_iter().map(Arc::new).collect())
}

fn no_rules(src: &Source<'_>) -> String {
    TestFileError {
        path: src.path.to_path_buf(),
        line: 1,
        col: 1,
        message: "rules: no rule to test".into(),
    }
    .to_string()
}

/// Feeds the events in event time and judges each expectation at its
/// time; events after the last expectation never matter.
fn evaluate(config: &Config, test: Prepared) -> (Vec<Mismatch>, Vec<(String, usize, RuleStats)>) {
    let engine = Engine::new(test.rules, EngineSettings::from(config));
    let mut timeline = Timeline::new(engine, config.rules.tick.as_secs() as i64);
    let mut order: Vec<usize> = (0..test.expectations.len()).collect();
    order.sort_by_key(|&i| test.expectations[i].at);
    let mut results: Vec<Option<Mismatch>> = vec![None; test.expectations.len()];
    let mut next = test.events.iter().peekable();
    for i in order {
        let expectation = &test.expectations[i];
        let at = test.start + expectation.at;
        while let Some(event) = next.next_if(|e| e.event_time <= at) {
            timeline.feed(event, |_, _, _| {});
        }
        timeline.tick_through(at, |_, _, _| {});
        let active = timeline.engine().active_alerts();
        results[i] = judge(expectation, at, active);
    }
    let stats = timeline.engine().stats();
    (results.into_iter().flatten().collect(), stats)
}
