//! Quieter alerts offline: `RULE.keep_firing_for` against a ratio that
//! oscillates around its threshold, and `replay` marking the lines an
//! inhibition or a muted route keeps from receivers (`suppressed`), with
//! inline traces and configs.

use std::sync::Arc;

use serde_json::{json, Value};

use callwatch::config::Config;
use callwatch::rules::Rule;

/// 2026-01-01T00:00:00Z, a Thursday.
const START: i64 = 1_767_225_600;

/// A `callee_{event}` callback of `user` in app `sdkappid` at `t`, as a
/// journal line.
fn callback(sdkappid: &str, event: &str, user: &str, t: i64) -> String {
    json!({
        "received_at": t * 1000,
        "query": {
            "sdkappid": sdkappid, "command": format!("callee_{event}"),
            "contenttype": "json", "clientip": "10.0.0.1", "optplatform": "Android",
        },
        "body": {
            "UserId": user, "RoomId": "1", "TotalNum": 2, "MediaType": "audio",
            "CallType": "single", "CallId": format!("{user}-{t}"), "Role": "callee",
            "Event": event, "CallResult": "", "EventTime": t,
        },
    })
    .to_string()
}

/// Replays `lines` through `rules` (file stem, source) under `config`.
fn replay(config: &Config, rules: &[(&str, &str)], lines: &[String]) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, source) in rules {
        std::fs::write(dir.path().join(format!("{name}.rhai")), source).expect("write rule");
    }
    let loaded: Vec<Arc<Rule>> = callwatch::rules::load_dir(dir.path(), &config.rules)
        .unwrap_or_else(|e| panic!("rules should load: {e:?}"))
        .into_iter()
        .map(Arc::new)
        .collect();
    let input: Box<dyn std::io::BufRead + Send> =
        Box::new(std::io::Cursor::new(lines.join("\n").into_bytes()));
    let mut out = Vec::new();
    callwatch::replay::replay(config, loaded, vec![("trace".into(), input)], &mut out)
        .expect("replay runs");
    String::from_utf8(out)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn statuses(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["status"].as_str().unwrap_or(""))
        .collect()
}

/// Rejections over answers per app in a one-minute window; fires above
/// half.
fn rejection_rule(keep_firing_for: &str) -> String {
    format!(
        r#"
const RULE = #{{
    events: ["accept_call", "reject_call"],
    group_by: ["sdkappid"],
    window: "1m",
    {keep_firing_for}
}};
fn check(w) {{
    let r = w.ratio("reject_call", ["accept_call", "reject_call"]);
    if r > 0.5 {{ #{{ summary: `rejections at ${{r}}`, value: r }} }}
}}
"#
    )
}

/// Twenty minutes of a rejection rate swinging from all to none every
/// minute, then five calm minutes.
fn oscillating_trace() -> Vec<String> {
    let mut lines = Vec::new();
    for minute in 0..20 {
        let event = if minute % 2 == 0 {
            "reject_call"
        } else {
            "accept_call"
        };
        for s in [0, 30] {
            lines.push(callback("1400000001", event, "u1", START + minute * 60 + s));
        }
    }
    for s in (0..300).step_by(30) {
        lines.push(callback(
            "1400000001",
            "accept_call",
            "u1",
            START + 1200 + s,
        ));
    }
    lines
}

#[test]
fn keep_firing_for_sends_one_pair_for_a_ratio_oscillating_around_its_threshold() {
    let config = Config::default();
    let trace = oscillating_trace();
    // Without it, every swing is a notification (this is what the key
    // is for: the test would pass vacuously if the trace did not flap).
    let flapping = replay(&config, &[("rejections", &rejection_rule(""))], &trace);
    assert!(
        flapping.len() >= 10,
        "the trace should flap without keep_firing_for: {:?}",
        statuses(&flapping)
    );
    let steady = replay(
        &config,
        &[("rejections", &rejection_rule("keep_firing_for: \"3m\","))],
        &trace,
    );
    assert_eq!(statuses(&steady), ["firing", "resolved"], "{steady:?}");
    let started = callwatch::alert::parse_rfc3339(steady[0]["starts_at"].as_str().unwrap_or(""));
    assert_eq!(started, Some(START));
    // Quiet from 19:00 (the window then holds one rejection and one
    // answer: 0.5, not above it); resolved three minutes later.
    let ended = callwatch::alert::parse_rfc3339(steady[1]["ends_at"].as_str().unwrap_or(""));
    assert_eq!(ended, Some(START + 19 * 60 + 180), "{:?}", steady[1]);
}

#[test]
fn keep_firing_for_is_checked_at_load_with_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("r.rhai");
    std::fs::write(&path, rejection_rule("keep_firing_for: \"3 mins later\",")).expect("write");
    let errs =
        callwatch::rules::load_dir(dir.path(), &Config::default().rules).expect_err("bad duration");
    let text = errs[0].to_string();
    assert!(text.contains("r.rhai:6:5"), "{text}");
    assert!(
        text.contains("RULE.keep_firing_for: bad duration"),
        "{text}"
    );
}

/// Any callee call of a user: a warning per user.
const USER_RULE: &str = r#"
const RULE = #{ events: ["accept_call", "reject_call"], group_by: ["sdkappid", "user_id"], window: "1h", severity: "warning" };
fn filter(e) { e.user_id != "probe" }
fn check(w) { w.count() > 0 }
"#;

