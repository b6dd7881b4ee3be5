//! `callwatch simulate` through the real binary: the same arguments give
//! the same bytes, bad anomalies are user errors, an injected anomaly makes
//! the shipped rule for it fire in `replay` (and clean traffic fires
//! nothing), and `--post` drives a live daemon into firing a shipped rule.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{client, Spawned};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary in `dir` (so no config file of the checkout applies).
fn callwatch(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("running callwatch")
}

fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A rules directory with every shipped rule.
fn shipped_rules() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(repo().join("rules")).expect("rules/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "rhai") {
            let name = path.file_name().expect("file name");
            std::fs::copy(&path, dir.path().join(name)).expect("copying a rule");
        }
    }
    dir
}

/// The trace up to its last call start. A trace of N calls ends with the
/// last calls still talking and none starting, which `call_flatline`
/// rightly reports; these tests are about the traffic before that.
fn cut_tail(trace: &[u8]) -> Vec<u8> {
    let lines: Vec<&[u8]> = trace.split_inclusive(|b| *b == b'\n').collect();
    let is_start = |l: &&[u8]| {
        let s = String::from_utf8_lossy(l);
        s.contains("\"command\":\"caller_start_call\"")
            || s.contains("\"CallbackCommand\":\"Call.CallbackAfterStartCall\"")
    };
    let last = lines.iter().rposition(is_start).expect("a call start");
    lines[..=last].concat()
}

/// Simulates with `args`, cuts the tail and replays through every shipped
/// rule; returns the alert lines.
fn replay_simulated(args: &[&str]) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut sim = vec!["simulate"];
    sim.extend_from_slice(args);
    let out = ok(callwatch(dir.path(), &sim), "simulate");
    let trace = dir.path().join("trace.jsonl");
    std::fs::write(&trace, cut_tail(&out.stdout)).expect("writing the trace");
    let rules = shipped_rules();
    let rules_arg = rules.path().to_str().expect("utf-8 path");
    let trace_arg = trace.to_str().expect("utf-8 path");
    let out = ok(
        callwatch(dir.path(), &["replay", "--rules", rules_arg, trace_arg]),
        "replay",
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert line is JSON"))
        .collect()
}

#[test]
fn same_arguments_same_bytes_and_out_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "simulate",
        "--seed",
        "7",
        "--calls",
        "400",
        "--retries",
        "0.05",
        "--anomaly",
        "fail:p=0.5:from=60:to=120",
    ];
    let a = ok(callwatch(dir.path(), &args), "first run");
    let b = ok(callwatch(dir.path(), &args), "second run");
    assert!(!a.stdout.is_empty());
    assert!(a.stdout == b.stdout, "two runs differ");
    let stderr = String::from_utf8_lossy(&a.stderr);
    assert!(stderr.contains("from 400 calls"), "{stderr}");
    assert!(
        stderr.contains("injected: fail:p=0.5:from=60:to=120 ("),
        "{stderr}"
    );
    let mut with_out = args.to_vec();
    with_out.extend(["--out", "trace.jsonl"]);
    let c = ok(callwatch(dir.path(), &with_out), "--out");
    assert!(c.stdout.is_empty());
    let file = std::fs::read(dir.path().join("trace.jsonl")).expect("--out file");
    assert!(file == a.stdout, "--out differs from stdout");
    let mut other = args.to_vec();
    other[2] = "8";
    let d = ok(callwatch(dir.path(), &other), "seed 8");
    assert!(d.stdout != a.stdout, "another seed, the same bytes");
}

