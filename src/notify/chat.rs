//! The chat services: for each, the JSON its incoming-webhook or bot API
//! documents, kept within its size limit, and how it reports failure in a
//! 200 reply (`errcode`, `code`, `ok: false`). Sending the request is the
//! receiver's job; signatures come from `sign`.

use std::time::SystemTime;

use reqwest::Url;
use serde_json::{json, Value};

use super::http::{excerpt, Reply};
use super::render::Render;
use super::text::{self, Limit, Style};
use super::{sign, Notification, NotifyError};

/// Slack allows 40 000 characters of `text`.
const SLACK: Limit = Limit::chars(40_000);
/// WeCom markdown `content` is at most 4096 bytes of UTF-8.
const WECOM: Limit = Limit::bytes(4096);
/// DingTalk caps the request at 20 000 bytes; JSON escaping needs room.
const DINGTALK: Limit = Limit::bytes(16_000);
/// Feishu caps the request at 20 KB; JSON escaping needs room.
const FEISHU: Limit = Limit::bytes(16_000);
/// Discord `content` is at most 2000 characters.
const DISCORD: Limit = Limit::chars(2000);
/// Teams caps a card message at about 28 KB.
const TEAMS: Limit = Limit::bytes(20_000);
/// Telegram `text` is at most 4096 UTF-16 code units.
const TELEGRAM: Limit = Limit::utf16(4096);

/// A chat service and what it needs beyond its URL.
#[derive(Clone)]
pub(crate) enum Chat {
    Slack,
    Wecom,
    Dingtalk { secret: String },
    Feishu { secret: String },
    Discord,
    Teams,
    Telegram { chat_id: String },
}

impl Chat {
    /// The service's name, as in config and error messages.
    pub fn service(&self) -> &'static str {
        match self {
            Chat::Slack => "slack",
            Chat::Wecom => "wecom",
            Chat::Dingtalk { .. } => "dingtalk",
            Chat::Feishu { .. } => "feishu",
            Chat::Discord => "discord",
            Chat::Teams => "teams",
            Chat::Telegram { .. } => "telegram",
        }
    }

    /// The URL to POST to (DingTalk signs in the query) and the body.
    pub fn request(
        &self,
        n: &Notification,
        url: &Url,
        now: SystemTime,
        render: &Render,
    ) -> (Url, Value) {
        let title = text::title(n);
        let mut url = url.clone();
        let body = match self {
            Chat::Slack => {
                let head = format!("*{}*", slack_escape(&title));
                json!({ "text": render.body(n, &head, Style::Slack, SLACK) })
            }
            Chat::Wecom => {
                let head = format!("**{title}**");
                json!({
                    "msgtype": "markdown",
                    "markdown": { "content": render.body(n, &head, Style::Markdown, WECOM) },
                })
            }
            Chat::Dingtalk { secret } => {
                if !secret.is_empty() {
                    let ms = crate::time::unix_ms(now);
                    url.query_pairs_mut()
                        .append_pair("timestamp", &ms.to_string())
                        .append_pair("sign", &sign::dingtalk(secret, ms));
                }
                // DingTalk shows `title` in previews only, so the text
                // repeats it as a heading.
                let head = format!("#### {title}");
                json!({
                    "msgtype": "markdown",
                    "markdown": {
                        "title": title,
                        "text": render.body(n, &head, Style::Markdown, DINGTALK),
                    },
                })
            }
            Chat::Feishu { secret } => {
                let mut body = json!({
                    "msg_type": "text",
                    "content": { "text": render.body(n, &title, Style::Plain, FEISHU) },
                });
                if !secret.is_empty() {
                    let s = crate::time::unix_secs(now);
                    body["timestamp"] = json!(s.to_string());
                    body["sign"] = json!(sign::feishu(secret, s));
                }
                body
            }
            Chat::Discord => {
                let head = format!("**{title}**");
                json!({
                    "content": render.body(n, &head, Style::Markdown, DISCORD),
                    // Summaries are rule output: never let them ping anyone.
                    "allowed_mentions": { "parse": [] },
                })
            }
            Chat::Teams => teams_card(n, &title, render),
            Chat::Telegram { chat_id } => json!({
                "chat_id": chat_id,
                "text": render.body(n, &title, Style::Plain, TELEGRAM),
                "disable_web_page_preview": true,
            }),
        };
        (url, body)
    }

    /// Reads the service's verdict out of a 2xx reply.
    pub fn check(&self, reply: &Reply) -> Result<(), NotifyError> {
        let service = self.service();
        let fail = |detail: String| Err(NotifyError::Service { service, detail });
        let json = reply.json();
        match self {
            Chat::Wecom | Chat::Dingtalk { .. } => {
                let Some(v) = json else {
                    return fail(format!("unreadable reply: {}", excerpt(&reply.body)));
                };
                match code(&v, "errcode") {
                    None | Some(0) => Ok(()),
                    Some(c) => fail(format!("errcode {c}: {}", text_of(&v, "errmsg"))),
                }
            }
            Chat::Feishu { .. } => {
                let Some(v) = json else {
                    return fail(format!("unreadable reply: {}", excerpt(&reply.body)));
                };
                // The v2 hook answers `code`/`msg`; older ones `StatusCode`.
                match (code(&v, "code"), code(&v, "StatusCode")) {
                    (Some(c), _) if c != 0 => fail(format!("code {c}: {}", text_of(&v, "msg"))),
                    (_, Some(c)) if c != 0 => {
                        fail(format!("code {c}: {}", text_of(&v, "StatusMessage")))
                    }
                    _ => Ok(()),
                }
            }
            Chat::Slack | Chat::Telegram { .. } => match json {
                Some(v) if v.get("ok") == Some(&Value::Bool(false)) => {
                    let detail = match (v.get("error_code"), v.get("description")) {
                        (Some(c), Some(_)) => format!("error {c}: {}", text_of(&v, "description")),
                        _ => format!("error: {}", text_of(&v, "error")),
                    };
                    fail(detail)
                }
                // Telegram always answers JSON with `ok: true`.
                None if matches!(self, Chat::Telegram { .. }) => {
                    fail(format!("unreadable reply: {}", excerpt(&reply.body)))
                }
                _ => Ok(()),
            },
            // Legacy Office 365 connectors answer 200 with an error text.
            Chat::Teams if reply.body.contains("delivery failed") => {
                fail(format!("error: {}", excerpt(&reply.body)))
            }
            Chat::Teams | Chat::Discord => Ok(()),
        }
    }
}

/// A numeric status field, whether sent as a number or a string.
fn code(v: &Value, key: &str) -> Option<i64> {
    match v.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn text_of(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "(no message)".into(),
    }
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An Adaptive Card in the message envelope that both Teams Workflows and
/// the older incoming-webhook connectors accept.
fn teams_card(n: &Notification, title: &str, render: &Render) -> Value {
    let color = match n.status {
        crate::alert::AlertStatus::Resolved => "Good",
        _ => "Attention",
    };
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": { "width": "Full" },
                "body": [
                    {
                        "type": "TextBlock",
                        "text": title,
                        "weight": "Bolder",
                        "size": "Medium",
                        "color": color,
                        "wrap": true,
                    },
                    {
                        "type": "TextBlock",
                        "text": render.body(n, "", Style::Markdown, TEAMS),
                        "wrap": true,
                    },
                ],
            },
        }],
    })
}
