//! The `email` receiver: one plain-text mail per notification through the
//! shared lettre SMTP transport of `[smtp]` (security none, STARTTLS or
//! implicit TLS; AUTH when a username is set). SMTP 5xx replies are
//! permanent failures, everything else may be retried.

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{SmtpConfig, SmtpSecurity};

use super::text::{self, Limit, Style};
use super::{Notification, NotifyError};

/// Mails larger than this are cut; most servers refuse 10 MB and up.
const MAX_BODY: Limit = Limit::bytes(1_000_000);

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

    pub async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(text::title(n))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = message
            .body(body(n))
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
pub(crate) fn body(n: &Notification) -> String {
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
    let mut out = text::body(n, &head, Style::Plain, MAX_BODY);
    out.push_str(&format!(
        "\n\n-- \nSent by callwatch to receiver {}.\n",
        n.receiver
    ));
    out
}
