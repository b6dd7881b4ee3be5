//! The front door: `POST /callback` (path configurable). Runs the checks
//! of docs/callbacks.md in order (peer 403, size 413, app 403, sign 401,
//! body 400), deduplicates Tencent's retries, makes the callback durable
//! in the journal and only then answers 200 and hands the decoded events
//! to the rule engine.
//!
//! # Layout
//! - [`decode`]: callback families → [`Event`]s (pure).
//! - [`allow`]: `server.callback_allow`, the peer address check (pure).
//! - [`auth`]: SDKAppID and sign checks (pure).
//! - [`dedup`]: bounded memory of recent deliveries.

// `server.callback_allow` is parsed with the config.
pub use crate::config::allow;
pub mod auth;
pub mod decode;
pub mod dedup;
mod handoff;
pub mod line;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Buf;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc};
use warp::http::StatusCode;
use warp::Filter;

use crate::config::AppConfig;
use crate::event::Event;
use crate::journal::Journal;
use crate::metrics::Metrics;
use decode::{Decoded, Family, Query};
use dedup::{Dedup, Seen};

/// What the rule engine receives for each accepted callback.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub received_at: i64,
    pub events: Vec<Event>,
    /// Cluster mode: the stream sequence it came from (0 from ingest).
    pub seq: u64,
    /// Cluster mode: an engine tick at `received_at` read from the stream
    /// (no events), not a callback.
    pub tick: bool,
}

/// The success body both Tencent parsers read (docs/callbacks.md), byte for byte.
pub const SUCCESS_BODY: &str =
    r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ErrorMessage":"Success"}"#;

/// What the stream said of a published callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now.
    New,
    /// Already stored within the duplicate window (a retry): not stored
    /// or evaluated again, but acknowledged.
    Duplicate,
}

/// Cluster mode's durable step (the JetStream stream, `cluster::ingest`):
/// stores one recorded-callback line under a stable id, once per id,
/// or says why not (the message goes into the 503's body).
pub trait StreamSink: Send + Sync {
    fn publish(
        &self,
        id: String,
        line: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Stored, String>> + Send>>;
}

/// Settings the callback path needs (a subset of the config).
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub callback_path: String,
    pub max_body_bytes: u64,
    pub max_clock_skew_secs: i64,
    pub apps: Vec<AppConfig>,
    /// `server.callback_allow`; empty allows any peer.
    pub callback_allow: Vec<allow::AllowNet>,
}

/// Shared state of the callback endpoint.
pub struct Ingest {
    /// Swapped as a whole on reload (apps and tokens, limits).
    settings: std::sync::RwLock<Arc<IngestSettings>>,
    journal: Arc<Journal>,
    /// Poisoned, it is not taken over as `store::lock` does: a set a panic
    /// left half-updated could call a new delivery a duplicate and so
    /// acknowledge what was never journaled. `/callback` answers 500 and
    /// `remember` skips (those requests answer 500 anyway) until a restart.
    dedup: Mutex<Dedup>,
    metrics: Arc<Metrics>,
    engine: mpsc::Sender<Accepted>,
    tap: broadcast::Sender<Event>,
    /// What the console shows of accepted callbacks (`crate::feed`).
    feed: Arc<crate::feed::Feed>,
    /// False until the dedup set is rebuilt from the journal on start:
    /// accepting earlier could process a retried delivery twice.
    accepting: std::sync::atomic::AtomicBool,
    /// Deliveries whose journal write is in progress, by dedup key, with
    /// the channel retries of it wait on (made by the first retry: most
    /// deliveries have none).
    /// (Keyed like the dedup set, by its SipHash values.)
    in_flight: Mutex<hashbrown::HashMap<u64, Option<InFlight>>>,
    /// Cluster mode: callbacks go to the JetStream stream instead of the
    /// journal, and reach the engine from the stream (docs/cluster.md).
    stream: std::sync::OnceLock<Box<dyn StreamSink>>,
    /// The journal releases completions once per batch (`handoff`); false
    /// only if its writer had already stopped, when each completes alone.
    batched: bool,
}

/// Tells retries waiting on a delivery whether it was stored.
type InFlight = tokio::sync::watch::Sender<Option<bool>>;

/// Current wall-clock time in Unix milliseconds.
pub use crate::time::now_ms;

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

pub use crate::server::failure_body;

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

/// The journal line (docs/recording.md) for an accepted callback. The body is copied
/// as received when it is already one line (it parsed as JSON, so the line
/// stays valid JSON and replays to the same value); otherwise it is
/// re-serialised compactly so one record stays one line.
fn journal_line(received_at: i64, query: &Query, raw: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(raw.len() + 256);
    line.extend_from_slice(b"{\"received_at\":");
    // Writing into a `Vec` cannot fail.
    let _ = write!(line, "{received_at}");
    line.extend_from_slice(b",\"query\":");
    // Serialising a map of strings cannot fail.
    let _ = serde_json::to_writer(&mut line, query);
    line.extend_from_slice(b",\"body\":");
    // A pretty-printed body would break the one-record-per-line format;
    // it was valid JSON, so it parses again (a rare, slower path).
    let multiline = memchr::memchr2(b'\n', b'\r', raw).is_some();
    if let Some(body) = multiline
        .then(|| serde_json::from_slice::<Value>(raw).ok())
        .flatten()
    {
        let _ = serde_json::to_writer(&mut line, &body);
    } else {
        line.extend_from_slice(raw);
    }
    line.push(b'}');
    line
}

