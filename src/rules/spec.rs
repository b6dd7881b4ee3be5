//! The `const RULE` map of a rule file, checked and turned into a plain
//! Rust [`RuleSpec`]. Every problem is reported, each naming the key at
//! fault; where the key sits in the source is found by the loader, not here.

use std::collections::BTreeMap;
use std::fmt;

use rhai::{Dynamic, Map};

use crate::event::{Event, Field};

/// Keys `RULE` may have.
pub const KNOWN_KEYS: &[&str] = &[
    "events",
    "where",
    "group_by",
    "window",
    "severity",
    "for",
    "repeat",
    "labels",
    "notify",
    "resolve",
    "max_keys",
    "annotations",
    "keep_firing_for",
];

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Severity {
    Critical,
    #[default]
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "critical" => Some(Severity::Critical),
            "warning" => Some(Severity::Warning),
            "info" => Some(Severity::Info),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's declaration, as the engine uses it. Durations are seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    /// Event names that may enter the window.
    pub events: Vec<String>,
    /// Field → accepted values (as text); an event must match every field.
    pub where_: Vec<(String, Vec<String>)>,
    /// Fields whose values make the key; empty means one global window.
    pub group_by: Vec<String>,
    pub window_secs: i64,
    pub severity: Severity,
    pub for_secs: i64,
    /// `None`: use `alerting.repeat`.
    pub repeat_secs: Option<i64>,
    pub labels: BTreeMap<String, String>,
    /// Receivers that bypass routing; empty means "route normally".
    pub notify: Vec<String>,
    /// Whether a resolve is notified.
    pub resolve: bool,
    /// Keys tracked at most; `None`: `rules.max_keys_per_rule`.
    pub max_keys: Option<usize>,
    /// `RULE.annotations`: name → template source (compiled by the loader).
    pub annotations: BTreeMap<String, String>,
    /// How long a firing alert stays firing after `check` stops firing.
    pub keep_firing_for_secs: i64,
}

impl RuleSpec {
    /// Whether `e` passes `where`: every field has one of its values
    /// (compared as text).
    pub(crate) fn where_matches(&self, e: &Event) -> bool {
        self.where_
            .iter()
            .all(|(field, allowed)| match e.get(field) {
                Some(Field::Str(s)) => allowed.iter().any(|a| a == s),
                Some(f) => {
                    let text = f.to_text();
                    allowed.contains(&text)
                }
                None => false,
            })
    }
}

/// One problem in `RULE`: the key it concerns (if any) and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SpecProblem {
    pub key: Option<String>,
    pub message: String,
}

fn problem(key: &str, message: impl Into<String>) -> SpecProblem {
    SpecProblem {
        key: Some(key.to_string()),
        message: message.into(),
    }
}

/// Collects problems while parsing goes on, so all are reported at once.
#[derive(Default)]
struct Problems(Vec<SpecProblem>);

impl Problems {
    fn take<T>(&mut self, r: Result<T, SpecProblem>) -> Option<T> {
        r.map_err(|p| self.0.push(p)).ok()
    }

    fn add(&mut self, key: &str, message: impl Into<String>) {
        self.0.push(problem(key, message));
    }
}

/// Checks `RULE` and converts it, collecting every problem.
pub(crate) fn parse(rule: &Map) -> Result<RuleSpec, Vec<SpecProblem>> {
    let mut p = Problems::default();
    for key in rule.keys() {
        if !KNOWN_KEYS.contains(&key.as_str()) {
            let known = KNOWN_KEYS.join(", ");
            p.add(key, format!("RULE: unknown key `{key}` (known: {known})"));
        }
    }
    let events = p.take(required(rule, "events").and_then(|v| names(v, "events")));
    if events.as_ref().is_some_and(Vec::is_empty) {
        p.add("events", "RULE.events: names no event");
    }
    let window_secs = p
        .take(required(rule, "window").and_then(|v| duration(v, "window")))
        .flatten();
    if window_secs == Some(0) {
        p.add("window", "RULE.window: must be longer than 0s");
    }
    let where_ = p
        .take(optional(rule, "where", where_map))
        .unwrap_or_default();
    let group_by = p
        .take(optional(rule, "group_by", strings))
        .unwrap_or_default();
    let severity = p.take(optional(rule, "severity", severity)).flatten();
    let for_secs = p.take(optional(rule, "for", duration)).flatten();
    let repeat_secs = p.take(optional(rule, "repeat", duration)).flatten();
    if repeat_secs == Some(0) {
        p.add("repeat", "RULE.repeat: must be longer than 0s");
    }
    let labels = p.take(optional(rule, "labels", labels)).flatten();
    let notify = p.take(optional(rule, "notify", names)).unwrap_or_default();
    let resolve = p.take(optional(rule, "resolve", boolean)).flatten();
    let max_keys = p.take(optional(rule, "max_keys", positive)).flatten();
    let annotations = p
        .take(optional(rule, "annotations", templates))
        .unwrap_or_default();
    let keep_firing_for = p
        .take(optional(rule, "keep_firing_for", duration))
        .flatten();

    match (events, window_secs) {
        (Some(events), Some(window_secs)) if p.0.is_empty() => Ok(RuleSpec {
            events,
            where_,
            group_by,
            window_secs,
            severity: severity.unwrap_or_default(),
            for_secs: for_secs.unwrap_or(0),
            repeat_secs,
            labels: labels.unwrap_or_default(),
            notify,
            resolve: resolve.unwrap_or(true),
            max_keys,
            annotations,
            keep_firing_for_secs: keep_firing_for.unwrap_or(0),
        }),
        _ => Err(p.0),
    }
}

