//! Wiring: builds the components from a validated config, recovers state
//! from the journal, spawns the HTTP server and the engine task, and shuts
//! everything down in order (stop accepting, drain in-flight requests with
//! a timeout, drain the engine queue, flush the journal).

mod unsaved;

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
use crate::engine::{Engine, EngineSettings, KeyRecord, Persist, RuleStats, Snapshot, Transition};
use crate::event::Event;
use crate::ingest::dedup::Dedup;
use crate::ingest::line::decode_line;
use crate::ingest::{self, Accepted, Ingest, IngestSettings};
use crate::journal::{self, Journal};
use crate::metrics::{Metrics, RuleLabels, StateLabels};
use crate::notify::dispatch::{Dispatcher, Tracked};
use crate::notify::outbox::Outbox;
use crate::notify::Receivers;
use crate::reload::watch_rules;
pub use crate::reload::{ConfigSource, Reloader};
use crate::rules::Rule;
use crate::startup::SetupError;
use crate::store::Store;

/// A running daemon.
pub struct Daemon {
    /// The address the HTTP server is bound to.
    pub addr: SocketAddr,
    pub ingest: Arc<Ingest>,
    pub metrics: Arc<Metrics>,
    pub store: Arc<Mutex<Store>>,
    pub reloader: Arc<Reloader>,
    ready: Arc<AtomicBool>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
    notify_stop: watch::Sender<bool>,
    prune_stop: oneshot::Sender<()>,
    prune_task: JoinHandle<()>,
    /// Tells the engine to take no more callbacks and drain its queue
    /// until the deadline given.
    close_engine: oneshot::Sender<Instant>,
    dispatcher_task: JoinHandle<()>,
    outbox_task: JoinHandle<()>,
    engine: std::thread::JoinHandle<()>,
    journal: Arc<Journal>,
    config: Config,
}

/// Renders warp's rejections (unknown path, wrong method, bad header)
/// outside `/api/` as the same JSON failure body the callback path uses
/// (the admin API answers its own errors).
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
    start_with(config, ConfigSource::Fixed).await
}

/// Like [`start`], remembering where the config came from so a reload
/// re-reads it.
pub async fn start_with(config: Config, source: ConfigSource) -> anyhow::Result<Daemon> {
    let metrics = Arc::new(Metrics::new());
    // Bad rules or receivers are the operator's to fix: `SetupError`
    // makes `callwatch run` exit 1, which systemd does not restart.
    let rules = load_rules(&config).map_err(|errs| SetupError(errs.join("\n")))?;
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
    let settings = ingest_settings(&config);
    let dedup_ms = config.server.dedup_window.as_millis() as i64;
    let ingest = Arc::new(Ingest::new(
        settings,
        journal.clone(),
        Dedup::new(dedup_ms, config.server.dedup_max_entries),
        metrics.clone(),
        engine_tx,
    ));

    let store_existed = crate::store::exists(&config.state.dir);
    let mut store = Store::open(&config.state.dir).context("opening the store in state.dir")?;
    store.set_history_limit(config.console.history_max_rows);
    let store = Arc::new(Mutex::new(store));
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
        feed: ingest.feed().clone(),
        backtester: Arc::new(crate::backtest::Backtester::new(&config)),
    });
    let routes = ingest
        .routes()
        .or(crate::api::ops_routes(ready.clone(), metrics.clone()))
        .unify()
        .or(crate::api::admin_routes(admin.clone()))
        .unify()
        .or(crate::ui::routes(admin))
        .unify()
        .recover(recover)
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
        let horizon = ingest::now_ms() - (engine.max_window_secs() + 60) * 1000;
        let metrics = metrics.clone();
        let ready = ready.clone();
        let tick = config.rules.tick;
        let snapshot = snapshot.clone();
        let engine_store = store.clone();
        let restored = restore_records(&store);
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
                };
                run_engine(task)
            })
            .context("spawning the engine thread")?;
        let t = Instant::now();
        let (records, recent) = {
            let ingest = ingest.clone();
            let state_dir = config.state.dir.clone();
            let dedup_cutoff = ingest::now_ms() - dedup_ms;
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
        engine,
        journal,
        config,
    })
}

