//! Rules that try to escape the sandbox (an infinite loop, a 100 MB
//! string, unbounded recursion, a runtime type error inside `check`),
//! loaded into the live daemon next to every shipped example rule. The
//! daemon keeps acknowledging callbacks, each bad rule only records
//! errors, and a good rule still fires. Ingest latency is measured with
//! and without the bad rules and printed (not asserted: speed belongs to
//! benchmarks).

use std::time::{Duration, Instant};

use super::daemon::{example_rules, get_json, Home};
use super::reload::{now_secs, post_event, wait_firing};
use super::sink::Sink;
use super::trace;
use crate::support::EXAMPLES;

/// Bad rules see only `start_call`s, so the engine's backlog stays small
/// enough for the good rule's alert to arrive in seconds.
const BAD: &[(&str, &str)] = &[
    (
        "bad_loop",
        "const RULE = #{ events: [\"start_call\"], window: \"5m\" };\n\
         fn check(w) { loop { } }\n",
    ),
    (
        "bad_string",
        "const RULE = #{ events: [\"start_call\"], window: \"5m\" };\n\
         fn check(w) { let s = \"x\"; for i in 0..27 { s += s; } s }\n",
    ),
    (
        "bad_recursion",
        "const RULE = #{ events: [\"start_call\"], window: \"5m\" };\n\
         fn deeper(n) { deeper(n + 1) }\n\
         fn check(w) { deeper(0) }\n",
    ),
    (
        "bad_type",
        "const RULE = #{ events: [\"start_call\"], window: \"5m\" };\n\
         fn check(w) { let n = w.count(); n - \"one\" }\n",
    ),
];

const GOOD: (&str, &str) = (
    "good_rejects",
    "const RULE = #{ events: [\"reject_call\"], group_by: [\"user_id\"], window: \"30m\" };\n\
     fn check(w) { w.count() >= 2 }\n",
);

/// Sends the first `n` callbacks of the trace one after another and
/// returns each one's latency.
async fn ingest_latencies(home: &Home, n: usize) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let mut out = Vec::with_capacity(n);
    for cb in trace::shifted(now_secs() - 60).into_iter().take(n) {
        let t = Instant::now();
        let r = client
            .post(home.url(&format!("/callback?{}", cb.query)))
            .body(cb.body.to_string())
            .send()
            .await
            .expect("callback answered");
        assert_eq!(r.status(), 200, "callback acknowledged");
        out.push(t.elapsed());
    }
    out
}

fn summary(mut l: Vec<Duration>) -> String {
    l.sort();
    let at = |q: f64| l[((l.len() - 1) as f64 * q) as usize];
    format!(
        "p50 {:?}, p99 {:?}, max {:?} over {}",
        at(0.5),
        at(0.99),
        at(1.0),
        l.len()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaping_rules_are_contained_and_good_rules_still_alert() {
    const LOAD: usize = 400;
    let sink = Sink::start().await;
    let config = sink.config(r#"["rule", "user_id"]"#);
    let mut rules = example_rules(EXAMPLES);
    rules.push((GOOD.0.into(), GOOD.1.into()));

    let baseline_home = Home::new(&rules, &config);
    let baseline = baseline_home.start().await;
    let without = ingest_latencies(&baseline_home, LOAD).await;
    baseline.kill();

    rules.extend(BAD.iter().map(|(n, s)| (n.to_string(), s.to_string())));
    let home = Home::new(&rules, &config);
    let _daemon = home.start().await;
    let with = ingest_latencies(&home, LOAD).await;
    let client = reqwest::Client::new();
    post_event(&client, &home, "mallory", "reject_call").await;
    post_event(&client, &home, "mallory", "reject_call").await;
    wait_firing(&sink, GOOD.0, "mallory").await;

    let rules = get_json(&home.url("/api/v1/rules")).await;
    for (name, _) in BAD {
        let r = rules["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == *name)
            .unwrap_or_else(|| panic!("{name} loaded: {rules}"));
        assert!(
            r["errors"].as_u64() > Some(0),
            "{name} errors are counted: {r}"
        );
        let last = r["last_error"].as_str().unwrap_or_default();
        assert!(!last.is_empty(), "{name} has a last error");
        eprintln!("sandbox: {name}: {} errors, last: {last}", r["errors"]);
    }
    let health = reqwest::get(home.url("/healthz")).await.expect("healthz");
    assert_eq!(health.status(), 200);
    eprintln!(
        "sandbox: ingest latency without bad rules: {}",
        summary(without)
    );
    eprintln!(
        "sandbox: ingest latency with bad rules:    {}",
        summary(with)
    );
}
