use std::path::Path;
use std::sync::Arc;

use rhai::{Dynamic, Map};

use super::*;
use crate::config::RulesConfig;

const OK_RULE: &str = r#"
const RULE = #{
    events: ["not_answer_call", "accept_call"],
    where: #{ role: "callee" },
    group_by: ["sdkappid", "user_id"],
    window: "30m",
};
"#;

fn cfg() -> RulesConfig {
    RulesConfig::default()
}

fn load(source: &str) -> Result<Rule, Vec<RuleError>> {
    load_source("r", Path::new("rules/r.rhai"), source, &cfg())
}

fn rule_with_check(body: &str) -> Rule {
    let src = format!("{OK_RULE}\nfn check(w) {{\n{body}\n}}\n");
    match load(&src) {
        Ok(r) => r,
        Err(e) => panic!("rule should load: {e:?}"),
    }
}

/// The messages of a source that must fail to load.
fn load_errors(source: &str) -> Vec<String> {
    match load(source) {
        Ok(r) => panic!("rule should not load: {r:?}"),
        Err(errs) => errs.iter().map(ToString::to_string).collect(),
    }
}

fn ev(t: i64, name: &str, user: &str) -> Arc<Event> {
    Arc::new(Event {
        sdkappid: 1_400_000_001,
        event: name.into(),
        role: Some("callee".into()),
        user_id: Some(user.into()),
        event_time: t,
        ..Event::default()
    })
}

/// Runs `check` on a window of `events` with `state`.
fn run(rule: &Rule, events: &[Arc<Event>], state: &mut Map) -> Result<CheckOutcome, RunError> {
    let mut w = rule.new_window(10_000);
    for e in events {
        w.push(e.clone());
    }
    let key = events.first().map(|e| rule.key_of(e)).unwrap_or_default();
    let before = w.len();
    let out = rule.check(CheckCtx {
        window: &mut w,
        key: rule.key_view(&key),
        state,
        now: 1_000,
    });
    assert_eq!(w.len(), before, "the window comes back after the call");
    out
}

fn run_err(rule: &Rule) -> RunError {
    match run(rule, &[ev(1, "accept_call", "a")], &mut Map::new()) {
        Ok(o) => panic!("check should fail, got {o:?}"),
        Err(e) => e,
    }
}

fn summary(out: &CheckOutcome) -> Option<&str> {
    match out {
        CheckOutcome::Firing { summary, .. } => summary.as_deref(),
        CheckOutcome::NotFiring => None,
    }
}

// ---- loading ----

#[test]
fn loads_and_parses_rule_spec() {
    let r = load(
        r#"
const RULE = #{
    events: "missed", where: #{ role: ["callee", "caller"], sdkappid: 1400000001 },
    group_by: ["user_id"], window: "1h 30m", severity: "critical", for: "2m",
    repeat: "1h", labels: #{ team: "mobile", tier: 1 }, notify: ["oncall"], resolve: false,
};
fn check(w) { true }
fn filter(e) { e.user_id != "bot" }
"#,
    )
    .expect("loads");
    let s = r.spec();
    assert_eq!(s.events, ["missed"]);
    assert_eq!(s.window_secs, 5400);
    assert_eq!(s.for_secs, 120);
    assert_eq!(s.repeat_secs, Some(3600));
    assert_eq!(s.severity, Severity::Critical);
    assert_eq!(s.labels.get("tier").map(String::as_str), Some("1"));
    assert_eq!(s.notify, ["oncall"]);
    assert!(!s.resolve);
    assert_eq!(r.name(), "r");

    let d = rule_with_check("()");
    assert_eq!(d.spec().severity, Severity::Warning);
    assert_eq!((d.spec().for_secs, d.spec().repeat_secs), (0, None));
    assert!(d.spec().resolve);
}

#[test]
fn syntax_error_has_path_line_col() {
    let errs = load_errors(
        "const RULE = #{ events: \"x\", window: \"1m\" };\nfn check(w) {\n  let x = ;\n}\n",
    );
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("rules/r.rhai:3:11: syntax error: "),
        "{errs:?}"
    );
}

