//! The console's stylesheet and scripts, embedded in the binary and
//! served under `/ui/assets/` to anyone (they hold no data, and the
//! login form needs them). Cached for an hour: a new binary may change
//! them, and a stale script for an hour is harmless next to a page that
//! never loads.

use warp::http::{header, HeaderValue, StatusCode};
use warp::Filter;

const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/console.js"),
    ),
    (
        "callbacks.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/callbacks.js"),
    ),
    (
        "playground.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/playground.js"),
    ),
];

fn asset(name: &str) -> warp::reply::Response {
    let Some((_, kind, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        let mut resp = warp::reply::Response::new(format!("no asset {name:?}").into());
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return resp;
    };
    let mut resp = warp::reply::Response::new((*body).into());
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    super::page::secure(h);
    resp
}

/// `GET /ui/assets/{name}`, relative to `/ui`.
pub(super) fn routes(
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("assets" / String)
        .and(warp::get())
        .map(|name: String| asset(&name))
}
