//! A full disk under the journal and the store: a real tmpfs filled up.
//! Callbacks that cannot be made durable get 503; once space is back the
//! next ones get 200, and every acknowledged callback is in the journal
//! exactly once, readable by recovery and by `callwatch replay`.

use std::collections::BTreeMap;
use std::path::Path;

use super::tmpfs::Tmpfs;
use crate::support::{fixture_trace, query_string, TestDaemon};
use callwatch::journal::{self, Record};

fn key(r: &Record) -> String {
    serde_json::json!({"query": r.query, "body": r.body}).to_string()
}

/// (query, body) of every journaled record, with counts; also asserts
/// that every line of every segment is readable.
fn journaled(state: &Path) -> BTreeMap<String, usize> {
    let mut bad = Vec::new();
    let mut out = BTreeMap::new();
    journal::for_each_line(state, |path, line_no, line| {
        match serde_json::from_slice::<Record>(line) {
            Ok(r) => *out.entry(key(&r)).or_insert(0) += 1,
            Err(e) => bad.push(format!("{path}:{line_no}: {e}")),
        }
    })
    .expect("reading the journal");
    assert!(bad.is_empty(), "unreadable journal lines: {bad:#?}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_with_503_and_keeps_every_acknowledged_callback() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let state = fs.path().join("state");
    let set_state = |c: &mut callwatch::config::Config| c.state.dir = state.clone();
    let d = TestDaemon::start(set_state).await;
    let trace = fixture_trace(30);
    let mut records = trace.iter();
    let mut acked: Vec<&Record> = Vec::new();
    for r in records.by_ref().take(5) {
        d.post(&query_string(&r.query), &r.body.to_string())
            .await
            .assert_ok();
        acked.push(r);
    }

    // Full: what still fits in the segment's last page is accepted, the
    // rest refused. One record is usually cut in half by ENOSPC.
    let filler = fs.fill();
    let mut refused = 0;
    for r in records.by_ref() {
        let reply = d.post(&query_string(&r.query), &r.body.to_string()).await;
        match reply.status {
            200 => acked.push(r),
            503 => {
                reply.assert_fail(503, &["not stored"]);
                refused += 1;
                if refused == 10 {
                    break;
                }
            }
            other => panic!(
                "disk full: expected 200 or 503, got {other}: {}",
                reply.text
            ),
        }
    }
    assert_eq!(refused, 10, "the trace ran out before the disk was full");
    let m = d.metrics().await;
    assert!(crate::support::metric(&m, "callwatch_journal_write_failures_total", &[]) >= 10.0);

    // Space again: the very next callbacks are acknowledged.
    std::fs::remove_file(&filler).expect("freeing space");
    for r in records.by_ref().take(20) {
        d.post(&query_string(&r.query), &r.body.to_string())
            .await
            .assert_ok();
        acked.push(r);
    }
    let dir = d.stop().await;

    let journal = journaled(&state);
    for r in &acked {
        assert_eq!(
            journal.get(&key(r)),
            Some(&1),
            "acknowledged once: {}",
            key(r)
        );
    }
    assert_eq!(journal.len(), acked.len(), "only acknowledged callbacks");

    // Recovery reads them all: re-delivering any of them is recognised as
    // a duplicate (the dedup set is rebuilt from the journal).
    let d = TestDaemon::start_in(dir, set_state).await;
    for r in &acked {
        d.post(&query_string(&r.query), &r.body.to_string())
            .await
            .assert_ok();
    }
    let m = d.metrics().await;
    assert_eq!(
        crate::support::metric(&m, "callwatch_dedup_hits_total", &[]),
        acked.len() as f64,
        "every acknowledged callback was read back on restart"
    );
    let dir = d.stop().await;

    // `replay` reads every segment without a bad line.
    let segments = journal::segments(&journal::journal_dir(&state)).expect("segments");
    assert!(!segments.is_empty());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .arg("replay")
        .arg("--rules")
        .arg(dir.path().join("rules"))
        .args(&segments)
        .current_dir(dir.path())
        .output()
        .expect("running replay");
    assert!(
        out.status.success(),
        "replay of the segments failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fires on a call start and resolves 3 s later, when the window empties:
/// a transition decided on a tick, with no callback (and no journal
/// write) involved.
const SHORT_RULE: &str = r#"
// Test rule: a call start fires for its caller until the window empties.
const RULE = #{
    events: ["start_call"],
    group_by: ["user_id"],
    window: "3s",
    severity: "warning",
};

fn check(w) {
    w.count() >= 1
}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transition_the_store_cannot_save_is_retried_and_then_notified() {
    use crate::delivery::harness::{add_receiver, webhook, Dirs, Running};
    use crate::notify::http_sink::{Canned, Sink};
    use std::time::{Duration, Instant};

    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let mut hook = Sink::start(Canned::new(200, "")).await;
    let dirs = Dirs::with_rules(&[("short", SHORT_RULE)]);
    let mut config = dirs.config();
    config.state.dir = fs.path().join("state");
    add_receiver(&mut config, "ops", webhook(hook.url("/hook")));
    let d = Running::start(config.clone()).await;
    d.start_call("alice", "Android", "c1").await;
    assert_eq!(hook.next().await.json()["status"], "firing");
    // Only once the delivery is recorded: a store that cannot record it
    // rightly sends it again.
    d.wait_notifications("ops", "sent", 1, Duration::from_secs(5))
        .await;

    // The disk fills up before the alert resolves.
    let filler = fs.fill();
    let t0 = Instant::now();
    loop {
        let m = d.metrics().await;
        if crate::support::metric(&m, "callwatch_store_write_failures_total", &[]) >= 2.0 {
            assert_eq!(
                crate::support::metric(&m, "callwatch_unsaved_transitions", &[]),
                1.0
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the store never failed: {m}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(early) = hook.try_next() {
        panic!(
            "notified before it was saved: {}",
            String::from_utf8_lossy(&early.body)
        );
    }

    // Space again: the resolve is saved on the next tick, then sent.
    std::fs::remove_file(&filler).expect("freeing space");
    let freed = Instant::now();
    let resolved = hook.next_within(Duration::from_secs(10)).await.json();
    eprintln!(
        "resolve notified {:?} after space came back",
        freed.elapsed()
    );
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["labels"]["user_id"], "alice");
    let m = d.metrics().await;
    assert_eq!(
        crate::support::metric(&m, "callwatch_unsaved_transitions", &[]),
        0.0
    );
    d.stop().await;

    // Saved for good: a restart neither resends nor loses anything.
    let d = Running::start(config).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        hook.try_next().is_none(),
        "a notification repeated after restart"
    );
    d.stop().await;
}