fn required<'a>(rule: &'a Map, key: &str) -> Result<&'a Dynamic, SpecProblem> {
    rule.get(key).ok_or_else(|| SpecProblem {
        key: None,
        message: format!("RULE: missing required key `{key}`"),
    })
}

/// Parses `key` with `f` when present; absent gives `Default`.
fn optional<T: Default>(
    rule: &Map,
    key: &str,
    f: impl Fn(&Dynamic, &str) -> Result<T, SpecProblem>,
) -> Result<T, SpecProblem> {
    match rule.get(key) {
        Some(v) => f(v, key),
        None => Ok(T::default()),
    }
}

fn type_problem(key: &str, want: &str, got: &Dynamic) -> SpecProblem {
    problem(
        key,
        format!("RULE.{key}: expected {want}, got {}", got.type_name()),
    )
}

/// An array of strings.
fn strings(v: &Dynamic, key: &str) -> Result<Vec<String>, SpecProblem> {
    let Some(arr) = v.read_lock::<rhai::Array>() else {
        return Err(type_problem(key, "an array of strings", v));
    };
    arr.iter()
        .map(|item| {
            item.clone()
                .into_string()
                .map_err(|_| type_problem(key, "an array of strings", item))
        })
        .collect()
}

/// One name or an array of names.
fn names(v: &Dynamic, key: &str) -> Result<Vec<String>, SpecProblem> {
    if v.is_string() {
        return Ok(vec![v.to_string()]);
    }
    strings(v, key).map_err(|_| type_problem(key, "a string or an array of strings", v))
}

/// A duration string such as `"30m"`, in seconds.
fn duration(v: &Dynamic, key: &str) -> Result<Option<i64>, SpecProblem> {
    let Ok(s) = v.clone().into_string() else {
        return Err(type_problem(key, "a duration string such as \"30m\"", v));
    };
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| problem(key, format!("RULE.{key}: bad duration {s:?}: {e}")))?;
    i64::try_from(d.as_secs())
        .map(Some)
        .map_err(|_| problem(key, format!("RULE.{key}: duration {s:?} is too long")))
}

fn severity(v: &Dynamic, key: &str) -> Result<Option<Severity>, SpecProblem> {
    let Ok(s) = v.clone().into_string() else {
        return Err(type_problem(key, "one of critical, warning, info", v));
    };
    Severity::parse(&s).map(Some).ok_or_else(|| {
        problem(
            key,
            format!("RULE.{key}: {s:?} is not one of critical, warning, info"),
        )
    })
}

fn boolean(v: &Dynamic, key: &str) -> Result<Option<bool>, SpecProblem> {
    v.as_bool()
        .map(Some)
        .map_err(|_| type_problem(key, "true or false", v))
}

/// A whole number greater than 0.
fn positive(v: &Dynamic, key: &str) -> Result<Option<usize>, SpecProblem> {
    match v.as_int() {
        Ok(n) if n > 0 => Ok(usize::try_from(n).ok()),
        Ok(n) => Err(problem(
            key,
            format!("RULE.{key}: must be a whole number greater than 0, got {n}"),
        )),
        Err(_) => Err(type_problem(key, "a whole number greater than 0", v)),
    }
}

/// The text of a scalar (string, number, bool), as fields compare and
/// labels show it.
pub(crate) fn scalar_text(v: &Dynamic) -> Option<String> {
    if v.is_string() || v.is_int() || v.is_float() || v.is_bool() {
        Some(v.to_string())
    } else {
        None
    }
}

fn labels(v: &Dynamic, key: &str) -> Result<Option<BTreeMap<String, String>>, SpecProblem> {
    let Some(map) = v.read_lock::<Map>() else {
        return Err(type_problem(key, "a map of strings", v));
    };
    map.iter()
        .map(|(k, v)| match scalar_text(v) {
            Some(text) => Ok((k.to_string(), text)),
            None => Err(type_problem(&format!("{key}.{k}"), "a string", v)),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// A map of template strings.
fn templates(v: &Dynamic, key: &str) -> Result<BTreeMap<String, String>, SpecProblem> {
    let Some(map) = v.read_lock::<Map>() else {
        return Err(type_problem(key, "a map of template strings", v));
    };
    map.iter()
        .map(|(k, v)| match v.clone().into_string() {
            Ok(text) => Ok((k.to_string(), text)),
            Err(_) => Err(type_problem(&format!("{key}.{k}"), "a string", v)),
        })
        .collect()
}

fn where_map(v: &Dynamic, key: &str) -> Result<Vec<(String, Vec<String>)>, SpecProblem> {
    let Some(map) = v.read_lock::<Map>() else {
        return Err(type_problem(key, "a map of field to value(s)", v));
    };
    let mut out = Vec::with_capacity(map.len());
    for (field, value) in map.iter() {
        let path = format!("{key}.{field}");
        let want = "a value or an array of values";
        let values = match value.read_lock::<rhai::Array>() {
            Some(arr) => arr
                .iter()
                .map(|x| scalar_text(x).ok_or_else(|| type_problem(&path, want, x)))
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![scalar_text(value).ok_or_else(|| type_problem(&path, want, value))?],
        };
        out.push((field.to_string(), values));
    }
    Ok(out)
}
