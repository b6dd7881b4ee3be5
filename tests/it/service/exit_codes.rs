//! Exit codes of every command, through the real binary: 0 ok, 1 for what
//! the operator gave it (config, rule, input, usage), 2 for failures at
//! run time. `callwatch run` must say 1 for a bad config or rule, since
//! the systemd unit restarts on failure except for status 1.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::daemon::{free_addr, Home};

const FIRES_ON_START: &str = r#"const RULE = #{
    events: ["start_call"],
    group_by: ["sdkappid"],
    window: "10m",
};

fn check(w) {
    `${w.count()} calls started`
}
"#;

/// What a finished command left behind.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `callwatch ARGS` in `cwd` with stdout to `stdout` (or a pipe) and
/// no `CALLWATCH_*` variables from the test's environment; a command that
/// does not finish within a minute is killed and fails the test (a daemon
/// that should have refused to start must not hang the suite).
fn run_in(cwd: &Path, args: &[&str], stdout: Option<std::fs::File>) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callwatch"));
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(match stdout {
            Some(f) => Stdio::from(f),
            None => Stdio::from(std::fs::File::create(&out_path).expect("stdout file")),
        })
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CALLWATCH_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("spawn callwatch");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "callwatch {args:?} still running after 60 s; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        code: status.code().expect("exited, not killed by a signal"),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

fn run(home: &Home, args: &[&str]) -> Outcome {
    run_in(home.path(), args, None)
}

fn expect(o: &Outcome, code: i32, stderr_words: &[&str], what: &str) {
    assert_eq!(
        o.code, code,
        "{what}: exit code\nstdout:\n{}\nstderr:\n{}",
        o.stdout, o.stderr
    );
    for w in stderr_words {
        assert!(
            o.stderr.contains(w),
            "{what}: stderr lacks {w:?}:\n{}",
            o.stderr
        );
    }
}

fn cfg(home: &Home) -> String {
    home.config_path().display().to_string()
}

#[test]
fn run_exits_1_for_what_the_operator_gave_it() {
    let home = Home::new(&[("bad", "const RULE = #{ events: [\"start_call\"] ")], "");
    let c = cfg(&home);
    let o = run(&home, &["run", "-c", &c]);
    expect(&o, 1, &["bad.rhai"], "run with a rule that does not parse");

    std::fs::remove_dir_all(home.rules_dir()).expect("remove rules dir");
    let o = run(&home, &["run", "-c", &c]);
    expect(&o, 1, &["rules directory"], "run without its rules dir");

    let o = run(&home, &["run", "-c", "/nonexistent/callwatch.toml"]);
    expect(
        &o,
        1,
        &["/nonexistent/callwatch.toml"],
        "run with a missing -c file",
    );

    let home = Home::new(&[] as &[(&str, &str)], "[server]\nlisten_port = 8080\n");
    let o = run(&home, &["run", "-c", &cfg(&home)]);
    expect(&o, 1, &["listen_port"], "run with an unknown key");

    let home = Home::new(
        &[] as &[(&str, &str)],
        "[server]\ncallback_allow = [\"10.0.0.0/33\"]\n",
    );
    let o = run(&home, &["run", "-c", &cfg(&home)]);
    expect(
        &o,
        1,
        &["server.callback_allow", "10.0.0.0/33"],
        "run with a bad CIDR",
    );

    let home = Home::new(
        &[] as &[(&str, &str)],
        "[[receivers]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"not a url\"\n",
    );
    let o = run(&home, &["run", "-c", &cfg(&home)]);
    expect(&o, 1, &["hook"], "run with a receiver whose URL is bad");
}

#[test]
fn run_exits_2_when_it_fails_at_run_time() {
    // The port is taken by someone else: nothing in the config is wrong.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let home = Home::listening(
        taken.local_addr().expect("addr"),
        &[("fires", FIRES_ON_START)],
        "",
    );
    let o = run(&home, &["run", "-c", &cfg(&home)]);
    expect(&o, 2, &["server.listen"], "run on a port in use");
    drop(taken);

    // The state directory cannot be created (a file is in the way).
    let home = Home::new(&[("fires", FIRES_ON_START)], "");
    std::fs::write(home.state_dir(), b"not a directory").expect("block state dir");
    let o = run(&home, &["run", "-c", &cfg(&home)]);
    expect(&o, 2, &["state.dir"], "run with an unusable state dir");
}

