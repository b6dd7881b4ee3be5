//! Connections cannot starve callbacks: thousands of idle sockets and
//! slow-header (slowloris) clients next to a normal callback, which is
//! still answered; the slow ones are cut at `header_read_timeout`, the
//! idle ones at `idle_timeout`; one connection over `max_connections` is
//! refused at once instead of waiting.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::daemon::Home;
use super::reload::post_event;
use crate::support::metric;

/// Whether the daemon closes `s` within `limit` (whatever it says first).
async fn closed_within(mut s: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

async fn metrics_text(home: &Home) -> String {
    reqwest::get(home.url("/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_connections_neither_block_callbacks_nor_stay_open() {
    const IDLE: usize = 2000;
    const SLOW: usize = 50;
    let home = Home::new::<&str, &str>(
        &[],
        "[server]\nheader_read_timeout = \"2s\"\nidle_timeout = \"4s\"\n",
    );
    let _daemon = home.start().await;

    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(home.addr).await.expect("connect idle"));
    }
    let mut slow = Vec::with_capacity(SLOW);
    for _ in 0..SLOW {
        let mut s = TcpStream::connect(home.addr).await.expect("connect slow");
        s.write_all(b"POST /callback?sdkappid=1400000001 HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("start headers");
        slow.push(s);
    }
    // Each slow client sends one more header byte every 200 ms, for as
    // long as it is connected; returns how long each stayed connected.
    let trickle = tokio::spawn(async move {
        let started = Instant::now();
        let mut open: Vec<Option<TcpStream>> = slow.into_iter().map(Some).collect();
        let mut lasted = vec![None; open.len()];
        let mut buf = [0u8; 256];
        while started.elapsed() < Duration::from_secs(20) && open.iter().any(Option::is_some) {
            for (i, slot) in open.iter_mut().enumerate() {
                let Some(s) = slot else { continue };
                let closed = match s.try_read(&mut buf) {
                    Ok(_) => true,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        s.write_all(b"X").await.is_err()
                    }
                    Err(_) => true,
                };
                if closed {
                    lasted[i] = Some(started.elapsed());
                    *slot = None;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        lasted
    });

    // A normal callback next to all of them.
    let client = reqwest::Client::new();
    let t = Instant::now();
    post_event(&client, &home, "alice", "accept_call").await;
    let latency = t.elapsed();
    eprintln!(
        "callback answered in {:.1} ms next to {IDLE} idle and {SLOW} slowloris connections",
        latency.as_secs_f64() * 1000.0
    );
    assert!(latency < Duration::from_secs(2), "answered in {latency:?}");

    let lasted = trickle.await.expect("trickle task");
    for (i, l) in lasted.iter().enumerate() {
        let l = l.unwrap_or_else(|| panic!("slowloris client {i} still connected after 20 s"));
        assert!(
            l < Duration::from_secs(8),
            "slowloris client {i} lasted {l:?}"
        );
    }
    let closes: Vec<_> = idle
        .into_iter()
        .map(|s| tokio::spawn(closed_within(s, Duration::from_secs(15))))
        .collect();
    let mut slowest = Duration::ZERO;
    for (i, c) in closes.into_iter().enumerate() {
        let after = c
            .await
            .expect("read task")
            .unwrap_or_else(|| panic!("idle connection {i} still open"));
        slowest = slowest.max(after);
    }
    eprintln!(
        "slowloris cut after at most {:?}, idle connections closed within {slowest:?} more",
        lasted.iter().flatten().max()
    );
    let text = metrics_text(&home).await;
    let timed_out = metric(&text, "callwatch_connections_timed_out_total", &[]);
    assert!(timed_out >= (IDLE + SLOW) as f64, "{timed_out} timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_cap_is_refused_at_once() {
    const CAP: usize = 20;
    let home = Home::new::<&str, &str>(
        &[],
        "[server]\nmax_connections = 20\nidle_timeout = \"3s\"\n",
    );
    let _daemon = home.start().await;
    // The readiness probe's connection is closed by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(TcpStream::connect(home.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let t = Instant::now();
    let mut extra = TcpStream::connect(home.addr).await.expect("connect extra");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection over the cap was left waiting");
    let refused_in = t.elapsed();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || text.starts_with("HTTP/1.1 503"),
        "refusal: {text}"
    );
    eprintln!("connection over the cap refused in {refused_in:?}: {text:?}");

    // Once the held connections time out, callbacks are served again.
    for s in held {
        assert!(
            closed_within(s, Duration::from_secs(15)).await.is_some(),
            "held connection not closed by idle_timeout"
        );
    }
    post_event(&reqwest::Client::new(), &home, "bob", "accept_call").await;
    let text = metrics_text(&home).await;
    assert!(metric(&text, "callwatch_connections_refused_total", &[]) >= 1.0);
}
