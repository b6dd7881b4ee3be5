//! Operational HTTP endpoints: `/healthz`, `/readyz`, `/metrics`.
//! The admin API under `/api/v1` (alerts, rules, silences) with its
//! authorisation: a bearer token, or loopback peers only when none is set.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use subtle::ConstantTimeEq;
use warp::http::StatusCode;
use warp::Filter;

use crate::engine::Snapshot;
use crate::metrics::Metrics;
use crate::notify::silence;
use crate::store::{Matcher, Silence, Store};

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

/// What the admin API reads and changes.
pub struct Admin {
    /// `server.admin_token`; empty serves loopback clients only.
    pub token: String,
    pub store: Arc<Mutex<Store>>,
    pub snapshot: Arc<RwLock<Snapshot>>,
    pub reloader: Arc<crate::app::Reloader>,
    /// Says which alerts are inhibited or muted, and by what.
    pub dispatcher: Arc<crate::notify::dispatch::Dispatcher>,
}

#[derive(Debug)]
struct Refused(StatusCode, String);
impl warp::reject::Reject for Refused {}

fn json_reply(status: StatusCode, v: &serde_json::Value) -> warp::reply::Response {
    warp::reply::Reply::into_response(warp::reply::with_status(warp::reply::json(v), status))
}

fn error_reply(status: StatusCode, message: &str) -> warp::reply::Response {
    json_reply(
        status,
        &serde_json::json!({"status": "error", "error": message}),
    )
}

/// Authorisation for `/api/*`: the bearer token when one is set, else only
/// loopback peers. The peer is the TCP address; `X-Forwarded-For` and
/// similar headers are never consulted, so they cannot forge loopback.
fn authorize(
    token: &str,
    peer: Option<SocketAddr>,
    header: Option<&str>,
) -> Result<(), (StatusCode, String)> {
    if token.is_empty() {
        return match peer {
            Some(p) if p.ip().is_loopback() => Ok(()),
            _ => Err((
                StatusCode::FORBIDDEN,
                "admin API serves loopback clients only (set server.admin_token to allow others)"
                    .into(),
            )),
        };
    }
    let given = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if given.as_bytes().ct_eq(token.as_bytes()).into() {
        Ok(())
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token".into(),
        ))
    }
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

/// A silence as posted: Alertmanager's field names, `startsAt` optional.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PostSilence {
    #[serde(default)]
    id: Option<String>,
    matchers: Vec<Matcher>,
    #[serde(default, rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(rename = "endsAt")]
    ends_at: String,
    #[serde(default)]
    comment: String,
    #[serde(default, rename = "createdBy")]
    created_by: String,
}

fn silence_json(s: &Silence, now: i64) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "status".into(),
            serde_json::json!({"state": silence::state(s, now)}),
        );
    }
    v
}

fn new_silence_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