/// The identity Tencent keeps across retries of one delivery
/// (docs/callbacks.md): SDKAppID, command, and each event's CallId,
/// UserId and EventTime. Hashed in place, without collecting the parts.
struct Identity<'a> {
    sdkappid: u64,
    command: &'a str,
    events: &'a [Event],
}

impl std::hash::Hash for Identity<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.sdkappid.hash(h);
        self.command.hash(h);
        // A length prefix, as a slice's own hash has.
        h.write_usize(self.events.len());
        for e in self.events {
            e.call_id.as_deref().unwrap_or("").hash(h);
            e.user_id.as_deref().unwrap_or("").hash(h);
            e.event_time.hash(h);
        }
    }
}

impl Identity<'_> {
    /// The same identity as a digest that is equal on every node and
    /// across restarts: cluster mode's `Nats-Msg-Id`.
    fn stable_id(&self) -> String {
        let parts: Vec<(&str, &str, i64)> = self
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
        dedup::stable_id(self.sdkappid, self.command, &parts)
    }
}

fn identity(d: &Decoded, sdkappid: u64) -> Identity<'_> {
    Identity {
        sdkappid,
        command: &d.command,
        events: &d.events,
    }
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
        let batched = journal
            .set_after_batch(Box::new(handoff::release_batch))
            .is_ok();
        Ingest {
            settings: std::sync::RwLock::new(Arc::new(settings)),
            journal,
            dedup: Mutex::new(dedup),
            metrics,
            engine,
            tap,
            feed: Arc::new(crate::feed::Feed::new()),
            accepting: std::sync::atomic::AtomicBool::new(false),
            in_flight: Mutex::new(hashbrown::HashMap::new()),
            stream: std::sync::OnceLock::new(),
            batched,
        }
    }

    /// Cluster mode: publish accepted callbacks to the stream.
    pub fn set_stream(&self, publisher: Box<dyn StreamSink>) {
        let _ = self.stream.set(publisher);
    }

    /// Starts accepting callbacks (after recovery of the dedup set).
    pub fn set_accepting(&self) {
        self.accepting
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn lock_in_flight(
        &self,
    ) -> std::sync::MutexGuard<'_, hashbrown::HashMap<u64, Option<InFlight>>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
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

    /// The console's feed of accepted callbacks.
    pub fn feed(&self) -> &Arc<crate::feed::Feed> {
        &self.feed
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
            // The TCP peer (warp's `addr::remote` is empty under this server).
            .and(crate::server::remote())
            .and(warp::body::stream())
            .then(
                move |raw: String, len: Option<u64>, peer: Option<SocketAddr>, body| {
                    let this = this.clone();
                    async move { this.handle(&raw, len, peer, body).await }
                },
            )
    }

    async fn handle<S, B>(
        self: &Arc<Self>,
        raw_query: &str,
        len: Option<u64>,
        peer: Option<SocketAddr>,
        body: S,
    ) -> warp::reply::Response
    where
        S: Stream<Item = Result<B, warp::Error>> + Unpin,
        B: Buf,
    {
        match self.accept(raw_query, len, peer, body).await {
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
                if f.status == StatusCode::PAYLOAD_TOO_LARGE || f.outcome == "not_allowed" {
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

    async fn read_body<S, B>(
        &self,
        max: u64,
        len: Option<u64>,
        mut body: S,
    ) -> Result<Bytes, Failure>
    where
        S: Stream<Item = Result<B, warp::Error>> + Unpin,
        B: Buf,
    {
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
        // A callback body nearly always arrives as one chunk: it is kept
        // as it came (for `Bytes`, without a copy); only a body split
        // across chunks is gathered into a buffer.
        let mut whole: Option<Bytes> = None;
        let mut gathered: Vec<u8> = Vec::new();
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|e| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("reading body: {e}"),
                )
            })?;
            size += chunk.remaining() as u64;
            if size > max {
                return Err(too_big());
            }
            if whole.is_none() && gathered.is_empty() {
                whole = Some(chunk.copy_to_bytes(chunk.remaining()));
                continue;
            }
            if let Some(first) = whole.take() {
                gathered.reserve(len.unwrap_or(size).min(max) as usize);
                gathered.extend_from_slice(&first);
            }
            while chunk.has_remaining() {
                let c = chunk.chunk();
                gathered.extend_from_slice(c);
                let n = c.len();
                chunk.advance(n);
            }
        }
        Ok(whole.unwrap_or_else(|| Bytes::from(gathered)))
    }

    async fn accept<S, B>(
        self: &Arc<Self>,
        raw_query: &str,
        len: Option<u64>,
        peer: Option<SocketAddr>,
        body: S,
    ) -> Result<(), Failure>
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
        let result = self.accept_inner(&query, len, peer, body).await;
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
        self: &Arc<Self>,
        query: &Query,
        len: Option<u64>,
        peer: Option<SocketAddr>,
        body: S,
    ) -> Result<(Decoded, &'static str), Failure>
    where
        S: Stream<Item = Result<B, warp::Error>> + Unpin,
        B: Buf,
    {
        // 0. peer: before anything else, so a refused network learns
        // nothing about the app table, the sign or the daemon's state.
        // One read of the settings per request (a reload swaps them whole).
        let settings = self.settings();
        allow::allowed(&settings.callback_allow, peer.map(|p| p.ip()))
            .map_err(|m| Failure::new(StatusCode::FORBIDDEN, "not_allowed", m))?;
        if !self.accepting.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "recovering",
                "recovering state from the journal, retry shortly",
            ));
        }
        // 1. size
        let bytes = self.read_body(settings.max_body_bytes, len, body).await?;
        let now = now_ms();
        // 2 and 3. app and sign
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
        let decoded = decode::decode_bytes(query, &bytes, now)
            .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
        if let Some(stream) = self.stream.get() {
            let id = identity(&decoded, sdkappid).stable_id();
            return self
                .publish(stream.as_ref(), id, query, &bytes, now, decoded)
                .await;
        }

        // Overload: refuse before anything is made durable, so every 200
        // is also guaranteed a place in the engine queue.
        let permit = self.engine.clone().try_reserve_owned().map_err(|_| {
            self.metrics.queue_rejections.inc();
            Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "rule engine queue is full, retry later",
            )
        })?;

        // Decided under the lock, awaited outside it.
        enum Reserved {
            New(u64),
            Duplicate(Option<tokio::sync::watch::Receiver<Option<bool>>>),
        }
        let reserved = {
            let mut dedup = self.dedup.lock().map_err(|_| {
                Failure::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "dedup lock poisoned",
                )
            })?;
            let key = dedup.key(identity(&decoded, sdkappid));
            match dedup.reserve(key, now) {
                Seen::Duplicate => Reserved::Duplicate(
                    self.lock_in_flight()
                        .get_mut(&key)
                        .map(|w| w.get_or_insert_with(|| InFlight::new(None)).subscribe()),
                ),
                Seen::New(k) => {
                    self.lock_in_flight().insert(k, None);
                    Reserved::New(k)
                }
            }
        };
        let key = match reserved {
            Reserved::New(k) => k,
            Reserved::Duplicate(waiting) => {
                // A retry of a delivery whose journal write is still in
                // progress must not be acknowledged before that write is
                // durable: wait for its outcome.
                if let Some(mut rx) = waiting {
                    let stored = rx.wait_for(Option::is_some).await.ok().and_then(|v| *v);
                    if stored != Some(true) {
                        return Err(Failure::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "retry",
                            "an identical delivery is being stored, retry shortly",
                        ));
                    }
                }
                self.metrics.dedup_hits.inc();
                return Ok((decoded, "duplicate"));
            }
        };

        let line = journal_line(now, query, &bytes);
        let Decoded {
            family,
            command,
            known_command,
            sdkappid,
            events,
        } = decoded;
        // Durable, then queued for the engine, then answered: see
        // `handoff`. Cancelling this request from here on loses nothing.
        let stored = self.store(key, line, now, events, permit).await;
        if let Err(e) = stored {
            // Not durable, so not acknowledged: 503 with `Retry-After`
            // makes Tencent deliver it again once the disk has recovered.
            return Err(Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "journal_error",
                format!("callback not stored: {e}"),
            ));
        }
        Ok((
            Decoded {
                family,
                command,
                known_command,
                sdkappid,
                events: Vec::new(),
            },
            "accepted",
        ))
    }

    /// Cluster mode's durable step: the stream, deduplicated by JetStream
    /// (`Nats-Msg-Id`) whichever node a retry lands on, instead of the
    /// journal and the engine queue.
    async fn publish(
        &self,
        stream: &dyn StreamSink,
        id: String,
        query: &Query,
        bytes: &[u8],
        now: i64,
        decoded: Decoded,
    ) -> Result<(Decoded, &'static str), Failure> {
        let line = journal_line(now, query, bytes);
        match stream.publish(id, line).await {
            Ok(Stored::New) => {
                self.metrics.events.inc_by(decoded.events.len() as u64);
                Ok((decoded, "accepted"))
            }
            Ok(Stored::Duplicate) => {
                self.metrics.dedup_hits.inc();
                Ok((decoded, "duplicate"))
            }
            Err(e) => Err(Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "stream_unavailable",
                e,
            )),
        }
    }

    /// Rebuilds the dedup set from a journaled callback (on start).
    pub fn remember(&self, decoded: &Decoded, received_at: i64) {
        if let Ok(mut dedup) = self.dedup.lock() {
            let key = dedup.key(identity(decoded, decoded.sdkappid));
            dedup.insert(key, received_at);
        }
    }
}
