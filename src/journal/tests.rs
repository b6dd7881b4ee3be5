//! Unit tests of the journal: append, rotate, prune, cut back, read.

use std::fs::OpenOptions;
use std::io::Write;

use super::*;
use serde_json::json;

fn rec(i: i64) -> Record {
    Record {
        received_at: Some(i),
        query: json!({"sdkappid": "1", "command": "caller_start_call"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        body: json!({"UserId": format!("u{i}"), "EventTime": i}),
    }
}

/// A journal with `fsync = "batch"` and segments large enough not to rotate.
fn open_batch(state: &Path) -> Journal {
    Journal::open(state, FsyncPolicy::Batch, 1 << 20, Arc::new(Metrics::new())).expect("open")
}

#[tokio::test]
async fn append_read_rotate_prune() {
    let dir = tempfile::tempdir().expect("tempdir");
    for policy in [FsyncPolicy::Always, FsyncPolicy::Batch, FsyncPolicy::Never] {
        let state = dir.path().join(format!("{policy:?}"));
        let j = Journal::open(&state, policy, 200, Arc::new(Metrics::new())).expect("open");
        for i in 0..20 {
            j.append(&rec(i)).await.expect("append");
        }
        j.flush().await.expect("flush");
        let back = read_journal(&state).expect("read");
        assert_eq!(back, (0..20).map(rec).collect::<Vec<_>>());
        let before = segments(&journal_dir(&state)).expect("segments").len();
        assert!(before > 3, "rotated into {before} segments");
        let removed = j.prune(10).await.expect("prune");
        assert!(removed > 0);
        let rest = read_journal(&state).expect("read");
        assert!(rest.iter().all(|r| r.received_at >= Some(5)));
        assert!(rest.iter().any(|r| r.received_at == Some(10)));
        j.close();
    }
}

#[test]
fn append_then_completes_in_order_once_the_line_is_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().to_path_buf();
    let j = open_batch(&state);
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..50 {
        let (tx, state) = (tx.clone(), state.clone());
        let done: OnStored = Box::new(move |r| {
            // What a reader finds when the completion runs, on the
            // writer thread: the line must already be there.
            let on_disk = read_journal(&state).map(|v| v.len()).unwrap_or(0);
            let _ = tx.send((i, r.is_ok(), on_disk));
        });
        j.append_then(rec(i).to_line(), i, done).expect("queued");
    }
    let seen: Vec<_> = (0..50)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("a completion")
        })
        .collect();
    for (n, (i, ok, on_disk)) in seen.into_iter().enumerate() {
        assert_eq!(i, n as i64, "completions run in append order");
        assert!(ok);
        assert!(on_disk > n, "record {i} not on disk at its completion");
    }
    j.close();
}

/// The after-batch hook runs once per written batch, after every
/// completion of it: a caller that defers its wake-ups to the hook
/// releases each completion exactly once, in a batch no larger than what
/// was appended.
#[test]
fn after_batch_runs_after_each_batch_of_completions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = open_batch(dir.path());
    // What the completions staged since the hook last ran.
    let staged = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let hook_staged = staged.clone();
    j.set_after_batch(Box::new(move || {
        let batch = std::mem::take(&mut *hook_staged.lock().expect("lock"));
        let _ = tx.send(batch);
    }))
    .expect("hook installed");
    for i in 0..200 {
        let staged = staged.clone();
        let done: OnStored = Box::new(move |r| {
            assert!(r.is_ok());
            staged.lock().expect("lock").push(i);
        });
        j.append_then(rec(i).to_line(), i, done).expect("queued");
    }
    let mut released = Vec::new();
    while released.len() < 200 {
        let batch = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the hook ran for every batch");
        assert!(!batch.is_empty(), "the hook ran without a batch");
        released.extend(batch);
    }
    assert_eq!(released, (0..200).collect::<Vec<_>>());
    j.close();
    assert!(staged.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn reopen_continues_in_new_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let j = open_batch(dir.path());
    j.append(&rec(1)).await.expect("append");
    j.close();
    // A torn tail from a crash must not hide the good lines.
    let seg = segments(&journal_dir(dir.path())).expect("segments")[0].clone();
    OpenOptions::new()
        .append(true)
        .open(&seg)
        .and_then(|mut f| f.write_all(b"{\"received_at\":2,\"que"))
        .expect("tear");
    let j = open_batch(dir.path());
    j.append(&rec(3)).await.expect("append");
    j.close();
    let back = read_journal(dir.path()).expect("read");
    assert_eq!(back, vec![rec(1), rec(3)]);
}

#[test]
fn bad_line_names_file_and_line() {
    let input = b"{\"query\":{},\"body\":{}}\n\nnot json\n";
    let errs: Vec<_> = read_records("t.jsonl", &input[..])
        .filter_map(Result::err)
        .collect();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].to_string().starts_with("t.jsonl:3:"), "{}", errs[0]);
}
