//! The simulator against callwatch's own decoder: determinism, every
//! command of both families, arrival order, repeats, and each anomaly
//! visible in the events it changes.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::event::Event;
use crate::ingest::decode::{
    Family as Decoded, CALL_STATUS_COMMANDS, FAMILY_A_COMMANDS, FAMILY_B_COMMANDS,
};
use crate::ingest::line::{decode_line, DecodedLine};

fn trace(opts: &SimOptions) -> (Vec<u8>, SimSummary) {
    let mut out = Vec::new();
    let summary = write_trace(opts, &mut out).expect("writes");
    (out, summary)
}

/// Every line decoded by the journal's decoder; any error fails.
fn decoded(bytes: &[u8]) -> Vec<DecodedLine> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            decode_line(l)
                .unwrap_or_else(|e| panic!("line {}: {e}: {}", i + 1, String::from_utf8_lossy(l)))
        })
        .collect()
}

fn events(lines: &[DecodedLine]) -> impl Iterator<Item = &Event> {
    lines.iter().flat_map(|l| &l.decoded.events)
}

fn opts(calls: u64) -> SimOptions {
    SimOptions {
        calls,
        ..SimOptions::default()
    }
}

#[test]
fn same_options_same_bytes_other_seed_other_bytes() {
    let o = SimOptions {
        retries: 0.1,
        anomalies: vec!["interrupt:platform=iOS:p=0.5:from=100:to=400"
            .parse()
            .expect("anomaly")],
        ..opts(500)
    };
    let (a, sa) = trace(&o);
    let (b, sb) = trace(&o);
    assert!(a == b, "same options gave different bytes");
    assert_eq!(sa, sb);
    let (c, _) = trace(&SimOptions {
        seed: 2,
        ..o.clone()
    });
    assert!(a != c, "another seed gave the same bytes");
    // Written through an unbuffered sink in pieces, the same bytes.
    struct Dribble(Vec<u8>);
    impl std::io::Write for Dribble {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = buf.len().min(7);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut d = Dribble(Vec::new());
    write_trace(&o, &mut d).expect("writes");
    assert!(d.0 == a);
}

#[test]
fn every_command_of_both_families_decodes_without_error() {
    let o = opts(6000);
    let (bytes, summary) = trace(&o);
    let lines = decoded(&bytes);
    assert_eq!(lines.len() as u64, summary.callbacks);
    assert_eq!(summary.calls, 6000);
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for l in &lines {
        assert!(l.decoded.known_command, "unknown {}", l.decoded.command);
        assert_eq!(l.decoded.sdkappid, o.sdkappid);
        *seen.entry(l.decoded.command.clone()).or_default() += 1;
    }
    for c in FAMILY_A_COMMANDS
        .iter()
        .chain(CALL_STATUS_COMMANDS)
        .chain(FAMILY_B_COMMANDS)
    {
        assert!(seen.contains_key(*c), "{c} never appears: {seen:?}");
    }
    assert_eq!(
        seen, summary.commands,
        "the summary counts what was written"
    );
    // Every member-change action maps to an event.
    let b_events: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.decoded.command == FAMILY_B_COMMANDS[2])
        .flat_map(|l| l.decoded.events.iter().map(|e| e.event.as_str()))
        .collect();
    for e in [
        "accept_call",
        "reject_call",
        "not_answer_call",
        "call_end",
        "join_in_group_call",
        "call_interrupted",
        "invite_user",
        "call_canceled",
    ] {
        assert!(b_events.contains(e), "no member change gives {e}");
    }
    // All four platforms, in shares close to the model's.
    let mut platforms: BTreeMap<&str, u64> = BTreeMap::new();
    for e in events(&lines).filter(|e| e.event == "start_call") {
        *platforms
            .entry(e.platform.as_deref().unwrap_or(""))
            .or_default() += 1;
    }
    let total: u64 = platforms.values().sum();
    for (p, share) in PLATFORMS.iter().zip([0.45, 0.35, 0.12, 0.08]) {
        let got = platforms.get(p).copied().unwrap_or(0) as f64 / total as f64;
        assert!(
            (got - share).abs() < 0.1,
            "{p}: {got} of calls, expected ~{share}"
        );
    }
}

#[test]
fn lines_arrive_in_order_and_times_are_sane() {
    let (bytes, summary) = trace(&opts(2000));
    let lines = decoded(&bytes);
    let received: Vec<i64> = lines
        .iter()
        .map(|l| l.received_at.expect("received_at"))
        .collect();
    assert!(
        received.windows(2).all(|w| w[0] <= w[1]),
        "out of arrival order"
    );
    assert_eq!(summary.first_ms, received.first().copied());
    assert_eq!(summary.last_ms, received.last().copied());
    let start = DEFAULT_START;
    for e in events(&lines) {
        assert!(e.event_time >= start, "{e:?}");
        // (In group calls an invitee's AcceptTs is when they joined.)
        if let (Some(r), Some(t), Some("single")) =
            (e.ring_secs(), e.talk_secs(), e.call_type.as_deref())
        {
            assert!((0..=60).contains(&r) && (0..=3700).contains(&t), "{e:?}");
        }
    }
    // An hour of rings and talks at one call a second.
    let span = (received[received.len() - 1] - received[0]) / 1000;
    assert!((1800..6000).contains(&span), "span {span} s");
}

