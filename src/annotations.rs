//! `RULE.annotations`: the per-rule map of `{{ … }}` templates (minijinja)
//! that becomes an alert's `annotations`. It owns compiling them, checking
//! at load that they name only what an alert has (so a template can never
//! break a message at send time), and rendering them for one alert. Where
//! a template sits in the rule file is the rule loader's business; what an
//! alert is, is `alert`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// The names a template may use; `labels` is read as `labels.NAME`.
pub const NAMES: &[&str] = &[
    "labels",
    "value",
    "summary",
    "rule",
    "severity",
    "starts_at",
];

/// What minijinja provides that a template may use.
const GLOBALS: &[&str] = &["range", "dict", "namespace", "loop"];

/// A problem with one annotation template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// The annotation's name (`description`, `runbook_url`…).
    pub name: String,
    /// Byte offset of the fault within the template text, when known.
    pub offset: Option<usize>,
    pub message: String,
}

/// What a template sees of one alert.
#[derive(Debug, Serialize)]
pub struct TemplateContext<'a> {
    pub labels: &'a BTreeMap<String, String>,
    /// The check's value, or none.
    pub value: &'a serde_json::Value,
    pub summary: &'a str,
    pub rule: &'a str,
    pub severity: &'a str,
    /// RFC 3339, UTC.
    pub starts_at: &'a str,
}

/// A rule's compiled annotation templates.
pub struct Annotations {
    env: Environment<'static>,
    /// Annotation names, in order.
    names: Vec<String>,
    /// The sources, shown instead of a render that fails anyway.
    sources: BTreeMap<String, String>,
    /// Whether a failed render was logged: a firing alert is rebuilt on
    /// every evaluation, and one warning says all there is to say.
    warned: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Annotations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.sources.iter()).finish()
    }
}

