//! The front door: `POST /callback` (path configurable). Runs the SPEC §2
//! checks in order (size 413, app 403, sign 401, body 400), deduplicates
//! Tencent's retries, makes the callback durable in the journal and only
//! then answers 200 and hands the decoded events to the rule engine.
//!
//! # Layout
//! - [`decode`]: callback families → [`Event`]s (pure).
//! - [`auth`]: SDKAppID and sign checks (pure).
//! - [`dedup`]: bounded memory of recent deliveries.

pub mod auth;
pub mod decode;
pub mod dedup;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Buf;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, mpsc};
use warp::http::StatusCode;
use warp::Filter;

use crate::config::AppConfig;
use crate::event::Event;
use crate::journal::{Journal, Record};
use crate::metrics::Metrics;
use decode::{Decoded, Family, Query};
use dedup::{Dedup, Seen};

/// What the rule engine receives for each accepted callback.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub received_at: i64,
    pub events: Vec<Event>,
}

/// The success body both Tencent parsers read (SPEC §2), byte for byte.
pub const SUCCESS_BODY: &str =
    r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ErrorMessage":"Success"}"#;

/// Settings the callback path needs (a subset of the config).
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub callback_path: String,
    pub max_body_bytes: u64,
    pub max_clock_skew_secs: i64,
    pub apps: Vec<AppConfig>,
}

/// Shared state of the callback endpoint.
pub struct Ingest {
    /// Swapped as a whole on reload (apps and tokens, limits).
    settings: std::sync::RwLock<Arc<IngestSettings>>,
    journal: Arc<Journal>,
    dedup: Mutex<Dedup>,
    metrics: Arc<Metrics>,
    engine: mpsc::Sender<Accepted>,
    tap: broadcast::Sender<Event>,
}

/// Current wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A rejected callback: HTTP status plus the message for the body.
struct Failure {
    status: StatusCode,
    outcome: &'static str,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, outcome: &'static str, message: impl Into<String>) -> Self {
        Failure {
            status,
            outcome,
            message: message.into(),
        }
    }
}

/// Failure body: the success keys with `FAIL`, a non-zero code and the
/// message (Tencent logs `ErrorInfo`; people read `ErrorMessage`).
pub fn failure_body(status: StatusCode, message: &str) -> Value {
    json!({
        "ActionStatus": "FAIL",
        "ErrorCode": status.as_u16(),
        "ErrorInfo": message,
        "ErrorMessage": message,
    })
}

