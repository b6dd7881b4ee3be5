//! One HTTP POST to a receiver, and the meaning of what comes back: status
//! codes become retryable or permanent [`NotifyError`]s, `Retry-After` is
//! read, and URLs are redacted before they reach an error or a log. Reading
//! a chat service's verdict out of a 200 body is `chat`'s job; the overall
//! timeout is the receiver's.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use super::NotifyError;

/// Longest piece of a reply body quoted in an error.
const BODY_EXCERPT: usize = 300;

/// A parsed endpoint, with the form of its URL that is safe to show.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub url: Url,
    pub shown: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl Endpoint {
    /// Parses an http(s) URL from config; `what` names the config key.
    pub fn parse(raw: &str, what: &str) -> Result<Endpoint, NotifyError> {
        let url = Url::parse(raw).map_err(|e| {
            NotifyError::permanent(format!("{what}: bad url {}: {e}", redact_str(raw)))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(NotifyError::permanent(format!(
                "{what}: url {} must be http or https",
                redact(&url)
            )));
        }
        Ok(Endpoint {
            shown: redact(&url),
            url,
        })
    }
}

/// The body of a reply with a 2xx status, for the caller to inspect.
pub(crate) struct Reply {
    pub body: String,
}

impl Reply {
    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// POSTs `body` as JSON and turns a non-2xx status into an error.
pub(crate) async fn post_json(
    client: &reqwest::Client,
    to: &Endpoint,
    url: Url,
    headers: &HeaderMap,
    body: &serde_json::Value,
) -> Result<Reply, NotifyError> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| NotifyError::permanent(format!("encode body for {}: {e}", to.shown)))?;
    let response = client
        .post(url)
        .headers(headers.clone())
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(bytes)
        .send()
        .await
        .map_err(|e| transport_error(&to.shown, e))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .text()
        .await
        .map_err(|e| transport_error(&to.shown, e))?;
    check_status(&to.shown, status, &headers, &body)?;
    Ok(Reply { body })
}

/// 2xx is fine; 408, 429 and 5xx are worth retrying; the rest is permanent.
pub(crate) fn check_status(
    shown: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
) -> Result<(), NotifyError> {
    if status.is_success() {
        return Ok(());
    }
    let reason = format!("{shown} answered {status}: {}", excerpt(body));
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        let retry_after =
            retry_after(headers, SystemTime::now()).or_else(|| body_retry_after(body));
        Err(NotifyError::Retryable {
            reason,
            retry_after,
        })
    } else {
        Err(NotifyError::permanent(reason))
    }
}

/// reqwest's own messages carry the full URL; show ours and the causes.
fn transport_error(shown: &str, e: reqwest::Error) -> NotifyError {
    let e = e.without_url();
    let mut reason = format!("{shown}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    NotifyError::retryable(reason)
}

/// `Retry-After` as delay-seconds or an HTTP date, relative to `now`.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Discord (`retry_after`) and Telegram (`parameters.retry_after`) also
/// say in the body of a 429 how many seconds to wait.
fn body_retry_after(body: &str) -> Option<Duration> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let secs = v
        .get("retry_after")
        .or_else(|| v.get("parameters")?.get("retry_after"))?
        .as_f64()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Builds the header map of configured extra headers.
pub(crate) fn header_map(
    headers: &std::collections::BTreeMap<String, String>,
    what: &str,
) -> Result<HeaderMap, NotifyError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let bad = |e: &dyn std::fmt::Display| {
            NotifyError::permanent(format!("{what}: header {name:?}: {e}"))
        };
        let name_ = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(&e))?;
        let mut value = HeaderValue::from_str(value).map_err(|e| bad(&e))?;
        // Configured headers usually carry credentials.
        value.set_sensitive(true);
        map.insert(name_, value);
    }
    Ok(map)
}

/// A URL with what may be a secret taken out: user info and the query
/// string go, and so does any path segment long enough to be a token
/// (Slack, Discord, Feishu and Telegram put theirs in the path).
pub(crate) fn redact(url: &Url) -> String {
    let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    if let Some(port) = url.port() {
        shown.push_str(&format!(":{port}"));
    }
    for segment in url.path().split('/').skip(1) {
        shown.push('/');
        if segment.len() >= 16 {
            shown.push_str("***");
        } else {
            shown.push_str(segment);
        }
    }
    if url.query().is_some() {
        shown.push_str("?***");
    }
    shown
}

/// Redacts a URL given as text; one that does not parse is not shown at all.
fn redact_str(raw: &str) -> String {
    Url::parse(raw)
        .map(|u| redact(&u))
        .unwrap_or_else(|_| "<unparsable>".to_string())
}

/// The start of a reply body, on one line, for error messages.
pub(crate) fn excerpt(body: &str) -> String {
    let flat: String = body
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.is_empty() {
        return "(empty body)".into();
    }
    match flat.char_indices().nth(BODY_EXCERPT) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_tokens() {
        let show = |s: &str| redact(&Url::parse(s).expect("url"));
        assert_eq!(
            show("https://oapi.dingtalk.com/robot/send?access_token=abc"),
            "https://oapi.dingtalk.com/robot/send?***"
        );
        assert_eq!(
            show("https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"),
            "https://hooks.slack.com/services/T000/B000/***"
        );
        assert_eq!(
            show("https://api.telegram.org/bot123456:ABCDEFGHIJKLMNOP/sendMessage"),
            "https://api.telegram.org/***/sendMessage"
        );
        assert_eq!(
            show("http://user:pw@127.0.0.1:9000/hook"),
            "http://127.0.0.1:9000/hook"
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:50:07 GMT"),
        );
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
        let tg = r#"{"ok":false,"error_code":429,"parameters":{"retry_after":12}}"#;
        assert_eq!(body_retry_after(tg), Some(Duration::from_secs(12)));
        let discord = r#"{"message":"You are being rate limited.","retry_after":0.5}"#;
        assert_eq!(body_retry_after(discord), Some(Duration::from_millis(500)));
    }

    #[test]
    fn status_classes() {
        let h = HeaderMap::new();
        let check = |s: u16| check_status("x", StatusCode::from_u16(s).expect("status"), &h, "");
        assert!(check(200).is_ok());
        assert!(check(204).is_ok());
        for s in [408, 429, 500, 502, 503] {
            assert!(check(s).expect_err("fails").is_retryable(), "{s}");
        }
        for s in [301, 400, 401, 403, 404, 413] {
            assert!(!check(s).expect_err("fails").is_retryable(), "{s}");
        }
    }

    #[test]
    fn excerpts_are_short_and_flat() {
        assert_eq!(excerpt(" a\nb "), "a b");
        assert_eq!(excerpt(""), "(empty body)");
        let long = "é".repeat(1000);
        assert_eq!(excerpt(&long).chars().count(), BODY_EXCERPT + 1);
    }
}
