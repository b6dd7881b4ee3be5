//! A store deleted under a journal that holds callbacks loses silences and
//! alert states: every active alert would be announced again as new. The
//! daemon keeps serving but must say so: `/readyz` detail, a metric, an
//! ERROR line. A first start and an ordinary restart say nothing.

use std::time::Duration;

use crate::support::{fixture_trace, metric, query_string, TestDaemon};

fn recreated(m: &str) -> f64 {
    metric(m, "callwatch_store_recreated", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_deleted_under_a_journal_is_reported() {
    let d = TestDaemon::start(|_| {}).await;
    let first = d.wait_ready(Duration::from_secs(60)).await;
    assert!(first.json().get("detail").is_none(), "{}", first.text);
    assert_eq!(
        recreated(&d.metrics().await),
        0.0,
        "a first start is not a loss"
    );
    let r = &fixture_trace(10)[0];
    d.post(&query_string(&r.query), &r.body.to_string())
        .await
        .assert_ok();
    let dir = d.stop().await;

    // An ordinary restart.
    let d = TestDaemon::start_in(dir, |_| {}).await;
    assert_eq!(recreated(&d.metrics().await), 0.0);
    let state = d.state_dir();
    let dir = d.stop().await;

    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(state.join(format!("callwatch.db{suffix}")));
    }
    let d = TestDaemon::start_in(dir, |_| {}).await;
    // Still serving: callbacks are safe.
    let ready = d.wait_ready(Duration::from_secs(60)).await;
    let detail = ready.json()["detail"].as_str().unwrap_or("").to_string();
    assert!(
        detail.contains("store") && detail.contains("lost"),
        "{}",
        ready.text
    );
    assert_eq!(recreated(&d.metrics().await), 1.0);
    d.stop().await;
}
