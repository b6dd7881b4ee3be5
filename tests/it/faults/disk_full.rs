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
