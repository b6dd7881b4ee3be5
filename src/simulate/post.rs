//! `callwatch simulate --post URL`: the simulated callbacks sent to a
//! running callwatch as TUICallKit would send them, paced in real time
//! (compressed by `--speed`), signed when a token is given, with a bounded
//! number of requests in flight. Event times are the wall clock's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{SimOptions, SimSummary, Trace};
use crate::journal::Record;

/// How to post.
#[derive(Debug, Clone)]
pub struct PostOptions {
    /// The callback endpoint (`http://host:8080/callback`); a URL without
    /// a path gets `/callback`.
    pub url: String,
    /// Simulated seconds per wall-clock second.
    pub speed: f64,
    /// The app's token: when set, each request carries `sign` and
    /// `requesttime` as Tencent computes them.
    pub token: Option<String>,
    /// Requests in flight at most.
    pub concurrency: usize,
}

/// What the daemon said.
#[derive(Debug, Clone, Default)]
pub struct PostReport {
    pub accepted: u64,
    pub refused: u64,
    /// Refusals by HTTP status, or by transport error.
    pub reasons: BTreeMap<String, u64>,
    pub summary: SimSummary,
}

/// The callback URL: `url` as given, or with `/callback` when it names
/// no path.
fn endpoint(url: &str) -> Result<reqwest::Url, String> {
    let mut u = reqwest::Url::parse(url).map_err(|e| format!("--post {url:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("--post {url:?}: only http and https URLs"));
    }
    if u.path() == "/" || u.path().is_empty() {
        u.set_path("/callback");
    }
    Ok(u)
}

fn loopback(u: &reqwest::Url) -> bool {
    match u.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The request URL of one recorded callback.
fn request_url(base: &reqwest::Url, record: &Record, token: Option<&str>) -> reqwest::Url {
    let mut u = base.clone();
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in &record.query {
            match v.as_str() {
                Some(s) => q.append_pair(k, s),
                None => q.append_pair(k, &v.to_string()),
            };
        }
        if let Some(token) = token {
            let now = (crate::time::now_secs()).to_string();
            q.append_pair("requesttime", &now);
            q.append_pair("sign", &crate::ingest::auth::sign(token, &now));
        }
    }
    u
}

/// Posts the trace `opts` describe (whose `start` should be now) and
/// counts the answers. Errors are about the options; refusals are counted.
pub async fn post_trace(opts: &SimOptions, post: &PostOptions) -> Result<PostReport, String> {
    opts.validate()?;
    if !(post.speed.is_finite() && post.speed > 0.0) {
        return Err(format!("--speed {}: must be a positive number", post.speed));
    }
    let base = endpoint(&post.url)?;
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if loopback(&base) {
        // A proxy from the environment has no business with a local daemon.
        client = client.no_proxy();
    }
    let client = client.build().map_err(|e| format!("HTTP client: {e}"))?;
    // Bounded both ways: at least one request, and far below what a
    // semaphore can count.
    let in_flight = post.concurrency.clamp(1, 4096);
    let limit = Arc::new(Semaphore::new(in_flight));
    let report = Arc::new(Mutex::new(PostReport::default()));
    let token: Option<Arc<str>> = post.token.as_deref().map(Arc::from);

    let begin = Instant::now();
    let start_ms = opts.start * 1000;
    let mut trace = Trace::new(opts, post.speed);
    let mut line = Vec::with_capacity(1024);
    while let Some(d) = trace.next_delivery() {
        // The clock already compressed simulated time by `speed`.
        let due = begin + Duration::from_millis((d.received_ms - start_ms).max(0) as u64);
        tokio::time::sleep_until(due).await;
        line.clear();
        d.write_to(&mut line);
        // Our own lines: they parse, or generation is broken.
        let record: Record = serde_json::from_slice(&line)
            .map_err(|e| format!("simulated line does not parse: {e}"))?;
        let body = serde_json::to_vec(&record.body).unwrap_or_default();
        let permit = limit
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let url = request_url(&base, &record, token.as_deref());
        let (client, report) = (client.clone(), report.clone());
        tokio::spawn(async move {
            let outcome = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let refusal = match outcome {
                Ok(r) if r.status().as_u16() == 200 => None,
                Ok(r) => Some(format!("HTTP {}", r.status().as_u16())),
                Err(e) if e.is_timeout() => Some("timeout".to_string()),
                Err(e) if e.is_connect() => Some("connection failed".to_string()),
                Err(_) => Some("transport error".to_string()),
            };
            if let Ok(mut r) = report.lock() {
                match refusal {
                    None => r.accepted += 1,
                    Some(why) => {
                        r.refused += 1;
                        *r.reasons.entry(why).or_default() += 1;
                    }
                }
            }
            drop(permit);
        });
    }
    // Every permit back: every request answered.
    let _all = limit
        .acquire_many(in_flight as u32)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = report.lock().map(|r| r.clone()).unwrap_or_default();
    out.summary = trace.summary();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_defaults_to_callback_path() {
        assert_eq!(
            endpoint("http://127.0.0.1:8080").map(|u| u.to_string()),
            Ok("http://127.0.0.1:8080/callback".into())
        );
        assert_eq!(
            endpoint("http://h:1/hooks/trtc").map(|u| u.to_string()),
            Ok("http://h:1/hooks/trtc".into())
        );
        assert!(endpoint("ftp://h/").is_err());
        assert!(endpoint("not a url").is_err());
    }

    #[test]
    fn signed_url_carries_sign_and_requesttime() {
        let record: Record = serde_json::from_str(
            r#"{"query":{"sdkappid":"1400000001","command":"caller_start_call"},"body":{}}"#,
        )
        .expect("record");
        let base = endpoint("http://127.0.0.1:1/callback").expect("url");
        let u = request_url(&base, &record, Some("tok"));
        let q: BTreeMap<String, String> = u.query_pairs().into_owned().collect();
        assert_eq!(q["command"], "caller_start_call");
        let t = &q["requesttime"];
        assert_eq!(q["sign"], crate::ingest::auth::sign("tok", t));
        let plain = request_url(&base, &record, None);
        assert!(!plain.as_str().contains("sign"));
    }
}