#[test]
fn one_family_at_a_time() {
    for (family, want) in [(Family::A, Decoded::A), (Family::B, Decoded::B)] {
        let (bytes, _) = trace(&SimOptions {
            family,
            ..opts(300)
        });
        for l in decoded(&bytes) {
            assert_eq!(l.decoded.family, want, "{family:?}");
        }
    }
}

#[test]
fn retries_repeat_deliveries_byte_for_byte_later() {
    let (bytes, summary) = trace(&SimOptions {
        retries: 0.2,
        ..opts(300)
    });
    assert!(summary.duplicates > 100, "{summary}");
    // The tail after `received_at` identifies a callback.
    let mut first: BTreeMap<&[u8], (i64, u32)> = BTreeMap::new();
    for l in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let comma = l.iter().position(|b| *b == b',').expect("comma");
        let at: i64 = std::str::from_utf8(&l[15..comma])
            .expect("utf8")
            .parse()
            .expect("received_at");
        let e = first.entry(&l[comma..]).or_insert((at, 0));
        if e.1 > 0 {
            // Tencent retries within ~12 s after a 2 s timeout each.
            assert!(at - e.0 >= 2000 && at - e.0 <= 6 * 2300, "{}", at - e.0);
        }
        e.1 += 1;
        assert!(e.1 <= 7, "more than six repeats");
    }
    let repeats: u64 = first.values().map(|(_, n)| u64::from(*n) - 1).sum();
    assert_eq!(repeats, summary.duplicates);
    // Repeats are extra deliveries, not other calls.
    let (plain, _) = trace(&opts(300));
    assert_eq!(first.len(), decoded(&plain).len());
}

/// Callee outcomes of `user` between `from` and `to` seconds.
fn callee_events(lines: &[DecodedLine], user: &str, from: i64, to: i64) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in events(lines) {
        let t = e.event_time - DEFAULT_START;
        if e.user_id.as_deref() == Some(user)
            && e.role.as_deref() == Some("callee")
            && (from..to).contains(&t)
        {
            *out.entry(e.event.to_string()).or_default() += 1;
        }
    }
    out
}

#[test]
fn offline_user_answers_nothing_while_offline() {
    let a: Anomaly = "offline:user=u0042:from=600:to=1500"
        .parse()
        .expect("anomaly");
    let (bytes, summary) = trace(&SimOptions {
        anomalies: vec![a.clone()],
        ..opts(2500)
    });
    let lines = decoded(&bytes);
    // Calls placed before 1500 s ring until 1530 s at the latest.
    let during = callee_events(&lines, "u0042", 640, 1500);
    assert!(
        during.get("not_answer_call").copied().unwrap_or(0) >= 50,
        "{during:?}"
    );
    for e in ["accept_call", "reject_call", "join_in_group_call"] {
        assert!(!during.contains_key(e), "{e} while offline: {during:?}");
    }
    let after = callee_events(&lines, "u0042", 1600, 2400);
    assert!(after.contains_key("accept_call"), "{after:?}");
    assert_eq!(summary.injected.len(), 1);
    assert_eq!(summary.injected[0].anomaly, a);
    assert!(summary.injected[0].calls >= 50, "{summary}");
    assert!(summary
        .to_string()
        .contains("injected: offline:user=u0042:from=600:to=1500"));
}

#[test]
fn a_user_not_in_the_population_is_added_for_offline() {
    let (bytes, _) = trace(&SimOptions {
        anomalies: vec!["offline:user=alice \"ops\"".parse().expect("anomaly")],
        ..opts(400)
    });
    let lines = decoded(&bytes);
    let alice = callee_events(&lines, "alice \"ops\"", 0, i64::MAX);
    assert!(
        alice.get("not_answer_call").copied().unwrap_or(0) > 20,
        "{alice:?}"
    );
}

#[test]
fn outage_means_no_call_starts() {
    let (bytes, summary) = trace(&SimOptions {
        anomalies: vec!["outage:from=300:to=900".parse().expect("anomaly")],
        ..opts(1500)
    });
    let lines = decoded(&bytes);
    let starts: Vec<i64> = events(&lines)
        .filter(|e| e.event == "start_call")
        .map(|e| e.event_time - DEFAULT_START)
        .collect();
    assert!(starts.iter().all(|t| !(300..900).contains(t)));
    assert!(starts.iter().any(|t| (900..960).contains(t)));
    assert_eq!(summary.calls, 1500, "the calls are moved, not dropped");
    assert!(summary.injected[0].calls > 0);
}

