//! `POST /callback` over real HTTP against the in-process daemon: every
//! command of both families decoded into the SPEC §4 event model, every
//! SPEC §2 check with its status, message and order, deduplication, the
//! journal as the durable record of each 200, and the ops endpoints.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use callwatch::config::AppConfig;
use callwatch::event::Event;
use callwatch::ingest::auth;
use callwatch::ingest::decode::{CALL_STATUS_COMMANDS, FAMILY_A_COMMANDS};

use crate::support::{
    assert_no_event, decode_record, fixture_trace, journal_records, metric, next_event, now_secs,
    query, query_string, TestDaemon,
};

const APP: &str = "1400000001";
const SIGNED_APP: &str = "1400000002";
const TOKEN: &str = "s3cret-token";

fn a_query(command: &str) -> String {
    query(&[
        ("sdkappid", APP),
        ("command", command),
        ("contenttype", "json"),
        ("clientip", "1.2.3.4"),
        ("optplatform", "iOS"),
    ])
}

fn b_query(command: &str) -> String {
    query(&[
        ("SdkAppid", APP),
        ("CallbackCommand", command),
        ("contenttype", "json"),
        ("ClientIP", "5.6.7.8"),
        ("OptPlatform", "Android"),
    ])
}

/// Two configured apps: one without and one with a sign token.
fn with_apps(c: &mut callwatch::config::Config) {
    c.apps = vec![
        AppConfig {
            sdkappid: APP.parse().expect("app id"),
            token: String::new(),
        },
        AppConfig {
            sdkappid: SIGNED_APP.parse().expect("app id"),
            token: TOKEN.into(),
        },
    ];
}

/// The role prefix and bare event of a family A event command.
fn split_command(cmd: &str) -> (Option<&str>, &str) {
    match cmd.split_once('_') {
        Some((r @ ("caller" | "callee"), rest)) => (Some(r), rest),
        _ => (None, cmd),
    }
}

/// Callbacks counted under `labels` in the metrics text `m`.
fn callbacks(m: &str, labels: &[(&str, &str)]) -> f64 {
    metric(m, "callwatch_callbacks_total", labels)
}

/// Asserts each family A command was accepted `n` times.
fn assert_accepted(m: &str, commands: &[&str], n: f64) {
    for cmd in commands {
        let labels = [
            ("family", "call_event"),
            ("command", cmd),
            ("outcome", "accepted"),
        ];
        assert_eq!(callbacks(m, &labels), n, "{cmd}");
    }
}

#[tokio::test]
async fn family_a_every_command_is_accepted_and_decoded() {
    let d = TestDaemon::start(|_| {}).await;
    let mut rx = d.subscribe();
    let t = now_secs();
    for (i, cmd) in FAMILY_A_COMMANDS.iter().enumerate() {
        let (role, bare) = split_command(cmd);
        // As Tencent sends it: Role and Event in the body, mixed case.
        let body = json!({
            "UserId": format!("user{i}"), "RoomId": format!("room{i}"), "TotalNum": 2,
            "MediaType": "Video", "CallType": "Single", "CallId": format!("call-{i}"),
            "Role": role.map(str::to_uppercase), "Event": bare.to_uppercase(),
            "CallResult": "", "EventTime": t,
        });
        d.post(&a_query(cmd), &body.to_string()).await.assert_ok();
        let e = next_event(&mut rx).await;
        assert_eq!(e.command, *cmd);
        assert_eq!(e.event, bare, "{cmd}");
        assert_eq!(e.role.as_deref(), role, "{cmd}");
        assert_eq!(e.sdkappid, 1_400_000_001);
        assert_eq!(e.platform.as_deref(), Some("iOS"));
        assert_eq!(e.client_ip.as_deref(), Some("1.2.3.4"));
        assert_eq!(e.user_id, Some(format!("user{i}").into()));
        assert_eq!(e.room_id, Some(format!("room{i}").into()));
        assert_eq!(e.call_id, Some(format!("call-{i}").into()));
        assert_eq!(e.media_type.as_deref(), Some("video"));
        assert_eq!(e.call_type.as_deref(), Some("single"));
        assert_eq!(e.total_num, Some(2));
        assert_eq!(e.call_result, "");
        assert_eq!(e.event_time, t);

        // The minimal body: role and event come from the command.
        let body =
            json!({"UserId": format!("bare{i}"), "CallId": format!("call-{i}"), "EventTime": t});
        d.post(&a_query(cmd), &body.to_string()).await.assert_ok();
        let e = next_event(&mut rx).await;
        assert_eq!(e.event, bare, "{cmd}");
        assert_eq!(e.role.as_deref(), role, "{cmd}");
        assert_eq!(e.media_type, None);
    }
    assert_no_event(&mut rx);
    assert_accepted(&d.metrics().await, FAMILY_A_COMMANDS, 2.0);
    d.stop().await;
}

