//! The HTTP server: our own accept loop serving the warp routes through
//! hyper, because warp's server has no connection cap and no timeouts.
//! It owns what a connection may cost: at most `server.max_connections`
//! at once (one more is answered 503 and closed at once, so idle or
//! stalled clients cannot use up the open files and make callbacks fail
//! with EMFILE), request headers within `server.header_read_timeout` of
//! their first byte (slowloris), and keep-alive connections closed after
//! `server.idle_timeout` without a request. Shutdown stops accepting and
//! lets requests in progress finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use warp::Filter;

use crate::config::ServerConfig;
use crate::metrics::Metrics;

/// What one connection may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl From<&ServerConfig> for Limits {
    fn from(s: &ServerConfig) -> Limits {
        Limits {
            max_connections: s.max_connections,
            header_read_timeout: s.header_read_timeout,
            idle_timeout: s.idle_timeout,
        }
    }
}

/// The connection's peer address, in every request's extensions.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

/// The client's address, for routes. (warp's `addr::remote` is filled in
/// only by warp's own server.)
pub fn remote() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Copy {
    warp::ext::optional::<Peer>().map(|p: Option<Peer>| p.map(|Peer(a)| a))
}

/// File descriptors kept free for the journal, the store, outgoing
/// notifications and the listener itself.
const RESERVED_FDS: u64 = 256;

/// Raises the soft open-file limit to the hard one and returns how many
/// connections fit under it (at most `wanted`).
// rlim_t is u64 on Linux but not on every platform.
#[allow(clippy::unnecessary_cast)]
// The crate denies `unsafe_code`; this is an exception: libc has no
// safe wrapper for the open-file limit.
#[allow(unsafe_code)]
fn connections_that_fit(wanted: usize) -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    let limit = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return wanted;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur as u64
    };
    let fit = limit.saturating_sub(RESERVED_FDS).max(1);
    if (wanted as u64) > fit {
        tracing::warn!(
            max_connections = wanted,
            open_file_limit = limit,
            serving = fit,
            "server.max_connections does not fit under the open-file limit; serving fewer"
        );
        return fit as usize;
    }
    wanted
}

/// Where one connection is: what its deadline is measured from.
struct Phase {
    /// Requests being answered (more than one only when pipelined).
    in_flight: usize,
    /// First byte of a request whose headers are not complete yet.
    head_started: Option<Instant>,
    /// When the connection last had nothing to do.
    idle_since: Instant,
}

/// A connection's phase, shared by its socket, its service and its
/// watchdog.
struct ConnState(Mutex<Phase>);

impl ConnState {
    fn new() -> Arc<ConnState> {
        Arc::new(ConnState(Mutex::new(Phase {
            in_flight: 0,
            head_started: None,
            idle_since: Instant::now(),
        })))
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_read(&self) {
        let mut p = self.phase();
        if p.in_flight == 0 && p.head_started.is_none() {
            p.head_started = Some(Instant::now());
        }
    }

    /// Headers are complete: the request is being answered until the
    /// returned guard drops.
    fn request(self: &Arc<Self>) -> InFlight {
        let mut p = self.phase();
        p.in_flight += 1;
        p.head_started = None;
        InFlight(self.clone())
    }

    /// When the connection is to be closed (`None` while answering) and
    /// why.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, &'static str)> {
        let p = self.phase();
        if p.in_flight > 0 {
            return None;
        }
        Some(match p.head_started {
            Some(t) => (t + limits.header_read_timeout, "header_read_timeout"),
            None => (p.idle_since + limits.idle_timeout, "idle_timeout"),
        })
    }
}

struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut p = self.0.phase();
        p.in_flight = p.in_flight.saturating_sub(1);
        if p.in_flight == 0 {
            p.idle_since = Instant::now();
        }
    }
}

/// A response body holding its request's [`InFlight`] guard until the
/// body is done or dropped.
struct Answering<B> {
    body: B,
    _guard: InFlight,
}

