//! Wiring: builds the components from a validated config, recovers state
//! from the journal, spawns the HTTP server and the engine task, and shuts
//! everything down in order (stop accepting, drain in-flight requests with
//! a timeout, drain the engine queue, flush the journal).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use warp::http::StatusCode;
use warp::Filter;

use crate::config::Config;
use crate::ingest::dedup::Dedup;
use crate::ingest::{self, Accepted, Ingest, IngestSettings};
use crate::journal::{self, Journal};
use crate::metrics::Metrics;

/// A running daemon.
pub struct Daemon {
    /// The address the HTTP server is bound to.
    pub addr: SocketAddr,
    pub ingest: Arc<Ingest>,
    pub metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
    /// Tells the engine to take no more callbacks and drain its queue.
    close_engine: oneshot::Sender<()>,
    engine: JoinHandle<()>,
    journal: Arc<Journal>,
    config: Config,
}

/// Renders warp's rejections (unknown path, wrong method, bad header) as
/// the same JSON failure body the callback path uses.
async fn recover(r: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    let (status, message) = if r.is_not_found() {
        (StatusCode::NOT_FOUND, "no such endpoint".to_string())
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed".to_string(),
        )
    } else if let Some(e) = r.find::<warp::reject::InvalidHeader>() {
        (StatusCode::BAD_REQUEST, e.to_string())
    } else {
        (StatusCode::BAD_REQUEST, format!("{r:?}"))
    };
    let body = ingest::failure_body(status, &message);
    let mut resp = warp::reply::Response::new(body.to_string().into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// Starts the daemon: opens the journal, rebuilds the dedup set, binds the
/// listener and spawns the server and engine tasks.
pub async fn start(config: Config) -> anyhow::Result<Daemon> {
    let metrics = Arc::new(Metrics::new());
    std::fs::create_dir_all(&config.state.dir)
        .with_context(|| format!("creating state.dir {}", config.state.dir.display()))?;

    let t = Instant::now();
    let records = journal::read_journal(&config.state.dir)
        .with_context(|| format!("reading journal in {}", config.state.dir.display()))?;
    let journal = Arc::new(
        Journal::open(
            &config.state.dir,
            config.state.fsync,
            config.state.segment_bytes,
            metrics.clone(),
        )
        .with_context(|| format!("opening journal in {}", config.state.dir.display()))?,
    );

    let (engine_tx, engine_rx) = mpsc::channel::<Accepted>(config.server.queue_capacity);
    let settings = IngestSettings {
        callback_path: config.server.callback_path.clone(),
        max_body_bytes: config.server.max_body_bytes,
        max_clock_skew_secs: config.server.max_clock_skew.as_secs() as i64,
        apps: config.apps.clone(),
    };
    let dedup_ms = config.server.dedup_window.as_millis() as i64;
    let ingest = Arc::new(Ingest::new(
        settings,
        journal.clone(),
        Dedup::new(dedup_ms, config.server.dedup_max_entries),
        metrics.clone(),
        engine_tx,
    ));
    let cutoff = ingest::now_ms() - dedup_ms;
    for r in records
        .iter()
        .filter(|r| r.received_at.unwrap_or(0) >= cutoff)
    {
        ingest.remember(r);
    }
    tracing::info!(
        records = records.len(),
        elapsed_ms = t.elapsed().as_millis() as u64,
        "journal read"
    );

    let ready = Arc::new(AtomicBool::new(false));
    let routes = ingest
        .routes()
        .or(crate::api::ops_routes(ready.clone(), metrics.clone()))
        .unify()
        .recover(recover)
        .unify();

    let addr = config.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding server.listen {addr}"))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        warp::serve(routes)
            .incoming(listener)
            .graceful(async move {
                let _ = stopped.await;
            })
            .run(),
    );

    let engine_metrics = metrics.clone();
    let (close_engine, engine_closed) = oneshot::channel::<()>();
    let engine = tokio::spawn(run_engine(engine_rx, engine_closed, engine_metrics));
    ready.store(true, Ordering::Release);
    tracing::info!(%addr, "callwatch listening");
    Ok(Daemon {
        addr,
        ingest,
        metrics,
        ready,
        stop,
        server,
        close_engine,
        engine,
        journal,
        config,
    })
}

async fn run_engine(
    mut rx: mpsc::Receiver<Accepted>,
    closed: oneshot::Receiver<()>,
    metrics: Arc<Metrics>,
) {
    let mut closed = std::pin::pin!(closed);
    let mut closing = false;
    loop {
        tokio::select! {
            accepted = rx.recv() => match accepted {
                Some(_accepted) => {
                    metrics.queue_depth.dec();
                }
                None => break,
            },
            // Closing the receiver refuses new callbacks (they get a 503)
            // but still yields everything already queued, then `None`.
            _ = &mut closed, if !closing => {
                closing = true;
                rx.close();
            }
        }
    }
}

impl Daemon {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Graceful stop: no new connections, in-flight requests get
    /// `server.shutdown_timeout`, then the engine drains and the journal
    /// is flushed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let Daemon {
            ingest,
            stop,
            server,
            close_engine,
            engine,
            journal,
            config,
            ..
        } = self;
        let _ = stop.send(());
        let timeout = config.server.shutdown_timeout;
        let mut server = server;
        if tokio::time::timeout(timeout, &mut server).await.is_err() {
            tracing::warn!(
                ?timeout,
                "in-flight requests did not finish in time; closing them"
            );
            server.abort();
        }
        // Connections the server gave up on live on in their own tasks and
        // keep the ingest handle (and so the engine's sender) alive, so the
        // engine cannot wait for every sender to go: it is told to close,
        // and drains what was accepted before.
        drop(ingest);
        let _ = close_engine.send(());
        if let Err(e) = engine.await {
            tracing::error!(error = %e, "engine task failed");
        }
        journal.flush().await.context("flushing journal")?;
        match Arc::try_unwrap(journal) {
            Ok(j) => j.close(),
            Err(_) => tracing::warn!("journal still referenced at shutdown; it was flushed"),
        }
        tracing::info!("callwatch stopped");
        Ok(())
    }
}

/// Runs the daemon until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let daemon = start(config).await?;
    shutdown.await;
    tracing::info!("shutting down");
    daemon.shutdown().await
}
