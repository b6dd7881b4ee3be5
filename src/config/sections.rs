//! The plain config sections, each with its defaults: `[server]`,
//! `[[apps]]`, `[rules]`, `[state]`, `[alerting]`, `[smtp]` and `[log]`.
//! Checks across keys live in `Config::validate` (mod.rs).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::allow;
use super::env::lenient_string;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server binds.
    pub listen: String,
    /// Path of the TRTC callback endpoint.
    pub callback_path: String,
    /// Larger callback bodies are refused with 413.
    pub max_body_bytes: u64,
    /// Allowed distance between `requesttime` (and event times) and now.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Identical deliveries within this window are acknowledged once.
    #[serde(with = "humantime_serde")]
    pub dedup_window: Duration,
    /// Upper bound on remembered delivery keys; the oldest are forgotten first.
    pub dedup_max_entries: usize,
    /// Bearer token for `/api/*`; empty serves loopback clients only.
    #[serde(deserialize_with = "lenient_string")]
    pub admin_token: String,
    /// How long shutdown may take in all: in-flight requests, then the
    /// engine queue, then notifications; what is left is recovered at the
    /// next start.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Accepted callbacks waiting for the rule engine; when full, `/callback` answers 503.
    pub queue_capacity: usize,
    /// Peers allowed to post callbacks (CIDRs); empty allows any.
    pub callback_allow: Vec<allow::AllowNet>,
    /// Open connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// A request's headers must arrive within this long of its first byte.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection with no request in progress is closed after this long.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Base URL people reach callwatch at (e.g. `https://callwatch.example.com`);
    /// alerts then link to `{external_url}/ui/alerts/{fingerprint}`. Empty: no links.
    #[serde(deserialize_with = "lenient_string")]
    pub external_url: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            callback_path: "/callback".into(),
            max_body_bytes: 64 * 1024,
            max_clock_skew: Duration::from_secs(60),
            dedup_window: Duration::from_secs(600),
            dedup_max_entries: 1_000_000,
            admin_token: String::new(),
            shutdown_timeout: Duration::from_secs(10),
            queue_capacity: 65_536,
            callback_allow: Vec::new(),
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            external_url: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The TRTC SDKAppID.
    pub sdkappid: u64,
    /// Callback authentication token; empty disables the sign check.
    #[serde(default, deserialize_with = "lenient_string")]
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// Directory of `*.rhai` rule files.
    pub dir: PathBuf,
    /// Period of the engine tick that expires windows and resolves alerts.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// Rhai operations allowed per call of `check` or `filter`.
    pub max_operations: u64,
    /// Maximum expression nesting depth in a rule.
    pub max_expr_depth: usize,
    /// Maximum function call depth (recursion) in a rule.
    pub max_call_depth: usize,
    /// Maximum string length a rule may build, in bytes.
    pub max_string_size: usize,
    /// Maximum array length a rule may build.
    pub max_array_size: usize,
    /// Maximum map size a rule may build.
    pub max_map_size: usize,
    /// Events kept per window and key; the oldest are dropped beyond it.
    pub max_events_per_key: usize,
    /// Keys a rule tracks at most unless its `RULE.max_keys` says otherwise.
    pub max_keys_per_rule: usize,
    /// Share of the engine thread's time one rule may take over
    /// `cpu_budget_window` before it is suspended; 0 disables the check.
    pub cpu_budget: f64,
    /// The window over which `cpu_budget` is measured.
    #[serde(with = "humantime_serde")]
    pub cpu_budget_window: Duration,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            dir: "rules".into(),
            tick: Duration::from_secs(10),
            max_operations: 100_000,
            max_expr_depth: 64,
            max_call_depth: 32,
            max_string_size: 64 * 1024,
            max_array_size: 10_000,
            max_map_size: 10_000,
            max_events_per_key: 10_000,
            max_keys_per_rule: 100_000,
            cpu_budget: 0.5,
            cpu_budget_window: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// fsync after every record before acknowledging it.
    Always,
    /// Group commit: one fsync covers every record written since the last.
    Batch,
    /// Leave flushing to the OS (survives a process crash, not a power cut).
    Never,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory for the journal and the embedded store.
    pub dir: PathBuf,
    /// When journal writes reach the disk.
    pub fsync: FsyncPolicy,
    /// A journal segment is closed and a new one started past this size.
    pub segment_bytes: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            dir: "data".into(),
            fsync: FsyncPolicy::Batch,
            segment_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// Re-notify a firing alert this often unless the rule says otherwise.
    #[serde(with = "humantime_serde")]
    pub repeat: Duration,
    /// Labels whose values put alerts into the same notification.
    pub group_by: Vec<String>,
    /// How long a new group waits for more alerts before the first notification.
    #[serde(with = "humantime_serde")]
    pub group_wait: Duration,
    /// Minimum time between notifications of a group that changed.
    #[serde(with = "humantime_serde")]
    pub group_interval: Duration,
    /// Stop retrying a notification after this long.
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    /// Longest wait between two attempts of a failing notification: the
    /// backoff doubles from 1 s up to this, and a service's `Retry-After`
    /// is honoured up to this too (never past the give-up time).
    #[serde(with = "humantime_serde")]
    pub max_retry_interval: Duration,
    /// Notifications kept queued per receiver at most; past it the oldest
    /// is dropped (logged and counted as `outcome="dropped"`).
    pub max_queued_per_receiver: usize,
    /// Receivers for alerts no rule `notify` or route claims.
    pub default_receivers: Vec<String>,
    /// Most events an alert carries as `evidence` (the newest of its window).
    pub evidence_events: usize,
    /// IANA time zone notifications show times in (`UTC`, `Asia/Shanghai`…).
    pub timezone: String,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        AlertingConfig {
            repeat: Duration::from_secs(4 * 3600),
            group_by: vec!["rule".into()],
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            give_up_after: Duration::from_secs(24 * 3600),
            max_retry_interval: Duration::from_secs(300),
            max_queued_per_receiver: 10_000,
            default_receivers: vec!["log".into()],
            evidence_events: 5,
            timezone: "UTC".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    None,
    Starttls,
    Tls,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// SMTP server host name.
    #[serde(deserialize_with = "lenient_string")]
    pub host: String,
    /// SMTP server port.
    pub port: u16,
    /// Transport security.
    pub security: SmtpSecurity,
    /// AUTH user; empty disables AUTH.
    #[serde(deserialize_with = "lenient_string")]
    pub username: String,
    /// AUTH password (prefer `CALLWATCH_SMTP__PASSWORD`).
    #[serde(deserialize_with = "lenient_string")]
    pub password: String,
    /// Envelope and header sender.
    #[serde(deserialize_with = "lenient_string")]
    pub from: String,
    /// Give up on one SMTP session after this long.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpConfig {
    // Hand-written so the password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("from", &self.from)
            .finish()
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: "localhost".into(),
            port: 25,
            security: SmtpSecurity::None,
            username: String::new(),
            password: String::new(),
            from: "callwatch@localhost".into(),
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log shippers.
    pub format: LogFormat,
    /// A tracing filter: `info`, `debug`, `callwatch=debug,warp=info`...
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}
