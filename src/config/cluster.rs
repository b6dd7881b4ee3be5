//! The `[cluster]` section: where the NATS JetStream servers are, how to
//! log in, and the stream and lease settings every node must share
//! (docs/cluster.md). Absent, callwatch runs as a single node.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Cluster mode over NATS JetStream.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:4222`, `tls://host:4222`).
    pub nats: Vec<String>,
    /// This node's name, unique in the cluster; default the host name.
    pub node: String,
    /// The JetStream stream of accepted callbacks.
    pub stream: String,
    /// JetStream replicas of the stream and the buckets.
    pub replicas: usize,
    /// How long the stream keeps callbacks: at least the widest rule
    /// window plus `server.dedup_window`, so a (re)starting node can
    /// rebuild its windows.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// The leader lease is renewed well within this; a leader that cannot
    /// renew in time stops delivering.
    #[serde(with = "humantime_serde")]
    pub leader_ttl: Duration,
    /// A NATS `.creds` file (JWT + nkey seed); empty for none.
    pub credentials: String,
    /// User and password for NATS; both or neither.
    pub user: String,
    pub password: String,
    /// A PEM file of CA certificates to trust for `tls://` servers.
    pub tls_ca: String,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("nats", &self.nats)
            .field("node", &self.node)
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("retention", &self.retention)
            .field("leader_ttl", &self.leader_ttl)
            .field("credentials", &self.credentials)
            .field("user", &self.user)
            .field(
                "password",
                &if self.password.is_empty() { "" } else { "***" },
            )
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nats: vec!["nats://127.0.0.1:4222".into()],
            node: host_name(),
            stream: "CALLWATCH".into(),
            replicas: 3,
            retention: Duration::from_secs(24 * 3600),
            leader_ttl: Duration::from_secs(5),
            credentials: String::new(),
            user: String::new(),
            password: String::new(),
            tls_ca: String::new(),
        }
    }
}

/// The host name's first label (a node name cannot hold dots), or
/// "callwatch" when it cannot be read.
fn host_name() -> String {
    // Linux's host name, as gethostname(2) gives it, without unsafe code.
    let raw = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "callwatch".into()
    } else {
        name
    }
}