impl<B: http_body::Body + Unpin> http_body::Body for Answering<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket, noting when request bytes arrive.
struct Watched {
    io: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Resolves when the connection has been idle, or has been sending one
/// request's headers, for too long; with the setting that expired.
async fn watchdog(state: Arc<ConnState>, limits: Limits) -> &'static str {
    // A deadline can move earlier (an idle connection starts a request),
    // so it is looked at again at least this often.
    let every = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        let now = Instant::now();
        let wake = match state.deadline(&limits) {
            Some((at, why)) if at <= now => return why,
            Some((at, _)) => at.min(now + every),
            None => now + every,
        };
        tokio::time::sleep_until(wake.into()).await;
    }
}

/// The answer to a connection over the cap, written without waiting.
fn over_capacity_reply() -> Vec<u8> {
    let status = warp::http::StatusCode::SERVICE_UNAVAILABLE;
    let body = failure_body(status, "too many open connections").to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Accept failures: running out of file descriptors is logged (at most
/// every 10 s) and waited out briefly; a peer that went away is skipped.
async fn accept_failed(e: std::io::Error, last_logged: &mut Option<Instant>) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    if last_logged.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
        tracing::error!(error = %e, "accepting a connection failed; retrying");
        *last_logged = Some(Instant::now());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Serves `routes` on `listener` until `stop` resolves, then stops
/// accepting and waits for the requests in progress (the caller bounds
/// that wait).
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    limits: Limits,
    metrics: Arc<Metrics>,
    stop: impl Future<Output = ()>,
) where
    F: Filter<Extract = (warp::reply::Response,), Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let capacity = connections_that_fit(limits.max_connections);
    let slots = Arc::new(Semaphore::new(capacity));
    let refusal: Arc<[u8]> = over_capacity_reply().into();
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let service = hyper_util::service::TowerToHyperService::new(warp::service(routes));
    let mut stop = std::pin::pin!(stop);
    let mut last_logged = None;
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(e, &mut last_logged).await;
                    continue;
                }
            },
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Refused at once rather than queued: the client (Tencent
            // retries) sees a 503 or a reset, never a hang.
            metrics.connections_refused.inc();
            let _ = stream.try_write(&refusal);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = ConnState::new();
        let io = TokioIo::new(Watched {
            io: stream,
            state: state.clone(),
        });
        let per_request = {
            let state = state.clone();
            let service = service.clone();
            hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                let guard = state.request();
                let answer = hyper::service::Service::call(&service, req);
                async move {
                    // The request counts as in flight until its body is
                    // sent: a long answer (an event stream) is not idle.
                    let r = answer.await;
                    r.map(|resp| {
                        resp.map(|body| Answering {
                            body,
                            _guard: guard,
                        })
                    })
                }
            })
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            // Our watchdog times headers from their first byte; hyper's
            // timer would also run while the connection is idle.
            .header_read_timeout(None)
            .serve_connection(io, per_request);
        let conn = graceful.watch(conn);
        let metrics = metrics.clone();
        metrics.connections_open.inc();
        tokio::spawn(async move {
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                },
                why = watchdog(state, limits) => {
                    // Dropping the connection closes the socket.
                    metrics.connections_timed_out.inc();
                    tracing::debug!(%peer, setting = why, "connection closed");
                }
            }
            metrics.connections_open.dec();
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The failure body of every refusal on the callback port (the callback
/// route's and the accept loop's): the success keys with `FAIL`, a
/// non-zero code and the message (Tencent logs `ErrorInfo`; people read
/// `ErrorMessage`).
pub fn failure_body(status: warp::http::StatusCode, message: &str) -> serde_json::Value {
    serde_json::json!({
        "ActionStatus": "FAIL",
        "ErrorCode": status.as_u16(),
        "ErrorInfo": message,
        "ErrorMessage": message,
    })
}
