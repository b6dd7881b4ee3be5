//! Tests that mistakes in rules are errors, never silence: misspelt event
//! and field names, impossible `where` values and bad durations stop the
//! load with `path:line:col` and a suggestion; unknown field reads and
//! number-to-string comparisons fail the call that makes them.

use std::path::Path;
use std::sync::Arc;

use rhai::Map;

use super::*;
use crate::config::RulesConfig;

fn load(source: &str) -> Result<Rule, Vec<RuleError>> {
    load_source(
        "r",
        Path::new("rules/r.rhai"),
        source,
        &RulesConfig::default(),
    )
}

/// The single error of a rule that must not load.
fn only_error(source: &str) -> String {
    match load(source) {
        Ok(r) => panic!("rule should not load: {r:?}"),
        Err(errs) => {
            assert_eq!(errs.len(), 1, "{errs:?}");
            errs[0].to_string()
        }
    }
}

/// A rule with `spec` as the inside of `RULE` (starting on line 2) and
/// `functions` after it.
fn rule(spec: &str, functions: &str) -> String {
    format!("const RULE = #{{\n{spec}\n}};\n{functions}\nfn check(w) {{ true }}\n")
}

fn event(platform: &str) -> Arc<Event> {
    Arc::new(Event {
        sdkappid: 1_400_000_001,
        platform: Some(platform.into()),
        event: "call_end".into(),
        role: Some("caller".into()),
        event_time: 10,
        accept_ts: Some(3),
        end_ts: Some(9),
        ..Event::default()
    })
}

/// Runs `check` with `body` over a window holding one event.
fn check_with(body: &str) -> Result<CheckOutcome, RunError> {
    let src = format!(
        "const RULE = #{{ events: [\"call_end\"], window: \"1h\" }};\nfn check(w) {{\n{body}\n}}\n"
    );
    let r = load(&src).expect("loads");
    let mut w = r.new_window(100);
    w.push(event("iOS"));
    let key = Key::default();
    r.check(CheckCtx {
        window: &mut w,
        key: r.key_view(&key),
        state: &mut Map::new(),
        now: 10,
    })
}

// ---- at load ----

#[test]
fn misspelt_event_name_is_an_error_with_a_suggestion() {
    let err = only_error(&rule(
        "    events: [\"start_call\", \"call_rejectd\"],\n    window: \"5m\",",
        "",
    ));
    assert_eq!(
        err,
        "rules/r.rhai:2:28: unknown event \"call_rejectd\" (did you mean \"call_rejected\"?)"
    );
    // A command with its role prefix never is an event's name.
    let err = only_error(&rule(
        "    events: \"callee_reject_call\",\n    window: \"5m\",",
        "",
    ));
    assert!(
        err.starts_with("rules/r.rhai:2:13: unknown event \"callee_reject_call\": events are named without the role prefix (did you mean \"reject_call\"?"),
        "{err}"
    );
}

#[test]
fn misspelt_where_field_is_an_error_with_a_suggestion() {
    let err = only_error(&rule(
        "    events: [\"call_end\"],\n    where: #{ platfrom: \"Web\" },\n    window: \"5m\",",
        "",
    ));
    assert_eq!(
        err,
        "rules/r.rhai:3:15: unknown field \"platfrom\" (did you mean \"platform\"?)"
    );
}

#[test]
fn misspelt_group_by_field_is_an_error_with_a_suggestion() {
    let err = only_error(&rule(
        "    events: [\"call_end\"],\n    group_by: [\"sdkappid\", \"platfrom\"],\n    window: \"5m\",",
        "",
    ));
    assert_eq!(
        err,
        "rules/r.rhai:3:28: unknown field \"platfrom\" (did you mean \"platform\"?)"
    );
}

