//! Every callback check (docs/callbacks.md) with its status, message and order: size (413),
//! app (403), sign and request time (401), body (400), and JSON errors for
//! other paths and methods.

use super::*;

/// Sends a raw HTTP/1.1 request (head, then body chunks as given) and
/// returns the status and body of the reply. Write errors after the
/// server has answered early are expected and ignored.
async fn raw_request(addr: std::net::SocketAddr, head: &str, chunks: &[Vec<u8>]) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting");
    s.write_all(head.as_bytes()).await.expect("writing head");
    for c in chunks {
        if s.write_all(c).await.is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let reply = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut tmp))
            .await
            .expect("a reply within 5 s")
            .unwrap_or(0);
        buf.extend_from_slice(&tmp[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .expect("reply has a content-length");
            if body.len() >= len {
                break (head.to_string(), body[..len].to_string());
            }
        }
        assert!(n > 0, "connection closed before a full reply: {text:?}");
    };
    let status = reply
        .0
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = serde_json::from_str(&reply.1).expect("JSON failure body");
    (status, body)
}

fn chunked(data: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = data
        .chunks(chunk)
        .map(|c| {
            let mut v = format!("{:x}\r\n", c.len()).into_bytes();
            v.extend_from_slice(c);
            v.extend_from_slice(b"\r\n");
            v
        })
        .collect();
    out.push(b"0\r\n\r\n".to_vec());
    out
}

fn assert_fail_json(v: &Value, words: &[&str]) {
    assert_eq!(v["ActionStatus"], "FAIL");
    assert_ne!(v["ErrorCode"].as_i64(), Some(0));
    let msg = v["ErrorMessage"].as_str().expect("message");
    for w in words {
        assert!(msg.contains(w), "{msg:?} should mention {w:?}");
    }
}

#[tokio::test]
async fn oversize_bodies_are_413_with_or_without_content_length() {
    let d = TestDaemon::start(|c| {
        with_apps(c);
        c.server.max_body_bytes = 1024;
    })
    .await;
    let big = format!("{{\"UserId\":\"u\",\"Pad\":\"{}\"}}", "x".repeat(2048));
    // Size is checked first: an unknown app with a bad body still gets 413.
    for q in [
        a_query("caller_start_call"),
        query(&[("sdkappid", "9"), ("command", "x")]),
    ] {
        d.post(&q, &big)
            .await
            .assert_fail(413, &["max_body_bytes", "1024"]);
    }
    // A body far larger than the socket buffers still gets its 413 (the
    // server must not reset the connection before the client reads it).
    let huge = format!("{{\"Pad\":\"{}\"}}", "x".repeat(4 << 20));
    d.post(&a_query("caller_start_call"), &huge)
        .await
        .assert_fail(413, &["max_body_bytes"]);
    // Exactly at the limit is fine.
    let pad = 1024 - r#"{"UserId":"u","Pad":""}"#.len();
    let exact = format!("{{\"UserId\":\"u\",\"Pad\":\"{}\"}}", "x".repeat(pad));
    assert_eq!(exact.len(), 1024);
    d.post(&a_query("caller_start_call"), &exact)
        .await
        .assert_ok();

    // Chunked: no Content-Length, the limit is enforced while reading.
    let head = format!(
        "POST /callback?{} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n",
        a_query("caller_start_call")
    );
    let (status, body) = raw_request(d.daemon.addr, &head, &chunked(big.as_bytes(), 300)).await;
    assert_eq!(status, 413, "{body}");
    assert_fail_json(&body, &["max_body_bytes"]);
    // A small chunked body is accepted.
    let small = json!({"UserId": "chunky", "CallId": "c", "EventTime": now_secs()}).to_string();
    let (status, _) = raw_request(d.daemon.addr, &head, &chunked(small.as_bytes(), 7)).await;
    assert_eq!(status, 200);

    let m = d.metrics().await;
    assert_eq!(callbacks(&m, &[("outcome", "too_large")]), 4.0);
    d.stop().await;
}

