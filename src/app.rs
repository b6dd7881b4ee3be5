//! Wiring: builds the components from a validated config, recovers state
//! from the journal, spawns the HTTP server and the engine task, and shuts
//! everything down in order (stop accepting, drain in-flight requests with
//! a timeout, drain the engine queue, flush the journal).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use warp::http::StatusCode;
use warp::Filter;

use crate::alert::AlertStatus;
use crate::api::Admin;
use crate::config::Config;
use crate::engine::{Engine, RuleStats, Snapshot, Transition};
use crate::ingest::dedup::Dedup;
use crate::ingest::{self, Accepted, Ingest, IngestSettings};
use crate::journal::{self, Journal, Record};
use crate::metrics::{Metrics, RuleLabels, StateLabels};
use crate::notify::dispatch::Dispatcher;
use crate::notify::outbox::Outbox;
use crate::notify::Receivers;
use crate::rules::Rule;
use crate::store::Store;

/// A running daemon.
pub struct Daemon {
    /// The address the HTTP server is bound to.
    pub addr: SocketAddr,
    pub ingest: Arc<Ingest>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<Mutex<Store>>,
    ready: Arc<AtomicBool>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
    notify_stop: watch::Sender<bool>,
    dispatcher_task: JoinHandle<()>,
    outbox_task: JoinHandle<()>,
    engine: std::thread::JoinHandle<()>,
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
    let rules = load_rules(&config).map_err(|errs| anyhow::anyhow!(errs.join("\n")))?;
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

    let store = Arc::new(Mutex::new(
        Store::open(&config.state.dir).context("opening the store in state.dir")?,
    ));
    let receivers = Arc::new(Receivers::from_config(&config).context("building receivers")?);
    let outbox = Arc::new(Outbox::new(
        store.clone(),
        receivers.clone(),
        metrics.clone(),
        config.alerting.give_up_after,
        config.alerting.max_retry_interval,
    ));
    let dispatcher = Arc::new(Dispatcher::new(
        &config,
        &receivers,
        store.clone(),
        outbox.clone(),
        metrics.clone(),
    ));
    let (notify_stop, notify_stopped) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let outbox_task = tokio::spawn(outbox.run(stopped(notify_stopped.clone())));
    let dispatcher_task = tokio::spawn(dispatcher.clone().run(stopped(notify_stopped)));

    let ready = Arc::new(AtomicBool::new(false));
    let snapshot = Arc::new(RwLock::new(Snapshot::default()));
    let admin = Arc::new(Admin {
        token: config.server.admin_token.clone(),
        store: store.clone(),
        snapshot: snapshot.clone(),
    });
    let routes = ingest
        .routes()
        .or(crate::api::ops_routes(ready.clone(), metrics.clone()))
        .unify()
        .or(crate::api::admin_routes(admin))
        .unify()
        .recover(crate::api::recover_admin)
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

    let engine = {
        let mut engine = Engine::new(rules, crate::replay::engine_settings(&config));
        let saved =
            crate::notify::dispatch::saved_alerts(&store.lock().unwrap_or_else(|p| p.into_inner()));
        // Outside the macro: tracing skips its arguments when no
        // subscriber listens.
        let restored = engine.restore(saved);
        tracing::info!(alerts = restored, "alert states restored");
        let horizon = ingest::now_ms() - (engine.max_window_secs() + 60) * 1000;
        let history: Vec<Record> = records
            .into_iter()
            .filter(|r| r.received_at.unwrap_or(0) >= horizon)
            .collect();
        let metrics = metrics.clone();
        let ready = ready.clone();
        let tick = config.rules.tick;
        let deliver = move |ts: Vec<Transition>| dispatcher.submit(ts);
        let snapshot = snapshot.clone();
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let task = EngineTask {
                    engine,
                    history,
                    rx: engine_rx,
                    metrics,
                    tick,
                    ready,
                    snapshot,
                };
                run_engine(task, deliver)
            })
            .context("spawning the engine thread")?
    };
    tracing::info!(%addr, "callwatch listening");
    Ok(Daemon {
        addr,
        ingest,
        metrics,
        store,
        ready,
        stop,
        server,
        notify_stop,
        dispatcher_task,
        outbox_task,
        engine,
        journal,
        config,
    })
}

/// Loads and compiles every rule, reporting all problems at once.
pub fn load_rules(config: &Config) -> Result<Vec<Arc<Rule>>, Vec<String>> {
    crate::rules::load_dir(&config.rules.dir, &config.rules)
        .map(|rules| rules.into_iter().map(Arc::new).collect())
        .map_err(|errs| errs.iter().map(|e| e.to_string()).collect())
}

