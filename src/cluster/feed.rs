//! The stream into this node's engine. Every node reads the whole stream
//! in order with an ordered consumer, so every engine sees the same
//! callbacks in the same order, this node's own included (they reach the
//! engine only through the stream: one path), and the same engine ticks
//! (see [`super::ticks`]). On start, what this node had evaluated before
//! it stopped refills the windows the way journal recovery does; what
//! follows goes to the engine as live ingest does. Tracks the lag that
//! `/readyz` and the metrics report.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::stream::Stream as JsStream;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::position::Position;
use super::Cluster;
use crate::event::Event;
use crate::ingest::line::decode_line;
use crate::ingest::{now_ms, Accepted};
use crate::lograte::LogRate;
use crate::metrics::Metrics;

/// Where a restarted node resumes: after stream message `seq`, which
/// JetStream stored at `stored_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Resume {
    pub seq: u64,
    pub stored_ms: i64,
}

/// `/readyz` is 503 while the engine is further behind the stream.
pub const MAX_READY_LAG: Duration = Duration::from_secs(5);

/// Events per history batch handed to the engine thread.
const BATCH: usize = 4096;

/// How often the stream's last sequence is read to measure lag when no
/// message arrives (a stalled consumer must not look caught up).
const POLL: Duration = Duration::from_secs(1);

/// What the feed knows of its progress; read by `/readyz`.
pub struct FeedState {
    cluster: Cluster,
    caught_up: AtomicBool,
    /// Stream sequence of the last message handed to the engine.
    processed: AtomicU64,
    /// The stream's last sequence, as last seen.
    last: AtomicU64,
    /// When JetStream stored the last message handed to the engine.
    processed_at_ms: AtomicI64,
    /// When the stream last answered (a message or its state): a node
    /// connected to a NATS server that has lost the stream's quorum is
    /// not ready either.
    answered_ms: AtomicI64,
    /// Whether the stream's leader last saw a majority of its replicas.
    quorum: AtomicBool,
}

impl FeedState {
    fn new(cluster: Cluster) -> FeedState {
        FeedState {
            cluster,
            caught_up: AtomicBool::new(false),
            processed: AtomicU64::new(0),
            last: AtomicU64::new(0),
            processed_at_ms: AtomicI64::new(0),
            answered_ms: AtomicI64::new(now_ms()),
            quorum: AtomicBool::new(true),
        }
    }

    /// Messages in the stream not yet handed to the engine.
    pub fn lag_messages(&self) -> u64 {
        self.last
            .load(Ordering::Acquire)
            .saturating_sub(self.processed.load(Ordering::Acquire))
    }

    /// How far behind the engine is: 0 when it has everything, else the
    /// age of the last message it got (the next one is at most that old).
    pub fn lag_seconds(&self) -> f64 {
        if self.lag_messages() == 0 {
            return 0.0;
        }
        let at = self.processed_at_ms.load(Ordering::Acquire);
        if at == 0 {
            // Nothing handed over yet: behind since the feed started.
            return f64::INFINITY;
        }
        (now_ms() - at).max(0) as f64 / 1000.0
    }

    /// `None` when this node can serve: connected to NATS, caught up with
    /// the stream's history and at most [`MAX_READY_LAG`] behind; else why
    /// not.
    pub fn not_ready(&self) -> Option<String> {
        if !self.cluster.connected() {
            return Some(format!(
                "not connected to NATS ({})",
                self.cluster.config.nats.join(", ")
            ));
        }
        if !self.caught_up.load(Ordering::Acquire) {
            return Some("reading the stream's history".into());
        }
        if !self.quorum.load(Ordering::Acquire) {
            return Some(format!(
                "stream {} has lost the majority of its replicas (no JetStream quorum)",
                self.cluster.config.stream
            ));
        }
        let silent = now_ms() - self.answered_ms.load(Ordering::Acquire);
        if silent > MAX_READY_LAG.as_millis() as i64 {
            return Some(format!(
                "stream {} has not answered for {:.1} s (no JetStream quorum?)",
                self.cluster.config.stream,
                silent as f64 / 1000.0
            ));
        }
        let lag = self.lag_seconds();
        (lag > MAX_READY_LAG.as_secs_f64()).then(|| {
            format!(
                "{} messages and {lag:.1} s behind the stream",
                self.lag_messages()
            )
        })
    }

    fn update_metrics(&self, metrics: &Metrics) {
        metrics.stream.lag_messages.set(self.lag_messages() as i64);
        let lag = self.lag_seconds();
        metrics
            .stream
            .lag_seconds
            .set(if lag.is_finite() { lag } else { -1.0 });
    }
}