#[test]
fn bad_options_are_user_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (args, words) in [
        (
            &["--anomaly", "offline:from=1:to=2"][..],
            &["user= is required"][..],
        ),
        (&["--anomaly", "meteor:from=1"], &["unknown kind", "meteor"]),
        (
            &["--anomaly", "interrupt:platform=Symbian:p=0.5"],
            &["Symbian", "Android"],
        ),
        (&["--anomaly", "fail:p=2"], &["p=2", "probability"]),
        (&["--family", "c"], &["family", "a, b or mixed"]),
        (&["--start", "yesterday"], &["--start", "now"]),
        (&["--users", "1"], &["--users"]),
        (
            &["--post", "http://127.0.0.1:9/", "--start", "100"],
            &["--start", "--post"],
        ),
    ] {
        let mut all = vec!["simulate", "--calls", "5"];
        all.extend_from_slice(args);
        let out = callwatch(dir.path(), &all);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for w in words {
            assert!(
                stderr.contains(w),
                "{args:?}: {stderr:?} should mention {w:?}"
            );
        }
    }
}

#[test]
fn offline_user_fires_missed_call_streak_for_that_user_only() {
    let lines = replay_simulated(&[
        "--seed",
        "2",
        "--calls",
        "1800",
        "--anomaly",
        "offline:user=u0042:from=300:to=1200",
    ]);
    assert!(!lines.is_empty(), "nothing fired");
    for l in &lines {
        assert_eq!(l["rule"], "missed_call_streak", "{l}");
        assert_eq!(l["labels"]["user_id"], "u0042", "{l}");
    }
    assert_eq!(lines[0]["status"], "firing");
}

#[test]
fn clean_traffic_fires_no_shipped_rule() {
    for seed in ["1", "3"] {
        let lines = replay_simulated(&["--seed", seed, "--calls", "4000"]);
        assert!(lines.is_empty(), "seed {seed}: {lines:#?}");
    }
    let lines = replay_simulated(&["--calls", "3000", "--family", "a", "--rate", "3"]);
    assert!(lines.is_empty(), "family a at 3 calls/s: {lines:#?}");
}

/// The firing alerts of `rule` the daemon lists.
async fn firing(d: &Spawned, http: &reqwest::Client, rule: &str) -> Vec<Value> {
    let r = http
        .get(format!("{}/api/v1/alerts", d.base))
        .send()
        .await
        .expect("GET /api/v1/alerts");
    let v: Value = r.json().await.expect("alerts JSON");
    v["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["rule"] == rule && a["status"] == "firing")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_drives_a_live_daemon_into_firing() {
    let d = Spawned::start("", "[[apps]]\nsdkappid = 1400000001\ntoken = \"s3cret\"\n");
    let http = client();
    d.wait_healthy(&http).await;
    let rules = d.dir.path().join("rules");
    std::fs::copy(
        repo().join("rules/missed_call_streak.rhai"),
        rules.join("missed_call_streak.rhai"),
    )
    .expect("copying the rule");
    let r = http
        .post(format!("{}/api/v1/reload", d.base))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status().as_u16(), 200);

    let url = format!("{}/callback", d.base);
    let sim = |token: &'static str, calls: &'static str| {
        let url = url.clone();
        let dir = d.dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            callwatch(
                &dir,
                &[
                    "simulate",
                    "--post",
                    &url,
                    "--token",
                    token,
                    "--calls",
                    calls,
                    "--rate",
                    "4",
                    "--users",
                    "12",
                    "--speed",
                    "300",
                    "--anomaly",
                    "offline:user=u0003",
                ],
            )
        })
    };
    let began = Instant::now();
    let out = sim("s3cret", "160").await.expect("simulate task");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("refused 0"), "{stdout}");
    assert!(stderr.contains("injected: offline:user=u0003"), "{stderr}");
    eprintln!("posted in {:?}: {stdout}", began.elapsed());

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alerts = firing(&d, &http, "missed_call_streak").await;
        if !alerts.is_empty() {
            for a in &alerts {
                assert_eq!(a["labels"]["user_id"], "u0003", "{a}");
            }
            break;
        }
        assert!(Instant::now() < deadline, "missed_call_streak never fired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A wrong token: every callback refused, counted, exit 1.
    let out = sim("wrong", "3").await.expect("simulate task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("accepted 0, refused"), "{stdout}");
    assert!(stdout.contains("HTTP 401"), "{stdout}");
}
