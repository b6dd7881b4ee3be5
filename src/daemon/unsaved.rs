//! Alert states and transitions the store has not taken yet. Each engine
//! step saves its changed alert states and the transitions they caused in
//! one commit before the transitions go on to be notified. When that
//! commit fails (a full disk, a read-only file system) nothing is dropped:
//! the changes and transitions wait here, newer states replacing older
//! ones of the same key, and every later step (at least every tick) tries
//! again with everything waiting. Transitions are notified once saved, so
//! the order "saved, then notified" that makes restarts safe holds even
//! through a fault.
//!
//! It also notices the opposite fault at start: a store created fresh
//! next to a journal that already holds callbacks, i.e. a deleted store.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use crate::alert::Transition;
use crate::lograte::LogRate;
use crate::metrics::Metrics;
use crate::notify::dispatch::Tracked;
use crate::store::Store;

/// Called when the store did not exist before this start: if the journal
/// holds callbacks, the store was deleted (or state.dir half restored),
/// so silences and alert states are gone and every active alert will be
/// announced again as new. The daemon keeps serving (callbacks are still
/// safe), but says so loudly: an ERROR line, the
/// `callwatch_store_recreated` gauge, and a `detail` in `/readyz`.
pub(super) fn warn_if_store_recreated(state_dir: &Path, metrics: &Metrics) {
    let dir = crate::journal::journal_dir(state_dir);
    let segments = crate::journal::segments(&dir).unwrap_or_default();
    let bytes: u64 = segments
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    if bytes == 0 {
        return;
    }
    metrics.faults.store_recreated.set(1);
    tracing::error!(
        state_dir = %state_dir.display(),
        journal_bytes = bytes,
        "the store (callwatch.db) was missing and has been created empty, but the journal holds callbacks: silences, alert states and queued notifications are lost, and active alerts will be notified again as new; restore callwatch.db from a backup if there is one"
    );
}

/// What waits to be saved.
pub(super) struct Unsaved {
    space: &'static str,
    /// Newest value per key; `None` deletes.
    changes: BTreeMap<String, Option<String>>,
    transitions: Vec<Transition>,
    /// Cluster mode: where in the stream the engine was when the states
    /// waiting here were computed, saved with them (see
    /// [`crate::cluster::position`]).
    position: Option<String>,
    failures: u64,
    log_rate: LogRate,
}

impl Unsaved {
    /// Saves into the store's key space `space`.
    pub fn new(space: &'static str) -> Unsaved {
        Unsaved {
            space,
            changes: BTreeMap::new(),
            transitions: Vec::new(),
            position: None,
            failures: 0,
            log_rate: LogRate::new(Duration::from_secs(10)),
        }
    }

    /// Notes the stream position the engine has reached; saved with the
    /// next states.
    pub fn set_position(&mut self, position: String) {
        self.position = Some(position);
    }

    /// Adds `changes` and `out` to what waits and saves all of it in one
    /// commit. Returns the transitions now saved (with their pending ids),
    /// in order, or none if the store refused: they wait for the next call.
    pub fn save(
        &mut self,
        store: &Mutex<Store>,
        metrics: &Metrics,
        changes: Vec<(String, Option<String>)>,
        out: Vec<Transition>,
    ) -> Vec<Tracked> {
        self.changes.extend(changes);
        self.transitions.extend(out);
        if self.changes.is_empty() && self.transitions.is_empty() {
            return Vec::new();
        }
        let changes: Vec<(String, Option<String>)> = self
            .changes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let bodies: Vec<String> = self
            .transitions
            .iter()
            .map(|t| serde_json::to_string(t).unwrap_or_default())
            .collect();
        // The position alone is not worth a commit: events that changed no
        // state give the same states when evaluated again after a restart.
        let position: Vec<(String, Option<String>)> = self
            .position
            .iter()
            .map(|p| (crate::cluster::position::KEY.to_string(), Some(p.clone())))
            .collect();
        let saved = crate::store::lock(store).apply_spaces_pending(
            &[
                (self.space, &changes),
                (crate::cluster::position::SPACE, &position),
            ],
            &bodies,
        );
        match saved {
            Ok(ids) => {
                if self.failures > 0 {
                    tracing::info!(
                        failed_attempts = self.failures,
                        transitions = self.transitions.len(),
                        "alert states saved after the store recovered; notifying what waited"
                    );
                }
                self.failures = 0;
                self.changes.clear();
                metrics.faults.unsaved_transitions.set(0);
                ids.into_iter()
                    .map(Some)
                    .zip(std::mem::take(&mut self.transitions))
                    .collect()
            }
            Err(e) => {
                self.failures += 1;
                metrics.faults.store_write_failures.inc();
                metrics
                    .faults
                    .unsaved_transitions
                    .set(self.transitions.len() as i64);
                if let Some(held_back) = self.log_rate.check_now("save") {
                    tracing::error!(
                        error = %e,
                        states = self.changes.len(),
                        transitions = self.transitions.len(),
                        similar_since_last_log = held_back,
                        "cannot save alert states; retrying every tick, and their notifications wait until saved"
                    );
                }
                Vec::new()
            }
        }
    }
}