/// Whether a stream's raft group, as its leader reports it, has a
/// majority: the leader plus the replicas seen within [`MAX_READY_LAG`].
fn has_quorum(cluster: &async_nats::jetstream::stream::ClusterInfo) -> bool {
    let seen = cluster
        .replicas
        .iter()
        .filter(|p| !p.offline && p.active < MAX_READY_LAG)
        .count();
    let leader = usize::from(cluster.leader.is_some());
    let members = cluster.replicas.len() + 1;
    (leader + seen) * 2 > members
}

/// Feeds the stream to the engine: history (before `caught_up`) through
/// `history`, which is closed once it is whole, the rest through `live`.
pub struct Feed {
    cluster: Cluster,
    stream: JsStream,
    metrics: Arc<Metrics>,
    state: Arc<FeedState>,
    /// The console's live feed: in cluster mode it shows every node's
    /// callbacks as they come off the stream.
    console: Arc<crate::feed::Feed>,
}

impl Feed {
    /// Cluster-mode start: connects, creates or updates the stream, and
    /// points `ingest` at it, so accepted callbacks are published there
    /// instead of the journal.
    pub async fn connect(
        config: &crate::config::Config,
        cluster: &crate::config::ClusterConfig,
        ingest: &crate::ingest::Ingest,
        metrics: &Arc<Metrics>,
    ) -> Result<Feed, super::ClusterError> {
        let c = Cluster::connect(cluster).await?;
        let stream = c.ensure_stream(config.server.dedup_window).await?;
        ingest.set_stream(Box::new(super::ingest::Publisher::new(
            c.clone(),
            metrics.clone(),
        )));
        tracing::info!(
            node = %cluster.node,
            stream = %cluster.stream,
            servers = %cluster.nats.join(", "),
            "cluster mode: callbacks go to the JetStream stream"
        );
        let state = Arc::new(FeedState::new(c.clone()));
        Ok(Feed {
            cluster: c,
            stream,
            metrics: metrics.clone(),
            state,
            console: ingest.feed().clone(),
        })
    }

    /// Where this node resumes evaluating on a restart, given the position
    /// its store saved with its alert states (see [`super::position`]);
    /// `None`: only read the history into the windows.
    pub async fn resume_after(&self, saved: Option<&Position>) -> Option<Resume> {
        let info = self.stream.cached_info();
        let created = info.created.unix_timestamp_nanos();
        let last = info.state.last_sequence;
        let Some(seq) = saved?.resume_after(&self.cluster.config.stream, created, last) else {
            tracing::warn!(
                stream = %self.cluster.config.stream,
                "the saved alert states are of another stream (recreated, or messages lost): the history only refills the windows"
            );
            return None;
        };
        // Its time tells how far back the windows then reached.
        let message = tokio::time::timeout(POLL * 5, self.stream.get_raw_message(seq)).await;
        let stored_ms = match message {
            Ok(Ok(m)) => (m.time.unix_timestamp_nanos() / 1_000_000) as i64,
            other => {
                let error = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                tracing::warn!(
                    seq,
                    error = %error,
                    "cannot read the stream message the saved alert states were computed at (expired?): the history only refills the windows"
                );
                return None;
            }
        };
        tracing::info!(
            seq,
            last,
            "resuming evaluation after the stream message the saved alert states were computed at"
        );
        Some(Resume { seq, stored_ms })
    }