#[tokio::test]
async fn family_a_every_call_status_command_sets_call_result() {
    let d = TestDaemon::start(|_| {}).await;
    let mut rx = d.subscribe();
    let t = now_secs();
    for (i, cmd) in CALL_STATUS_COMMANDS.iter().enumerate() {
        // No Event in the body: the event is the command.
        let body =
            json!({"UserId": format!("s{i}"), "CallId": "c", "Role": "caller", "EventTime": t});
        d.post(&a_query(cmd), &body.to_string()).await.assert_ok();
        let e = next_event(&mut rx).await;
        assert_eq!((e.event.as_str(), e.call_result.as_str()), (*cmd, *cmd));
        assert_eq!(e.role.as_deref(), Some("caller"));

        // With Event and a capitalised command and CallResult.
        let capital = format!("{}{}", cmd[..1].to_uppercase(), &cmd[1..]);
        let body = json!({"UserId": format!("e{i}"), "CallId": "c", "Role": "Callee",
            "Event": "Call_End", "CallResult": capital, "EventTime": t});
        d.post(&a_query(&capital), &body.to_string())
            .await
            .assert_ok();
        let e = next_event(&mut rx).await;
        assert_eq!(e.command, *cmd);
        assert_eq!(e.event, "call_end");
        assert_eq!(e.call_result, *cmd);
        assert_eq!(e.role.as_deref(), Some("callee"));
    }
    assert_accepted(&d.metrics().await, CALL_STATUS_COMMANDS, 2.0);
    d.stop().await;
}

#[tokio::test]
async fn family_a_normalises_values_and_keeps_unknown_fields() {
    let d = TestDaemon::start(|_| {}).await;
    let mut rx = d.subscribe();
    let t = now_secs();
    let body = json!({
        "UserId": 10086, "RoomId": 987654321, "TotalNum": 2, "MediaType": "Audio",
        "CallType": "Single", "CallId": "n1", "Role": "Callee", "Event": "Call_End",
        "CallResult": "Normal_end", "EventTime": t, "StartCallTs": t - 70,
        "AcceptTs": t - 60, "EndTs": t, "Vendor": {"Model": "X1"}, "Retry": 2,
    });
    d.post(&a_query("Callee_Call_End"), &body.to_string())
        .await
        .assert_ok();
    let e = next_event(&mut rx).await;
    let mut extra = serde_json::Map::new();
    extra.insert("Vendor".into(), json!({"Model": "X1"}));
    extra.insert("Retry".into(), json!(2));
    assert_eq!(
        e,
        Event {
            sdkappid: 1_400_000_001,
            command: "callee_call_end".into(),
            platform: Some("iOS".into()),
            client_ip: Some("1.2.3.4".into()),
            user_id: Some("10086".into()),
            room_id: Some("987654321".into()),
            total_num: Some(2),
            media_type: Some("audio".into()),
            call_type: Some("single".into()),
            call_id: Some("n1".into()),
            role: Some("callee".into()),
            event: "call_end".into(),
            call_result: "normal_end".into(),
            event_time: t,
            start_call_ts: Some(t - 70),
            accept_ts: Some(t - 60),
            end_ts: Some(t),
            extra,
        }
    );
    assert_eq!(e.ring_secs(), Some(10));
    assert_eq!(e.talk_secs(), Some(60));
    let j = e.to_json();
    assert_eq!(j["extra"]["Vendor"]["Model"], "X1");

    // Absent timestamps stay absent; a missing EventTime is the arrival time.
    let before = now_secs();
    let body =
        json!({"UserId": "u", "CallId": "n2", "MediaType": "VIDEO", "CallType": "MultiCall"});
    d.post(&a_query("caller_start_call"), &body.to_string())
        .await
        .assert_ok();
    let e = next_event(&mut rx).await;
    assert_eq!((e.start_call_ts, e.accept_ts, e.end_ts), (None, None, None));
    assert_eq!((e.ring_secs(), e.talk_secs()), (None, None));
    assert!(e.event_time >= before && e.event_time <= now_secs());
    assert_eq!(e.media_type.as_deref(), Some("video"));
    assert_eq!(e.call_type.as_deref(), Some("group"));
    assert!(e.extra.is_empty());

    // Millisecond EventTime and numeric strings are accepted too.
    let body = json!({"UserId": "u", "CallId": "n3", "EventTime": (t * 1000 + 123).to_string(), "TotalNum": "3"});
    d.post(&a_query("callee_receive_call"), &body.to_string())
        .await
        .assert_ok();
    let e = next_event(&mut rx).await;
    assert_eq!((e.event_time, e.total_num), (t, Some(3)));
    d.stop().await;
}

