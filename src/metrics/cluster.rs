//! Metrics of cluster mode's stream: how far this node's engine is behind
//! the stream, and how long JetStream takes to acknowledge a publish.
//! Registered in every mode; they stay 0 on a single node.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The stream metrics, registered under the `callwatch_` prefix.
pub struct StreamMetrics {
    pub lag_seconds: Gauge<f64, AtomicU64>,
    pub lag_messages: Gauge,
    pub publish_seconds: Histogram,
    /// 1 while this node holds the leader lease.
    pub leader: Gauge,
}

impl StreamMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> StreamMetrics {
        let m = StreamMetrics {
            lag_seconds: Gauge::default(),
            lag_messages: Gauge::default(),
            // 100 µs .. ~6.5 s
            publish_seconds: Histogram::new(exponential_buckets(1e-4, 3.0, 11)),
            leader: Gauge::default(),
        };
        registry.register(
            "cluster_leader",
            "1 while this node holds the leader lease and delivers notifications (cluster mode)",
            m.leader.clone(),
        );
        registry.register(
            "cluster_stream_lag_seconds",
            "How far behind the stream this node's engine is, in seconds (cluster mode)",
            m.lag_seconds.clone(),
        );
        registry.register(
            "cluster_stream_lag_messages",
            "Stream messages not yet fed to this node's engine (cluster mode)",
            m.lag_messages.clone(),
        );
        registry.register(
            "cluster_publish_seconds",
            "Time from publishing an accepted callback to JetStream's acknowledgement",
            m.publish_seconds.clone(),
        );
        m
    }
}