fn reply_json(status: StatusCode, body: &Value) -> warp::reply::Response {
    let mut r = warp::reply::Response::new(body.to_string().into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    r
}

fn success() -> warp::reply::Response {
    let mut r = warp::reply::Response::new(SUCCESS_BODY.into());
    r.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    r
}

/// Parses a raw query string into name → value (the last value wins).
pub fn parse_query(raw: &str) -> Query {
    form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect::<Map<String, Value>>()
}

/// The identity Tencent keeps across retries of one delivery (SPEC §2).
fn identity(d: &Decoded, sdkappid: u64) -> (u64, &str, Vec<(&str, &str, i64)>) {
    let parts = d
        .events
        .iter()
        .map(|e| {
            (
                e.call_id.as_deref().unwrap_or(""),
                e.user_id.as_deref().unwrap_or(""),
                e.event_time,
            )
        })
        .collect();
    (sdkappid, d.command.as_str(), parts)
}

impl Ingest {
    pub fn new(
        settings: IngestSettings,
        journal: Arc<Journal>,
        dedup: Dedup,
        metrics: Arc<Metrics>,
        engine: mpsc::Sender<Accepted>,
    ) -> Self {
        let (tap, _) = broadcast::channel(4096);
        Ingest {
            settings: std::sync::RwLock::new(Arc::new(settings)),
            journal,
            dedup: Mutex::new(dedup),
            metrics,
            engine,
            tap,
        }
    }

    /// The current settings.
    pub fn settings(&self) -> Arc<IngestSettings> {
        match self.settings.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the settings (reload); requests in flight finish with the old.
    pub fn set_settings(&self, settings: IngestSettings) {
        let new = Arc::new(settings);
        match self.settings.write() {
            Ok(mut s) => *s = new,
            Err(p) => *p.into_inner() = new,
        }
    }

    /// Every event accepted from now on (for tests and debugging tools).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tap.subscribe()
    }

    /// The warp filter serving the callback path.
    pub fn routes(
        self: &Arc<Self>,
    ) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
        let this = self.clone();
        // The path is fixed for the life of the listener.
        let path = self.settings().callback_path.clone();
        // Path first, method second: a GET to another path must be a 404,
        // not a 405 from this route.
        warp::path::full()
            .and_then(move |full: warp::path::FullPath| {
                let ok = full.as_str() == path;
                async move {
                    if ok {
                        Ok(())
                    } else {
                        Err(warp::reject::not_found())
                    }
                }
            })
            .untuple_one()
            .and(warp::post())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .and(warp::header::optional::<u64>("content-length"))
            .and(warp::body::stream())
            .then(move |raw: String, len: Option<u64>, body| {
                let this = this.clone();
                async move { this.handle(&raw, len, body).await }
            })
    }

    async fn handle<S, B>(
        &self,
        raw_query: &str,
        len: Option<u64>,
        body: S,
    ) -> warp::reply::Response
    where
        S: Stream<Item = Result<B, warp::Error>> + Unpin,
        B: Buf,
    {
        match self.accept(raw_query, len, body).await {
            Ok(()) => success(),
            Err(f) => {
                if f.status == StatusCode::SERVICE_UNAVAILABLE {
                    let mut r = reply_json(f.status, &failure_body(f.status, &f.message));
                    r.headers_mut().insert(
                        warp::http::header::RETRY_AFTER,
                        warp::http::HeaderValue::from_static("1"),
                    );
                    return r;
                }
                tracing::debug!(status = f.status.as_u16(), error = %f.message, "callback refused");
                let mut r = reply_json(f.status, &failure_body(f.status, &f.message));
                if f.status == StatusCode::PAYLOAD_TOO_LARGE {
                    // The rest of the body is never read, so the server
                    // drops the connection after this reply; saying so
                    // keeps keep-alive clients from sending their next
                    // request into a closed socket.
                    r.headers_mut().insert(
                        warp::http::header::CONNECTION,
                        warp::http::HeaderValue::from_static("close"),
                    );
                }
                r
            }
        }
    }

    async fn read_body<S, B>(&self, len: Option<u64>, mut body: S) -> Result<Bytes, Failure>
    where
        S: Stream<Item = Result<B, warp::Error>> + Unpin,
        B: Buf,
    {
        let max = self.settings().max_body_bytes;
        let too_big = || {
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body larger than server.max_body_bytes ({max} bytes)"),
            )
        };
        if len.is_some_and(|l| l > max) {
            return Err(too_big());
        }
        let mut buf = Vec::with_capacity(len.unwrap_or(1024).min(max) as usize);
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|e| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("reading body: {e}"),
                )
            })?;
            if buf.len() as u64 + chunk.remaining() as u64 > max {
                return Err(too_big());
            }
            while chunk.has_remaining() {
                let c = chunk.chunk();
                buf.extend_from_slice(c);
                let n = c.len();
                chunk.advance(n);
            }
        }
        Ok(Bytes::from(buf))
    }

    async fn accept<S, B>(&self, raw_query: &str, len: Option<u64>, body: S) -> Result<(), Failure>
    where
        S: Stream<Item = Result<B, warp::Error>> + Unpin,
        B: Buf,
    {
        let query = parse_query(raw_query);
        // The family label is known from the query alone for metrics of
        // early rejections.
        let family_hint = if decode::query_param(&query, &["CallbackCommand"]).is_some() {
            Family::B
        } else {
            Family::A
        };
        let count = |outcome: &str, command: &str| {
            self.metrics
                .callback(family_hint.as_str(), command, outcome)
        };
        let result = self.accept_inner(&query, len, body).await;
        match &result {
            Ok((d, outcome)) => {
                let cmd = if d.known_command {
                    d.command.as_str()
                } else {
                    "other"
                };
                self.metrics.callback(d.family.as_str(), cmd, outcome);
            }
            Err(f) => count(f.outcome, "other"),
        }
        result.map(|_| ())
    }

    async fn accept_inner<S, B>(
        &self,
        query: &Query,
        len: Option<u64>,
        body: S,
    ) -> Result<(Decoded, &'static str), Failure>
    where
        S: Stream<Item = Result<B, warp::Error>> + Unpin,
        B: Buf,
    {
        // 1. size
        let bytes = self.read_body(len, body).await?;
        let now = now_ms();
        // 2 and 3. app and sign
        let settings = self.settings();
        let sdkappid = auth::authenticate(
            &settings.apps,
            query,
            now / 1000,
            settings.max_clock_skew_secs,
        )
        .map_err(|e| match e {
            auth::AuthError::App(m) => Failure::new(StatusCode::FORBIDDEN, "forbidden", m),
            auth::AuthError::Sign(m) => Failure::new(StatusCode::UNAUTHORIZED, "unauthorized", m),
        })?;
        // 4. body
        let (body, decoded) = decode::decode_bytes(query, &bytes, now)
            .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;

        // Overload: refuse before anything is made durable, so every 200
        // is also guaranteed a place in the engine queue.
        let permit = self.engine.try_reserve().map_err(|_| {
            self.metrics.queue_rejections.inc();
            Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "rule engine queue is full, retry later",
            )
        })?;

        let key = {
            let mut dedup = self.dedup.lock().map_err(|_| {
                Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "dedup lock poisoned",
                )
            })?;
            let key = dedup.key(identity(&decoded, sdkappid));
            match dedup.reserve(key, now) {
                Seen::Duplicate => {
                    self.metrics.dedup_hits.inc();
                    return Ok((decoded, "duplicate"));
                }
                Seen::New(k) => k,
            }
        };

        let record = Record {
            received_at: Some(now),
            query: query.clone(),
            body,
        };
        if let Err(e) = self.journal.append(&record).await {
            tracing::error!(error = %e, "journal append failed; callback refused");
            if let Ok(mut d) = self.dedup.lock() {
                d.release(key);
            }
            return Err(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "journal_error",
                format!("callback not stored: {e}"),
            ));
        }
        self.metrics.events.inc_by(decoded.events.len() as u64);
        for e in &decoded.events {
            let _ = self.tap.send(e.clone());
        }
        self.metrics.queue_depth.inc();
        permit.send(Accepted {
            received_at: now,
            events: decoded.events.clone(),
        });
        Ok((decoded, "accepted"))
    }

    /// Rebuilds the dedup set from journaled records (on start).
    pub fn remember(&self, record: &Record) {
        let Some(at) = record.received_at else { return };
        let Ok(d) = decode::decode(&record.query, &record.body, at) else {
            return;
        };
        let sdkappid = decode::sdkappid(&record.query).unwrap_or(0);
        if let Ok(mut dedup) = self.dedup.lock() {
            let key = dedup.key(identity(&d, sdkappid));
            dedup.insert(key, at);
        }
    }
}
