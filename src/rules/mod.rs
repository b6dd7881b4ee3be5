//! Rules: loading `rules/*.rhai` files into checked [`Rule`]s and running
//! their `filter(e)` and `check(w)` functions on one shared, sandboxed Rhai
//! engine (limits from `[rules]`, no `import`, no `eval`, `print`/`debug`
//! to tracing). Pure apart from reading rule files at load: it never reads
//! the clock, and it does not own windows, keys or alert states — the
//! engine that drives it passes them in and acts on the [`CheckOutcome`].

mod api;
mod errors;
mod spec;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::module_resolvers::DummyModuleResolver;
use rhai::{CallFnOptions, Dynamic, Engine, FuncArgs, Map, ParseError, ParseErrorType, Scope, AST};

use crate::config::RulesConfig;
use crate::event::Event;
use crate::window::Window;
use api::{EventRef, Live, WHandle};

pub use api::{dynamic_to_json, event_map, json_to_dynamic, map_from_json, map_to_json};
pub use errors::{RuleError, RunError};
pub use spec::{RuleSpec, Severity, KNOWN_KEYS};

/// The values of a rule's `group_by` fields for one event, in `group_by`
/// order: one window (and one alert) per distinct key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub Vec<(String, String)>);

impl Key {
    /// The key as alert labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.0.iter().cloned().collect()
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, v)| v.as_str())
    }

    fn to_map(&self) -> Map {
        self.0
            .iter()
            .map(|(f, v)| (f.as_str().into(), Dynamic::from(v.clone())))
            .collect()
    }
}

impl fmt::Display for Key {
    /// `sdkappid=1400000001,user_id=alice`; empty for a global window.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (field, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{field}={value}")?;
        }
        Ok(())
    }
}

/// What one `check` call works on.
pub struct CheckCtx<'a> {
    pub window: &'a mut Window,
    pub key: &'a Key,
    /// The key's `w.state`; the rule's writes persist into it.
    pub state: &'a mut Map,
    /// Engine time, Unix seconds (`w.now`).
    pub now: i64,
}

/// The decision of one `check` call (SPEC §5).
#[derive(Debug, Clone, PartialEq)]
pub enum CheckOutcome {
    NotFiring,
    /// Firing; `None` fields mean "the rule's default".
    Firing {
        summary: Option<String>,
        severity: Option<Severity>,
        labels: BTreeMap<String, String>,
        value: Option<f64>,
    },
}

