//! Who may use the admin API (`/api/*`) and the console (`/ui/*`): one
//! rule for both. With no `server.admin_token`, loopback peers only; with
//! one, a request presents it as a bearer token or carries a live console
//! session (the `callwatch_session` cookie, opened by logging in with the
//! token). Browsers send cookies by themselves, so a state-changing
//! request is refused when it comes from another site (its `Origin` or
//! `Sec-Fetch-Site` says so), and one authorised by a session must also
//! carry that session's CSRF token. The peer is the TCP address; headers
//! such as `X-Forwarded-For` are never consulted.
//!
//! This module decides; the login form and the cookie it sets are the
//! console's (`ui::login`), the sessions themselves are in [`sessions`].

pub mod sessions;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use subtle::ConstantTimeEq;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::Filter;

pub use sessions::Sessions;

/// The console's session cookie.
pub const COOKIE: &str = "callwatch_session";
/// The header a script sends its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The access rule's state: the admin token in force and the sessions.
pub struct Access {
    /// `server.admin_token` as in force (a reload changes it); empty
    /// serves loopback clients only.
    pub token: Arc<RwLock<String>>,
    pub sessions: Sessions,
    /// The CSRF token of loopback clients, who need no session: random
    /// per process, so only a page served by this daemon knows it.
    loopback_csrf: String,
}

/// How a request was let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// No admin token is set and the peer is loopback.
    Loopback,
    /// `Authorization: Bearer <admin_token>`.
    Bearer,
    /// A live session, by its id.
    Session(String),
}

/// A request let in, with the CSRF token its forms must carry.
#[derive(Debug, Clone)]
pub struct Granted {
    pub via: Via,
    pub csrf: String,
}

impl Granted {
    /// Whether `given` is this request's CSRF token. A bearer token is
    /// not sent by a browser on its own, so it needs none.
    pub fn csrf_ok(&self, given: Option<&str>) -> bool {
        match self.via {
            Via::Bearer => true,
            Via::Loopback | Via::Session(_) => given
                .map(|g| bool::from(g.as_bytes().ct_eq(self.csrf.as_bytes())))
                .unwrap_or(false),
        }
    }
}

/// A request refused: the status and the message of its error body.
#[derive(Debug)]
pub struct Denied {
    pub status: StatusCode,
    pub message: String,
}
impl warp::reject::Reject for Denied {}

fn denied(status: StatusCode, message: impl Into<String>) -> Denied {
    Denied {
        status,
        message: message.into(),
    }
}

/// What the rule looks at in a request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Request<'a> {
    pub peer: Option<SocketAddr>,
    /// GET, HEAD and OPTIONS change nothing.
    pub safe: bool,
    pub authorization: Option<&'a str>,
    pub cookie: Option<&'a str>,
    pub host: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub sec_fetch_site: Option<&'a str>,
    pub csrf_header: Option<&'a str>,
}

impl<'a> Request<'a> {
    pub fn of(peer: Option<SocketAddr>, method: &Method, headers: &'a HeaderMap) -> Request<'a> {
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Request {
            peer,
            safe: matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS),
            authorization: h("authorization"),
            cookie: h("cookie"),
            host: h("host"),
            origin: h("origin"),
            sec_fetch_site: h("sec-fetch-site"),
            csrf_header: h(CSRF_HEADER),
        }
    }

    /// The session id in the `callwatch_session` cookie.
    pub fn session_id(&self) -> Option<&'a str> {
        cookie_value(self.cookie?, COOKIE)
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name && !v.is_empty()).then_some(v)
    })
}

/// Whether `origin` (`scheme://host[:port]`) names the server the
/// request was sent to (its `Host`).
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

/// `Set-Cookie` value opening session `id`: never readable by scripts,
/// never sent along with a request another site starts.
pub fn session_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/")
}

