//! Notifications: turning groups of alerts into messages and delivering them
//! through the receiver kinds of docs/alerts.md (log, email, webhook, the chat
//! services and Alertmanager). This module owns the [`Notification`] that
//! flows to a receiver, the [`NotifyError`] that tells the delivery
//! machinery whether to retry, and the runtime [`Receiver`]s. It does not
//! persist anything, retry, or decide which alerts go together: the outbox
//! and the alert engine do that, using [`route`] and [`group`] for the pure
//! decisions.
//!
//! # Layout
//! - [`receiver`]: the runtime receivers built from config, and `send`.
//! - `http`: one POST and what its reply means (status classes,
//!   `Retry-After`), URL redaction.
//! - `text`: titles and truncation to a size limit; `render`: the message
//!   templates (per-alert blocks, the HTML mail) and times in
//!   `alerting.timezone`.
//! - [`thread`]: Message-IDs and the per-group mail thread.
//! - `chat`: the payloads and reply checks of Slack, WeCom, DingTalk,
//!   Feishu, Discord, Teams and Telegram; `sign`: their HMAC signatures.
//! - `json`: the generic webhook and Alertmanager bodies.
//! - `email`: SMTP through lettre; `log`: lines on stdout.
//! - `rate`: at most N messages a minute per receiver.
//! - [`route`]: which receivers an alert goes to; [`group`]: which alerts
//!   go out together, and when.
//! - [`dispatch`]: transitions → routes, silences, grouper → outbox.
//! - [`outbox`]: durable queue, per-receiver workers, retries and backoff.
//! - [`silence`]: silence matching and validation.
//! - [`hold`]: what silences, inhibitions and mutes keep back, and why.

mod chat;
pub mod dispatch;
mod email;
pub mod group;
pub mod hold;
mod http;
mod json;
mod log;
pub mod outbox;
mod rate;
pub mod receiver;
mod render;
pub mod route;
mod sign;
pub mod silence;
mod text;
pub mod thread;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alert::{Alert, AlertStatus};

pub use group::{GroupSettings, Grouper};
pub use log::log_lines;
pub use receiver::{Receiver, Receivers};
pub use route::receivers_for;

/// A group of alerts going to one receiver in one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Name of the receiver the message is for.
    pub receiver: String,
    /// `firing` if any alert is firing, else `resolved`.
    pub status: AlertStatus,
    /// The alerts, in the order they should be shown.
    pub alerts: Vec<Alert>,
    /// The `alerting.group_by` labels shared by every alert of the group.
    pub group_labels: BTreeMap<String, String>,
    /// A test notification from `callwatch notify-test`, marked as such.
    #[serde(default)]
    pub test: bool,
    /// The mail's Message-ID, fixed when an email notification is queued
    /// so that every attempt sends the same one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The Message-ID of the group's first firing mail, which this one
    /// answers (`In-Reply-To`, `References`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
}

impl Notification {
    /// Builds a notification, deriving its status from the alerts.
    pub fn new(
        receiver: impl Into<String>,
        alerts: Vec<Alert>,
        group_labels: BTreeMap<String, String>,
    ) -> Notification {
        Notification {
            receiver: receiver.into(),
            status: status_of(&alerts),
            alerts,
            group_labels,
            test: false,
            message_id: None,
            in_reply_to: None,
        }
    }

    /// The firing alerts, in order.
    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.alerts
            .iter()
            .filter(|a| a.status != AlertStatus::Resolved)
    }

    /// The resolved alerts, in order.
    pub fn resolved(&self) -> impl Iterator<Item = &Alert> {
        self.alerts
            .iter()
            .filter(|a| a.status == AlertStatus::Resolved)
    }
}

/// `firing` if any alert is firing (or pending), else `resolved`.
pub fn status_of(alerts: &[Alert]) -> AlertStatus {
    if alerts.iter().any(|a| a.status != AlertStatus::Resolved) {
        AlertStatus::Firing
    } else {
        AlertStatus::Resolved
    }
}

/// Why a delivery failed, in the terms the delivery machinery acts on.
/// Messages never contain secrets: URLs are shown without their query
/// string or token-like path segments.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Worth trying again: the service was unreachable, too slow, overloaded
    /// (5xx) or asked us to slow down (429, with its `Retry-After`).
    #[error("{reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Will fail the same way again: bad config, a 4xx other than 408/429,
    /// or an SMTP server that rejected the message for good.
    #[error("{reason}")]
    Permanent { reason: String },
    /// A chat service answered 200 but reported an error in its body
    /// (`errcode`, `code`, `ok: false`), e.g.
    /// `dingtalk errcode 310000: sign not match`. Retryable: these are
    /// often rate limits or clock skew, and a fixed config heals them.
    #[error("{service} {detail}")]
    Service {
        service: &'static str,
        detail: String,
    },
}

impl NotifyError {
    pub(crate) fn retryable(reason: impl Into<String>) -> NotifyError {
        NotifyError::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub(crate) fn permanent(reason: impl Into<String>) -> NotifyError {
        NotifyError::Permanent {
            reason: reason.into(),
        }
    }

    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, NotifyError::Permanent { .. })
    }

    /// How long the service asked us to wait before the next attempt.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            NotifyError::Retryable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Name of the rule carried by test notifications.
pub const TEST_RULE: &str = "callwatch_test";

/// Sends a clearly marked test notification through `receiver`, now.
pub async fn notify_test(receiver: &Receiver) -> Result<(), NotifyError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    receiver
        .send(&test_notification(receiver.name(), now))
        .await
}

/// The notification `notify_test` sends, with the time passed in.
pub fn test_notification(receiver: &str, now: i64) -> Notification {
    let labels = BTreeMap::from([
        ("rule".to_string(), TEST_RULE.to_string()),
        ("severity".to_string(), "info".to_string()),
        ("receiver".to_string(), receiver.to_string()),
    ]);
    let alert = Alert {
        rule: TEST_RULE.into(),
        status: AlertStatus::Firing,
        severity: "info".into(),
        summary: format!(
            "Test notification from callwatch: receiver {receiver} works. No action needed."
        ),
        fingerprint: crate::alert::fingerprint(TEST_RULE, &labels),
        labels,
        value: serde_json::Value::Null,
        starts_at: now,
        ends_at: None,
        key: BTreeMap::new(),
        annotations: BTreeMap::new(),
        evidence: Vec::new(),
        url: None,
        reason: None,
    };
    let group_labels = BTreeMap::from([("rule".to_string(), TEST_RULE.to_string())]);
    Notification {
        test: true,
        ..Notification::new(receiver, vec![alert], group_labels)
    }
}
