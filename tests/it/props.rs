//! Property tests of the pure decoding path: no input from outside the
//! process makes `decode` (or the query and journal parsers) panic, and a
//! valid callback of either family decodes to the same events whether it
//! is decoded as received or after a trip through a journal line, where
//! the one-pass line decoder gives exactly what the general path gives.

use std::io::Cursor;

use proptest::prelude::*;
use serde_json::{Map, Value};

use callwatch::ingest::decode::{
    decode, decode_bytes, A_FIELDS, CALL_STATUS_COMMANDS, FAMILY_A_COMMANDS, FAMILY_B_COMMANDS,
};
use callwatch::ingest::line::{decode_line, LineError};
use callwatch::ingest::parse_query;
use callwatch::journal::{read_records, Record};

/// Any JSON value, nested a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Field names the decoders know (so wrong types on them are exercised)
/// mixed with arbitrary ones.
fn field_name() -> impl Strategy<Value = String> {
    // Family A's fields come from the decoder itself; family B's nested
    // names are listed here.
    let mut known: Vec<&str> = A_FIELDS.to_vec();
    known.extend([
        "CallbackCommand",
        "CallInfo",
        "CallMediaType",
        "ChatGroupId",
        "UserList",
        "User_Account",
        "Status",
        "CallRecord",
        "Caller_Account",
        "StartTime",
        "AcceptTime",
        "EndTime",
        "CalleeList_Account",
        "ChangedUserList",
        "ActionType",
    ]);
    prop_oneof![
        3 => prop::sample::select(known).prop_map(str::to_string),
        1 => "[A-Za-z_]{0,10}",
    ]
}

fn any_command() -> impl Strategy<Value = String> {
    let mut all: Vec<&str> = FAMILY_A_COMMANDS.to_vec();
    all.extend(CALL_STATUS_COMMANDS);
    all.extend(FAMILY_B_COMMANDS);
    prop_oneof![
        4 => prop::sample::select(all).prop_map(str::to_string),
        1 => ".{0,20}",
    ]
}

/// Query maps with the documented names (any case) and junk.
fn any_query() -> impl Strategy<Value = Map<String, Value>> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "sdkappid",
            "SdkAppid",
            "SDKAPPID",
            "command",
            "CallbackCommand",
            "callbackcommand",
            "optplatform",
            "OptPlatform",
            "clientip",
            "ClientIP",
            "contenttype",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z]{0,8}",
    ];
    let value = prop_oneof![
        any_command().prop_map(Value::from),
        any::<u64>().prop_map(|n| Value::from(n.to_string())),
        ".{0,16}".prop_map(Value::from),
        any_json(),
    ];
    prop::collection::vec((name, value), 0..8).prop_map(|kv| kv.into_iter().collect())
}

/// A body object whose known fields may hold any type.
fn known_fields_any_type() -> impl Strategy<Value = Value> {
    prop::collection::vec((field_name(), any_json()), 0..14)
        .prop_map(|kv| Value::Object(kv.into_iter().collect()))
}

fn case_variant(s: &str, upper: bool) -> String {
    if upper {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
            .unwrap_or_default()
    } else {
        s.to_string()
    }
}

fn account() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z][a-z0-9_]{0,10}".prop_map(Value::from),
        (1u64..10_000_000).prop_map(Value::from),
    ]
}

fn event_time_secs() -> impl Strategy<Value = i64> {
    1_600_000_000i64..1_900_000_000
}

/// A valid family A callback: query and body.
fn family_a() -> impl Strategy<Value = (Map<String, Value>, Value)> {
    let mut commands: Vec<&str> = FAMILY_A_COMMANDS.to_vec();
    commands.extend(CALL_STATUS_COMMANDS);
    (
        prop::sample::select(commands),
        any::<bool>(),
        account(),
        prop_oneof![
            "[0-9]{1,9}".prop_map(Value::from),
            (0u64..1 << 40).prop_map(Value::from)
        ],
        prop::sample::select(vec!["audio", "video", "Audio", "VIDEO"]),
        event_time_secs(),
        prop::option::of((0i64..60, 0i64..3600)),
        prop::option::of(any_json()),
        prop::sample::select(vec!["iOS", "Android", "Web", "miniProgram"]),
    )
        .prop_map(|(cmd, upper, user, room, media, t, ts, extra, platform)| {
            let mut q = Map::new();
            q.insert("sdkappid".into(), "1400000001".into());
            q.insert("command".into(), case_variant(cmd, upper).into());
            q.insert("contenttype".into(), "json".into());
            q.insert("clientip".into(), "10.0.0.1".into());
            q.insert("optplatform".into(), platform.into());
            let mut b = Map::new();
            b.insert("UserId".into(), user);
            b.insert("RoomId".into(), room);
            b.insert("TotalNum".into(), 2.into());
            b.insert("MediaType".into(), media.into());
            b.insert("CallType".into(), "single".into());
            b.insert("CallId".into(), format!("call-{t}").into());
            b.insert("EventTime".into(), t.into());
            if let Some((ring, talk)) = ts {
                b.insert("StartCallTs".into(), (t - ring - talk).into());
                b.insert("AcceptTs".into(), (t - talk).into());
                b.insert("EndTs".into(), t.into());
            }
            if let Some(x) = extra {
                b.insert("Extra".into(), x);
            }
            (q, Value::Object(b))
        })
}

