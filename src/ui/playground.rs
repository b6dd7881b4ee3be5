//! `/ui/playground`: a rule editor whose Run button backtests the rule
//! over the journal through `POST /api/v1/backtest` (`playground.js`).
//! The page starts from a loaded rule (`?rule=name`) or from a small
//! example.

use std::collections::HashMap;

use warp::http::StatusCode;

use super::Console;
use crate::access::Granted;

/// Where an empty playground starts: a complete rule to edit.
const EXAMPLE: &str = r#"// Fires when one callee misses 3 calls within 10 minutes.
const RULE = #{
    events: ["callee_miss"],
    group_by: ["user_id"],
    window: "10m",
    severity: "warning",
};

fn check(w) {
    w.count() >= 3
}
"#;

pub(super) fn page(
    console: &Console,
    g: &Granted,
    query: &HashMap<String, String>,
) -> warp::reply::Response {
    let from_rule = query.get("rule").and_then(|name| {
        let snapshot = console.admin.snapshot();
        let rule = snapshot.rules.iter().find(|r| &r.name == name)?;
        let source = super::rules::read_source(&rule.path).ok()?;
        Some((format!("{name}_draft"), source))
    });
    let (name, source) = from_rule.unwrap_or_else(|| ("draft".to_string(), EXAMPLE.to_string()));
    console.pages.render(
        StatusCode::OK,
        "playground.html",
        "playground",
        Some(g),
        serde_json::json!({ "name": name, "source": source }),
    )
}