    /// The position of stream message `seq`, as the store saves it.
    pub fn position_of(&self) -> impl Fn(u64) -> Position + Send + 'static {
        let stream = self.cluster.config.stream.clone();
        let created_ns = self.stream.cached_info().created.unix_timestamp_nanos();
        move |seq| Position {
            stream: stream.clone(),
            created_ns,
            seq,
        }
    }

    /// The JetStream context, for the leader side (lease, outbox, silences).
    pub fn js(&self) -> &async_nats::jetstream::Context {
        &self.cluster.js
    }

    pub fn state(&self) -> Arc<FeedState> {
        self.state.clone()
    }

    /// Checks that the stream's retention covers the rules' widest window
    /// and starts feeding the engine from that far back (before `resume`,
    /// if it is older): the messages up to `resume` (all of the history
    /// when `None`) refill the windows, the ones after it are evaluated.
    pub fn start(
        self,
        config: &crate::config::Config,
        widest_window_secs: i64,
        resume: Option<Resume>,
        history: std::sync::mpsc::SyncSender<Vec<Event>>,
        live: mpsc::Sender<Accepted>,
    ) -> Result<(), crate::config::ConfigError> {
        let widest = Duration::from_secs(widest_window_secs.max(0) as u64);
        let dedup = config.server.dedup_window;
        self.cluster.config.check_retention(widest, dedup)?;
        // A minute more, as journal recovery reads, for late events.
        let horizon = widest + dedup + Duration::from_secs(60);
        let stop = live.clone();
        tokio::spawn(super::ticks::publish(
            self.cluster.clone(),
            config.rules.tick,
            async move { stop.closed().await },
        ));
        tokio::spawn(self.run(horizon, resume, history, live));
        Ok(())
    }

    /// Runs until the engine's queue closes (shutdown).
    pub async fn run(
        mut self,
        horizon: Duration,
        resume: Option<Resume>,
        history: std::sync::mpsc::SyncSender<Vec<Event>>,
        live: mpsc::Sender<Accepted>,
    ) {
        let mut history = Some(history);
        let mut batch: Vec<Event> = Vec::new();
        let errors = LogRate::new(Duration::from_secs(10));
        // The history ends at the stream's last message when the feed starts.
        let history_end = loop {
            match self.stream.info().await {
                Ok(info) => break info.state.last_sequence,
                Err(e) => {
                    warn_rate(
                        &errors,
                        "stream_info",
                        |n| tracing::warn!(error = %e, repeated = n, "reading the stream's state; retrying"),
                    );
                    tokio::time::sleep(POLL).await;
                }
            }
            if live.is_closed() {
                return;
            }
        };
        self.state.last.store(history_end, Ordering::Release);
        let tick_subject = self.cluster.config.tick_subject();
        // The windows of a node resuming after a long stop reached back
        // from where it stopped, not from now.
        let until = resume.map_or(now_ms(), |r| r.stored_ms.min(now_ms()));
        let start = until - horizon.as_millis() as i64;
        // History is what this node had evaluated before it stopped (or,
        // without a saved position, everything before it started).
        let evaluated_before = resume.map_or(history_end, |r| r.seq.min(history_end));
        let mut policy = DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(start as i128 * 1_000_000)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        };
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'consumer: loop {
            let messages = match self.open(policy).await {
                Ok((pending, m)) => {
                    if pending == 0 && !self.state.caught_up.load(Ordering::Acquire) {
                        // Nothing in the horizon: the history is whole.
                        self.state.processed.store(history_end, Ordering::Release);
                        self.end_history(&mut history, &mut batch).await;
                    }
                    m
                }
                Err(e) => {
                    warn_rate(
                        &errors,
                        "open",
                        |n| tracing::warn!(error = %e, repeated = n, "cannot open the stream consumer; retrying"),
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => continue 'consumer,
                        _ = live.closed() => return,
                    }
                }
            };
            let mut messages = std::pin::pin!(messages);
            loop {
                let next = tokio::select! {
                    m = messages.next() => m,
                    _ = poll.tick() => {
                        self.poll_last().await;
                        continue;
                    }
                    _ = live.closed() => return,
                };
                let msg = match next {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        // The ordered consumer recreates itself after
                        // a gap or a lost server; say so, go on.
                        warn_rate(
                            &errors,
                            "consumer",
                            |n| tracing::warn!(error = %e, repeated = n, "stream consumer error"),
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    None => {
                        // Resume after the last message handed over.
                        let next = self.state.processed.load(Ordering::Acquire) + 1;
                        policy = DeliverPolicy::ByStartSequence {
                            start_sequence: next,
                        };
                        continue 'consumer;
                    }
                };
                let Ok(info) = msg.info() else {
                    tracing::warn!("stream message without JetStream metadata skipped");
                    continue;
                };
                let (seq, pending) = (info.stream_sequence, info.pending);
                let published_ms = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
                let item = if msg.subject.as_str() == tick_subject {
                    let tick = super::ticks::tick_of(msg.headers.as_ref());
                    if tick.is_none() {
                        warn_rate(&errors, "tick", |n| {
                            tracing::warn!(
                                seq,
                                repeated = n,
                                "stream tick without a readable time skipped"
                            )
                        });
                    }
                    tick.map(Item::Tick)
                } else {
                    match decode_line(&msg.payload) {
                        Ok(l) => Some(Item::Callback(
                            l.received_at.unwrap_or(published_ms),
                            l.decoded.events,
                        )),
                        Err(e) => {
                            // Someone else published on the subject: never
                            // a callback this cluster acknowledged.
                            warn_rate(
                                &errors,
                                "message",
                                |n| tracing::warn!(seq, error = %e, repeated = n, "unreadable stream message skipped"),
                            );
                            None
                        }
                    }
                };
                // History only refills the windows, which ticks have no
                // part in.
                if history.is_some() && seq <= evaluated_before {
                    if let Some(Item::Callback(_, events)) = item {
                        batch.extend(events);
                    }
                    if batch.len() >= BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                        send_history(&history, full).await;
                    }
                } else {
                    close_history(&mut history, &mut batch).await;
                    let accepted = match item {
                        Some(Item::Callback(received_at, events)) => {
                            if seq > history_end {
                                self.console.push(received_at, &events);
                            }
                            Some(Accepted {
                                received_at,
                                events,
                                seq,
                                tick: false,
                            })
                        }
                        Some(Item::Tick(at)) => Some(Accepted {
                            received_at: at,
                            events: Vec::new(),
                            seq,
                            tick: true,
                        }),
                        None => None,
                    };
                    if let Some(accepted) = accepted {
                        self.metrics.queue_depth.inc();
                        if live.send(accepted).await.is_err() {
                            self.metrics.queue_depth.dec();
                            return;
                        }
                    }
                }
                self.state.processed.store(seq, Ordering::Release);
                self.state.answered_ms.store(now_ms(), Ordering::Release);
                self.state
                    .processed_at_ms
                    .store(published_ms, Ordering::Release);
                self.state.last.fetch_max(seq + pending, Ordering::AcqRel);
                if !self.state.caught_up.load(Ordering::Acquire)
                    && (pending == 0 || seq >= history_end)
                {
                    self.end_history(&mut history, &mut batch).await;
                }
                self.state.update_metrics(&self.metrics);
            }
        }
    }

    /// An ordered consumer from `policy` on, with the number of messages
    /// it has to deliver.
    async fn open(
        &self,
        policy: DeliverPolicy,
    ) -> anyhow::Result<(u64, async_nats::jetstream::consumer::pull::Ordered)> {
        let consumer = self
            .stream
            .create_consumer(OrderedConfig {
                // No name: a restarted node must not wait for its old
                // consumer to expire; the description tells them apart.
                description: Some(format!(
                    "callwatch feed of node {}",
                    self.cluster.config.node
                )),
                filter_subjects: vec![
                    self.cluster.config.subject(),
                    self.cluster.config.tick_subject(),
                ],
                deliver_policy: policy,
                ..Default::default()
            })
            .await?;
        let pending = consumer.cached_info().num_pending;
        Ok((pending, consumer.messages().await?))
    }

    /// Reads the stream's last sequence, so lag shows even when no
    /// message arrives.
    async fn poll_last(&mut self) {
        if let Ok(Ok(info)) = tokio::time::timeout(POLL, self.stream.info()).await {
            self.state
                .last
                .fetch_max(info.state.last_sequence, Ordering::AcqRel);
            // A stream leader that has lost its followers keeps answering
            // `info` until its raft group notices (seconds later, longer
            // on a loaded host), so an answer alone does not prove the
            // stream can store; the leader's view of its replicas does.
            let quorum = info.cluster.as_ref().is_none_or(has_quorum);
            self.state.quorum.store(quorum, Ordering::Release);
            if quorum {
                self.state.answered_ms.store(now_ms(), Ordering::Release);
            }
        }
        self.state.update_metrics(&self.metrics);
    }

    /// Closes the history if it is still open and marks the node caught
    /// up with the stream as it was when the feed started (ready).
    async fn end_history(
        &self,
        history: &mut Option<std::sync::mpsc::SyncSender<Vec<Event>>>,
        batch: &mut Vec<Event>,
    ) {
        close_history(history, batch).await;
        if self.state.caught_up.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::info!(
            seq = self.state.processed.load(Ordering::Acquire),
            "stream history read; following the stream"
        );
    }
}

