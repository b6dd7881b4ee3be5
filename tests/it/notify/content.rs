//! What on-call reads, through every receiver against real servers: the
//! description, runbook link, evidence CallIds, start time, duration and
//! reason, times in the configured zone; the email's Message-ID, HTML
//! part and subject.

use callwatch::alert::{Evidence, ResolveReason};

use super::*;

const RUNBOOK: &str = "https://wiki.example.com/callwatch/interruptions";
const CALLS: [&str; 3] = ["trtc-call-aaa111", "trtc-call-bbb222", "trtc-call-ccc333"];

/// An alert as the engine makes it for `user`: key, annotations, evidence
/// and link.
fn rich(status: AlertStatus, user: &str) -> Alert {
    let mut a = alert(status, user, &format!("{user}: 25% of calls interrupted"));
    a.key = BTreeMap::from([
        ("platform".to_string(), "Android".to_string()),
        ("user_id".to_string(), user.to_string()),
    ]);
    a.annotations = BTreeMap::from([
        (
            "description".to_string(),
            format!("Calls of {user} on Android drop mid-call."),
        ),
        ("runbook_url".to_string(), RUNBOOK.to_string()),
    ]);
    a.evidence = CALLS
        .iter()
        .enumerate()
        .map(|(i, call)| Evidence {
            event_time: STARTS - i as i64,
            event: "call_interrupted".into(),
            user_id: Some(user.into()),
            call_id: Some(call.to_string()),
            platform: Some("Android".into()),
            call_result: Some("interrupt".into()),
        })
        .collect();
    a.url = Some(format!(
        "https://cw.example.com/ui/alerts/{}",
        a.fingerprint
    ));
    if status == AlertStatus::Resolved {
        a.reason = Some(ResolveReason::Expired);
    }
    a
}

fn rich_group() -> Notification {
    group(vec![
        rich(AlertStatus::Firing, "alice"),
        rich(AlertStatus::Resolved, "carol"),
    ])
}

/// Asserts `text` shows what on-call needs of the rich alerts.
fn assert_actionable(what: &str, text: &str) {
    for want in [
        "Calls of alice on Android drop mid-call.",
        RUNBOOK,
        "user_id=alice",
        "(warning)",
        "started: 2025-11-25 20:00:00 UTC (+00:00)",
        "after 10m, expired",
    ] {
        assert!(text.contains(want), "{what}: {want:?} not in\n{text}");
    }
    for call in CALLS {
        assert!(text.contains(call), "{what}: CallId {call} not in\n{text}");
    }
}

#[tokio::test]
async fn webhook_alerts_carry_annotations_evidence_url_and_reason() {
    let mut sink = Sink::start(Canned::new(200, "")).await;
    let kind = ReceiverKind::Webhook {
        url: sink.url("/hook"),
        headers: BTreeMap::new(),
    };
    send(kind, &rich_group()).await.expect("delivered");
    let body = sink.next().await.json();
    let alice = &body["alerts"][0];
    assert_eq!(alice["annotations"]["runbook_url"], RUNBOOK);
    assert_eq!(
        alice["key"],
        json!({"platform": "Android", "user_id": "alice"})
    );
    let calls: Vec<&str> = alice["evidence"]
        .as_array()
        .expect("evidence array")
        .iter()
        .map(|e| e["call_id"].as_str().expect("call_id"))
        .collect();
    assert_eq!(calls, CALLS);
    assert_eq!(
        keys(&alice["evidence"][0]),
        [
            "call_id",
            "call_result",
            "event",
            "event_time",
            "platform",
            "user_id"
        ]
    );
    assert_eq!(alice["evidence"][0]["event_time"], "2025-11-25T20:00:00Z");
    assert!(str_of(alice, "/url").starts_with("https://cw.example.com/ui/alerts/"));
    assert!(
        alice.get("reason").is_none(),
        "only resolved alerts say why"
    );
    assert_eq!(body["alerts"][1]["reason"], "expired");
}

