//! Runtime receivers: each `[[receivers]]` entry built once into a
//! [`Receiver`] that owns what sending needs (a parsed URL, headers, the
//! shared `reqwest` client or SMTP transport), and [`Receiver::send`], one
//! delivery attempt bounded by the receiver's timeout. Retrying, backoff and
//! persistence belong to the outbox, which acts on the [`NotifyError`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::HeaderMap;

use crate::alert::AlertStatus;
use crate::config::{Config, ReceiverConfig, ReceiverKind, SmtpConfig};

use super::chat::Chat;
use super::email::{self, Email};
use super::http::{self, Endpoint};
use super::rate::{self, RateLimit};
use super::render::Render;
use super::{json, log, Notification, NotifyError};

/// Every configured receiver, by name, sharing one HTTP client and one SMTP
/// transport.
#[derive(Debug)]
pub struct Receivers {
    by_name: BTreeMap<String, Receiver>,
}

impl Receivers {
    /// Builds the receivers of a validated config.
    pub fn from_config(config: &Config) -> Result<Receivers, NotifyError> {
        let tz = config
            .timezone()
            .map_err(|e| NotifyError::permanent(e.to_string()))?;
        Receivers::in_zone(&config.receivers, &config.smtp, tz)
    }

    /// Builds `receivers` showing times in UTC; `smtp` is used only if one
    /// of them is `email`.
    pub fn new(receivers: &[ReceiverConfig], smtp: &SmtpConfig) -> Result<Receivers, NotifyError> {
        Receivers::in_zone(receivers, smtp, jiff::tz::TimeZone::UTC)
    }

    /// [`Receivers::new`] showing times in `tz`.
    pub fn in_zone(
        receivers: &[ReceiverConfig],
        smtp: &SmtpConfig,
        tz: jiff::tz::TimeZone,
    ) -> Result<Receivers, NotifyError> {
        let render = Arc::new(Render::new(tz));
        let client = reqwest::Client::builder()
            .user_agent(concat!("callwatch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NotifyError::permanent(format!("http client: {e}")))?;
        let wants_smtp = receivers
            .iter()
            .any(|r| matches!(r.kind, ReceiverKind::Email { .. }));
        let smtp_transport = if wants_smtp {
            Some(email::transport(smtp)?)
        } else {
            None
        };
        let mut by_name = BTreeMap::new();
        for cfg in receivers {
            let receiver = Receiver::build(cfg, &client, smtp_transport.as_ref(), smtp, &render)
                .map_err(|e| match e {
                    NotifyError::Permanent { reason } => {
                        NotifyError::permanent(format!("receiver {:?}: {reason}", cfg.name))
                    }
                    other => other,
                })?;
            by_name.insert(cfg.name.clone(), receiver);
        }
        Ok(Receivers { by_name })
    }

    /// The receiver called `name`.
    pub fn get(&self, name: &str) -> Option<&Receiver> {
        self.by_name.get(name)
    }

    /// Every receiver, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Receiver> {
        self.by_name.values()
    }
}

/// One configured receiver, ready to send.
pub struct Receiver {
    name: String,
    send_resolved: bool,
    timeout: Duration,
    /// Messages a minute at most; 0 is unlimited.
    per_minute: u32,
    limit: Mutex<RateLimit>,
    target: Target,
    /// Message templates and time zone, shared by every receiver.
    render: Arc<Render>,
}

/// The closed set of ways to deliver, mirroring [`ReceiverKind`].
enum Target {
    Log,
    Email(Email),
    Http {
        client: reqwest::Client,
        endpoint: Endpoint,
        headers: HeaderMap,
        kind: HttpKind,
    },
}

enum HttpKind {
    Webhook,
    Alertmanager,
    Chat(Chat),
}

impl std::fmt::Debug for Receiver {
    // Hand-written: secrets (robot secrets, tokens in URLs) stay out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("target", &self.describe())
            .finish()
    }
}

