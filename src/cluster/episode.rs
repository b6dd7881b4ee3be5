//! Which alert episode a cluster transition belongs to, so the leader
//! delivers one firing and one resolve per episode however the nodes
//! stamped them.
//!
//! Every node evaluates the same callbacks and stream ticks at the times
//! the stream carries, and a restarted node resumes where its saved states
//! were computed, so nodes normally stamp a transition alike and the
//! OUTBOX keeps one copy (the id digests `starts_at`). What is left to
//! this check: a node with no saved position (new, or its state dir
//! emptied) stamps what it finds at its start, and a node whose clock is
//! far off publishes ticks the others skip. The leader keeps, per alert
//! fingerprint, the last transition it accepted for delivery, and treats
//! a transition of the same episode from another node as a copy.

use serde::{Deserialize, Serialize};

use crate::alert::{Alert, AlertStatus};

/// How far apart two nodes may stamp the same change: clock skew between
/// hosts plus the engine lag a ready node may have (readiness fails past
/// 5 s), with room to spare.
pub const SKEW_SECS: i64 = 30;

/// A firing of an alert already firing (no resolve accepted between) is
/// the same episode unless it starts this much later. A node that was
/// down when the alert fired stamps it with its restart time, so the
/// bound must be long; only a rule that sends no resolves fires again
/// without one. Alertmanager's `resolve_timeout` default, which plays the
/// same part there.
pub const REFIRE_SECS: i64 = 300;

/// The last transition of one alert the leader accepted for delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    /// The outbox ids of the alert's latest accepted transitions, newest
    /// last: a redelivery of one of them is not a copy (a firing still
    /// owed to a receiver comes back to a new leader after its resolve
    /// was accepted).
    pub ids: Vec<String>,
    pub status: AlertStatus,
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    /// When the latest accepted resolve ended, kept while the alert fires
    /// again: a resolve that started before it belongs to that earlier
    /// episode (a slow or restarted node's copy), not to this firing.
    #[serde(default)]
    pub resolved_end: Option<i64>,
}

/// How many ids an episode record keeps.
const KEPT_IDS: usize = 16;

impl Accepted {
    /// The record after accepting transition `id` of `alert`, following
    /// `last`.
    pub fn next(last: Option<&Accepted>, id: &str, alert: &Alert) -> Accepted {
        let mut ids = last.map(|l| l.ids.clone()).unwrap_or_default();
        ids.push(id.to_string());
        if ids.len() > KEPT_IDS {
            ids.drain(..ids.len() - KEPT_IDS);
        }
        let resolved_end = match alert.status {
            AlertStatus::Resolved => alert.ends_at.or(last.and_then(|l| l.resolved_end)),
            _ => last.and_then(|l| l.resolved_end),
        };
        Accepted {
            ids,
            status: alert.status,
            starts_at: alert.starts_at,
            ends_at: alert.ends_at,
            resolved_end,
        }
    }
}

/// What the leader does with a transition read from the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The message already accepted (redelivered): carry on with it.
    Same,
    /// A change not delivered yet: record it, then deliver.
    New,
    /// Another node's copy of a change already accepted, or a stale one
    /// of an episode that has since moved on: drop it.
    Copy,
}