/// A call of the probe user: the app is "down" (critical) for 5 min.
const APP_RULE: &str = r#"
const RULE = #{ events: ["accept_call", "reject_call"], group_by: ["sdkappid"], window: "5m", severity: "critical" };
fn filter(e) { e.user_id == "probe" }
fn check(w) { w.count() > 0 }
"#;

fn quiet_config(extra: &str) -> Config {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("callwatch.toml");
    std::fs::write(&path, extra).expect("write config");
    Config::load_from(Some(&path), std::iter::empty()).expect("config loads")
}

#[test]
fn replay_marks_inhibited_lines_and_ignores_inhibition_ended() {
    let config = quiet_config(
        r#"
[[inhibit_rules]]
source_match = { rule = "app_down" }
target_match_re = { severity = "warn.*" }
equal = ["sdkappid"]
"#,
    );
    let trace = vec![
        callback("1400000001", "reject_call", "probe", START),
        callback("1400000001", "accept_call", "alice", START + 10),
        callback("1400000002", "accept_call", "bob", START + 20),
        // app_down resolves at 5 min; carol comes after.
        callback("1400000001", "accept_call", "carol", START + 400),
    ];
    let lines = replay(
        &config,
        &[("app_down", APP_RULE), ("users", USER_RULE)],
        &trace,
    );
    let by_user = |u: &str| {
        lines
            .iter()
            .find(|l| l["labels"]["user_id"] == u)
            .cloned()
            .unwrap_or_else(|| panic!("{u} not in {lines:?}"))
    };
    let down = &lines[0];
    assert_eq!(down["rule"], "app_down");
    let alice = by_user("alice");
    assert_eq!(alice["suppressed"], "inhibited");
    assert_eq!(alice["receivers"], json!([]));
    assert_eq!(alice["inhibited_by"], json!([down["fingerprint"]]));
    let bob = by_user("bob");
    assert_eq!(bob.get("suppressed"), None, "another app: {bob}");
    assert_eq!(bob["receivers"], json!(["log"]));
    let carol = by_user("carol");
    assert_eq!(
        carol.get("suppressed"),
        None,
        "after app_down resolved: {carol}"
    );
}

#[test]
fn replay_marks_muted_lines_in_event_time() {
    let config = quiet_config(
        r#"
[[time_intervals]]
name = "night"
location = "Asia/Shanghai"
times = [{ start = "00:00", end = "07:00" }]

[[routes]]
match = { severity = "warning" }
receivers = ["log"]
mute_time_intervals = ["night"]
"#,
    );
    // START is 08:00 in Shanghai; 23 h later it is 07:00 the next day.
    let trace = vec![
        callback("1400000001", "accept_call", "day", START),
        callback("1400000001", "accept_call", "night", START + 17 * 3600),
        callback("1400000001", "accept_call", "dawn", START + 23 * 3600),
    ];
    let lines = replay(&config, &[("users", USER_RULE)], &trace);
    let firing: Vec<(String, Value)> = lines
        .iter()
        .filter(|l| l["status"] == "firing")
        .map(|l| {
            (
                l["labels"]["user_id"].as_str().unwrap_or("").to_string(),
                l.get("muted_by").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    assert_eq!(
        firing,
        [
            ("day".to_string(), Value::Null),
            ("night".to_string(), json!(["night"])),
            ("dawn".to_string(), Value::Null),
        ]
    );
}

/// Runs the real binary with `args` in `cwd`, environment cleared.
fn callwatch_bin(cwd: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .args(args)
        .current_dir(cwd)
        .env_clear()
        .output()
        .expect("callwatch runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_names_a_misspelt_interval_by_its_path_and_replay_mutes_by_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).expect("rules dir");
    std::fs::write(rules.join("users.rhai"), USER_RULE).expect("rule");
    let config = |interval: &str| {
        format!(
            r#"[rules]
dir = "rules"

[[time_intervals]]
name = "night"
location = "Asia/Shanghai"
times = [{{ start = "00:00", end = "07:00" }}]

[[routes]]
match = {{ severity = "critical" }}
receivers = ["log"]

[[routes]]
match = {{ severity = "info" }}
receivers = ["log"]

[[routes]]
match = {{ severity = "warning" }}
receivers = ["log"]
mute_time_intervals = ["{interval}"]
"#
        )
    };
    std::fs::write(dir.path().join("bad.toml"), config("nigth")).expect("config");
    let (code, stdout, _) = callwatch_bin(dir.path(), &["check", "-c", "bad.toml"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(
            "routes[2].mute_time_intervals[0]: unknown time interval \"nigth\" (did you mean \"night\"?)"
        ),
        "{stdout}"
    );

    std::fs::write(dir.path().join("good.toml"), config("night")).expect("config");
    let (code, stdout, stderr) = callwatch_bin(dir.path(), &["check", "-c", "good.toml"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    // 17:00 UTC is 01:00 in Shanghai.
    let trace = callback("1400000001", "accept_call", "night", START + 17 * 3600);
    std::fs::write(dir.path().join("trace.jsonl"), format!("{trace}\n")).expect("trace");
    let (code, stdout, stderr) =
        callwatch_bin(dir.path(), &["replay", "-c", "good.toml", "trace.jsonl"]);
    assert_eq!(code, Some(0), "{stderr}");
    let line: Value = serde_json::from_str(stdout.lines().next().unwrap_or("")).expect("a line");
    assert_eq!(line["suppressed"], "muted", "{line}");
    assert_eq!(line["receivers"], json!([]));
    assert_eq!(line["muted_by"], json!(["night"]));
}
