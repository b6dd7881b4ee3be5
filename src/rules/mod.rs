//! Rules: loading `rules/*.rhai` files into checked [`Rule`]s and running
//! their `filter(e)` and `check(w)` functions on one shared, sandboxed Rhai
//! engine (limits from `[rules]`, no `import`, no `eval`, `print`/`debug`
//! to tracing). Pure apart from reading rule files at load: it never reads
//! the clock, and it does not own windows, keys or alert states — the
//! engine that drives it passes them in and acts on the [`CheckOutcome`].
//!
//! Functions run without re-running the top level, so they see only their
//! parameters: a top-level `const LIMIT` is not visible inside `check`
//! (a bare `LIMIT` is reported at load as an undefined variable; a
//! `global::LIMIT` fails when it runs). Shared values belong in a helper
//! function (`fn limit() { 3 }`).

mod errors;
mod key;
mod load;
pub mod names;
mod sandbox;
mod script_api;
mod spec;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{CallFnOptions, Dynamic, Engine, FuncArgs, Map, Scope, AST};

use crate::alert::Evidence;
use crate::annotations::Annotations;
use crate::event::Event;
use crate::window::Window;
use sandbox::Running;
use script_api::{EventRef, Live, LiveKey, WHandle};

pub use errors::{RuleError, RunError};
pub use key::{Key, KeyBuf, KeyView};
pub use load::{load_dir, load_file, load_source, load_source_on};
pub use sandbox::build_engine;
pub use script_api::{dynamic_to_json, event_map, json_to_dynamic, map_from_json, map_to_json};
pub use spec::{RuleSpec, Severity, KNOWN_KEYS};

/// What one `check` call works on.
pub struct CheckCtx<'a> {
    pub window: &'a mut Window,
    pub key: KeyView<'a>,
    /// The key's `w.state`; the rule's writes persist into it.
    pub state: &'a mut Map,
    /// Engine time, Unix seconds (`w.now`).
    pub now: i64,
}

/// The decision of one `check` call (rules/README.md).
#[derive(Debug, Clone, PartialEq)]
pub enum CheckOutcome {
    NotFiring,
    /// Firing; `None` fields mean "the rule's default".
    Firing {
        summary: Option<String>,
        severity: Option<Severity>,
        labels: BTreeMap<String, String>,
        value: Option<f64>,
        /// Annotations from `check`, literal text (no templates).
        annotations: BTreeMap<String, String>,
        /// Events `check` chose as evidence, in its order.
        evidence: Option<Vec<Evidence>>,
    },
}

/// A loaded, checked rule, ready to run on its shared engine.
#[derive(Clone)]
pub struct Rule {
    name: Arc<str>,
    path: PathBuf,
    spec: RuleSpec,
    /// `spec.group_by`, shared with the `w` of every `check` call so that
    /// `w.key` can be built only when a script reads it.
    group_by: Arc<[String]>,
    engine: Arc<Engine>,
    /// The script's functions only: top-level code ran once, at load.
    ast: AST,
    has_filter: bool,
    /// Digest of the source text, to tell an edited rule on reload.
    source_digest: String,
    /// `RULE.annotations`, compiled and checked.
    annotations: Arc<Annotations>,
    /// What is suspicious but allowed (a platform callwatch does not
    /// know), each message starting with `warning: `.
    warnings: Vec<RuleError>,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("spec", &self.spec)
            .field("has_filter", &self.has_filter)
            .finish_non_exhaustive()
    }
}

