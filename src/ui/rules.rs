//! `/ui/rules` and `/ui/rules/{name}`: every loaded rule with what the
//! engine counts for it (keys tracked, evaluations, errors and the last
//! one with its `path:line:col`) and when it last fired, and one rule's
//! page with its source as it is on disk.

use std::io::Read;

use warp::http::StatusCode;

use super::Console;
use crate::access::Granted;

/// Most of a rule file the page shows.
const MAX_SOURCE_BYTES: u64 = 256 * 1024;

/// The rules as the admin API lists them, each with `last_fired`: the
/// start of its newest firing alert (the engine keeps no time for
/// alerts already resolved).
fn rules(console: &Console) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let snapshot = console.admin.snapshot();
    let alerts = super::alerts::active(console).unwrap_or_default();
    let rules = snapshot
        .rules
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            let last = alerts
                .iter()
                .filter(|a| a["rule"] == r.name.as_str() && a["status"] == "firing")
                .filter_map(|a| a["starts_at"].as_str())
                .max()
                .map(str::to_string);
            if let Some(o) = v.as_object_mut() {
                o.insert("last_fired".into(), last.into());
            }
            v
        })
        .collect();
    (rules, alerts)
}

pub(super) fn list(console: &Console, g: &Granted) -> warp::reply::Response {
    let (rules, _) = rules(console);
    console.pages.render(
        StatusCode::OK,
        "rules.html",
        "rules",
        Some(g),
        serde_json::json!({ "rules": rules }),
    )
}

/// The source of the rule file at `path`, bounded.
pub(super) fn read_source(path: &str) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut text = String::new();
    file.take(MAX_SOURCE_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(text)
}

pub(super) fn one(console: &Console, g: &Granted, name: &str) -> warp::reply::Response {
    let (rules, alerts) = rules(console);
    let Some(rule) = rules.into_iter().find(|r| r["name"] == name) else {
        return console.pages.error(
            StatusCode::NOT_FOUND,
            &format!("no rule {name:?} is loaded"),
            Some(g),
        );
    };
    let active: Vec<_> = alerts.into_iter().filter(|a| a["rule"] == name).collect();
    let (source, source_error) = match read_source(rule["path"].as_str().unwrap_or_default()) {
        Ok(text) => (
            Some(text.lines().map(str::to_string).collect::<Vec<_>>()),
            None,
        ),
        Err(e) => (None, Some(format!("the rule file cannot be read: {e}"))),
    };
    console.pages.render(
        StatusCode::OK,
        "rule.html",
        "rules",
        Some(g),
        serde_json::json!({
            "r": rule,
            "active": active,
            "source": source,
            "source_error": source_error,
        }),
    )
}
