//! Where in the stream a node's saved alert states were computed, so a
//! restarted node resumes evaluation exactly there.
//!
//! Every node evaluates the same callbacks in the same order at the
//! receive time the stream carries, so it stamps each transition as every
//! other node does and the OUTBOX keeps one copy of it (the id digests
//! the stamp). A node that restarts must reach the same states by the same
//! steps: its store holds the states it had saved after stream message
//! `seq`, so it refills the windows with the messages up to `seq` without
//! evaluating them, and evaluates every message after `seq` as the others
//! did. Evaluating the history at the restart instead would stamp what
//! changed while it was down with the restart time: another id, and,
//! past what the leader's episode check can tell apart, a second
//! notification.

use serde::{Deserialize, Serialize};

use crate::store::Store;

/// The store space and key the position is saved under, in the same
/// commit as the alert states.
pub const SPACE: &str = "stream";
pub const KEY: &str = "position";

/// A message of one stream: a stream deleted and created again (same
/// name, new creation time) starts its sequences over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub stream: String,
    /// The stream's creation time, in Unix nanoseconds.
    pub created_ns: i128,
    pub seq: u64,
}

impl Position {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The saved position, if any and readable.
    pub fn load(store: &Store) -> Option<Position> {
        let value = match store.get_kv(SPACE, KEY) {
            Ok(v) => v?,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the saved stream position");
                return None;
            }
        };
        match serde_json::from_str(&value) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable saved stream position ignored");
                None
            }
        }
    }

    /// The sequence after which this node must evaluate, if the position
    /// is of `stream` as it is now (`created_ns`, `last_seq`): else the
    /// saved states belong to another stream and the history is only read
    /// into the windows.
    pub fn resume_after(&self, stream: &str, created_ns: i128, last_seq: u64) -> Option<u64> {
        (self.stream == stream && self.created_ns == created_ns && self.seq <= last_seq)
            .then_some(self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_round_trips_through_the_store_and_is_checked_against_the_stream() {
        let store = Store::in_memory().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Position::load(&store), None);
        let p = Position {
            stream: "CALLWATCH".into(),
            created_ns: 1_700_000_000_000_000_123,
            seq: 42,
        };
        store
            .put_kv(SPACE, KEY, Some(&p.to_json()))
            .unwrap_or_else(|e| panic!("{e}"));
        let back = Position::load(&store).unwrap_or_else(|| panic!("saved"));
        assert_eq!(back, p);
        assert_eq!(back.resume_after("CALLWATCH", p.created_ns, 42), Some(42));
        assert_eq!(back.resume_after("CALLWATCH", p.created_ns, 100), Some(42));
        // Recreated stream, another stream, a stream that lost messages.
        assert_eq!(back.resume_after("CALLWATCH", p.created_ns + 1, 100), None);
        assert_eq!(back.resume_after("OTHER", p.created_ns, 100), None);
        assert_eq!(back.resume_after("CALLWATCH", p.created_ns, 41), None);
    }
}
