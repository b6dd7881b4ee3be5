//! SIGKILL at random points while a sender streams the trace fixture in
//! real time; each restart is checked, and at the end the journal, the
//! alerts delivered to a real webhook sink and an uninterrupted `replay`
//! of the acknowledged callbacks are compared.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::daemon::{example_rules, write_lines, Home};
use super::sink::Sink;
use super::trace::{self, Callback};

/// Rules whose decisions depend on event order and window content only.
/// The shipped rules with `for` (interruption, rejection, short calls) are
/// left out: `for` is measured in wall-clock time live and in event time in
/// replay, and a live run with restarts lasts longer than the trace's
/// 45 s of event time, so they may legitimately fire live and not in
/// replay.
const RULES: &[&str] = &[
    "call_failure_spike",
    "missed_call_streak",
    "call_flatline",
    "slow_answer",
];

const KILLS: usize = 10;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// Sends every callback at its due time, retrying (as Tencent does) until
/// it gets a 200; returns how many it sent. Acknowledged indices go to
/// `acked` in order.
async fn send_all(url: String, trace: Arc<Vec<Callback>>, acked: Arc<Mutex<Vec<usize>>>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let t0 = Instant::now();
    for (i, cb) in trace.iter().enumerate() {
        let due = Duration::from_millis(cb.due_ms);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        loop {
            let r = client
                .post(format!("{url}?{}", cb.query))
                .body(cb.body.to_string())
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 200 => break,
                Ok(r) => assert!(
                    r.status() == 503,
                    "callback {i} answered {} (only 200, or 503 while restarting, expected)",
                    r.status()
                ),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        acked.lock().expect("acked").push(i);
    }
}

/// (query, body) of journal records, as comparable strings, with counts.
fn journal_multiset(home: &Home) -> BTreeMap<String, usize> {
    let records = callwatch::journal::read_journal(&home.state_dir()).expect("read journal");
    let mut out = BTreeMap::new();
    for r in records {
        let key = serde_json::json!({"query": r.query, "body": r.body}).to_string();
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

fn assert_acked_journaled(home: &Home, trace: &[Callback], acked: &[usize], when: &str) {
    let journal = journal_multiset(home);
    let missing: Vec<usize> = acked
        .iter()
        .copied()
        .filter(|&i| !journal.contains_key(&trace[i].record().to_string()))
        .collect();
    assert!(
        missing.is_empty(),
        "{when}: {} acknowledged callbacks missing from the journal, e.g. #{:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let doubled = journal.values().filter(|&&n| n > 1).count();
    assert_eq!(doubled, 0, "{when}: callbacks journaled twice");
}

/// (rule, fingerprint, status) of every alert line `callwatch replay`
/// prints for `records`.
fn replay_identities(home: &Home, records: Vec<String>) -> BTreeSet<(String, String, String)> {
    let input = home.path().join("acked.jsonl");
    write_lines(&input, records);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callwatch"))
        .arg("replay")
        .arg("-c")
        .arg(home.config_path())
        .arg(&input)
        .output()
        .expect("run replay");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let a: Value = serde_json::from_str(l).expect("replay line");
            let (rule, fp, status, _) = super::sink::alert_identity(&a);
            (rule, fp, status)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_repeats_nothing() {
    let seed: u64 = std::env::var("CALLWATCH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test seed {seed} (set CALLWATCH_CRASH_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let sink = Sink::start().await;
    // Every alert key is its own group, so each transition is exactly one
    // webhook notification.
    let extra = sink.config(r#"["rule", "sdkappid", "user_id", "platform"]"#);
    let home = Home::new(&example_rules(RULES), &extra);
    let trace = Arc::new(trace::shifted((now_ms() / 1000) as i64));
    let acked = Arc::new(Mutex::new(Vec::new()));

    let mut daemon = Some(home.start().await);
    let sender = tokio::spawn(send_all(
        home.url("/callback"),
        trace.clone(),
        acked.clone(),
    ));
    let mut kills = 0;
    while kills < KILLS || !sender.is_finished() {
        // Random points: anywhere from mid-request to seconds of quiet.
        let pause = Duration::from_millis(rng.random_range(200..3500));
        tokio::time::sleep(pause).await;
        if let Some(d) = daemon.take() {
            d.kill();
        }
        kills += 1;
        let snapshot = acked.lock().expect("acked").clone();
        assert_acked_journaled(&home, &trace, &snapshot, &format!("after kill {kills}"));
        daemon = Some(home.start().await);
    }
    sender.await.expect("sender");
    let acked = acked.lock().expect("acked").clone();
    assert_eq!(acked.len(), trace.len(), "every callback acknowledged");

    let records: Vec<String> = acked
        .iter()
        .map(|&i| trace[i].record().to_string())
        .collect();
    let expected = replay_identities(&home, records);
    let statuses: BTreeSet<&str> = expected.iter().map(|(_, _, s)| s.as_str()).collect();
    assert!(
        statuses.contains("firing") && statuses.contains("resolved"),
        "the trace must make alerts fire and resolve: {expected:?}"
    );

    // Delivery is asynchronous: wait until the sink has what replay has.
    let deadline = Instant::now() + Duration::from_secs(30);
    let live = loop {
        let live: BTreeSet<(String, String, String)> = sink
            .alerts()
            .into_iter()
            .map(|(rule, fp, status, _)| (rule, fp, status))
            .collect();
        if live == expected || Instant::now() > deadline {
            break live;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Settle: a late duplicate would show up now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Some(d) = daemon.take() {
        d.kill();
    }
    assert_acked_journaled(&home, &trace, &acked, "at the end");
    assert_eq!(
        live,
        expected,
        "alerts delivered live (left) vs replay of the acknowledged callbacks (right); stderr:\n{}",
        home.stderr()
    );
    let mut receipts: BTreeMap<(String, String, String, String), usize> = BTreeMap::new();
    for a in sink.alerts() {
        *receipts.entry(a).or_insert(0) += 1;
    }
    let twice: Vec<_> = receipts.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "notifications sent twice: {twice:?}");
    eprintln!(
        "crash test: {kills} kills, {} callbacks acknowledged, {} notifications, alerts {expected:?}",
        acked.len(),
        sink.bodies().len()
    );
}
