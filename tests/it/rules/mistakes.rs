//! Mistakes are errors through the real binary: `check --rules` without a
//! config file, misspelt rules stopping `replay`, failed evaluations
//! failing `replay`, gzipped and unreadable inputs, empty inputs and the
//! `--summary` table.

use super::harness::{callwatch, fixtures, repo, rules_dir, temp_file, trace};

/// A rule whose `filter` reads a field that does not exist.
const TYPO_IN_FILTER: &str = r#"const RULE = #{ events: ["start_call"], group_by: ["sdkappid"], window: "5m" };
fn filter(e) {
    e.platfrom == "Web"
}
fn check(w) { true }
"#;

#[test]
fn check_rules_dir_works_without_a_config_file() {
    let cwd = tempfile::tempdir().expect("tempdir");
    assert!(!cwd.path().join("config").exists());
    let dir = rules_dir(&["call_flatline", "slow_answer"], &[]);
    let rules = dir.path().to_str().expect("utf-8");
    let run = callwatch(cwd.path(), &["check", "--rules", rules], b"");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("ok: 2 rule(s)"), "{run:?}");

    // Every shipped rule loads cleanly, without warnings.
    let shipped = repo().join("rules");
    let run = callwatch(
        cwd.path(),
        &["check", "--rules", shipped.to_str().expect("utf-8")],
        b"",
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
}

#[test]
fn check_reports_misspellings_with_suggestions_and_warns_on_platforms() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let typo = "const RULE = #{\n    events: [\"call_rejectd\"],\n    where: #{ platfrom: \"Web\" },\n    window: \"5m\",\n};\nfn check(w) { true }\n";
    let dir = rules_dir(&["call_flatline"], &[("typo.rhai", typo)]);
    let rules = dir.path().to_str().expect("utf-8");
    let run = callwatch(cwd.path(), &["check", "--rules", rules], b"");
    assert_eq!(run.code, Some(1), "{run:?}");
    let file = dir.path().join("typo.rhai");
    let file = file.display();
    assert_eq!(
        run.stdout,
        format!(
            "{file}:2:14: unknown event \"call_rejectd\" (did you mean \"call_rejected\"?)\n\
             {file}:3:15: unknown field \"platfrom\" (did you mean \"platform\"?)\n"
        ),
        "{run:?}"
    );

    // An unknown platform is only a warning: Tencent adds platforms.
    let new_platform = "const RULE = #{ events: [\"call_end\"], where: #{ platform: \"HarmonyOS\" }, window: \"5m\" };\nfn check(w) { true }\n";
    let dir = rules_dir(&[], &[("harmony.rhai", new_platform)]);
    let rules = dir.path().to_str().expect("utf-8");
    let run = callwatch(cwd.path(), &["check", "--rules", rules], b"");
    assert_eq!(run.code, Some(0), "{run:?}");
    let first = run.stdout.lines().next().unwrap_or_default();
    assert!(
        first.contains("harmony.rhai:1:")
            && first.contains(": warning: \"HarmonyOS\" is no known platform"),
        "{run:?}"
    );
    assert!(run.stdout.contains("\nok: 1 rule(s)"), "{run:?}");
}

#[test]
fn replay_refuses_a_misspelt_rule() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let typo = "const RULE = #{ events: [\"start_call\"], group_by: [\"platfrom\"], window: \"5m\" };\nfn check(w) { true }\n";
    let dir = rules_dir(&[], &[("typo.rhai", typo)]);
    let rules = dir.path().to_str().expect("utf-8");
    let run = callwatch(cwd.path(), &["replay", "--rules", rules, "-"], b"");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains("typo.rhai:1:52: unknown field \"platfrom\" (did you mean \"platform\"?)"),
        "{run:?}"
    );
    assert_eq!(run.stdout, "");
}

