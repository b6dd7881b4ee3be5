//! The admin API in Alertmanager's names: a silence fetched and posted
//! back (an update, in place or replacing, as Alertmanager decides), one
//! silence by id, `silenced_by`/`inhibited_by` on alerts, and the
//! `{"error": ...}` bodies every `/api/` failure answers with.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::harness::{add_receiver, now_secs, webhook, Dirs, Running, FIRST_CALL_RULE};
use crate::notify::http_sink::{Canned, Sink};

fn rfc3339(secs: i64) -> String {
    callwatch::alert::format_rfc3339(secs)
}

/// Posts `body` to `/api/v1/silences`; the new or kept id.
async fn post_silence(d: &Running, body: &Value) -> String {
    let (status, reply) = d
        .api(Method::POST, "/api/v1/silences", None, Some(body))
        .await;
    assert_eq!(status, 200, "{reply}");
    reply["silenceID"].as_str().expect("silenceID").to_string()
}

async fn get_silence(d: &Running, id: &str) -> Value {
    let path = format!("/api/v1/silences/{id}");
    let (status, s) = d.api(Method::GET, &path, None, None).await;
    assert_eq!(status, 200, "{s}");
    s
}

#[tokio::test]
async fn a_fetched_silence_posts_back_as_an_update() {
    let dirs = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
    let d = Running::start(dirs.config()).await;
    let id = post_silence(
        &d,
        &json!({
            "matchers": [{"name": "platform", "value": "Android", "isRegex": false, "isEqual": true},
                         {"name": "user_id", "value": "bot-.*", "isRegex": true, "isEqual": false}],
            "startsAt": rfc3339(now_secs()),
            "endsAt": rfc3339(now_secs() + 3600),
            "createdBy": "ops",
            "comment": "Android 5.2 rollout",
        }),
    )
    .await;
    let fetched = get_silence(&d, &id).await;
    // Alertmanager's gettableSilence, field for field.
    let mut keys: Vec<&str> = fetched
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "comment",
            "createdBy",
            "endsAt",
            "id",
            "matchers",
            "startsAt",
            "status",
            "updatedAt"
        ]
    );
    assert_eq!(fetched["status"]["state"], "active");
    assert_eq!(fetched["matchers"][1]["isEqual"], false);
    assert_eq!(fetched["matchers"][1]["isRegex"], true);

    // Posted back with a later end: the same silence, updated in place.
    let mut later = fetched.clone();
    later["endsAt"] = rfc3339(now_secs() + 7200).into();
    later["comment"] = "rollout, second wave".into();
    assert_eq!(post_silence(&d, &later).await, id);
    let updated = get_silence(&d, &id).await;
    assert_eq!(updated["endsAt"], later["endsAt"]);
    assert_eq!(updated["comment"], "rollout, second wave");
    assert_eq!(updated["startsAt"], fetched["startsAt"]);

    // Other matchers: the old one expires, a new one takes over.
    let mut other = updated.clone();
    other["matchers"][0]["value"] = "iOS".into();
    let new_id = post_silence(&d, &other).await;
    assert_ne!(new_id, id);
    assert_eq!(get_silence(&d, &id).await["status"]["state"], "expired");
    let replaced = get_silence(&d, &new_id).await;
    assert_eq!(replaced["status"]["state"], "active");
    assert_eq!(replaced["matchers"][0]["value"], "iOS");
    let (_, list) = d.api(Method::GET, "/api/v1/silences", None, None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");

    // An id that names nothing, and a silence already over, are refused.
    let mut unknown = replaced.clone();
    unknown["id"] = "nope".into();
    let (status, body) = d
        .api(Method::POST, "/api/v1/silences", None, Some(&unknown))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("nope")),
        "{body}"
    );
    let mut past = replaced.clone();
    past["endsAt"] = rfc3339(now_secs() - 60).into();
    let (status, body) = d
        .api(Method::POST, "/api/v1/silences", None, Some(&past))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("endsAt")),
        "{body}"
    );
    d.stop().await;
}

