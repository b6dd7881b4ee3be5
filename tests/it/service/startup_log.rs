//! What `callwatch run` writes to its log as it starts, read from the real
//! binary's stderr redirected to a file (as under systemd): no colour
//! codes, one line saying which config, address, rules and receivers it
//! runs with, and a warning when `/callback` takes unsigned callbacks.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::daemon::Home;

const RULE: &str = r#"const RULE = #{
    events: ["start_call"],
    group_by: ["sdkappid"],
    window: "10m",
};

fn check(w) {
    if w.count() > 1000 { "busy" }
}
"#;

/// Waits until `path` contains `needle` (the daemon got that far) and
/// returns the whole file.
fn wait_for_log(path: &Path, needle: &str, child: &mut std::process::Child) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("callwatch exited with {status}; log:\n{text}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {needle:?} in the log within 60 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lines of `log` that are warnings.
fn warnings(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" WARN ")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_lines_without_colour_and_unsigned_warning() {
    let home = Home::new(
        &[("first", RULE), ("second", RULE)],
        "[[receivers]]\nname = \"ops\"\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/hook\"\n",
    );
    let daemon = home.start().await;
    let log = std::fs::read(home.path().join("stderr.log")).expect("stderr.log");
    assert!(
        !log.contains(&0x1b),
        "ANSI escape in a log that is not a terminal:\n{}",
        String::from_utf8_lossy(&log)
    );
    let log = String::from_utf8_lossy(&log).into_owned();
    let start = log
        .lines()
        .find(|l| l.contains("callwatch starting"))
        .unwrap_or_else(|| panic!("no startup line:\n{log}"));
    for want in [
        format!("config={}", home.config_path().display()),
        format!("listen={}", home.addr),
        "rules=2".to_string(),
        "ops(webhook)".to_string(),
        "log(log)".to_string(),
        "callback_allow=any".to_string(),
    ] {
        assert!(
            start.contains(&want),
            "startup line lacks {want:?}: {start}"
        );
    }
    assert!(
        log.contains(&format!("callwatch listening addr={}", home.addr)),
        "{log}"
    );
    let warned = warnings(&log);
    assert!(
        warned.iter().any(|l| l.contains("any sdkappid, unsigned")),
        "no warning about unsigned callbacks without [[apps]]:\n{log}"
    );
    daemon.kill();

    // Every app has a token: nothing to warn about.
    let home = Home::new(
        &[("first", RULE)],
        "[[apps]]\nsdkappid = 1400000001\ntoken = \"k1\"\n",
    );
    let daemon = home.start().await;
    let log = home.stderr();
    assert!(
        !warnings(&log).iter().any(|l| l.contains("unsigned")),
        "{log}"
    );
    daemon.kill();

    // One app without a token: the warning names it, not the other.
    let home = Home::new(
        &[("first", RULE)],
        "[[apps]]\nsdkappid = 1400000001\ntoken = \"k1\"\n\
         [[apps]]\nsdkappid = 1400000002\n",
    );
    let daemon = home.start().await;
    let log = home.stderr();
    let w = warnings(&log)
        .into_iter()
        .find(|l| l.contains("unsigned"))
        .unwrap_or_else(|| panic!("no warning for the app without a token:\n{log}"));
    assert!(w.contains("1400000002") && !w.contains("1400000001"), "{w}");
    daemon.kill();
}

#[test]
fn startup_line_says_built_in_defaults_without_a_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("rules")).expect("rules dir");
    let log = dir.path().join("stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callwatch"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CALLWATCH_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .arg("run")
        .current_dir(dir.path())
        // Any free port: the default 8080 may be taken on this machine.
        .env("CALLWATCH_SERVER__LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn callwatch");
    let text = wait_for_log(&log, "callwatch listening", &mut child);
    let _ = child.kill();
    let _ = child.wait();
    let start = text
        .lines()
        .find(|l| l.contains("callwatch starting"))
        .unwrap_or_else(|| panic!("no startup line:\n{text}"));
    assert!(start.contains("config=built-in defaults"), "{start}");
    assert!(start.contains("rules=0"), "{start}");
    assert!(!text.as_bytes().contains(&0x1b), "{text}");
}
