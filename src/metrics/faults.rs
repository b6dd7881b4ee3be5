//! Metrics of faults the daemon absorbed instead of losing data: failed
//! journal writes cut back, damaged segment tails, alert states the store
//! would not take (yet), a store recreated over an existing journal.
//! Kept apart from the main registry code so the list stays readable.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The fault metrics, registered under the `callwatch_` prefix.
#[derive(Default)]
pub struct FaultMetrics {
    pub journal_write_failures: Counter,
    pub journal_cut_backs: Counter,
    pub journal_damaged_tails: Counter,
    pub store_write_failures: Counter,
    pub unsaved_transitions: Gauge,
    pub store_recreated: Gauge,
}

impl FaultMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> FaultMetrics {
        let m = FaultMetrics::default();
        registry.register(
            "journal_write_failures",
            "Journal writes or fsyncs that failed; their callbacks got 503",
            m.journal_write_failures.clone(),
        );
        registry.register(
            "journal_cut_backs",
            "Segments cut back to their last complete record after a failed write",
            m.journal_cut_backs.clone(),
        );
        registry.register(
            "journal_damaged_tails",
            "Segments found on start with an unreadable tail (reported, kept)",
            m.journal_damaged_tails.clone(),
        );
        registry.register(
            "store_write_failures",
            "Failed saves of alert states and transitions (retried)",
            m.store_write_failures.clone(),
        );
        registry.register(
            "unsaved_transitions",
            "Alert transitions waiting for the store before they are notified",
            m.unsaved_transitions.clone(),
        );
        registry.register(
            "store_recreated",
            "1 if the store was created fresh over a non-empty journal (state was lost)",
            m.store_recreated.clone(),
        );
        m
    }
}
