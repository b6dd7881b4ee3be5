//! `/ui/alerts` and `/ui/alerts/{fingerprint}`: the active alerts as the
//! admin API lists them, each with the state an operator acts on
//! (firing, pending, or what keeps it quiet: silenced, inhibited,
//! muted), and one alert's page with its history and a silence form
//! prefilled from its labels.

use std::collections::HashMap;

use warp::http::StatusCode;

use super::Console;
use crate::access::Granted;

/// What an operator sees first: what keeps an alert quiet, else its
/// status.
fn state_of(a: &serde_json::Value) -> &'static str {
    let has = |k: &str| a[k].as_array().is_some_and(|v| !v.is_empty());
    if has("silenced_by") {
        "silenced"
    } else if has("inhibited_by") {
        "inhibited"
    } else if has("muted_by") {
        "muted"
    } else if a["status"] == "firing" {
        "firing"
    } else {
        "pending"
    }
}

fn severity_rank(s: &serde_json::Value) -> u8 {
    match s.as_str() {
        Some("critical") => 0,
        Some("warning") => 1,
        _ => 2,
    }
}

/// The active alerts with their state, firing and severe first, then
/// the newest.
pub(crate) fn active(console: &Console) -> Result<Vec<serde_json::Value>, String> {
    let mut alerts = console.admin.active_alerts().map_err(|e| e.to_string())?;
    for a in &mut alerts {
        let state = state_of(a);
        if let Some(o) = a.as_object_mut() {
            o.insert("state".into(), state.into());
        }
    }
    alerts.sort_by(|a, b| {
        let rank = |a: &serde_json::Value| (a["state"] != "firing", severity_rank(&a["severity"]));
        rank(a).cmp(&rank(b)).then_with(|| {
            b["starts_at"]
                .as_str()
                .unwrap_or("")
                .cmp(a["starts_at"].as_str().unwrap_or(""))
        })
    });
    Ok(alerts)
}

pub(super) fn list(
    console: &Console,
    g: &Granted,
    _query: &HashMap<String, String>,
) -> warp::reply::Response {
    let (alerts, error) = match active(console) {
        Ok(a) => (a, None),
        Err(e) => (
            Vec::new(),
            Some(format!("the store could not be read: {e}")),
        ),
    };
    console.pages.render(
        StatusCode::OK,
        "alerts.html",
        "alerts",
        Some(g),
        serde_json::json!({ "alerts": alerts, "error": error }),
    )
}

pub(super) fn one(console: &Console, g: &Granted, fingerprint: &str) -> warp::reply::Response {
    let alert = match active(console) {
        Ok(list) => list.into_iter().find(|a| a["fingerprint"] == fingerprint),
        Err(e) => {
            return console.pages.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the store could not be read: {e}"),
                Some(g),
            )
        }
    };
    let history = super::history::of(console, fingerprint);
    // Not active: the alert as its newest transition left it.
    let alert = alert.or_else(|| {
        let mut a = history.as_ref()?.get("alert")?.clone();
        let status = a["status"].clone();
        a.as_object_mut()?.insert("state".into(), status);
        Some(a)
    });
    let status = if alert.is_none() && history.is_none() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    console.pages.render(
        status,
        "alert.html",
        "alerts",
        Some(g),
        serde_json::json!({ "fingerprint": fingerprint, "a": alert, "history": history }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_keeps_an_alert_quiet_comes_before_its_status() {
        let a = |v: serde_json::Value| state_of(&v);
        assert_eq!(a(serde_json::json!({"status": "firing"})), "firing");
        assert_eq!(
            a(serde_json::json!({"status": "pending", "silenced_by": []})),
            "pending"
        );
        assert_eq!(
            a(serde_json::json!({"status": "firing", "silenced_by": ["x"], "inhibited_by": ["y"]})),
            "silenced"
        );
        assert_eq!(
            a(serde_json::json!({"status": "firing", "muted_by": ["night"]})),
            "muted"
        );
    }
}
