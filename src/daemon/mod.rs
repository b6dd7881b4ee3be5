//! The daemon: builds the components from a validated config, recovers
//! state from the journal, spawns the HTTP server, the engine thread and
//! the background tasks, and stops them all in one documented order.
//!
//! # Shutdown order
//! [`Daemon::shutdown`] is the only way down, and goes in this order, so
//! that nothing acknowledged is lost:
//! 1. systemd hears STOPPING; the listener stops accepting and the
//!    housekeeping task is told to stop;
//! 2. in-flight requests get half of `server.shutdown_timeout`, then are cut;
//! 3. the engine closes its queue (new callbacks get a 503) and works
//!    through what was acknowledged until 80 % of the timeout; what is
//!    left is in the journal and is evaluated at the next start;
//! 4. the dispatcher hands waiting groups to the outbox and both stop by
//!    95 % (pending transitions and the outbox are in the store);
//! 5. the journal is flushed and closed.
//!
//! # Threads and tasks
//! - the HTTP server (`crate::server`), a tokio task;
//! - the engine thread (`engine_loop.rs`), with its own current-thread runtime;
//! - the journal writer thread (`crate::journal`);
//! - the dispatcher and the outbox (`crate::notify`), tokio tasks;
//! - housekeeping (`housekeeping.rs`), a tokio task;
//! - in [`run`]: the SIGHUP listener and the rules-dir watcher (`reload.rs`).

mod build;
mod engine_loop;
mod housekeeping;
mod recovery;
pub mod reload;
mod unsaved;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use warp::Filter;

use crate::api::Admin;
use crate::config::Config;
use crate::engine::{Engine, EngineSettings, Snapshot};
use crate::event::Event;
use crate::ingest::dedup::Dedup;
use crate::ingest::{Accepted, Ingest};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::notify::dispatch::Dispatcher;
use crate::notify::outbox::Outbox;
use crate::notify::Receivers;
use crate::startup::SetupError;
use crate::store::{SharedStore, Store};
use crate::time::now_ms;
pub(crate) use build::ingest_settings;
pub use build::load_rules;
pub use engine_loop::EngineCmd;
use engine_loop::{run_engine, EngineTask, StreamSide};
use housekeeping::housekeeping;
pub use housekeeping::retention_ms;
use recovery::{horizon_ms, recover_journal, restore_records};
use reload::watch_rules;
pub use reload::{ConfigSource, Reloader};

/// A running daemon: what its callers may look at (the first five
/// fields, for tests and the binary) and the handles [`Daemon::shutdown`]
/// needs to stop each part in order.
pub struct Daemon {
    /// The address the HTTP server is bound to.
    pub addr: SocketAddr,
    /// The callback path: checks, dedup, journal, hand-off to the engine.
    pub ingest: Arc<Ingest>,
    pub metrics: Arc<Metrics>,
    pub store: SharedStore,
    pub reloader: Arc<Reloader>,
    /// `/readyz`: set by the engine thread once the windows are rebuilt.
    ready: Arc<AtomicBool>,
    /// Stops the HTTP listener (step 1).
    stop: oneshot::Sender<()>,
    /// The HTTP server task, awaited with a deadline (step 2).
    server: JoinHandle<()>,
    /// Tells the dispatcher and the outbox to finish (step 4).
    notify_stop: watch::Sender<bool>,
    /// Stops the housekeeping task (step 1).
    prune_stop: oneshot::Sender<()>,
    prune_task: JoinHandle<()>,
    /// Tells the engine to take no more callbacks and drain its queue
    /// until the deadline given (step 3).
    close_engine: oneshot::Sender<Instant>,
    dispatcher_task: JoinHandle<()>,
    outbox_task: JoinHandle<()>,
    /// Cluster mode: lease, cluster outbox, shared silences.
    leader_side: Option<crate::cluster::leader::LeaderSide>,
    /// The engine thread, joined after it drained (step 3).
    engine: std::thread::JoinHandle<()>,
    /// Flushed and closed last (step 5).
    journal: Arc<Journal>,
    /// The config the daemon started with: `shutdown_timeout` when a
    /// reload holds the current one.
    config: Config,
}

