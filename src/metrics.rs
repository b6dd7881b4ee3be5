//! Prometheus metrics: one registry with every family callwatch exports,
//! shared by the components that update them. Label sets are bounded:
//! unknown commands are counted under `command="other"`.

mod cluster;
mod faults;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use cluster::StreamMetrics;
pub use faults::FaultMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallbackLabels {
    pub family: String,
    pub command: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReceiverLabels {
    pub receiver: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    pub callbacks: Family<CallbackLabels, Counter>,
    pub dedup_hits: Counter,
    pub events: Counter,
    pub late_events: Family<RuleLabels, Counter>,
    pub future_events: Counter,
    pub journal_appends: Counter,
    pub journal_bytes_written: Counter,
    pub journal_size_bytes: Gauge,
    pub journal_segments: Gauge,
    pub journal_fsync_seconds: Histogram,
    pub queue_depth: Gauge,
    pub queue_rejections: Counter,
    pub rule_evaluations: Family<RuleLabels, Counter>,
    pub rule_errors: Family<RuleLabels, Counter>,
    pub rule_eval_seconds: Family<RuleLabels, Histogram>,
    pub rule_keys: Family<RuleLabels, Gauge>,
    pub alerts: Family<StateLabels, Gauge>,
    pub notifications: Family<ReceiverLabels, Counter>,
    pub outbox_size: Gauge,
    pub script_output: Family<ReasonLabels, Counter>,
    pub faults: FaultMetrics,
    /// Cluster mode: stream lag and publish latency.
    pub stream: StreamMetrics,
    pub rule_keys_refused: Family<RuleLabels, Counter>,
    pub rule_suspensions: Family<RuleLabels, Counter>,
    pub connections_open: Gauge,
    pub connections_refused: Counter,
    pub connections_timed_out: Counter,
}

fn eval_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-6, 4.0, 10))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("callwatch");
        let callbacks = Family::<CallbackLabels, Counter>::default();
        registry.register(
            "callbacks",
            "Callbacks received, by family, command and outcome",
            callbacks.clone(),
        );
        let dedup_hits = Counter::default();
        registry.register(
            "dedup_hits",
            "Retried deliveries acknowledged without processing",
            dedup_hits.clone(),
        );
        let events = Counter::default();
        registry.register(
            "events",
            "Events decoded from accepted callbacks",
            events.clone(),
        );
        let late_events = Family::<RuleLabels, Counter>::default();
        registry.register(
            "late_events",
            "Events older than a rule's window on arrival, kept out of it",
            late_events.clone(),
        );
        let future_events = Counter::default();
        registry.register(
            "future_events",
            "Events dated more than max_clock_skew ahead, treated as now",
            future_events.clone(),
        );
        let journal_appends = Counter::default();
        registry.register(
            "journal_appends",
            "Callbacks appended to the journal",
            journal_appends.clone(),
        );
        let journal_bytes_written = Counter::default();
        registry.register(
            "journal_written_bytes",
            "Bytes appended to the journal",
            journal_bytes_written.clone(),
        );
        let journal_size_bytes = Gauge::default();
        registry.register(
            "journal_size_bytes",
            "Bytes in journal segments on disk",
            journal_size_bytes.clone(),
        );
        let journal_segments = Gauge::default();
        registry.register(
            "journal_segments",
            "Journal segment files on disk",
            journal_segments.clone(),
        );
        let journal_fsync_seconds = Histogram::new(exponential_buckets(1e-5, 3.0, 12));
        registry.register(
            "journal_fsync_seconds",
            "Latency of journal fsync calls",
            journal_fsync_seconds.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Accepted callbacks waiting for the rule engine",
            queue_depth.clone(),
        );
        let queue_rejections = Counter::default();
        registry.register(
            "queue_rejections",
            "Callbacks refused with 503 because the engine queue was full",
            queue_rejections.clone(),
        );
        let rule_evaluations = Family::<RuleLabels, Counter>::default();
        registry.register(
            "rule_evaluations",
            "Calls of a rule's check()",
            rule_evaluations.clone(),
        );
        let rule_errors = Family::<RuleLabels, Counter>::default();
        registry.register(
            "rule_errors",
            "Script errors and limit hits per rule",
            rule_errors.clone(),
        );
        let rule_eval_seconds =
            Family::<RuleLabels, Histogram>::new_with_constructor(eval_histogram as fn() -> _);
        registry.register(
            "rule_eval_seconds",
            "Duration of a rule's check()",
            rule_eval_seconds.clone(),
        );
        let rule_keys = Family::<RuleLabels, Gauge>::default();
        registry.register(
            "rule_keys",
            "Keys (windows) tracked per rule",
            rule_keys.clone(),
        );
        let alerts = Family::<StateLabels, Gauge>::default();
        registry.register("alerts", "Alerts by state", alerts.clone());
        let notifications = Family::<ReceiverLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notification attempts by receiver and outcome",
            notifications.clone(),
        );
        let outbox_size = Gauge::default();
        registry.register(
            "outbox_size",
            "Notifications waiting for delivery",
            outbox_size.clone(),
        );
        let script_output = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "script_output",
            "print/debug calls from rules",
            script_output.clone(),
        );
        let faults = FaultMetrics::register(&mut registry);
        let rule_keys_refused = Family::<RuleLabels, Counter>::default();
        registry.register(
            "rule_keys_refused",
            "New keys not tracked because the rule was at its max_keys",
            rule_keys_refused.clone(),
        );
        let rule_suspensions = Family::<RuleLabels, Counter>::default();
        registry.register(
            "rule_suspensions",
            "Rules suspended for exceeding their CPU budget",
            rule_suspensions.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "HTTP connections being served",
            connections_open.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections refused because server.max_connections were open",
            connections_refused.clone(),
        );
        let connections_timed_out = Counter::default();
        registry.register(
            "connections_timed_out",
            "Connections closed by header_read_timeout or idle_timeout",
            connections_timed_out.clone(),
        );
        let stream = StreamMetrics::register(&mut registry);
        Metrics {
            stream,
            registry,
            rule_keys_refused,
            rule_suspensions,
            connections_open,
            connections_refused,
            connections_timed_out,
            callbacks,
            dedup_hits,
            events,
            late_events,
            future_events,
            journal_appends,
            journal_bytes_written,
            journal_size_bytes,
            journal_segments,
            journal_fsync_seconds,
            queue_depth,
            queue_rejections,
            rule_evaluations,
            rule_errors,
            rule_eval_seconds,
            rule_keys,
            alerts,
            notifications,
            outbox_size,
            script_output,
            faults,
        }
    }

    /// Counts one callback outcome.
    pub fn callback(&self, family: &str, command: &str, outcome: &str) {
        self.callbacks
            .get_or_create(&CallbackLabels {
                family: family.to_string(),
                command: command.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.push_str("# encoding failed\n");
        }
        out
    }
}
