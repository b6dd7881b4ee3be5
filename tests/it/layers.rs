//! The shape of `src/`, checked from the source text: no import circle
//! between the crate's top-level modules, and a core that does no I/O,
//! never reads the clock and imports nothing above it (ARCHITECTURE.md,
//! "Layers"). Reads the files only; it needs nothing running.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The pure core: decisions only, time passed in. (`timeline`, `engine`
/// and `rules` are pure too but drive the engine and read the monotonic
/// clock for the CPU budget: ARCHITECTURE.md's "evaluation" layer.)
const CORE: &[&str] = &["alert", "annotations", "event", "quiet", "time", "window"];

/// What the core must not name: I/O, threads, the network, the store,
/// HTTP, and the clock (the `time` module's formatting is pure; its clock
/// readers are not).
const NOT_IN_CORE: &[&str] = &[
    "std::fs",
    "std::net",
    "std::thread",
    "std::process",
    "tokio",
    "reqwest",
    "lettre",
    "rusqlite",
    "warp",
    "hyper",
    "Instant::now",
    "SystemTime::now",
    "now_ms(",
    "now_secs(",
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`src/notify/outbox.rs` →
/// `notify`); `None` for the crate root and the binary.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.as_str() {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// Unit-test files (`tests.rs`, `*_tests.rs`): tests may reach anywhere.
fn is_test_file(file: &Path) -> bool {
    file.file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|s| s == "tests" || s.ends_with("_tests"))
}

/// A file's text up to its `#[cfg(test)]` module, which by the crate's
/// habit comes last.
fn without_tests(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// The source without comments and string literals, so a path named in a
/// doc comment or an error message is not an import.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
            // A raw string's hashes are left in place; its body is skipped
            // like any string's.
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The top-level modules a file's code names through `crate::` (also in
/// `use crate::{a, b::c}` groups).
fn crate_refs(code: &str) -> BTreeSet<String> {
    path_refs(code, "crate::")
}

/// The names that follow `prefix` in a file's code (also in groups).
fn path_refs(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        // `callwatch::crate::` cannot occur; `$crate::` (macros) is ours too.
        rest = &rest[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in top_level_items(&group[..end]) {
                if let Some(m) = ident_prefix(item.trim()) {
                    refs.insert(m);
                }
            }
        } else if let Some(m) = ident_prefix(rest) {
            refs.insert(m);
        }
    }
    refs
}

fn matching_brace(s: &str) -> usize {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    s.len()
}

/// `a::{b, c}, d` → [`a::{b, c}`, `d`].
fn top_level_items(s: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&s[start..]);
    items
}

fn ident_prefix(s: &str) -> Option<String> {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| s[..end].to_string())
}

/// `pub use daemon as app;` and `pub use daemon::reload;` in lib.rs:
/// an old name for a module now elsewhere counts as that module.
fn aliases(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(path) = line
            .trim()
            .strip_prefix("pub use ")
            .and_then(|l| l.strip_suffix(';'))
        else {
            continue;
        };
        let (path, name) = match path.split_once(" as ") {
            Some((p, n)) => (p.trim(), n.trim().to_string()),
            None => (path, path.rsplit("::").next().unwrap_or(path).to_string()),
        };
        let target = path.trim_start_matches("crate::");
        let top = target.split("::").next().unwrap_or(target).to_string();
        out.insert(name, top);
    }
    out
}

/// Top-level module → the top-level modules it names.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = src_dir();
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("reading src/lib.rs");
    let alias = aliases(&lib);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(from) = top_module(&src, &file) else {
            continue;
        };
        if is_test_file(&file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("reading a source file");
        let deps = graph.entry(from.clone()).or_default();
        for to in crate_refs(&code_only(without_tests(&text))) {
            let to = alias.get(&to).cloned().unwrap_or(to);
            if to != from {
                deps.insert(to);
            }
        }
    }
    graph
}