#[tokio::test]
async fn family_b_start_call_gives_caller_and_callee_events() {
    let d = TestDaemon::start(|_| {}).await;
    let mut rx = d.subscribe();
    let t = now_secs();
    let body = json!({
        "CallbackCommand": "Call.CallbackAfterStartCall",
        "CallInfo": {"CallId": "b1", "CallMediaType": "Video", "ChatGroupId": "",
                     "RoomId": 4242, "RoomIdType": 1},
        "UserList": [{"User_Account": "alice", "Status": "Calling"},
                     {"User_Account": 20001, "Status": "Waiting"}],
        "EventTime": t * 1000 + 456,
        "Trace": "x-1",
    });
    d.post(&b_query("Call.CallbackAfterStartCall"), &body.to_string())
        .await
        .assert_ok();
    let caller = next_event(&mut rx).await;
    let callee = next_event(&mut rx).await;
    assert_no_event(&mut rx);
    for e in [&caller, &callee] {
        assert_eq!(e.command, "Call.CallbackAfterStartCall");
        assert_eq!(e.sdkappid, 1_400_000_001);
        assert_eq!(e.platform.as_deref(), Some("Android"));
        assert_eq!(e.client_ip.as_deref(), Some("5.6.7.8"));
        assert_eq!(e.call_id.as_deref(), Some("b1"));
        assert_eq!(e.room_id.as_deref(), Some("4242"));
        assert_eq!(e.media_type.as_deref(), Some("video"));
        assert_eq!(e.call_type.as_deref(), Some("single"));
        assert_eq!(e.total_num, Some(2));
        assert_eq!(e.event_time, t, "EventTime is in ms for family B");
        assert_eq!(e.start_call_ts, Some(t));
        assert_eq!(e.extra.get("Trace"), Some(&json!("x-1")));
    }
    assert_eq!(
        (
            caller.event.as_str(),
            caller.role.as_deref(),
            caller.user_id.as_deref()
        ),
        ("start_call", Some("caller"), Some("alice"))
    );
    assert_eq!(
        (
            callee.event.as_str(),
            callee.role.as_deref(),
            callee.user_id.as_deref()
        ),
        ("receive_call", Some("callee"), Some("20001"))
    );

    // A group call: a chat group or more than two users.
    let body = json!({
        "CallbackCommand": "Call.CallbackAfterStartCall",
        "CallInfo": {"CallId": "b2", "CallMediaType": "Audio", "ChatGroupId": "@TGS#1", "RoomId": "r2"},
        "UserList": [{"User_Account": "a", "Status": "Calling"}, {"User_Account": "b", "Status": "Waiting"},
                     {"User_Account": "c", "Status": "Waiting"}],
        "EventTime": t * 1000,
    });
    d.post(&b_query("Call.CallbackAfterStartCall"), &body.to_string())
        .await
        .assert_ok();
    let evs = [
        next_event(&mut rx).await,
        next_event(&mut rx).await,
        next_event(&mut rx).await,
    ];
    let names: Vec<_> = evs.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["start_call", "receive_call", "receive_call"]);
    assert!(evs.iter().all(
        |e| e.call_type.as_deref() == Some("group") && e.media_type.as_deref() == Some("audio")
    ));
    assert_eq!(evs[0].extra.get("ChatGroupId"), Some(&json!("@TGS#1")));
    d.stop().await;
}

