//! Hostile input over real HTTP to an in-process daemon: 100 000 random
//! and mutated callbacks (truncated, wrong types, huge numbers, deep
//! nesting, invalid UTF-8, NUL bytes, duplicate keys, odd percent-encoding
//! in the query) on keep-alive connections, 16 at a time. Every answer must
//! be 2xx or 4xx, the server must stay up, and the journal must hold only
//! well-formed lines.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::daemon::{example_rules, Home};
use super::trace;

const REQUESTS: usize = 100_000;
const CONCURRENCY: usize = 16;

/// Real callbacks of both families to mutate: (query, body).
fn seeds() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = trace::shifted(1_767_225_600)
        .into_iter()
        .step_by(97)
        .map(|c| (c.query, c.body))
        .collect();
    let b = |cmd: &str| {
        format!("SdkAppid=1400000001&CallbackCommand={cmd}&contenttype=json&ClientIP=1.2.3.4&OptPlatform=Android")
    };
    out.push((
        b("Call.CallbackAfterStartCall"),
        json!({"CallbackCommand": "Call.CallbackAfterStartCall",
               "CallInfo": {"CallId": "c1", "CallMediaType": "Video", "ChatGroupId": "", "RoomId": "r1", "RoomIdType": 1},
               "UserList": [{"User_Account": "alice", "Status": "Calling"}, {"User_Account": 42, "Status": "Waiting"}],
               "EventTime": 1_767_225_600_123i64}),
    ));
    out.push((
        b("Call.CallbackAfterEndCall"),
        json!({"CallbackCommand": "Call.CallbackAfterEndCall",
               "CallRecord": {"CallId": "c1", "Caller_Account": "alice", "MediaType": "Audio", "CallType": "SingleCall",
                              "StartTime": 1_767_225_600, "AcceptTime": 1_767_225_605, "EndTime": 1_767_225_700,
                              "CallResult": "NormalEnd", "CalleeList_Account": ["bob"], "RoomId": 7, "RoomIdType": 2},
               "EventTime": 1_767_225_700_000i64}),
    ));
    out.push((
        b("Call.CallbackAfterMemberChanged"),
        json!({"CallbackCommand": "Call.CallbackAfterMemberChanged", "CallId": "c1",
               "UserList": ["alice", "bob"],
               "ChangedUserList": [{"User_Account": "bob", "ActionType": "Hang Up"}],
               "EventTime": 1_767_225_700_000i64}),
    ));
    out
}

fn random_value(rng: &mut StdRng) -> Value {
    match rng.random_range(0..8) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>() * 1e300),
        4 => json!([1, "two", null, {"x": []}]),
        5 => json!({"nested": {"deeper": [1.5, -0.0]}}),
        6 => json!(""),
        _ => json!("ünïcødé \u{1F4DE} \u{0} \u{FFFF}"),
    }
}

const HUGE: &[&str] = &[
    "1e999",
    "-1e400",
    "123456789012345678901234567890",
    "18446744073709551616",
    "-9223372036854775809",
    "9223372036854775807",
    "0.00000000000000000000000000000000000000000000000001",
    "1.7976931348623157e309",
    "-0",
    "1E+2147483648",
];

fn insert_at(mut bytes: Vec<u8>, at: usize, what: &[u8]) -> Vec<u8> {
    let at = at.min(bytes.len());
    bytes.splice(at..at, what.iter().copied());
    bytes
}

/// `body` with the value of one field replaced by the raw JSON `text`.
fn with_raw_field(body: &Value, rng: &mut StdRng, text: &str) -> Vec<u8> {
    let Some(obj) = body.as_object() else {
        return body.to_string().into_bytes();
    };
    let keys: Vec<&String> = obj.keys().collect();
    let field = keys[rng.random_range(0..keys.len())];
    let mut out = String::from("{");
    for (i, (k, v)) in obj.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let value = if k == field {
            text.to_string()
        } else {
            v.to_string()
        };
        out.push_str(&format!("{}:{value}", Value::from(k.as_str())));
    }
    out.push('}');
    out.into_bytes()
}

fn mutate_body(rng: &mut StdRng, body: &Value) -> Vec<u8> {
    let valid = body.to_string().into_bytes();
    let at = rng.random_range(0..=valid.len());
    match rng.random_range(0..11) {
        0 => valid[..at].to_vec(),
        1 => {
            let v = random_value(rng).to_string();
            with_raw_field(body, rng, &v)
        }
        2 => {
            let huge = HUGE[rng.random_range(0..HUGE.len())];
            with_raw_field(body, rng, huge)
        }
        3 => {
            let depth = rng.random_range(1..3_000);
            let (open, close) = if rng.random() {
                ("[", "]")
            } else {
                ("{\"a\":", "}")
            };
            let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            if rng.random() {
                nested.into_bytes()
            } else {
                with_raw_field(body, rng, &nested)
            }
        }
        4 => {
            let bad: &[&[u8]] = &[
                b"\xff",
                b"\xc3\x28",
                b"\xed\xa0\x80",
                b"\xf4\x90\x80\x80",
                b"\x80",
            ];
            insert_at(valid, at, bad[rng.random_range(0..bad.len())])
        }
        5 => {
            if rng.random() {
                insert_at(valid, at, b"\0")
            } else {
                with_raw_field(body, rng, "\"a\\u0000b\"")
            }
        }
        6 => {
            let mut s = valid;
            s.pop();
            let dup = format!(",\"UserId\":{},\"EventTime\":\"soon\"}}", random_value(rng));
            s.extend_from_slice(dup.as_bytes());
            s
        }
        7 => (0..rng.random_range(0..300))
            .map(|_| rng.random())
            .collect(),
        8 => {
            let mut s = valid;
            for _ in 0..rng.random_range(1..6) {
                if !s.is_empty() {
                    let i = rng.random_range(0..s.len());
                    s[i] = rng.random();
                }
            }
            s
        }
        9 => with_raw_field(body, rng, "\"\\ud800\""),
        _ => valid,
    }
}