#[test]
fn fail_reject_interrupt_and_slow_change_their_calls() {
    let anomalies: Vec<Anomaly> = [
        "fail:p=1:from=100:to=200",
        "reject:platform=Web:p=1:from=300:to=600",
        "interrupt:platform=Android:p=0.5:from=700:to=1200",
        "slow:platform=iOS:secs=40:from=1300:to=1800",
    ]
    .iter()
    .map(|s| s.parse().expect("anomaly"))
    .collect();
    let (bytes, summary) = trace(&SimOptions {
        family: Family::A,
        anomalies,
        ..opts(2000)
    });
    let lines = decoded(&bytes);
    // One-to-one calls by start time: caller platform and every event.
    let mut calls: BTreeMap<&str, (i64, &str, Vec<&str>)> = BTreeMap::new();
    for e in events(&lines).filter(|e| e.call_type.as_deref() == Some("single")) {
        let id = e.call_id.as_deref().expect("call id");
        let c = calls.entry(id).or_insert((i64::MAX, "", Vec::new()));
        if e.event == "start_call" {
            c.0 = e.event_time - DEFAULT_START;
            c.1 = e.platform.as_deref().expect("platform");
        }
        c.2.push(e.event.as_str());
    }
    let placed = |from: i64, to: i64, platform: Option<&'static str>| {
        calls
            .values()
            .filter(move |(t, p, _)| (from..to).contains(t) && platform.is_none_or(|w| w == *p))
            .map(|(_, _, events)| events)
            .collect::<Vec<_>>()
    };
    // fail: every one-to-one call placed then fails at once.
    assert!(placed(100, 200, None).len() > 50);
    for events in placed(100, 200, None) {
        assert!(events.contains(&"call_failed"), "{events:?}");
        assert!(!events.contains(&"call_accepted"), "{events:?}");
    }
    // reject: calls from Web are rejected (or busy, or failed).
    assert!(placed(300, 600, Some("Web")).len() > 10);
    for events in placed(300, 600, Some("Web")) {
        assert!(
            ["call_rejected", "call_busy", "call_failed"]
                .iter()
                .any(|e| events.contains(e)),
            "{events:?}"
        );
        assert!(!events.contains(&"call_accepted"), "{events:?}");
    }
    // interrupt: a large share of Android legs drop.
    let mut legs = (0u64, 0u64);
    for e in events(&lines) {
        let t = e.event_time - DEFAULT_START;
        if e.platform.as_deref() == Some("Android")
            && e.call_type.as_deref() == Some("single")
            && (760..1200).contains(&t)
        {
            match e.event.as_str() {
                "call_interrupted" => legs.0 += 1,
                "call_end" => legs.1 += 1,
                _ => {}
            }
        }
    }
    let rate = legs.0 as f64 / (legs.0 + legs.1) as f64;
    assert!(rate > 0.15, "Android drop rate {rate} ({legs:?})");
    // slow: iOS callers' calls ring 40 s longer.
    let rings: Vec<i64> = events(&lines)
        .filter(|e| {
            e.event == "call_end"
                && e.role.as_deref() == Some("caller")
                && e.platform.as_deref() == Some("iOS")
                && (1300..1800)
                    .contains(&e.start_call_ts.unwrap_or(0).saturating_sub(DEFAULT_START))
        })
        .filter_map(|e| e.ring_secs())
        .collect();
    assert!(
        rings.len() > 20 && rings.iter().all(|r| *r >= 40),
        "{rings:?}"
    );
    for i in &summary.injected {
        assert!(i.calls > 0, "{} changed nothing", i.anomaly);
    }
}

#[test]
fn invalid_options_are_refused_by_name() {
    for (o, word) in [
        (
            SimOptions {
                rate: 0.0,
                ..opts(1)
            },
            "--rate",
        ),
        (
            SimOptions {
                users: 1,
                ..opts(1)
            },
            "--users",
        ),
        (
            SimOptions {
                retries: 1.0,
                ..opts(1)
            },
            "--retries",
        ),
    ] {
        let err = write_trace(&o, &mut Vec::new()).expect_err(word);
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains(word), "{err}");
    }
    assert_eq!("MIXED".parse::<Family>(), Ok(Family::Mixed));
    assert!("c".parse::<Family>().is_err());
}

#[test]
fn no_calls_no_lines() {
    let (bytes, summary) = trace(&opts(0));
    assert!(bytes.is_empty());
    assert_eq!(summary.callbacks, 0);
    // An outage without end stops the calls.
    let (bytes, summary) = trace(&SimOptions {
        anomalies: vec!["outage:from=10".parse().expect("anomaly")],
        ..opts(100)
    });
    assert!(summary.calls < 30, "{summary}");
    decoded(&bytes);
}
