//! One HTTP POST to a receiver, and the meaning of what comes back: status
//! codes become retryable or permanent [`NotifyError`]s, `Retry-After` is
//! read, and URLs are redacted before they reach an error or a log. Reading
//! a chat service's verdict out of a 200 body is `chat`'s job; the overall
//! timeout is the receiver's.
//!
//! A reply is a peer's word, so it is bounded: at most [`MAX_BODY`] bytes
//! of a body are read (the rest is never downloaded), and a `Retry-After`
//! of any size or form parses to a sane [`Duration`] or to nothing.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use super::NotifyError;

/// Longest piece of a reply body quoted in an error.
const BODY_EXCERPT: usize = 300;

/// Most of a reply body that is read: chat services answer in a few
/// hundred bytes; a receiver streaming gigabytes must not fill memory.
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Longest `Retry-After` taken as given; the outbox clamps further, to
/// `alerting.max_retry_interval` and the give-up time.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(365 * 24 * 3600);

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
    let body = read_capped(response, MAX_BODY)
        .await
        .map_err(|e| transport_error(&to.shown, e))?;
    check_status(&to.shown, status, &headers, &body)?;
    Ok(Reply { body })
}

/// Reads at most `limit` bytes of a body, then drops the response (which
/// closes the connection instead of downloading the rest). Invalid UTF-8
/// is replaced, as `Response::text` does.
async fn read_capped(mut response: reqwest::Response, limit: usize) -> reqwest::Result<String> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await? {
            Some(chunk) => {
                let take = chunk.len().min(limit - body.len());
                body.extend_from_slice(&chunk[..take]);
            }
            None => break,
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
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
        return seconds(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// A number of seconds from a peer as a delay: negative, NaN and infinite
/// mean nothing; anything huge is cut to [`MAX_RETRY_AFTER`]
/// (`Duration::from_secs_f64` panics past `u64::MAX` seconds).
fn seconds(secs: f64) -> Option<Duration> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).map_or(MAX_RETRY_AFTER, |d| d.min(MAX_RETRY_AFTER)))
}

/// Discord (`retry_after`) and Telegram (`parameters.retry_after`) also
/// say in the body of a 429 how many seconds to wait.
fn body_retry_after(body: &str) -> Option<Duration> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let secs = v
        .get("retry_after")
        .or_else(|| v.get("parameters")?.get("retry_after"))?
        .as_f64()?;
    seconds(secs)
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
    fn hostile_retry_after_values_are_bounded_or_ignored() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let of = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_static(v));
            retry_after(&h, now)
        };
        assert_eq!(of("1e30"), Some(MAX_RETRY_AFTER));
        assert_eq!(of("10000000000000000"), Some(MAX_RETRY_AFTER));
        assert_eq!(of("Fri, 31 Dec 9999 23:59:59 GMT"), Some(MAX_RETRY_AFTER));
        for v in ["-5", "NaN", "inf", "-inf", "garbage", ""] {
            assert_eq!(of(v), None, "{v}");
        }
        assert_eq!(
            body_retry_after(r#"{"retry_after":1e300}"#),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(body_retry_after(r#"{"retry_after":-1}"#), None);
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
