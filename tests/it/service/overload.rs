//! Overload: a tiny engine queue and a rule that burns all of
//! `max_operations` on every event, flooded far faster than the engine can
//! evaluate. Some callbacks get 503 with `Retry-After`, memory stays
//! bounded, and every callback that got a 200 is journaled and evaluated
//! once the queue drains.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::daemon::{get_json, post_start_call, Home, Proc};

/// Spins until the operation limit stops it: every evaluation costs the
/// full `rules.max_operations`.
const SLOW: &str = r#"const RULE = #{ events: ["start_call"], window: "30m" };

fn check(w) {
    let n = 0;
    loop { n += 1; }
}
"#;

/// Resident set size of `proc` in KiB, from /proc.
fn rss_kib(proc: &Proc) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", proc.pid())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A metric's value from the Prometheus text (first sample of `name`).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split([' ', '{']).next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_gets_503_bounded_memory_and_every_200_processed() {
    // The CPU budget is off: this test is about the queue, and the slow
    // rule must keep evaluating every callback.
    let home = Home::new(
        &[("slow", SLOW)],
        "[server]\nqueue_capacity = 4\n[rules]\ntick = \"1s\"\ncpu_budget = 0\n",
    );
    let daemon = home.start().await;
    let ok = Arc::new(AtomicU64::new(0));
    let busy = Arc::new(AtomicU64::new(0));
    let client = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(4);
    let mut senders = Vec::new();
    for s in 0..32 {
        let (client, ok, busy) = (client.clone(), ok.clone(), busy.clone());
        let url = home.url("/callback?sdkappid=1400000001&command=caller_start_call");
        senders.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < until {
                i += 1;
                let r = post_start_call(&client, &url, &format!("u{s}"), &format!("{s}-{i}")).await;
                match r.status().as_u16() {
                    200 => ok.fetch_add(1, Ordering::Relaxed),
                    503 => {
                        assert_eq!(
                            r.headers().get("retry-after").map(|v| v.as_bytes()),
                            Some(&b"1"[..]),
                            "503 carries Retry-After"
                        );
                        busy.fetch_add(1, Ordering::Relaxed)
                    }
                    other => panic!("unexpected status {other} under overload"),
                };
            }
        }));
    }
    let mut max_rss = 0;
    while senders.iter().any(|s| !s.is_finished()) {
        max_rss = max_rss.max(rss_kib(&daemon));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in senders {
        s.await.expect("sender");
    }
    let (ok, busy) = (ok.load(Ordering::Relaxed), busy.load(Ordering::Relaxed));
    assert!(busy > 0, "a 4-slot queue must overflow ({ok} accepted)");
    assert!(ok > 0, "some callbacks accepted");
    assert!(max_rss < 300 * 1024, "RSS {max_rss} KiB under overload");

    // Drain, then every 200 has been evaluated by the slow rule once.
    let deadline = Instant::now() + Duration::from_secs(60);
    let evaluations = loop {
        let rules = get_json(&home.url("/api/v1/rules")).await;
        let n = rules["rules"][0]["evaluations"].as_u64().unwrap_or(0);
        if n >= ok || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(evaluations, ok, "evaluations = callbacks answered 200");
    let metrics = reqwest::get(home.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert_eq!(
        metric(&metrics, "callwatch_queue_rejections_total"),
        Some(busy as f64)
    );
    let journaled = callwatch::journal::read_journal(&home.state_dir())
        .expect("journal")
        .len() as u64;
    assert_eq!(journaled, ok, "journal holds exactly the 200s");
    eprintln!(
        "overload: {ok} accepted, {busy} refused with 503, peak RSS {} MiB",
        max_rss / 1024
    );
}