/// How long journal records must be kept: the widest rule window (to
/// rebuild windows on start) or the dedup window (to rebuild the dedup
/// set), whichever is longer, plus the clock skew allowance and a margin.
pub fn retention_ms(max_window_secs: i64, config: &Config) -> i64 {
    let need = max_window_secs.max(config.server.dedup_window.as_secs() as i64)
        + config.server.max_clock_skew.as_secs() as i64;
    (need + 600) * 1000
}

/// How long an expired silence stays in the store (and in
/// `GET /api/v1/silences`, as `expired`): five days, Alertmanager's
/// default `--data.retention`, so an operator can still see what was
/// silenced over a long weekend.
const SILENCE_RETENTION_SECS: i64 = 5 * 24 * 3600;

/// Once a minute: prunes journal segments past `retention_ms` and deletes
/// silences expired for longer than [`SILENCE_RETENTION_SECS`].
async fn housekeeping(
    journal: Arc<Journal>,
    store: Arc<Mutex<Store>>,
    retention_ms: i64,
    mut stop: oneshot::Receiver<()>,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = every.tick() => {}
        }
        match journal.prune(ingest::now_ms() - retention_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(segments = n, "pruned journal segments"),
            Err(e) => tracing::warn!(error = %e, "journal pruning failed"),
        }
        let cutoff = now_secs() - SILENCE_RETENTION_SECS;
        let deleted = store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .delete_silences_ended_before(cutoff);
        match deleted {
            Ok(0) => {}
            Ok(n) => tracing::info!(silences = n, "deleted long-expired silences"),
            Err(e) => tracing::warn!(error = %e, "deleting expired silences failed"),
        }
    }
}

/// Loads and compiles every rule, reporting all problems at once; what
/// is suspicious but allowed is logged as a warning.
pub fn load_rules(config: &Config) -> Result<Vec<Arc<Rule>>, Vec<String>> {
    let rules = crate::rules::load_dir(&config.rules.dir, &config.rules)
        .map_err(|errs| errs.iter().map(|e| e.to_string()).collect::<Vec<_>>())?;
    for w in rules.iter().flat_map(|r| r.warnings()) {
        tracing::warn!(rule_file = %w.path.display(), "{w}");
    }
    let unknown = unknown_notify_receivers(&rules, config);
    if !unknown.is_empty() {
        return Err(unknown);
    }
    Ok(rules.into_iter().map(Arc::new).collect())
}

/// A rule's `notify` list names receivers, which live in the config: a
/// misspelt one would page nobody, so it is a load error like any other
/// broken reference. (Receivers that fail to build are reported on their
/// own; then there is nothing to check the names against.)
fn unknown_notify_receivers(rules: &[Rule], config: &Config) -> Vec<String> {
    let Ok(receivers) = crate::notify::Receivers::from_config(config) else {
        return Vec::new();
    };
    let known: Vec<&str> = receivers.iter().map(|r| r.name()).collect();
    let mut problems = Vec::new();
    for rule in rules {
        for name in &rule.spec().notify {
            if receivers.get(name).is_none() {
                problems.push(format!(
                    "{}: RULE.notify: unknown receiver {name:?}{} (receivers: {})",
                    rule.path().display(),
                    crate::rules::names::did_you_mean(name, known.iter().copied()),
                    known.join(", ")
                ));
            }
        }
    }
    problems
}

fn now_secs() -> i64 {
    ingest::now_ms() / 1000
}

