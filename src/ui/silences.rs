//! `/ui/silences`: the silences by state (active, pending, expired), a
//! form to create one (matchers one per line as `callwatch silence add`
//! takes them, a duration, a comment), and an expire button on each.
//! Creating and expiring go through the same functions as the admin
//! API's endpoints, so both check and store a silence the same way.

use std::collections::HashMap;

use warp::http::StatusCode;

use super::page::redirect;
use super::Console;
use crate::access::{Granted, Via};

/// Longest silence the form makes (Alertmanager's UI offers no more
/// either; a longer one is usually a rule to fix).
const MAX_DURATION_SECS: u64 = 30 * 86400;

pub(super) fn list(
    console: &Console,
    g: &Granted,
    query: &HashMap<String, String>,
    error: Option<(String, String)>,
) -> warp::reply::Response {
    let (silences, read_error) = match console.admin.silences_json() {
        Ok(s) => (s, None),
        Err(e) => (
            Vec::new(),
            Some(format!("the store could not be read: {e}")),
        ),
    };
    let groups: Vec<_> = ["active", "pending", "expired"]
        .iter()
        .map(|state| {
            let mut list: Vec<serde_json::Value> = silences
                .iter()
                .filter(|s| s["status"]["state"] == *state)
                .map(|s| {
                    let matchers: Vec<String> = s["matchers"]
                        .as_array()
                        .map(|ms| ms.iter().map(matcher_text).collect())
                        .unwrap_or_default();
                    serde_json::json!({
                        "id": s["id"], "state": state, "matchers": matchers,
                        "starts_at": s["startsAt"], "ends_at": s["endsAt"],
                        "comment": s["comment"], "created_by": s["createdBy"],
                    })
                })
                .collect();
            // Newest ending first; expired ones are many and old.
            list.sort_by(|a, b| b["ends_at"].as_str().cmp(&a["ends_at"].as_str()));
            list.truncate(if *state == "expired" { 50 } else { usize::MAX });
            serde_json::json!({ "state": state, "silences": list })
        })
        .collect();
    let (status, error, matchers) = match error {
        Some((msg, matchers)) => (StatusCode::BAD_REQUEST, Some(msg), matchers),
        None => (
            StatusCode::OK,
            read_error,
            query.get("matchers").cloned().unwrap_or_default(),
        ),
    };
    let flash = match query.get("done").map(String::as_str) {
        Some("created") => Some("Silence created."),
        Some("expired") => Some("Silence expired."),
        _ => None,
    };
    console.pages.render(
        status,
        "silences.html",
        "silences",
        Some(g),
        serde_json::json!({
            "groups": groups, "error": error, "matchers": matchers,
            "flash": flash, "flash_kind": "ok",
        }),
    )
}

/// A matcher as typed: `name=value`, `name!=value`, `name=~re`, `name!~re`.
fn matcher_text(m: &serde_json::Value) -> String {
    let op = match (m["isRegex"].as_bool(), m["isEqual"].as_bool()) {
        (Some(true), Some(false)) => "!~",
        (Some(true), _) => "=~",
        (_, Some(false)) => "!=",
        _ => "=",
    };
    format!(
        "{}{op}{}",
        m["name"].as_str().unwrap_or_default(),
        m["value"].as_str().unwrap_or_default()
    )
}

/// The silence the form describes, as the admin API takes it.
fn postable(
    form: &HashMap<String, String>,
    by: &str,
    now: i64,
) -> Result<serde_json::Value, String> {
    let text = form.get("matchers").map(String::as_str).unwrap_or_default();
    let matchers = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(crate::client::parse_matcher)
        .collect::<Result<Vec<_>, _>>()?;
    if matchers.is_empty() {
        return Err("a silence needs at least one matcher".into());
    }
    let duration = form.get("duration").map(String::as_str).unwrap_or("2h");
    let d = humantime::parse_duration(duration.trim())
        .map_err(|e| format!("duration {duration:?}: {e}"))?;
    if d.as_secs() == 0 || d.as_secs() > MAX_DURATION_SECS {
        return Err(format!("duration {duration:?}: between 1s and 30d"));
    }
    let comment = form.get("comment").map(|c| c.trim()).unwrap_or_default();
    if comment.is_empty() {
        return Err("say why in the comment (who reads the silence later needs it)".into());
    }
    Ok(serde_json::json!({
        "matchers": matchers,
        "endsAt": crate::alert::format_rfc3339(now + d.as_secs() as i64),
        "comment": comment,
        "createdBy": by,
    }))
}

/// Who a silence made in the console is by.
fn author(g: &Granted) -> &'static str {
    match g.via {
        Via::Session(_) => "console (token login)",
        Via::Loopback => "console (loopback)",
        Via::Bearer => "console (bearer)",
    }
}

pub(super) async fn create(
    console: &Console,
    g: &Granted,
    form: &HashMap<String, String>,
) -> warp::reply::Response {
    let matchers = form.get("matchers").cloned().unwrap_or_default();
    let saved = match postable(form, author(g), super::now_secs()) {
        Ok(body) => console
            .admin
            .save_silence(body.to_string().as_bytes())
            .await
            .map_err(|(_, msg)| msg),
        Err(msg) => Err(msg),
    };
    match saved {
        Ok(id) => {
            let back = form
                .get("back")
                .filter(|b| b.starts_with("/ui/alerts/") && !b.contains("//"));
            match back {
                Some(b) => redirect(b),
                None => redirect(&format!("/ui/silences?done=created#s-{id}")),
            }
        }
        Err(msg) => list(console, g, &HashMap::new(), Some((msg, matchers))),
    }
}

pub(super) async fn expire(console: &Console, g: &Granted, id: &str) -> warp::reply::Response {
    match console.admin.expire_silence_now(id).await {
        Ok(_) => redirect("/ui/silences?done=expired"),
        Err((status, msg)) => console.pages.error(status, &msg, Some(g)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_form_becomes_a_postable_silence_or_says_what_is_wrong() {
        let f = form(&[
            (
                "matchers",
                "rule=missed_call_streak\r\n\r\nuser_id=~u00.*\n",
            ),
            ("duration", "2h"),
            ("comment", "known outage"),
        ]);
        let p = postable(&f, "me", 0).expect("valid");
        assert_eq!(p["endsAt"], "1970-01-01T02:00:00Z");
        assert_eq!(p["matchers"][1]["isRegex"], true);
        assert_eq!(matcher_text(&p["matchers"][1]), "user_id=~u00.*");
        for (bad, says) in [
            (form(&[("matchers", ""), ("comment", "c")]), "at least one"),
            (
                form(&[("matchers", "rule"), ("comment", "c")]),
                "NAME=VALUE",
            ),
            (
                form(&[("matchers", "a=b"), ("duration", "soon"), ("comment", "c")]),
                "duration",
            ),
            (
                form(&[("matchers", "a=b"), ("duration", "90d"), ("comment", "c")]),
                "30d",
            ),
            (form(&[("matchers", "a=b"), ("comment", " ")]), "comment"),
        ] {
            let err = postable(&bad, "me", 0).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}