#[tokio::test]
async fn family_b_end_call_is_one_call_end_event() {
    let d = TestDaemon::start(|_| {}).await;
    let mut rx = d.subscribe();
    let t = now_secs();
    for (i, (result, want)) in [
        ("Cancel", "cancel"),
        ("Reject", "reject"),
        ("NotAnswer", "not_answer"),
        ("NormalEnd", "normal_end"),
        ("CallBusy", "call_busy"),
        ("Interrupt", "interrupt"),
        ("Offline", "offline"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = json!({
            "CallbackCommand": "Call.CallbackAfterEndCall",
            "CallRecord": {"CallId": format!("e{i}"), "Caller_Account": 30001, "MediaType": "Audio",
                "CallType": if i == 0 { "MultiCall" } else { "SingleCall" },
                "StartTime": t - 100, "AcceptTime": t - 90, "EndTime": t,
                "CallResult": result, "CalleeList_Account": ["bob", 7], "RoomId": "r9", "RoomIdType": 2},
            "EventTime": t * 1000,
        });
        d.post(&b_query("Call.CallbackAfterEndCall"), &body.to_string())
            .await
            .assert_ok();
        let e = next_event(&mut rx).await;
        assert_eq!(e.event, "call_end");
        assert_eq!(e.call_result, want);
        assert_eq!(e.role.as_deref(), Some("caller"));
        assert_eq!(e.user_id.as_deref(), Some("30001"));
        assert_eq!(e.call_id, Some(format!("e{i}").into()));
        assert_eq!(
            e.call_type.as_deref(),
            Some(if i == 0 { "group" } else { "single" })
        );
        assert_eq!(e.media_type.as_deref(), Some("audio"));
        assert_eq!(
            (e.start_call_ts, e.accept_ts, e.end_ts),
            (Some(t - 100), Some(t - 90), Some(t))
        );
        assert_eq!((e.ring_secs(), e.talk_secs()), (Some(10), Some(90)));
        assert_eq!(e.event_time, t);
        assert_eq!(e.total_num, Some(3));
        assert_eq!(e.room_id.as_deref(), Some("r9"));
        assert_eq!(e.extra["CalleeList_Account"], json!(["bob", "7"]));
    }
    assert_no_event(&mut rx);
    d.stop().await;
}

#[tokio::test]
async fn family_b_member_changed_maps_every_action_spelling() {
    let d = TestDaemon::start(|_| {}).await;
    let mut rx = d.subscribe();
    let t = now_secs();
    let cases = [
        ("Answer", "accept_call", Some("callee")),
        ("Accept", "accept_call", Some("callee")),
        ("Reject", "reject_call", Some("callee")),
        ("NotAnswer", "not_answer_call", Some("callee")),
        ("Hangup", "call_end", None),
        ("Hang Up", "call_end", None),
        ("Join", "join_in_group_call", Some("callee")),
        ("Offline", "call_interrupted", None),
        ("Invite", "invite_user", Some("callee")),
        ("Invited", "invite_user", Some("callee")),
        ("Cancel_Invite", "call_canceled", Some("callee")),
        ("Canncel_Invite", "call_canceled", Some("callee")),
    ];
    let changed: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, (action, _, _))| {
            // Accounts arrive as strings or numbers.
            let account = if i % 2 == 0 {
                json!(format!("m{i}"))
            } else {
                json!(50_000 + i)
            };
            json!({"User_Account": account, "ActionType": action})
        })
        .collect();
    let body = json!({
        "CallbackCommand": "Call.CallbackAfterMemberChanged", "CallId": "mc1",
        "UserList": ["m0", 50001, "m2"], "ChangedUserList": changed, "EventTime": t * 1000,
    });
    d.post(
        &b_query("Call.CallbackAfterMemberChanged"),
        &body.to_string(),
    )
    .await
    .assert_ok();
    for (i, (action, event, role)) in cases.iter().enumerate() {
        let e = next_event(&mut rx).await;
        assert_eq!(e.event, *event, "ActionType {action:?}");
        assert_eq!(e.role.as_deref(), *role, "ActionType {action:?}");
        let account = if i % 2 == 0 {
            format!("m{i}")
        } else {
            (50_000 + i).to_string()
        };
        assert_eq!(e.user_id, Some(account.into()));
        assert_eq!(e.call_id.as_deref(), Some("mc1"));
        assert_eq!(e.total_num, Some(3));
        assert_eq!(e.event_time, t);
        let result = if *event == "call_interrupted" {
            "offline"
        } else {
            ""
        };
        assert_eq!(e.call_result, result, "ActionType {action:?}");
    }
    assert_no_event(&mut rx);
    let m = d.metrics().await;
    let labels = [
        ("family", "call_callback"),
        ("command", "Call.CallbackAfterMemberChanged"),
        ("outcome", "accepted"),
    ];
    assert_eq!(callbacks(&m, &labels), 1.0);
    assert_eq!(
        metric(&m, "callwatch_events_total", &[]),
        cases.len() as f64
    );
    d.stop().await;
}