/// Mirrors the engine's counters into the metrics registry.
fn publish_stats(
    engine: &mut Engine,
    metrics: &Metrics,
    published: &mut HashMap<String, RuleStats>,
) {
    for (rule, durations) in engine.take_durations() {
        let h = metrics
            .rule_eval_seconds
            .get_or_create(&RuleLabels { rule });
        for d in durations {
            h.observe(d);
        }
    }
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
        metrics
            .rule_keys_refused
            .get_or_create(&labels)
            .inc_by(stats.keys_refused.saturating_sub(before.keys_refused));
        metrics
            .rule_suspensions
            .get_or_create(&labels)
            .inc_by(stats.suspensions.saturating_sub(before.suspensions));
        metrics.rule_keys.get_or_create(&labels).set(keys as i64);
        *before = stats;
    }
    // Counters are mirrored as deltas since the last publication.
    let future = engine.future_events();
    let seen = metrics.future_events.get();
    if future > seen {
        metrics.future_events.inc_by(future - seen);
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
/// Commands for the engine thread besides events.
pub enum EngineCmd {
    /// Swap in a new rule set; `history` refills windows of new and
    /// edited rules. Replies once the swap is done, with the names and
    /// source digests of the rules it replaced.
    Reload {
        rules: Vec<Arc<Rule>>,
        history: Vec<Event>,
        reply: oneshot::Sender<Vec<(String, String)>>,
    },
}

struct EngineTask {
    engine: Engine,
    /// Alert states and `w.state` saved by the previous run.
    restored: Vec<KeyRecord>,
    /// Journaled events recent enough to matter for some window, in
    /// batches as the journal is read; closed when reading is done.
    history: std::sync::mpsc::Receiver<Vec<Event>>,
    rx: mpsc::Receiver<Accepted>,
    /// Shutdown: close the queue (new callbacks get a 503), drain it
    /// until the deadline, stop.
    close: oneshot::Receiver<Instant>,
    ctl: mpsc::Receiver<EngineCmd>,
    store: Arc<Mutex<Store>>,
    metrics: Arc<Metrics>,
    tick: std::time::Duration,
    ready: Arc<AtomicBool>,
    snapshot: Arc<RwLock<Snapshot>>,
    /// Learns, once the saved alert states are back, which firing alerts
    /// a silence covers; then takes every transition.
    dispatcher: Arc<Dispatcher>,
}

fn run_engine(task: EngineTask) {
    let EngineTask {
        mut engine,
        restored,
        history,
        mut rx,
        close,
        mut ctl,
        store,
        metrics,
        tick,
        ready,
        snapshot,
        dispatcher,
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
    // Alert states and the transitions they cause are saved in one
    // commit before the transitions are handed on: the transitions stay
    // pending in the store until their notifications are in the outbox,
    // so a crash at any point neither loses a notification nor (since the
    // store knows the alert is firing) repeats one.
    // A failed save keeps everything for the next try (see `unsaved`).
    let unsaved = std::cell::RefCell::new(unsaved::Unsaved::new(KEYS_SPACE));
    let save_metrics = metrics.clone();
    let persist = |engine: &mut Engine, out: Vec<Transition>| -> Vec<Tracked> {
        let changes: Vec<(String, Option<String>)> = engine
            .take_dirty()
            .into_iter()
            .map(|p| match p {
                Persist::Put(r) => (r.id(), serde_json::to_string(&r).ok()),
                Persist::Delete(id) => (id, None),
            })
            .collect();
        let saved = unsaved
            .borrow_mut()
            .save(&store, &save_metrics, changes, out);
        crate::history::record_transitions(&store, saved.iter().map(|(_, t)| t));
        saved
    };
    let restored_count = restored.len();
    for r in restored {
        engine.restore(r);
    }
    let now = now_secs();
    dispatcher.hold_suppressed(engine.firing_transitions(now));
    let t = Instant::now();
    let mut rebuilt = 0usize;
    for batch in history {
        for e in batch {
            engine.on_event(e, now, false);
            rebuilt += 1;
        }
    }
    let first = engine.evaluate_all(now);
    let first = persist(&mut engine, first);
    publish(&engine);
    dispatcher.submit(first);
    tracing::info!(
        events = rebuilt,
        alert_states = restored_count,
        elapsed_ms = t.elapsed().as_millis() as u64,
        "windows rebuilt from journal"
    );
    ready.store(true, Ordering::Release);
    rt.block_on(async move {
        let mut last_publish = Instant::now();
        let mut close = std::pin::pin!(close);
        let mut closing = false;
        let mut deadline = None;
        let mut ctl_open = true;
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    // Past the shutdown deadline the rest stays in the
                    // journal, which the next start reads back into the
                    // windows.
                    Some(_) if deadline.is_some_and(|d| Instant::now() >= d) => {
                        tracing::warn!(
                            left = rx.len() + 1,
                            "shutdown_timeout reached: queued callbacks will be evaluated from the journal at the next start"
                        );
                        break;
                    }
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
                            let out = persist(&mut engine, out);
                            // The API shows an alert before its
                            // notification can arrive anywhere.
                            publish(&engine);
                            dispatcher.submit(out);
                            last_publish = Instant::now();
                        }
                    }
                    None => break,
                },
                // Connections warp gave up on at shutdown may still hold a
                // sender, so the queue is closed explicitly rather than by
                // waiting for every sender to drop.
                d = &mut close, if !closing => {
                    closing = true;
                    deadline = d.ok();
                    rx.close();
                }
                cmd = ctl.recv(), if ctl_open => match cmd {
                    Some(EngineCmd::Reload { rules, history, reply }) => {
                        let before = engine.rule_digests();
                        let out = engine.reload(rules, &history, now_secs());
                        let out = persist(&mut engine, out);
                        publish(&engine);
                        dispatcher.submit(out);
                        let _ = reply.send(before);
                    }
                    // No reloads any more; a closed channel must not
                    // keep waking the loop.
                    None => ctl_open = false,
                },
                _ = ticker.tick() => {
                    let out = engine.on_tick(now_secs());
                    let out = persist(&mut engine, out);
                    publish(&engine);
                    dispatcher.submit(out);
                    publish_stats(&mut engine, &metrics, &mut published);
                    last_publish = Instant::now();
                }
            }
        }
        publish_stats(&mut engine, &metrics, &mut published);
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
            reloader,
            stop,
            server,
            engine,
            journal,
            config,
            notify_stop,
            dispatcher_task,
            outbox_task,
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

