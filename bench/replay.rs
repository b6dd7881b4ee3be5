//! Rules and replay benchmarks (not tests; results go to BENCHMARKS.md).
//!
//! `cargo bench --bench replay -- throughput TRACE [RULES_DIR]`
//!   Reads TRACE (recorded callbacks, e.g. from `callwatch simulate`) into memory,
//!   then times, in the same process, a parse-only pass (read_records +
//!   decode of every line: what replay does before any rule runs) and a
//!   full replay through every rule of RULES_DIR (default `rules/`) with
//!   the output discarded. Prints callbacks/s of both and their ratio.
//!   The file is read once up front so both passes see the same bytes and
//!   disk speed is out of the picture.
//!
//! `cargo bench --bench replay -- memory [KEYS]`
//!   Resident memory of KEYS (default 1 000 000) distinct keys, one event
//!   each, in one rule's count window, through the real engine (the rule's
//!   `check` runs per event, as live). VmRSS before and after, per key.
//!   Run it in its own process: memory freed by another pass would hide
//!   part of the growth.
//!
//! `cargo bench --bench replay -- memory-events [KEYS]`
//!   The same events held in a plain Vec, without the engine: what the
//!   events themselves cost, to tell it apart from the per-key overhead.
//!
//! A plain binary (`harness = false`) rather than criterion: one pass over
//! a million callbacks takes seconds, and what we want is throughput and
//! RSS figures for a report, not statistics over many short iterations.

use std::io::{BufRead, Cursor};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use callwatch::config::{Config, RulesConfig};
use callwatch::engine::{Engine, EngineSettings};
use callwatch::event::Event;
use callwatch::ingest::decode;
use callwatch::ingest::line::decode_line;
use callwatch::journal::{each_line, read_records};
use callwatch::replay::replay;
use callwatch::rules::{load_dir, load_source, Rule};

// The allocator the `callwatch` binary uses, so the numbers are its.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // `cargo bench` passes `--bench`; flags are not ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    match args.first().map(String::as_str) {
        Some("throughput") => {
            let Some(trace) = args.get(1) else {
                usage();
            };
            let rules = args
                .get(2)
                .map_or_else(|| PathBuf::from("rules"), PathBuf::from);
            throughput(&PathBuf::from(trace), rules);
        }
        Some(mode @ ("memory" | "memory-events")) => {
            let keys = args.get(1).map_or(Ok(1_000_000), |k| k.parse());
            memory(keys.unwrap_or_else(|_| usage()), mode == "memory");
        }
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: replay throughput TRACE [RULES_DIR] | replay memory [KEYS] | replay memory-events [KEYS]"
    );
    std::process::exit(2)
}

fn reader(data: &Arc<Vec<u8>>) -> Box<dyn BufRead + Send> {
    Box::new(Cursor::new(ArcBytes(data.clone())))
}

/// Shares the trace between passes without copying it.
struct ArcBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Parse-only: every line read and decoded into events the way replay
/// does (`each_line` + `decode_line`), nothing else.
fn parse_only(data: &Arc<Vec<u8>>) -> (u64, u64) {
    let (mut callbacks, mut events) = (0, 0);
    each_line(reader(data), |_, line| {
        let decoded = decode_line(line).unwrap_or_else(|e| panic!("bad line: {e}"));
        callbacks += 1;
        events += decoded.decoded.events.len() as u64;
        Ok::<_, std::io::Error>(())
    })
    .unwrap_or_else(|e| panic!("reading trace: {e}"));
    (callbacks, events)
}

/// The general path for comparison: each line parsed into a `Record`
/// (`serde_json::Value` body), then decoded.
fn parse_via_value(data: &Arc<Vec<u8>>) -> (u64, u64) {
    let (mut callbacks, mut events) = (0, 0);
    for item in read_records("trace", reader(data)) {
        let (_, record) = item.unwrap_or_else(|e| panic!("bad trace: {e}"));
        let received = record.received_at.unwrap_or(0);
        let decoded = decode::decode(&record.query, &record.body, received)
            .unwrap_or_else(|e| panic!("bad callback: {e}"));
        callbacks += 1;
        events += decoded.events.len() as u64;
    }
    (callbacks, events)
}