impl Receiver {
    fn build(
        cfg: &ReceiverConfig,
        client: &reqwest::Client,
        smtp_transport: Option<&email::Transport>,
        smtp: &SmtpConfig,
        render: &Arc<Render>,
    ) -> Result<Receiver, NotifyError> {
        let http = |url: &str, kind: HttpKind| -> Result<Target, NotifyError> {
            Ok(Target::Http {
                client: client.clone(),
                endpoint: Endpoint::parse(url, "url")?,
                headers: HeaderMap::new(),
                kind,
            })
        };
        let chat = |url: &str, chat: Chat| http(url, HttpKind::Chat(chat));
        let target = match &cfg.kind {
            ReceiverKind::Log => Target::Log,
            ReceiverKind::Email { to } => {
                let transport = smtp_transport
                    .cloned()
                    .ok_or_else(|| NotifyError::permanent("no smtp transport"))?;
                Target::Email(Email::new(transport, smtp, to)?)
            }
            ReceiverKind::Webhook { url, headers } => Target::Http {
                client: client.clone(),
                endpoint: Endpoint::parse(url, "url")?,
                headers: http::header_map(headers, "headers")?,
                kind: HttpKind::Webhook,
            },
            ReceiverKind::Alertmanager { url } => http(
                &format!("{}/api/v2/alerts", url.trim_end_matches('/')),
                HttpKind::Alertmanager,
            )?,
            ReceiverKind::Slack { url } => chat(url, Chat::Slack)?,
            ReceiverKind::Wecom { url } => chat(url, Chat::Wecom)?,
            ReceiverKind::Dingtalk { url, secret } => chat(
                url,
                Chat::Dingtalk {
                    secret: secret.clone(),
                },
            )?,
            ReceiverKind::Feishu { url, secret } => chat(
                url,
                Chat::Feishu {
                    secret: secret.clone(),
                },
            )?,
            ReceiverKind::Discord { url } => chat(url, Chat::Discord)?,
            ReceiverKind::Teams { url } => chat(url, Chat::Teams)?,
            ReceiverKind::Telegram {
                bot_token,
                chat_id,
                api_url,
            } => {
                if bot_token.is_empty() || chat_id.is_empty() {
                    return Err(NotifyError::permanent("bot_token and chat_id are required"));
                }
                let url = format!(
                    "{}/bot{bot_token}/sendMessage",
                    api_url.trim_end_matches('/')
                );
                let mut target = chat(
                    &url,
                    Chat::Telegram {
                        chat_id: chat_id.clone(),
                    },
                )?;
                // The token is in the path; never show any of it.
                if let Target::Http { endpoint, .. } = &mut target {
                    endpoint.shown =
                        format!("{}/bot***/sendMessage", api_url.trim_end_matches('/'));
                }
                target
            }
        };
        let per_minute = match cfg.rate_limit_per_minute {
            0 => rate::service_default(cfg.kind.type_name()),
            n => n,
        };
        Ok(Receiver {
            name: cfg.name.clone(),
            send_resolved: cfg.send_resolved,
            timeout: cfg.timeout,
            per_minute,
            limit: Mutex::new(RateLimit::new(per_minute)),
            target,
            render: render.clone(),
        })
    }

    /// The receiver's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The receiver's `type`.
    pub fn kind(&self) -> &'static str {
        match &self.target {
            Target::Log => "log",
            Target::Email(_) => "email",
            Target::Http { kind, .. } => match kind {
                HttpKind::Webhook => "webhook",
                HttpKind::Alertmanager => "alertmanager",
                HttpKind::Chat(c) => c.service(),
            },
        }
    }

    /// For an email receiver, the domain its Message-IDs use (the sender's);
    /// `None` for every other kind, whose messages are not threaded.
    pub fn mail_domain(&self) -> Option<&str> {
        match &self.target {
            Target::Email(e) => Some(e.domain()),
            _ => None,
        }
    }

    /// How often the receiver wants firing groups re-posted regardless of
    /// news ([`super::Grouper::resend_every`]): Alertmanager resolves an
    /// alert its client stops posting, so firing alerts go to it every
    /// minute.
    pub fn resend_interval(&self) -> Option<Duration> {
        match &self.target {
            Target::Http {
                kind: HttpKind::Alertmanager,
                ..
            } => Some(Duration::from_secs(60)),
            _ => None,
        }
    }

    /// `type` and destination, safe to log (no secrets, no query strings).
    pub fn describe(&self) -> String {
        match &self.target {
            Target::Log => "log stdout".into(),
            Target::Email(e) => format!("email {}", e.recipients()),
            Target::Http { endpoint, .. } => format!("{} {}", self.kind(), endpoint.shown),
        }
    }

    /// One delivery attempt, bounded by the receiver's `timeout`. With
    /// `send_resolved = false`, resolved alerts are left out, and a
    /// notification of nothing but resolved alerts succeeds without sending.
    /// Past the receiver's rate limit (`rate_limit_per_minute`, else the
    /// service's documented limit) it fails as retryable, with the wait.
    pub async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let firing_only;
        let n = if self.send_resolved || n.test {
            n
        } else {
            let alerts: Vec<_> = n.firing().cloned().collect();
            if alerts.is_empty() {
                return Ok(());
            }
            firing_only = Notification {
                alerts,
                status: AlertStatus::Firing,
                ..n.clone()
            };
            &firing_only
        };
        // A poisoned lock only means another send panicked; the counts in it
        // are still good enough to limit by.
        let admitted = match self.limit.lock() {
            Ok(mut limit) => limit.admit(Instant::now()),
            Err(poisoned) => poisoned.into_inner().admit(Instant::now()),
        };
        if let Err(wait) = admitted {
            return Err(NotifyError::Retryable {
                reason: format!(
                    "{}: rate limit of {} messages a minute reached",
                    self.describe(),
                    self.per_minute
                ),
                retry_after: Some(wait),
            });
        }
        match tokio::time::timeout(self.timeout, self.deliver(n)).await {
            Ok(result) => result,
            Err(_) => Err(NotifyError::retryable(format!(
                "{} timed out after {}",
                self.describe(),
                humantime::format_duration(self.timeout)
            ))),
        }
    }

    async fn deliver(&self, n: &Notification) -> Result<(), NotifyError> {
        match &self.target {
            Target::Log => log::print(n),
            Target::Email(e) => e.send(n, &self.render).await,
            Target::Http {
                client,
                endpoint,
                headers,
                kind,
            } => {
                let (url, body) = match kind {
                    HttpKind::Webhook => (endpoint.url.clone(), json::webhook(n)),
                    HttpKind::Alertmanager => (endpoint.url.clone(), json::alertmanager(n)),
                    HttpKind::Chat(c) => {
                        c.request(n, &endpoint.url, SystemTime::now(), &self.render)
                    }
                };
                let reply = http::post_json(client, endpoint, url, headers, &body).await?;
                match kind {
                    HttpKind::Chat(c) => c.check(&reply),
                    _ => Ok(()),
                }
            }
        }
    }
}