/// `Set-Cookie` value removing the session cookie.
pub fn cleared_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// Refuses a state-changing request another site started: its browser
/// says so in `Sec-Fetch-Site`, or its `Origin` is not this server. A
/// client that sends neither (curl, the CLI) is not refused here.
pub fn refuse_cross_site(r: &Request<'_>) -> Result<(), Denied> {
    if r.safe {
        return Ok(());
    }
    if r.sec_fetch_site
        .is_some_and(|s| s == "cross-site" || s == "same-site")
    {
        return Err(denied(
            StatusCode::FORBIDDEN,
            "cross-site request refused (Sec-Fetch-Site)",
        ));
    }
    match r.origin {
        Some(origin) if !same_origin(origin, r.host) => Err(denied(
            StatusCode::FORBIDDEN,
            format!("cross-site request refused: Origin {origin:?} is not this server"),
        )),
        _ => Ok(()),
    }
}

fn now_secs() -> i64 {
    crate::ingest::now_ms() / 1000
}

impl Access {
    pub fn new(token: Arc<RwLock<String>>) -> Access {
        let secret: [u8; 32] = rand::random();
        Access {
            token,
            sessions: Sessions::new(),
            loopback_csrf: hex::encode(secret),
        }
    }

    /// The admin token in force.
    pub fn token(&self) -> String {
        self.token.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether `given` is the admin token (constant time); never true
    /// when none is set.
    pub fn token_matches(&self, given: &str) -> bool {
        let token = self.token();
        !token.is_empty() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
    }

    /// The rule. `api`: a script or program is calling, so a session must
    /// show its CSRF token in the header here and now; the console's
    /// forms carry theirs in the body, checked by the page that reads it.
    pub fn decide(&self, r: &Request<'_>, api: bool, now: i64) -> Result<Granted, Denied> {
        refuse_cross_site(r)?;
        let token = self.token();
        if token.is_empty() {
            return match r.peer {
                Some(p) if p.ip().is_loopback() => Ok(Granted {
                    via: Via::Loopback,
                    csrf: self.loopback_csrf.clone(),
                }),
                _ => Err(denied(
                    StatusCode::FORBIDDEN,
                    "admin API and console serve loopback clients only (set server.admin_token to allow others)",
                )),
            };
        }
        if let Some(header) = r.authorization {
            let given = header.strip_prefix("Bearer ").map(str::trim).unwrap_or("");
            return if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
                Ok(Granted {
                    via: Via::Bearer,
                    csrf: String::new(),
                })
            } else {
                Err(denied(
                    StatusCode::UNAUTHORIZED,
                    "missing or wrong bearer token",
                ))
            };
        }
        let session = r
            .session_id()
            .and_then(|id| Some((id, self.sessions.get(id, &token, now)?)));
        let Some((id, session)) = session else {
            return Err(denied(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (or log in to the console)",
            ));
        };
        let granted = Granted {
            via: Via::Session(id.to_string()),
            csrf: session.csrf,
        };
        if api && !r.safe && !granted.csrf_ok(r.csrf_header) {
            return Err(denied(
                StatusCode::FORBIDDEN,
                "a request with the session cookie must carry its CSRF token in X-CSRF-Token",
            ));
        }
        Ok(granted)
    }