fn now_secs() -> i64 {
    ingest::now_ms() / 1000
}

/// Mirrors the engine's counters into the metrics registry.
fn publish_stats(engine: &Engine, metrics: &Metrics, published: &mut HashMap<String, RuleStats>) {
    for (rule, keys, stats) in engine.stats() {
        let labels = RuleLabels { rule: rule.clone() };
        let before = published.entry(rule).or_default();
        metrics
            .rule_evaluations
            .get_or_create(&labels)
            .inc_by(stats.evaluations - before.evaluations);
        metrics
            .rule_errors
            .get_or_create(&labels)
            .inc_by(stats.errors - before.errors);
        metrics
            .late_events
            .get_or_create(&labels)
            .inc_by(stats.late_events - before.late_events);
        metrics.rule_keys.get_or_create(&labels).set(keys as i64);
        *before = stats;
    }
    let active = engine.active_alerts();
    for state in [AlertStatus::Pending, AlertStatus::Firing] {
        let n = active.iter().filter(|a| a.status == state).count();
        metrics
            .alerts
            .get_or_create(&StateLabels {
                state: state.as_str().into(),
            })
            .set(n as i64);
    }
}

/// The engine loop, on its own thread so rule CPU never stalls the HTTP
/// workers. Windows are first rebuilt from the journal's recent records.
struct EngineTask {
    engine: Engine,
    /// Journal records recent enough to matter for some window.
    history: Vec<Record>,
    rx: mpsc::Receiver<Accepted>,
    metrics: Arc<Metrics>,
    tick: std::time::Duration,
    ready: Arc<AtomicBool>,
    snapshot: Arc<RwLock<Snapshot>>,
}

fn run_engine(task: EngineTask, deliver: impl Fn(Vec<Transition>)) {
    let EngineTask {
        mut engine,
        history,
        mut rx,
        metrics,
        tick,
        ready,
        snapshot,
    } = task;
    let publish = |engine: &Engine| {
        let s = engine.snapshot();
        match snapshot.write() {
            Ok(mut w) => *w = s,
            Err(p) => *p.into_inner() = s,
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the engine runtime");
            return;
        }
    };
    let mut published = HashMap::new();
    let now = now_secs();
    let t = Instant::now();
    let mut rebuilt = 0usize;
    for r in history {
        let received = r.received_at.unwrap_or(0);
        if let Ok(d) = crate::ingest::decode::decode(&r.query, &r.body, received) {
            for e in d.events {
                engine.on_event(e, now, false);
                rebuilt += 1;
            }
        }
    }
    deliver(engine.evaluate_all(now));
    publish(&engine);
    tracing::info!(
        events = rebuilt,
        elapsed_ms = t.elapsed().as_millis() as u64,
        "windows rebuilt from journal"
    );
    ready.store(true, Ordering::Release);
    rt.block_on(async move {
        let mut last_publish = Instant::now();
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(accepted) => {
                        metrics.queue_depth.dec();
                        let now = now_secs();
                        let mut out = Vec::new();
                        for e in accepted.events {
                            out.extend(engine.on_event(e, now, true));
                        }
                        // The API view is refreshed on every alert change
                        // and at most twice a second otherwise.
                        if !out.is_empty() || last_publish.elapsed().as_millis() > 500 {
                            deliver(out);
                            publish(&engine);
                            last_publish = Instant::now();
                        }
                    }
                    None => break,
                },
                _ = ticker.tick() => {
                    deliver(engine.on_tick(now_secs()));
                    publish_stats(&engine, &metrics, &mut published);
                    publish(&engine);
                    last_publish = Instant::now();
                }
            }
        }
        publish_stats(&engine, &metrics, &mut published);
        publish(&engine);
    });
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
            engine,
            journal,
            config,
            notify_stop,
            dispatcher_task,
            outbox_task,
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
        // The server's filters held clones of the ingest handle; once the
        // last one goes the engine channel closes and the engine drains.
        drop(ingest);
        let joined = tokio::task::spawn_blocking(move || engine.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            tracing::error!("engine thread panicked");
        }
        // Groups still waiting go to the outbox (persisted), then the
        // delivery workers stop; what is queued is sent on the next start.
        let _ = notify_stop.send(true);
        let _ = dispatcher_task.await;
        let _ = outbox_task.await;
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
