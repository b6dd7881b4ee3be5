//! `callwatch test`: rule tests as data. A `*.test.toml` file names the
//! rules under test, feeds them events (recorded callbacks, generated
//! traffic, inline `[[events]]`) and states which alerts must be active
//! at given times (`[[expect]]`). This module finds the files, runs each
//! and prints `PASS path` / `FAIL path` with a diff-like account of every
//! failed expectation. The format is documented in `docs/rule-tests.md`.
//!
//! - [`mod@file`]: the format and its `path:line:col` errors.
//! - [`events`]: `[[events]]` entries and recorded callbacks as events.
//! - [`runner`]: one file through an engine, in event time.
//! - [`report`]: matching expected and active alerts; the failure diff.

pub mod events;
pub mod file;
pub mod report;
pub mod runner;

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::Config;
use runner::Outcome;

/// Suffix of rule test files.
pub const SUFFIX: &str = ".test.toml";

/// What a run of `callwatch test` came to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    /// Files that could not run (bad file, rule or input).
    pub broken: usize,
    /// Files in which some rule had contained script errors (also
    /// counted as failed).
    pub with_script_errors: usize,
}

impl Summary {
    /// Everything passed, with no script error anywhere.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.broken == 0
    }
}

/// The test files `paths` stand for: a file as given, a directory as
/// every `*.test.toml` under it (recursively, in name order).
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let before = out.len();
            walk(p, &mut out).map_err(|e| format!("{}: {e}", p.display()))?;
            if out.len() == before {
                return Err(format!("{}: no *{SUFFIX} files in it", p.display()));
            }
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().ends_with(SUFFIX))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Runs every test file, writing one `PASS path` or `FAIL path` line
/// each (with the failures under it) to `out`, and a count of script
/// errors per rule to `err` too (they fail the file).
pub fn run(
    config: &Config,
    files: &[PathBuf],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<Summary> {
    let mut summary = Summary::default();
    // A bar over the files on stderr when it is a terminal; each verdict
    // is written with the bar out of the way.
    let progress = crate::progress::Progress::for_bytes(Some(files.len() as u64));
    for (i, path) in files.iter().enumerate() {
        progress.set_position(i as u64);
        progress.update(i as u64, "test files");
        let report = runner::run_file(config, path);
        let shown = path.display();
        // A rule that failed to evaluate fails its test even when the
        // expectations held: an error is not evidence of a quiet rule.
        let errors: Vec<String> = report
            .script_errors
            .iter()
            .map(|(rule, stats)| {
                format!(
                    "rule {rule}: {} script error(s) in {} evaluations; last: {}",
                    stats.errors,
                    stats.evaluations,
                    stats.last_error.as_deref().unwrap_or("?")
                )
            })
            .collect();
        let passed = matches!(report.outcome, Outcome::Pass) && errors.is_empty();
        match &report.outcome {
            _ if passed => summary.passed += 1,
            Outcome::Error(_) => summary.broken += 1,
            Outcome::Pass | Outcome::Fail(_) => summary.failed += 1,
        }
        progress.suspend(|| -> std::io::Result<()> {
            let verdict = if passed { "PASS" } else { "FAIL" };
            writeln!(out, "{verdict} {shown}")?;
            match &report.outcome {
                Outcome::Pass => {}
                Outcome::Fail(mismatches) => {
                    for m in mismatches {
                        out.write_all(m.render().as_bytes())?;
                    }
                }
                Outcome::Error(message) => {
                    for line in message.lines() {
                        writeln!(out, "  {line}")?;
                    }
                }
            }
            for line in &errors {
                writeln!(out, "  {line}")?;
                writeln!(err, "callwatch: {shown}: {line}")?;
            }
            if !errors.is_empty() {
                summary.with_script_errors += 1;
            }
            out.flush()
        })?;
    }
    progress.finish();
    Ok(summary)
}