#[tokio::test]
async fn unknown_or_missing_sdkappid_is_403() {
    let d = TestDaemon::start(with_apps).await;
    let body = json!({"UserId": "u", "EventTime": now_secs()}).to_string();
    d.post(&query(&[("command", "caller_start_call")]), &body)
        .await
        .assert_fail(403, &["sdkappid"]);
    d.post(
        &query(&[("sdkappid", "1400009999"), ("command", "caller_start_call")]),
        &body,
    )
    .await
    .assert_fail(403, &["1400009999"]);
    d.post(
        &query(&[("sdkappid", "abc"), ("command", "caller_start_call")]),
        &body,
    )
    .await
    .assert_fail(403, &["sdkappid"]);
    // The app is checked before the sign and the body.
    d.post(
        &query(&[
            ("sdkappid", "1400009999"),
            ("command", "x"),
            ("sign", "bad"),
            ("requesttime", "1"),
        ]),
        "not json",
    )
    .await
    .assert_fail(403, &["1400009999"]);
    // Family B spells it SdkAppid.
    d.post(
        &query(&[
            ("SdkAppid", "1400009999"),
            ("CallbackCommand", "Call.CallbackAfterEndCall"),
        ]),
        &body,
    )
    .await
    .assert_fail(403, &["1400009999"]);
    assert!(journal_records(&d.state_dir()).is_empty());
    let m = d.metrics().await;
    assert_eq!(callbacks(&m, &[("outcome", "forbidden")]), 5.0);
    d.stop().await;
}

#[tokio::test]
async fn any_sdkappid_is_accepted_when_no_app_is_configured() {
    let d = TestDaemon::start(|_| {}).await;
    let body = json!({"UserId": "u", "EventTime": now_secs()}).to_string();
    d.post(
        &query(&[("sdkappid", "42"), ("command", "caller_start_call")]),
        &body,
    )
    .await
    .assert_ok();
    // Still a number and still required.
    d.post(&query(&[("command", "caller_start_call")]), &body)
        .await
        .assert_fail(403, &["sdkappid"]);
    d.stop().await;
}

fn signed_query(command: &str, request_time: i64, sign: &str) -> String {
    query(&[
        ("sdkappid", SIGNED_APP),
        ("command", command),
        ("contenttype", "json"),
        ("requesttime", &request_time.to_string()),
        ("sign", sign),
    ])
}