#[tokio::test]
async fn every_chat_format_shows_the_evidence_and_runbook() {
    let mut sink = Sink::start(Canned::new(200, r#"{"errcode":0,"ok":true,"code":0}"#)).await;
    let n = rich_group();
    let chats: Vec<(ReceiverKind, &str)> = vec![
        (
            ReceiverKind::Slack {
                url: sink.url("/slack"),
            },
            "/text",
        ),
        (
            ReceiverKind::Wecom {
                url: sink.url("/wecom"),
            },
            "/markdown/content",
        ),
        (
            ReceiverKind::Dingtalk {
                url: sink.url("/dingtalk"),
                secret: String::new(),
            },
            "/markdown/text",
        ),
        (
            ReceiverKind::Feishu {
                url: sink.url("/feishu"),
                secret: String::new(),
            },
            "/content/text",
        ),
        (
            ReceiverKind::Discord {
                url: sink.url("/discord"),
            },
            "/content",
        ),
        (
            ReceiverKind::Teams {
                url: sink.url("/teams"),
            },
            "/attachments/0/content/body/1/text",
        ),
        (
            ReceiverKind::Telegram {
                bot_token: "1:tok".into(),
                chat_id: "42".into(),
                api_url: sink.url(""),
            },
            "/text",
        ),
    ];
    for (kind, pointer) in chats {
        let name = kind.type_name();
        send(kind, &n).await.expect("delivered");
        let body = sink.next().await.json();
        assert_actionable(name, str_of(&body, pointer));
    }
}

#[tokio::test]
async fn chat_messages_drop_evidence_rows_before_alerts() {
    let mut sink = Sink::start(Canned::new(204, "")).await;
    // Six alerts with evidence do not fit Discord's 2000 characters:
    // evidence lists shrink to the newest row first, then alerts are left
    // out; every alert shown keeps its newest CallId.
    let alerts: Vec<Alert> = (0..6)
        .map(|i| rich(AlertStatus::Firing, &format!("user{i}")))
        .collect();
    let kind = ReceiverKind::Discord {
        url: sink.url("/discord"),
    };
    send(kind, &group(alerts)).await.expect("delivered");
    let content = sink.next().await.json()["content"]
        .as_str()
        .expect("content")
        .to_string();
    assert!(
        content.chars().count() <= 2000,
        "{}",
        content.chars().count()
    );
    let shown = content.matches("**[FIRING] ").count();
    assert!(shown >= 3, "{content}");
    assert_eq!(content.matches(CALLS[0]).count(), shown, "{content}");
    assert!(!content.contains(CALLS[2]), "{content}");
    assert!(content.contains("  - … 2 more"), "{content}");
    if shown < 6 {
        assert!(
            content.ends_with(&format!("… {} more alerts", 6 - shown)),
            "{content}"
        );
    }
}

#[tokio::test]
async fn alertmanager_gets_annotations_and_generator_url() {
    let mut sink = Sink::start(Canned::new(200, "")).await;
    let kind = ReceiverKind::Alertmanager {
        url: sink.url("/am"),
    };
    send(kind, &rich_group()).await.expect("delivered");
    let body = sink.next().await.json();
    assert_eq!(body[0]["annotations"]["runbook_url"], RUNBOOK);
    assert!(str_of(&body[0], "/generatorURL").starts_with("https://cw.example.com/ui/alerts/"));
}

#[tokio::test]
async fn email_is_multipart_with_unique_message_ids_and_local_times() {
    let Some(mut server) = SmtpSink::start(None).await else {
        return;
    };
    let smtp = SmtpConfig {
        host: "127.0.0.1".into(),
        port: server.port,
        security: SmtpSecurity::None,
        from: "callwatch@example.com".into(),
        ..SmtpConfig::default()
    };
    let cfg = config(ReceiverKind::Email {
        to: vec!["oncall@example.com".into()],
    });
    let shanghai = jiff::tz::TimeZone::get("Asia/Shanghai").expect("tz");
    let rs = Receivers::in_zone(&[cfg], &smtp, shanghai).expect("builds");
    let r = rs.get("r").expect("r");

    let mut one = group(vec![rich(AlertStatus::Firing, "alice")]);
    one.group_labels.remove("platform");
    r.send(&one).await.expect("accepted");
    let first = server.next().await;
    assert_eq!(
        first["subject"],
        format!("[FIRING:1] {RULE} (warning) platform=Android user_id=alice")
    );
    assert_eq!(first["content_type"], "multipart/alternative");
    let id = str_of(&first, "/message_id");
    assert!(id.starts_with('<') && id.ends_with("@example.com>"), "{id}");
    assert_eq!(first["in_reply_to"], Value::Null);
    let text = str_of(&first, "/body");
    let html = str_of(&first, "/html");
    for part in [text, html] {
        // 20:00 UTC is 04:00 the next day in Shanghai, zone named.
        assert!(part.contains("2025-11-26 04:00:00 CST (+08:00)"), "{part}");
        assert!(part.contains(RUNBOOK), "{part}");
        assert!(
            part.contains("Calls of alice on Android drop mid-call."),
            "{part}"
        );
        for call in CALLS {
            assert!(part.contains(call), "{call} not in {part}");
        }
    }
    assert!(html.contains("<table"), "{html}");
    assert!(html.contains(&format!(r#"<a href="{RUNBOOK}">"#)), "{html}");

    r.send(&rich_group()).await.expect("accepted");
    let second = server.next().await;
    assert_ne!(second["message_id"], first["message_id"], "unique per mail");
    let text = str_of(&second, "/body");
    assert!(
        text.contains("ended: 2025-11-26 04:10:00 CST (+08:00) (after 10m, expired)"),
        "{text}"
    );
}
