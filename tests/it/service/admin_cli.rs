//! `callwatch alerts` and `callwatch silence add|ls|expire` against the
//! real binary running as a daemon: a silence added from the command line
//! holds an alert back from a real webhook, shows in the list and in the
//! alerts table, and expiring it releases the alert. Also the release
//! delay: an alert a silence held back goes out within `group_wait` of
//! the silence's end, not after its group's `group_interval`. And the
//! errors an operator sees (nothing listening, a wrong token, a typo).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::daemon::{free_addr, Home};
use super::sink::webhook_toml;
use crate::delivery::harness::FIRST_CALL_RULE;
use crate::notify::http_sink::{Canned, Received, Sink};

/// Config sections sending alerts to `hook` with `group_wait` 1 s and a
/// `group_interval` of 10 minutes, grouped by `group_by` (a TOML array).
fn hook_config(hook: &Sink, group_by: &str, extra_server: &str) -> String {
    let alerting = webhook_toml(&hook.url("/hook"), "1s", "10m", group_by);
    format!("\n[server]\n{extra_server}\n{alerting}")
}

/// Runs `callwatch ARGS...`: (exit code, stdout, stderr).
async fn cli(args: &[&str]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_callwatch"));
    cmd.args(args).env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("CALLWATCH_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().await.expect("run callwatch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `callwatch ARGS... -c CONFIG`, which must succeed; its stdout.
async fn cli_ok(home: &Home, args: &[&str]) -> String {
    let config = home.config_path();
    let mut all = args.to_vec();
    all.extend(["-c", config.to_str().expect("utf-8 path")]);
    let (code, stdout, stderr) = cli(&all).await;
    assert_eq!(
        code, 0,
        "callwatch {all:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

fn now_secs() -> i64 {
    callwatch::ingest::now_ms() / 1000
}

/// Posts a legacy `caller_start_call` by `user` on `platform`, now.
async fn start_call(home: &Home, user: &str, platform: &str) {
    let url = home.url(&format!(
        "/callback?sdkappid=1400000001&command=caller_start_call&contenttype=json&clientip=10.0.0.1&optplatform={platform}"
    ));
    let body = serde_json::json!({
        "UserId": user, "RoomId": "1", "TotalNum": 2, "MediaType": "audio",
        "CallType": "single", "CallId": format!("call-{user}"), "Role": "caller",
        "Event": "start_call", "CallResult": "", "EventTime": now_secs(),
    });
    let r = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("callback posted");
    assert_eq!(r.status(), 200, "callback refused");
}

/// The (user_id, status) pairs of a webhook body's alerts.
fn users(r: &Received) -> Vec<(String, String)> {
    let body = r.json();
    let alerts = body["alerts"].as_array().cloned().unwrap_or_default();
    alerts
        .iter()
        .map(|a| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (s(&a["labels"]["user_id"]), s(&a["status"]))
        })
        .collect()
}

fn firing(user: &str) -> (String, String) {
    (user.to_string(), "firing".to_string())
}

/// Asserts nothing arrives at `hook` for `quiet`.
async fn assert_quiet(hook: &mut Sink, quiet: Duration) {
    tokio::time::sleep(quiet).await;
    if let Some(r) = hook.try_next() {
        panic!("unexpected notification: {:?}", users(&r));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_silences_an_alert_and_expiring_it_releases_the_alert() {
    let mut hook = Sink::start(Canned::new(200, "")).await;
    let home = Home::new(
        &[("first_call", FIRST_CALL_RULE)],
        &hook_config(&hook, r#"["rule", "user_id"]"#, ""),
    );
    let _daemon = home.start().await;

    let id = cli_ok(
        &home,
        &[
            "silence",
            "add",
            "user_id=alice",
            "platform=~Andr.*",
            "--duration",
            "2h",
        ]
        .into_iter()
        .chain(["--comment", "alice's phone is in the lab", "--author", "ci"])
        .collect::<Vec<_>>(),
    )
    .await
    .trim()
    .to_string();
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "only the id is printed: {id:?}"
    );
    let table = cli_ok(&home, &["silence", "ls"]).await;
    let row = table
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} listed:\n{table}"));
    assert!(
        row.contains("in 1h59m") || row.contains("in 2h00m"),
        "ends in 2 h: {row:?}"
    );
    for part in [
        "active",
        "user_id=alice platform=~Andr.*",
        "ci",
        "alice's phone",
    ] {
        assert!(row.contains(part), "{part:?} in {row:?}");
    }
    let listed: Value = serde_json::from_str(&cli_ok(&home, &["silence", "ls", "--json"]).await)
        .expect("ls --json is JSON");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["matchers"][1]["isRegex"], true);

    // Alice is held back; bob, not matched, goes out.
    start_call(&home, "alice", "Android").await;
    start_call(&home, "bob", "Android").await;
    let got = hook.next_within(Duration::from_secs(10)).await;
    assert_eq!(users(&got), [firing("bob")]);
    assert_quiet(&mut hook, Duration::from_secs(3)).await;

    let alerts: Value = serde_json::from_str(&cli_ok(&home, &["alerts", "--json"]).await)
        .expect("alerts --json is JSON");
    let silenced_by = |user: &str| {
        let a = alerts
            .as_array()
            .expect("an array")
            .iter()
            .find(|a| a["labels"]["user_id"] == user)
            .unwrap_or_else(|| panic!("{user} in {alerts}"));
        a["silenced_by"].clone()
    };
    assert_eq!(silenced_by("alice"), serde_json::json!([id]));
    assert_eq!(silenced_by("bob"), serde_json::json!([]));
    let table = cli_ok(&home, &["alerts"]).await;
    let header = table.lines().next().unwrap_or_default();
    for column in ["RULE", "STATUS", "SEVERITY", "SINCE", "SILENCED", "SUMMARY"] {
        assert!(header.contains(column), "{column} in {header:?}");
    }
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!(
        rows.iter().filter(|r| r.contains(&id[..8])).count(),
        1,
        "one row silenced by {}:\n{table}",
        &id[..8]
    );
    assert!(
        rows.iter()
            .all(|r| r.starts_with("first_call") && r.contains("firing")),
        "{table}"
    );

    // Expired by a unique prefix of its id: alice goes out now.
    let out = cli_ok(&home, &["silence", "expire", &id[..10]]).await;
    assert_eq!(out.trim(), format!("expired {id}"));
    let got = hook.next_within(Duration::from_secs(10)).await;
    assert_eq!(users(&got), [firing("alice")]);
    let out = cli_ok(&home, &["silence", "ls"]).await;
    assert_eq!(out.trim(), "no silences in effect");
    let out = cli_ok(&home, &["silence", "ls", "--all"]).await;
    assert!(out.contains(&id) && out.contains("expired"), "{out}");
    assert_quiet(&mut hook, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_alert_arrives_within_group_wait_not_group_interval() {
    let mut hook = Sink::start(Canned::new(200, "")).await;
    // One group for the rule: bob's notification makes the group "just
    // sent" when alice's silence ends, the case that used to wait for
    // group_interval (10 minutes here).
    let home = Home::new(
        &[("first_call", FIRST_CALL_RULE)],
        &hook_config(&hook, r#"["rule"]"#, ""),
    );
    let _daemon = home.start().await;
    let id = cli_ok(
        &home,
        &["silence", "add", "user_id=alice", "--comment", "lab phone"],
    )
    .await;
    let id = id.trim();
    start_call(&home, "alice", "Android").await;
    start_call(&home, "bob", "iOS").await;
    let got = hook.next_within(Duration::from_secs(10)).await;
    assert_eq!(users(&got), [firing("bob")]);

    cli_ok(&home, &["silence", "expire", id]).await;
    let expired = Instant::now();
    let got = hook.next_within(Duration::from_secs(30)).await;
    let delay = expired.elapsed();
    let mut got = users(&got);
    got.sort();
    assert_eq!(got, [firing("alice"), firing("bob")]);
    // The dispatcher looks for ended silences every second, then the
    // group waits group_wait (1 s): about 2 s, far from 10 minutes.
    eprintln!(
        "release delay: {} ms (group_wait 1 s, group_interval 600 s)",
        delay.as_millis()
    );
    assert!(delay < Duration::from_secs(30), "released after {delay:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_say_what_to_fix_with_exit_codes() {
    // Nothing listening: a runtime failure naming the URL.
    let nobody = format!("http://{}", free_addr("127.0.0.1"));
    let (code, _, stderr) = cli(&["alerts", "--url", &nobody]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&nobody) && stderr.contains("connection refused"),
        "{stderr}"
    );

    let hook = Sink::start(Canned::new(200, "")).await;
    let home = Home::new(
        &[("first_call", FIRST_CALL_RULE)],
        &hook_config(&hook, r#"["rule"]"#, r#"admin_token = "s3cret""#),
    );
    let _daemon = home.start().await;
    let url = home.url("");
    // The token from the config works; a wrong one is named as the problem.
    cli_ok(&home, &["silence", "ls"]).await;
    let (code, _, stderr) = cli(&["silence", "ls", "--url", &url, "--token", "wrong"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("401") && stderr.contains("--token"),
        "{stderr}"
    );
    let (code, stdout, stderr) = cli(&["alerts", "--url", &url, "--token", "s3cret"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "no active alerts");

    let config = home.config_path();
    let config = config.to_str().expect("utf-8 path");
    let user_errors: [(&[&str], &str); 5] = [
        (
            &["silence", "add", "user_id~alice", "--comment", "x"],
            "NAME=VALUE",
        ),
        (
            &["silence", "add", "user_id=~(", "--comment", "x"],
            "invalid regex",
        ),
        (
            &[
                "silence",
                "add",
                "user_id=alice",
                "--comment",
                "x",
                "--duration",
                "soon",
            ],
            "--duration",
        ),
        (&["silence", "add", "user_id=alice"], "--comment"),
        (&["silence", "expire", "0123abcd"], "no silence"),
    ];
    for (args, says) in user_errors {
        let mut all = args.to_vec();
        all.extend(["-c", config]);
        let (code, _, stderr) = cli(&all).await;
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {says:?} in {stderr}");
    }
    // The daemon's own refusal comes through too (a silence matching
    // everything).
    let (code, _, stderr) =
        cli(&["silence", "add", "team=~.*", "--comment", "x", "-c", config]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("400") && stderr.contains("every alert"),
        "{stderr}"
    );
}
