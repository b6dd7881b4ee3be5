//! Every command of both families, over HTTP, decoded into the event model (docs/events.md)
//! event model, and unknown commands accepted and counted.

use super::*;

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
