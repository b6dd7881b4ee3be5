//! Helpers of the rule tests: the fixture traces, a rules directory holding
//! chosen example rules (and extra sources), the real `callwatch` binary
//! run in a temp directory, and replay output parsed back into alerts.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use serde_json::Value;
use tempfile::TempDir;

use callwatch::config::Config;
use callwatch::replay::{replay, replay_on, ReplaySummary};
use callwatch::rules::Rule;

/// The generator's default `--start`: anomaly offsets count from here.
pub const START: i64 = 1_767_225_600;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/rules")
}

/// A fixture trace, decompressed: `tests/fixtures/rules/<name>.jsonl.gz`.
pub fn trace(name: &str) -> Vec<u8> {
    let path = fixtures().join(format!("{name}.jsonl.gz"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    out
}

/// A temp directory holding copies of the named example rules from
/// `rules/` plus `extra` (file name, source) rules written as given.
pub fn rules_dir(examples: &[&str], extra: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in examples {
        let from = repo().join("rules").join(format!("{name}.rhai"));
        std::fs::copy(&from, dir.path().join(format!("{name}.rhai")))
            .unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    for (file, source) in extra {
        std::fs::write(dir.path().join(file), source).expect("write rule");
    }
    dir
}

pub use crate::support::EXAMPLES;

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the real `callwatch` binary with `args` in `cwd` (a directory with
/// no `config/`, so built-in defaults apply), feeding `stdin`. The
/// environment is cleared so no `CALLWATCH_*` variable leaks in.
pub fn callwatch(cwd: &Path, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start callwatch");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    // Written from a thread so a child that stops reading cannot block us.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("callwatch ran");
    let _ = writer.join();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `callwatch replay --rules <rules> <trace file>` in a fresh temp dir;
/// panics unless it exits 0.
pub fn replay_file(rules: &Path, trace: &Path) -> String {
    let cwd = tempfile::tempdir().expect("tempdir");
    let rules = rules.to_str().expect("utf-8 path");
    let trace = trace.to_str().expect("utf-8 path");
    let run = callwatch(cwd.path(), &["replay", "--rules", rules, trace], b"");
    assert_eq!(run.code, Some(0), "replay failed: {run:?}");
    run.stdout
}

/// Writes `data` to a file in a new temp dir; keep the dir alive.
pub fn temp_file(name: &str, data: &[u8]) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, data).expect("write");
    (dir, path)
}

/// Replays `trace` through the rules of `dir` in this process, with the
/// built-in config, giving the output and the engine's per-rule stats.
pub fn replay_in_process(dir: &Path, trace: &[u8]) -> (String, ReplaySummary) {
    replay_in_process_on(0, dir, trace)
}

/// [`replay_in_process`] on `threads` engine threads (0: as many as the
/// machine has, as `callwatch replay` does).
pub fn replay_in_process_on(threads: usize, dir: &Path, trace: &[u8]) -> (String, ReplaySummary) {
    let config = Config::default();
    let rules: Vec<Arc<Rule>> = callwatch::rules::load_dir(dir, &config.rules)
        .unwrap_or_else(|e| panic!("rules should load: {e:?}"))
        .into_iter()
        .map(Arc::new)
        .collect();
    let input: Box<dyn std::io::BufRead + Send> = Box::new(std::io::Cursor::new(trace.to_vec()));
    let mut out = Vec::new();
    let inputs = vec![("trace".into(), input)];
    let summary = match threads {
        0 => replay(&config, rules, inputs, &mut out),
        n => replay_on(n, &config, rules, inputs, &mut out),
    }
    .expect("replay runs");
    (String::from_utf8(out).expect("utf-8 output"), summary)
}

/// One replay output line, the parts the tests reason about.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub rule: String,
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub fingerprint: String,
    /// `at`, Unix seconds.
    pub at: i64,
}

pub fn parse_lines(out: &str) -> Vec<Line> {
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let text = |k: &str| {
                v[k].as_str()
                    .unwrap_or_else(|| panic!("{k}: {l}"))
                    .to_string()
            };
            Line {
                rule: text("rule"),
                status: text("status"),
                labels: serde_json::from_value(v["labels"].clone()).expect("labels"),
                fingerprint: text("fingerprint"),
                at: callwatch::alert::parse_rfc3339(&text("at")).expect("at is RFC 3339"),
            }
        })
        .collect()
}

/// Compares `actual` with the golden file `name` in the fixtures folder,
/// or rewrites it when `CALLWATCH_BLESS` is set (review the diff!).
pub fn assert_golden(name: &str, actual: &str) {
    let path = fixtures().join(name);
    if std::env::var_os("CALLWATCH_BLESS").is_some() {
        std::fs::write(&path, actual).expect("bless");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with CALLWATCH_BLESS=1 to create it)",
            path.display()
        )
    });
    assert!(
        want == actual,
        "replay output differs from {}\n--- want\n{want}--- got\n{actual}",
        path.display()
    );
}