#[test]
fn rule_problems_are_all_reported_with_positions() {
    let errs = load_errors(
        "// comment\nconst RULE = #{\n    events: [\"a\"],\n    windw: \"5m\",\n    severity: \"loud\",\n    for: \"soon\",\n};\nfn check(w) { true }\n",
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("rules/r.rhai:4:5: ") && e.contains("unknown key `windw`")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("rules/r.rhai:2:7: ")
                && e.contains("missing required key `window`")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("rules/r.rhai:5:5: ") && e.contains("\"loud\"")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("rules/r.rhai:6:5: ") && e.contains("bad duration \"soon\"")),
        "{errs:?}"
    );
    assert_eq!(errs.len(), 4, "{errs:?}");
}

#[test]
fn missing_events_window_and_check() {
    let errs = load_errors("const RULE = #{};\n");
    assert!(errs.iter().any(|e| e.contains("`events`")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("`window`")), "{errs:?}");
    assert!(
        errs.iter()
            .any(|e| e == "rules/r.rhai:1:1: missing `fn check(w)`"),
        "{errs:?}"
    );
    let errs = load_errors("fn check(w) { true }\n");
    assert_eq!(errs, ["rules/r.rhai:1:1: missing `const RULE = #{ ... };`"]);
    let errs = load_errors("const RULE = 5;\nfn check(w) { true }\n");
    assert!(
        errs[0].starts_with("rules/r.rhai:1:7: RULE must be a map"),
        "{errs:?}"
    );
}

#[test]
fn bad_values_are_named() {
    let errs = load_errors(
        "const RULE = #{ events: [1], window: \"0s\", where: #{ role: [#{}] }, labels: 3, resolve: \"no\" };\nfn check(w) {}\n",
    );
    for want in [
        "RULE.events",
        "RULE.window: must be longer",
        "RULE.where.role",
        "RULE.labels",
        "RULE.resolve",
    ] {
        assert!(errs.iter().any(|e| e.contains(want)), "{want}: {errs:?}");
    }
}

#[test]
fn import_is_refused() {
    let errs = load_errors(&format!(
        "import \"x\" as x;\n{OK_RULE}\nfn check(w) {{ true }}\n"
    ));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("rules/r.rhai:1:1: import is not allowed in rules"),
        "{errs:?}"
    );
    // Inside a function too: refused at load, not when it first runs.
    let errs = load_errors(&format!(
        "{OK_RULE}\nfn check(w) {{\n    import \"x\" as x;\n    true\n}}\n"
    ));
    assert_eq!(
        errs,
        ["rules/r.rhai:10:5: import is not allowed in rules (rules cannot load modules)"]
    );
}

#[test]
fn eval_is_refused() {
    let errs = load_errors(&format!("{OK_RULE}\nfn check(w) {{ eval(\"1\") }}\n"));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("rules/r.rhai:9:15: eval is not allowed in rules"),
        "{errs:?}"
    );
}

#[test]
fn load_dir_reports_every_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, src: &str| std::fs::write(dir.path().join(name), src).expect("write");
    write("b_ok.rhai", &format!("{OK_RULE}\nfn check(w) {{ true }}\n"));
    write(
        "a_ok.rhai",
        &format!("{OK_RULE}\nfn check(w) {{ false }}\n"),
    );
    write("notes.txt", "not a rule");
    let rules = load_dir(dir.path(), &cfg()).expect("loads");
    let names: Vec<_> = rules.iter().map(Rule::name).collect();
    assert_eq!(names, ["a_ok", "b_ok"]);

    write(
        "c_bad.rhai",
        "const RULE = #{ events: \"x\" };\nfn check(w) {}\n",
    );
    write("d_bad.rhai", "fn check(w) { (( }\n");
    let errs = load_dir(dir.path(), &cfg()).expect_err("fails");
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(errs.len(), 2, "{text:?}");
    assert!(
        text[0].contains("c_bad.rhai:1:7: RULE: missing required key `window`"),
        "{text:?}"
    );
    assert!(text[1].contains("d_bad.rhai:1:"), "{text:?}");

    let file = load_file(&dir.path().join("a_ok.rhai"), &cfg()).expect("loads");
    assert_eq!(file.name(), "a_ok");
    assert!(load_dir(&dir.path().join("nope"), &cfg()).is_err());
}