    /// The rule as a warp filter: extracts the grant, or rejects with
    /// [`Denied`].
    pub fn filter(
        self: &Arc<Self>,
        api: bool,
    ) -> impl Filter<Extract = (Granted,), Error = warp::Rejection> + Clone {
        let access = self.clone();
        crate::server::remote()
            .and(warp::method())
            .and(warp::header::headers_cloned())
            .and_then(
                move |peer: Option<SocketAddr>, method: Method, headers: HeaderMap| {
                    let r = access.decide(&Request::of(peer, &method, &headers), api, now_secs());
                    async move { r.map_err(warp::reject::custom) }
                },
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(token: &str) -> Access {
        Access::new(Arc::new(RwLock::new(token.to_string())))
    }

    fn local() -> Option<SocketAddr> {
        "127.0.0.1:5000".parse().ok()
    }

    fn remote() -> Option<SocketAddr> {
        "10.0.0.2:5000".parse().ok()
    }

    fn get(peer: Option<SocketAddr>) -> Request<'static> {
        Request {
            peer,
            safe: true,
            host: Some("cw.example:8080"),
            ..Request::default()
        }
    }

    fn status<T>(r: Result<T, Denied>) -> Option<StatusCode> {
        r.err().map(|d| d.status)
    }

    #[test]
    fn loopback_only_without_token() {
        let a = access("");
        assert_eq!(
            a.decide(&get(local()), true, 0).map(|g| g.via).ok(),
            Some(Via::Loopback)
        );
        assert_eq!(
            status(a.decide(&get(remote()), true, 0)),
            Some(StatusCode::FORBIDDEN)
        );
        let a = access("s3cret");
        let bearer = |h| Request {
            authorization: Some(h),
            ..get(remote())
        };
        assert!(a.decide(&bearer("Bearer s3cret"), true, 0).is_ok());
        assert_eq!(
            status(a.decide(
                &Request {
                    peer: local(),
                    ..bearer("Bearer nope")
                },
                true,
                0
            )),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(a.decide(&get(local()), true, 0)),
            Some(StatusCode::UNAUTHORIZED)
        );
    }

    #[test]
    fn a_session_cookie_lets_in_and_state_changes_need_its_csrf_token() {
        let a = access("s3cret");
        let (id, csrf) = a.sessions.open("s3cret", 100);
        let cookie = format!("theme=dark; {COOKIE}={id}");
        let with = Request {
            cookie: Some(&cookie),
            ..get(remote())
        };
        let g = a.decide(&with, true, 100).expect("session lets in");
        assert_eq!(g.via, Via::Session(id.clone()));
        assert!(g.csrf_ok(Some(&csrf)) && !g.csrf_ok(Some("x")) && !g.csrf_ok(None));

        let post = Request {
            safe: false,
            ..with
        };
        assert_eq!(
            status(a.decide(&post, true, 100)),
            Some(StatusCode::FORBIDDEN)
        );
        let post = Request {
            csrf_header: Some(&csrf),
            ..post
        };
        assert!(a.decide(&post, true, 100).is_ok());
        // The console checks its forms' field itself.
        assert!(a
            .decide(
                &Request {
                    csrf_header: None,
                    ..post
                },
                false,
                100
            )
            .is_ok());

        // Expired, or a wrong id.
        let late = 100 + sessions::IDLE_TIMEOUT_SECS;
        assert_eq!(
            status(a.decide(&with, true, late)),
            Some(StatusCode::UNAUTHORIZED)
        );
        let wrong = format!("{COOKIE}=ab{id}");
        assert_eq!(
            status(a.decide(
                &Request {
                    cookie: Some(&wrong),
                    ..get(remote())
                },
                true,
                0
            )),
            Some(StatusCode::UNAUTHORIZED)
        );
    }

    #[test]
    fn cross_site_state_changes_are_refused_whoever_asks() {
        let a = access("");
        let post = |origin, site| Request {
            safe: false,
            origin,
            sec_fetch_site: site,
            ..get(local())
        };
        assert!(a
            .decide(&post(Some("http://cw.example:8080"), None), true, 0)
            .is_ok());
        assert!(a
            .decide(
                &post(Some("https://CW.example:8080"), Some("same-origin")),
                true,
                0
            )
            .is_ok());
        assert!(
            a.decide(&post(None, None), true, 0).is_ok(),
            "curl sends no Origin"
        );
        for (origin, site) in [
            (Some("http://evil.example"), None),
            (Some("http://cw.example:9999"), None),
            (Some("null"), None),
            (None, Some("cross-site")),
            (None, Some("same-site")),
        ] {
            assert_eq!(
                status(a.decide(&post(origin, site), true, 0)),
                Some(StatusCode::FORBIDDEN),
                "{origin:?} {site:?}"
            );
        }
        // Reading is not refused: a link from elsewhere may open a page.
        let read = Request {
            origin: Some("http://evil.example"),
            sec_fetch_site: Some("cross-site"),
            ..get(local())
        };
        assert!(a.decide(&read, true, 0).is_ok());
    }

    #[test]
    fn cookie_values_are_found_by_exact_name() {
        assert_eq!(
            cookie_value("a=1; callwatch_session=xy", COOKIE),
            Some("xy")
        );
        assert_eq!(cookie_value("xcallwatch_session=xy", COOKIE), None);
        assert_eq!(cookie_value("callwatch_session=", COOKIE), None);
        assert!(session_cookie("id").contains("HttpOnly; SameSite=Strict"));
    }
}