impl Default for Annotations {
    fn default() -> Annotations {
        Annotations {
            env: environment(),
            names: Vec::new(),
            sources: BTreeMap::new(),
            warned: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // An undefined name is an error, not an empty string: a message that
    // silently lost its details is worse than one refused at load.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Annotations are plain text; receivers escape them for their markup.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

impl Annotations {
    /// Compiles `templates` (name → source) and checks that each parses,
    /// names only [`NAMES`] (labels only among `known_labels`), and renders
    /// against a sample alert. Every problem is reported.
    pub fn compile(
        templates: &BTreeMap<String, String>,
        known_labels: &BTreeSet<String>,
    ) -> Result<Annotations, Vec<TemplateError>> {
        let mut out = Annotations::default();
        let mut errors = Vec::new();
        for (name, source) in templates {
            let fail = |offset, message: String| TemplateError {
                name: name.clone(),
                offset,
                message: format!("RULE.annotations.{name}: {message}"),
            };
            if let Err(e) = out.env.add_template_owned(name.clone(), source.clone()) {
                errors.push(fail(e.range().map(|r| r.start), describe(&e)));
                continue;
            }
            let problems = out.check_names(name, source, known_labels);
            if !problems.is_empty() {
                errors.extend(problems.into_iter().map(|(at, m)| fail(at, m)));
                continue;
            }
            if let Err(e) = out.probe(name, known_labels) {
                errors.push(fail(e.range().map(|r| r.start), describe(&e)));
                continue;
            }
            out.names.push(name.clone());
            out.sources.insert(name.clone(), source.clone());
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Every name the template reads must be one an alert has.
    fn check_names(
        &self,
        name: &str,
        source: &str,
        known_labels: &BTreeSet<String>,
    ) -> Vec<(Option<usize>, String)> {
        let Ok(template) = self.env.get_template(name) else {
            return Vec::new();
        };
        let mut used: Vec<String> = template.undeclared_variables(true).into_iter().collect();
        used.sort();
        let mut problems = Vec::new();
        for var in used {
            let mut parts = var.splitn(3, '.');
            let top = parts.next().unwrap_or_default();
            let at = find_in_tags(source, top);
            if !NAMES.contains(&top) && !GLOBALS.contains(&top) {
                problems.push((
                    at,
                    format!(
                        "unknown name `{top}` in template (known: labels.NAME, value, summary, \
                         rule, severity, starts_at)"
                    ),
                ));
                continue;
            }
            if top != "labels" {
                continue;
            }
            if let Some(label) = parts.next() {
                if !known_labels.contains(label) {
                    let known: Vec<&str> = known_labels.iter().map(String::as_str).collect();
                    problems.push((
                        find_in_tags(source, &format!("labels.{label}")).or(at),
                        format!(
                            "unknown label `{label}` in template (known: {}); a label that \
                             only check adds is unknown at load: return annotations from \
                             check instead",
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        problems
    }

    /// Renders `name` once against a sample alert, to find what parsing
    /// cannot (an unknown filter, a bad call).
    fn probe(&self, name: &str, known_labels: &BTreeSet<String>) -> Result<(), minijinja::Error> {
        let labels: BTreeMap<String, String> = known_labels
            .iter()
            .map(|l| (l.clone(), "x".to_string()))
            .collect();
        let ctx = TemplateContext {
            labels: &labels,
            value: &serde_json::json!(1.5),
            summary: "summary",
            rule: "rule",
            severity: "warning",
            starts_at: "2026-01-01T00:00:00Z",
        };
        self.render_one(name, &ctx).map(|_| ())
    }

    fn render_one(
        &self,
        name: &str,
        ctx: &TemplateContext<'_>,
    ) -> Result<String, minijinja::Error> {
        let template = self.env.get_template(name)?;
        template.render(minijinja::Value::from(minijinja::value::Serde(ctx)))
    }

    /// The rendered annotations of one alert. A template that fails at run
    /// time anyway (a filter given a value it cannot take) shows its
    /// source, so the message still goes out and says what was meant.
    pub fn render(&self, ctx: &TemplateContext<'_>) -> BTreeMap<String, String> {
        self.names
            .iter()
            .map(|name| {
                let text = self.render_one(name, ctx).unwrap_or_else(|e| {
                    let first = !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed);
                    if first {
                        tracing::warn!(rule = %ctx.rule, annotation = %name, error = %describe(&e), "annotation template failed; showing its source");
                    }
                    self.sources.get(name).cloned().unwrap_or_default()
                });
                (name.clone(), text)
            })
            .collect()
    }
}

/// Byte offset of `name` where a template reads it: inside `{{ }}` or
/// `{% %}` and not part of a longer name; else its first occurrence.
fn find_in_tags(source: &str, name: &str) -> Option<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let in_tag = |at: usize| {
        let before = &source[..at];
        let open = before.rfind("{{").max(before.rfind("{%"));
        let close = before.rfind("}}").max(before.rfind("%}"));
        open.is_some() && open > close
    };
    source
        .match_indices(name)
        .map(|(i, _)| i)
        .find(|&i| {
            let whole = !source[..i].ends_with(|c: char| ident(c) || c == '.')
                && !source[i + name.len()..].starts_with(ident);
            whole && in_tag(i)
        })
        .or_else(|| source.find(name))
}

/// minijinja's message without the template name it prefixes.
fn describe(e: &minijinja::Error) -> String {
    let kind = e.kind().to_string();
    match e.detail() {
        Some(d) => format!("{kind}: {d}"),
        None => kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn templates(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_labels_and_value() {
        let a = Annotations::compile(
            &templates(&[("description", "{{ labels.user_id }}: {{ value }} in a row")]),
            &labels(&["user_id", "rule", "severity"]),
        )
        .expect("compiles");
        let l = BTreeMap::from([("user_id".to_string(), "alice".to_string())]);
        let out = a.render(&TemplateContext {
            labels: &l,
            value: &serde_json::json!(3),
            summary: "s",
            rule: "r",
            severity: "warning",
            starts_at: "t",
        });
        assert_eq!(out["description"], "alice: 3 in a row");
    }

    #[test]
    fn unknown_names_and_syntax_errors_are_load_errors() {
        let known = labels(&["user_id", "rule", "severity"]);
        let errs = Annotations::compile(&templates(&[("d", "ok {{ lables.x }}")]), &known)
            .expect_err("unknown name");
        assert!(
            errs[0].message.contains("unknown name `lables`"),
            "{errs:?}"
        );
        assert_eq!(errs[0].offset, Some(6));
        // The name where the template reads it, not in the text before.
        let errs = Annotations::compile(&templates(&[("d", "the user is {{ user }}")]), &known)
            .expect_err("unknown name");
        assert_eq!(errs[0].offset, Some(15), "{errs:?}");
        let errs = Annotations::compile(&templates(&[("d", "{{ labels.platform }}")]), &known)
            .expect_err("unknown label");
        assert!(
            errs[0].message.contains("unknown label `platform`"),
            "{errs:?}"
        );
        let errs =
            Annotations::compile(&templates(&[("d", "a {{ value ")]), &known).expect_err("syntax");
        assert!(errs[0].message.contains("syntax error"), "{errs:?}");
        assert!(errs[0].offset.is_some(), "{errs:?}");
        let errs = Annotations::compile(&templates(&[("d", "{{ value | nope }}")]), &known)
            .expect_err("unknown filter");
        assert!(errs[0].message.contains("nope"), "{errs:?}");
    }
}