#[test]
fn top_level_runs_once() {
    // `burn()` costs more than half of the operation budget, so a call
    // that also re-ran the top level (which burns too) would hit the limit.
    let cfg = RulesConfig {
        max_operations: 10_000,
        ..RulesConfig::default()
    };
    let burn = "fn burn() { let i = 0; while i < 1000 { i += 1; } }";
    let rule = |check: &str| {
        let src = format!("{OK_RULE}\n{burn}\nburn();\nfn check(w) {{ {check} }}\n");
        load_source("r", Path::new("r.rhai"), &src, &cfg).expect("loads")
    };
    let evs = [ev(1, "accept_call", "a")];
    let twice = run(&rule("burn(); burn(); true"), &evs, &mut Map::new());
    assert!(twice.is_err(), "two burns must exceed the budget");
    let once = rule("burn(); true");
    for _ in 0..3 {
        assert!(run(&once, &evs, &mut Map::new()).is_ok());
    }
}

// ---- limits and runtime errors ----

#[test]
fn infinite_loop_hits_operation_limit() {
    let e = run_err(&rule_with_check("loop { }"));
    assert!(e.message.contains("too many operations"), "{e}");
    assert_eq!(e.rule, "r");
    let errs = load_errors(&format!("{OK_RULE}\nwhile true {{}}\nfn check(w) {{}}\n"));
    assert!(errs[0].contains("too many operations"), "{errs:?}");
}

#[test]
fn huge_string_hits_size_limit() {
    let e = run_err(&rule_with_check(
        "let s = \"xxxxxxxxxx\"; while s.len() < 100_000_000 { s += s; } true",
    ));
    assert!(e.message.contains("too large"), "{e}");
}

#[test]
fn deep_recursion_is_an_error() {
    let src = format!("{OK_RULE}\nfn down(n) {{ down(n + 1) }}\nfn check(w) {{ down(0) }}\n");
    let r = load(&src).expect("loads");
    let e = run_err(&r);
    assert!(e.message.contains("nested too deeply"), "{e}");
}

#[test]
fn runtime_type_error_has_position() {
    let r = rule_with_check("let n = w.count();\nlet x = n + \"a\" * 2;\nx");
    let e = run_err(&r);
    // `check`'s body starts on line 10 of the generated source.
    assert_eq!(e.position.map(|p| p.0), Some(11), "{e}");
    assert!(e.to_string().starts_with("rules/r.rhai:11:"), "{e}");
}

// ---- check results ----

#[test]
fn check_return_values_decode() {
    let evs = [ev(1, "accept_call", "a")];
    let mut st = Map::new();
    let out = |body: &str, st: &mut Map| run(&rule_with_check(body), &evs, st);
    assert_eq!(out("()", &mut st).expect("ok"), CheckOutcome::NotFiring);
    assert_eq!(out("false", &mut st).expect("ok"), CheckOutcome::NotFiring);
    assert_eq!(
        out("if false { 1 }", &mut st).expect("ok"),
        CheckOutcome::NotFiring
    );
    let fired = out("true", &mut st).expect("ok");
    assert!(matches!(fired, CheckOutcome::Firing { summary: None, .. }));
    assert_eq!(
        summary(&out("`n=${w.count()}`", &mut st).expect("ok")),
        Some("n=1")
    );
    let full = out(
        "#{ summary: \"s\", severity: \"critical\", labels: #{ x: \"y\", n: 2 }, value: 3 }",
        &mut st,
    )
    .expect("ok");
    let mut labels = BTreeMap::new();
    labels.insert("x".to_string(), "y".to_string());
    labels.insert("n".to_string(), "2".to_string());
    assert_eq!(
        full,
        CheckOutcome::Firing {
            summary: Some("s".into()),
            severity: Some(Severity::Critical),
            labels,
            value: Some(3.0),
            annotations: BTreeMap::new(),
            evidence: None,
        }
    );
    let partial = out("#{ value: 0.5 }", &mut st).expect("ok");
    assert!(
        matches!(partial, CheckOutcome::Firing { value: Some(v), summary: None, .. } if v == 0.5)
    );
    for bad in [
        "42",
        "[1]",
        "#{ sumary: \"typo\" }",
        "#{ severity: \"loud\" }",
        "#{ value: \"x\" }",
    ] {
        let e = out(bad, &mut st).expect_err(bad);
        assert!(e.position.is_none());
        assert!(e.message.starts_with("check "), "{bad}: {e}");
    }
}

