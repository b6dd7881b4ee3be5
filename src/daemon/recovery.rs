//! Reading state back: the one walk over the journal at start (dedup set
//! and window history), the history a reload rebuilds windows from, and
//! the alert states and `w.state` saved in the store. The horizon (how
//! far back events matter to a window) is computed here and only here.

use crate::engine::KeyRecord;
use crate::event::Event;
use crate::ingest::line::decode_line;
use crate::ingest::Ingest;
use crate::journal;
use crate::store::Store;

/// The oldest `received_at` (ms) whose events can still be in some
/// window: the widest rule window plus a minute's margin for events a
/// little ahead of the clock.
pub(crate) fn horizon_ms(now_ms: i64, max_window_secs: i64) -> i64 {
    now_ms - (max_window_secs + 60) * 1000
}

/// Reads the journal once on start: deliveries within the dedup window
/// refill the dedup set, and events newer than `horizon_ms` go to the
/// engine in batches to refill the windows. Returns (records read, recent
/// events sent).
pub(super) fn recover_journal(
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
pub(super) const KEYS_SPACE: &str = "keys";

pub(super) fn restore_records(store: &std::sync::Mutex<Store>) -> Vec<KeyRecord> {
    let rows = crate::store::lock(store).kv(KEYS_SPACE);
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

/// Events from journal records newer than the widest window (oldest
/// first), for rebuilding the windows of rules a reload adds or edits.
pub(super) fn recent_events(
    state_dir: &std::path::Path,
    max_window_secs: i64,
) -> std::io::Result<Vec<Event>> {
    let horizon = horizon_ms(crate::time::now_ms(), max_window_secs);
    let mut out = Vec::new();
    journal::for_each_line(state_dir, |_, _, line| {
        // Unreadable lines were skipped (and logged) at recovery already.
        if let Ok(l) = decode_line(line) {
            if l.received_at.unwrap_or(0) >= horizon {
                out.extend(l.decoded.events);
            }
        }
    })?;
    Ok(out)
}