/// A valid family B callback of any of the three commands.
fn family_b() -> impl Strategy<Value = (Map<String, Value>, Value)> {
    let t = event_time_secs();
    let users = prop::collection::vec(account(), 1..5);
    let actions = prop::collection::vec(
        (
            account(),
            prop::sample::select(vec![
                "Answer",
                "Accept",
                "Reject",
                "NotAnswer",
                "Hangup",
                "Hang Up",
                "Join",
                "Offline",
                "Invite",
                "Invited",
                "Cancel_Invite",
                "Canncel_Invite",
                "SomethingNew",
            ]),
        ),
        0..5,
    );
    let result = prop::sample::select(vec![
        "Cancel",
        "Reject",
        "NotAnswer",
        "NormalEnd",
        "CallBusy",
        "Interrupt",
        "Offline",
    ]);
    (0usize..3, t, users, actions, result, any::<bool>()).prop_map(
        |(which, t, users, actions, result, group)| {
            let cmd = FAMILY_B_COMMANDS[which];
            let body = match which {
                0 => serde_json::json!({
                    "CallbackCommand": cmd,
                    "CallInfo": {"CallId": format!("b{t}"), "CallMediaType": "Video",
                        "ChatGroupId": if group { "@TGS#g" } else { "" }, "RoomId": t, "RoomIdType": 1},
                    "UserList": users.iter().enumerate().map(|(i, u)| serde_json::json!(
                        {"User_Account": u, "Status": if i == 0 { "Calling" } else { "Waiting" }}
                    )).collect::<Vec<_>>(),
                    "EventTime": t * 1000 + 7,
                }),
                1 => serde_json::json!({
                    "CallbackCommand": cmd,
                    "CallRecord": {"CallId": format!("b{t}"), "Caller_Account": users[0],
                        "MediaType": "Audio", "CallType": if group { "MultiCall" } else { "SingleCall" },
                        "StartTime": t - 100, "AcceptTime": t - 90, "EndTime": t,
                        "CallResult": result, "CalleeList_Account": users[1..].to_vec(),
                        "RoomId": format!("r{t}"), "RoomIdType": 2},
                    "EventTime": t * 1000,
                }),
                _ => serde_json::json!({
                    "CallbackCommand": cmd,
                    "CallId": format!("b{t}"),
                    "UserList": users,
                    "ChangedUserList": actions.iter().map(|(u, a)| serde_json::json!(
                        {"User_Account": u, "ActionType": a}
                    )).collect::<Vec<_>>(),
                    "EventTime": t * 1000,
                }),
            };
            let mut q = Map::new();
            q.insert("SdkAppid".into(), "1400000001".into());
            q.insert("CallbackCommand".into(), cmd.into());
            q.insert("contenttype".into(), "json".into());
            q.insert("ClientIP".into(), "10.0.0.2".into());
            q.insert("OptPlatform".into(), "Android".into());
            (q, body)
        },
    )
}

/// Decodes the callback directly and after `to_line` → `read_records`.
fn assert_round_trip(query: Map<String, Value>, body: Value, received_at: i64) {
    let direct = decode(&query, &body, received_at).expect("valid callback decodes");
    assert!(!direct.events.is_empty() || body.get("ChangedUserList").is_some());
    let record = Record {
        received_at: Some(received_at),
        query,
        body,
    };
    let mut line = record.to_line();
    let fast = decode_line(&line).expect("journal line decodes in one pass");
    assert_eq!(
        (fast.received_at, &fast.decoded),
        (Some(received_at), &direct)
    );
    line.push(b'\n');
    let back: Vec<_> = read_records("prop.jsonl", Cursor::new(line))
        .map(|r| r.expect("journal line parses").1)
        .collect();
    assert_eq!(back, vec![record.clone()]);
    let again = decode(
        &back[0].query,
        &back[0].body,
        back[0].received_at.unwrap_or(0),
    )
    .expect("journaled callback decodes");
    assert_eq!(again, direct);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics_on_arbitrary_json(q in any_query(), body in any_json(), t in any::<i64>()) {
        let _ = decode(&q, &body, t);
    }

    #[test]
    fn decode_never_panics_on_known_fields_of_any_type(
        q in any_query(), body in known_fields_any_type(), t in any::<i64>()
    ) {
        let _ = decode(&q, &body, t);
    }

    #[test]
    fn one_pass_body_decoding_agrees_with_the_general_path(
        q in any_query(), body in prop_oneof![known_fields_any_type(), any_json()], t in any::<i64>()
    ) {
        let bytes = serde_json::to_vec(&body).expect("serialise");
        prop_assert_eq!(decode_bytes(&q, &bytes, t), decode(&q, &body, t));
    }

    #[test]
    fn decode_bytes_never_panics(q in any_query(), bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_bytes(&q, &bytes, 0);
    }

    #[test]
    fn query_and_journal_parsers_never_panic(raw in ".{0,64}", line in prop::collection::vec(any::<u8>(), 0..128)) {
        let _ = parse_query(&raw);
        for r in read_records("fuzz.jsonl", Cursor::new(line)) {
            let _ = r;
        }
    }

    #[test]
    fn one_pass_line_decoding_agrees_with_the_general_path(
        q in any_query(), body in prop_oneof![known_fields_any_type(), any_json()], t in any::<i64>()
    ) {
        let record = Record { received_at: Some(t), query: q, body };
        let line = record.to_line();
        let general = decode(&record.query, &record.body, t);
        match decode_line(&line) {
            Ok(fast) => prop_assert_eq!(Ok(fast.decoded), general),
            Err(LineError::Decode(e)) => prop_assert_eq!(Err(e), general),
            Err(LineError::Record(e)) => prop_assert!(false, "a written record must parse: {}", e),
        }
    }

    #[test]
    fn family_a_round_trips_through_the_journal((q, body) in family_a(), at in 1_600_000_000_000i64..1_900_000_000_000) {
        assert_round_trip(q, body, at);
    }

    #[test]
    fn family_b_round_trips_through_the_journal((q, body) in family_b(), at in 1_600_000_000_000i64..1_900_000_000_000) {
        assert_round_trip(q, body, at);
    }
}
