//! Configuration: the serde structs that mirror `config/callwatch.toml`, the
//! figment layering (built-in defaults, then the TOML file, then
//! `CALLWATCH_<SECTION>__<KEY>` environment variables) and a pure
//! `validate()` that checks cross-references. It does no other I/O: binding
//! sockets, building SMTP clients and compiling rules happen in `app`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Deserializer, Serialize};

use crate::quiet::{InhibitRule, LabelPattern, TimeInterval};

pub mod allow;
mod console;
mod quiet;
mod source;
pub use source::ConfigSource;

pub use console::ConsoleConfig;

/// The top-level sections, which environment variables may address.
const SECTIONS: &[&str] = &[
    "server",
    "apps",
    "rules",
    "state",
    "alerting",
    "smtp",
    "receivers",
    "routes",
    "inhibit_rules",
    "time_intervals",
    "log",
    "console",
];

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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
            console: ConsoleConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The TRTC SDKAppID.
    pub sdkappid: u64,
    /// Callback authentication token; empty disables the sign check.
    #[serde(default, deserialize_with = "lenient_string")]
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Clone, Serialize, Deserialize)]
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

fn default_true() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// One notification target.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverConfig {
    /// Name used by routes, rule `notify` and `default_receivers`.
    pub name: String,
    /// Also notify when an alert resolves.
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Per-attempt timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Messages per minute at most (0 = the service's documented limit, if any).
    #[serde(default)]
    pub rate_limit_per_minute: u32,
    #[serde(flatten)]
    pub kind: ReceiverKind,
}

// serde cannot combine `flatten` with `deny_unknown_fields`, so the common
// keys are taken out by hand and the rest must match one kind exactly.
impl<'de> Deserialize<'de> for ReceiverConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let name = match map.remove("name") {
            Some(serde_json::Value::String(s)) => s,
            Some(_) => return Err(D::Error::custom("`name` must be a string")),
            None => return Err(D::Error::missing_field("name")),
        };
        let send_resolved = match map.remove("send_resolved") {
            None => default_true(),
            Some(v) => serde_json::from_value(v)
                .map_err(|e| D::Error::custom(format!("send_resolved: {e}")))?,
        };
        let timeout = match map.remove("timeout") {
            None => default_timeout(),
            Some(serde_json::Value::String(s)) => humantime::parse_duration(&s)
                .map_err(|e| D::Error::custom(format!("timeout: {e}")))?,
            Some(_) => return Err(D::Error::custom("timeout: expected a duration string")),
        };
        let rate_limit_per_minute = match map.remove("rate_limit_per_minute") {
            None => 0,
            Some(v) => serde_json::from_value(v)
                .map_err(|e| D::Error::custom(format!("rate_limit_per_minute: {e}")))?,
        };
        let kind = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| D::Error::custom(format!("receiver {name:?}: {e}")))?;
        Ok(ReceiverConfig {
            name,
            send_resolved,
            timeout,
            rate_limit_per_minute,
            kind,
        })
    }
}

/// The receiver kinds (docs/alerts.md), a closed set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ReceiverKind {
    Log,
    Email {
        to: Vec<String>,
    },
    Webhook {
        url: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    Slack {
        url: String,
    },
    Wecom {
        url: String,
    },
    Dingtalk {
        url: String,
        #[serde(default, deserialize_with = "lenient_string")]
        secret: String,
    },
    Feishu {
        url: String,
        #[serde(default, deserialize_with = "lenient_string")]
        secret: String,
    },
    Discord {
        url: String,
    },
    Teams {
        url: String,
    },
    Telegram {
        #[serde(deserialize_with = "lenient_string")]
        bot_token: String,
        #[serde(deserialize_with = "lenient_string")]
        chat_id: String,
        /// Bot API base URL; overridable for tests and proxies.
        #[serde(default = "telegram_api")]
        api_url: String,
    },
    Alertmanager {
        url: String,
    },
}

fn telegram_api() -> String {
    "https://api.telegram.org".into()
}