#[test]
fn extra_fields_are_named_with_their_prefix() {
    let src = rule(
        "    events: [\"call_end\"],\n    where: #{ \"extra.Region\": \"eu\" },\n    group_by: [\"extra.Region\"],\n    window: \"5m\",",
        "",
    );
    let r = load(&src).expect("extra.NAME is a field");
    let mut e = (*event("iOS")).clone();
    e.extra
        .insert("Region".into(), serde_json::Value::from("eu"));
    let e = Arc::new(e);
    assert!(r.accepts(&e).expect("ok"));
    assert_eq!(r.key_view(&r.key_of(&e)).to_string(), "extra.Region=eu");
    // A body field without the prefix is no field.
    let err = only_error(&rule(
        "    events: [\"call_end\"],\n    group_by: [\"Region\"],\n    window: \"5m\",",
        "",
    ));
    assert!(
        err.starts_with("rules/r.rhai:3:16: unknown field \"Region\" (fields: sdkappid, ")
            && err.ends_with("; other body fields are extra.NAME)"),
        "{err}"
    );
}

#[test]
fn where_value_outside_an_enumerated_field_lists_its_values() {
    let err = only_error(&rule(
        "    events: [\"call_end\"],\n    where: #{ role: [\"caller\", \"Calee\"] },\n    window: \"5m\",",
        "",
    ));
    assert_eq!(
        err,
        "rules/r.rhai:3:32: role is never \"Calee\" (did you mean \"callee\"?) (values: \"caller\", \"callee\")"
    );
    for (field, bad, listed) in [
        ("media_type", "vdeo", "\"audio\", \"video\""),
        ("call_type", "multi", "\"single\", \"group\""),
        ("call_result", "normal", "\"normal_end\""),
        ("event", "call_ended", "\"call_end\""),
    ] {
        let err = only_error(&rule(
            &format!("    events: [\"call_end\"],\n    where: #{{ {field}: \"{bad}\" }},\n    window: \"5m\","),
            "",
        ));
        assert!(
            err.contains(&format!("{field} is never \"{bad}\"")) && err.contains(listed),
            "{err}"
        );
    }
}

#[test]
fn platform_matches_in_any_case() {
    let src = rule(
        "    events: [\"call_end\"],\n    where: #{ platform: \"web\" },\n    window: \"5m\",",
        "",
    );
    let r = load(&src).expect("loads");
    assert!(r.warnings().is_empty(), "{:?}", r.warnings());
    assert!(r.accepts(&event("Web")).expect("ok"), "\"web\" matches Web");
    assert!(r.accepts(&event("web")).expect("ok"));
    assert!(!r.accepts(&event("iOS")).expect("ok"));
}

#[test]
fn unknown_platform_is_a_warning_not_an_error() {
    let src = rule(
        "    events: [\"call_end\"],\n    where: #{ platform: [\"iOS\", \"Andriod\"] },\n    window: \"5m\",",
        "",
    );
    let r = load(&src).expect("an unknown platform still loads");
    let warnings: Vec<String> = r.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "rules/r.rhai:3:33: warning: \"Andriod\" is no known platform (did you mean \"Android\"?) (known: iOS, Android, Web, miniProgram, Flutter, uni-app, Windows, Mac)"
        ),
        "{warnings:?}"
    );
    assert!(r.accepts(&event("Andriod")).expect("ok"), "kept as written");
}

#[test]
fn durations_need_a_number_and_a_known_unit() {
    let r = load(&rule(
        "    events: [\"call_end\"],\n    window: \"10 minutes\",\n    for: \"1 hour 30s\",",
        "",
    ))
    .expect("loads");
    assert_eq!(r.spec().window_secs, 600);
    assert_eq!(r.spec().for_secs, 3630);
    let err = only_error(&rule(
        "    events: [\"call_end\"],\n    window: \"10 minutez\",",
        "",
    ));
    assert!(
        err.starts_with("rules/r.rhai:3:5: RULE.window: bad duration \"10 minutez\": unknown unit \"minutez\" (did you mean \"minutes\"?)"),
        "{err}"
    );
    let err = only_error(&rule(
        "    events: [\"call_end\"],\n    window: \"10\",",
        "",
    ));
    assert!(err.contains("RULE.window: bad duration \"10\""), "{err}");
}

