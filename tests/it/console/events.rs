//! `/api/v1/events/*`: callbacks posted over HTTP appear on real
//! server-sent event streams read with reqwest, once they are journaled,
//! filtered exactly; a reader that does not read is told what it missed
//! and never slows ingest; the 65th stream is refused.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{journal_records, now_secs, query, TestDaemon};

const APP: &str = "1400000001";

/// One server-sent event: its fields (comment lines dropped).
#[derive(Debug, Default, Clone)]
struct Sse {
    id: Option<String>,
    event: String,
    data: String,
}

impl Sse {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("data is not JSON ({e}): {}", self.data))
    }
}

/// A stream being read, frame by frame.
struct Stream {
    resp: reqwest::Response,
    buf: String,
    /// Raw text of everything read, to check the exact line shapes.
    raw: String,
}

impl Stream {
    async fn open(d: &TestDaemon, query: &str) -> Stream {
        let resp = d
            .client
            .get(format!("{}/api/v1/events/stream?{query}", d.base))
            .send()
            .await
            .expect("GET /api/v1/events/stream");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        Stream {
            resp,
            buf: String::new(),
            raw: String::new(),
        }
    }

    /// The next event (comments skipped), within `limit`.
    async fn next(&mut self, limit: Duration) -> Option<Sse> {
        let deadline = Instant::now() + limit;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let mut sse = Sse::default();
                let mut fields = false;
                for line in frame.lines() {
                    if line.starts_with(':') || line.is_empty() {
                        continue;
                    }
                    let (k, v) = line.split_once(':').unwrap_or((line, ""));
                    let v = v.strip_prefix(' ').unwrap_or(v);
                    fields = true;
                    match k {
                        "id" => sse.id = Some(v.to_string()),
                        "event" => sse.event = v.to_string(),
                        "data" => sse.data.push_str(v),
                        _ => {}
                    }
                }
                if fields {
                    return Some(sse);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => {
                    let text = String::from_utf8_lossy(&bytes);
                    self.buf.push_str(&text);
                    self.raw.push_str(&text);
                }
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    async fn expect(&mut self) -> Sse {
        self.next(Duration::from_secs(5))
            .await
            .expect("an event within 5 s")
    }
}

fn a_query(platform: &str) -> String {
    query(&[
        ("sdkappid", APP),
        ("command", "callevent"),
        ("contenttype", "json"),
        ("clientip", "1.2.3.4"),
        ("optplatform", platform),
    ])
}

fn start_call(user: &str, call: &str, t: i64) -> String {
    json!({"UserId": user, "CallId": call, "RoomId": "r1", "Role": "CALLER",
           "Event": "START_CALL", "EventTime": t})
    .to_string()
}

#[tokio::test]
async fn the_stream_sends_each_journaled_callback_once_filtered_exactly() {
    // A short idle timeout: an open stream is an answer in progress, not
    // an idle connection, and must outlive it.
    let d = TestDaemon::start(|c| c.server.idle_timeout = Duration::from_secs(1)).await;
    let mut all = Stream::open(&d, "").await;
    let mut android = Stream::open(&d, "platform=Android").await;
    let mut alice = Stream::open(&d, &query(&[("user", "alice"), ("sdkappid", APP)])).await;
    let t = now_secs();
    d.post(&a_query("iOS"), &start_call("alice", "c1", t))
        .await
        .assert_ok();
    let first = all.expect().await;
    // Durable before it is shown.
    assert_eq!(journal_records(&d.state_dir()).len(), 1);
    d.post(&a_query("Android"), &start_call("bob", "c2", t))
        .await
        .assert_ok();
    // Tencent's retry of the first: acknowledged, not shown again.
    d.post(&a_query("iOS"), &start_call("alice", "c1", t))
        .await
        .assert_ok();
    d.post(&a_query("Android"), &start_call("alice", "c3", t))
        .await
        .assert_ok();

    assert_eq!(first.event, "callback");
    let v = first.json();
    assert_eq!(first.id.as_deref(), Some(v["seq"].to_string().as_str()));
    assert_eq!(v["sdkappid"], 1_400_000_001u64);
    assert_eq!(v["command"], "callevent");
    assert_eq!(v["event"], "start_call");
    assert_eq!(v["user_id"], "alice");
    assert_eq!(v["role"], "caller");
    assert_eq!(v["platform"], "iOS");
    assert_eq!(v["call_id"], "c1");
    assert_eq!(v["room_id"], "r1");
    assert_eq!(v["call_result"], Value::Null);
    assert_eq!(v["event_time"], t);
    let received = v["received_ms"].as_i64().expect("received_ms");
    assert!((received / 1000 - now_secs()).abs() < 60, "{received}");
    let mut calls = vec![v["call_id"].clone()];
    for _ in 0..2 {
        calls.push(all.expect().await.json()["call_id"].clone());
    }
    assert_eq!(calls, [json!("c1"), json!("c2"), json!("c3")]);
    assert!(
        all.next(Duration::from_millis(300)).await.is_none(),
        "the retry was shown"
    );
    let got: Vec<Value> = vec![
        android.expect().await.json()["call_id"].clone(),
        android.expect().await.json()["call_id"].clone(),
    ];
    assert_eq!(got, [json!("c2"), json!("c3")]);
    let got: Vec<Value> = vec![
        alice.expect().await.json()["call_id"].clone(),
        alice.expect().await.json()["call_id"].clone(),
    ];
    assert_eq!(got, [json!("c1"), json!("c3")]);
    assert!(alice.next(Duration::from_millis(200)).await.is_none());
    // The documented line shapes, byte for byte.
    assert!(
        all.raw.contains(&format!(
            "\nid: {}\nevent: callback\ndata: {{\"seq\":",
            v["seq"]
        )),
        "{}",
        all.raw
    );

    // Past the idle timeout, the streams still deliver.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    d.post(&a_query("Android"), &start_call("carol", "c4", t))
        .await
        .assert_ok();
    assert_eq!(all.expect().await.json()["user_id"], "carol");
    assert_eq!(android.expect().await.json()["user_id"], "carol");
    d.stop().await;
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_told_what_it_missed() {
    let d = TestDaemon::start(|_| {}).await;
    let mut stalled = Stream::open(&d, "").await;
    // Membership callbacks carry one event per changed member: 40
    // callbacks of 1000 members outgrow the broadcast, the reader's
    // queue and the socket buffers.
    let q = query(&[
        ("SdkAppid", APP),
        ("CallbackCommand", "Call.CallbackAfterMemberChanged"),
        ("contenttype", "json"),
    ]);
    let t0 = Instant::now();
    let (callbacks, members) = (40, 1000);
    for c in 0..callbacks {
        let changed: Vec<Value> = (0..members)
            .map(|m| json!({"User_Account": format!("u{m}"), "ActionType": "Answer"}))
            .collect();
        let body = json!({"CallbackCommand": "Call.CallbackAfterMemberChanged",
            "CallId": format!("call-{c}"), "UserList": [], "ChangedUserList": changed,
            "EventTime": now_secs() * 1000});
        d.post(&q, &body.to_string()).await.assert_ok();
    }
    eprintln!(
        "{} callbacks posted in {:?} while a stream was not read",
        callbacks,
        t0.elapsed()
    );
    let total = (callbacks * members) as u64;
    let (mut delivered, mut missed, mut lagged_items) = (0u64, 0u64, 0);
    let mut last_seq = 0u64;
    while delivered + missed < total {
        let e = stalled
            .next(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("stream ended at {delivered} + {missed} of {total}"));
        match e.event.as_str() {
            "callback" => {
                let seq = e.json()["seq"].as_u64().expect("seq");
                assert!(seq > last_seq, "{seq} after {last_seq}");
                last_seq = seq;
                delivered += 1;
            }
            "lagged" => {
                lagged_items += 1;
                missed += e.json()["missed"].as_u64().expect("missed");
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(delivered + missed, total);
    assert!(lagged_items > 0 && missed > 0, "the reader never lagged");
    eprintln!("delivered {delivered}, missed {missed} in {lagged_items} lagged item(s)");
    d.stop().await;
}

#[tokio::test]
async fn at_most_64_streams_and_a_place_frees_when_one_closes() {
    let d = TestDaemon::start(|_| {}).await;
    let mut open = Vec::new();
    for _ in 0..64 {
        open.push(Stream::open(&d, "").await);
    }
    let r = d.get("/api/v1/events/stream").await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.json()["error"].as_str().expect("error").contains("64"));
    drop(open.pop());
    // The reader task notices the closed connection shortly.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = d
            .client
            .get(format!("{}/api/v1/events/stream", d.base))
            .send()
            .await
            .expect("GET stream");
        if resp.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no place freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Shutdown ends every stream instead of waiting for them.
    let t = Instant::now();
    d.stop().await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[tokio::test]
async fn recent_and_per_minute_answer_from_memory() {
    let d = TestDaemon::start(|_| {}).await;
    let t = now_secs();
    for (i, platform) in ["iOS", "Android", "iOS"].iter().enumerate() {
        d.post(
            &a_query(platform),
            &start_call(&format!("u{i}"), &format!("c{i}"), t),
        )
        .await
        .assert_ok();
    }
    let r = d.get("/api/v1/events/recent").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let users: Vec<Value> = r.json()["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["user_id"].clone())
        .collect();
    assert_eq!(
        users,
        [json!("u2"), json!("u1"), json!("u0")],
        "newest first"
    );
    let r = d.get("/api/v1/events/recent?platform=iOS&limit=1").await;
    let events = r.json()["events"].as_array().expect("events").clone();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["user_id"], "u2");
    let r = d
        .get("/api/v1/events/recent?command=callevent&user=u1")
        .await;
    assert_eq!(r.json()["events"][0]["call_id"], "c1");
    let r = d.get("/api/v1/events/recent?limit=5000").await;
    assert_eq!(r.status, 200, "a limit over 1000 is capped");

    let r = d.get("/api/v1/events/per_minute?minutes=5").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let minutes = r.json()["minutes"].as_array().expect("minutes").clone();
    assert_eq!(minutes.len(), 5);
    let total: u64 = minutes
        .iter()
        .map(|m| m["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(total, 3);
    let starts: Vec<i64> = minutes
        .iter()
        .map(|m| m["minute_ms"].as_i64().expect("minute_ms"))
        .collect();
    assert!(
        starts.windows(2).all(|w| w[1] - w[0] == 60_000),
        "{starts:?}"
    );
    let r = d.get("/api/v1/events/per_minute").await;
    assert_eq!(r.json()["minutes"].as_array().map(Vec::len), Some(60));
    let r = d.get("/api/v1/events/per_minute?minutes=99999").await;
    assert_eq!(r.json()["minutes"].as_array().map(Vec::len), Some(1440));

    for (path, word) in [
        ("/api/v1/events/recent?limit=ten", "limit"),
        ("/api/v1/events/recent?sdkappid=x", "sdkappid"),
        ("/api/v1/events/recent?plaform=iOS", "plaform"),
        ("/api/v1/events/stream?user=a&limit=3", "limit"),
    ] {
        let r = d.get(path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        let msg = r.json()["error"].as_str().expect("error").to_string();
        assert!(msg.contains(word), "{path}: {msg}");
    }
    d.stop().await;
}
