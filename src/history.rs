//! Alert history, for people looking back: what each alert went through
//! (its saved transitions) and what was sent about it (every delivery
//! outcome), kept in the store's bounded history tables
//! (`store/history.rs`). The daemon records transitions once they are
//! saved and deliveries as the outbox settles them; the console and
//! `GET /api/v1/alerts/{fingerprint}` read one alert's with [`alert_history`].
//! History never decides anything: a failed write is logged and skipped.

use std::sync::Mutex;

use serde_json::{json, Value};

use crate::alert::AlertStatus;
use crate::alert::Transition;
use crate::store::{Delivery, Store, StoreError};
use crate::time::format_rfc3339;

fn status_name(s: AlertStatus) -> &'static str {
    match s {
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
        AlertStatus::Pending => "pending",
    }
}

/// Records transitions the store has just saved.
pub fn record_transitions<'a>(
    store: &Mutex<Store>,
    saved: impl IntoIterator<Item = &'a Transition>,
) {
    let rows: Vec<(String, i64, &'static str, String)> = saved
        .into_iter()
        .map(|t| {
            (
                t.alert.fingerprint.clone(),
                t.at,
                status_name(t.alert.status),
                serde_json::to_string(&t.alert).unwrap_or_default(),
            )
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let written = store
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .record_transitions(&rows);
    if let Err(e) = written {
        tracing::warn!(error = %e, transitions = rows.len(), "alert history: transitions not recorded");
    }
}

/// Records a delivery outcome for each of a notification's `alerts`
/// (the caller leaves out test notifications, whose alerts are made up).
pub fn record_delivery(store: &Store, alerts: &[crate::alert::Alert], d: &Delivery<'_>) {
    let alerts: Vec<(String, &'static str)> = alerts
        .iter()
        .map(|a| (a.fingerprint.clone(), status_name(a.status)))
        .collect();
    if let Err(e) = store.record_delivery(d, &alerts) {
        tracing::warn!(error = %e, receiver = d.receiver, "alert history: delivery not recorded");
    }
}

/// One alert's history: `{"alert", "transitions", "notifications"}`.
/// `alert` is `active` (the alert as the API shows it now) when given,
/// else the alert as its newest transition left it, else null; `None`
/// when the fingerprint is neither active nor in the history.
pub fn alert_history(
    store: &Mutex<Store>,
    fingerprint: &str,
    active: Option<Value>,
) -> Result<Option<Value>, StoreError> {
    let (transitions, notifications) = {
        let store = store.lock().unwrap_or_else(|p| p.into_inner());
        (
            store.alert_transitions(fingerprint)?,
            store.alert_notifications(fingerprint)?,
        )
    };
    if active.is_none() && transitions.is_empty() && notifications.is_empty() {
        return Ok(None);
    }
    let alert = active.or_else(|| transitions.last().map(|t| t.alert.clone()));
    let transitions: Vec<Value> = transitions
        .iter()
        .map(|t| {
            json!({
                "at": format_rfc3339(t.at),
                "from": t.from,
                "to": t.to,
                "repeat": t.from == "firing" && t.to == "firing",
                "value": t.alert.get("value").cloned().unwrap_or(Value::Null),
                "summary": t.alert.get("summary").cloned().unwrap_or(Value::Null),
                "reason": t.alert.get("reason").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    let notifications: Vec<Value> = notifications
        .iter()
        .map(|n| {
            json!({
                "receiver": n.receiver,
                "at": format_rfc3339(n.at_ms.div_euclid(1000)),
                "at_ms": n.at_ms,
                "outcome": n.outcome,
                "status": n.status,
                "attempt": n.attempt,
                "error": n.error,
            })
        })
        .collect();
    Ok(Some(json!({
        "alert": alert,
        "transitions": transitions,
        "notifications": notifications,
    })))
}
