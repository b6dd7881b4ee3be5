//! `/ui/callbacks`: the frame of the live view. The page itself holds
//! the filters; `callbacks.js` fills the table from the newest
//! callbacks, follows the event stream and draws the per-minute chart,
//! all from the admin API's `/api/v1/events/*` endpoints.

use std::collections::HashMap;

use warp::http::StatusCode;

use super::Console;
use crate::access::Granted;

/// The filters the event endpoints take: query name, label, input mode.
const FILTERS: &[(&str, &str, &str)] = &[
    ("sdkappid", "sdkappid", "numeric"),
    ("user", "user", "text"),
    ("platform", "platform", "text"),
    ("command", "command", "text"),
];

pub(super) fn page(
    console: &Console,
    g: &Granted,
    query: &HashMap<String, String>,
) -> warp::reply::Response {
    let filters: Vec<_> = FILTERS
        .iter()
        .map(|(name, label, mode)| {
            serde_json::json!({
                "name": name, "label": label, "mode": mode,
                "value": query.get(*name).map(|v| v.trim()).unwrap_or_default(),
            })
        })
        .collect();
    console.pages.render(
        StatusCode::OK,
        "callbacks.html",
        "callbacks",
        Some(g),
        serde_json::json!({ "filters": filters }),
    )
}
