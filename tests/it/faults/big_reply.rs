//! A receiver that answers 200 with a body of 1 GiB, generated as it is
//! sent, over a real TCP connection: the daemon (a spawned process) must
//! read at most 64 KiB of it, count the delivery as sent and stay small.
//! Reading the whole body took a daemon to 4.1 GB of RSS.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::delivery::harness::{now_secs, start_call, FIRST_CALL_RULE};
use crate::service::daemon::Home;
use crate::support::metric;

const GIB: u64 = 1 << 30;

/// Serves one endless-looking reply per connection; returns the address
/// and the bytes of body written before the client hung up.
async fn flood_server() -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                // The request: headers, then Content-Length bytes of body.
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = sock.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                    if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&req[..head_end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while req.len() < head_end + len {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let header = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {GIB}\r\n\r\n"
                );
                if sock.write_all(header.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                let mut sent = 0u64;
                while sent < GIB {
                    if sock.write_all(&chunk).await.is_err() {
                        break;
                    }
                    sent += chunk.len() as u64;
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (addr, written)
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_reply_body_is_read_only_up_to_64_kib() {
    let (addr, written) = flood_server().await;
    let extra = format!(
        "[alerting]\ngroup_wait = \"1s\"\ndefault_receivers = [\"flood\"]\n\n\
         [[receivers]]\nname = \"flood\"\ntype = \"webhook\"\nurl = \"http://{addr}/hook\"\ntimeout = \"120s\"\n"
    );
    let home = Home::new(&[("first_call", FIRST_CALL_RULE)], &extra);
    let proc = home.start().await;
    let pid = proc.pid();
    let before = peak_rss_kib(pid);

    let record = start_call("alice", "Android", "c1", now_secs());
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in record["query"].as_object().expect("query") {
        q.append_pair(k, v.as_str().unwrap_or_default());
    }
    let client = reqwest::Client::new();
    let r = client
        .post(home.url(&format!("/callback?{}", q.finish())))
        .json(&record["body"])
        .send()
        .await
        .expect("callback");
    assert_eq!(r.status(), 200);

    let t0 = Instant::now();
    let sent = loop {
        let m = client
            .get(home.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        let labels = [("receiver", "flood")];
        let sent = metric(
            &m,
            "callwatch_notifications_total",
            &[labels[0], ("outcome", "sent")],
        );
        let other = metric(&m, "callwatch_notifications_total", &labels) - sent;
        assert_eq!(other, 0.0, "the 200 was not counted as failed: {m}");
        if sent >= 1.0 || t0.elapsed() > Duration::from_secs(60) {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sent, 1.0, "a 200 with a huge body is a delivery");
    // Give the daemon time to read more, if it (wrongly) would.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let peak = peak_rss_kib(pid);
    let server_wrote = written.load(Ordering::Relaxed);
    eprintln!(
        "peak RSS {} MiB (before the alert {} MiB); server wrote {} MiB before the daemon hung up",
        peak / 1024,
        before / 1024,
        server_wrote >> 20
    );
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB");
    assert!(
        server_wrote < GIB / 4,
        "the daemon downloaded {server_wrote} bytes"
    );
    proc.kill();
}
