//! Receivers against real servers: a local HTTP server for every HTTP kind
//! (exact JSON shapes, vendor signatures recomputed from the request, error
//! classes) and a real SMTP server process for email.

mod content;
mod email;
pub(crate) mod http_sink;
pub(crate) mod smtp_sink;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use callwatch::alert::{fingerprint, Alert, AlertStatus};
use callwatch::config::{ReceiverConfig, ReceiverKind, SmtpConfig, SmtpSecurity};
use callwatch::notify::{
    log_lines, notify_test, test_notification, Notification, NotifyError, Receivers,
};

use http_sink::{Canned, Sink};
use smtp_sink::SmtpSink;

const RULE: &str = "interruption_rate_by_platform";
const STARTS: i64 = 1_764_100_800; // 2025-11-25T20:00:00Z
const ENDS: i64 = 1_764_101_400; // 2025-11-25T20:10:00Z

fn alert(status: AlertStatus, user: &str, summary: &str) -> Alert {
    let labels = BTreeMap::from([
        ("rule".to_string(), RULE.to_string()),
        ("severity".to_string(), "warning".to_string()),
        ("platform".to_string(), "Android".to_string()),
        ("user_id".to_string(), user.to_string()),
    ]);
    Alert {
        rule: RULE.into(),
        status,
        severity: "warning".into(),
        summary: summary.into(),
        fingerprint: fingerprint(RULE, &labels),
        labels,
        value: json!(0.25),
        starts_at: STARTS,
        ends_at: (status == AlertStatus::Resolved).then_some(ENDS),
        key: BTreeMap::new(),
        annotations: BTreeMap::new(),
        evidence: Vec::new(),
        url: None,
        reason: None,
    }
}

fn group(alerts: Vec<Alert>) -> Notification {
    let labels = BTreeMap::from([
        ("rule".to_string(), RULE.to_string()),
        ("platform".to_string(), "Android".to_string()),
    ]);
    Notification::new("r", alerts, labels)
}

/// Two firing alerts and one resolved.
fn mixed() -> Notification {
    group(vec![
        alert(
            AlertStatus::Firing,
            "alice",
            "alice: 25% of calls interrupted",
        ),
        alert(AlertStatus::Firing, "bob", "bob: 25% of calls interrupted"),
        alert(AlertStatus::Resolved, "carol", "carol: back to normal"),
    ])
}

fn many(n: usize) -> Notification {
    group(
        (0..n)
            .map(|i| {
                let user = format!("user{i:03}");
                let summary = format!("{user}: 25% of calls interrupted on Android, please look");
                alert(AlertStatus::Firing, &user, &summary)
            })
            .collect(),
    )
}

fn config(kind: ReceiverKind) -> ReceiverConfig {
    ReceiverConfig {
        name: "r".into(),
        send_resolved: true,
        timeout: Duration::from_secs(5),
        rate_limit_per_minute: 0,
        kind,
    }
}

fn build(cfg: ReceiverConfig) -> Receivers {
    Receivers::new(&[cfg], &SmtpConfig::default()).expect("receiver builds")
}

async fn send(kind: ReceiverKind, n: &Notification) -> Result<(), NotifyError> {
    let rs = build(config(kind));
    rs.get("r").expect("receiver r").send(n).await
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

fn str_of<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} is a string in {v}"))
}

