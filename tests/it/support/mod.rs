//! Shared helpers: a daemon started in-process on `127.0.0.1:0` with a
//! temporary state dir, the real binary spawned with a generated config,
//! an HTTP client, Prometheus text lookups and the committed trace fixture.

pub mod nats;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tempfile::TempDir;
use tokio::sync::broadcast;

use callwatch::app::{self, Daemon};
use callwatch::config::Config;
use callwatch::event::Event;
use callwatch::ingest::decode::{self, Decoded};
use callwatch::journal::{self, Record};

/// The example rules shipped in `rules/`, by name. A list rather than a
/// directory listing: operators put their own rules next to these, and
/// the project's tests must not pick those up.
pub const EXAMPLES: &[&str] = &[
    "call_failure_spike",
    "call_flatline",
    "interruption_rate_by_platform",
    "missed_call_streak",
    "rejection_rate_by_platform",
    "short_calls",
    "slow_answer",
];

/// The exact success body (docs/callbacks.md).
pub const OK_BODY: &str =
    r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ErrorMessage":"Success"}"#;

/// An HTTP client that never goes through a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("building the HTTP client")
}

/// Current Unix time in seconds.
pub fn now_secs() -> i64 {
    callwatch::ingest::now_ms() / 1000
}

/// A reply: status, `Retry-After` (if any) and raw body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub text: String,
}

impl Reply {
    /// Reads a response's status, `Retry-After` and body.
    pub async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = resp.text().await.expect("reading the reply");
        Reply {
            status,
            retry_after,
            text,
        }
    }

    /// The body as JSON (failure bodies are JSON too).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {}", self.text))
    }

    /// Asserts the exact success reply (docs/callbacks.md).
    pub fn assert_ok(&self) {
        assert_eq!(
            (self.status, self.text.as_str()),
            (200, OK_BODY),
            "expected success"
        );
    }

    /// Asserts a failure reply (docs/callbacks.md) with `status` whose message
    /// mentions every one of `words`.
    pub fn assert_fail(&self, status: u16, words: &[&str]) {
        assert_eq!(self.status, status, "status of {}", self.text);
        let v = self.json();
        assert_eq!(v["ActionStatus"], "FAIL", "{}", self.text);
        let code = v["ErrorCode"].as_i64().expect("numeric ErrorCode");
        assert_ne!(code, 0, "{}", self.text);
        let msg = v["ErrorMessage"].as_str().expect("ErrorMessage string");
        assert_eq!(v["ErrorInfo"].as_str(), Some(msg), "{}", self.text);
        for w in words {
            assert!(msg.contains(w), "{msg:?} should mention {w:?}");
        }
    }
}

/// Posts `body` to `base` + `/callback?` + `query`.
pub async fn post(client: &reqwest::Client, base: &str, query: &str, body: &str) -> Reply {
    let resp = client
        .post(format!("{base}/callback?{query}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST /callback");
    Reply::read(resp).await
}

/// Posts one recorded callback (query and body as the journal and
/// `replay` hold them).
pub async fn post_record(
    client: &reqwest::Client,
    base: &str,
    query: &Map<String, Value>,
    body: &str,
) -> Reply {
    post(client, base, &query_string(query), body).await
}

/// GETs a path and returns status and body.
pub async fn get(client: &reqwest::Client, base: &str, path: &str) -> Reply {
    let resp = client
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    Reply::read(resp).await
}

/// A query string from pairs, URL-encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A query map (as the journal records it) as a URL query string.
pub fn query_string(q: &Map<String, Value>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in q {
        match v {
            Value::String(t) => s.append_pair(k, t),
            other => s.append_pair(k, &other.to_string()),
        };
    }
    s.finish()
}

/// The value of one Prometheus sample: `name` with (at least) `labels`.
/// Missing samples read as 0, as Prometheus treats absent counters.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// A config for tests: loopback, ephemeral port, everything under `dir`.
pub fn test_config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.state.dir = dir.join("state");
    c.rules.dir = dir.join("rules");
    std::fs::create_dir_all(&c.rules.dir).expect("creating the rules dir");
    c
}

/// The daemon running in this process.
pub struct TestDaemon {
    pub dir: TempDir,
    pub daemon: Daemon,
    pub base: String,
    pub client: reqwest::Client,
}