#[test]
fn replay_fails_after_its_output_when_an_evaluation_failed() {
    let data = trace("call_failure_spike");
    let dir = rules_dir(&["call_failure_spike"], &[("typo.rhai", TYPO_IN_FILTER)]);
    let alone = rules_dir(&["call_failure_spike"], &[]);
    let (_tmp, path) = temp_file("trace.jsonl", &data);
    let cwd = tempfile::tempdir().expect("tempdir");
    let file = path.to_str().expect("utf-8");
    let good = callwatch(
        cwd.path(),
        &[
            "replay",
            "--rules",
            alone.path().to_str().expect("utf-8"),
            file,
        ],
        b"",
    );
    assert_eq!(good.code, Some(0), "{good:?}");
    assert!(!good.stdout.is_empty());

    let run = callwatch(
        cwd.path(),
        &[
            "replay",
            "--rules",
            dir.path().to_str().expect("utf-8"),
            file,
        ],
        b"",
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout == good.stdout,
        "the good rule's output is all printed"
    );
    let count = run
        .stderr
        .lines()
        .find(|l| l.starts_with("callwatch: rule typo: "))
        .unwrap_or_else(|| panic!("no per-rule count: {}", run.stderr));
    assert!(
        count.contains(" script error(s) in ")
            && count.contains("last: filter: ")
            && count
                .contains("typo.rhai:3:6: unknown field \"platfrom\" (did you mean \"platform\"?)"),
        "{count}"
    );
    assert!(
        run.stderr.contains("rule evaluation(s) failed"),
        "{}",
        run.stderr
    );
}

#[test]
fn replay_reads_gzip_files_and_stdin_by_their_magic_bytes() {
    let gz = fixtures().join("call_failure_spike.jsonl.gz");
    let packed = std::fs::read(&gz).expect("fixture");
    let plain = trace("call_failure_spike");
    let dir = rules_dir(&["call_failure_spike"], &[]);
    let rules = dir.path().to_str().expect("utf-8");
    let cwd = tempfile::tempdir().expect("tempdir");
    let (_p, plain_path) = temp_file("trace.jsonl", &plain);
    // A gzipped file whose name says nothing about it.
    let (_g, odd_name) = temp_file("trace.log", &packed);
    let want = callwatch(
        cwd.path(),
        &[
            "replay",
            "--rules",
            rules,
            plain_path.to_str().expect("utf-8"),
        ],
        b"",
    );
    assert_eq!(want.code, Some(0), "{want:?}");
    assert!(!want.stdout.is_empty());
    for args in [
        vec![gz.to_str().expect("utf-8")],
        vec![odd_name.to_str().expect("utf-8")],
        vec!["-"],
    ] {
        let mut argv = vec!["replay", "--rules", rules];
        argv.extend(&args);
        let run = callwatch(cwd.path(), &argv, &packed);
        assert_eq!(run.code, Some(0), "{args:?}: {run:?}");
        assert!(run.stdout == want.stdout, "{args:?}: output differs");
    }
}

#[test]
fn replay_names_a_file_that_is_not_json_lines() {
    let dir = rules_dir(&["call_flatline"], &[]);
    let rules = dir.path().to_str().expect("utf-8");
    let cwd = tempfile::tempdir().expect("tempdir");
    // Pretty-printed JSON: valid JSON, but not one record per line.
    let pretty = b"[\n  {\"query\": {}, \"body\": {}}\n]\n";
    let (_t, path) = temp_file("export.json", pretty);
    let file = path.to_str().expect("utf-8");
    let run = callwatch(cwd.path(), &["replay", "--rules", rules, file], b"");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("{file}:1: cannot be parsed as JSON Lines")),
        "{run:?}"
    );
    // Broken gzip data is named as such, with the file.
    let mut packed = std::fs::read(fixtures().join("call_flatline.jsonl.gz")).expect("fixture");
    let mid = packed.len() / 2;
    packed[mid..].fill(0xff);
    let (_b, bad) = temp_file("broken.jsonl.gz", &packed);
    let bad = bad.to_str().expect("utf-8");
    let run = callwatch(cwd.path(), &["replay", "--rules", rules, bad], b"");
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains(&format!("{bad}: bad gzip data: ")),
        "{run:?}"
    );
}

