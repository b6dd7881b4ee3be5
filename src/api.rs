//! Operational HTTP endpoints: `/healthz`, `/readyz`, `/metrics`.
//! The admin API under `/api/v1` (alerts, rules, silences, reload) with its
//! authorisation (the rule in `access`, shared with the console) and its
//! error bodies: every failure under `/api/` answers
//! `{"error": "..."}` with the fitting status. Silences are in `silences`,
//! the live feed of accepted callbacks in `events`.

mod alert_history;
mod backtest;
pub mod events;
mod reload;
pub(crate) mod silences;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use warp::http::StatusCode;
use warp::Filter;

pub use reload::{Reload, ReloadError, ReloadFuture};

use crate::engine::Snapshot;
use crate::metrics::Metrics;
use crate::notify::dispatch::Dispatcher;
use crate::notify::silence;
use crate::store::{lock, SharedStore};

/// `/readyz` detail after the store was created fresh over a journal.
const STORE_RECREATED: &str = "store was missing and created empty over an existing journal: silences and alert states were lost; see the log";

/// Health, readiness and metrics routes.
pub fn ops_routes(
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    cluster: Option<Arc<crate::cluster::feed::FeedState>>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let healthz = warp::path!("healthz").and(warp::get()).map(|| {
        warp::reply::Reply::into_response(warp::reply::json(&serde_json::json!({"status": "ok"})))
    });
    let ready_metrics = metrics.clone();
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        let (status, text) = if ready.load(Ordering::Acquire) {
            (StatusCode::OK, "ready")
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, "recovering")
        };
        let mut body = serde_json::json!({"status": text});
        // Cluster mode: also connected to NATS and caught up with the stream.
        let status = match cluster.as_ref().and_then(|c| c.not_ready()) {
            Some(why) if status == StatusCode::OK => {
                body = serde_json::json!({"status": "not ready", "detail": why});
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => status,
        };
        // Still ready (callbacks are safe), but state was lost: say so
        // where load balancers and operators look.
        if ready_metrics.faults.store_recreated.get() > 0 {
            body["detail"] = STORE_RECREATED.into();
        }
        warp::reply::Reply::into_response(warp::reply::with_status(
            warp::reply::json(&body),
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

/// What the admin API reads and changes.
pub struct Admin {
    /// Who may call: the admin token in force and console sessions.
    pub access: Arc<crate::access::Access>,
    pub store: SharedStore,
    pub snapshot: Arc<RwLock<Snapshot>>,
    pub reloader: Arc<dyn Reload>,
    /// What keeps alerts back besides silences (`inhibited_by`,
    /// `muted_by`).
    pub dispatcher: Arc<Dispatcher>,
    /// Cluster mode: silences are written to the shared bucket first.
    pub shared_silences: Option<Arc<crate::cluster::silences::ClusterSilences>>,
    /// Accepted callbacks for `/api/v1/events/*`.
    pub feed: Arc<crate::feed::Feed>,
    /// Runs `POST /api/v1/backtest`, one at a time.
    pub backtester: Arc<crate::backtest::Backtester>,
}

/// Largest request body the admin API reads.
const MAX_BODY_BYTES: u64 = 64 * 1024;

/// How a rule's settings read in `GET /api/v1/rules` (docs/api.md): the
/// spec's keys with `where` as an object and the repeat in force.
pub mod rule_settings {
    use serde::{Serialize, Serializer};

    use crate::engine::RuleSettings;

    impl Serialize for RuleSettings {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let spec = &self.spec;
            let where_: serde_json::Map<String, serde_json::Value> = spec
                .where_
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
                .collect();
            serde_json::json!({
                "events": spec.events,
                "where": where_,
                "group_by": spec.group_by,
                "window_secs": spec.window_secs,
                "severity": spec.severity.as_str(),
                "for_secs": spec.for_secs,
                "repeat_secs": self.repeat_secs,
                "labels": spec.labels,
                "notify": spec.notify,
                "resolve": spec.resolve,
                "max_keys": spec.max_keys,
                "keep_firing_for_secs": spec.keep_firing_for_secs,
            })
            .serialize(s)
        }
    }
}

fn json_reply(status: StatusCode, v: &serde_json::Value) -> warp::reply::Response {
    warp::reply::Reply::into_response(warp::reply::with_status(warp::reply::json(v), status))
}

fn error_reply(status: StatusCode, message: &str) -> warp::reply::Response {
    json_reply(status, &serde_json::json!({ "error": message }))
}

impl Admin {
    /// `GET /api/v1/alerts`: the engine's active alerts, each with the
    /// silences that cover it (`silenced_by`, ids), the alerts that
    /// inhibit it (`inhibited_by`, fingerprints) and the time intervals
    /// that mute it for at least one receiver (`muted_by`, names). An
    /// alert listed in any is tracked but (there) not sent.
    fn alerts(&self) -> warp::reply::Response {
        match self.active_alerts() {
            Ok(alerts) => json_reply(StatusCode::OK, &serde_json::json!({ "alerts": alerts })),
            Err(e) => error_reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    /// The alerts of `GET /api/v1/alerts`, as JSON objects (the console's
    /// pages use them too).
    pub fn active_alerts(&self) -> Result<Vec<serde_json::Value>, crate::store::StoreError> {
        let now = crate::ingest::now_ms() / 1000;
        let silences = lock(&self.store).silences()?;
        let snapshot = self.snapshot();
        // Mutes belong to routes, which a rule's `notify` bypasses.
        let notify_of = |rule: &str| -> Option<Vec<String>> {
            let info = snapshot.rules.iter().find(|r| r.name == rule)?;
            let notify = &info.config.spec.notify;
            (!notify.is_empty()).then(|| notify.clone())
        };
        let active: Vec<_> = snapshot
            .alerts
            .iter()
            .map(|a| (a.clone(), notify_of(&a.rule)))
            .collect();
        let quiet = self.dispatcher.quiet_status(&active, now);
        let alerts: Vec<serde_json::Value> = active
            .iter()
            .zip(quiet)
            .map(|((a, _), (inhibited_by, muted_by))| {
                let mut v = serde_json::to_value(a).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    let silenced = silence::silenced_by(&silences, &a.labels, now);
                    o.insert("silenced_by".into(), silenced.into());
                    o.insert("inhibited_by".into(), inhibited_by.into());
                    o.insert("muted_by".into(), muted_by.into());
                }
                v
            })
            .collect();
        Ok(alerts)
    }

    pub fn snapshot(&self) -> Snapshot {
        self.snapshot
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }
}

/// `/api/*`: alerts, rules, silences and reload under `/api/v1`, behind
/// the authorisation; anything else under `/api/` is a JSON error.
pub fn admin_routes(
    admin: Arc<Admin>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let auth = admin.access.filter(true).map(|_| ()).untuple_one();
    let a = admin.clone();
    let alerts = warp::path!("alerts")
        .and(warp::get())
        .map(move || a.alerts());
    let history = alert_history::route(admin.clone());
    let a = admin.clone();
    let rules = warp::path!("rules").and(warp::get()).map(move || {
        json_reply(
            StatusCode::OK,
            &serde_json::json!({"rules": a.snapshot().rules}),
        )
    });
    let a = admin.clone();
    let reload = warp::path!("reload").and(warp::post()).then(move || {
        let a = a.clone();
        async move {
            match a.reloader.reload_json().await {
                Ok(report) => json_reply(
                    StatusCode::OK,
                    &serde_json::json!({"status": "ok", "report": report}),
                ),
                Err(errors) => json_reply(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({
                        "error": format!("reload rejected, the old config and rules stay: {} problem(s)", errors.len()),
                        "errors": errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "details": errors.iter().map(ReloadError::detail_json).collect::<Vec<_>>(),
                    }),
                ),
            }
        }
    });
    let feed = admin.feed.clone();
    let backtester = admin.backtester.clone();
    let v1 = warp::path("v1").and(
        alerts
            .or(history)
            .unify()
            .or(rules)
            .unify()
            .or(silences::routes(admin))
            .unify()
            .or(reload)
            .unify()
            .or(events::routes(feed))
            .unify()
            .or(backtest::route(backtester))
            .unify(),
    );
    warp::path("api").and(auth.and(v1).recover(api_rejection).unify())
}

/// Renders every refusal under `/api/` as `{"error": "..."}`. Which one
/// is chosen matters: a POST with an oversized body to a path that also
/// has a GET route is refused as too large, not as the wrong method.
async fn api_rejection(r: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    use warp::reject;
    let (status, message) = if let Some(d) = r.find::<crate::access::Denied>() {
        (d.status, d.message.clone())
    } else if r.find::<reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {MAX_BODY_BYTES} bytes"),
        )
    } else if r.find::<reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "a request body needs a Content-Length header".to_string(),
        )
    } else if let Some(e) = r.find::<reject::InvalidHeader>() {
        (StatusCode::BAD_REQUEST, e.to_string())
    } else if let Some(e) = r.find::<reject::MissingHeader>() {
        (StatusCode::BAD_REQUEST, e.to_string())
    } else if r.find::<reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this endpoint".to_string(),
        )
    } else if r.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "no such endpoint (see GET /api/v1/alerts, /api/v1/rules, /api/v1/silences)"
                .to_string(),
        )
    } else {
        (StatusCode::BAD_REQUEST, format!("bad request: {r:?}"))
    };
    Ok(error_reply(status, &message))
}

/// Renders warp's rejections (unknown path, wrong method, bad header)
/// outside `/api/` as the same JSON failure body the callback path uses
/// (the admin API answers its own errors).
pub async fn recover_rejection(r: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    let (status, message) = if r.is_not_found() {
        (StatusCode::NOT_FOUND, "no such endpoint".to_string())
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed".to_string(),
        )
    } else if let Some(e) = r.find::<warp::reject::InvalidHeader>() {
        (StatusCode::BAD_REQUEST, e.to_string())
    } else {
        (StatusCode::BAD_REQUEST, format!("{r:?}"))
    };
    let body = crate::server::failure_body(status, &message);
    let mut resp = warp::reply::Response::new(body.to_string().into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}
