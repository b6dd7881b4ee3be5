//! One alert's history for its page: the transitions it went through and
//! the notifications sent about it, as the store keeps them
//! (`crate::history`); `None` when nothing is recorded for the alert.

use super::Console;

/// `{"alert", "transitions", "notifications"}` for `fingerprint`; the
/// alert is the one its newest transition left. A store that cannot be
/// read shows as no history (the page says so), logged.
pub(super) fn of(console: &Console, fingerprint: &str) -> Option<serde_json::Value> {
    match crate::history::alert_history(&console.admin.store, fingerprint, None) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, fingerprint, "console: alert history not readable");
            None
        }
    }
}