/// Decides for the transition `id` of `alert`, given the last accepted
/// transition of the same fingerprint.
pub fn decide(last: Option<&Accepted>, id: &str, alert: &Alert) -> Decision {
    let Some(last) = last else {
        return Decision::New;
    };
    if last.ids.iter().any(|i| i == id) {
        return Decision::Same;
    }
    let (starts, last_starts) = (alert.starts_at, last.starts_at);
    let copy = match (last.status, alert.status) {
        // The same firing stamped by another (or a restarted) node, or
        // an older one.
        (AlertStatus::Firing, AlertStatus::Firing) => starts - last_starts < REFIRE_SECS,
        // The resolve of the accepted firing (whoever stamped it), unless
        // it is of an episode older than that firing: one that started
        // before the previous accepted resolve ended, or well before it.
        (AlertStatus::Firing, AlertStatus::Resolved) => {
            last.resolved_end.is_some_and(|end| starts < end) || starts < last_starts - SKEW_SECS
        }
        // A change that started before the accepted resolve ended belongs
        // to that episode: a slower node's copy of the resolve or of the
        // firing. One after it is the alert firing again.
        (AlertStatus::Resolved, AlertStatus::Resolved | AlertStatus::Firing) => {
            match last.ends_at {
                Some(end) => starts < end,
                None => (starts - last_starts).abs() <= SKEW_SECS,
            }
        }
        _ => false,
    };
    if copy {
        Decision::Copy
    } else {
        Decision::New
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(status: AlertStatus, starts_at: i64, ends_at: Option<i64>) -> Alert {
        Alert {
            rule: "r".into(),
            status,
            severity: "warning".into(),
            summary: String::new(),
            labels: Default::default(),
            value: serde_json::Value::Null,
            url: None,
            fingerprint: "fp".into(),
            starts_at,
            ends_at,
            key: Default::default(),
            annotations: Default::default(),
            evidence: Vec::new(),
            reason: None,
        }
    }

    fn accepted(id: &str, a: &Alert) -> Accepted {
        Accepted::next(None, id, a)
    }

    #[test]
    fn first_transition_of_an_alert_is_new_and_a_redelivery_is_the_same() {
        let f = alert(AlertStatus::Firing, 100, None);
        assert_eq!(decide(None, "a", &f), Decision::New);
        assert_eq!(decide(Some(&accepted("a", &f)), "a", &f), Decision::Same);
    }

    #[test]
    fn another_nodes_stamp_of_the_same_change_is_a_copy() {
        let f = alert(AlertStatus::Firing, 100, None);
        let last = accepted("a", &f);
        let f2 = alert(AlertStatus::Firing, 101, None);
        assert_eq!(decide(Some(&last), "b", &f2), Decision::Copy);
        let r = alert(AlertStatus::Resolved, 100, Some(400));
        assert_eq!(decide(Some(&last), "c", &r), Decision::New);
        let last = accepted("c", &r);
        let r2 = alert(AlertStatus::Resolved, 101, Some(401));
        assert_eq!(decide(Some(&last), "d", &r2), Decision::Copy);
        // A slow node's firing arriving after the resolve went out.
        assert_eq!(decide(Some(&last), "b", &f2), Decision::Copy);
    }

    #[test]
    fn an_earlier_transition_redelivered_after_a_later_one_is_the_same() {
        let f = alert(AlertStatus::Firing, 100, None);
        let r = alert(AlertStatus::Resolved, 100, Some(200));
        let last = Accepted::next(Some(&accepted("a", &f)), "b", &r);
        assert_eq!(decide(Some(&last), "a", &f), Decision::Same);
        let mut long = last;
        for i in 0..KEPT_IDS {
            long = Accepted::next(Some(&long), &format!("x{i}"), &r);
        }
        assert_eq!(long.ids.len(), KEPT_IDS);
        assert_eq!(long.ids.last().map(String::as_str), Some("x15"));
    }

    #[test]
    fn firing_again_after_a_resolve_is_new_even_soon_after() {
        let r = alert(AlertStatus::Resolved, 100, Some(110));
        let last = accepted("c", &r);
        let again = alert(AlertStatus::Firing, 112, None);
        assert_eq!(decide(Some(&last), "e", &again), Decision::New);
    }

    #[test]
    fn a_stale_resolve_of_an_older_episode_is_dropped() {
        let f = alert(AlertStatus::Firing, 1000, None);
        let last = accepted("e", &f);
        let old = alert(AlertStatus::Resolved, 100, Some(400));
        assert_eq!(decide(Some(&last), "x", &old), Decision::Copy);
    }

    /// Seen in the SIGKILL test: an alert fired, resolved and fired again
    /// 24 s later; a restarted node's copy of the first resolve came after
    /// the second firing and must not go out.
    #[test]
    fn a_late_copy_of_the_previous_resolve_during_a_quick_refire_is_dropped() {
        let f1 = alert(AlertStatus::Firing, 15, None);
        let r1 = alert(AlertStatus::Resolved, 15, Some(27));
        let f2 = alert(AlertStatus::Firing, 39, None);
        let last = Accepted::next(None, "f1", &f1);
        let last = Accepted::next(Some(&last), "r1", &r1);
        assert_eq!(decide(Some(&last), "f2", &f2), Decision::New);
        let last = Accepted::next(Some(&last), "f2", &f2);
        let late_r1 = alert(AlertStatus::Resolved, 15, Some(28));
        assert_eq!(decide(Some(&last), "r1-copy", &late_r1), Decision::Copy);
        let r2 = alert(AlertStatus::Resolved, 39, Some(50));
        assert_eq!(decide(Some(&last), "r2", &r2), Decision::New);
    }

    #[test]
    fn a_much_later_firing_without_a_resolve_between_is_new() {
        let f = alert(AlertStatus::Firing, 100, None);
        let last = accepted("a", &f);
        let restarted = alert(AlertStatus::Firing, 100 + REFIRE_SECS - 1, None);
        assert_eq!(decide(Some(&last), "y", &restarted), Decision::Copy);
        let later = alert(AlertStatus::Firing, 100 + REFIRE_SECS, None);
        assert_eq!(decide(Some(&last), "z", &later), Decision::New);
    }
}
