//! The engine on real Rhai rules: persisted state, future events, restored
//! keys, evidence and resolve reasons.

use super::*;
use crate::alert::{ResolveReason, Tracker};
use crate::config::RulesConfig;
use crate::rules::load_source;

fn rule(group_by: &str, check: &str) -> Arc<Rule> {
    let source = format!(
        "const RULE = #{{ events: [\"start_call\"], group_by: {group_by}, window: \"1h\" }};\n\
         fn check(w) {{ {check} }}"
    );
    let rule = load_source("r", "r.rhai".as_ref(), &source, &RulesConfig::default());
    Arc::new(rule.unwrap_or_else(|e| panic!("{e:?}")))
}

fn engine(rule: Arc<Rule>) -> Engine {
    Engine::new(
        vec![rule],
        EngineSettings {
            repeat_secs: 3600,
            max_clock_skew_secs: 60,
            max_events_per_key: 100,
            ..EngineSettings::default()
        },
    )
}

fn ev(t: i64, user: &str) -> Event {
    Event {
        sdkappid: 1_400_000_001,
        event: "start_call".into(),
        user_id: Some(user.into()),
        platform: Some("web".into()),
        event_time: t,
        ..Event::default()
    }
}

fn user_key() -> Vec<(String, String)> {
    vec![("user_id".to_string(), "alice".to_string())]
}

#[test]
fn state_is_persisted_while_not_empty() {
    // Keeps the count in `w.state` until the second event, then clears it.
    let mut e = engine(rule(
        "[\"user_id\"]",
        "if w.count() < 2 { w.state = #{ n: w.count() } } else { w.state = #{} } false",
    ));
    e.on_event(ev(100, "alice"), 100, true);
    let put = e.take_dirty();
    let [Persist::Put(record)] = put.as_slice() else {
        panic!("expected one put, got {put:?}");
    };
    assert_eq!(record.key, user_key());
    assert_eq!(record.state.get("n"), Some(&serde_json::json!(1)));
    let id = record.id();
    e.on_event(ev(101, "alice"), 101, true);
    assert_eq!(e.take_dirty(), vec![Persist::Delete(id)]);
}

#[test]
fn an_event_from_the_future_enters_at_now_and_others_keep_theirs() {
    let mut e = engine(rule("[]", "`${w.last().event_time}`"));
    let shared = Arc::new(ev(100_000, "alice"));
    let fired = e.on_shared_event(&shared, 1_000, true);
    assert_eq!(fired[0].alert.summary, "1000");
    assert_eq!(e.future_events(), 1);
    // Another engine holding the same event still sees its own time.
    assert_eq!(shared.event_time, 100_000);
    // Within the skew it keeps its time.
    let fired = e.on_event(ev(1_050, "alice"), 1_000, true);
    assert!(fired.is_empty(), "still firing, no new transition");
    assert_eq!(e.future_events(), 1);
}

#[test]
fn a_restored_key_is_the_key_its_events_make() {
    let mut e = engine(rule("[\"user_id\"]", "false"));
    let state = serde_json::json!({ "n": 1 });
    e.restore(KeyRecord {
        rule: "r".into(),
        key: user_key(),
        tracker: Tracker::default(),
        state: state.as_object().cloned().unwrap_or_default(),
    });
    e.on_event(ev(100, "alice"), 100, true);
    assert_eq!(e.stats()[0].1, 1, "one key, not a restored and a new one");
}

#[test]
fn a_key_kept_across_a_group_by_edit_keeps_its_labels() {
    let mut e = engine(rule("[\"user_id\"]", "w.count() > 0"));
    let fired = e.on_event(ev(100, "alice"), 100, true);
    assert_eq!(fired.len(), 1);
    let fingerprint = fired[0].alert.fingerprint.clone();
    // Same name, now per platform: alice's alert resolves under its
    // old labels when its (now empty) window is checked.
    let resolved = e.reload(vec![rule("[\"platform\"]", "w.count() > 0")], &[], 100);
    let [t] = resolved.as_slice() else {
        panic!("expected one resolve, got {resolved:?}");
    };
    assert_eq!(t.alert.fingerprint, fingerprint);
    assert_eq!(
        t.alert.labels.get("user_id").map(String::as_str),
        Some("alice")
    );
    assert_eq!(t.alert.labels.get("platform"), None);
}

fn resolved_reasons(ts: &[Transition]) -> Vec<(AlertStatus, Option<ResolveReason>)> {
    ts.iter()
        .map(|t| (t.alert.status, t.alert.reason))
        .collect()
}

#[test]
fn transitions_carry_evidence_and_resolve_reasons() {
    // Fires while alice has at least two calls in the window.
    let mut e = engine(rule("[\"user_id\"]", "w.count() >= 2"));
    e.on_event(ev(100, "alice"), 100, true);
    let fired = e.on_event(
        Event {
            call_id: Some("c-2".into()),
            ..ev(101, "alice")
        },
        101,
        true,
    );
    let [t] = fired.as_slice() else {
        panic!("expected one firing, got {fired:?}");
    };
    let calls: Vec<_> = t.alert.evidence.iter().map(|e| e.event_time).collect();
    assert_eq!(calls, [101, 100], "newest first");
    assert_eq!(t.alert.evidence[0].call_id.as_deref(), Some("c-2"));
    assert_eq!(t.alert.key["user_id"], "alice");
    // The API's current alert shows the evidence last notified (it is
    // not gathered again on every evaluation).
    assert_eq!(e.active_alerts()[0].evidence, t.alert.evidence);
    // One event leaves the window: still one in it, the check clears.
    let cleared = e.on_tick(100 + 3600);
    assert_eq!(
        resolved_reasons(&cleared),
        [(AlertStatus::Resolved, Some(ResolveReason::Cleared))]
    );
    assert_eq!(cleared[0].alert.evidence.len(), 1);

    // A rule that fires on any event resolves as expired when its
    // window empties.
    let mut e = engine(rule("[\"user_id\"]", "w.count() > 0"));
    e.on_event(ev(100, "alice"), 100, true);
    let expired = e.on_tick(100 + 3600);
    assert_eq!(
        resolved_reasons(&expired),
        [(AlertStatus::Resolved, Some(ResolveReason::Expired))]
    );
    assert!(expired[0].alert.evidence.is_empty());

    // An edit that stops it firing, then a removal.
    let mut e = engine(rule("[\"user_id\"]", "w.count() > 0"));
    e.on_event(ev(100, "alice"), 100, true);
    let history = [ev(100, "alice")];
    let changed = e.reload(vec![rule("[\"user_id\"]", "w.count() > 5")], &history, 100);
    assert_eq!(
        resolved_reasons(&changed),
        [(AlertStatus::Resolved, Some(ResolveReason::RuleChanged))]
    );
    e.reload(vec![rule("[\"user_id\"]", "w.count() > 0")], &history, 100);
    let removed = e.reload(Vec::new(), &[], 100);
    assert_eq!(
        resolved_reasons(&removed),
        [(AlertStatus::Resolved, Some(ResolveReason::RuleRemoved))]
    );
    assert_eq!(removed[0].alert.evidence.len(), 1);
}