#[test]
fn accepts_events_where_and_filter() {
    let r = rule_with_check("true");
    assert!(r.accepts(&ev(1, "accept_call", "a")).expect("ok"));
    assert!(!r.accepts(&ev(1, "start_call", "a")).expect("ok"));
    let mut caller = (*ev(1, "accept_call", "a")).clone();
    caller.role = Some("caller".into());
    assert!(!r.accepts(&Arc::new(caller.clone())).expect("ok"));
    caller.role = None;
    let caller = Arc::new(caller);
    assert!(!r.accepts(&caller).expect("ok"), "missing never matches");

    let src = format!("{OK_RULE}\nfn check(w) {{ true }}\nfn filter(e) {{ e.user_id != \"bot\" && e.extra.vip != true && e.total_num == () }}\n");
    let f = load(&src).expect("loads");
    assert!(f.accepts(&ev(1, "accept_call", "a")).expect("ok"));
    assert!(!f.accepts(&ev(1, "accept_call", "bot")).expect("ok"));
    let mut vip = (*ev(1, "accept_call", "a")).clone();
    vip.extra
        .insert("vip".into(), serde_json::Value::Bool(true));
    assert!(!f.accepts(&Arc::new(vip)).expect("ok"));

    let bad = load(&format!(
        "{OK_RULE}\nfn check(w) {{}}\nfn filter(e) {{ 1 }}\n"
    ))
    .expect("loads");
    let e = bad
        .accepts(&ev(1, "accept_call", "a"))
        .expect_err("int is not a bool");
    assert!(
        e.message.contains("filter must return true or false"),
        "{e}"
    );
}

#[test]
fn key_follows_group_by() {
    let r = rule_with_check("true");
    let mut e = (*ev(1, "accept_call", "alice")).clone();
    let k = r.key_of(&e);
    assert_eq!(
        r.key_view(&k).to_string(),
        "sdkappid=1400000001,user_id=alice"
    );
    assert_eq!(r.key_view(&k).get("user_id"), Some("alice"));
    e.user_id = None;
    assert_eq!(r.key_view(&r.key_of(&e)).get("user_id"), Some(""));
}

#[test]
fn w_api_matches_the_window() {
    let r = rule_with_check(
        r#"
        let l = w.last();
        let s = "";
        for x in [
            w.count(), w.count("not_answer_call"), w.count(["not_answer_call", "accept_call"]),
            w.ratio("not_answer_call", ["not_answer_call", "accept_call"]),
            w.ratio(["not_answer_call"], "accept_call"), w.ratio(["accept_call"], ["not_answer_call"]),
            w.ratio("accept_call", "not_answer_call"), w.streak("not_answer_call"), w.streak(["accept_call"]),
            w.distinct("user_id"), w.sum("total_num"), w.avg("total_num"),
            w.min("total_num"), w.max("total_num"), w.percentile("total_num", 50),
            w.percentile("total_num", 99.5), w.sum("ring_secs"),
            w.first().event_time, l.event, l.role, l.call_id, l.extra.k,
            w.events().len(), w.events()[1].total_num, w.key.user_id, w.key.sdkappid, w.now,
        ] { s += `${x}|`; }
        s
        "#,
    );
    let mut evs = Vec::new();
    for (t, name, total) in [
        (10, "accept_call", 4),
        (11, "not_answer_call", 8),
        (12, "not_answer_call", 1),
    ] {
        let mut e = (*ev(t, name, "alice")).clone();
        e.total_num = Some(total);
        e.extra.insert("k".into(), serde_json::Value::from("v"));
        evs.push(Arc::new(e));
    }
    let out = run(&r, &evs, &mut Map::new()).expect("ok");
    assert_eq!(
        summary(&out),
        Some("3|2|3|0.6666666666666666|2.0|0.5|0.5|2|0|1|13.0|4.333333333333333|1.0|8.0|4.0|8.0||10|not_answer_call|callee||v|3|8|alice|1400000001|1000|")
    );
}