/// A loaded, checked rule, ready to run on its shared engine.
#[derive(Clone)]
pub struct Rule {
    name: Arc<str>,
    path: PathBuf,
    spec: RuleSpec,
    engine: Arc<Engine>,
    /// The script's functions only: top-level code ran once, at load.
    ast: AST,
    has_filter: bool,
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

thread_local! {
    /// The rule whose script runs on this thread, so `print`/`debug` (whose
    /// callbacks Rhai gives no context) can say which rule spoke.
    static CURRENT_RULE: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Marks `name` as the running rule until dropped.
struct Running(Option<Arc<str>>);

impl Running {
    fn enter(name: &Arc<str>) -> Running {
        Running(CURRENT_RULE.with(|c| c.replace(Some(name.clone()))))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        CURRENT_RULE.with(|c| *c.borrow_mut() = self.0.take());
    }
}

fn current_rule() -> Arc<str> {
    CURRENT_RULE.with(|c| c.borrow().clone().unwrap_or_else(|| Arc::from("?")))
}

/// The sandboxed engine every rule of one load shares.
pub fn build_engine(cfg: &RulesConfig) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(cfg.max_operations)
        .set_max_expr_depths(cfg.max_expr_depth, cfg.max_expr_depth)
        .set_max_call_levels(cfg.max_call_depth)
        .set_max_string_size(cfg.max_string_size)
        .set_max_array_size(cfg.max_array_size)
        .set_max_map_size(cfg.max_map_size)
        .set_module_resolver(DummyModuleResolver::new())
        .set_strict_variables(true)
        .disable_symbol("eval")
        .on_print(|text| tracing::info!(rule = %current_rule(), "{text}"))
        .on_debug(
            |text, _source, pos| tracing::debug!(rule = %current_rule(), position = %pos, "{text}"),
        );
    api::register(&mut engine);
    engine
}

/// Loads every `*.rhai` file of `dir`, in name order, reporting every
/// problem of every file.
pub fn load_dir(dir: &Path, cfg: &RulesConfig) -> Result<Vec<Rule>, Vec<RuleError>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![RuleError::start_of(
            dir,
            format!("cannot read rules directory: {e}"),
        )]
    })?;
    let mut paths = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "rhai") && p.is_file() {
                    paths.push(p);
                }
            }
            Err(e) => errors.push(RuleError::start_of(
                dir,
                format!("cannot read rules directory: {e}"),
            )),
        }
    }
    paths.sort();
    let engine = Arc::new(build_engine(cfg));
    let mut rules = Vec::new();
    for path in paths {
        match read_and_load(&engine, &path) {
            Ok(rule) => rules.push(rule),
            Err(mut errs) => errors.append(&mut errs),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// Loads one rule file; its name is the file stem.
pub fn load_file(path: &Path, cfg: &RulesConfig) -> Result<Rule, Vec<RuleError>> {
    read_and_load(&Arc::new(build_engine(cfg)), path)
}

/// Loads a rule from source text; `path` only names it in messages.
pub fn load_source(
    name: &str,
    path: &Path,
    source: &str,
    cfg: &RulesConfig,
) -> Result<Rule, Vec<RuleError>> {
    load_with(&Arc::new(build_engine(cfg)), name, path, source)
}

fn read_and_load(engine: &Arc<Engine>, path: &Path) -> Result<Rule, Vec<RuleError>> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| vec![RuleError::start_of(path, format!("cannot read rule: {e}"))])?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    load_with(engine, &name, path, &source)
}

fn load_with(
    engine: &Arc<Engine>,
    name: &str,
    path: &Path,
    source: &str,
) -> Result<Rule, Vec<RuleError>> {
    let name: Arc<str> = Arc::from(name);
    let (mut ast, renamed_for) =
        compile(engine, source).map_err(|e| vec![RuleError::syntax(path, &e)])?;
    ast.set_source(name.as_ref());

    let mut scope = Scope::new();
    {
        let _running = Running::enter(&name);
        engine
            .run_ast_with_scope(&mut scope, &ast)
            .map_err(|e| vec![RuleError::eval(path, *e)])?;
    }

    let mut errors = Vec::new();
    let rule_pos = errors::locate(source, &[]);
    let spec = match scope.get("RULE") {
        None => {
            errors.push(RuleError::start_of(
                path,
                "missing `const RULE = #{ ... };`",
            ));
            None
        }
        Some(v) => match v.read_lock::<Map>() {
            None => {
                let msg = format!("RULE must be a map, got {}", v.type_name());
                errors.push(RuleError::at(path, rule_pos, msg));
                None
            }
            Some(map) => spec::parse(&restore_for_key(&map, renamed_for))
                .map_err(|problems| {
                    errors.extend(problems.into_iter().map(|p| {
                        let keys: Vec<&str> = p.key.iter().flat_map(|k| k.split('.')).collect();
                        RuleError::at(path, errors::locate(source, &keys), p.message)
                    }))
                })
                .ok(),
        },
    };

    let arity = |fname: &str| {
        ast.iter_functions()
            .filter(|f| f.name == fname)
            .map(|f| f.params.len())
            .collect::<Vec<_>>()
    };
    match arity("check").as_slice() {
        [] => errors.push(RuleError::start_of(path, "missing `fn check(w)`")),
        a if !a.contains(&1) => errors.push(RuleError::start_of(
            path,
            "`check` must take one parameter: `fn check(w)`",
        )),
        _ => {}
    }
    let filter = arity("filter");
    if !filter.is_empty() && !filter.contains(&1) {
        errors.push(RuleError::start_of(
            path,
            "`filter` must take one parameter: `fn filter(e)`",
        ));
    }

    match spec {
        Some(spec) if errors.is_empty() => Ok(Rule {
            name,
            path: path.to_path_buf(),
            spec,
            engine: engine.clone(),
            ast: ast.clone_functions_only(),
            has_filter: !filter.is_empty(),
        }),
        _ => Err(errors),
    }
}

