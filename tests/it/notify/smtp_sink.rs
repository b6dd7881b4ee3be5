//! A real SMTP server process (Python's aiosmtpd, `smtp_sink.py`) on a free
//! 127.0.0.1 port, reporting each mail it receives as a JSON line.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Set to make a missing aiosmtpd fail the tests instead of skipping them.
const REQUIRE: &str = "CALLWATCH_REQUIRE_SMTP";

pub struct SmtpSink {
    pub port: u16,
    // Held so the server lives as long as the sink; killed on drop.
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

/// A Python interpreter that can import aiosmtpd: `$CALLWATCH_PYTHON`,
/// Debian's `/usr/bin/python3` (package python3-aiosmtpd) or `python3`.
fn python() -> Option<String> {
    let candidates = std::env::var("CALLWATCH_PYTHON")
        .into_iter()
        .chain(["/usr/bin/python3".to_string(), "python3".to_string()]);
    candidates.into_iter().find(|p| {
        std::process::Command::new(p)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

impl SmtpSink {
    /// Starts the server, requiring AUTH when `auth` is given. Returns
    /// `None` after a loud message when aiosmtpd is not installed, unless
    /// `CALLWATCH_REQUIRE_SMTP` is set, in which case it panics.
    pub async fn start(auth: Option<(&str, &str)>) -> Option<SmtpSink> {
        let Some(python) = python() else {
            let help = "no python3 with aiosmtpd found: install Debian's python3-aiosmtpd \
                        (apt-get install -y python3-aiosmtpd) or `pip install aiosmtpd`";
            if std::env::var_os(REQUIRE).is_some() {
                panic!("{REQUIRE} is set but {help}");
            }
            // Straight to stderr: the harness captures `eprintln!` of
            // passing tests, and a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!! SKIPPING SMTP TEST (set {REQUIRE} to fail instead): {help} !!!!!\n"
            );
            return None;
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/notify/smtp_sink.py");
        let mut cmd = Command::new(python);
        cmd.arg(script);
        if let Some((user, password)) = auth {
            cmd.args([user, password]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start smtp_sink.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = read_line(&mut lines).await;
        let port = ready
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("smtp_sink.py said {ready:?}"));
        Some(SmtpSink {
            port,
            _child: child,
            lines,
        })
    }

    /// The next mail the server received, waiting up to 10 s.
    pub async fn next(&mut self) -> serde_json::Value {
        let line = read_line(&mut self.lines).await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"))
    }
}

async fn read_line(lines: &mut Lines<BufReader<ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("smtp_sink.py answered within 10 s")
        .expect("read smtp_sink.py")
        .expect("smtp_sink.py is running")
}