#[tokio::test]
async fn unknown_commands_are_accepted_and_counted() {
    let d = TestDaemon::start(|_| {}).await;
    let mut rx = d.subscribe();
    let t = now_secs();
    let body = json!({"UserId": "u1", "CallId": "x1", "EventTime": t, "NewField": true});
    d.post(&a_query("caller_future_feature"), &body.to_string())
        .await
        .assert_ok();
    let e = next_event(&mut rx).await;
    assert_eq!(e.event, "future_feature");
    assert_eq!(e.extra.get("NewField"), Some(&json!(true)));

    let body = json!({"CallbackCommand": "Call.CallbackAfterSomethingNew", "CallId": "x2",
        "EventTime": t * 1000, "Detail": {"a": 1}});
    d.post(
        &b_query("Call.CallbackAfterSomethingNew"),
        &body.to_string(),
    )
    .await
    .assert_ok();
    let e = next_event(&mut rx).await;
    assert_eq!(e.call_id.as_deref(), Some("x2"));
    assert_eq!(e.event_time, t);
    assert_eq!(e.extra.get("Detail"), Some(&json!({"a": 1})));

    let m = d.metrics().await;
    for family in ["call_event", "call_callback"] {
        let labels = [
            ("family", family),
            ("command", "other"),
            ("outcome", "accepted"),
        ];
        assert_eq!(callbacks(&m, &labels), 1.0, "{family}");
    }
    assert_eq!(journal_records(&d.state_dir()).len(), 2);
    d.stop().await;
}

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

#[tokio::test]
async fn a_retried_delivery_is_acknowledged_but_journaled_once() {
    let d = TestDaemon::start(|_| {}).await;
    let mut rx = d.subscribe();
    let body = json!({"UserId": "dup", "CallId": "d1", "EventTime": now_secs(), "Role": "caller"})
        .to_string();
    let q = a_query("caller_start_call");
    d.post(&q, &body).await.assert_ok();
    d.post(&q, &body).await.assert_ok();
    next_event(&mut rx).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_no_event(&mut rx);
    assert_eq!(journal_records(&d.state_dir()).len(), 1);
    let m = d.metrics().await;
    assert_eq!(metric(&m, "callwatch_dedup_hits_total", &[]), 1.0);
    let dup = [("command", "caller_start_call"), ("outcome", "duplicate")];
    assert_eq!(callbacks(&m, &dup), 1.0);

    // Another user, command or event time is another delivery.
    let other =
        json!({"UserId": "dup2", "CallId": "d1", "EventTime": now_secs(), "Role": "caller"});
    d.post(&q, &other.to_string()).await.assert_ok();
    d.post(&a_query("caller_cancel_call"), &body)
        .await
        .assert_ok();
    assert_eq!(journal_records(&d.state_dir()).len(), 3);

    // Dedup survives a restart: it is rebuilt from the journal.
    let dir = d.stop().await;
    let d = TestDaemon::start_in(dir, |_| {}).await;
    d.post(&q, &body).await.assert_ok();
    assert_eq!(journal_records(&d.state_dir()).len(), 3);
    let m = d.metrics().await;
    assert_eq!(metric(&m, "callwatch_dedup_hits_total", &[]), 1.0);
    d.stop().await;
}

#[tokio::test]
async fn a_200_means_the_callback_is_already_in_the_journal() {
    let d = TestDaemon::start(|_| {}).await;
    for i in 0..20 {
        let body = json!({"UserId": format!("j{i}"), "EventTime": now_secs()}).to_string();
        d.post(&a_query("caller_start_call"), &body)
            .await
            .assert_ok();
        // Read right after the reply, without any flush or shutdown.
        let recs = journal_records(&d.state_dir());
        assert_eq!(recs.len(), i + 1);
        let last = recs.last().expect("a record");
        assert_eq!(last.body["UserId"], json!(format!("j{i}")));
        assert_eq!(last.query["command"], "caller_start_call");
        assert!(last.received_at.is_some());
    }
    d.stop().await;
}