impl ReceiverKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            ReceiverKind::Log => "log",
            ReceiverKind::Email { .. } => "email",
            ReceiverKind::Webhook { .. } => "webhook",
            ReceiverKind::Slack { .. } => "slack",
            ReceiverKind::Wecom { .. } => "wecom",
            ReceiverKind::Dingtalk { .. } => "dingtalk",
            ReceiverKind::Feishu { .. } => "feishu",
            ReceiverKind::Discord { .. } => "discord",
            ReceiverKind::Teams { .. } => "teams",
            ReceiverKind::Telegram { .. } => "telegram",
            ReceiverKind::Alertmanager { .. } => "alertmanager",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Labels that must all equal the alert's.
    #[serde(rename = "match", default)]
    pub matchers: BTreeMap<String, String>,
    /// Labels whose values must all match these regexes (anchored; an
    /// absent label counts as empty).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_re: BTreeMap<String, LabelPattern>,
    /// Receivers for matching alerts.
    pub receivers: Vec<String>,
    /// Keep looking at later routes after a match.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    /// `[[time_intervals]]` names: not sent to this route's receivers
    /// while any of them contains now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mute_time_intervals: Vec<String>,
    /// `[[time_intervals]]` names: if set, sent to this route's receivers
    /// only while one of them contains now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_time_intervals: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