/// Hands over the last history batch and closes the history: the engine
/// then evaluates what follows.
async fn close_history(
    history: &mut Option<std::sync::mpsc::SyncSender<Vec<Event>>>,
    batch: &mut Vec<Event>,
) {
    if history.is_none() {
        return;
    }
    if !batch.is_empty() {
        send_history(history, std::mem::take(batch)).await;
    }
    *history = None;
}

/// A stream message as the engine takes it.
enum Item {
    /// Receive time (ms) and events of an accepted callback.
    Callback(i64, Vec<Event>),
    /// An engine tick at this time (ms).
    Tick(i64),
}

/// The engine thread takes history from a bounded blocking channel.
async fn send_history(
    history: &Option<std::sync::mpsc::SyncSender<Vec<Event>>>,
    batch: Vec<Event>,
) {
    if let Some(tx) = history.clone() {
        // A stopped engine thread only means nobody needs history.
        let _ = tokio::task::spawn_blocking(move || tx.send(batch)).await;
    }
}

/// Logs through `rate`: the first of a kind, then one line per interval
/// with the count held back.
fn warn_rate(rate: &LogRate, kind: &str, log: impl FnOnce(u64)) {
    if let Some(n) = rate.check(kind, std::time::Instant::now()) {
        log(n)
    }
}
