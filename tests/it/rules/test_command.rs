//! `callwatch test`: the shipped rule tests pass, a rule whose threshold
//! was changed fails them with a readable diff, and broken test files,
//! recorded inputs and script errors are reported as documented. Every
//! test runs the real binary.

use std::path::{Path, PathBuf};

use super::harness::{callwatch, fixtures, repo, Run, EXAMPLES};

/// `callwatch test ARGS...` in a fresh directory (built-in defaults).
fn test_cmd(args: &[&str]) -> Run {
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut all = vec!["test"];
    all.extend_from_slice(args);
    callwatch(cwd.path(), &all, b"")
}

fn shipped_tests() -> PathBuf {
    repo().join("rules/tests")
}

/// A temp dir laid out like `rules/`: a copy of the example rule `name`
/// with `edit` applied (from, to) and its shipped test in `tests/`.
fn edited_copy(name: &str, edit: (&str, &str)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = std::fs::read_to_string(repo().join(format!("rules/{name}.rhai"))).expect("rule");
    assert!(source.contains(edit.0), "{name} has no {:?}", edit.0);
    std::fs::write(
        dir.path().join(format!("{name}.rhai")),
        source.replace(edit.0, edit.1),
    )
    .expect("write rule");
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
    let test = dir.path().join(format!("tests/{name}.test.toml"));
    std::fs::copy(shipped_tests().join(format!("{name}.test.toml")), &test).expect("copy test");
    (dir, test)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn every_example_rule_has_a_passing_test() {
    let dir = shipped_tests();
    let run = test_cmd(&[path_str(&dir)]);
    assert_eq!(run.code, Some(0), "{run:?}");
    for name in EXAMPLES {
        let file = dir.join(format!("{name}.test.toml"));
        assert!(
            run.stdout
                .lines()
                .any(|l| l == format!("PASS {}", file.display())),
            "{name}: no PASS line: {run:?}"
        );
        // Each covers firing, not firing and resolving: at least one
        // expectation with an alert and two without.
        let text = std::fs::read_to_string(&file).expect("test file");
        assert!(text.contains("status = \"firing\""), "{name}");
        assert!(text.matches("alerts = []").count() >= 2, "{name}");
    }
    assert!(!run.stdout.contains("FAIL"), "{run:?}");
}

#[test]
fn a_raised_threshold_fails_with_the_missing_alerts() {
    let (_dir, test) = edited_copy("missed_call_streak", ("n >= 7", "n >= 8"));
    let run = test_cmd(&[path_str(&test)]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let out = &run.stdout;
    assert!(
        out.starts_with(&format!("FAIL {}\n", test.display())),
        "{out}"
    );
    // The firing expectation at 6m, with what was expected and that
    // nothing was active.
    assert!(
        out.contains("  [[expect]] at 6m (2026-01-01T00:06:00Z), line ")
            && out.contains(": 2 expected alert(s) not active, 0 active alert(s) not expected\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "    - expected missed_call_streak firing {team=\"mobile\", user_id=\"alice\"} \
             summary=\"alice left 7 calls in a row unanswered (pushes may not arrive)\"\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("    (no alert of the rules under test is active)\n"),
        "{out}"
    );
    // The expectations that still hold are not listed.
    assert!(!out.contains("at 5m30s"), "{out}");
}

#[test]
fn a_lowered_threshold_fails_with_the_unexpected_alerts() {
    let (_dir, test) = edited_copy("missed_call_streak", ("n >= 7", "n >= 6"));
    let run = test_cmd(&[path_str(&test)]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let out = &run.stdout;
    // Six misses are now enough: bob fires where nothing should.
    assert!(
        out.contains("  [[expect]] at 5m30s (2026-01-01T00:05:30Z), line ")
            && out.contains(": 0 expected alert(s) not active, 3 active alert(s) not expected\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "    + active   missed_call_streak firing {sdkappid=\"1400000001\", severity=\"warning\", \
             team=\"mobile\", user_id=\"bob\"} summary=\"bob left 6 calls in a row unanswered \
             (pushes may not arrive)\" value=6\n"
        ),
        "{out}"
    );
    // At 6m alice and dave matched; bob is the extra one.
    assert!(
        out.contains(": 0 expected alert(s) not active, 1 active alert(s) not expected\n")
            && out.contains("    = active   missed_call_streak firing {sdkappid=\"1400000001\", severity=\"warning\", team=\"mobile\", user_id=\"alice\"}"),
        "{out}"
    );
}

#[test]
fn results_of_several_files_and_the_exit_code() {
    let (_bad, failing) = edited_copy("call_flatline", ("w.count() == 0", "w.count() < 0"));
    let passing = shipped_tests().join("slow_answer.test.toml");
    let run = test_cmd(&[path_str(&passing), path_str(&failing)]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let heads: Vec<&str> = run.stdout.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(
        heads,
        [
            format!("PASS {}", passing.display()),
            format!("FAIL {}", failing.display())
        ],
        "{run:?}"
    );
    assert!(run.stderr.contains("1 of 2 test file(s) failed"), "{run:?}");
}

/// Writes a test file (and a copy of `missed_call_streak`) to a temp dir.
fn write_test(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        repo().join("rules/missed_call_streak.rhai"),
        dir.path().join("missed_call_streak.rhai"),
    )
    .expect("copy rule");
    let path = dir.path().join("t.test.toml");
    std::fs::write(&path, text).expect("write test");
    (dir, path)
}

#[test]
fn a_bad_test_file_is_an_error_at_its_place() {
    let cases = [
        // An unknown key, named.
        (
            "rules = [\"missed_call_streak.rhai\"]\n[[events]]\nat = \"1m\"\nevent = \"start_call\"\nusr_id = \"a\"\n",
            "5:1",
            "unknown field `usr_id`",
        ),
        // A duration without a unit it knows.
        (
            "rules = [\"missed_call_streak.rhai\"]\n[[expect]]\nat = \"10 minutez\"\nalerts = []\n",
            "3:6",
            "at: bad duration \"10 minutez\"",
        ),
        // A rule that is not under test.
        (
            "rules = [\"missed_call_streak.rhai\"]\n[[expect]]\nat = \"1m\"\nalerts = [{ rule = \"missed_cal_streak\" }]\n",
            "4:20",
            "no rule named \"missed_cal_streak\" under test",
        ),
        // A rule file that does not exist.
        (
            "rules = [\"nope.rhai\"]\n",
            "1:10",
            "rules: no rule file",
        ),
        // An anomaly `callwatch simulate` does not know, at its place.
        (
            "rules = [\"missed_call_streak.rhai\"]\n[simulate]\nanomalies = [\"offline:user=u1:from=0:to=60\", \"offlin:user=u1\"]\n",
            "3:46",
            "anomalies: anomaly \"offlin:user=u1\": unknown kind",
        ),
        // Not TOML.
        ("rules = [\n", "2:1", ""),
    ];
    for (text, at, message) in cases {
        let (_dir, path) = write_test(text);
        let run = test_cmd(&[path_str(&path)]);
        assert_eq!(run.code, Some(1), "{text}: {run:?}");
        let want = format!("  {}:{at}: {message}", path.display());
        assert!(
            run.stdout
                .starts_with(&format!("FAIL {}\n{want}", path.display())),
            "{text}: want {want:?}: {run:?}"
        );
    }
}

#[test]
fn a_missing_path_or_an_empty_directory_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = test_cmd(&[path_str(dir.path())]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("no *.test.toml files"), "{run:?}");
    let run = test_cmd(&[path_str(&dir.path().join("nope.test.toml"))]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("no such file or directory"), "{run:?}");
}

#[test]
fn a_gzipped_recording_is_read_as_is() {
    // The fixture's offline user u0007 starts a streak at 6m16s (see
    // missed_call_streak.expected.jsonl) and resolves at 15m2s. (Its
    // summary at 6m16s counts every miss of that second, not only the
    // seventh that fired it.)
    let trace = fixtures().join("missed_call_streak.jsonl.gz");
    let text = format!(
        "rules = [\"missed_call_streak.rhai\"]\ninput = [{trace:?}]\n\n\
         [[expect]]\nat = \"6m15s\"\nalerts = []\n\n\
         [[expect]]\nat = \"6m16s\"\nalerts = [{{ rule = \"missed_call_streak\", labels = {{ user_id = \"u0007\" }} }}]\n\n\
         [[expect]]\nat = \"15m2s\"\nalerts = []\n"
    );
    let (_dir, path) = write_test(&text);
    let run = test_cmd(&[path_str(&path)]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, format!("PASS {}\n", path.display()));
}

#[test]
fn script_errors_fail_the_file_with_a_count_per_rule() {
    let (dir, path) = write_test(
        "rules = [\"missed_call_streak.rhai\", \"bad.rhai\"]\n\
         [[events]]\nat = \"0s\"\nevent = \"start_call\"\nrepeat = 3\nevery = \"1s\"\n\
         [[expect]]\nat = \"1m\"\nalerts = []\n",
    );
    std::fs::write(
        dir.path().join("bad.rhai"),
        "const RULE = #{ events: [\"start_call\"], window: \"1m\" };\nfn check(w) {\n    w.count() - \"a\"\n}\n",
    )
    .expect("write rule");
    let run = test_cmd(&[path_str(&path)]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout
            .starts_with(&format!("FAIL {}\n", path.display())),
        "{run:?}"
    );
    // Three events, then the tick at 1m when the first leaves the window.
    let count = "rule bad: 4 script error(s) in 4 evaluations; last: ";
    let shown = path.display();
    assert!(
        run.stderr.contains(&format!("callwatch: {shown}: {count}")),
        "{run:?}"
    );
    assert!(run.stdout.contains(&format!("\n  {count}")), "{run:?}");
}

#[test]
fn an_operators_own_rule_in_the_rules_dir_changes_no_shipped_test() {
    // A copy of rules/ with an extra rule that fires on everything: the
    // shipped tests name the rule they test, so they still pass.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("tests")).expect("mkdir");
    for name in EXAMPLES {
        std::fs::copy(
            repo().join(format!("rules/{name}.rhai")),
            dir.path().join(format!("{name}.rhai")),
        )
        .expect("copy rule");
        std::fs::copy(
            shipped_tests().join(format!("{name}.test.toml")),
            dir.path().join(format!("tests/{name}.test.toml")),
        )
        .expect("copy test");
    }
    std::fs::write(
        dir.path().join("mine.rhai"),
        "const RULE = #{ events: [\"start_call\", \"call_end\", \"not_answer_call\"], window: \"1h\" };\nfn check(w) { true }\n",
    )
    .expect("write rule");
    let run = test_cmd(&[path_str(&dir.path().join("tests"))]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout.lines().count(), EXAMPLES.len(), "{run:?}");
}

#[test]
fn without_rules_the_configs_rules_dir_is_under_test() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("myrules");
    std::fs::create_dir(&rules).expect("mkdir");
    for name in ["call_flatline", "missed_call_streak"] {
        std::fs::copy(
            repo().join(format!("rules/{name}.rhai")),
            rules.join(format!("{name}.rhai")),
        )
        .expect("copy rule");
    }
    let config = dir.path().join("callwatch.toml");
    std::fs::write(&config, format!("[rules]\ndir = {rules:?}\n")).expect("config");
    // Both rules are under test: call_flatline's alert must be expected
    // too, and missed_call_streak's name is known.
    let test = dir.path().join("t.test.toml");
    std::fs::write(
        &test,
        "[[events]]\nevent = \"start_call\"\nrole = \"caller\"\n\n\
         [[expect]]\nat = \"5m\"\nalerts = [{ rule = \"call_flatline\" }]\n\n\
         [[expect]]\nat = \"5m\"\nalerts = [{ rule = \"missed_call_streak\" }]\n",
    )
    .expect("test");
    let run = test_cmd(&["-c", path_str(&config), path_str(&test)]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout
            .contains("line 9: 1 expected alert(s) not active, 1 active alert(s) not expected")
            && run.stdout.contains("    + active   call_flatline firing")
            && !run.stdout.contains("line 5:"),
        "{run:?}"
    );
}
