//! Configuration: `Config`, the whole file, and its load and validate
//! orchestration. The sections are in `sections.rs`, receivers and routes
//! in `receivers.rs`, the file/env layering in `env.rs`. It does no other
//! I/O: binding sockets, building SMTP clients and compiling rules happen
//! in `daemon`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::quiet::{InhibitRule, TimeInterval};

pub mod allow;
mod changes;
mod cluster;
mod console;
mod env;
mod quiet;
mod receivers;
mod sections;
mod source;
#[cfg(test)]
pub(crate) mod tests;

pub use changes::LIVE_KEYS;
pub use cluster::ClusterConfig;
pub use console::ConsoleConfig;
pub use receivers::{ReceiverConfig, ReceiverKind, RouteConfig};
pub use sections::{
    AlertingConfig, AppConfig, FsyncPolicy, LogConfig, LogFormat, RulesConfig, ServerConfig,
    SmtpConfig, SmtpSecurity, StateConfig,
};
pub use source::ConfigSource;

/// Where the config file is looked for when `-c` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "config/callwatch.toml";

/// A configuration problem, always naming the key or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0}: not found")]
    Missing(PathBuf),
    #[error("config: {0}")]
    Figment(String),
    #[error("config key {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP listener and callback checks.
    pub server: ServerConfig,
    /// TRTC applications allowed to post callbacks; empty accepts any.
    pub apps: Vec<AppConfig>,
    /// Rule loading and evaluation.
    pub rules: RulesConfig,
    /// Journal and embedded store.
    pub state: StateConfig,
    /// Alert lifecycle, grouping and delivery.
    pub alerting: AlertingConfig,
    /// SMTP server used by every `email` receiver.
    pub smtp: SmtpConfig,
    /// Where notifications go.
    pub receivers: Vec<ReceiverConfig>,
    /// Label-based routing of alerts to receivers.
    pub routes: Vec<RouteConfig>,
    /// While a source alert fires, matching target alerts are not sent.
    pub inhibit_rules: Vec<InhibitRule>,
    /// Named times that routes mute by or are active in.
    pub time_intervals: Vec<TimeInterval>,
    /// Logging.
    pub log: LogConfig,
    /// Cluster mode over NATS JetStream; absent means a single node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    /// What the web console's data endpoints may cost.
    pub console: ConsoleConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            apps: Vec::new(),
            rules: RulesConfig::default(),
            state: StateConfig::default(),
            alerting: AlertingConfig::default(),
            smtp: SmtpConfig::default(),
            receivers: vec![ReceiverConfig {
                name: "log".into(),
                send_resolved: true,
                timeout: Duration::from_secs(10),
                rate_limit_per_minute: 0,
                kind: ReceiverKind::Log,
            }],
            routes: Vec::new(),
            inhibit_rules: Vec::new(),
            time_intervals: Vec::new(),
            log: LogConfig::default(),
            cluster: None,
            console: ConsoleConfig::default(),
        }
    }
}

impl Config {
    /// Loads defaults, then `path` (or `config/callwatch.toml` when present),
    /// then the environment, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let file = Self::file_for(path)?;
        Self::load_from(file.as_deref(), std::env::vars())
    }

    /// The file [`Config::load`] reads for `path`: `path` itself, else
    /// `config/callwatch.toml` when present; `None` means built-in defaults.
    pub fn file_for(path: Option<&Path>) -> Result<Option<PathBuf>, ConfigError> {
        Ok(match path {
            Some(p) if !p.exists() => return Err(ConfigError::Missing(p.to_path_buf())),
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
        })
    }

    /// Like [`Config::load`] but with the environment passed in, for tests.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            fig = fig.merge(Toml::file_exact(f));
        }
        let map = env::env_layer(env);
        if !map.is_empty() {
            fig = fig.merge(Serialized::defaults(map));
        }
        let mut config: Config = fig
            .extract()
            .map_err(|e| ConfigError::Figment(env::figment_message(&e)))?;
        // The `log` receiver always exists, so `default_receivers = ["log"]`
        // stays valid when a file adds its own receivers.
        if config.receiver("log").is_none() {
            config.receivers.extend(Config::default().receivers);
        }
        config.validate()?;
        Ok(config)
    }

    /// Cross-field checks that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if !self.server.callback_path.starts_with('/') {
            return Err(invalid("server.callback_path", "must start with '/'"));
        }
        if self.server.max_body_bytes == 0 {
            return Err(invalid("server.max_body_bytes", "must be greater than 0"));
        }
        if self.server.queue_capacity == 0 {
            return Err(invalid("server.queue_capacity", "must be greater than 0"));
        }
        if self.alerting.max_retry_interval.is_zero() {
            return Err(invalid(
                "alerting.max_retry_interval",
                "must be greater than 0",
            ));
        }
        if self.alerting.max_queued_per_receiver == 0 {
            return Err(invalid(
                "alerting.max_queued_per_receiver",
                "must be greater than 0",
            ));
        }
        self.timezone()?;
        let url = &self.server.external_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "server.external_url",
                format!("{url:?} must start with http:// or https://"),
            ));
        }
        if self.rules.tick.is_zero() {
            return Err(invalid("rules.tick", "must be greater than 0"));
        }
        self.validate_limits()?;
        self.validate_console()?;
        let mut seen_apps = std::collections::HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            if !seen_apps.insert(app.sdkappid) {
                return Err(invalid(
                    format!("apps[{i}].sdkappid"),
                    format!("{} configured twice", app.sdkappid),
                ));
            }
        }
        self.validate_receivers()?;
        if let Some(c) = &self.cluster {
            c.validate(self.server.dedup_window)?;
        }
        self.validate_quiet()
    }

    /// Connection, key and CPU limits: each positive (the CPU budget a
    /// share of one thread, 0 meaning off).
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let (s, r) = (&self.server, &self.rules);
        for (key, zero) in [
            ("server.max_connections", s.max_connections == 0),
            (
                "server.header_read_timeout",
                s.header_read_timeout.is_zero(),
            ),
            ("server.idle_timeout", s.idle_timeout.is_zero()),
            ("rules.max_keys_per_rule", r.max_keys_per_rule == 0),
            ("rules.cpu_budget_window", r.cpu_budget_window.is_zero()),
        ] {
            if zero {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if !(0.0..=1.0).contains(&r.cpu_budget) {
            return Err(invalid(
                "rules.cpu_budget",
                "must be a share between 0 (off) and 1 (the whole engine thread)",
            ));
        }
        Ok(())
    }

    /// `alerting.timezone` as a time zone.
    pub fn timezone(&self) -> Result<jiff::tz::TimeZone, ConfigError> {
        let name = &self.alerting.timezone;
        jiff::tz::TimeZone::get(name).map_err(|e| {
            invalid(
                "alerting.timezone",
                format!("{name:?} is not an IANA time zone name (e.g. UTC, Asia/Shanghai): {e}"),
            )
        })
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server
            .listen
            .parse()
            .map_err(|e| invalid("server.listen", format!("{:?}: {e}", self.server.listen)))
    }

    /// Looks up a receiver by name.
    pub fn receiver(&self, name: &str) -> Option<&ReceiverConfig> {
        self.receivers.iter().find(|r| r.name == name)
    }
}