/// Starts the daemon: opens the journal, rebuilds the dedup set, binds the
/// listener and spawns the server and engine tasks.
pub async fn start(config: Config) -> anyhow::Result<Daemon> {
    start_with(config, ConfigSource::Fixed).await
}

/// Like [`start`], remembering where the config came from so a reload
/// re-reads it.
pub async fn start_with(config: Config, source: ConfigSource) -> anyhow::Result<Daemon> {
    let metrics = Arc::new(Metrics::new());
    // Bad rules or receivers are the operator's to fix: `SetupError`
    // makes `callwatch run` exit 1, which systemd does not restart.
    let rules = load_rules(&config).map_err(|errs| {
        let lines: Vec<String> = errs.iter().map(ToString::to_string).collect();
        SetupError(lines.join("\n"))
    })?;
    crate::startup::log_start(&config, &source, rules.len());
    std::fs::create_dir_all(&config.state.dir)
        .with_context(|| format!("creating state.dir {}", config.state.dir.display()))?;

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
    // Cluster mode: the engine is fed from the stream, not by ingest.
    let live_tx = config.cluster.is_some().then(|| engine_tx.clone());
    let settings = ingest_settings(&config);
    let dedup_ms = config.server.dedup_window.as_millis() as i64;
    let ingest = Arc::new(Ingest::new(
        settings,
        journal.clone(),
        Dedup::new(dedup_ms, config.server.dedup_max_entries),
        metrics.clone(),
        engine_tx,
    ));

    // Cluster mode: the stream replaces the journal (docs/cluster.md).
    let feed = match &config.cluster {
        Some(c) => Some(crate::cluster::feed::Feed::connect(&config, c, &ingest, &metrics).await?),
        None => None,
    };

    let store_existed = crate::store::exists(&config.state.dir);
    let mut store = Store::open(&config.state.dir).context("opening the store in state.dir")?;
    store.set_history_limit(config.console.history_max_rows);
    let store: SharedStore = Arc::new(Mutex::new(store));
    if !store_existed {
        unsaved::warn_if_store_recreated(&config.state.dir, &metrics);
    }
    let receivers = Arc::new(
        Receivers::from_config(&config)
            .map_err(|e| SetupError(format!("building receivers: {e}")))?,
    );
    let outbox = Arc::new(
        Outbox::new(
            store.clone(),
            receivers.clone(),
            metrics.clone(),
            config.alerting.give_up_after,
            config.alerting.max_retry_interval,
        )
        .with_max_queued(config.alerting.max_queued_per_receiver),
    );
    let dispatcher = Arc::new(Dispatcher::new(
        &config,
        &receivers,
        store.clone(),
        outbox.clone(),
        metrics.clone(),
    ));
    // Cluster mode: the leader lease, outbox and shared silences.
    let leader_side = match (&feed, &config.cluster) {
        (Some(feed), Some(c)) => {
            let side = crate::cluster::leader::LeaderSide::start(
                feed.js(),
                crate::cluster::leader::LeaderSettings::from(c),
                store.clone(),
                dispatcher.clone(),
                &outbox,
                receivers.iter().map(|r| r.name().to_string()).collect(),
                metrics.stream.leader.clone(),
            )
            .await
            .map_err(|e| SetupError(e.to_string()))?;
            dispatcher.set_cluster(side.publisher(store.clone()));
            Some(side)
        }
        _ => None,
    };
    // What the last run decided but had not queued goes first.
    dispatcher.resume();
    let (notify_stop, notify_stopped) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let outbox_task = tokio::spawn(outbox.run(stopped(notify_stopped.clone())));
    let dispatcher_task = tokio::spawn(dispatcher.clone().run(stopped(notify_stopped)));

    let ready = Arc::new(AtomicBool::new(false));
    let snapshot = Arc::new(RwLock::new(Snapshot::default()));
    // Inhibition needs to know which alerts fire.
    dispatcher.watch_alerts(snapshot.clone());
    let (ctl_tx, ctl_rx) = mpsc::channel::<EngineCmd>(4);
    let reloader = Arc::new(Reloader::new(
        source,
        &config,
        ctl_tx,
        ingest.clone(),
        dispatcher.clone(),
    ));
    let admin = Arc::new(Admin {
        access: Arc::new(crate::access::Access::new(reloader.admin_token())),
        store: store.clone(),
        snapshot: snapshot.clone(),
        reloader: reloader.clone(),
        dispatcher: dispatcher.clone(),
        shared_silences: leader_side.as_ref().map(|s| s.silences.clone()),
        feed: ingest.feed().clone(),
        backtester: Arc::new(crate::backtest::Backtester::new(&config)),
    });
    let routes = ingest
        .routes()
        .or(crate::api::ops_routes(
            ready.clone(),
            metrics.clone(),
            feed.as_ref().map(|f| f.state()),
        ))
        .unify()
        .or(crate::api::admin_routes(admin.clone()))
        .unify()
        .or(crate::ui::routes(admin))
        .unify()
        .recover(crate::api::recover_rejection)
        .unify();

    let addr = config
        .listen_addr()
        .map_err(|e| SetupError(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding server.listen {addr}"))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::serve(
        listener,
        routes,
        crate::server::Limits::from(&config.server),
        metrics.clone(),
        async move {
            let _ = stopped.await;
        },
    ));

    let (prune_stop, prune_stopped) = oneshot::channel::<()>();
    let (close_engine, engine_closed) = oneshot::channel::<Instant>();
    let (engine, prune_task) = {
        let engine = Engine::new(rules, EngineSettings::live(&config));
        let retention = retention_ms(engine.max_window_secs(), &config);
        // The server already answers (/readyz 503, /callback 503) while
        // the journal is read back. The engine thread starts first and
        // rebuilds windows from events as the reader streams them, so
        // reading and rebuilding overlap on two cores. Callbacks are
        // accepted once the dedup set is whole; the engine catches up
        // from the queue after the history.
        let (history_tx, history_rx) = std::sync::mpsc::sync_channel::<Vec<Event>>(64);
        let widest_secs = engine.max_window_secs();
        let horizon = horizon_ms(now_ms(), widest_secs);
        let metrics = metrics.clone();
        let ready = ready.clone();
        let tick = config.rules.tick;
        let snapshot = snapshot.clone();
        let engine_store = store.clone();
        let restored = restore_records(&store);
        let resume = match &feed {
            Some(f) => {
                let saved = crate::cluster::position::Position::load(&crate::store::lock(&store));
                f.resume_after(saved.as_ref()).await
            }
            None => None,
        };
        let stream = feed.as_ref().map(|f| StreamSide {
            position_of: Box::new(f.position_of()),
            resume_after: resume.map(|r| r.seq),
        });
        let thread = std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let task = EngineTask {
                    engine,
                    restored,
                    history: history_rx,
                    rx: engine_rx,
                    close: engine_closed,
                    ctl: ctl_rx,
                    store: engine_store,
                    metrics,
                    tick,
                    ready,
                    snapshot,
                    dispatcher,
                    stream,
                };
                run_engine(task)
            })
            .context("spawning the engine thread")?;
        let t = Instant::now();
        let (records, recent) = if let (Some(feed), Some(live)) = (feed, live_tx) {
            feed.start(&config, widest_secs, resume, history_tx, live)
                .map_err(|e| SetupError(e.to_string()))?;
            (0, 0)
        } else {
            let ingest = ingest.clone();
            let state_dir = config.state.dir.clone();
            let dedup_cutoff = now_ms() - dedup_ms;
            tokio::task::spawn_blocking(move || {
                recover_journal(&state_dir, &ingest, dedup_cutoff, horizon, history_tx)
            })
            .await
            .context("journal recovery task")?
            .with_context(|| format!("reading journal in {}", config.state.dir.display()))?
        };
        ingest.set_accepting();
        // Pruning starts only after the journal was read back: it must not
        // delete a segment the reader listed but has not opened yet.
        let prune_task = tokio::spawn(housekeeping(
            journal.clone(),
            store.clone(),
            retention,
            prune_stopped,
        ));
        tracing::info!(
            records,
            recent_events = recent,
            elapsed_ms = t.elapsed().as_millis() as u64,
            "journal read"
        );
        (thread, prune_task)
    };
    tracing::info!(%addr, "callwatch listening");
    Ok(Daemon {
        addr,
        ingest,
        metrics,
        store,
        reloader,
        ready,
        stop,
        server,
        notify_stop,
        prune_stop,
        prune_task,
        close_engine,
        dispatcher_task,
        outbox_task,
        leader_side,
        engine,
        journal,
        config,
    })
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
            reloader,
            stop,
            server,
            engine,
            journal,
            config,
            notify_stop,
            dispatcher_task,
            outbox_task,
            leader_side,
            prune_stop,
            prune_task,
            close_engine,
            ..
        } = self;
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Stopping]) {
            tracing::warn!(error = %e, "sd_notify STOPPING failed");
        }
        // Event streams never finish on their own.
        ingest.feed().close();
        let _ = stop.send(());
        let _ = prune_stop.send(());
        // The whole stop fits in server.shutdown_timeout (the value now
        // in force, reloads included): half of it for requests in
        // progress, the engine until 80 %, notifications until 95 %.
        let timeout = reloader
            .shutdown_timeout()
            .unwrap_or(config.server.shutdown_timeout);
        let started = Instant::now();
        let by = |share: f64| started + timeout.mul_f64(share);
        let mut server = server;
        if tokio::time::timeout_at(by(0.5).into(), &mut server)
            .await
            .is_err()
        {
            tracing::warn!(
                ?timeout,
                "in-flight requests did not finish in time; closing them"
            );
            server.abort();
        }
        // Callbacks already acknowledged are in the queue and the
        // journal; the engine works through the queue until its deadline.
        let _ = close_engine.send(by(0.8));
        drop(ingest);
        drop(reloader);
        let joined = tokio::task::spawn_blocking(move || engine.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            tracing::error!("engine thread panicked");
        }
        // Groups still waiting go to the outbox (persisted), then the
        // delivery workers stop; what is queued is sent on the next start.
        // Pending transitions and the outbox are in the store, so cutting
        // delivery short loses nothing: it resumes at the next start.
        let _ = notify_stop.send(true);
        for mut task in [dispatcher_task, outbox_task] {
            if tokio::time::timeout_at(by(0.95).into(), &mut task)
                .await
                .is_err()
            {
                tracing::warn!("notifications still in progress at shutdown_timeout; resumed at the next start");
                task.abort();
            }
        }
        // The next leader need not wait out leader_ttl.
        if let Some(side) = leader_side {
            side.release().await;
        }
        let _ = prune_task.await;
        journal.flush().await.context("flushing journal")?;
        match Arc::try_unwrap(journal) {
            Ok(j) => j.close(),
            Err(_) => tracing::warn!("journal still referenced at shutdown; it was flushed"),
        }
        tracing::info!("callwatch stopped");
        Ok(())
    }
}

/// Runs the daemon until `shutdown` resolves, reloading on SIGHUP and
/// when a file in `rules.dir` changes.
pub async fn run(
    config: Config,
    source: ConfigSource,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let rules_dir = config.rules.dir.clone();
    let daemon = start_with(config, source).await?;
    let reloader = daemon.reloader.clone();
    let on_hup = tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload via the API only");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            let _ = reloader.reload().await;
        }
    });
    let watcher = tokio::spawn(watch_rules(rules_dir, daemon.reloader.clone()));
    shutdown.await;
    // Both tasks hold the reloader, which holds the engine's queue open:
    // they must be gone before the engine can drain and stop.
    on_hup.abort();
    watcher.abort();
    let _ = on_hup.await;
    let _ = watcher.await;
    tracing::info!("shutting down");
    daemon.shutdown().await
}
