use std::sync::Arc;

use proptest::prelude::*;
use serde_json::Value;

use super::order::nearest_rank;
use super::Window;
use crate::event::{Event, Field};

fn ev(t: i64, name: &str) -> Arc<Event> {
    Arc::new(Event {
        event: name.into(),
        event_time: t,
        ..Event::default()
    })
}

fn ev_num(t: i64, name: &str, total: Option<i64>) -> Arc<Event> {
    Arc::new(Event {
        event: name.into(),
        event_time: t,
        total_num: total,
        ..Event::default()
    })
}

fn names(w: &Window) -> Vec<String> {
    w.events().map(|e| e.event.to_string()).collect()
}

#[test]
fn slides_in_event_time() {
    let mut w = Window::new(60, 100);
    w.push(ev(100, "a"));
    w.push(ev(130, "b"));
    w.push(ev(150, "a"));
    assert_eq!(w.count(), 3);
    assert!(!w.expire(159));
    assert!(w.expire(160), "event at 100 is exactly one width old");
    assert_eq!(names(&w), ["b", "a"]);
    assert_eq!(w.count_of(&["a"]), 1);
    assert!(w.expire(1000));
    assert!(w.is_empty());
    assert_eq!(w.first(), None);
    assert_eq!(w.streak(&["a"]), 0);
}

#[test]
fn out_of_order_events_are_placed_by_time_then_arrival() {
    let mut w = Window::new(600, 100);
    w.push(ev(10, "a"));
    w.push(ev(30, "c"));
    w.push(ev(20, "b"));
    w.push(ev(20, "b2"));
    w.push(ev(5, "z"));
    assert_eq!(names(&w), ["z", "a", "b", "b2", "c"]);
    assert_eq!(w.first().map(|e| e.event.as_str()), Some("z"));
    assert_eq!(w.last().map(|e| e.event.as_str()), Some("c"));
}

#[test]
fn max_events_drops_the_oldest() {
    let mut w = Window::new(600, 3);
    for (t, n) in [(1, "a"), (2, "b"), (3, "c"), (4, "d")] {
        w.push(ev(t, n));
    }
    assert_eq!(names(&w), ["b", "c", "d"]);
    // An event older than everything in a full window falls straight out.
    w.push(ev(0, "old"));
    assert_eq!(names(&w), ["b", "c", "d"]);
    assert_eq!(w.count_of(&["a", "old"]), 0);
}

#[test]
fn counts_ratio_and_streak() {
    let mut w = Window::new(600, 100);
    for n in ["miss", "ok", "miss", "miss", "reject", "miss"] {
        w.push(ev(1, n));
    }
    assert_eq!(w.count_of(&["miss"]), 4);
    assert_eq!(w.count_of(&["miss", "ok", "miss"]), 5);
    assert_eq!(w.ratio(&["miss"], &["miss", "ok"]), 0.8);
    assert_eq!(w.ratio(&["miss"], &["nothing"]), 0.0);
    assert_eq!(w.streak(&["miss"]), 1);
    assert_eq!(w.streak(&["miss", "reject"]), 4);
    assert_eq!(w.streak(&["ok"]), 0);
    assert_eq!(w.streak(&["miss", "ok", "reject"]), 6);
    // A late "ok" lands before the newest events and does not break the run.
    w.push(ev(0, "ok"));
    assert_eq!(w.streak(&["miss", "reject"]), 4);
    // A late "ok" at the same time lands after them (arrival order) and does.
    w.push(ev(1, "ok"));
    assert_eq!(w.streak(&["miss", "reject"]), 0);
}

#[test]
fn numeric_aggregates_follow_expiry() {
    let mut w = Window::new(10, 100);
    w.push(ev_num(1, "x", Some(5)));
    w.push(ev_num(2, "x", None));
    w.push(ev_num(3, "x", Some(1)));
    w.push(ev_num(4, "x", Some(9)));
    assert_eq!(w.sum("total_num"), Some(15.0));
    assert_eq!(w.avg("total_num"), Some(5.0));
    assert_eq!(w.min("total_num"), Some(1.0));
    assert_eq!(w.max("total_num"), Some(9.0));
    assert_eq!(w.percentile("total_num", 50.0), Some(5.0));
    assert_eq!(w.distinct("total_num"), 3);
    w.expire(11);
    assert_eq!(w.min("total_num"), Some(1.0));
    assert_eq!(w.max("total_num"), Some(9.0));
    w.expire(13);
    assert_eq!(w.min("total_num"), Some(9.0));
    assert_eq!(w.sum("total_num"), Some(9.0));
    assert_eq!(w.sum("start_call_ts"), None);
    w.expire(100);
    assert_eq!(w.sum("total_num"), None);
    assert_eq!(w.distinct("total_num"), 0);
}

#[test]
fn fields_of_extra_are_aggregated() {
    let mut w = Window::new(60, 100);
    for (i, v) in [Value::from(1.5), Value::from("x"), Value::from(2)]
        .into_iter()
        .enumerate()
    {
        let mut e = Event {
            event_time: i as i64,
            ..Event::default()
        };
        e.extra.insert("q".into(), v);
        w.push(Arc::new(e));
    }
    assert_eq!(w.sum("q"), Some(3.5));
    assert_eq!(w.distinct("q"), 3);
    assert_eq!(w.distinct("nope"), 0);
}

#[test]
fn idle_windows_stay_small() {
    let mut w = Window::new(60, 100);
    assert_eq!(w.distinct("user_id"), 0);
    assert!(w.fields.is_empty());
    for t in 0..1000 {
        w.push(ev(t, "a"));
    }
    assert_eq!(w.distinct("user_id"), 0);
    w.expire(10_000);
    assert_eq!(w.events.capacity(), 0);
    assert_eq!(w.names.capacity(), 0);
    assert_eq!(w.fields.capacity(), 0);
    assert!(std::mem::size_of::<Window>() <= 128);
}