fn throughput(trace: &PathBuf, rules_dir: PathBuf) {
    let data =
        Arc::new(std::fs::read(trace).unwrap_or_else(|e| panic!("{}: {e}", trace.display())));
    let mut config = Config::default();
    config.rules.dir = rules_dir;
    let rules: Vec<Arc<Rule>> = load_dir(&config.rules.dir, &config.rules)
        .unwrap_or_else(|e| panic!("rules: {e:?}"))
        .into_iter()
        .map(Arc::new)
        .collect();
    println!(
        "trace {} ({} MB), {} rule(s) from {}",
        trace.display(),
        data.len() / 1_000_000,
        rules.len(),
        config.rules.dir.display()
    );

    let t = Instant::now();
    let (callbacks, events) = parse_only(&data);
    let parse_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    assert_eq!(parse_via_value(&data), (callbacks, events));
    let value_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut out = std::io::sink();
    let summary = replay(
        &config,
        rules,
        vec![("trace".into(), reader(&data))],
        &mut out,
    )
    .unwrap_or_else(|e| panic!("replay: {e}"));
    let replay_secs = t.elapsed().as_secs_f64();
    assert_eq!(summary.callbacks, callbacks);

    let parse_rate = callbacks as f64 / parse_secs;
    let replay_rate = callbacks as f64 / replay_secs;
    println!("callbacks {callbacks}, events {events}");
    println!("parse-only  {parse_secs:>7.2} s  {parse_rate:>10.0} callbacks/s");
    println!(
        "  (via Value {value_secs:>7.2} s  {:>10.0} callbacks/s)",
        callbacks as f64 / value_secs
    );
    println!("replay      {replay_secs:>7.2} s  {replay_rate:>10.0} callbacks/s");
    println!(
        "replay / parse-only = {:.0} %",
        100.0 * replay_rate / parse_rate
    );
    for (rule, keys, stats) in &summary.rules {
        println!(
            "  {rule:<32} keys {keys:>6}  evaluations {:>9}  errors {}",
            stats.evaluations, stats.errors
        );
    }
}

/// Resident set size of this process, in KiB, from /proc/self/status.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

const COUNT_RULE: &str = r#"
const RULE = #{
    events: ["start_call"],
    group_by: ["sdkappid", "user_id"],
    window: "1h",
};
fn check(w) { w.count() >= 1000 }
"#;

/// RSS growth of `keys` one-event keys in the engine, or (`engine` false)
/// of the same events alone.
fn memory(keys: u64, engine_on: bool) {
    let cfg = RulesConfig::default();
    let rule = load_source("count", "count.rhai".as_ref(), COUNT_RULE, &cfg)
        .unwrap_or_else(|e| panic!("rule: {e:?}"));
    let mut engine = Engine::new(
        vec![Arc::new(rule)],
        EngineSettings::from(&Config::default()),
    );
    let start = 1_767_225_600;
    let event = |i: u64| Event {
        sdkappid: 1_400_000_001,
        command: "caller_start_call".into(),
        platform: Some("Android".into()),
        user_id: Some(compact_str::format_compact!("u{i:07}")),
        role: Some("caller".into()),
        event: "start_call".into(),
        event_time: start + (i / 1000) as i64,
        ..Event::default()
    };
    // Warm up the allocator and the engine with a few keys first.
    for i in 0..1000 {
        engine.on_event(event(i), start, true);
    }
    let before = rss_kib();
    let t = Instant::now();
    let mut held = Vec::new();
    for i in 1000..keys + 1000 {
        let e = event(i);
        let now = e.event_time;
        if engine_on {
            engine.on_event(e, now, true);
        } else {
            held.push(Arc::new(e));
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let after = rss_kib();
    let tracked: usize = engine.stats().iter().map(|(_, k, _)| k).sum();
    if engine_on {
        println!("keys tracked {tracked}, fed in {secs:.2} s");
    } else {
        println!(
            "events held {} (no engine), built in {secs:.2} s",
            held.len()
        );
    }
    println!("VmRSS before {before} KiB, after {after} KiB");
    println!(
        "per key: {:.0} bytes",
        (after.saturating_sub(before) * 1024) as f64 / keys as f64
    );
}