#[test]
fn w_errors_are_run_errors() {
    for (body, says) in [
        ("w.count(5)", "got i64"),
        ("w.streak(())", "got ()"),
        ("w.percentile(\"x\", 101)", "between 0 and 100"),
        ("w.ratio([1], \"a\")", "got an array holding a non-string"),
        ("w.ratio(\"a\", 2.5)", "got f64"),
    ] {
        let e = run_err(&rule_with_check(body));
        assert!(e.position.is_some(), "{body}: {e}");
        assert!(e.message.contains(says), "{body}: {e}");
    }
}

#[test]
fn w_state_persists_between_calls() {
    let r = rule_with_check(
        "print(`state ${w.state}`); debug(w.count()); let s = w.state; w.state.calls = (s.calls ?? 0) + 1; w.state[\"last\"] = w.count(); if w.state.calls >= 2 { `${w.state.calls}` }",
    );
    let mut state = Map::new();
    let evs = [ev(1, "accept_call", "a")];
    assert_eq!(
        run(&r, &evs, &mut state).expect("ok"),
        CheckOutcome::NotFiring
    );
    assert_eq!(summary(&run(&r, &evs, &mut state).expect("ok")), Some("2"));
    assert_eq!(state.get("last").and_then(|v| v.as_int().ok()), Some(1));
    let json = map_to_json(&state);
    assert_eq!(json["calls"], 2);
    assert_eq!(
        map_from_json(&json).get("calls").map(Dynamic::to_string),
        Some("2".into())
    );
}

#[test]
fn a_stashed_w_is_dead_after_its_call() {
    let r = rule_with_check("w.state.me = w; w.state.me.count()");
    let mut state = Map::new();
    let evs = [ev(1, "accept_call", "a")];
    run(&r, &evs, &mut state).expect_err("int return");
    let again = rule_with_check("w.state.me.count()");
    let e = run(&again, &evs, &mut state).expect_err("stale w");
    assert!(e.message.contains("only be used during"), "{e}");
}

#[test]
fn spec_example_rule_works() {
    let src = r#"
// A callee who leaves three calls in a row unanswered is probably offline
// without knowing it (stale push token, app killed).
const RULE = #{
    events: ["not_answer_call", "accept_call", "reject_call"], // event names that enter the window
    where: #{ role: "callee" },          // optional: field equals value (or any of an array)
    group_by: ["sdkappid", "user_id"],   // one window per distinct key; [] = one global window
    window: "30m",                       // sliding time window, in event time
    severity: "warning",                 // critical | warning | info
    for: "0s",                           // condition must hold this long before firing
    repeat: "1h",                        // re-notify while firing (default: alerting.repeat)
    labels: #{ team: "mobile" },         // extra labels for routing and display
    notify: ["oncall"],                  // optional: receivers, bypassing routes
};

fn check(w) {
    let n = w.streak("not_answer_call");
    if n >= 3 { `${w.key.user_id} left ${n} calls in a row unanswered` }
}
"#;
    let r = load(src).expect("the documented example loads");
    assert_eq!(r.spec().for_secs, 0);
    assert_eq!(r.spec().repeat_secs, Some(3600));
    let mut evs = vec![
        ev(1, "not_answer_call", "alice"),
        ev(2, "not_answer_call", "alice"),
    ];
    let mut state = Map::new();
    assert_eq!(
        run(&r, &evs, &mut state).expect("ok"),
        CheckOutcome::NotFiring
    );
    evs.push(ev(3, "not_answer_call", "alice"));
    let out = run(&r, &evs, &mut state).expect("ok");
    assert_eq!(
        summary(&out),
        Some("alice left 3 calls in a row unanswered")
    );
    // A bad `for` value is still reported at its own position.
    let errs = load_errors(&src.replace("for: \"0s\"", "for: \"later\""));
    assert!(
        errs[0].starts_with("rules/r.rhai:10:5: RULE.for: bad duration"),
        "{errs:?}"
    );
}
#[test]
fn events_read_like_maps() {
    let r = rule_with_check(
        r#"
        let e = w.last();
        let m = e.to_map();
        let n = 0;
        for x in w.events() { if x.user_id == "a" { n += 1; } }
        w.state.prev = e;
        let s = "";
        for x in [
            type_of(e), e["user_id"], e.nope, "user_id" in e, "nope" in e, e.keys().len(),
            type_of(m), m.user_id, m.extra.k, m.total_num, `${e}`.contains("user_id"), n,
        ] { s += `${x}|`; }
        s
        "#,
    );
    // Far more events than the map and string size limits would allow
    // if every event were a real map.
    let evs: Vec<_> = (0..2000)
        .map(|t| {
            let mut e = (*ev(t, "accept_call", "a")).clone();
            e.extra.insert("k".into(), serde_json::Value::from("v"));
            Arc::new(e)
        })
        .collect();
    let mut state = Map::new();
    let out = run(&r, &evs, &mut state).expect("ok");
    assert_eq!(
        summary(&out),
        Some("Event|a||true|false|20|map|a|v||true|2000|")
    );
    // An event kept in the state persists as its JSON object.
    let json = map_to_json(&state);
    assert_eq!(json["prev"]["user_id"], "a");
    assert_eq!(json["prev"]["extra"]["k"], "v");
}