impl TestDaemon {
    /// Starts with the test config, adjusted by `tweak`.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestDaemon {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, tweak).await
    }

    /// Starts on an existing directory (to test restarts).
    pub async fn start_in(dir: TempDir, tweak: impl FnOnce(&mut Config)) -> TestDaemon {
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let daemon = app::start(config).await.expect("starting the daemon");
        let base = format!("http://{}", daemon.addr);
        TestDaemon {
            dir,
            daemon,
            base,
            client: client(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.daemon.ingest.subscribe()
    }

    pub async fn post(&self, query: &str, body: &str) -> Reply {
        post(&self.client, &self.base, query, body).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        get(&self.client, &self.base, path).await
    }

    pub async fn metrics(&self) -> String {
        let r = self.get("/metrics").await;
        assert_eq!(r.status, 200);
        r.text
    }

    /// Waits until `/readyz` answers 200: the engine reports ready once it
    /// has read the history back, which a loaded machine can delay.
    pub async fn wait_ready(&self, limit: Duration) -> Reply {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let r = self.get("/readyz").await;
            if r.status == 200 {
                return r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} not ready after {limit:?}: {}",
                self.base,
                r.text
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the daemon and hands back its directory.
    pub async fn stop(self) -> TempDir {
        self.daemon.shutdown().await.expect("clean shutdown");
        self.dir
    }
}

/// Waits for the next live event (with a timeout, so a lost event fails
/// the test instead of hanging it).
pub async fn next_event(rx: &mut broadcast::Receiver<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an event within 5 s")
        .expect("the event tap is open")
}

/// Asserts that no further event is waiting.
pub fn assert_no_event(rx: &mut broadcast::Receiver<Event>) {
    if let Ok(e) = rx.try_recv() {
        panic!("unexpected extra event {e:?}");
    }
}

/// Every record in the journal under `state`.
pub fn journal_records(state: &Path) -> Vec<Record> {
    journal::read_journal(state).expect("reading the journal")
}

/// Decodes a journaled record the way recovery and replay do.
pub fn decode_record(r: &Record) -> Decoded {
    decode::decode(&r.query, &r.body, r.received_at.unwrap_or(0))
        .unwrap_or_else(|e| panic!("journaled record does not decode: {e}: {r:?}"))
}

/// The committed trace (100 calls, seed 7, from the Python generator
/// `callwatch simulate` replaced), with every
/// time shifted so that the first callback arrives `secs_ago` seconds ago:
/// live posts need current event times.
pub fn fixture_trace(secs_ago: i64) -> Vec<Record> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trace_small.jsonl");
    let file = std::fs::File::open(&path).expect("opening the trace fixture");
    let records: Vec<Record> = journal::read_records("trace_small.jsonl", BufReader::new(file))
        .map(|r| r.expect("fixture line parses").1)
        .collect();
    let first = records
        .first()
        .and_then(|r| r.received_at)
        .expect("fixture has received_at");
    let delta_ms = callwatch::ingest::now_ms() - secs_ago * 1000 - first;
    let delta = delta_ms / 1000;
    records
        .into_iter()
        .map(|mut r| {
            r.received_at = r.received_at.map(|t| t + delta_ms);
            if let Some(body) = r.body.as_object_mut() {
                for k in ["EventTime", "StartCallTs", "AcceptTs", "EndTs"] {
                    if let Some(t) = body.get(k).and_then(Value::as_i64) {
                        body.insert(k.into(), Value::from(t + delta));
                    }
                }
            }
            r
        })
        .collect()
}

/// The real `callwatch` binary, spawned with a generated config file.
pub struct Spawned {
    pub dir: TempDir,
    pub child: Child,
    pub addr: SocketAddr,
    pub base: String,
    /// Log lines from stderr, collected by a thread.
    logs: std_mpsc::Receiver<String>,
}

impl Spawned {
    /// Spawns `callwatch run -c <generated file>`; `extra_toml` is appended
    /// to the file (sections other than `[server]`, `[state]`, `[rules]`
    /// and `[log]`, or keys for a trailing section).
    pub fn start(server_toml: &str, extra_toml: &str) -> Spawned {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let rules = dir.path().join("rules");
        std::fs::create_dir_all(&rules).expect("creating the rules dir");
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{server_toml}\n\n\
             [state]\ndir = {state:?}\n\n[rules]\ndir = {rules:?}\n\n\
             [log]\nformat = \"json\"\nlevel = \"info\"\n\n{extra_toml}\n"
        );
        let path = dir.path().join("callwatch.toml");
        std::fs::write(&path, config).expect("writing the config");

        let mut cmd = Command::new(env!("CARGO_BIN_EXE_callwatch"));
        cmd.arg("run")
            .arg("-c")
            .arg(&path)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("CALLWATCH_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("spawning callwatch");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, logs) = std_mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut spawned = Spawned {
            dir,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            base: String::new(),
            logs,
        };
        spawned.addr = spawned.wait_listening();
        spawned.base = format!("http://{}", spawned.addr);
        spawned
    }

    /// Reads log lines until the "listening" line and returns its address.
    fn wait_listening(&mut self) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.logs.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if v["fields"]["message"] == "callwatch listening" {
                            if let Some(addr) = v["fields"]["addr"].as_str() {
                                return addr.parse().expect("listening address");
                            }
                        }
                    }
                    seen.push(line);
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!("callwatch exited with {status} before listening: {seen:#?}");
                    }
                }
                Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("callwatch closed stderr before listening: {seen:#?}")
                }
            }
        }
        panic!("callwatch did not report listening within 30 s: {seen:#?}");
    }

    /// Polls `/healthz` until it answers 200.
    pub async fn wait_healthy(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", self.base)).send().await {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "/healthz never answered 200");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Sends a signal (`TERM`, `INT`, `HUP`...) with the `kill` utility.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for callwatch") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let logs: Vec<String> = self.logs.try_iter().collect();
                panic!("callwatch did not exit within {limit:?}; logs: {logs:#?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // Never leave a daemon behind a failed test.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