// ---- property tests against a naive reference ----

/// The obvious implementation: a sorted vector, scanned for every answer.
struct Naive {
    width: i64,
    max: usize,
    events: Vec<Arc<Event>>,
}

impl Naive {
    fn push(&mut self, e: Arc<Event>) {
        let at = self
            .events
            .iter()
            .rposition(|x| x.event_time <= e.event_time)
            .map_or(0, |i| i + 1);
        self.events.insert(at, e);
        while self.events.len() > self.max {
            self.events.remove(0);
        }
    }

    fn expire(&mut self, now: i64) -> bool {
        let before = self.events.len();
        self.events.retain(|e| e.event_time > now - self.width);
        before != self.events.len()
    }

    fn count_of(&self, names: &[&str]) -> usize {
        self.events
            .iter()
            .filter(|e| names.contains(&e.event.as_str()))
            .count()
    }

    fn streak(&self, names: &[&str]) -> usize {
        self.events
            .iter()
            .rev()
            .take_while(|e| names.contains(&e.event.as_str()))
            .count()
    }

    fn distinct(&self, field: &str) -> usize {
        let mut seen: Vec<Field<'_>> = Vec::new();
        for f in self.events.iter().filter_map(|e| e.get(field)) {
            if !seen.contains(&f) {
                seen.push(f);
            }
        }
        seen.len()
    }

    fn numbers(&self, field: &str) -> Vec<f64> {
        let mut v: Vec<f64> = self
            .events
            .iter()
            .filter_map(|e| e.get(field)?.as_f64())
            .collect();
        v.sort_by(f64::total_cmp);
        v
    }
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs())),
        (None, None) => true,
        _ => false,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Push(Arc<Event>),
    Expire(i64),
    Query,
}

fn event_strategy() -> impl Strategy<Value = Arc<Event>> {
    let score = prop_oneof![
        Just(None),
        (-50i64..50).prop_map(|i| Some(Value::from(i))),
        (-50i64..50).prop_map(|i| Some(Value::from(i as f64 / 4.0))),
        Just(Some(Value::from("text"))),
    ];
    (
        0i64..200,
        prop::sample::select(vec!["a", "b", "c", "d"]),
        prop::option::of(-20i64..20),
        prop::option::of(prop::sample::select(vec!["u1", "u2", "u3"])),
        score,
    )
        .prop_map(|(t, name, total, user, score)| {
            let mut e = Event {
                event: name.into(),
                event_time: t,
                total_num: total,
                user_id: user.map(Into::into),
                ..Event::default()
            };
            if let Some(s) = score {
                e.extra.insert("score".into(), s);
            }
            Arc::new(e)
        })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => event_strategy().prop_map(Op::Push),
        1 => (0i64..300).prop_map(Op::Expire),
        2 => Just(Op::Query),
    ]
}

const NAME_SETS: &[&[&str]] = &[&["a"], &["b"], &["a", "b"], &["a", "c", "d"], &["x"], &[]];

fn assert_same(w: &mut Window, n: &Naive) -> Result<(), TestCaseError> {
    prop_assert_eq!(w.count(), n.events.len());
    let ours: Vec<_> = w.events().map(Arc::as_ptr).collect();
    let theirs: Vec<_> = n.events.iter().map(Arc::as_ptr).collect();
    prop_assert_eq!(ours, theirs);
    prop_assert_eq!(
        w.first().map(Arc::as_ptr),
        n.events.first().map(Arc::as_ptr)
    );
    prop_assert_eq!(w.last().map(Arc::as_ptr), n.events.last().map(Arc::as_ptr));
    for set in NAME_SETS {
        prop_assert_eq!(w.count_of(set), n.count_of(set), "count_of {:?}", set);
        prop_assert_eq!(w.streak(set), n.streak(set), "streak {:?}", set);
        for den in NAME_SETS {
            let d = n.count_of(den);
            let want = if d == 0 {
                0.0
            } else {
                n.count_of(set) as f64 / d as f64
            };
            prop_assert_eq!(w.ratio(set, den), want);
        }
    }
    for field in ["user_id", "total_num", "score", "event"] {
        prop_assert_eq!(w.distinct(field), n.distinct(field), "distinct {}", field);
    }
    for field in ["total_num", "score", "event_time", "user_id"] {
        let v = n.numbers(field);
        let sum = (!v.is_empty()).then(|| v.iter().sum::<f64>());
        prop_assert!(close(w.sum(field), sum), "sum {}", field);
        prop_assert!(close(w.avg(field), sum.map(|s| s / v.len() as f64)));
        prop_assert_eq!(w.min(field), v.first().copied(), "min {}", field);
        prop_assert_eq!(w.max(field), v.last().copied(), "max {}", field);
        for p in [0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 100.0] {
            let want = (!v.is_empty()).then(|| v[nearest_rank(p, v.len()) - 1]);
            prop_assert_eq!(w.percentile(field, p), want, "p{} {}", p, field);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn matches_naive_reference(
        width in 1i64..120,
        max in 1usize..40,
        ops in prop::collection::vec(op_strategy(), 0..120),
    ) {
        let mut w = Window::new(width, max);
        let mut n = Naive { width, max, events: Vec::new() };
        for op in ops {
            match op {
                Op::Push(e) => {
                    w.push(e.clone());
                    n.push(e);
                }
                Op::Expire(now) => prop_assert_eq!(w.expire(now), n.expire(now)),
                Op::Query => assert_same(&mut w, &n)?,
            }
        }
        assert_same(&mut w, &n)?;
    }
}
