//! `POST /api/v1/backtest`: a pasted rule over the journal's last hours
//! (`crate::backtest`). 200 with what it found (`truncated` when the
//! budget stopped it), 400 with `errors` at their `path:line:col` when
//! the rule does not load, 429 with `Retry-After` while another runs.

use std::sync::Arc;

use serde_json::json;
use warp::http::StatusCode;
use warp::Filter;

use super::{error_reply, json_reply, MAX_BODY_BYTES};
use crate::backtest::{BacktestError, Backtester, Request};

/// The route, under `/api/v1` and its authorisation.
pub fn route(
    backtester: Arc<Backtester>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    warp::path!("backtest")
        .and(warp::post())
        .and(warp::body::content_length_limit(MAX_BODY_BYTES))
        .and(warp::body::bytes())
        .then(move |body: bytes::Bytes| {
            let backtester = backtester.clone();
            async move { answer(&backtester, &body).await }
        })
}

async fn answer(backtester: &Backtester, body: &[u8]) -> warp::reply::Response {
    let req: Request = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return error_reply(
                StatusCode::BAD_REQUEST,
                &format!("body: {e} (expected {{\"name\", \"source\", \"since\"}})"),
            )
        }
    };
    match backtester.run(req, crate::time::now_ms()).await {
        Ok(outcome) => json_reply(StatusCode::OK, &outcome.to_json()),
        Err(e @ BacktestError::Load(_)) => json_reply(
            StatusCode::BAD_REQUEST,
            &json!({"error": e.to_string(), "errors": e.errors_json()}),
        ),
        Err(BacktestError::Busy { retry_after }) => {
            let e = BacktestError::Busy { retry_after };
            let mut r = error_reply(StatusCode::TOO_MANY_REQUESTS, &e.to_string());
            if let Ok(v) = warp::http::HeaderValue::from_str(&retry_after.as_secs().to_string()) {
                r.headers_mut().insert(warp::http::header::RETRY_AFTER, v);
            }
            r
        }
        Err(e @ BacktestError::Bad(_)) => error_reply(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e @ BacktestError::Failed(_)) => {
            error_reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}
