//! The real `callwatch` binary as a child process: a temp home with a
//! generated config, a rules directory and a state directory; start, wait
//! for `/readyz`, signal, SIGKILL, restart on the same port.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A temp directory laid out for one daemon: `callwatch.toml`, `rules/`,
/// `data/`, and the child's stdout/stderr appended to `stdout.log` and
/// `stderr.log` across restarts.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

/// A port nobody listens on right now (bound and released).
pub fn free_addr(ip: &str) -> SocketAddr {
    let l = std::net::TcpListener::bind(format!("{ip}:0")).expect("bind a free port");
    l.local_addr().expect("local addr")
}

impl Home {
    /// A home listening on a free loopback port, with `rules` (name,
    /// source) and `extra` appended to the config (whole TOML sections).
    pub fn new<N: AsRef<str>, S: AsRef<str>>(rules: &[(N, S)], extra: &str) -> Home {
        Self::listening(free_addr("127.0.0.1"), rules, extra)
    }

    pub fn listening<N: AsRef<str>, S: AsRef<str>>(
        addr: SocketAddr,
        rules: &[(N, S)],
        extra: &str,
    ) -> Home {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("rules")).expect("rules dir");
        let home = Home { dir, addr };
        for (name, source) in rules {
            home.write_rule(name.as_ref(), source.as_ref());
        }
        home.write_config(extra);
        home
    }

    /// `[server]`, `[rules]` and `[state]` for this home plus `extra`
    /// (whose keys in those sections are merged in).
    pub fn write_config(&self, extra: &str) {
        let p = self.path();
        let (server, rest) = split_section(extra, "server");
        let (rules, rest) = split_section(&rest, "rules");
        let (state, rest) = split_section(&rest, "state");
        let text = format!(
            "[server]\nlisten = \"{}\"\n{server}\n[rules]\ndir = \"{}\"\n{rules}\n\
             [state]\ndir = \"{}\"\n{state}\n{rest}\n",
            self.addr,
            p.join("rules").display(),
            p.join("data").display(),
        );
        std::fs::write(self.config_path(), text).expect("write config");
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("callwatch.toml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path().join("data")
    }

    pub fn rules_dir(&self) -> PathBuf {
        self.path().join("rules")
    }

    pub fn write_rule(&self, name: &str, source: &str) {
        std::fs::write(self.rules_dir().join(format!("{name}.rhai")), source).expect("write rule");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts `callwatch run -c callwatch.toml`; does not wait for ready.
    pub fn spawn(&self) -> Proc {
        self.spawn_via(&[])
    }

    /// Like [`Home::spawn`], run through `prefix` (such as `ip netns exec
    /// NAME`, which execs the daemon in place).
    pub fn spawn_via(&self, prefix: &[&str]) -> Proc {
        let log = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.path().join(name))
                .expect("open log")
        };
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(env!("CARGO_BIN_EXE_callwatch"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_callwatch")),
        };
        cmd.arg("run")
            .arg("-c")
            .arg(self.config_path())
            .current_dir(self.path())
            .stdin(Stdio::null())
            .stdout(log("stdout.log"))
            .stderr(log("stderr.log"));
        // The environment layers over the config file; CI's own
        // CALLWATCH_* settings must not leak into the daemon under test.
        for (k, _) in std::env::vars() {
            if k.starts_with("CALLWATCH_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd.spawn().expect("spawn callwatch");
        Proc {
            child,
            addr: self.addr,
        }
    }

    /// Spawns and waits until `/readyz` answers 200.
    pub async fn start(&self) -> Proc {
        let mut p = self.spawn();
        p.wait_ready(Duration::from_secs(60), self).await;
        p
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.path().join("stderr.log")).unwrap_or_default()
    }
}

/// Splits `toml` into the key lines of `[section]` and everything else.
fn split_section(toml: &str, section: &str) -> (String, String) {
    let header = format!("[{section}]");
    let (mut body, mut rest) = (String::new(), String::new());
    let mut inside = false;
    for line in toml.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = t == header;
            if inside {
                continue;
            }
        }
        let out = if inside { &mut body } else { &mut rest };
        out.push_str(line);
        out.push('\n');
    }
    (body, rest)
}

/// A running daemon process. Dropping it SIGKILLs it.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn wait_ready(&mut self, timeout: Duration, home: &Home) {
        let client = reqwest::Client::new();
        let url = format!("http://{}/readyz", self.addr);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "callwatch exited with {status} before ready; stderr:\n{}",
                    home.stderr()
                );
            }
            if let Ok(r) = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "callwatch not ready within {timeout:?}; stderr:\n{}",
                home.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends `signal` (a `kill -s` name such as `HUP`).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg("-s")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -s {signal} failed");
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example rules shipped in `rules/` whose names are in `names`.
pub fn example_rules(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("rules")
                .join(format!("{n}.rhai"));
            let source = std::fs::read_to_string(&path).expect("example rule");
            (n.to_string(), source)
        })
        .collect()
}

/// GETs `url` and parses the JSON answer.
pub async fn get_json(url: &str) -> serde_json::Value {
    reqwest::get(url)
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON answer")
}

/// Posts a `start_call` by `user` (call `call_id`, now) to `url`, a
/// daemon's `/callback` for app 1400000001; the daemon must answer.
pub async fn post_start_call(
    client: &reqwest::Client,
    url: &str,
    user: &str,
    call_id: &str,
) -> reqwest::Response {
    let body = serde_json::json!({
        "UserId": user, "CallId": call_id,
        "Role": "caller", "Event": "start_call", "EventTime": super::reload::now_secs(),
    });
    client
        .post(url)
        .body(body.to_string())
        .send()
        .await
        .expect("the daemon answers")
}

/// Writes `lines` to `path`, one per line.
pub fn write_lines(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create file"));
    for l in lines {
        writeln!(f, "{l}").expect("write line");
    }
    f.flush().expect("flush");
}
