//! The `*.test.toml` format: parsing a rule test file into typed parts,
//! with every problem reported as `path:line:col: message` (from the TOML
//! parser's spans). It checks shape and values; loading rules, reading
//! inputs and running belong to the runner.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// The time origin when a test file sets none (the start of 2026, UTC).
pub const DEFAULT_START: i64 = 1_767_225_600;

/// A problem with a test file (or something it names), at a place in it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}:{line}:{col}: {message}")]
pub struct TestFileError {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// The text of a test file, to turn byte spans into lines and columns.
pub struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// An error at the start of `span` (1-based line and column, columns
    /// in characters).
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> TestFileError {
        let (line, col) = line_col(self.text, span.start);
        TestFileError {
            path: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }

    /// The line `span` starts on.
    pub fn line_of(&self, span: Range<usize>) -> usize {
        line_col(self.text, span.start).0
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A whole test file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// Rule files (or directories of them), relative to the test file.
    pub rules: Option<Vec<Spanned<String>>>,
    /// RFC 3339 (string or TOML date-time) or Unix seconds.
    pub start: Option<Spanned<toml::Value>>,
    /// Recorded callbacks, relative to the test file; `.gz` is fine.
    #[serde(default)]
    pub input: Vec<Spanned<String>>,
    /// Generated traffic, with `callwatch simulate`'s options.
    pub simulate: Option<Spanned<SimulateSpec>>,
    #[serde(default)]
    pub events: Vec<Spanned<EventSpec>>,
    #[serde(default)]
    pub expect: Vec<Spanned<Expect>>,
}

/// `[simulate]`: the options of `callwatch simulate`, same names and
/// meanings; the trace starts at the test's `start`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateSpec {
    pub seed: Option<u64>,
    pub calls: Option<u64>,
    pub rate: Option<f64>,
    pub users: Option<u32>,
    pub sdkappid: Option<u64>,
    pub family: Option<Spanned<String>>,
    #[serde(default)]
    pub anomalies: Vec<Spanned<String>>,
    pub retries: Option<f64>,
}

/// One `[[events]]` entry: an event in the event model's field names,
/// plus when and how often.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// Offset from `start`, e.g. `"30s"`.
    pub at: Option<Spanned<String>>,
    /// This many copies...
    pub repeat: Option<Spanned<i64>>,
    /// ...this far apart.
    pub every: Option<Spanned<String>>,

    pub event: Spanned<String>,
    pub sdkappid: Option<u64>,
    pub command: Option<String>,
    pub platform: Option<String>,
    pub client_ip: Option<String>,
    pub user_id: Option<String>,
    pub room_id: Option<String>,
    pub total_num: Option<i64>,
    pub media_type: Option<String>,
    pub call_type: Option<String>,
    pub call_id: Option<String>,
    pub role: Option<String>,
    pub call_result: Option<String>,
    /// Absolute Unix seconds, instead of `at`.
    pub event_time: Option<Spanned<i64>>,
    pub start_call_ts: Option<i64>,
    pub accept_ts: Option<i64>,
    pub end_ts: Option<i64>,
    /// Shorthands that set `start_call_ts`/`accept_ts`/`end_ts` around
    /// the event time.
    pub ring_secs: Option<Spanned<i64>>,
    pub talk_secs: Option<Spanned<i64>>,
    pub extra: Option<toml::Table>,
}

/// One `[[expect]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Evaluation time, as an offset from `start`.
    pub at: Spanned<String>,
    /// Every alert of the rules under test that must be active then.
    pub alerts: Vec<Spanned<ExpectedAlertSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedAlertSpec {
    pub rule: Spanned<String>,
    /// `firing` (default) or `pending`.
    pub status: Option<Spanned<String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, Spanned<toml::Value>>,
    pub summary: Option<String>,
}

/// Status of an expected alert: only active ones can be expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    Pending,
    Firing,
}

impl Active {
    pub fn as_str(self) -> &'static str {
        match self {
            Active::Pending => "pending",
            Active::Firing => "firing",
        }
    }
}

/// An expected alert, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedAlert {
    pub rule: String,
    pub status: Active,
    pub labels: BTreeMap<String, String>,
    pub summary: Option<String>,
}

/// An `[[expect]]`, checked: its time and the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// Offset from `start`, seconds.
    pub at: i64,
    /// As written, for the report.
    pub at_text: String,
    pub line: usize,
    pub alerts: Vec<ExpectedAlert>,
}

/// Parses a test file's text; unknown keys and wrong types are errors
/// naming the key, at its place.
pub fn parse(src: &Source<'_>) -> Result<TestFile, TestFileError> {
    toml::from_str(src.text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        src.error(span, e.message().trim_end().to_string())
    })
}

/// A duration such as `"90s"`, `"10m"` or `"1h 30m"`, in seconds.
pub fn duration(src: &Source<'_>, key: &str, v: &Spanned<String>) -> Result<i64, TestFileError> {
    let text = v.get_ref().trim();
    let bad = |why: String| src.error(v.span(), format!("{key}: bad duration {text:?}: {why}"));
    let d = humantime::parse_duration(text).map_err(|e| bad(e.to_string()))?;
    i64::try_from(d.as_secs()).map_err(|_| bad("too long".into()))
}

