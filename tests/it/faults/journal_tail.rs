//! A power cut can leave a segment ending in blocks of NULs. The segment
//! must still be dated by its last readable record: dated 0, it was
//! pruned by the first housekeeping run, and the restart after that
//! rebuilt empty windows and sent a false "resolved".

use std::io::Write;
use std::time::Duration;

use callwatch::journal;
use reqwest::Method;

use crate::delivery::harness::{add_receiver, webhook, Dirs, Running, FIRST_CALL_RULE};
use crate::notify::http_sink::{Canned, Sink};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_with_a_long_nul_tail_survives_restarts_and_keeps_its_alert() {
    let mut hook = Sink::start(Canned::new(200, "")).await;
    let dirs = Dirs::with_rules(&[("first_call", FIRST_CALL_RULE)]);
    let mut config = dirs.config();
    add_receiver(&mut config, "ops", webhook(hook.url("/hook")));

    let d = Running::start(config.clone()).await;
    d.start_call("alice", "Android", "c1").await;
    let fired = hook.next().await.json();
    assert_eq!(fired["status"], "firing");
    d.stop().await;

    // The power cut: 300 KiB of NULs after the last record.
    let jdir = journal::journal_dir(&dirs.state());
    let segments = journal::segments(&jdir).expect("segments");
    let with_data: Vec<_> = segments
        .iter()
        .filter(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) > 0)
        .collect();
    assert_eq!(with_data.len(), 1, "{segments:?}");
    let damaged = with_data[0].clone();
    let good_len = std::fs::metadata(&damaged).expect("len").len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&damaged)
        .and_then(|mut f| f.write_all(&vec![0u8; 300 * 1024]))
        .expect("appending NULs");

    // First restart: housekeeping runs at once and must keep the segment.
    let d = Running::start(config.clone()).await;
    let m = d.metrics().await;
    assert_eq!(
        crate::support::metric(&m, "callwatch_journal_damaged_tails_total", &[]),
        1.0,
        "the damaged tail is reported"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.stop().await;
    assert!(damaged.exists(), "the damaged segment was pruned");
    let len = std::fs::metadata(&damaged).expect("len").len();
    assert_eq!(len, good_len + 300 * 1024, "kept as found, for inspection");

    // Second restart: the window still holds alice's call, so the alert
    // stays firing and nothing (no false resolve) is sent.
    let d = Running::start(config).await;
    let (status, alerts) = d.api(Method::GET, "/api/v1/alerts", None, None).await;
    assert_eq!(status, 200);
    let text = alerts.to_string();
    assert!(
        text.contains("alice") && text.contains("firing"),
        "alice's alert is still firing: {text}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    if let Some(extra) = hook.try_next() {
        panic!(
            "unexpected notification after restart: {}",
            String::from_utf8_lossy(&extra.body)
        );
    }
    d.stop().await;
}
