//! One alert's history for its page: the transitions it went through and
//! the notifications sent about it. Kept by the store where the daemon
//! records it; `None` while no history is recorded for the alert.

use super::Console;

/// The alert's `{"transitions": [...], "notifications": [...]}`, if any
/// is recorded.
pub(super) fn of(_console: &Console, _fingerprint: &str) -> Option<serde_json::Value> {
    None
}