#[tokio::test]
async fn alerts_name_the_silences_that_hold_them() {
    let mut hook = Sink::start(Canned::new(200, "")).await;
    let dirs = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
    let mut config = dirs.config();
    add_receiver(&mut config, "ops", webhook(hook.url("/hook")));
    let d = Running::start(config).await;
    let id = post_silence(
        &d,
        &json!({
            "matchers": [{"name": "platform", "value": "Android"}],
            "endsAt": rfc3339(now_secs() + 3600),
            "createdBy": "ops",
            "comment": "rollout",
        }),
    )
    .await;
    d.start_call("alice", "Android", "c1").await;
    d.start_call("bob", "iOS", "c2").await;
    let got = hook.next_within(Duration::from_secs(10)).await.json();
    assert_eq!(got["alerts"].as_array().map(Vec::len), Some(1), "{got}");
    assert_eq!(got["alerts"][0]["labels"]["user_id"], "bob");

    let (status, answer) = d.api(Method::GET, "/api/v1/alerts", None, None).await;
    assert_eq!(status, 200);
    let by_user = |user: &str| -> Value {
        answer["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .find(|a| a["labels"]["user_id"] == user)
            .cloned()
            .unwrap_or_else(|| panic!("{user} in {answer}"))
    };
    assert_eq!(by_user("alice")["silenced_by"], json!([id]));
    assert_eq!(by_user("bob")["silenced_by"], json!([]));
    for user in ["alice", "bob"] {
        assert_eq!(by_user(user)["inhibited_by"], json!([]));
    }
    d.stop().await;
}

/// `(status, body)` of a raw request, the body parsed as JSON.
async fn raw(method: Method, url: &str, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url).body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text:?}: {e}"));
    (status, v)
}

/// A request (method, path, token, body) and the status it must get.
type Case<'a> = (Method, &'a str, Option<&'a str>, Vec<u8>, u16);

#[tokio::test]
async fn api_failures_answer_an_error_body_and_the_callback_keeps_tencents() {
    let dirs = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
    let mut config = dirs.config();
    config.server.admin_token = "s3cret".into();
    let d = Running::start(config).await;
    let t = Some("s3cret");
    let big = vec![b' '; 70 * 1024];
    let cases: Vec<Case> = vec![
        (Method::GET, "/api/v1/alerts", None, vec![], 401),
        (Method::GET, "/api/v1/nothing", None, vec![], 401),
        (Method::GET, "/api/v1/nothing", t, vec![], 404),
        (Method::GET, "/api/v2/alerts", t, vec![], 404),
        (Method::DELETE, "/api/v1/alerts", t, vec![], 405),
        (Method::GET, "/api/v1/reload", t, vec![], 405),
        (Method::PUT, "/api/v1/silences", t, vec![], 405),
        (Method::GET, "/api/v1/silences/nope", t, vec![], 404),
        (Method::DELETE, "/api/v1/silences/nope", t, vec![], 404),
        (
            Method::POST,
            "/api/v1/silences",
            t,
            b"{not json".to_vec(),
            400,
        ),
        (
            Method::POST,
            "/api/v1/silences",
            t,
            br#"{"matchers":[]}"#.to_vec(),
            400,
        ),
        (Method::POST, "/api/v1/silences", t, big, 413),
    ];
    for (method, path, token, body, want) in cases {
        let what = format!("{method} {path}");
        let (status, answer) = raw(method, &d.url(path), token, body).await;
        assert_eq!(status, want, "{what}: {answer}");
        let keys: Vec<&String> = answer.as_object().expect("an object").keys().collect();
        assert_eq!(keys, ["error"], "{what}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {answer}"
        );
    }
    let (_, answer) = raw(
        Method::POST,
        &d.url("/api/v1/silences"),
        t,
        br#"{"matchers":[{"name":"user_id","value":"("}],"endsAt":"x"}"#.to_vec(),
    )
    .await;
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("endsAt")),
        "{answer}"
    );
    // Outside /api/ the Tencent callback envelope stays.
    let (status, answer) = raw(Method::GET, &d.url("/nothing"), None, vec![]).await;
    assert_eq!(status, 404);
    assert!(answer.get("ErrorCode").is_some(), "{answer}");
    d.stop().await;
}
