//! Rendering a console page: the embedded templates, the filters they
//! use for times and durations, and the headers every page is answered
//! with (no caching, a content security policy that allows only this
//! daemon's own scripts and styles, no framing).

use minijinja::{Environment, Value};
use serde::Serialize;
use warp::http::{header, HeaderValue, StatusCode};

use crate::access::{Granted, Via};

/// The templates, by name; `base.html` is the frame of every page.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("alerts.html", include_str!("templates/alerts.html")),
    ("alert.html", include_str!("templates/alert.html")),
    ("evidence.html", include_str!("templates/evidence.html")),
    ("duration.html", include_str!("templates/duration.html")),
    ("rules.html", include_str!("templates/rules.html")),
    ("rule.html", include_str!("templates/rule.html")),
    ("silences.html", include_str!("templates/silences.html")),
    ("callbacks.html", include_str!("templates/callbacks.html")),
    ("playground.html", include_str!("templates/playground.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
];

/// The navigation bar: page name, link, label.
const NAV: &[(&str, &str, &str)] = &[
    ("alerts", "/ui/alerts", "Alerts"),
    ("rules", "/ui/rules", "Rules"),
    ("silences", "/ui/silences", "Silences"),
    ("callbacks", "/ui/callbacks", "Callbacks"),
    ("playground", "/ui/playground", "Playground"),
];

/// Scripts and styles come only from this daemon; nothing inline, so an
/// injected `<script>` does not run.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

pub(crate) struct Pages {
    env: Environment<'static>,
}

/// Seconds since the epoch of a time as the API writes it: RFC 3339, or
/// a number of seconds or (when that large) milliseconds.
fn epoch_secs(v: &Value) -> Option<i64> {
    if let Some(s) = v.as_str() {
        return crate::alert::parse_rfc3339(s);
    }
    let n = v.as_i64()?;
    Some(if n > 100_000_000_000 { n / 1000 } else { n })
}

fn when(v: Value) -> String {
    match epoch_secs(&v) {
        Some(t) => crate::alert::format_rfc3339(t)
            .replace('T', " ")
            .replace('Z', " UTC"),
        None => v.to_string(),
    }
}

/// A duration as people say it: `45s`, `5m`, `2h 5m`, `3d 4h`.
pub(crate) fn human_secs(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 if s % 60 == 0 => format!("{}m", s / 60),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 if s % 3600 == 0 => format!("{}h", s / 3600),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ if s % 86400 == 0 => format!("{}d", s / 86400),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

fn ago(v: Value) -> String {
    match epoch_secs(&v) {
        Some(t) => {
            let d = super::now_secs() - t;
            if d < 0 {
                format!("in {}", human_secs(-d))
            } else {
                format!("{} ago", human_secs(d))
            }
        }
        None => String::new(),
    }
}

fn secs(v: Value) -> String {
    v.as_i64().map(human_secs).unwrap_or_default()
}

impl Pages {
    pub(crate) fn new() -> Pages {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            // The templates are part of the binary and checked by a test;
            // a broken one shows as an error page, not a crash.
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "console template does not parse");
            }
        }
        env.add_filter("when", when);
        env.add_filter("ago", ago);
        env.add_filter("secs", secs);
        Pages { env }
    }

    /// Renders `template` for the page `page` with `ctx` (an object) and
    /// what the frame needs.
    pub(crate) fn render(
        &self,
        status: StatusCode,
        template: &str,
        page: &str,
        g: Option<&Granted>,
        ctx: impl Serialize,
    ) -> warp::reply::Response {
        let mut ctx = serde_json::to_value(ctx).unwrap_or_default();
        let nav: Vec<_> = NAV
            .iter()
            .map(|(name, href, label)| serde_json::json!({"name": name, "href": href, "label": label}))
            .collect();
        if let Some(o) = ctx.as_object_mut() {
            o.insert("page".into(), page.into());
            o.insert("nav".into(), nav.into());
            o.insert(
                "csrf".into(),
                g.map(|g| g.csrf.clone()).unwrap_or_default().into(),
            );
            o.insert(
                "logged_in".into(),
                g.is_some_and(|g| matches!(g.via, Via::Session(_))).into(),
            );
        }
        let text = self
            .env
            .get_template(template)
            .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&ctx))));
        match text {
            Ok(body) => html(status, body),
            Err(e) => {
                tracing::error!(template, error = %e, "console page failed to render");
                html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "<!doctype html><title>error</title><p>page {} failed to render: {}</p>",
                        escape(template),
                        escape(&e.to_string())
                    ),
                )
            }
        }
    }

    /// The error page.
    pub(crate) fn error(
        &self,
        status: StatusCode,
        message: &str,
        g: Option<&Granted>,
    ) -> warp::reply::Response {
        self.render(
            status,
            "error.html",
            "",
            g,
            serde_json::json!({
                "status": format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("")),
                "message": message,
            }),
        )
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An HTML answer with the console's headers.
pub(crate) fn html(status: StatusCode, body: String) -> warp::reply::Response {
    let mut resp = warp::reply::Response::new(body.into());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(h);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Headers every console answer carries.
pub(crate) fn secure(h: &mut warp::http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// `303 See Other` to `to` (after a form post, or to a canonical page).
pub(crate) fn redirect(to: &str) -> warp::reply::Response {
    let mut resp = warp::reply::Response::new(String::new().into());
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    secure(resp.headers_mut());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_secs(45), "45s");
        assert_eq!(human_secs(300), "5m");
        assert_eq!(human_secs(7500), "2h 5m");
        assert_eq!(human_secs(86400 * 3 + 4 * 3600), "3d 4h");
        assert_eq!(
            when(Value::from("2026-01-02T03:04:05Z")),
            "2026-01-02 03:04:05 UTC"
        );
        assert_eq!(
            when(Value::from(1_767_323_045_000_i64)),
            "2026-01-02 03:04:05 UTC"
        );
    }
}
