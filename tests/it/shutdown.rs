//! SIGTERM on the real binary: in-flight callbacks are drained, every one
//! that was acknowledged is in the journal, the exit code is 0, the port is
//! closed afterwards, and no client (slow or idle) can hold the exit up.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::support::{client, journal_records, now_secs, post, query, Spawned, OK_BODY};

/// How one POST ended.
enum Outcome {
    Ok(String, String, i64),
    Refused,
    Other(u16),
}

fn start_query() -> String {
    query(&[
        ("sdkappid", "1400000001"),
        ("command", "caller_start_call"),
        ("contenttype", "json"),
        ("clientip", "9.9.9.9"),
        ("optplatform", "Web"),
    ])
}

async fn assert_port_closed(addr: std::net::SocketAddr) {
    match tokio::net::TcpStream::connect(addr).await {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("{addr} still accepts connections after shutdown"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_keeps_every_acknowledged_callback() {
    const CONNECTIONS: usize = 50;
    const PER_CONNECTION: usize = 40;
    let mut d = Spawned::start("shutdown_timeout = \"10s\"", "");
    d.wait_healthy(&client()).await;
    let base = Arc::new(d.base.clone());
    let done = Arc::new(AtomicUsize::new(0));
    let t = now_secs();

    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let base = base.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            // One client per task, so there are CONNECTIONS connections.
            let http = client();
            let mut out = Vec::with_capacity(PER_CONNECTION);
            for i in 0..PER_CONNECTION {
                let user = format!("c{c:02}u{i:03}");
                let call = format!("call-{c}-{i}");
                let time = t + i as i64;
                let body = json!({"UserId": user, "CallId": call, "EventTime": time,
                    "Role": "caller", "MediaType": "audio"})
                .to_string();
                let sent = http
                    .post(format!("{base}/callback?{}", start_query()))
                    .body(body)
                    .send()
                    .await;
                let outcome = match sent {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        match r.text().await {
                            Ok(text) if status == 200 && text == OK_BODY => {
                                Outcome::Ok(call, user, time)
                            }
                            // A reply cut off by the exit proves nothing.
                            Err(_) => Outcome::Refused,
                            Ok(_) => Outcome::Other(status),
                        }
                    }
                    Err(_) => Outcome::Refused,
                };
                done.fetch_add(1, Ordering::Relaxed);
                out.push(outcome);
            }
            out
        }));
    }

    // Signal once the load is well under way.
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::Relaxed) < CONNECTIONS * PER_CONNECTION / 4 {
        assert!(Instant::now() < deadline, "load never got going");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    d.signal("TERM");
    let status = tokio::task::block_in_place(|| d.wait_exit(Duration::from_secs(30)));
    assert_eq!(status.code(), Some(0), "exit status {status}");

    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for task in tasks {
        for o in task.await.expect("load task") {
            match o {
                Outcome::Ok(call, user, time) => acknowledged.push((call, user, time)),
                Outcome::Refused => refused += 1,
                Outcome::Other(s) => panic!("unexpected status {s} during shutdown"),
            }
        }
    }
    assert!(
        acknowledged.len() >= CONNECTIONS * PER_CONNECTION / 4,
        "{} acknowledged",
        acknowledged.len()
    );
    assert!(refused > 0, "SIGTERM came after the load ended");

    let journaled: HashSet<(String, String, i64)> = journal_records(&d.state_dir())
        .iter()
        .map(|r| {
            (
                r.body["CallId"].as_str().unwrap_or_default().to_string(),
                r.body["UserId"].as_str().unwrap_or_default().to_string(),
                r.body["EventTime"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|k| !journaled.contains(*k))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not journaled: {lost:?}");
    assert_port_closed(d.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_do_not_hold_up_shutdown() {
    let mut d = Spawned::start("shutdown_timeout = \"1s\"", "");
    let http = client();
    d.wait_healthy(&http).await;
    // An idle keep-alive connection in the client's pool.
    let body = json!({"UserId": "idle", "EventTime": now_secs()}).to_string();
    let r = post(&http, &d.base, &start_query(), &body).await;
    r.assert_ok();

    // A client that sends half a body and then stalls.
    let mut stalled = tokio::net::TcpStream::connect(d.addr)
        .await
        .expect("connecting");
    let head = format!(
        "POST /callback?{} HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{{\"UserId\":",
        start_query()
    );
    stalled
        .write_all(head.as_bytes())
        .await
        .expect("writing half a request");
    // Let the server start reading the stalled request.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    d.signal("TERM");
    // New connections are refused while the old ones drain.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if tokio::net::TcpStream::connect(d.addr).await.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "listener still open after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = tokio::task::block_in_place(|| d.wait_exit(Duration::from_secs(15)));
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?} with a 1 s shutdown_timeout",
        started.elapsed()
    );
    assert_port_closed(d.addr).await;
    drop(stalled);
    assert_eq!(journal_records(&d.state_dir()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_also_stops_cleanly_with_the_journal_intact() {
    let mut d = Spawned::start("", "[[apps]]\nsdkappid = 1400000001\n");
    let http = client();
    d.wait_healthy(&http).await;
    let body = json!({"UserId": "keep", "CallId": "k", "EventTime": now_secs()}).to_string();
    post(&http, &d.base, &start_query(), &body)
        .await
        .assert_ok();
    d.signal("INT");
    let status = tokio::task::block_in_place(|| d.wait_exit(Duration::from_secs(15)));
    assert_eq!(status.code(), Some(0), "exit status {status}");
    let recs = journal_records(&d.state_dir());
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].body["UserId"], "keep");
    assert_eq!(recs[0].query["optplatform"], "Web");
}
