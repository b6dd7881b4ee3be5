//! Receivers that lie or stall, against the whole daemon and real HTTP
//! servers: `Retry-After` values that panicked the worker, wrapped around
//! into the past or parked a notification forever; a receiver that is
//! down long enough to fill its queue; one that hangs on one request.

use std::time::{Duration, Instant};

use crate::delivery::harness::{add_receiver, webhook, Dirs, Running, FIRST_CALL_RULE};
use crate::notify::http_sink::{Canned, Sink};
use crate::support::metric;

/// 503 with `Retry-After: value`.
fn busy(value: &str) -> Canned {
    Canned::new(503, r#"{"error":"busy"}"#).header("retry-after", value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_retry_after_values_are_clamped_and_other_items_flow() {
    let mut hostile = Sink::start(busy("1e30")).await;
    let mut good = Sink::start(Canned::new(200, "")).await;
    let dirs = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
    let mut config = dirs.config();
    config.alerting.group_by = vec!["rule".into(), "user_id".into()];
    // The harness sets max_retry_interval = 1 s: every retry below must
    // come about 1 s after the attempt before, whatever the service says.
    add_receiver(&mut config, "hostile", webhook(hostile.url("/hook")));
    add_receiver(&mut config, "good", webhook(good.url("/hook")));
    let d = Running::start(config).await;
    d.start_call("alice", "Android", "c1").await;
    hostile.next().await;
    good.next().await;

    // What each answer asks, then the gap until the next attempt.
    let mut last = Instant::now();
    for value in [
        "10000000000000000",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "-5",
        "NaN",
        "garbage",
        "1e30",
    ] {
        hostile.reply(busy(value));
        // The answer already given decides this gap; this one the next.
        let req = hostile.next_within(Duration::from_secs(4)).await;
        let gap = last.elapsed();
        last = Instant::now();
        assert!(req.json()["alerts"][0]["labels"]["user_id"] == "alice");
        assert!(
            gap >= Duration::from_millis(500),
            "retried after {gap:?}: a huge Retry-After wrapped into the past"
        );
    }
    // The worker survived all of that: a new alert still reaches both.
    d.start_call("bob", "Android", "c2").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = hostile.next_within(Duration::from_secs(4)).await;
        if r.json()["alerts"][0]["labels"]["user_id"] == "bob" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bob never reached the hostile receiver"
        );
    }
    let r = good.next().await;
    assert_eq!(r.json()["alerts"][0]["labels"]["user_id"], "bob");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_retry_after_is_given_up_on_time() {
    let mut hostile = Sink::start(busy("Fri, 31 Dec 9999 23:59:59 GMT")).await;
    let dirs = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
    let mut config = dirs.config();
    config.alerting.max_retry_interval = Duration::from_secs(3600);
    config.alerting.give_up_after = Duration::from_secs(3);
    add_receiver(&mut config, "hostile", webhook(hostile.url("/hook")));
    let d = Running::start(config).await;
    d.start_call("alice", "Android", "c1").await;
    hostile.next().await;
    let t0 = Instant::now();
    loop {
        let m = d.metrics().await;
        let given_up = metric(
            &m,
            "callwatch_notifications_total",
            &[("receiver", "hostile"), ("outcome", "given_up")],
        );
        if given_up >= 1.0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(6),
            "not given up 6 s after the first attempt (give_up_after = 3 s)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("given up {:?} after the first attempt", t0.elapsed());
    let m = d.metrics().await;
    assert_eq!(metric(&m, "callwatch_outbox_size", &[]), 0.0);
    // No hot loop while it waited: at most one more attempt (at the
    // give-up time), not thousands.
    let mut extra = 0;
    while hostile.try_next().is_some() {
        extra += 1;
    }
    assert!(extra <= 1, "{extra} more attempts");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_receiver_queue_drops_the_oldest_and_counts_it() {
    let addr = crate::delivery::harness::free_port();
    let dirs = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
    let mut config = dirs.config();
    config.alerting.group_by = vec!["rule".into(), "user_id".into()];
    config.alerting.max_queued_per_receiver = 3;
    add_receiver(&mut config, "down", webhook(format!("http://{addr}/hook")));
    let d = Running::start(config).await;
    for i in 0..6 {
        d.start_call(&format!("u{i}"), "Android", &format!("c{i}"))
            .await;
        // One group each, queued in this order.
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    let m = d.metrics().await;
    assert_eq!(
        metric(
            &m,
            "callwatch_notifications_total",
            &[("receiver", "down"), ("outcome", "dropped")]
        ),
        3.0
    );
    assert_eq!(metric(&m, "callwatch_outbox_size", &[]), 3.0);
    // The receiver comes up: the three newest arrive.
    let mut sink = Sink::start_on(addr, Canned::new(200, "")).await;
    let mut users = Vec::new();
    for _ in 0..3 {
        let r = sink.next_within(Duration::from_secs(5)).await;
        users.push(
            r.json()["alerts"][0]["labels"]["user_id"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
    }
    users.sort();
    assert_eq!(users, ["u3", "u4", "u5"]);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_hanging_on_one_request_does_not_hold_back_the_others() {
    use warp::Filter;
    // A real server that hangs (past the receiver's timeout) on alice's
    // notification and answers everything else at once.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let route = warp::post()
        .and(warp::body::bytes())
        .then(move |body: bytes::Bytes| {
            let tx = tx.clone();
            async move {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let user = v["alerts"][0]["labels"]["user_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let _ = tx.send((user.clone(), Instant::now()));
                if user == "alice" {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                warp::reply()
            }
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());

    let dirs = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
    let mut config = dirs.config();
    config.alerting.group_by = vec!["rule".into(), "user_id".into()];
    add_receiver(&mut config, "slow", webhook(format!("http://{addr}/hook")));
    if let Some(r) = config.receivers.iter_mut().find(|r| r.name == "slow") {
        r.timeout = Duration::from_secs(20);
    }
    let d = Running::start(config).await;
    d.start_call("alice", "Android", "c1").await;
    let (first, hung_at) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("alice's attempt")
        .expect("server running");
    assert_eq!(first, "alice");
    d.start_call("bob", "Android", "c2").await;
    d.start_call("carol", "Android", "c3").await;
    let mut others = Vec::new();
    while others.len() < 2 {
        let (user, at) = tokio::time::timeout(Duration::from_secs(8), rx.recv())
            .await
            .expect("bob and carol are not held back by alice's hung request")
            .expect("server running");
        if user != "alice" {
            eprintln!(
                "{user} delivered {:?} after alice's request hung",
                at - hung_at
            );
            others.push(user);
        }
    }
    others.sort();
    assert_eq!(others, ["bob", "carol"]);
    // Shutdown waits for attempts in progress only up to its own limit.
    drop(d);
}
