//! Operational HTTP endpoints (SPEC §8): `/healthz`, `/readyz`, `/metrics`.
//! The admin API under `/api/v1` joins them here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use warp::http::StatusCode;
use warp::Filter;

use crate::metrics::Metrics;

/// Health, readiness and metrics routes.
pub fn ops_routes(
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let healthz = warp::path!("healthz").and(warp::get()).map(|| {
        warp::reply::Reply::into_response(warp::reply::json(&serde_json::json!({"status": "ok"})))
    });
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        let (status, text) = if ready.load(Ordering::Acquire) {
            (StatusCode::OK, "ready")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "recovering")
        };
        warp::reply::Reply::into_response(warp::reply::with_status(
            warp::reply::json(&serde_json::json!({"status": text})),
            status,
        ))
    });
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::Reply::into_response(warp::reply::with_header(
            metrics.render(),
            "content-type",
            "text/plain; version=0.0.4; charset=utf-8",
        ))
    });
    healthz.or(readyz).unify().or(metrics).unify()
}