/// A circle in `graph`, as the modules along it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut cycle = path[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, done, path) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

#[test]
fn no_import_circle_between_top_level_modules() {
    let graph = module_graph();
    assert!(graph.contains_key("daemon") && graph.contains_key("engine"));
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import circle in src/: {}", cycle.join(" -> "));
    }
}

/// The modules of `src/ingest/` (its files and folders, `mod.rs` aside)
/// → the sibling modules each names, through `super::` from a file
/// directly in `ingest/`, `super::super::` from one a level deeper, or
/// `crate::ingest::`. A child reaching its parent is not an edge.
fn ingest_graph() -> BTreeMap<String, BTreeSet<String>> {
    let dir = src_dir().join("ingest");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let module_of = |f: &Path| -> Option<(String, usize)> {
        let rel = f.strip_prefix(&dir).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?;
        let depth = rel.components().count();
        (first != "mod.rs").then(|| (first.trim_end_matches(".rs").to_string(), depth))
    };
    let names: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_of(f))
        .map(|m| m.0)
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some((from, depth)) = module_of(file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).expect("reading a source file");
        let code = code_only(without_tests(&text));
        let parent = if depth == 1 || file.ends_with("mod.rs") {
            "super::"
        } else {
            "super::super::"
        };
        let deps = graph.entry(from.clone()).or_default();
        for to in path_refs(&code, parent)
            .into_iter()
            .chain(path_refs(&code, "crate::ingest::"))
        {
            if to != from && names.contains(&to) {
                deps.insert(to);
            }
        }
    }
    graph
}

#[test]
fn no_import_circle_between_the_modules_of_ingest() {
    let graph = ingest_graph();
    assert!(graph.contains_key("decode") && graph.contains_key("line"));
    assert!(graph["line"].contains("decode"), "{graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import circle in src/ingest/: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_circle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let edge = |g: &mut BTreeMap<String, BTreeSet<String>>, a: &str, b: &str| {
        g.entry(a.into()).or_default().insert(b.into());
    };
    edge(&mut g, "api", "daemon");
    edge(&mut g, "daemon", "engine");
    assert_eq!(find_cycle(&g), None);
    edge(&mut g, "engine", "api");
    let cycle = find_cycle(&g).expect("a circle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4, "{cycle:?}");
    let code = code_only(
        "use crate::{alert::Alert, engine::{A, B}};\n// crate::api\nlet s = \"crate::x\";",
    );
    let refs: Vec<String> = crate_refs(&code).into_iter().collect();
    assert_eq!(refs, ["alert", "engine"]);
}

#[test]
fn the_core_does_no_io_reads_no_clock_and_imports_nothing_above_it() {
    let src = src_dir();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in &files {
        let Some(module) = top_module(&src, file) else {
            continue;
        };
        if !CORE.contains(&module.as_str()) || is_test_file(file) {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("reading a source file");
        // Unit tests may use what they like.
        let code = code_only(without_tests(&text));
        let rel = file
            .strip_prefix(&src)
            .unwrap_or(file)
            .display()
            .to_string();
        for bad in NOT_IN_CORE {
            if module == "time" && matches!(*bad, "SystemTime::now" | "now_ms(" | "now_secs(") {
                // The one place the clock is read, by the daemon's parts.
                continue;
            }
            if code.contains(bad) {
                problems.push(format!("src/{rel} names {bad}"));
            }
        }
        for to in crate_refs(&code) {
            if !CORE.contains(&to.as_str()) && to != module {
                problems.push(format!("src/{rel} imports crate::{to}, which is not core"));
            }
        }
        if module != "time" && (code.contains("time::now_") || code.contains("time::{now")) {
            problems.push(format!("src/{rel} reads the clock"));
        }
    }
    assert!(
        problems.is_empty(),
        "the core ({}) must stay pure:\n{}",
        CORE.join(", "),
        problems.join("\n")
    );
}