fn hmac_base64(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    mac.update(msg);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

const OK_ERRCODE: &str = r#"{"errcode":0,"errmsg":"ok"}"#;

#[tokio::test]
async fn webhook_posts_the_spec_body_with_configured_headers() {
    let mut sink = Sink::start(Canned::new(200, "")).await;
    let kind = ReceiverKind::Webhook {
        url: sink.url("/hook?token=s3cret"),
        headers: BTreeMap::from([("Authorization".to_string(), "Bearer xyz".to_string())]),
    };
    let n = mixed();
    send(kind, &n).await.expect("delivered");
    let req = sink.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hook");
    assert_eq!(req.query()["token"], "s3cret");
    assert_eq!(req.header("authorization"), "Bearer xyz");
    assert!(req.header("content-type").starts_with("application/json"));
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .map(|a| {
            json!({
                "rule": RULE, "status": a.status.as_str(), "severity": "warning",
                "summary": a.summary, "labels": a.labels, "value": 0.25,
                "fingerprint": a.fingerprint,
                "starts_at": "2025-11-25T20:00:00Z",
                "ends_at": a.ends_at.map(|_| "2025-11-25T20:10:00Z"),
                "key": {}, "annotations": {}, "evidence": [],
            })
        })
        .collect();
    let expected = json!({"version": "1", "status": "firing", "receiver": "r", "alerts": alerts});
    assert_eq!(req.json(), expected);
    // The body's keys come in the documented order.
    let raw = String::from_utf8(req.body.to_vec()).expect("utf-8");
    assert!(raw.starts_with(r#"{"version":"1","status":"firing","receiver":"r","alerts":["#));

    let resolved = group(vec![alert(AlertStatus::Resolved, "carol", "ok")]);
    let kind = ReceiverKind::Webhook {
        url: sink.url("/hook"),
        headers: BTreeMap::new(),
    };
    send(kind, &resolved).await.expect("delivered");
    assert_eq!(sink.next().await.json()["status"], "resolved");
}

#[tokio::test]
async fn http_status_codes_map_to_retryable_or_permanent() {
    let mut sink = Sink::start(Canned::new(429, "slow down").header("Retry-After", "7")).await;
    let url = sink.url("/hook?access_token=s3cret");
    let kind = || ReceiverKind::Webhook {
        url: url.clone(),
        headers: BTreeMap::new(),
    };
    let n = mixed();
    let err = send(kind(), &n).await.expect_err("429 fails");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert!(err.to_string().contains("429"), "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
    sink.next().await;

    sink.reply(Canned::new(500, "boom"));
    let err = send(kind(), &n).await.expect_err("500 fails");
    assert!(
        matches!(
            err,
            NotifyError::Retryable {
                retry_after: None,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("boom"), "{err}");

    sink.reply(Canned::new(400, "bad payload"));
    let err = send(kind(), &n).await.expect_err("400 fails");
    assert!(matches!(err, NotifyError::Permanent { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("400"), "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");

    sink.reply(Canned::new(408, ""));
    assert!(send(kind(), &n).await.expect_err("408").is_retryable());
}

#[tokio::test]
async fn unreachable_and_slow_servers_are_retryable() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let kind = ReceiverKind::Webhook {
        url: format!("http://127.0.0.1:{port}/hook?token=s3cret"),
        headers: BTreeMap::new(),
    };
    let err = send(kind, &mixed()).await.expect_err("refused");
    assert!(err.is_retryable(), "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");

    let sink = Sink::start(Canned::new(200, "").delay(Duration::from_secs(3))).await;
    let mut cfg = config(ReceiverKind::Webhook {
        url: sink.url("/slow"),
        headers: BTreeMap::new(),
    });
    cfg.timeout = Duration::from_millis(300);
    let rs = build(cfg);
    let err = rs
        .get("r")
        .expect("r")
        .send(&mixed())
        .await
        .expect_err("timeout");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("timed out after 300ms"), "{err}");
}

#[tokio::test]
async fn slack_posts_text_and_reads_ok_false() {
    let mut sink = Sink::start(Canned::new(200, "ok")).await;
    let url = sink.url("/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX");
    let kind = || ReceiverKind::Slack { url: url.clone() };
    let mut n = mixed();
    n.alerts[0].summary = "rate <high> & rising".into();
    send(kind(), &n).await.expect("delivered");
    let body = sink.next().await.json();
    assert_eq!(keys(&body), ["text"]);
    let text = str_of(&body, "/text");
    assert!(
        text.starts_with(&format!("*[FIRING:2] {RULE} (warning) platform=Android*")),
        "{text}"
    );
    assert!(text.contains("rate &lt;high&gt; &amp; rising"), "{text}");
    assert!(text.contains("carol: back to normal"));

    sink.reply(Canned::new(200, r#"{"ok":false,"error":"invalid_blocks"}"#));
    let err = send(kind(), &n).await.expect_err("ok:false");
    assert_eq!(err.to_string(), "slack error: invalid_blocks");
    assert!(err.is_retryable());

    sink.reply(Canned::new(404, "no_service"));
    let err = send(kind(), &n).await.expect_err("404");
    assert!(!err.is_retryable());
    assert!(!err.to_string().contains("XXXXXXXX"), "{err}");
}

#[tokio::test]
async fn wecom_posts_markdown_within_4096_bytes_and_reads_errcode() {
    let mut sink = Sink::start(Canned::new(200, OK_ERRCODE)).await;
    let url = sink.url("/cgi-bin/webhook/send?key=s3cret");
    let kind = || ReceiverKind::Wecom { url: url.clone() };
    send(kind(), &mixed()).await.expect("delivered");
    let req = sink.next().await;
    assert_eq!(req.query()["key"], "s3cret");
    let body = req.json();
    assert_eq!(keys(&body), ["markdown", "msgtype"]);
    assert_eq!(body["msgtype"], "markdown");
    assert_eq!(keys(&body["markdown"]), ["content"]);
    let content = str_of(&body, "/markdown/content");
    assert!(content.starts_with(&format!("**[FIRING:2] {RULE} (warning) platform=Android**")));
    assert!(content.contains("alice: 25% of calls interrupted"));

    send(kind(), &many(200)).await.expect("delivered");
    let body = sink.next().await.json();
    let content = str_of(&body, "/markdown/content");
    assert!(content.len() <= 4096, "{} bytes", content.len());
    assert!(content.contains("user000"));
    assert!(regex_like_more(content), "{content}");

    sink.reply(Canned::new(
        200,
        r#"{"errcode":93000,"errmsg":"invalid webhook url"}"#,
    ));
    let err = send(kind(), &mixed()).await.expect_err("errcode");
    assert_eq!(err.to_string(), "wecom errcode 93000: invalid webhook url");
    assert!(err.is_retryable());
}

/// Ends in `… N more alerts` with N > 0.
fn regex_like_more(text: &str) -> bool {
    let Some(rest) = text.rsplit_once("… ").map(|(_, r)| r) else {
        return false;
    };
    let Some(n) = rest.strip_suffix(" more alerts") else {
        return false;
    };
    n.parse::<usize>().is_ok_and(|n| n > 0)
}

#[tokio::test]
async fn dingtalk_signs_the_url_as_documented() {
    let mut sink = Sink::start(Canned::new(200, OK_ERRCODE)).await;
    let secret = "SEC0123456789abcdef+/=";
    let url = sink.url("/robot/send?access_token=tok3n");
    let kind = || ReceiverKind::Dingtalk {
        url: url.clone(),
        secret: secret.into(),
    };
    let before = now_ms();
    send(kind(), &mixed()).await.expect("delivered");
    let after = now_ms();
    let req = sink.next().await;
    let query = req.query();
    assert_eq!(query["access_token"], "tok3n");
    let timestamp: i64 = query["timestamp"].parse().expect("timestamp in ms");
    assert!((before..=after).contains(&timestamp), "{timestamp}");
    // DingTalk: sign = urlEncode(base64(HmacSHA256(secret, timestamp + "\n" + secret))).
    let expected = hmac_base64(
        secret.as_bytes(),
        format!("{timestamp}\n{secret}").as_bytes(),
    );
    assert_eq!(query["sign"], expected);
    // On the wire the base64 is URL-encoded: no bare `+`, `/` or `=` after `sign=`.
    let raw_sign = req
        .raw_query
        .split('&')
        .find_map(|kv| kv.strip_prefix("sign="))
        .expect("sign in query");
    assert!(!raw_sign.contains(['+', '/', '=']), "{raw_sign}");
    assert!(
        req.raw_query.starts_with("access_token=tok3n&timestamp="),
        "{}",
        req.raw_query
    );

    let body = req.json();
    assert_eq!(keys(&body), ["markdown", "msgtype"]);
    assert_eq!(body["msgtype"], "markdown");
    assert_eq!(keys(&body["markdown"]), ["text", "title"]);
    assert_eq!(
        body["markdown"]["title"],
        format!("[FIRING:2] {RULE} (warning) platform=Android")
    );
    let text = str_of(&body, "/markdown/text");
    assert!(
        text.starts_with(&format!("#### [FIRING:2] {RULE}")),
        "{text}"
    );
    assert!(text.contains("**[RESOLVED] interruption_rate_by_platform** (warning)"));

    send(kind(), &many(500)).await.expect("delivered");
    let body = sink.next().await.json();
    assert!(
        body.to_string().len() <= 20_000,
        "{}",
        body.to_string().len()
    );
    assert!(regex_like_more(str_of(&body, "/markdown/text")));

    // A 200 whose body says the sign is wrong is a failure.
    sink.reply(Canned::new(
        200,
        r#"{"errcode":310000,"errmsg":"sign not match"}"#,
    ));
    let err = send(kind(), &mixed()).await.expect_err("errcode 310000");
    assert_eq!(err.to_string(), "dingtalk errcode 310000: sign not match");
    assert!(matches!(
        err,
        NotifyError::Service {
            service: "dingtalk",
            ..
        }
    ));
    assert!(err.is_retryable());
}

#[tokio::test]
async fn dingtalk_without_secret_does_not_sign() {
    let mut sink = Sink::start(Canned::new(200, OK_ERRCODE)).await;
    let kind = ReceiverKind::Dingtalk {
        url: sink.url("/robot/send?access_token=tok3n"),
        secret: String::new(),
    };
    send(kind, &mixed()).await.expect("delivered");
    assert_eq!(sink.next().await.raw_query, "access_token=tok3n");
}

#[tokio::test]
async fn feishu_signs_the_body_as_documented() {
    let mut sink = Sink::start(Canned::new(200, r#"{"code":0,"data":{},"msg":"success"}"#)).await;
    let secret = "fEiShUsEcReT";
    let url = sink.url("/open-apis/bot/v2/hook/0123456789abcdef0123");
    let kind = || ReceiverKind::Feishu {
        url: url.clone(),
        secret: secret.into(),
    };
    let before = now_ms() / 1000;
    send(kind(), &mixed()).await.expect("delivered");
    let after = now_ms() / 1000;
    let body = sink.next().await.json();
    assert_eq!(keys(&body), ["content", "msg_type", "sign", "timestamp"]);
    assert_eq!(body["msg_type"], "text");
    assert_eq!(keys(&body["content"]), ["text"]);
    let timestamp = str_of(&body, "/timestamp");
    let secs: i64 = timestamp.parse().expect("timestamp is seconds as a string");
    assert!((before..=after).contains(&secs));
    // Feishu: sign = base64(HmacSHA256(key = timestamp + "\n" + secret, msg = "")).
    let expected = hmac_base64(format!("{timestamp}\n{secret}").as_bytes(), b"");
    assert_eq!(body["sign"], expected);
    let text = str_of(&body, "/content/text");
    assert!(
        text.starts_with(&format!(
            "[FIRING:2] {RULE} (warning) platform=Android\n\n[FIRING] {RULE} (warning)\nalice"
        )),
        "{text}"
    );

    sink.reply(Canned::new(
        200,
        r#"{"code":19021,"data":{},"msg":"sign match fail or timestamp is not within one hour from current time"}"#,
    ));
    let err = send(kind(), &mixed()).await.expect_err("code 19021");
    assert!(
        err.to_string()
            .starts_with("feishu code 19021: sign match fail"),
        "{err}"
    );
    assert!(err.is_retryable());

    sink.reply(Canned::new(
        200,
        r#"{"StatusCode":0,"StatusMessage":"success"}"#,
    ));
    send(kind(), &mixed()).await.expect("legacy success");
    sink.reply(Canned::new(
        200,
        r#"{"StatusCode":9499,"StatusMessage":"Bad Request"}"#,
    ));
    let err = send(kind(), &mixed()).await.expect_err("legacy failure");
    assert_eq!(err.to_string(), "feishu code 9499: Bad Request");
}

#[tokio::test]
async fn discord_keeps_content_under_2000_chars() {
    let mut sink = Sink::start(Canned::new(204, "")).await;
    let url = sink.url("/api/webhooks/123456789012345678/tokentokentokentoken");
    let kind = || ReceiverKind::Discord { url: url.clone() };
    send(kind(), &mixed()).await.expect("delivered");
    let body = sink.next().await.json();
    assert_eq!(keys(&body), ["allowed_mentions", "content"]);
    assert_eq!(body["allowed_mentions"], json!({"parse": []}));
    assert!(str_of(&body, "/content").starts_with("**[FIRING:2] "));

    send(kind(), &many(100)).await.expect("delivered");
    let body = sink.next().await.json();
    let content = str_of(&body, "/content");
    assert!(
        content.chars().count() <= 2000,
        "{}",
        content.chars().count()
    );
    assert!(regex_like_more(content), "{content}");

    sink.reply(Canned::new(
        429,
        r#"{"message":"You are being rate limited.","retry_after":1.5,"global":false}"#,
    ));
    let err = send(kind(), &mixed()).await.expect_err("429");
    assert_eq!(err.retry_after(), Some(Duration::from_millis(1500)));
}

#[tokio::test]
async fn teams_posts_an_adaptive_card() {
    let mut sink = Sink::start(Canned::new(202, "")).await;
    let kind = ReceiverKind::Teams {
        url: sink.url("/workflows/abc/triggers/manual/paths/invoke?sig=s3cret"),
    };
    send(kind, &mixed()).await.expect("delivered");
    let body = sink.next().await.json();
    assert_eq!(keys(&body), ["attachments", "type"]);
    assert_eq!(body["type"], "message");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(
        card["$schema"],
        "http://adaptivecards.io/schemas/adaptive-card.json"
    );
    assert_eq!(card["body"][0]["type"], "TextBlock");
    assert_eq!(
        card["body"][0]["text"],
        format!("[FIRING:2] {RULE} (warning) platform=Android")
    );
    assert!(str_of(card, "/body/1/text").contains("bob: 25% of calls interrupted"));
}

#[tokio::test]
async fn telegram_sends_message_and_reads_ok_false() {
    let token = "123456:ABCdefGHIjklMNOpqr";
    let mut sink = Sink::start(Canned::new(200, r#"{"ok":true,"result":{}}"#)).await;
    let api_url = sink.url("");
    let kind = || ReceiverKind::Telegram {
        bot_token: token.into(),
        chat_id: "-1001234567890".into(),
        api_url: api_url.clone(),
    };
    send(kind(), &mixed()).await.expect("delivered");
    let req = sink.next().await;
    assert_eq!(req.path, format!("/bot{token}/sendMessage"));
    let body = req.json();
    assert_eq!(keys(&body), ["chat_id", "disable_web_page_preview", "text"]);
    assert_eq!(body["chat_id"], "-1001234567890");
    assert!(str_of(&body, "/text").starts_with("[FIRING:2] "));

    send(kind(), &many(200)).await.expect("delivered");
    let text = sink.next().await.json()["text"]
        .as_str()
        .expect("text")
        .to_string();
    assert!(text.encode_utf16().count() <= 4096);
    assert!(regex_like_more(&text));

    sink.reply(Canned::new(
        200,
        r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
    ));
    let err = send(kind(), &mixed()).await.expect_err("ok:false");
    assert_eq!(
        err.to_string(),
        "telegram error 400: Bad Request: chat not found"
    );

    sink.reply(Canned::new(
        401,
        r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#,
    ));
    let err = send(kind(), &mixed()).await.expect_err("401");
    assert!(!err.is_retryable());
    assert!(!err.to_string().contains("ABCdef"), "{err}");
    assert!(!format!("{err:?}").contains("ABCdef"), "{err:?}");
}

#[tokio::test]
async fn alertmanager_gets_v2_alerts() {
    let mut sink = Sink::start(Canned::new(200, "")).await;
    let rs = build(config(ReceiverKind::Alertmanager {
        url: sink.url("/am/"),
    }));
    let r = rs.get("r").expect("r");
    // Alertmanager drops alerts its clients stop re-posting.
    assert_eq!(r.resend_interval(), Some(Duration::from_secs(60)));
    r.send(&mixed()).await.expect("delivered");
    let req = sink.next().await;
    assert_eq!(req.path, "/am/api/v2/alerts");
    let body = req.json();
    let alerts = body.as_array().expect("an array of alerts");
    assert_eq!(alerts.len(), 3);
    assert_eq!(
        alerts[0],
        json!({
            "labels": {
                "alertname": RULE, "rule": RULE, "severity": "warning",
                "platform": "Android", "user_id": "alice",
            },
            "annotations": {"summary": "alice: 25% of calls interrupted", "value": "0.25"},
            "startsAt": "2025-11-25T20:00:00Z",
        })
    );
    assert_eq!(alerts[2]["endsAt"], "2025-11-25T20:10:00Z");
    assert_eq!(alerts[2]["labels"]["user_id"], "carol");
}

#[tokio::test]
async fn send_resolved_false_leaves_resolved_alerts_out() {
    let mut sink = Sink::start(Canned::new(200, "")).await;
    let mut cfg = config(ReceiverKind::Webhook {
        url: sink.url("/hook"),
        headers: BTreeMap::new(),
    });
    cfg.send_resolved = false;
    let rs = build(cfg);
    let r = rs.get("r").expect("r");
    r.send(&mixed()).await.expect("delivered");
    let body = sink.next().await.json();
    assert_eq!(body["alerts"].as_array().map(Vec::len), Some(2));
    r.send(&group(vec![alert(AlertStatus::Resolved, "carol", "ok")]))
        .await
        .expect("nothing to send is fine");
    // Nothing more arrives: the next request seen is this marker.
    r.send(&many(1)).await.expect("delivered");
    assert_eq!(
        sink.next().await.json()["alerts"][0]["labels"]["user_id"],
        "user000"
    );
}

#[tokio::test]
async fn rate_limit_fails_fast_with_the_wait() {
    let mut sink = Sink::start(Canned::new(200, OK_ERRCODE)).await;
    let mut cfg = config(ReceiverKind::Wecom {
        url: sink.url("/cgi-bin/webhook/send?key=k"),
    });
    cfg.rate_limit_per_minute = 2;
    let rs = build(cfg);
    let r = rs.get("r").expect("r");
    r.send(&mixed()).await.expect("first");
    r.send(&mixed()).await.expect("second");
    let err = r.send(&mixed()).await.expect_err("third is over the limit");
    assert!(err.is_retryable());
    let wait = err.retry_after().expect("a wait");
    assert!(
        wait > Duration::from_secs(50) && wait <= Duration::from_secs(60),
        "{wait:?}"
    );
    assert!(
        err.to_string()
            .contains("rate limit of 2 messages a minute"),
        "{err}"
    );
    sink.next().await;
    sink.next().await;
    assert!(sink.try_next().is_none(), "the third message was not sent");
}

#[tokio::test]
async fn notify_test_sends_a_marked_notification() {
    let mut sink = Sink::start(Canned::new(200, "")).await;
    let rs = build(config(ReceiverKind::Webhook {
        url: sink.url("/hook"),
        headers: BTreeMap::new(),
    }));
    notify_test(rs.get("r").expect("r"))
        .await
        .expect("delivered");
    let body = sink.next().await.json();
    assert_eq!(body["test"], true);
    assert_eq!(body["receiver"], "r");
    assert_eq!(body["alerts"][0]["rule"], "callwatch_test");
    assert!(str_of(&body, "/alerts/0/summary").contains("Test notification"));
}

#[test]
fn bad_receiver_config_is_permanent_and_named() {
    let err = Receivers::new(
        &[config(ReceiverKind::Slack {
            url: "not a url".into(),
        })],
        &SmtpConfig::default(),
    )
    .expect_err("bad url");
    assert!(!err.is_retryable());
    assert!(err.to_string().starts_with("receiver \"r\": url"), "{err}");
    let err = Receivers::new(
        &[config(ReceiverKind::Email {
            to: vec!["not an address".into()],
        })],
        &SmtpConfig::default(),
    )
    .expect_err("bad address");
    assert!(err.to_string().contains("not an address"), "{err}");
}

#[test]
fn log_lines_are_one_per_alert_and_stable() {
    let mut n = mixed();
    n.alerts[1].summary = "two\nlines".into();
    assert_eq!(
        log_lines(&n),
        [
            "[FIRING] interruption_rate_by_platform (warning) alice: 25% of calls interrupted \
             | value=0.25 | platform=Android rule=interruption_rate_by_platform severity=warning \
             user_id=alice | since 2025-11-25T20:00:00Z",
            "[FIRING] interruption_rate_by_platform (warning) two\\nlines \
             | value=0.25 | platform=Android rule=interruption_rate_by_platform severity=warning \
             user_id=bob | since 2025-11-25T20:00:00Z",
            "[RESOLVED] interruption_rate_by_platform (warning) carol: back to normal \
             | value=0.25 | platform=Android rule=interruption_rate_by_platform severity=warning \
             user_id=carol | since 2025-11-25T20:00:00Z until 2025-11-25T20:10:00Z",
        ]
    );
    let test = test_notification("log", STARTS);
    assert!(log_lines(&test)[0].starts_with("[TEST] [FIRING] callwatch_test (info) "));
}
