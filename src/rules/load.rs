//! Reading rule files: compiling, running the top level once, checking
//! `const RULE` and the `check`/`filter` functions, and reporting every
//! problem as `path:line:col: message`. Running rules is `Rule`'s business.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use rhai::{Engine, Map, ParseError, ParseErrorType, Scope, AST};

use super::sandbox::{build_engine, Running};
use super::{errors, spec, Rule, RuleError};
use crate::annotations::{Annotations, TemplateError};
use crate::config::RulesConfig;

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

/// [`load_source`] on an engine the caller built with [`build_engine`]
/// and then adjusted (a backtest adds its budget as a progress hook).
pub fn load_source_on(
    engine: Engine,
    name: &str,
    path: &Path,
    source: &str,
) -> Result<Rule, Vec<RuleError>> {
    load_with(&Arc::new(engine), name, path, source)
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
    let mut warnings = Vec::new();
    let rule_pos = errors::locate(source, &[]);
    // Where a problem sits: its key in `RULE`, and the quoted value at
    // fault inside it when there is one.
    let at = |p: &spec::SpecProblem| {
        let keys: Vec<&str> = p.key.iter().flat_map(|k| k.split('.')).collect();
        errors::locate_value(source, &keys, p.value.as_deref())
    };
    let spec =
        match scope.get("RULE") {
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
                Some(map) => match spec::parse(&restore_for_key(&map, renamed_for)) {
                    Ok(parsed) => {
                        warnings.extend(parsed.warnings.iter().map(|p| {
                            RuleError::at(path, at(p), format!("warning: {}", p.message))
                        }));
                        Some(parsed.spec)
                    }
                    Err(problems) => {
                        errors.extend(
                            problems
                                .iter()
                                .map(|p| RuleError::at(path, at(p), p.message.clone())),
                        );
                        None
                    }
                },
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

    let annotations = spec
        .as_ref()
        .map(|spec| {
            compile_annotations(spec).unwrap_or_else(|problems| {
                errors.extend(problems.into_iter().map(|p| {
                    let at = errors::locate_in_string(
                        source,
                        &["annotations", &p.name],
                        p.offset,
                        spec.annotations.get(&p.name).map_or("", String::as_str),
                    );
                    RuleError::at(path, at, p.message)
                }));
                Annotations::default()
            })
        })
        .unwrap_or_default();

    match spec {
        Some(spec) if errors.is_empty() => Ok(Rule {
            name,
            path: path.to_path_buf(),
            group_by: spec.group_by.as_slice().into(),
            spec,
            engine: engine.clone(),
            ast: ast.clone_functions_only(),
            has_filter: !filter.is_empty(),
            source_digest: digest(source),
            annotations: Arc::new(annotations),
            warnings,
        }),
        _ => Err(errors),
    }
}

/// Compiles `RULE.annotations`; a template may read the labels every
/// alert of the rule has: its key fields, `RULE.labels`, `rule`, `severity`.
fn compile_annotations(spec: &spec::RuleSpec) -> Result<Annotations, Vec<TemplateError>> {
    if spec.annotations.is_empty() {
        return Ok(Annotations::default());
    }
    let known: BTreeSet<String> = spec
        .group_by
        .iter()
        .chain(spec.labels.keys())
        .cloned()
        .chain(["rule".to_string(), "severity".to_string()])
        .collect();
    Annotations::compile(&spec.annotations, &known)
}

/// Stands in for a `for:` map key, which Rhai rejects because `for` is a
/// keyword although the documented `RULE` has one. Same length, so every position
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

/// SHA-256 of a rule's source: a reload keeps the windows and alert states
/// of rules whose digest did not change.
fn digest(source: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(source.as_bytes()))
}