/// Stands in for a `for:` map key, which Rhai rejects because `for` is a
/// keyword although SPEC's `RULE` has one. Same length, so every position
/// in error messages stays true.
const FOR_STAND_IN: &str = "FOR";

/// Compiles `source`, turning each `for:` map key Rhai rejects into
/// [`FOR_STAND_IN`]; the flag says whether any was.
fn compile(engine: &Engine, source: &str) -> Result<(AST, bool), ParseError> {
    let mut src = Cow::Borrowed(source);
    loop {
        let err = match engine.compile(&*src) {
            Ok(ast) => return Ok((ast, matches!(src, Cow::Owned(_)))),
            Err(e) => e,
        };
        match for_key_at(&src, &err) {
            // Each round replaces one `for`, so this ends.
            Some(at) => src.to_mut().replace_range(at..at + 3, FOR_STAND_IN),
            None => return Err(err),
        }
    }
}

/// The byte offset of a `for:` key that `err` complains about, if that is
/// what it is.
fn for_key_at(src: &str, err: &ParseError) -> Option<usize> {
    if *err.err_type() != ParseErrorType::PropertyExpected {
        return None;
    }
    let (line, col) = (err.position().line()?, err.position().position()?);
    let line_start = match line {
        1 => 0,
        n => src.match_indices('\n').nth(n - 2)?.0 + 1,
    };
    let at = line_start
        + src[line_start..]
            .chars()
            .take(col - 1)
            .map(char::len_utf8)
            .sum::<usize>();
    let rest = src[at..].strip_prefix("for")?;
    let colon = rest.trim_start().strip_prefix(':')?;
    (!colon.starts_with(':')).then_some(at)
}

/// `RULE` with the [`FOR_STAND_IN`] key named `for` again.
fn restore_for_key(rule: &Map, renamed: bool) -> Cow<'_, Map> {
    match rule.get(FOR_STAND_IN) {
        Some(v) if renamed => {
            let mut m = rule.clone();
            m.remove(FOR_STAND_IN);
            m.insert("for".into(), v.clone());
            Cow::Owned(m)
        }
        _ => Cow::Borrowed(rule),
    }
}

impl Rule {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }

    /// An empty window of this rule's width.
    pub fn new_window(&self, max_events: usize) -> Window {
        Window::new(self.spec.window_secs, max_events)
    }

    /// Whether `e` enters this rule's windows: its name is in `events`, it
    /// matches `where`, and `filter(e)` (if defined) returns true.
    /// Takes the shared event so `filter` can see it without a copy.
    pub fn accepts(&self, e: &Arc<Event>) -> Result<bool, RunError> {
        if !self.spec.events.contains(&e.event) || !self.spec.where_matches(e) {
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
        Key(self
            .spec
            .group_by
            .iter()
            .map(|f| (f.clone(), e.get(f).map(|v| v.to_text()).unwrap_or_default()))
            .collect())
    }

    /// Runs `check(w)` on one key's window and decodes its answer.
    pub fn check(&self, ctx: CheckCtx<'_>) -> Result<CheckOutcome, RunError> {
        let placeholder = Window::new(ctx.window.width_secs(), ctx.window.max_events());
        let w = WHandle::new(Live {
            window: std::mem::replace(ctx.window, placeholder),
            key: ctx.key.to_map(),
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
                other => {
                    return Err(self.bad_return(format!(
                        "check returned unknown key `{other}` (known: summary, severity, labels, value)"
                    )))
                }
            }
        }
        Ok(CheckOutcome::Firing {
            summary,
            severity,
            labels,
            value,
        })
    }
}

#[cfg(test)]
mod tests;
