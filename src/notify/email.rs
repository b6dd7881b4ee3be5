//! The `email` receiver: one mail per notification (text/plain and
//! text/html alternatives, a `Message-ID`, and `In-Reply-To`/`References`
//! naming the group's first firing mail when the outbox threaded it)
//! through the shared lettre SMTP transport of `[smtp]` (security none,
//! STARTTLS or implicit TLS; AUTH when a username is set). SMTP 5xx replies
//! are permanent failures, everything else may be retried.

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{SmtpConfig, SmtpSecurity};

use super::render::Render;
use super::text::{self, Limit, Style};
use super::{Notification, NotifyError};

/// Mails larger than this are cut; most servers refuse 10 MB and up.
const MAX_BODY: Limit = Limit::bytes(1_000_000);

/// Alerts shown in the HTML part; the text part lists as many as fit.
const MAX_HTML_ALERTS: usize = 200;

pub(crate) type Transport = AsyncSmtpTransport<Tokio1Executor>;

/// Builds the one SMTP transport every email receiver shares. Its timeout
/// covers each SMTP command; the receiver's timeout bounds the whole send.
pub(crate) fn transport(smtp: &SmtpConfig) -> Result<Transport, NotifyError> {
    let bad = |e: lettre::transport::smtp::Error| {
        NotifyError::permanent(format!("smtp.host {:?}: {e}", smtp.host))
    };
    let builder = match smtp.security {
        SmtpSecurity::None => Transport::builder_dangerous(&smtp.host),
        SmtpSecurity::Starttls => Transport::starttls_relay(&smtp.host).map_err(bad)?,
        SmtpSecurity::Tls => Transport::relay(&smtp.host).map_err(bad)?,
    };
    let mut builder = builder.port(smtp.port).timeout(Some(smtp.timeout));
    if !smtp.username.is_empty() {
        builder = builder.credentials(Credentials::new(
            smtp.username.clone(),
            smtp.password.clone(),
        ));
    }
    Ok(builder.build())
}

/// An email receiver: the shared transport and its addresses.
#[derive(Clone)]
pub(crate) struct Email {
    transport: Transport,
    server: String,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    pub fn new(
        transport: Transport,
        smtp: &SmtpConfig,
        to: &[String],
    ) -> Result<Email, NotifyError> {
        let parse = |key: &str, s: &str| {
            s.parse::<Mailbox>()
                .map_err(|e| NotifyError::permanent(format!("{key} {s:?}: {e}")))
        };
        Ok(Email {
            transport,
            server: format!("{}:{}", smtp.host, smtp.port),
            from: parse("smtp.from", &smtp.from)?,
            to: to
                .iter()
                .map(|t| parse("to", t))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn recipients(&self) -> String {
        self.to
            .iter()
            .map(|m| m.email.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The domain of `smtp.from`, for Message-IDs.
    pub fn domain(&self) -> &str {
        self.from.email.domain()
    }

    pub async fn send(&self, n: &Notification, render: &Render) -> Result<(), NotifyError> {
        let id = n
            .message_id
            .clone()
            .unwrap_or_else(|| message_id(self.domain()));
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(text::title(n))
            .message_id(Some(id));
        if let Some(root) = &n.in_reply_to {
            message = message.in_reply_to(root.clone()).references(root.clone());
        }
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message
            .multipart(MultiPart::alternative_plain_html(
                body(n, render),
                render.email_html(n, MAX_HTML_ALERTS),
            ))
            .map_err(|e| NotifyError::permanent(format!("build mail: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let reason = format!("smtp {}: {e}", self.server);
                if e.is_permanent() {
                    Err(NotifyError::permanent(reason))
                } else {
                    Err(NotifyError::retryable(reason))
                }
            }
        }
    }
}

/// The mail text: an opening line, then one block per alert (summary,
/// value, labels, start and end time).
pub(crate) fn body(n: &Notification, render: &Render) -> String {
    let firing = n.firing().count();
    let resolved = n.resolved().count();
    let mut head = String::new();
    if n.test {
        head.push_str("This is a test notification from callwatch. No action is needed.\n\n");
    }
    head.push_str(&format!(
        "{} firing, {} resolved in group {}.",
        firing,
        resolved,
        text::group_name(n)
    ));
    let mut out = render.body(n, &head, Style::Plain, MAX_BODY);
    out.push_str(&format!(
        "\n\n-- \nSent by callwatch to receiver {}.\n",
        n.receiver
    ));
    out
}

/// A new, unique Message-ID: the time in ms and 128 random bits.
pub(crate) fn message_id(domain: &str) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let random: u128 = rand::random();
    let domain = if domain.is_empty() {
        "callwatch"
    } else {
        domain
    };
    format!("<{ms}.{random:032x}.callwatch@{domain}>")
}
