//! The email receiver against a real SMTP server process: firing and
//! resolved mails, authentication, and a dead server as a retryable error.

use super::*;

fn smtp_config(port: u16, auth: Option<(&str, &str)>) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        username: auth.map(|a| a.0.to_string()).unwrap_or_default(),
        password: auth.map(|a| a.1.to_string()).unwrap_or_default(),
        from: "callwatch@example.com".into(),
        timeout: Duration::from_secs(5),
    }
}

fn email_receivers(smtp: &SmtpConfig) -> Receivers {
    let cfg = config(ReceiverKind::Email {
        to: vec!["oncall@example.com".into(), "Ops <ops@example.com>".into()],
    });
    Receivers::new(&[cfg], smtp).expect("email receiver builds")
}

#[tokio::test]
async fn email_firing_and_resolved_mails() {
    let Some(mut server) = SmtpSink::start(None).await else {
        return;
    };
    let rs = email_receivers(&smtp_config(server.port, None));
    let r = rs.get("r").expect("r");
    r.send(&mixed()).await.expect("mail accepted");
    let mail = server.next().await;
    assert_eq!(mail["mail_from"], "callwatch@example.com");
    assert_eq!(
        mail["rcpt_tos"],
        json!(["oncall@example.com", "ops@example.com"])
    );
    assert_eq!(mail["authenticated"], false);
    assert_eq!(
        mail["subject"],
        format!("[FIRING:2] {RULE} (warning) platform=Android")
    );
    assert_eq!(mail["content_type"], "multipart/alternative");
    let body = str_of(&mail, "/body");
    assert!(
        body.starts_with(&format!(
            "2 firing, 1 resolved in group {RULE} platform=Android."
        )),
        "{body}"
    );
    for expected in [
        "[FIRING] interruption_rate_by_platform (warning)\nalice: 25% of calls interrupted\nvalue: 0.25\n\
         labels: platform=Android, rule=interruption_rate_by_platform, severity=warning, user_id=alice\n\
         started: 2025-11-25 20:00:00 UTC (+00:00)",
        "bob: 25% of calls interrupted",
        "[RESOLVED] interruption_rate_by_platform (warning)\ncarol: back to normal",
        "ended: 2025-11-25 20:10:00 UTC (+00:00) (after 10m, resolved)",
    ] {
        assert!(body.contains(expected), "{expected:?} not in {body}");
    }

    r.send(&group(vec![alert(
        AlertStatus::Resolved,
        "carol",
        "carol: back to normal",
    )]))
    .await
    .expect("mail accepted");
    let mail = server.next().await;
    assert_eq!(
        mail["subject"],
        format!("[RESOLVED] {RULE} (warning) platform=Android")
    );
    let body = str_of(&mail, "/body");
    assert!(
        body.contains(
            "started: 2025-11-25 20:00:00 UTC (+00:00)\n\
             ended: 2025-11-25 20:10:00 UTC (+00:00) (after 10m, resolved)"
        ),
        "{body}"
    );

    notify_test(r).await.expect("test mail accepted");
    let mail = server.next().await;
    assert!(str_of(&mail, "/subject").starts_with("[TEST] [FIRING:1] callwatch_test (info)"));
    assert!(str_of(&mail, "/body").starts_with("This is a test notification"));
}

#[tokio::test]
async fn email_authenticates_and_wrong_password_is_permanent() {
    let Some(mut server) = SmtpSink::start(Some(("cw", "pa55word"))).await else {
        return;
    };
    let rs = email_receivers(&smtp_config(server.port, Some(("cw", "pa55word"))));
    rs.get("r")
        .expect("r")
        .send(&mixed())
        .await
        .expect("mail accepted");
    let mail = server.next().await;
    assert_eq!(mail["authenticated"], true);
    assert_eq!(mail["mail_from"], "callwatch@example.com");

    let rs = email_receivers(&smtp_config(server.port, Some(("cw", "wrong"))));
    let err = rs
        .get("r")
        .expect("r")
        .send(&mixed())
        .await
        .expect_err("auth fails");
    assert!(matches!(err, NotifyError::Permanent { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong"), "{err}");

    let rs = email_receivers(&smtp_config(server.port, None));
    let err = rs
        .get("r")
        .expect("r")
        .send(&mixed())
        .await
        .expect_err("auth required");
    assert!(err.to_string().contains("530"), "{err}");
}

#[tokio::test]
async fn email_to_a_dead_server_is_retryable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let rs = email_receivers(&smtp_config(port, None));
    let err = rs
        .get("r")
        .expect("r")
        .send(&mixed())
        .await
        .expect_err("refused");
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}