#[test]
fn replay_warns_when_an_input_holds_no_callbacks() {
    let dir = rules_dir(&["call_flatline"], &[]);
    let rules = dir.path().to_str().expect("utf-8");
    let cwd = tempfile::tempdir().expect("tempdir");
    let (_t, path) = temp_file("empty.jsonl", b"\n  \n");
    let file = path.to_str().expect("utf-8");
    let run = callwatch(cwd.path(), &["replay", "--rules", rules, file], b"");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains(&format!(
            "callwatch: warning: {file}: no callbacks in this input"
        )),
        "{run:?}"
    );
}

#[test]
fn replay_summary_is_a_table_per_rule_on_stderr() {
    let data = trace("call_failure_spike");
    let dir = rules_dir(&["call_failure_spike", "call_flatline"], &[]);
    let rules = dir.path().to_str().expect("utf-8");
    let cwd = tempfile::tempdir().expect("tempdir");
    let plain = callwatch(cwd.path(), &["replay", "--rules", rules, "-"], &data);
    let run = callwatch(
        cwd.path(),
        &["replay", "--summary", "--rules", rules, "-"],
        &data,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout == plain.stdout, "--summary leaves stdout alone");
    assert!(!plain.stderr.contains("evaluations"), "{plain:?}");
    let fired_lines = |rule: &str, status: &str| {
        run.stdout
            .lines()
            .filter(|l| l.contains(&format!("\"rule\":\"{rule}\"")))
            .filter(|l| l.contains(&format!("\"status\":\"{status}\"")))
            .count()
    };
    let lines: Vec<&str> = run.stderr.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("rule "))
        .unwrap_or_else(|| panic!("no table: {}", run.stderr));
    assert!(
        lines[header].split_whitespace().eq([
            "rule",
            "fired",
            "repeated",
            "resolved",
            "keys",
            "errors",
            "evaluations",
            "eval",
            "time"
        ]),
        "{}",
        lines[header]
    );
    let row: Vec<&str> = lines[header + 1].split_whitespace().collect();
    assert_eq!(row[0], "call_failure_spike");
    let fired: usize = row[1].parse().expect("fired");
    let repeated: usize = row[2].parse().expect("repeated");
    let resolved: usize = row[3].parse().expect("resolved");
    assert!(fired >= 1, "{row:?}");
    assert_eq!(
        fired + repeated,
        fired_lines("call_failure_spike", "firing")
    );
    assert_eq!(resolved, fired_lines("call_failure_spike", "resolved"));
    assert_eq!(row[5], "0", "no errors: {row:?}");
    assert!(row[6].parse::<u64>().expect("evaluations") > 0);
    assert_eq!(
        lines[header + 2].split_whitespace().next(),
        Some("call_flatline")
    );
    let callbacks = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(
        lines[header + 3],
        format!("{callbacks} callback(s) replayed")
    );
}

#[test]
fn check_refuses_a_notify_list_naming_no_receiver() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let typo = "const RULE = #{ events: [\"start_call\"], window: \"5m\", notify: [\"lgo\"] };\nfn check(w) { true }\n";
    let dir = rules_dir(&[], &[("typo.rhai", typo)]);
    let rules = dir.path().to_str().expect("utf-8");
    let run = callwatch(cwd.path(), &["check", "--rules", rules], b"");
    assert_eq!(run.code, Some(1), "{run:?}");
    let file = dir.path().join("typo.rhai");
    assert_eq!(
        run.stdout.trim_end(),
        format!(
            "{}: RULE.notify: unknown receiver \"lgo\" (did you mean \"log\"?) (receivers: log)",
            file.display()
        ),
        "{run:?}"
    );
    // The same rule naming a receiver that exists loads.
    let fixed = typo.replace("lgo", "log");
    let dir = rules_dir(&[], &[("fixed.rhai", fixed.as_str())]);
    let rules = dir.path().to_str().expect("utf-8");
    let run = callwatch(cwd.path(), &["check", "--rules", rules], b"");
    assert_eq!(run.code, Some(0), "{run:?}");
}