/// Accepts a string, or a number/bool and keeps its text. figment parses
/// environment values as TOML, so `CALLWATCH_SMTP__PASSWORD=12345` arrives
/// as an integer; a secret must still be the string the operator typed.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }
    Ok(match Lenient::deserialize(d)? {
        Lenient::S(s) => s,
        Lenient::I(i) => i.to_string(),
        Lenient::U(u) => u.to_string(),
        Lenient::F(f) => f.to_string(),
        Lenient::B(b) => b.to_string(),
    })
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
        // Environment values are parsed like figment's `Env` provider does
        // (as TOML values), but from an iterator so tests can inject them.
        let mut map = figment::value::Dict::new();
        for (k, v) in env {
            let Some(rest) = k.strip_prefix("CALLWATCH_") else {
                continue;
            };
            // Config variables name a section (`CALLWATCH_SMTP__PASSWORD`,
            // or a whole section such as `CALLWATCH_APPS`). Other
            // `CALLWATCH_*` variables (test switches, wrapper scripts) are
            // not config and must not be rejected as unknown keys.
            let section = rest.split("__").next().unwrap_or("").to_ascii_lowercase();
            if !SECTIONS.contains(&section.as_str()) {
                continue;
            }
            let value = v
                .parse::<figment::value::Value>()
                .unwrap_or_else(|_| figment::value::Value::from(v.clone()));
            insert_path(&mut map, &rest.to_ascii_lowercase(), value);
        }
        if !map.is_empty() {
            fig = fig.merge(Serialized::defaults(map));
        }
        let mut config: Config = fig
            .extract()
            .map_err(|e| ConfigError::Figment(figment_message(&e)))?;
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
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            if r.name.is_empty() {
                return Err(invalid(format!("receivers[{i}].name"), "must not be empty"));
            }
            if !names.insert(r.name.as_str()) {
                return Err(invalid(
                    format!("receivers[{i}].name"),
                    format!("receiver {:?} defined twice", r.name),
                ));
            }
            if let ReceiverKind::Email { to } = &r.kind {
                if to.is_empty() {
                    return Err(invalid(format!("receivers[{i}].to"), "needs an address"));
                }
            }
        }
        let known = |n: &str| names.contains(n);
        for n in &self.alerting.default_receivers {
            if !known(n) {
                return Err(invalid(
                    "alerting.default_receivers",
                    format!("unknown receiver {n:?}"),
                ));
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            for (j, n) in route.receivers.iter().enumerate() {
                if !known(n) {
                    let hint = crate::quiet::did_you_mean(n, names.iter().copied());
                    return Err(invalid(
                        format!("routes[{i}].receivers[{j}]"),
                        format!("unknown receiver {n:?}{hint}"),
                    ));
                }
            }
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

fn insert_path(map: &mut figment::value::Dict, path: &str, value: figment::value::Value) {
    match path.split_once("__") {
        None => {
            map.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let entry = map
                .entry(head.to_string())
                .or_insert_with(|| figment::value::Dict::new().into());
            if let figment::value::Value::Dict(_, inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// figment's errors carry the key path; render it as `key: message`.
fn figment_message(e: &figment::Error) -> String {
    e.clone()
        .into_iter()
        .map(|err| {
            let key = err.path.join(".");
            let source = err
                .metadata
                .as_ref()
                .and_then(|m| m.source.as_ref())
                .map(|s| format!(" (from {s})"))
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{source}", err.kind)
            } else {
                format!("key {key}: {}{source}", err.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn load_str(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).expect("write");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load_from(Some(&path), env)
    }

    #[test]
    fn defaults_have_log_receiver() {
        let c = load_str("", &[]).expect("defaults load");
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.receivers.len(), 1);
        assert_eq!(c.receivers[0].name, "log");
        assert_eq!(c.alerting.default_receivers, vec!["log"]);
        assert_eq!(c.state.fsync, FsyncPolicy::Batch);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load_str("[server]\nlisten_port = 3\n", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("listen_port"), "{msg}");
        let err = load_str("[nope]\n", &[]).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn durations_are_strings() {
        let c = load_str("[server]\nmax_clock_skew = \"90s\"\n", &[]).expect("load");
        assert_eq!(c.server.max_clock_skew, Duration::from_secs(90));
        let err = load_str("[server]\nmax_clock_skew = \"soon\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("max_clock_skew"), "{err}");
    }

    #[test]
    fn env_overrides_and_numeric_secrets_stay_strings() {
        let c = load_str(
            "[smtp]\npassword = \"file\"\n",
            &[
                ("CALLWATCH_SMTP__PASSWORD", "12345"),
                ("CALLWATCH_SERVER__LISTEN", "127.0.0.1:9999"),
                ("CALLWATCH_RULES__TICK", "5s"),
                // Not config: no such section, so it is left alone.
                ("CALLWATCH_REQUIRE_SMTP", "1"),
            ],
        )
        .expect("load");
        assert_eq!(c.smtp.password, "12345");
        assert_eq!(c.server.listen, "127.0.0.1:9999");
        assert_eq!(c.rules.tick, Duration::from_secs(5));
        assert!(!format!("{:?}", c.smtp).contains("12345"));
    }

    #[test]
    fn receivers_and_routes_are_checked() {
        let c = load_str(
            r#"
[[receivers]]
name = "ops"
type = "webhook"
url = "http://127.0.0.1:9/hook"
[alerting]
default_receivers = ["ops"]
"#,
            &[],
        )
        .expect("load");
        assert!(matches!(c.receivers[0].kind, ReceiverKind::Webhook { .. }));
        let err = load_str(
            "[[routes]]\nmatch = { severity = \"critical\" }\nreceivers = [\"ghost\"]\n",
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("routes[0].receivers"), "{err}");
        let err = load_str("[[receivers]]\nname = \"x\"\ntype = \"pager\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("pager"), "{err}");
    }

    #[test]
    fn unknown_key_inside_a_section_from_env_is_named() {
        let err = load_str("", &[("CALLWATCH_SERVER__LISTN", "x")]).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }

    #[test]
    fn callback_allow_parses_and_bad_cidr_names_the_key() {
        let c = load_str(
            "[server]\ncallback_allow = [\"10.0.0.0/8\", \"127.0.0.1\"]\n",
            &[],
        )
        .expect("load");
        assert_eq!(c.server.callback_allow.len(), 2);
        assert!(c.server.callback_allow[1].contains("127.0.0.1".parse().expect("ip")));
        let err = load_str("[server]\ncallback_allow = [\"10.0.0.0/40\"]\n", &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("server.callback_allow"), "{msg}");
        assert!(msg.contains("10.0.0.0/40"), "{msg}");
    }

    #[test]
    fn timezone_and_external_url_are_checked() {
        let c = load_str(
            "[alerting]\ntimezone = \"Asia/Shanghai\"\nevidence_events = 3\n\
             [server]\nexternal_url = \"https://cw.example.com/\"\n",
            &[],
        )
        .expect("load");
        assert_eq!(c.alerting.evidence_events, 3);
        assert!(c.timezone().is_ok());
        let err = load_str("[alerting]\ntimezone = \"Mars/Olympus\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("alerting.timezone"), "{err}");
        let err = load_str("[server]\nexternal_url = \"cw.example.com\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("server.external_url"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/callwatch.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/callwatch.toml"));
    }

    #[test]
    fn shipped_config_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
        let c = Config::load_from(Some(&path), std::iter::empty()).expect("shipped config loads");
        let d = Config::load_from(None, std::iter::empty()).expect("defaults");
        assert_eq!(
            serde_json::to_value(&c).expect("ser"),
            serde_json::to_value(&d).expect("ser")
        );
    }
}