impl Admin {
    fn list_silences(&self) -> warp::reply::Response {
        let now = crate::ingest::now_ms() / 1000;
        match lock(&self.store).silences() {
            Ok(list) => json_reply(
                StatusCode::OK,
                &serde_json::Value::from(
                    list.iter()
                        .map(|s| silence_json(s, now))
                        .collect::<Vec<_>>(),
                ),
            ),
            Err(e) => error_reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    fn create_silence(&self, body: &[u8]) -> warp::reply::Response {
        let now = crate::ingest::now_ms() / 1000;
        let post: PostSilence = match serde_json::from_slice(body) {
            Ok(p) => p,
            Err(e) => return error_reply(StatusCode::BAD_REQUEST, &format!("silence: {e}")),
        };
        let starts_at = match post.starts_at.as_deref().map(crate::alert::parse_rfc3339) {
            None => now,
            Some(Some(t)) => t,
            Some(None) => {
                return error_reply(
                    StatusCode::BAD_REQUEST,
                    "startsAt: expected an RFC 3339 time",
                )
            }
        };
        let Some(ends_at) = crate::alert::parse_rfc3339(&post.ends_at) else {
            return error_reply(StatusCode::BAD_REQUEST, "endsAt: expected an RFC 3339 time");
        };
        let s = Silence {
            id: post
                .id
                .filter(|i| !i.is_empty())
                .unwrap_or_else(new_silence_id),
            matchers: post.matchers,
            starts_at,
            ends_at,
            comment: post.comment,
            created_by: post.created_by,
        };
        if let Err(e) = silence::validate(&s) {
            return error_reply(StatusCode::BAD_REQUEST, &e.to_string());
        }
        match lock(&self.store).put_silence(&s) {
            Ok(()) => {
                tracing::info!(id = %s.id, comment = %s.comment, "silence created");
                json_reply(StatusCode::OK, &serde_json::json!({"silenceID": s.id}))
            }
            Err(e) => error_reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    fn expire_silence(&self, id: &str) -> warp::reply::Response {
        let now = crate::ingest::now_ms() / 1000;
        let store = lock(&self.store);
        match store.get_silence(id) {
            Ok(Some(mut s)) => {
                // Expiring keeps the record (as Alertmanager does) so the
                // list shows what was silenced and when it ended.
                s.ends_at = s.ends_at.min(now);
                s.starts_at = s.starts_at.min(s.ends_at);
                match store.put_silence(&s) {
                    Ok(()) => json_reply(StatusCode::OK, &silence_json(&s, now)),
                    Err(e) => error_reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                }
            }
            Ok(None) => error_reply(StatusCode::NOT_FOUND, &format!("no silence {id:?}")),
            Err(e) => error_reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    /// The active alerts, each with `inhibited_by` (fingerprints of the
    /// firing alerts inhibiting it) and `muted_by` (time intervals muting
    /// it for at least one receiver).
    fn alerts_json(&self) -> serde_json::Value {
        let snapshot = self.snapshot();
        let notify_of = |rule: &str| -> Option<Vec<String>> {
            let info = snapshot.rules.iter().find(|r| r.name == rule)?;
            let notify: Vec<String> =
                serde_json::from_value(info.config.get("notify")?.clone()).ok()?;
            (!notify.is_empty()).then_some(notify)
        };
        let alerts: Vec<_> = snapshot
            .alerts
            .iter()
            .map(|a| (a.clone(), notify_of(&a.rule)))
            .collect();
        let now = crate::ingest::now_ms() / 1000;
        let status = self.dispatcher.quiet_status(&alerts, now);
        let list: Vec<serde_json::Value> = alerts
            .iter()
            .zip(status)
            .map(|((a, _), (inhibited_by, muted_by))| {
                let mut v = serde_json::to_value(a).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("inhibited_by".into(), inhibited_by.into());
                    o.insert("muted_by".into(), muted_by.into());
                }
                v
            })
            .collect();
        serde_json::json!({ "alerts": list })
    }

    fn snapshot(&self) -> Snapshot {
        self.snapshot
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }
}

/// `/api/v1/*`: alerts, rules and silences.
pub fn admin_routes(
    admin: Arc<Admin>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let token = admin.token.clone();
    let auth = warp::addr::remote()
        .and(warp::header::optional::<String>("authorization"))
        .and_then(move |peer: Option<SocketAddr>, header: Option<String>| {
            let r = authorize(&token, peer, header.as_deref());
            async move { r.map_err(|(status, msg)| warp::reject::custom(Refused(status, msg))) }
        })
        .untuple_one();
    let base = warp::path("api").and(warp::path("v1")).and(auth);
    let a = admin.clone();
    let alerts = base
        .clone()
        .and(warp::path!("alerts"))
        .and(warp::get())
        .map(move || json_reply(StatusCode::OK, &a.alerts_json()));
    let a = admin.clone();
    let rules = base
        .clone()
        .and(warp::path!("rules"))
        .and(warp::get())
        .map(move || {
            json_reply(
                StatusCode::OK,
                &serde_json::json!({"rules": a.snapshot().rules}),
            )
        });
    let a = admin.clone();
    let list = base
        .clone()
        .and(warp::path!("silences"))
        .and(warp::get())
        .map(move || a.list_silences());
    let a = admin.clone();
    let create = base
        .clone()
        .and(warp::path!("silences"))
        .and(warp::post())
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::bytes())
        .map(move |body: bytes::Bytes| a.create_silence(&body));
    let a = admin.clone();
    let reload = base
        .clone()
        .and(warp::path!("reload"))
        .and(warp::post())
        .then(move || {
            let a = a.clone();
            async move {
                match a.reloader.reload().await {
                    Ok(report) => json_reply(
                        StatusCode::OK,
                        &serde_json::json!({"status": "ok", "report": report}),
                    ),
                    Err(errors) => json_reply(
                        StatusCode::BAD_REQUEST,
                        &serde_json::json!({"status": "error", "errors": errors}),
                    ),
                }
            }
        });
    let a = admin;
    let expire = base
        .and(warp::path!("silences" / String))
        .and(warp::delete())
        .map(move |id: String| a.expire_silence(&id));
    alerts
        .or(rules)
        .unify()
        .or(list)
        .unify()
        .or(create)
        .unify()
        .or(expire)
        .unify()
        .or(reload)
        .unify()
}

/// Renders admin-API refusals; other rejections pass on.
pub async fn recover_admin(r: warp::Rejection) -> Result<warp::reply::Response, warp::Rejection> {
    match r.find::<Refused>() {
        Some(Refused(status, msg)) => Ok(error_reply(*status, msg)),
        None => Err(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_without_token() {
        let local: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        let remote: SocketAddr = "10.0.0.2:5000".parse().expect("addr");
        assert!(authorize("", Some(local), None).is_ok());
        assert_eq!(
            authorize("", Some(remote), None).map_err(|e| e.0),
            Err(StatusCode::FORBIDDEN)
        );
        assert!(authorize("s3cret", Some(remote), Some("Bearer s3cret")).is_ok());
        assert_eq!(
            authorize("s3cret", Some(local), Some("Bearer nope")).map_err(|e| e.0),
            Err(StatusCode::UNAUTHORIZED)
        );
    }
}
