//! Errors of loading ([`RuleError`], always `path:line:col: message`) and
//! of running ([`RunError`]) rules, and turning Rhai's errors into them
//! with the position of the fault.

use std::fmt;
use std::path::{Path, PathBuf};

use rhai::{EvalAltResult, LexError, ParseError, ParseErrorType, Position};

/// A problem that keeps a rule from loading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{col}: {message}", path.display())]
pub struct RuleError {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// A failure of one `filter` or `check` call: a script error, a limit hit
/// or a return value of the wrong shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RunError {
    pub rule: String,
    pub path: PathBuf,
    /// `(line, col)` in the rule file, when Rhai knows it.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.path.display(), self.message)
            }
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

fn line_col(pos: Position) -> Option<(usize, usize)> {
    Some((pos.line()?, pos.position().unwrap_or(1)))
}

impl RuleError {
    pub(crate) fn at(path: &Path, (line, col): (usize, usize), message: impl Into<String>) -> Self {
        RuleError {
            path: path.to_path_buf(),
            line,
            col,
            message: message.into(),
        }
    }

    /// A problem of the whole file (or directory), reported at `1:1`.
    pub(crate) fn start_of(path: &Path, message: impl Into<String>) -> Self {
        Self::at(path, (1, 1), message)
    }

    pub(crate) fn syntax(path: &Path, e: &ParseError) -> Self {
        let pos = line_col(e.position()).unwrap_or((1, 1));
        Self::at(path, pos, syntax_message(e.err_type()))
    }

    /// A failure while running the top-level code at load.
    pub(crate) fn eval(path: &Path, e: EvalAltResult) -> Self {
        let (pos, message) = describe(e);
        Self::at(path, pos.unwrap_or((1, 1)), message)
    }
}

impl RunError {
    pub(crate) fn from_eval(rule: &str, path: &Path, e: EvalAltResult) -> Self {
        let (position, message) = describe(e);
        RunError {
            rule: rule.to_string(),
            path: path.to_path_buf(),
            position,
            message,
        }
    }
}

/// The innermost error (where the fault is, not where the failing function
/// was called), its position, and a lowercase message naming the limit
/// when one was hit.
fn describe(mut e: EvalAltResult) -> (Option<(usize, usize)>, String) {
    while let EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
    | EvalAltResult::ErrorInModule(_, inner, _) = e
    {
        e = *inner;
    }
    let pos = line_col(e.take_position());
    let message = match &e {
        EvalAltResult::ErrorTooManyOperations(_) => {
            "too many operations (limit: rules.max_operations)".to_string()
        }
        EvalAltResult::ErrorStackOverflow(_) => {
            "function calls nested too deeply (limit: rules.max_call_depth)".to_string()
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => format!(
            "{} too large (limits: rules.max_string_size, max_array_size, max_map_size)",
            lowercase_first(what)
        ),
        EvalAltResult::ErrorModuleNotFound(module, _) => {
            format!("import is not allowed in rules (module {module:?})")
        }
        other => lowercase_first(&other.to_string()),
    };
    (pos, message)
}

/// The message of a parse error; the sandbox's refused keywords (the
/// engine disables them, so the parser meets them as reserved words) get
/// a message saying why rather than "reserved keyword".
fn syntax_message(t: &ParseErrorType) -> String {
    let refused = match t {
        ParseErrorType::Reserved(word) => Some(word.as_str()),
        ParseErrorType::BadInput(LexError::ImproperSymbol(word, _)) => Some(word.as_str()),
        _ => None,
    };
    match refused {
        Some("import") => "import is not allowed in rules (rules cannot load modules)".into(),
        Some("eval") => {
            "eval is not allowed in rules (rules cannot run code built at run time)".into()
        }
        _ => format!("syntax error: {}", lowercase_first(&t.to_string())),
    }
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Best-effort position of `const RULE` and, within it, of the dotted key
/// path `keys` (e.g. `["where", "role"]`), found by searching the text:
/// Rhai keeps no positions for map literal keys. Falls back to the nearest
/// found ancestor, then to `1:1`.
pub(crate) fn locate(source: &str, keys: &[&str]) -> (usize, usize) {
    let Some(mut at) = find_rule_decl(source) else {
        return (1, 1);
    };
    for key in keys {
        match find_key(source, at, key) {
            Some(i) => at = i,
            None => break,
        }
    }
    offset_to_line_col(source, at)
}

/// Best-effort position of byte `offset` inside the string literal that is
/// the value of the dotted key path `keys` in `RULE` (e.g. a fault in the
/// template `RULE.annotations.description`). `text` is the string's value:
/// when the literal spells it without escapes the position is exact, else
/// it is the literal's opening quote, else the key's position.
pub(crate) fn locate_in_string(
    source: &str,
    keys: &[&str],
    offset: Option<usize>,
    text: &str,
) -> (usize, usize) {
    let Some(mut at) = find_rule_decl(source) else {
        return (1, 1);
    };
    for key in keys {
        match find_key(source, at, key) {
            Some(i) => at = i,
            None => return offset_to_line_col(source, at),
        }
    }
    let after_key = &source[at..];
    let Some(quote) = after_key
        .find(':')
        .and_then(|c| after_key[c..].find(['"', '`']).map(|q| at + c + q))
    else {
        return offset_to_line_col(source, at);
    };
    let inner = quote + 1;
    let at = match offset {
        Some(o) if text.is_char_boundary(o.min(text.len())) => {
            let o = o.min(text.len());
            let prefix = &text[..o];
            if source[inner..].starts_with(prefix) {
                inner + o
            } else {
                quote
            }
        }
        _ => quote,
    };
    offset_to_line_col(source, at)
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn find_rule_decl(source: &str) -> Option<usize> {
    source.match_indices("RULE").map(|(i, _)| i).find(|&i| {
        let before = source[..i].trim_end();
        let after_ok = !source[i + 4..].starts_with(is_ident);
        after_ok && (before.ends_with("const") || before.ends_with("let"))
    })
}

/// The next `key:` or `"key":` at or after `from`.
fn find_key(source: &str, from: usize, key: &str) -> Option<usize> {
    let rest = &source[from..];
    rest.match_indices(key).map(|(i, _)| from + i).find(|&i| {
        let before = source[..i].chars().next_back();
        let (quoted, before_ok) = match before {
            Some('"') => (true, true),
            Some(c) => (false, !is_ident(c)),
            None => (false, true),
        };
        let mut after = &source[i + key.len()..];
        if quoted {
            let Some(a) = after.strip_prefix('"') else {
                return false;
            };
            after = a;
        }
        before_ok && !after.starts_with(is_ident) && after.trim_start().starts_with(':')
    })
}

fn offset_to_line_col(source: &str, offset: usize) -> (usize, usize) {
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}
