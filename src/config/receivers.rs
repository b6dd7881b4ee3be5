//! `[[receivers]]` and `[[routes]]`: where notifications go, the closed
//! set of receiver kinds, and the check that every receiver name a route
//! or `alerting.default_receivers` uses is defined once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use super::env::lenient_string;
use super::{invalid, Config, ConfigError};
use crate::quiet::LabelPattern;

fn default_true() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// One notification target.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

impl Config {
    /// Receiver names are non-empty and unique, an email receiver has an
    /// address, and every name `alerting.default_receivers` or a route
    /// uses is defined.
    pub(super) fn validate_receivers(&self) -> Result<(), ConfigError> {
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
        Ok(())
    }
}
