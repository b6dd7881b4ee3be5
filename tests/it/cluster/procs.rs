//! callwatch cluster nodes as real processes (`callwatch run`, each with
//! its own config, rules and state dir) on a real NATS cluster, so a test
//! can SIGKILL one mid-stream and restart it on the same port and state.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::service::daemon::{Home, Proc};
use crate::support;

/// One node: its home (config, rules, state) and, while it runs, its process.
pub struct Node {
    pub name: String,
    pub home: Home,
    pub proc: Option<Proc>,
}

/// The config sections of a node besides `[server]`/`[rules]`/`[state]`:
/// one webhook receiver `ops` at `hook`, every alert its own group sent
/// at once and its news too, and `[cluster]` on `urls` with `leader_ttl`.
pub fn node_toml(urls: &[String], name: &str, hook: &str, ttl: Duration) -> String {
    let nats = urls
        .iter()
        .map(|u| format!("{u:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[log]\nformat = \"json\"\nlevel = \"info\"\n\n\
         [alerting]\ngroup_by = [\"rule\", \"user_id\"]\ngroup_wait = \"0s\"\n\
         group_interval = \"0s\"\ndefault_receivers = [\"ops\"]\n\n\
         [[receivers]]\nname = \"ops\"\ntype = \"webhook\"\nurl = {hook:?}\n\n\
         [cluster]\nnats = [{nats}]\nnode = {name:?}\nretention = \"3h\"\n\
         leader_ttl = \"{}ms\"\n",
        ttl.as_millis()
    )
}

impl Node {
    /// Writes the node's home with `rules` and starts it; waits for ready.
    pub async fn start(rules: &[(String, String)], name: &str, toml: &str) -> Node {
        let home = Home::new(rules, toml);
        let proc = home.start().await;
        Node {
            name: name.into(),
            home,
            proc: Some(proc),
        }
    }

    pub fn base(&self) -> String {
        self.home.url("")
    }

    /// SIGKILL: no shutdown, no lease handed on, nothing flushed.
    pub fn sigkill(&mut self) {
        if let Some(p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts the process again on the same port, config and state.
    pub async fn restart(&mut self) {
        assert!(self.proc.is_none(), "{} is running", self.name);
        self.proc = Some(self.home.start().await);
    }

    pub async fn metrics(&self) -> String {
        let r = support::client()
            .get(self.home.url("/metrics"))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match r {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Whether it says it holds the lease (false when down).
    pub async fn leads(&self) -> bool {
        self.proc.is_some()
            && support::metric(&self.metrics().await, "callwatch_cluster_leader", &[]) == 1.0
    }

    /// Waits until its engine has the whole stream and an empty queue.
    pub async fn wait_caught_up(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let m = self.metrics().await;
            let lag = support::metric(&m, "callwatch_cluster_stream_lag_messages", &[]);
            let depth = support::metric(&m, "callwatch_queue_depth", &[]);
            if !m.is_empty() && lag == 0.0 && depth == 0.0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} still {lag} messages behind, {depth} queued, after {limit:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `GET path` as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        crate::service::daemon::get_json(&self.home.url(path)).await
    }
}

/// Waits until exactly one running node leads; its index.
pub async fn leader(nodes: &[Node], limit: Duration) -> usize {
    super::nodes::one_leader(nodes.len(), |i| nodes[i].leads(), limit).await
}

/// Posts one recorded callback as Tencent behind a load balancer would:
/// to `bases[first]`, and on a refused connection or a 503 to the next
/// node, until a 200 or `limit`. Returns the last status (0: no answer).
pub async fn post_any(
    http: &reqwest::Client,
    bases: &[String],
    first: usize,
    line: &Value,
    limit: Duration,
) -> u16 {
    let query = line["query"].as_object().expect("query object");
    let url = |i: usize| {
        format!(
            "{}/callback?{}",
            bases[i % bases.len()],
            support::query_string(query)
        )
    };
    let body = line["body"].to_string();
    let deadline = Instant::now() + limit;
    let mut i = first;
    loop {
        let r = http
            .post(url(i))
            .header("content-type", "application/json")
            .body(body.clone())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let status = match r {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        if status == 200 || (status != 503 && status != 0) || Instant::now() >= deadline {
            return status;
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
