//! `GET /api/v1/alerts/{fingerprint}`: one alert with its history, the
//! transitions it went through and the notifications sent about it
//! (`crate::history`). 404 when the fingerprint is neither active nor in
//! the history.

use std::sync::Arc;

use warp::http::StatusCode;
use warp::Filter;

use super::{error_reply, json_reply, Admin};

/// The route, under `/api/v1` and its authorisation.
pub fn route(
    admin: Arc<Admin>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("alerts" / String)
        .and(warp::get())
        .map(move |fingerprint: String| answer(&admin, &fingerprint))
}

fn answer(admin: &Admin, fingerprint: &str) -> warp::reply::Response {
    let active = match admin.active_alerts() {
        Ok(alerts) => alerts
            .into_iter()
            .find(|a| a["fingerprint"].as_str() == Some(fingerprint)),
        Err(e) => return error_reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    match crate::history::alert_history(&admin.store, fingerprint, active) {
        Ok(Some(v)) => json_reply(StatusCode::OK, &v),
        Ok(None) => error_reply(
            StatusCode::NOT_FOUND,
            &format!("no alert with fingerprint {fingerprint:?}, active or in the history"),
        ),
        Err(e) => error_reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}