#[test]
fn every_problem_of_a_rule_is_reported() {
    let errs = load(&rule(
        "    events: [\"strat_call\", \"call_end\"],\n    where: #{ rol: \"caller\", media_type: \"VIDEO\" },\n    group_by: [\"user\"],\n    window: \"5m\",\n    sevrity: \"info\",",
        "",
    ))
    .expect_err("fails");
    let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
    for want in [
        "rules/r.rhai:2:14: unknown event \"strat_call\" (did you mean \"start_call\"?)",
        "rules/r.rhai:3:15: unknown field \"rol\" (did you mean \"role\"?)",
        "rules/r.rhai:3:42: media_type is never \"VIDEO\" (did you mean \"video\"?)",
        "rules/r.rhai:4:16: unknown field \"user\"",
        "rules/r.rhai:6:5: RULE: unknown key `sevrity` (did you mean \"severity\"?)",
    ] {
        assert!(
            text.iter().any(|t| t.starts_with(want)),
            "{want}\n{text:#?}"
        );
    }
    assert_eq!(text.len(), 5, "{text:#?}");
}

#[test]
fn shipped_rules_load_without_problems() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let rules = load_dir(&dir, &RulesConfig::default()).expect("shipped rules load");
    assert!(rules.len() >= 7);
    for r in &rules {
        assert!(r.warnings().is_empty(), "{}: {:?}", r.name(), r.warnings());
    }
}

// ---- at run time ----

#[test]
fn reading_an_unknown_field_in_filter_is_an_error_naming_it() {
    let src = rule(
        "    events: [\"call_end\"],\n    window: \"5m\",",
        "fn filter(e) {\n    e.platfrom == \"Web\"\n}",
    );
    let r = load(&src).expect("loads");
    let err = r.accepts(&event("Web")).expect_err("unknown field");
    assert_eq!(
        err.to_string(),
        "rules/r.rhai:6:6: unknown field \"platfrom\" (did you mean \"platform\"?)"
    );
}

#[test]
fn reading_an_unknown_field_by_index_or_from_w_last_is_an_error() {
    for (body, name, close) in [
        ("w.last()[\"platfrom\"]", "platfrom", "platform"),
        ("w.last().talk_sec > 5", "talk_sec", "talk_secs"),
        ("w.first().usr_id", "usr_id", "user_id"),
        ("w.distinct(\"platfrom\")", "platfrom", "platform"),
        ("w.percentile(\"ring_sec\", 90)", "ring_sec", "ring_secs"),
    ] {
        let err = check_with(body).expect_err(body);
        assert_eq!(
            err.message,
            format!("unknown field \"{name}\" (did you mean \"{close}\"?)"),
            "{body}"
        );
        assert_eq!(err.position.map(|p| p.0), Some(3), "{body}: {err}");
    }
}

#[test]
fn a_known_field_that_is_absent_stays_unit() {
    let out = check_with("let e = w.last();\n    e.user_id == () && e[\"ring_secs\"] == () && e.talk_secs == 6 && e.extra.nope == ()")
        .expect("known fields read fine");
    assert!(matches!(out, CheckOutcome::Firing { .. }), "{out:?}");
}

#[test]
fn comparing_a_number_with_a_string_is_an_error() {
    let err = check_with("w.count() > \"3\"").expect_err("number vs string");
    assert_eq!(
        err.to_string(),
        "rules/r.rhai:3:11: cannot compare a number with a string: 1 > \"3\" (convert one side, e.g. parse_int(s) or n.to_string())"
    );
    for body in [
        "\"3\" <= w.count()",
        "w.count() == \"1\"",
        "w.count() != \"1\"",
        "w.ratio(\"call_end\", \"call_end\") >= \"0.5\"",
        "w.last().sdkappid == \"1400000001\"",
    ] {
        let err = check_with(body).expect_err(body);
        assert!(
            err.message
                .starts_with("cannot compare a number with a string: "),
            "{body}: {err}"
        );
    }
    // Same-kind comparisons and `()` checks still work.
    for body in [
        "w.count() > 0 && w.count() >= 1.0 && w.last().platform == \"iOS\"",
        "w.last().total_num == () && w.count() != ()",
    ] {
        let out = check_with(body).expect(body);
        assert!(
            matches!(out, CheckOutcome::Firing { .. }),
            "{body}: {out:?}"
        );
    }
}