/// Reads the journal once on start: deliveries within the dedup window
/// refill the dedup set, and events newer than `horizon_ms` go to the
/// engine in batches to refill the windows. Returns (records read, recent
/// events sent).
fn recover_journal(
    state_dir: &std::path::Path,
    ingest: &Ingest,
    dedup_cutoff_ms: i64,
    horizon_ms: i64,
    history: std::sync::mpsc::SyncSender<Vec<Event>>,
) -> std::io::Result<(u64, u64)> {
    const BATCH: usize = 4096;
    let mut batch = Vec::with_capacity(BATCH);
    let mut sent = 0u64;
    let n = journal::for_each_line(state_dir, |path, line_no, line| {
        let (received, d) = match decode_line(line) {
            Ok(l) => (l.received_at.unwrap_or(0), l.decoded),
            // A torn tail after a power cut: never acknowledged.
            Err(e) => {
                tracing::warn!(path, line = line_no, error = %e, "skipping unreadable journal line");
                return;
            }
        };
        if received < dedup_cutoff_ms && received < horizon_ms {
            return;
        }
        if received >= dedup_cutoff_ms {
            ingest.remember(&d, received);
        }
        if received >= horizon_ms {
            sent += d.events.len() as u64;
            batch.extend(d.events);
            if batch.len() >= BATCH {
                // A stopped engine thread only means nobody needs history.
                let _ = history.send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
            }
        }
    })?;
    if !batch.is_empty() {
        let _ = history.send(batch);
    }
    Ok((n, sent))
}

/// The store space holding alert states and `w.state` per (rule, key).
const KEYS_SPACE: &str = "keys";

fn restore_records(store: &Mutex<Store>) -> Vec<KeyRecord> {
    let rows = store
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .kv(KEYS_SPACE);
    match rows {
        Ok(rows) => rows
            .into_iter()
            .filter_map(|(id, v)| match serde_json::from_str(&v) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(key = %id, error = %e, "unreadable alert state skipped");
                    None
                }
            })
            .collect(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read saved alert states");
            Vec::new()
        }
    }
}

/// The callback path's settings from a config.
pub(crate) fn ingest_settings(config: &Config) -> IngestSettings {
    IngestSettings {
        callback_path: config.server.callback_path.clone(),
        max_body_bytes: config.server.max_body_bytes,
        max_clock_skew_secs: config.server.max_clock_skew.as_secs() as i64,
        apps: config.apps.clone(),
        callback_allow: config.server.callback_allow.clone(),
    }
}
