//! The silences endpoints of the admin API, in Alertmanager's names both
//! ways: `GET/POST /api/v1/silences`, `GET/DELETE /api/v1/silences/{id}`.
//! A silence is answered as Alertmanager's `gettableSilence` (`id`,
//! `status.state`, `updatedAt`, `matchers[{name,value,isRegex,isEqual}]`,
//! `startsAt`, `endsAt`, `createdBy`, `comment`), and what it answers can
//! be posted back unchanged. Matching and the update rules are in
//! `notify::silence`; storage in `store`.

use std::sync::Arc;

use serde::de::IgnoredAny;
use serde::Deserialize;
use warp::http::StatusCode;
use warp::Filter;

use super::{error_reply, json_reply, Admin, MAX_BODY_BYTES};
use crate::alert::{format_rfc3339, parse_rfc3339};
use crate::notify::silence::{self, Update};
use crate::store::lock;
use crate::store::{Matcher, Silence};

/// A silence as posted (Alertmanager's `postableSilence`). `id` names a
/// silence to update; `startsAt` defaults to now. The snake_case names an
/// earlier version of this API accepted still work. `status` and
/// `updatedAt` are read-only and ignored, so a fetched silence can be
/// posted back as it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Postable {
    #[serde(default)]
    id: Option<String>,
    matchers: Vec<Matcher>,
    #[serde(default, rename = "startsAt", alias = "starts_at")]
    starts_at: Option<String>,
    #[serde(rename = "endsAt", alias = "ends_at")]
    ends_at: String,
    #[serde(default)]
    comment: String,
    #[serde(default, rename = "createdBy", alias = "created_by")]
    created_by: String,
    #[serde(default, rename = "status")]
    _status: Option<IgnoredAny>,
    #[serde(default, rename = "updatedAt", alias = "updated_at")]
    _updated_at: Option<IgnoredAny>,
}

/// A silence as answered (Alertmanager's `gettableSilence`) at `now`.
pub(super) fn silence_json(s: &Silence, now: i64) -> serde_json::Value {
    let updated_at = if s.updated_at > 0 {
        s.updated_at
    } else {
        s.starts_at
    };
    serde_json::json!({
        "id": s.id,
        "status": { "state": silence::state(s, now) },
        "updatedAt": format_rfc3339(updated_at),
        "matchers": s.matchers,
        "startsAt": format_rfc3339(s.starts_at),
        "endsAt": format_rfc3339(s.ends_at),
        "createdBy": s.created_by,
        "comment": s.comment,
    })
}

fn new_silence_id() -> String {
    let bytes: [u8; 16] = rand::random();
    hex::encode(bytes)
}

use crate::time::now_secs;

fn not_found(id: &str) -> warp::reply::Response {
    error_reply(StatusCode::NOT_FOUND, &format!("no silence {id:?}"))
}

fn internal(e: impl std::fmt::Display) -> warp::reply::Response {
    error_reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
}

/// Reads a posted silence into a [`Silence`] without an id, checked as a
/// new one at `now`; the error is the 400 message.
fn parse_post(body: &[u8], now: i64) -> Result<(Option<String>, Silence), String> {
    let post: Postable = serde_json::from_slice(body).map_err(|e| format!("silence: {e}"))?;
    let starts_at = match post.starts_at.as_deref() {
        None => now,
        Some(t) => parse_rfc3339(t)
            .ok_or_else(|| format!("startsAt: expected an RFC 3339 time, got {t:?}"))?,
    };
    let ends_at = parse_rfc3339(&post.ends_at)
        .ok_or_else(|| format!("endsAt: expected an RFC 3339 time, got {:?}", post.ends_at))?;
    let s = Silence {
        id: String::new(),
        matchers: post.matchers,
        starts_at,
        ends_at,
        comment: post.comment,
        created_by: post.created_by,
        updated_at: now,
    };
    silence::validate_new(&s, now).map_err(|e| e.to_string())?;
    Ok((post.id.filter(|i| !i.is_empty()), s))
}

/// `s` expired at `now` (kept, as Alertmanager keeps it, so the list
/// shows what was silenced and when it ended); a pending silence ends
/// before it began.
fn expired(mut s: Silence, now: i64) -> Silence {
    s.ends_at = s.ends_at.min(now);
    s.starts_at = s.starts_at.min(s.ends_at);
    s.updated_at = now;
    s
}

impl Admin {
    fn list_silences(&self) -> warp::reply::Response {
        let now = now_secs();
        match lock(&self.store).silences() {
            Ok(list) => {
                let list: Vec<_> = list.iter().map(|s| silence_json(s, now)).collect();
                json_reply(StatusCode::OK, &serde_json::Value::from(list))
            }
            Err(e) => internal(e),
        }
    }

    fn get_silence(&self, id: &str) -> warp::reply::Response {
        match lock(&self.store).get_silence(id) {
            Ok(Some(s)) => json_reply(StatusCode::OK, &silence_json(&s, now_secs())),
            Ok(None) => not_found(id),
            Err(e) => internal(e),
        }
    }