fn sorted_json(events: &[Event]) -> Vec<String> {
    let mut v: Vec<String> = events
        .iter()
        .map(|e| serde_json::to_string(e).expect("event serialises"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn journal_lines_decode_to_the_events_delivered_live() {
    let d = TestDaemon::start(|_| {}).await;
    let mut rx = d.subscribe();
    let trace = fixture_trace(600);
    let posts = futures_util::stream::iter(trace.iter().map(|r| {
        let q = query_string(&r.query);
        let body = r.body.to_string();
        let d = &d;
        async move { d.post(&q, &body).await }
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await;
    for r in &posts {
        r.assert_ok();
    }
    let mut live = Vec::new();
    while let Ok(e) = rx.try_recv() {
        live.push(e);
    }
    assert_eq!(live.len(), trace.len(), "one event per family A callback");
    let dir = d.stop().await;

    let records = journal_records(&dir.path().join("state"));
    assert_eq!(records.len(), trace.len());
    let replayed: Vec<Event> = records
        .iter()
        .flat_map(|r| decode_record(r).events)
        .collect();
    assert_eq!(sorted_json(&replayed), sorted_json(&live));
    // Journaled exactly as it came in: same query and body.
    let key = |q: &serde_json::Map<String, Value>, b: &Value| {
        (
            q.clone().into_iter().collect::<BTreeMap<_, _>>(),
            b.to_string(),
        )
    };
    let mut sent: Vec<_> = trace
        .iter()
        .map(|r| format!("{:?}", key(&r.query, &r.body)))
        .collect();
    let mut kept: Vec<_> = records
        .iter()
        .map(|r| format!("{:?}", key(&r.query, &r.body)))
        .collect();
    sent.sort();
    kept.sort();
    assert_eq!(sent, kept);
}

#[tokio::test]
async fn ops_endpoints_and_metrics() {
    let d = TestDaemon::start(|_| {}).await;
    let r = d.get("/healthz").await;
    assert_eq!(r.status, 200);
    let r = d.get("/readyz").await;
    assert_eq!(r.status, 200);
    assert!(d.daemon.is_ready());

    let body = json!({"UserId": "m", "CallId": "m1", "EventTime": now_secs()}).to_string();
    let q = a_query("callee_accept_call");
    d.post(&q, &body).await.assert_ok();
    d.post(&q, &body).await.assert_ok();
    d.post(&q, "[]").await.assert_fail(400, &["object"]);
    let m = d.metrics().await;
    let labels = |outcome| {
        [
            ("family", "call_event"),
            ("command", "callee_accept_call"),
            ("outcome", outcome),
        ]
    };
    assert_eq!(callbacks(&m, &labels("accepted")), 1.0);
    assert_eq!(callbacks(&m, &labels("duplicate")), 1.0);
    assert_eq!(
        callbacks(&m, &[("family", "call_event"), ("outcome", "bad_request")]),
        1.0
    );
    assert_eq!(metric(&m, "callwatch_dedup_hits_total", &[]), 1.0);
    assert_eq!(metric(&m, "callwatch_events_total", &[]), 1.0);
    assert_eq!(metric(&m, "callwatch_journal_appends_total", &[]), 1.0);
    let written = metric(&m, "callwatch_journal_written_bytes_total", &[]);
    assert!(written > body.len() as f64, "{written}");
    assert_eq!(metric(&m, "callwatch_journal_size_bytes", &[]), written);
    assert!(metric(&m, "callwatch_journal_fsync_seconds_count", &[]) >= 1.0);
    assert!(
        m.contains("callwatch_journal_fsync_seconds_bucket{le="),
        "{m}"
    );
    assert!(m.contains("# TYPE callwatch_journal_fsync_seconds histogram"));
    d.stop().await;
}

#[test]
fn fixture_shifting_keeps_the_trace_consistent() {
    let t = fixture_trace(60);
    assert_eq!(t.len(), 578);
    let first = t[0].received_at.expect("received_at") / 1000;
    assert!((first - (now_secs() - 60)).abs() <= 1);
    for r in &t {
        let et = r.body["EventTime"].as_i64().expect("EventTime");
        let at = r.received_at.expect("received_at") / 1000;
        assert!(
            at - et >= -1 && at - et < 60,
            "arrival follows the event: {r:?}"
        );
    }
}
