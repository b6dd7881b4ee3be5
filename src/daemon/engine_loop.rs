//! The engine thread: restores saved alert states, refills the windows
//! from the journal history, then evaluates every accepted callback, tick
//! and reload command, saving and handing on each transition, until the
//! queue is closed and drained at shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::recovery::KEYS_SPACE;
use super::unsaved;
use crate::alert::{AlertStatus, Transition};
use crate::engine::{Engine, KeyRecord, Persist, RuleStats, Snapshot};
use crate::event::Event;
use crate::ingest::Accepted;
use crate::metrics::{Metrics, RuleLabels, StateLabels};
use crate::notify::dispatch::{Dispatcher, Tracked};
use crate::rules::Rule;
use crate::store::SharedStore;
use crate::time::now_secs;

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

pub(super) struct EngineTask {
    pub(super) engine: Engine,
    /// Alert states and `w.state` saved by the previous run.
    pub(super) restored: Vec<KeyRecord>,
    /// Journaled events recent enough to matter for some window, in
    /// batches as the journal is read; closed when reading is done.
    pub(super) history: std::sync::mpsc::Receiver<Vec<Event>>,
    pub(super) rx: mpsc::Receiver<Accepted>,
    /// Shutdown: close the queue (new callbacks get a 503), drain it
    /// until the deadline, stop.
    pub(super) close: oneshot::Receiver<Instant>,
    pub(super) ctl: mpsc::Receiver<EngineCmd>,
    pub(super) store: SharedStore,
    pub(super) metrics: Arc<Metrics>,
    pub(super) tick: std::time::Duration,
    pub(super) ready: Arc<AtomicBool>,
    pub(super) snapshot: Arc<RwLock<Snapshot>>,
    /// Learns, once the saved alert states are back, which firing alerts
    /// a silence covers; then takes every transition.
    pub(super) dispatcher: Arc<Dispatcher>,
    /// Cluster mode: a callback is evaluated at the time the node that
    /// took it received it (carried in the stream), and the engine ticks
    /// at the tick messages of the stream, not at this node's clock, so
    /// every node stamps each transition alike and the cluster outbox
    /// stores it once (docs/cluster.md).
    pub(super) stream: Option<StreamSide>,
}

/// The engine's side of cluster mode.
pub(super) struct StreamSide {
    /// The saved position of stream message `seq`.
    pub(super) position_of: Box<dyn Fn(u64) -> crate::cluster::position::Position + Send>,
    /// The saved states are those after this stream message: the history
    /// up to it only refills the windows, and the messages after it come
    /// as live ones, evaluated as every other node did. `None`: no usable
    /// saved position; the whole history refills the windows and is then
    /// evaluated at once, as after a single node's restart.
    pub(super) resume_after: Option<u64>,
}

pub(super) fn run_engine(task: EngineTask) {
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
        stream,
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
    let unsaved = &std::cell::RefCell::new(unsaved::Unsaved::new(KEYS_SPACE));
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
    // A node resuming at its saved stream position evaluates what it
    // missed message by message (next), not all at once at this clock.
    let resumed = stream.as_ref().is_some_and(|s| s.resume_after.is_some());
    let first = if resumed {
        Vec::new()
    } else {
        engine.evaluate_all(now)
    };
    let first = persist(&mut engine, first);
    dispatcher.publish_and_submit(|| publish(&engine), first);
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
        let mut last_stream_tick = i64::MIN;
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
                        let now = match &stream {
                            Some(s) => {
                                unsaved
                                    .borrow_mut()
                                    .set_position((s.position_of)(accepted.seq).to_json());
                                accepted.received_at.div_euclid(1000)
                            }
                            None => now_secs(),
                        };
                        let mut out = Vec::new();
                        if accepted.tick {
                            // A node whose clock runs ahead may have put a
                            // later tick first: time only moves on.
                            if now > last_stream_tick {
                                last_stream_tick = now;
                                out = engine.on_tick(now);
                            }
                        }
                        for e in accepted.events {
                            out.extend(engine.on_event(e, now, true));
                        }
                        // The API view is refreshed on every alert change
                        // and at most twice a second otherwise.
                        if !out.is_empty() || accepted.tick || last_publish.elapsed().as_millis() > 500 {
                            let out = persist(&mut engine, out);
                            // The API shows an alert before its
                            // notification can arrive anywhere.
                            dispatcher.publish_and_submit(|| publish(&engine), out);
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
                        dispatcher.publish_and_submit(|| publish(&engine), out);
                        let _ = reply.send(before);
                    }
                    // No reloads any more; a closed channel must not
                    // keep waking the loop.
                    None => ctl_open = false,
                },
                _ = ticker.tick() => {
                    // Cluster mode ticks come from the stream (above);
                    // this one only retries a failed save.
                    let out = if stream.is_some() {
                        Vec::new()
                    } else {
                        engine.on_tick(now_secs())
                    };
                    let out = persist(&mut engine, out);
                    dispatcher.publish_and_submit(|| publish(&engine), out);
                    publish_stats(&mut engine, &metrics, &mut published);
                    last_publish = Instant::now();
                }
            }
        }
        publish_stats(&mut engine, &metrics, &mut published);
        publish(&engine);
    });
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