/// `start`: RFC 3339 text, a TOML date-time, or Unix seconds.
pub fn start(src: &Source<'_>, v: Option<&Spanned<toml::Value>>) -> Result<i64, TestFileError> {
    let Some(v) = v else {
        return Ok(DEFAULT_START);
    };
    let parsed = match v.get_ref() {
        toml::Value::Integer(secs) => Some(*secs),
        toml::Value::String(s) => crate::time::parse_rfc3339(s.trim()),
        toml::Value::Datetime(d) => crate::time::parse_rfc3339(&d.to_string()),
        _ => None,
    };
    parsed.ok_or_else(|| {
        src.error(
            v.span(),
            format!(
                "start: {} is not an RFC 3339 time such as \"2026-01-01T00:00:00Z\" (or Unix seconds)",
                v.get_ref()
            ),
        )
    })
}

/// Checks the `[[expect]]` entries against the names of the rules under
/// test, so a misspelt rule name is an error rather than a failed test.
pub fn expectations(
    src: &Source<'_>,
    expect: &[Spanned<Expect>],
    rules: &[String],
) -> Result<Vec<Expectation>, TestFileError> {
    let mut out = Vec::new();
    for e in expect {
        let mut alerts = Vec::new();
        for a in &e.get_ref().alerts {
            alerts.push(expected_alert(src, a.get_ref(), rules)?);
        }
        out.push(Expectation {
            at: duration(src, "at", &e.get_ref().at)?,
            at_text: e.get_ref().at.get_ref().clone(),
            line: src.line_of(e.span()),
            alerts,
        });
    }
    Ok(out)
}

fn expected_alert(
    src: &Source<'_>,
    a: &ExpectedAlertSpec,
    rules: &[String],
) -> Result<ExpectedAlert, TestFileError> {
    let rule = a.rule.get_ref();
    if !rules.contains(rule) {
        return Err(src.error(
            a.rule.span(),
            format!(
                "no rule named {rule:?} under test (rules: {})",
                rules.join(", ")
            ),
        ));
    }
    let status = match a.status.as_ref() {
        None => Active::Firing,
        Some(s) => match s.get_ref().as_str() {
            "firing" => Active::Firing,
            "pending" => Active::Pending,
            other => {
                return Err(src.error(
                    s.span(),
                    format!(
                        "status: {other:?} is not \"firing\" or \"pending\" (a resolved alert is simply not active: leave it out)"
                    ),
                ))
            }
        },
    };
    let mut labels = BTreeMap::new();
    for (k, v) in &a.labels {
        let text = match v.get_ref() {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(src.error(
                    v.span(),
                    format!(
                        "labels.{k}: expected a string, number or boolean, found {}",
                        other.type_str()
                    ),
                ))
            }
        };
        labels.insert(k.clone(), text);
    }
    Ok(ExpectedAlert {
        rule: rule.clone(),
        status,
        labels,
        summary: a.summary.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> Source<'_> {
        Source {
            path: Path::new("t.test.toml"),
            text,
        }
    }

    #[test]
    fn an_unknown_key_is_named_at_its_place() {
        let text = "start = \"2026-01-01T00:00:00Z\"\n[[events]]\nat = \"1s\"\nevent = \"start_call\"\nusr_id = \"a\"\n";
        let e = parse(&src(text)).expect_err("unknown key");
        assert_eq!((e.line, e.col), (5, 1), "{e}");
        assert!(e.message.contains("unknown field `usr_id`"), "{e}");
    }

    #[test]
    fn start_takes_text_date_times_and_seconds() {
        let text = "a = \"2026-01-01T00:01:00Z\"\nb = 2026-01-01T00:02:00Z\nc = 60\nd = \"soon\"\n";
        let t: BTreeMap<String, Spanned<toml::Value>> = toml::from_str(text).expect("toml");
        let s = src(text);
        assert_eq!(start(&s, t.get("a")), Ok(DEFAULT_START + 60));
        assert_eq!(start(&s, t.get("b")), Ok(DEFAULT_START + 120));
        assert_eq!(start(&s, t.get("c")), Ok(60));
        assert_eq!(start(&s, None), Ok(DEFAULT_START));
        let e = start(&s, t.get("d")).expect_err("not a time");
        assert_eq!((e.line, e.col), (4, 5), "{e}");
    }

    #[test]
    fn a_misspelt_rule_or_status_in_an_expectation_is_an_error() {
        let text = "[[expect]]\nat = \"1m\"\nalerts = [ { rule = \"missed_cal_streak\" } ]\n";
        let s = src(text);
        let f = parse(&s).expect("parses");
        let rules = ["missed_call_streak".to_string()];
        let e = expectations(&s, &f.expect, &rules).expect_err("bad rule");
        assert_eq!((e.line, e.col), (3, 21), "{e}");
        assert!(e.message.contains("no rule named \"missed_cal_streak\""));

        let text = "[[expect]]\nat = \"1m\"\nalerts = [ { rule = \"missed_call_streak\", status = \"resolved\" } ]\n";
        let s = src(text);
        let f = parse(&s).expect("parses");
        let e = expectations(&s, &f.expect, &rules).expect_err("bad status");
        assert!(e.message.starts_with("status: \"resolved\""), "{e}");
    }

    #[test]
    fn durations_need_a_unit() {
        let text = "[[expect]]\nat = \"10 minutez\"\nalerts = []\n";
        let s = src(text);
        let f = parse(&s).expect("parses");
        let e = expectations(&s, &f.expect, &[]).expect_err("bad unit");
        assert_eq!((e.line, e.col), (2, 6), "{e}");
        let text = "[[expect]]\nat = \"10 minutes\"\nalerts = []\n";
        let s = src(text);
        let f = parse(&s).expect("parses");
        assert_eq!(expectations(&s, &f.expect, &[]).expect("ok")[0].at, 600);
    }
}