#[test]
fn rules_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Rule>();
    shareable::<Window>();
    shareable::<CheckOutcome>();
    shareable::<RunError>();
}

const ANNOTATED: &str = r#"
const RULE = #{
    events: ["not_answer_call"],
    group_by: ["user_id"],
    window: "30m",
    labels: #{ team: "mobile" },
    annotations: #{
        description: "{{ labels.user_id }} missed {{ value }} calls ({{ labels.team }})",
        runbook_url: "https://wiki.example.com/missed",
    },
};
fn check(w) {
    #{ value: w.count(), annotations: #{ extra: "from check" }, evidence: [w.last()] }
}
"#;

#[test]
fn annotations_load_and_check_returns_annotations_and_evidence() {
    let rule = load(ANNOTATED).unwrap_or_else(|e| panic!("{e:?}"));
    assert!(!rule.annotations().is_empty());
    let out = run(
        &rule,
        &[
            ev(1, "not_answer_call", "alice"),
            ev(2, "not_answer_call", "alice"),
        ],
        &mut Map::new(),
    )
    .expect("runs");
    let CheckOutcome::Firing {
        annotations,
        evidence,
        ..
    } = out
    else {
        panic!("fires: {out:?}");
    };
    assert_eq!(annotations["extra"], "from check");
    let evidence = evidence.expect("check chose evidence");
    assert_eq!(evidence.len(), 1);
    assert_eq!(evidence[0].event_time, 2);
    assert_eq!(evidence[0].user_id.as_deref(), Some("alice"));
}

#[test]
fn annotation_template_errors_have_path_line_col() {
    // Line 8 of the source (it starts with a newline), at `lables`.
    let bad_name = ANNOTATED.replace("{{ labels.user_id }} missed", "{{ lables.user_id }} missed");
    let errs = load_errors(&bad_name);
    let col = bad_name
        .lines()
        .nth(7)
        .and_then(|l| l.find("lables"))
        .expect("col")
        + 1;
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(&format!(
            "rules/r.rhai:8:{col}: RULE.annotations.description: unknown name `lables`"
        )),
        "{errs:?}"
    );
    let unknown_label = ANNOTATED.replace("labels.team", "labels.platform");
    let errs = load_errors(&unknown_label);
    assert!(errs[0].contains("unknown label `platform`"), "{errs:?}");
    assert!(errs[0].starts_with("rules/r.rhai:8:"), "{errs:?}");
    let syntax = ANNOTATED.replace("({{ labels.team }})", "({{ labels.team )");
    let errs = load_errors(&syntax);
    assert!(errs[0].starts_with("rules/r.rhai:8:"), "{errs:?}");
    assert!(errs[0].contains("syntax error"), "{errs:?}");
    let not_text = ANNOTATED.replace("\"https://wiki.example.com/missed\"", "3");
    let errs = load_errors(&not_text);
    assert!(
        errs[0].contains("RULE.annotations.runbook_url: expected a string"),
        "{errs:?}"
    );
}