#[tokio::test]
async fn sign_and_request_time_are_checked() {
    let d = TestDaemon::start(with_apps).await;
    let mut rx = d.subscribe();
    let now = now_secs();
    let body = json!({"UserId": "signed", "CallId": "s1", "EventTime": now}).to_string();
    let good = auth::sign(TOKEN, &now.to_string());

    d.post(&signed_query("caller_start_call", now, &good), &body)
        .await
        .assert_ok();
    assert_eq!(next_event(&mut rx).await.user_id.as_deref(), Some("signed"));
    // Family B spellings, an uppercase hex sign, 30 s of skew.
    let t = now - 30;
    let b = query(&[
        ("SdkAppid", SIGNED_APP),
        ("CallbackCommand", "Call.CallbackAfterEndCall"),
        ("RequestTime", &t.to_string()),
        ("Sign", &auth::sign(TOKEN, &t.to_string()).to_uppercase()),
    ]);
    let end = json!({"CallbackCommand": "Call.CallbackAfterEndCall",
        "CallRecord": {"CallId": "s2", "Caller_Account": "a", "CallResult": "NormalEnd"},
        "EventTime": now * 1000});
    d.post(&b, &end.to_string()).await.assert_ok();

    let wrong = auth::sign("other-token", &now.to_string());
    d.post(&signed_query("caller_start_call", now, &wrong), &body)
        .await
        .assert_fail(401, &["sign"]);
    // A sign made for another time does not match this one.
    let other_time = auth::sign(TOKEN, &(now - 1).to_string());
    d.post(&signed_query("caller_start_call", now, &other_time), &body)
        .await
        .assert_fail(401, &["sign"]);
    let stale = now - 120;
    d.post(
        &signed_query(
            "caller_start_call",
            stale,
            &auth::sign(TOKEN, &stale.to_string()),
        ),
        &body,
    )
    .await
    .assert_fail(401, &["requesttime"]);
    let future = now + 120;
    d.post(
        &signed_query(
            "caller_start_call",
            future,
            &auth::sign(TOKEN, &future.to_string()),
        ),
        &body,
    )
    .await
    .assert_fail(401, &["requesttime"]);
    d.post(
        &query(&[
            ("sdkappid", SIGNED_APP),
            ("command", "x"),
            ("requesttime", &now.to_string()),
        ]),
        &body,
    )
    .await
    .assert_fail(401, &["sign"]);
    d.post(
        &query(&[("sdkappid", SIGNED_APP), ("command", "x"), ("sign", &good)]),
        &body,
    )
    .await
    .assert_fail(401, &["requesttime"]);
    // The sign is checked before the body.
    d.post(&signed_query("caller_start_call", now, &wrong), "{not json")
        .await
        .assert_fail(401, &["sign"]);
    // The unsigned app next to it needs no sign.
    d.post(&a_query("caller_start_call"), &body)
        .await
        .assert_ok();

    assert_eq!(journal_records(&d.state_dir()).len(), 3);
    let m = d.metrics().await;
    assert_eq!(callbacks(&m, &[("outcome", "unauthorized")]), 7.0);
    d.stop().await;
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_problem() {
    let d = TestDaemon::start(with_apps).await;
    let now = now_secs();
    let a = a_query("caller_start_call");
    let cases: Vec<(String, String, Vec<&str>)> = vec![
        (a.clone(), "{not json".into(), vec!["JSON"]),
        (a.clone(), String::new(), vec!["JSON"]),
        (a.clone(), "[1,2]".into(), vec!["object"]),
        (a.clone(), "\"text\"".into(), vec!["object"]),
        (
            a.clone(),
            json!({"EventTime": "soon"}).to_string(),
            vec!["EventTime", "integer"],
        ),
        (
            a.clone(),
            json!({"EventTime": 1.5}).to_string(),
            vec!["EventTime"],
        ),
        (
            a.clone(),
            json!({"UserId": [1]}).to_string(),
            vec!["UserId"],
        ),
        (
            a.clone(),
            json!({"RoomId": {"id": 1}}).to_string(),
            vec!["RoomId"],
        ),
        (
            a.clone(),
            json!({"MediaType": 1}).to_string(),
            vec!["MediaType"],
        ),
        (a.clone(), json!({"Role": true}).to_string(), vec!["Role"]),
        (
            a.clone(),
            json!({"TotalNum": "two"}).to_string(),
            vec!["TotalNum"],
        ),
        (
            a.clone(),
            json!({"StartCallTs": []}).to_string(),
            vec!["StartCallTs"],
        ),
        (
            query(&[("sdkappid", APP)]),
            json!({"UserId": "u"}).to_string(),
            vec!["command"],
        ),
        (
            b_query("Call.CallbackAfterStartCall"),
            json!({"CallInfo": "x", "EventTime": now}).to_string(),
            vec!["CallInfo"],
        ),
        (
            b_query("Call.CallbackAfterStartCall"),
            json!({"CallInfo": {}, "UserList": [{"User_Account": [], "Status": "Calling"}]})
                .to_string(),
            vec!["UserList[0].User_Account"],
        ),
        (
            b_query("Call.CallbackAfterEndCall"),
            json!({"EventTime": now}).to_string(),
            vec!["CallRecord"],
        ),
        (
            b_query("Call.CallbackAfterEndCall"),
            json!({"CallRecord": {"StartTime": "yesterday"}}).to_string(),
            vec!["CallRecord.StartTime"],
        ),
        (
            b_query("Call.CallbackAfterMemberChanged"),
            json!({"ChangedUserList": [{"User_Account": "u"}]}).to_string(),
            vec!["ChangedUserList[0].ActionType"],
        ),
        (
            b_query("Call.CallbackAfterMemberChanged"),
            json!({"ChangedUserList": {"User_Account": "u"}}).to_string(),
            vec!["ChangedUserList"],
        ),
    ];
    for (q, body, words) in &cases {
        let r = d.post(q, body).await;
        assert_eq!(r.status, 400, "{body} -> {}", r.text);
        r.assert_fail(400, words);
    }
    assert!(journal_records(&d.state_dir()).is_empty());
    let m = d.metrics().await;
    assert_eq!(
        callbacks(&m, &[("outcome", "bad_request")]),
        cases.len() as f64
    );
    d.stop().await;
}

#[tokio::test]
async fn other_paths_and_methods_get_json_errors() {
    let d = TestDaemon::start(|_| {}).await;
    let r = d.get("/callback").await;
    r.assert_fail(405, &["method"]);
    let r = d.get("/nope").await;
    r.assert_fail(404, &["endpoint"]);
    let r = d.post("", "{}").await;
    // No query at all: the app check fails first.
    r.assert_fail(403, &["sdkappid"]);
    d.stop().await;
}
