//! callwatch nodes in cluster mode for the tests: in-process daemons
//! pointed at a real NATS cluster, posting with retries as Tencent does,
//! and reading the stream back through the real `callwatch export`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use callwatch::config::{ClusterConfig, Config};
use serde_json::Value;

use crate::support::{self, TestDaemon, EXAMPLES};

/// The `[cluster]` section for node `name` of a test cluster.
pub fn cluster_config(urls: &[String], name: &str) -> ClusterConfig {
    ClusterConfig {
        nats: urls.to_vec(),
        node: name.into(),
        retention: Duration::from_secs(3 * 3600),
        ..ClusterConfig::default()
    }
}

/// Copies the shipped example rules into `config`'s rules dir.
pub fn with_example_rules(config: &mut Config) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in EXAMPLES {
        let file = format!("{name}.rhai");
        std::fs::copy(repo.join("rules").join(&file), config.rules.dir.join(&file))
            .expect("copying a shipped rule");
    }
}

/// Starts `n` nodes on the NATS cluster at `urls`, each adjusted by
/// `tweak`, and waits until every one is ready.
pub async fn start_nodes(
    urls: &[String],
    n: usize,
    tweak: impl Fn(&mut Config),
) -> Vec<TestDaemon> {
    let mut nodes = Vec::new();
    for i in 0..n {
        let node = TestDaemon::start(|c| {
            c.cluster = Some(cluster_config(urls, &format!("cw-{i}")));
            tweak(c);
        })
        .await;
        nodes.push(node);
    }
    for node in &nodes {
        node.wait_ready(Duration::from_secs(30)).await;
    }
    nodes
}

/// A config file naming only the NATS cluster, for `export` and `replay`.
pub fn cli_config(dir: &Path, urls: &[String], rules: &Path) -> PathBuf {
    let nats = urls
        .iter()
        .map(|u| format!("{u:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let path = dir.join("cli.toml");
    std::fs::write(
        &path,
        format!(
            "[rules]\ndir = {rules:?}\n\n[cluster]\nnats = [{nats}]\nnode = \"cli\"\nretention = \"3h\"\n"
        ),
    )
    .expect("writing the CLI config");
    path
}

/// Runs the real binary; panics with its stderr unless it succeeds.
pub fn callwatch(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("running callwatch");
    assert!(
        out.status.success(),
        "callwatch {args:?}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The stream's lines through `callwatch export`.
pub fn export(dir: &Path, config: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["export", "-c", config.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    let out = callwatch(dir, &args);
    String::from_utf8(out)
        .expect("utf-8 export")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an exported line is JSON"))
        .collect()
}

/// A recorded callback's identity in these tests: its body, as JSON text
/// (the stream keeps the body as received).
pub fn body_key(line: &Value) -> String {
    line["body"].to_string()
}

/// Asserts that the stream (read through `export` with the CLI config
/// `cli`) holds each `accepted` line of `trace` exactly once and nothing
/// else, and writes it to `accepted.jsonl` in `dir` for `replay`; returns
/// that file.
pub fn assert_stream_holds_once(
    dir: &Path,
    cli: &Path,
    trace: &[Value],
    accepted: &BTreeSet<usize>,
) -> PathBuf {
    let stream = export(dir, cli, &[]);
    let mut in_stream: HashMap<String, usize> = HashMap::new();
    for l in &stream {
        *in_stream.entry(body_key(l)).or_default() += 1;
    }
    for i in accepted {
        let n = in_stream.get(&body_key(&trace[*i])).copied().unwrap_or(0);
        assert_eq!(n, 1, "line {i} is in the stream {n} times");
    }
    assert_eq!(
        stream.len(),
        accepted.len(),
        "the stream holds extra messages"
    );
    let exported = dir.join("accepted.jsonl");
    let text: String = stream.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&exported, text).expect("writing the export");
    exported
}

/// Waits until the node's engine has the whole stream.
pub async fn wait_caught_up(node: &TestDaemon, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let m = node.metrics().await;
        let lag = support::metric(&m, "callwatch_cluster_stream_lag_messages", &[]);
        let depth = support::metric(&m, "callwatch_queue_depth", &[]);
        if lag == 0.0 && depth == 0.0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {} still {lag} messages behind, {depth} queued, after {limit:?}",
            node.base
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until exactly one of `n` nodes says it leads (`leads(i)`); its
/// index. Two at once fail the test.
pub async fn one_leader<F, Fut>(n: usize, leads: F, limit: Duration) -> usize
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        let mut leading = Vec::new();
        for i in 0..n {
            if leads(i).await {
                leading.push(i);
            }
        }
        assert!(leading.len() <= 1, "two leaders: {leading:?}");
        if let [one] = leading[..] {
            return one;
        }
        assert!(start.elapsed() < limit, "no leader within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