/// Printable ASCII (no `#`, which would start a fragment) and odd escapes.
fn mutate_query(rng: &mut StdRng, query: &str) -> String {
    let odd = [
        "%", "%z", "%zz", "%00", "%ff%fe", "%C3%28", "%25", "+", "%2B", "&&", "=", "==", "%E2%82",
        ";", "%u0041",
    ];
    let mut q = query.to_string();
    match rng.random_range(0..8) {
        0 => {
            let at = rng.random_range(0..=q.len());
            q.insert_str(at, odd[rng.random_range(0..odd.len())]);
        }
        1 => q = q.replacen("sdkappid=1400000001", "sdkappid=99999999999999999999999", 1),
        2 => q.push_str("&sdkappid=%00&command=&command=caller_start_call"),
        3 => q.push_str(&format!("&pad={}", "x".repeat(rng.random_range(0..6000)))),
        4 => {
            q = q
                .split('&')
                .filter(|_| rng.random_bool(0.7))
                .collect::<Vec<_>>()
                .join("&")
        }
        5 => {
            q = (0..rng.random_range(0..80))
                .map(|_| {
                    let c = rng.random_range(0x21u8..0x7f);
                    if c == b'#' {
                        '%'
                    } else {
                        c as char
                    }
                })
                .collect()
        }
        6 => q = q.replace('=', "=%20"),
        _ => {}
    }
    q
}

/// A request for a failure message, cut to a readable size.
fn show(query: &str, body: &[u8]) -> String {
    let cut = |s: String| s.chars().take(300).collect::<String>();
    format!(
        "?{} body {:?}",
        cut(query.to_string()),
        cut(String::from_utf8_lossy(body).into_owned())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_hostile_callbacks_get_only_2xx_or_4xx() {
    let home = Home::new(
        &example_rules(&["missed_call_streak", "call_failure_spike"]),
        "[server]\nqueue_capacity = 1000000\n[state]\nfsync = \"never\"\n[log]\nlevel = \"error\"\n",
    );
    let config = callwatch::config::Config::load(Some(&home.config_path())).expect("config");
    let daemon = callwatch::app::start(config).await.expect("start daemon");
    let base = format!("http://{}{}", daemon.addr, "/callback");
    let seed: u64 = rand::random();
    eprintln!("hostile input seed {seed}");
    let seeds = Arc::new(seeds());
    let statuses = Arc::new(Mutex::new(BTreeMap::<u16, u64>::new()));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .expect("client");
    let t = std::time::Instant::now();
    let mut tasks = Vec::new();
    for w in 0..CONCURRENCY {
        let (client, seeds, statuses, base) = (
            client.clone(),
            seeds.clone(),
            statuses.clone(),
            base.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (w as u64) << 32);
            for _ in 0..REQUESTS / CONCURRENCY {
                let (query, body) = &seeds[rng.random_range(0..seeds.len())];
                let q = mutate_query(&mut rng, query);
                let b = mutate_body(&mut rng, body);
                let r = client
                    .post(format!("{base}?{q}"))
                    .body(b.clone())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("no answer to {}: {e:?}", show(&q, &b)));
                let status = r.status().as_u16();
                assert!(
                    (200..500).contains(&status),
                    "{status} for {}",
                    show(&q, &b)
                );
                *statuses
                    .lock()
                    .expect("statuses")
                    .entry(status)
                    .or_insert(0) += 1;
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender task");
    }
    let elapsed = t.elapsed();
    let health = reqwest::get(format!("http://{}/healthz", daemon.addr))
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    daemon.shutdown().await.expect("shutdown");
    let mut lines = 0;
    for seg in callwatch::journal::segments(&callwatch::journal::journal_dir(&home.state_dir()))
        .expect("segments")
    {
        let file = std::io::BufReader::new(std::fs::File::open(&seg).expect("segment"));
        for r in callwatch::journal::read_records(&seg.display().to_string(), file) {
            r.expect("every journal line is a well-formed record");
            lines += 1;
        }
    }
    let statuses = statuses.lock().expect("statuses").clone();
    eprintln!("hostile input: {REQUESTS} requests in {elapsed:?}, statuses {statuses:?}, {lines} journaled");
    assert_eq!(
        statuses.values().sum::<u64>(),
        (REQUESTS / CONCURRENCY * CONCURRENCY) as u64
    );
    assert!(
        statuses.get(&200).is_some_and(|&n| n > 0),
        "some mutations stay valid"
    );
}