/// A name JetStream takes for a stream, bucket or consumer: no spaces,
/// dots, wildcards or path separators.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl ClusterConfig {
    /// Checks the section on its own and against `server.dedup_window`
    /// (the stream's duplicate window). Whether `retention` also covers
    /// the widest rule window is checked once the rules are loaded
    /// ([`ClusterConfig::check_retention`]).
    pub fn validate(&self, dedup_window: Duration) -> Result<(), ConfigError> {
        if self.nats.is_empty() {
            return Err(invalid("cluster.nats", "needs at least one server URL"));
        }
        for (i, url) in self.nats.iter().enumerate() {
            let ok = ["nats://", "tls://", "ws://", "wss://"]
                .iter()
                .any(|p| url.starts_with(p) && url.len() > p.len());
            if !ok {
                return Err(invalid(
                    format!("cluster.nats[{i}]"),
                    format!("{url:?} must be a URL like nats://10.0.0.1:4222 (nats://, tls://, ws:// or wss://)"),
                ));
            }
        }
        if !valid_name(&self.node) {
            return Err(invalid(
                "cluster.node",
                format!(
                    "{:?} must be 1-64 letters, digits, '-' or '_' (it names this node's consumer)",
                    self.node
                ),
            ));
        }
        if !valid_name(&self.stream) {
            return Err(invalid(
                "cluster.stream",
                format!("{:?} must be 1-64 letters, digits, '-' or '_'", self.stream),
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(invalid(
                "cluster.replicas",
                format!(
                    "{} must be between 1 and 5 (JetStream's limit)",
                    self.replicas
                ),
            ));
        }
        if self.leader_ttl < Duration::from_secs(1) {
            return Err(invalid("cluster.leader_ttl", "must be at least 1s"));
        }
        if self.retention < dedup_window {
            return Err(invalid(
                "cluster.retention",
                format!(
                    "{} is shorter than server.dedup_window ({}): retried callbacks could be stored twice",
                    humantime::format_duration(self.retention),
                    humantime::format_duration(dedup_window)
                ),
            ));
        }
        if self.user.is_empty() != self.password.is_empty() {
            return Err(invalid(
                "cluster.user",
                "cluster.user and cluster.password go together: set both or neither",
            ));
        }
        if !self.credentials.is_empty() && !self.user.is_empty() {
            return Err(invalid(
                "cluster.credentials",
                "use either a credentials file or user/password, not both",
            ));
        }
        Ok(())
    }

    /// `retention` must cover the widest rule window plus the dedup
    /// window, or a restarting node would rebuild windows from a stream
    /// that has already dropped what they need.
    pub fn check_retention(
        &self,
        widest_window: Duration,
        dedup_window: Duration,
    ) -> Result<(), ConfigError> {
        let need = widest_window + dedup_window;
        if self.retention < need {
            return Err(invalid(
                "cluster.retention",
                format!(
                    "{} is shorter than the widest rule window ({}) plus server.dedup_window ({}): set at least {}",
                    humantime::format_duration(self.retention),
                    humantime::format_duration(widest_window),
                    humantime::format_duration(dedup_window),
                    humantime::format_duration(need)
                ),
            ));
        }
        Ok(())
    }

    /// The subject accepted callbacks are published on.
    pub fn subject(&self) -> String {
        format!("{}.callbacks", self.stream.to_ascii_lowercase())
    }

    /// The subject of the engine ticks, in the same stream so every node
    /// evaluates them at the same place among the callbacks.
    pub fn tick_subject(&self) -> String {
        format!("{}.ticks", self.stream.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(toml: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load_from(Some(&path), Vec::new())
    }

    #[test]
    fn default_node_is_a_valid_name() {
        let c = ClusterConfig::default();
        assert!(valid_name(&c.node), "{:?}", c.node);
    }

    #[test]
    fn absent_section_is_single_node() {
        assert!(load("").unwrap().cluster.is_none());
    }

    #[test]
    fn section_takes_defaults() {
        let c = load("[cluster]\nnats = [\"nats://10.0.0.1:4222\"]\nnode = \"cw-1\"\n")
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(c.stream, "CALLWATCH");
        assert_eq!(c.replicas, 3);
        assert_eq!(c.retention, Duration::from_secs(86400));
        assert_eq!(c.node, "cw-1");
        assert_eq!(c.subject(), "callwatch.callbacks");
    }

    #[test]
    fn errors_name_the_key() {
        for (toml, key) in [
            ("[cluster]\nnats = []\n", "cluster.nats"),
            ("[cluster]\nnats = [\"10.0.0.1\"]\n", "cluster.nats[0]"),
            ("[cluster]\nreplicas = 7\n", "cluster.replicas"),
            ("[cluster]\nstream = \"a.b\"\n", "cluster.stream"),
            ("[cluster]\nuser = \"u\"\n", "cluster.user"),
            ("[cluster]\nretention = \"1s\"\n", "cluster.retention"),
            ("[cluster]\nleader_ttl = \"10ms\"\n", "cluster.leader_ttl"),
        ] {
            let e = load(toml).unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
        let e = load("[cluster]\nnat = []\n").unwrap_err().to_string();
        assert!(e.contains("nat"), "{e}");
    }

    #[test]
    fn retention_must_cover_widest_window() {
        let c = ClusterConfig {
            retention: Duration::from_secs(3600),
            ..ClusterConfig::default()
        };
        let e = c
            .check_retention(Duration::from_secs(3600), Duration::from_secs(60))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster.retention"), "{e}");
        assert!(c
            .check_retention(Duration::from_secs(1800), Duration::from_secs(60))
            .is_ok());
    }
}
