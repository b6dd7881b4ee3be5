//! The web console under `/ui/`: server-rendered pages (minijinja
//! templates embedded in the binary) over what the admin API serves,
//! with a stylesheet and small scripts (also embedded) for the live
//! parts. Who may see it is decided by `access`, the rule the admin API
//! uses too; this module only turns a refusal into the login form.
//! Pages: `alerts`, `rules`, `silences`, `callbacks`, `playground`;
//! `login` opens and ends sessions; `page` renders and answers.

mod alerts;
mod assets;
mod callbacks;
mod history;
mod login;
mod page;
mod playground;
mod rules;
mod silences;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use warp::http::{HeaderMap, Method, StatusCode};
use warp::Filter;

use crate::access::{Denied, Granted, Request};
use crate::api::Admin;
use page::{redirect, Pages};

/// Largest form the console reads.
const MAX_FORM_BYTES: u64 = 64 * 1024;

/// What every page handler gets.
pub(crate) struct Console {
    admin: Arc<Admin>,
    pages: Pages,
}

/// A request that reached a page: whether it may, and where it was going
/// (so a login can come back to it).
struct Gate {
    granted: Result<Granted, Denied>,
    /// Path and query, for the login's `next`.
    target: String,
    safe: bool,
}

fn now_secs() -> i64 {
    crate::ingest::now_ms() / 1000
}

/// Decides access for a console page without rejecting: a page refused
/// is answered with the login form or an error page, not a JSON error.
fn gate(
    console: &Arc<Console>,
) -> impl Filter<Extract = (Gate,), Error = std::convert::Infallible> + Clone {
    let console = console.clone();
    crate::server::remote()
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .map(
            move |peer: Option<SocketAddr>,
                  method: Method,
                  headers: HeaderMap,
                  path: warp::path::FullPath,
                  query: String| {
                let r = Request::of(peer, &method, &headers);
                let granted = console.admin.access.decide(&r, false, now_secs());
                let target = if query.is_empty() {
                    path.as_str().to_string()
                } else {
                    format!("{}?{query}", path.as_str())
                };
                Gate {
                    granted,
                    target,
                    safe: r.safe,
                }
            },
        )
}

impl Console {
    /// Runs `page` when the gate let the request in; else the login form
    /// (a page read without a session) or an error page.
    fn guarded(
        &self,
        gate: Gate,
        page: impl FnOnce(&Granted) -> warp::reply::Response,
    ) -> warp::reply::Response {
        match self.admit(gate) {
            Ok(g) => page(&g),
            Err(refused) => *refused,
        }
    }

    /// Who the gate let in, or the page that answers a refusal.
    fn admit(&self, gate: Gate) -> Result<Granted, Box<warp::reply::Response>> {
        match gate.granted {
            Ok(g) => Ok(g),
            Err(d) if d.status == StatusCode::UNAUTHORIZED && gate.safe => {
                let next: String =
                    form_urlencoded::byte_serialize(gate.target.as_bytes()).collect();
                Err(Box::new(redirect(&format!("/ui/login?next={next}"))))
            }
            Err(d) => Err(Box::new(self.pages.error(d.status, &d.message, None))),
        }
    }

    /// Like [`Console::admit`] for a form post: also checks the form's
    /// CSRF token.
    fn admit_form(
        &self,
        gate: Gate,
        form: &HashMap<String, String>,
    ) -> Result<Granted, Box<warp::reply::Response>> {
        let g = self.admit(gate)?;
        if g.csrf_ok(form.get("csrf").map(String::as_str)) {
            Ok(g)
        } else {
            Err(Box::new(self.pages.error(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or stale: reload the page and try again",
                Some(&g),
            )))
        }
    }
}

/// Reads a posted form (fields named once; a repeated one keeps the last).
fn form() -> impl Filter<Extract = (HashMap<String, String>,), Error = warp::Rejection> + Clone {
    warp::body::content_length_limit(MAX_FORM_BYTES).and(warp::body::form())
}

/// `/` and everything under `/ui/`.
pub fn routes(
    admin: Arc<Admin>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let console = Arc::new(Console {
        admin,
        pages: Pages::new(),
    });
    let root = warp::path::end().and(warp::get()).map(|| redirect("/ui/"));
    let ui_root = warp::path("ui")
        .and(warp::path::end())
        .and(warp::get())
        .map(|| redirect("/ui/alerts"));

    let c = console.clone();
    let pages = gate(&c)
        .and(warp::get())
        .and(warp::path::tail())
        .and(
            warp::query::<HashMap<String, String>>()
                .or(warp::any().map(HashMap::new))
                .unify(),
        )
        .map(
            move |gate: Gate, tail: warp::path::Tail, query: HashMap<String, String>| {
                let c = c.clone();
                let tail = tail.as_str().trim_end_matches('/').to_string();
                c.clone().guarded(gate, move |g| c.get(g, &tail, &query))
            },
        );
    let c = console.clone();
    let posts = gate(&c)
        .and(warp::post())
        .and(warp::path::tail())
        .and(form())
        .then(
            move |gate: Gate, tail: warp::path::Tail, form: HashMap<String, String>| {
                let c = c.clone();
                let tail = tail.as_str().to_string();
                // Saving a silence may wait for the cluster's bucket.
                async move { c.post(gate, &tail, &form).await }
            },
        );
    let under_ui = warp::path("ui").and(
        assets::routes()
            .or(login::routes(console.clone()))
            .unify()
            .or(pages)
            .unify()
            .or(posts)
            .unify(),
    );
    root.or(ui_root).unify().or(under_ui).unify()
}

impl Console {
    /// A page, by its path under `/ui/`.
    fn get(
        &self,
        g: &Granted,
        tail: &str,
        query: &HashMap<String, String>,
    ) -> warp::reply::Response {
        let parts: Vec<&str> = tail.split('/').collect();
        match parts.as_slice() {
            [""] => redirect("/ui/alerts"),
            ["alerts"] => alerts::list(self, g, query),
            ["alerts", fp] => alerts::one(self, g, fp),
            ["rules"] => rules::list(self, g),
            ["rules", name] => rules::one(self, g, name),
            ["silences"] => silences::list(self, g, query, None),
            ["callbacks"] => callbacks::page(self, g, query),
            ["playground"] => playground::page(self, g, query),
            _ => self.pages.error(
                StatusCode::NOT_FOUND,
                &format!("no console page /ui/{tail}"),
                Some(g),
            ),
        }
    }

    /// A form post, by its path under `/ui/`, once its CSRF token checks.
    async fn post(
        &self,
        gate: Gate,
        tail: &str,
        form: &HashMap<String, String>,
    ) -> warp::reply::Response {
        let g = match self.admit_form(gate, form) {
            Ok(g) => g,
            Err(refused) => return *refused,
        };
        let g = &g;
        let parts: Vec<&str> = tail.split('/').collect();
        match parts.as_slice() {
            ["silences"] => silences::create(self, g, form).await,
            ["silences", id, "expire"] => silences::expire(self, g, id).await,
            _ => self.pages.error(
                StatusCode::NOT_FOUND,
                &format!("nothing to post to at /ui/{tail}"),
                Some(g),
            ),
        }
    }
}
