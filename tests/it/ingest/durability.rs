//! What a 200 promises: a retried delivery is journaled once, the callback
//! is in the journal before the reply, journal lines decode to the events
//! delivered live; and the ops endpoints and metrics.

use super::*;

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
async fn identical_deliveries_at_once_are_all_acknowledged_and_journaled_once() {
    // Retries that arrive while the first delivery's journal write is in
    // progress wait for its outcome; whichever way they interleave, every
    // one is answered 200 and the callback is journaled and evaluated once.
    let d = TestDaemon::start(|_| {}).await;
    let mut rx = d.subscribe();
    let body =
        json!({"UserId": "burst", "CallId": "b1", "EventTime": now_secs(), "Role": "caller"})
            .to_string();
    let q = a_query("caller_start_call");
    let replies = futures_util::future::join_all((0..32).map(|_| d.post(&q, &body))).await;
    for r in &replies {
        r.assert_ok();
    }
    next_event(&mut rx).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_no_event(&mut rx);
    assert_eq!(journal_records(&d.state_dir()).len(), 1);
    let m = d.metrics().await;
    assert_eq!(metric(&m, "callwatch_dedup_hits_total", &[]), 31.0);
    let accepted = [("command", "caller_start_call"), ("outcome", "accepted")];
    assert_eq!(callbacks(&m, &accepted), 1.0);
    assert_eq!(metric(&m, "callwatch_queue_depth", &[]), 0.0);
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
