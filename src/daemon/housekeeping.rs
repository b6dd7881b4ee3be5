//! The once-a-minute housekeeping task: prunes journal segments nobody
//! needs any more and forgets long-expired silences.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::config::Config;
use crate::journal::Journal;
use crate::store::SharedStore;
use crate::store::SILENCE_RETENTION_SECS;
use crate::time::{now_ms, now_secs};

/// How long journal records must be kept: the widest rule window (to
/// rebuild windows on start) or the dedup window (to rebuild the dedup
/// set), whichever is longer, plus the clock skew allowance and a margin.
pub fn retention_ms(max_window_secs: i64, config: &Config) -> i64 {
    let need = max_window_secs.max(config.server.dedup_window.as_secs() as i64)
        + config.server.max_clock_skew.as_secs() as i64;
    (need + 600) * 1000
}

/// Once a minute: prunes journal segments past `retention_ms` and deletes
/// silences expired for longer than [`SILENCE_RETENTION_SECS`].
pub(super) async fn housekeeping(
    journal: Arc<Journal>,
    store: SharedStore,
    retention_ms: i64,
    mut stop: oneshot::Receiver<()>,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = every.tick() => {}
        }
        match journal.prune(now_ms() - retention_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(segments = n, "pruned journal segments"),
            Err(e) => tracing::warn!(error = %e, "journal pruning failed"),
        }
        let cutoff = now_secs() - SILENCE_RETENTION_SECS;
        let deleted = crate::store::lock(&store).delete_silences_ended_before(cutoff);
        match deleted {
            Ok(0) => {}
            Ok(n) => tracing::info!(silences = n, "deleted long-expired silences"),
            Err(e) => tracing::warn!(error = %e, "deleting expired silences failed"),
        }
    }
}