#[test]
fn check_exit_codes() {
    let home = Home::new(&[("fires", FIRES_ON_START)], "");
    let o = run(&home, &["check", "-c", &cfg(&home)]);
    expect(&o, 0, &[], "check of a good setup");
    assert!(o.stdout.starts_with("ok: 1 rule(s)"), "{}", o.stdout);

    home.write_rule("broken", "fn check(w) { ");
    let o = run(&home, &["check", "-c", &cfg(&home)]);
    expect(&o, 1, &[], "check with a broken rule");
    assert!(o.stdout.contains("broken.rhai:"), "{}", o.stdout);

    let home = Home::new(&[] as &[(&str, &str)], "[nope]\n");
    let o = run(&home, &["check", "-c", &cfg(&home)]);
    expect(&o, 1, &[], "check of a config with an unknown section");
    assert!(o.stdout.contains("nope"), "{}", o.stdout);
}

#[test]
fn replay_exit_codes() {
    let home = Home::new(&[("fires", FIRES_ON_START)], "");
    let trace = home.path().join("trace.jsonl");
    let first = include_str!("trace.jsonl").lines().next().expect("a line");
    std::fs::write(&trace, format!("{first}\n")).expect("write trace");
    let (c, t) = (cfg(&home), trace.display().to_string());

    let o = run(&home, &["replay", "-c", &c, &t]);
    expect(&o, 0, &[], "replay of a good trace");
    assert!(o.stdout.contains("\"firing\""), "{}", o.stdout);

    let o = run(&home, &["replay", "-c", &c, "missing.jsonl"]);
    expect(&o, 1, &["missing.jsonl"], "replay of a missing file");

    std::fs::write(home.path().join("junk.jsonl"), "not json\n").expect("write");
    let o = run(&home, &["replay", "-c", &c, "junk.jsonl"]);
    expect(&o, 1, &["junk.jsonl"], "replay of a line that is not JSON");

    // Output that cannot be written is a run-time failure.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let o = run_in(home.path(), &["replay", "-c", &c, &t], Some(full));
    expect(&o, 2, &["writing output"], "replay into a full disk");

    home.write_rule("broken", "fn check(w) { ");
    let o = run(&home, &["replay", "-c", &c, &t]);
    expect(&o, 1, &["broken.rhai"], "replay with a broken rule");
}

#[test]
fn notify_test_and_client_exit_codes() {
    let closed = free_addr("127.0.0.1");
    let home = Home::new(
        &[] as &[(&str, &str)],
        &format!(
            "[[receivers]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"http://{closed}/hook\"\ntimeout = \"2s\"\n"
        ),
    );
    let c = cfg(&home);
    let o = run(&home, &["notify-test", "-c", &c, "nobody"]);
    expect(&o, 1, &["nobody"], "notify-test of an unknown receiver");
    let o = run(&home, &["notify-test", "-c", &c, "hook"]);
    expect(&o, 2, &["hook"], "notify-test to a receiver that is down");

    let url = format!("http://{closed}");
    let o = run(&home, &["alerts", "--url", &url]);
    expect(&o, 2, &[], "alerts from a daemon that is not running");
    let o = run(&home, &["silence", "add", "rule=x"]);
    expect(&o, 1, &["--comment"], "silence add without --comment");
}

#[test]
fn usage_help_completions_and_man() {
    let home = Home::new(&[] as &[(&str, &str)], "");
    expect(
        &run(&home, &["frobnicate"]),
        1,
        &["frobnicate"],
        "unknown command",
    );
    expect(
        &run(&home, &["run", "--nope"]),
        1,
        &["--nope"],
        "unknown flag",
    );
    let o = run(&home, &["--help"]);
    expect(&o, 0, &[], "--help");
    assert!(o.stdout.contains("replay"), "{}", o.stdout);
    assert!(
        !o.stdout.contains("completions"),
        "hidden commands stay out of --help"
    );
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef callwatch"),
        ("fish", "complete -c callwatch"),
    ] {
        let o = run(&home, &["completions", shell]);
        expect(&o, 0, &[], shell);
        assert!(o.stdout.contains(marker), "{shell}: {}", o.stdout);
        assert!(
            o.stdout.contains("notify-test"),
            "{shell} lists subcommands"
        );
    }
    expect(
        &run(&home, &["completions", "tcsh"]),
        1,
        &["tcsh"],
        "unknown shell",
    );
    let o = run(&home, &["man"]);
    expect(&o, 0, &[], "man");
    assert!(o.stdout.contains(".TH callwatch 1"), "{}", o.stdout);
    assert!(o.stdout.contains("notify\\-test"), "man lists subcommands");
}

#[test]
fn simulate_exit_codes() {
    let home = Home::new(&[] as &[(&str, &str)], "");
    let o = run(
        &home,
        &["simulate", "--calls", "5", "--start", "1767225600"],
    );
    expect(&o, 0, &[], "simulate of five calls");
    assert!(o.stdout.lines().count() >= 5, "{}", o.stdout);
    let o = run(&home, &["simulate", "--family", "z"]);
    expect(&o, 1, &["z"], "simulate with an unknown family");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let o = run_in(home.path(), &["simulate", "--calls", "50"], Some(full));
    expect(&o, 2, &[], "simulate into a full disk");
}
