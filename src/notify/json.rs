//! The machine-readable bodies: the generic webhook body (docs/alerts.md) and the
//! alert list of Alertmanager's `POST /api/v2/alerts`. No size limit
//! applies; receivers of these parse JSON rather than show it to people.

use serde_json::{json, Map, Value};

use crate::time::format_rfc3339;

use super::Notification;

/// `{"version":"1","status":..,"receiver":..,"alerts":[..]}`, plus
/// `"test": true` on test notifications only, so regular bodies are
/// exactly the documented shape.
pub(crate) fn webhook(n: &Notification) -> Value {
    let mut body = json!({
        "version": "1",
        "status": n.status.as_str(),
        "receiver": n.receiver,
        "alerts": n.alerts,
    });
    if n.test {
        body["test"] = json!(true);
    }
    body
}

/// One Alertmanager alert per alert: `alertname` is the rule, then the
/// alert's labels; `summary` (and `value`, when there is one) and the
/// rule's annotations are annotations; the alert's `url` is `generatorURL`; `endsAt` only once resolved, so Alertmanager keeps a firing
/// alert open until its `resolve_timeout`.
pub(crate) fn alertmanager(n: &Notification) -> Value {
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .map(|a| {
            let mut labels = Map::new();
            labels.insert("alertname".into(), json!(a.rule));
            for (k, v) in &a.labels {
                if k != "alertname" {
                    labels.insert(k.clone(), json!(v));
                }
            }
            let mut annotations = Map::new();
            annotations.insert("summary".into(), json!(a.summary));
            if let Some(v) = super::text::value(a) {
                annotations.insert("value".into(), json!(v));
            }
            for (k, v) in &a.annotations {
                annotations.insert(k.clone(), json!(v));
            }
            let mut alert = json!({
                "labels": labels,
                "annotations": annotations,
                "startsAt": format_rfc3339(a.starts_at),
            });
            if let Some(url) = &a.url {
                alert["generatorURL"] = json!(url);
            }
            if let Some(end) = a.ends_at {
                alert["endsAt"] = json!(format_rfc3339(end));
            }
            alert
        })
        .collect();
    Value::Array(alerts)
}