impl Rule {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// SHA-256 of the rule's source text.
    pub fn source_digest(&self) -> &str {
        &self.source_digest
    }

    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }

    /// The compiled `RULE.annotations`.
    pub fn annotations(&self) -> &Arc<Annotations> {
        &self.annotations
    }

    /// Problems found at load that do not stop the rule, as
    /// `path:line:col: warning: message`.
    pub fn warnings(&self) -> &[RuleError] {
        &self.warnings
    }

    /// An empty window of this rule's width.
    pub fn new_window(&self, max_events: usize) -> Window {
        Window::new(self.spec.window_secs, max_events)
    }

    /// Whether `e` enters this rule's windows: its name is in `events`, it
    /// matches `where`, and `filter(e)` (if defined) returns true.
    /// Takes the shared event so `filter` can see it without a copy.
    pub fn accepts(&self, e: &Arc<Event>) -> Result<bool, RunError> {
        if !self.spec.events.iter().any(|n| *n == e.event) || !self.spec.where_matches(e) {
            return Ok(false);
        }
        if !self.has_filter {
            return Ok(true);
        }
        let out = self.call("filter", (Dynamic::from(EventRef(e.clone())),))?;
        out.as_bool()
            .map_err(|t| self.bad_return(format!("filter must return true or false, got {t}")))
    }

    /// The key of the window `e` belongs to: the `group_by` fields' values
    /// as text, `""` where the event lacks the field.
    pub fn key_of(&self, e: &Event) -> Key {
        let mut buf = KeyBuf::default();
        self.key_into(e, &mut buf);
        buf.to_key()
    }

    /// [`Rule::key_of`] into a reused buffer, for looking keys up without
    /// allocating.
    pub fn key_into(&self, e: &Event, buf: &mut KeyBuf) {
        buf.start();
        for f in &self.spec.group_by {
            buf.push_field(e.get(f));
        }
    }

    /// A key of this rule decoded with its `group_by` names.
    pub fn key_view<'a>(&'a self, key: &'a Key) -> KeyView<'a> {
        key.view(&self.spec.group_by)
    }

    /// Runs `check(w)` on one key's window and decodes its answer.
    pub fn check(&self, ctx: CheckCtx<'_>) -> Result<CheckOutcome, RunError> {
        let placeholder = Window::new(ctx.window.width_secs(), ctx.window.max_events());
        let w = WHandle::new(Live {
            window: std::mem::replace(ctx.window, placeholder),
            key: LiveKey::new(ctx.key.to_key(), self.group_by.clone()),
            state: std::mem::take(ctx.state),
            now: ctx.now,
        });
        let result = self.call("check", (Dynamic::from(w.clone()),));
        if let Some(live) = w.finish() {
            *ctx.window = live.window;
            *ctx.state = live.state;
        }
        self.decode(result?)
    }

    fn call(&self, fn_name: &str, args: impl FuncArgs) -> Result<Dynamic, RunError> {
        let _running = Running::enter(&self.name);
        // `eval_ast(false)`: the top level ran once at load and must not run
        // again on every call.
        let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
        self.engine
            .call_fn_with_options::<Dynamic>(options, &mut Scope::new(), &self.ast, fn_name, args)
            .map_err(|e| RunError::from_eval(&self.name, &self.path, *e))
    }

    fn bad_return(&self, message: String) -> RunError {
        RunError {
            rule: self.name.to_string(),
            path: self.path.clone(),
            position: None,
            message,
        }
    }

    fn decode(&self, v: Dynamic) -> Result<CheckOutcome, RunError> {
        let firing = |summary| CheckOutcome::Firing {
            summary,
            severity: None,
            labels: BTreeMap::new(),
            value: None,
            annotations: BTreeMap::new(),
            evidence: None,
        };
        if v.is_unit() {
            return Ok(CheckOutcome::NotFiring);
        }
        if let Ok(b) = v.as_bool() {
            return Ok(if b {
                firing(None)
            } else {
                CheckOutcome::NotFiring
            });
        }
        if v.is_string() {
            return Ok(firing(Some(v.to_string())));
        }
        let Some(map) = v.read_lock::<Map>() else {
            return Err(self.bad_return(format!(
                "check must return (), a bool, a string or a map, got {}",
                v.type_name()
            )));
        };
        self.decode_map(&map)
    }

    fn decode_map(&self, map: &Map) -> Result<CheckOutcome, RunError> {
        let mut summary = None;
        let mut severity = None;
        let mut labels = BTreeMap::new();
        let mut value = None;
        let mut annotations = BTreeMap::new();
        let mut evidence = None;
        for (k, v) in map.iter() {
            let bad = |want: &str| {
                self.bad_return(format!(
                    "check returned {k}: expected {want}, got {}",
                    v.type_name()
                ))
            };
            if v.is_unit() {
                continue;
            }
            match k.as_str() {
                "summary" if v.is_string() => summary = Some(v.to_string()),
                "summary" => return Err(bad("a string")),
                "severity" => {
                    let s = v.clone().into_string().map_err(|_| bad("a severity"))?;
                    severity = Some(Severity::parse(&s).ok_or_else(|| {
                        self.bad_return(format!(
                            "check returned severity {s:?}: not one of critical, warning, info"
                        ))
                    })?);
                }
                "labels" => {
                    let m = v.read_lock::<Map>().ok_or_else(|| bad("a map"))?;
                    for (lk, lv) in m.iter() {
                        let text = spec::scalar_text(lv).ok_or_else(|| bad("a map of strings"))?;
                        labels.insert(lk.to_string(), text);
                    }
                }
                "value" => {
                    value = Some(match v.as_int() {
                        Ok(i) => i as f64,
                        Err(_) => v.as_float().map_err(|_| bad("a number"))?,
                    });
                }
                "annotations" => {
                    let m = v.read_lock::<Map>().ok_or_else(|| bad("a map"))?;
                    for (ak, av) in m.iter() {
                        let text = spec::scalar_text(av).ok_or_else(|| bad("a map of strings"))?;
                        annotations.insert(ak.to_string(), text);
                    }
                }
                "evidence" => {
                    let arr = v
                        .read_lock::<rhai::Array>()
                        .ok_or_else(|| bad("an array of events"))?;
                    let events = arr
                        .iter()
                        .map(script_api::evidence_of)
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| bad("an array of events (from w.events(), w.last()…)"))?;
                    evidence = Some(events);
                }
                other => {
                    return Err(self.bad_return(format!(
                        "check returned unknown key `{other}` (known: summary, severity, labels, value, annotations, evidence)"
                    )))
                }
            }
        }
        Ok(CheckOutcome::Firing {
            summary,
            severity,
            labels,
            value,
            annotations,
            evidence,
        })
    }
}

#[cfg(test)]
mod mistakes;
#[cfg(test)]
mod tests;
