//! `/ui/login` and `/ui/logout`: the admin token, posted in a form body
//! (never in a URL), opens a session whose id goes back in an `HttpOnly;
//! SameSite=Strict` cookie; logging out ends it. A wrong token is
//! answered after a second, so guessing is slow.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use warp::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::Filter;

use super::page::redirect;
use super::{form, gate, now_secs, Console, Gate};
use crate::access::{self, Request, Via};

/// How long a wrong token waits for its answer.
const WRONG_TOKEN_DELAY: Duration = Duration::from_secs(1);

/// Where a login may go next: a console page, never another site.
fn next_page(next: Option<&String>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.starts_with("/ui/login") =>
        {
            n.clone()
        }
        _ => "/ui/alerts".to_string(),
    }
}

fn with_cookie(mut resp: warp::reply::Response, cookie: &str) -> warp::reply::Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

impl Console {
    fn login_form(
        &self,
        status: StatusCode,
        next: &str,
        error: Option<&str>,
    ) -> warp::reply::Response {
        self.pages.render(
            status,
            "login.html",
            "login",
            None,
            serde_json::json!({
                "next": next,
                "error": error,
                "token_set": !self.admin.access.token().is_empty(),
            }),
        )
    }

    fn show_login(&self, gate: Gate, query: &HashMap<String, String>) -> warp::reply::Response {
        let next = next_page(query.get("next"));
        match gate.granted {
            // Already in: go on.
            Ok(_) => redirect(&next),
            Err(d) if d.status == StatusCode::UNAUTHORIZED => {
                self.login_form(StatusCode::OK, &next, None)
            }
            Err(d) => self.pages.error(d.status, &d.message, None),
        }
    }

    async fn log_in(
        self: Arc<Self>,
        refused: Option<access::Denied>,
        form: HashMap<String, String>,
    ) -> warp::reply::Response {
        let next = next_page(form.get("next"));
        if let Some(d) = refused {
            return self.pages.error(d.status, &d.message, None);
        }
        let access = &self.admin.access;
        if access.token().is_empty() {
            return self.login_form(
                StatusCode::FORBIDDEN,
                &next,
                Some("no admin token is set: the console serves loopback clients only"),
            );
        }
        let given = form.get("token").map(|t| t.trim()).unwrap_or("");
        if !access.token_matches(given) {
            tracing::warn!("console login with a wrong token");
            tokio::time::sleep(WRONG_TOKEN_DELAY).await;
            return self.login_form(StatusCode::UNAUTHORIZED, &next, Some("wrong token"));
        }
        let (id, _) = access.sessions.open(&access.token(), now_secs());
        tracing::info!(sessions = access.sessions.len(), "console session opened");
        with_cookie(redirect(&next), &access::session_cookie(&id))
    }

    fn log_out(&self, gate: Gate, form: &HashMap<String, String>) -> warp::reply::Response {
        let g = match self.admit_form(gate, form) {
            Ok(g) => g,
            Err(refused) => return *refused,
        };
        if let Via::Session(id) = &g.via {
            self.admin.access.sessions.close(id);
        }
        with_cookie(redirect("/ui/login"), &access::cleared_cookie())
    }
}

/// The login routes, relative to `/ui`.
pub(super) fn routes(
    console: Arc<Console>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let c = console.clone();
    let show = warp::path!("login")
        .and(warp::get())
        .and(gate(&console))
        .and(
            warp::query::<HashMap<String, String>>()
                .or(warp::any().map(HashMap::new))
                .unify(),
        )
        .map(move |gate: Gate, query: HashMap<String, String>| c.show_login(gate, &query));
    let c = console.clone();
    // A login is refused only when another site posts it; no session or
    // CSRF token exists yet.
    let post = warp::path!("login")
        .and(warp::post())
        .and(crate::server::remote())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .map(
            |peer: Option<SocketAddr>, method: Method, headers: HeaderMap| {
                access::refuse_cross_site(&Request::of(peer, &method, &headers)).err()
            },
        )
        .and(form())
        .then(move |refused, form| c.clone().log_in(refused, form));
    let c = console.clone();
    let out = warp::path!("logout")
        .and(warp::post())
        .and(gate(&console))
        .and(form())
        .map(move |gate: Gate, form: HashMap<String, String>| c.log_out(gate, &form));
    show.or(post).unify().or(out).unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_goes_on_to_console_pages_only() {
        let n = |s: &str| next_page(Some(&s.to_string()));
        assert_eq!(n("/ui/alerts/abc"), "/ui/alerts/abc");
        assert_eq!(n("/ui/callbacks?user=u1"), "/ui/callbacks?user=u1");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/ui//evil",
            "/ui/\\evil",
            "/api/v1/alerts",
            "/ui/login",
        ] {
            assert_eq!(n(bad), "/ui/alerts", "{bad}");
        }
        assert_eq!(next_page(None), "/ui/alerts");
    }
}