    /// Creates a silence, or updates the one `id` names as Alertmanager
    /// does: in place when only its times and texts change in a way its
    /// state allows, else the old one expires and a new id is issued.
    /// Answers `{"silenceID": id}`.
    fn post_silence(&self, body: &[u8]) -> warp::reply::Response {
        let now = now_secs();
        let (id, mut posted) = match parse_post(body, now) {
            Ok(p) => p,
            Err(msg) => return error_reply(StatusCode::BAD_REQUEST, &msg),
        };
        let store = lock(&self.store);
        let stored = match id.as_deref().map(|id| store.get_silence(id)) {
            None => None,
            Some(Ok(Some(s))) => Some(s),
            Some(Ok(None)) => return not_found(id.as_deref().unwrap_or_default()),
            Some(Err(e)) => return internal(e),
        };
        let saved = match stored {
            Some(old) if silence::plan_update(&old, &posted, now) == Update::InPlace => {
                posted.id = old.id;
                store.put_silence(&posted)
            }
            stored => {
                posted.id = new_silence_id();
                // A new silence never starts in the past.
                posted.starts_at = posted.starts_at.max(now);
                match stored {
                    Some(old) if silence::state(&old, now) != "expired" => {
                        tracing::info!(old = %old.id, new = %posted.id, "silence replaced");
                        store.replace_silence(&expired(old, now), &posted)
                    }
                    _ => store.put_silence(&posted),
                }
            }
        };
        match saved {
            Ok(()) => {
                tracing::info!(id = %posted.id, comment = %posted.comment, by = %posted.created_by, "silence saved");
                json_reply(
                    StatusCode::OK,
                    &serde_json::json!({ "silenceID": posted.id }),
                )
            }
            Err(e) => internal(e),
        }
    }

    /// Expires a silence now and answers it; an expired one is answered
    /// unchanged.
    fn expire_silence(&self, id: &str) -> warp::reply::Response {
        let now = now_secs();
        let store = lock(&self.store);
        match store.get_silence(id) {
            Ok(Some(s)) if silence::state(&s, now) == "expired" => {
                json_reply(StatusCode::OK, &silence_json(&s, now))
            }
            Ok(Some(s)) => {
                let s = expired(s, now);
                match store.put_silence(&s) {
                    Ok(()) => {
                        tracing::info!(id = %s.id, "silence expired");
                        json_reply(StatusCode::OK, &silence_json(&s, now))
                    }
                    Err(e) => internal(e),
                }
            }
            Ok(None) => not_found(id),
            Err(e) => internal(e),
        }
    }
}

/// The silences routes, relative to `/api/v1`.
pub(super) fn routes(
    admin: Arc<Admin>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let a = admin.clone();
    let list = warp::path!("silences")
        .and(warp::get())
        .map(move || a.list_silences());
    let a = admin.clone();
    let create = warp::path!("silences")
        .and(warp::post())
        .and(warp::body::content_length_limit(MAX_BODY_BYTES))
        .and(warp::body::bytes())
        .map(move |body: bytes::Bytes| a.post_silence(&body));
    let a = admin.clone();
    let one = warp::path!("silences" / String)
        .and(warp::get())
        .map(move |id: String| a.get_silence(&id));
    let a = admin;
    let expire = warp::path!("silences" / String)
        .and(warp::delete())
        .map(move |id: String| a.expire_silence(&id));
    list.or(create).unify().or(one).unify().or(expire).unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetched_silence_parses_back_unchanged() {
        let s = Silence {
            id: "abc".into(),
            matchers: vec![
                Matcher {
                    name: "platform".into(),
                    value: "Android|iOS".into(),
                    is_regex: true,
                    is_equal: false,
                },
                Matcher {
                    name: "rule".into(),
                    value: "r".into(),
                    is_regex: false,
                    is_equal: true,
                },
            ],
            starts_at: 1_000,
            ends_at: 2_000,
            comment: "rollout".into(),
            created_by: "ops".into(),
            updated_at: 1_500,
        };
        let answered = silence_json(&s, 1_500);
        assert_eq!(answered["status"]["state"], "active");
        assert_eq!(answered["updatedAt"], "1970-01-01T00:25:00Z");
        assert_eq!(answered["matchers"][0]["isEqual"], false);
        let body = serde_json::to_vec(&answered).expect("json");
        let (id, back) = parse_post(&body, 1_500).expect("posts back");
        assert_eq!(id.as_deref(), Some("abc"));
        assert_eq!(
            back,
            Silence {
                id: String::new(),
                ..s
            }
        );
    }

    #[test]
    fn snake_case_names_are_still_accepted_and_mistakes_named() {
        let body = br#"{"matchers":[{"name":"rule","value":"x","is_regex":false}],
            "starts_at":"1970-01-01T00:16:40Z","ends_at":"1970-01-01T00:33:20Z","created_by":"me"}"#;
        let (_, s) = parse_post(body, 1_000).expect("old names");
        assert_eq!(
            (s.starts_at, s.ends_at, s.created_by.as_str()),
            (1_000, 2_000, "me")
        );
        let err = parse_post(br#"{"matchers":[],"endsAt":"x","oops":1}"#, 0).unwrap_err();
        assert!(err.contains("oops"), "{err}");
        let err = parse_post(
            br#"{"matchers":[{"name":"rule","value":"x"}],"endsAt":"tomorrow"}"#,
            0,
        )
        .unwrap_err();
        assert!(err.contains("endsAt") && err.contains("tomorrow"), "{err}");
    }
}
