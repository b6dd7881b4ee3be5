//! Dispatcher tests for inhibition and muting: what they keep back is
//! held, and goes out when the inhibition or the mute ends. Time is
//! passed in, never slept through.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use super::tests::{lock, run_with, statuses, Run};
use crate::alert::Transition;
use crate::alert::{Alert, AlertStatus};
use crate::config::Config;
use crate::engine::Snapshot;
use crate::quiet::interval::{IntervalConfig, TimeRange};
use crate::quiet::{InhibitRule, TimeInterval};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A firing alert of `rule` at `at`, routed by its labels.
fn firing(rule: &str, severity: &str, key: &[(&str, &str)], at: i64) -> Transition {
    let mut l = labels(key);
    let fingerprint = crate::alert::fingerprint(rule, &l);
    l.insert("rule".into(), rule.into());
    l.insert("severity".into(), severity.into());
    Transition {
        alert: Alert {
            rule: rule.into(),
            status: AlertStatus::Firing,
            severity: severity.into(),
            summary: format!("{rule} {key:?}"),
            labels: l,
            value: serde_json::Value::Null,
            fingerprint,
            starts_at: at,
            ends_at: None,
            key: Default::default(),
            annotations: Default::default(),
            evidence: Vec::new(),
            url: None,
            reason: None,
        },
        notify: None,
        at,
    }
}

fn resolved(t: &Transition, at: i64) -> Transition {
    let mut r = t.clone();
    r.alert.status = AlertStatus::Resolved;
    r.alert.ends_at = Some(at);
    r.at = at;
    r
}

fn system(secs: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
}

/// Saves `ts` as pending, as the engine thread does, and routes them as
/// at `now`.
fn submit_at(r: &Run, ts: Vec<Transition>, now: i64) {
    let bodies: Vec<String> = ts
        .iter()
        .map(|t| serde_json::to_string(t).expect("serialise"))
        .collect();
    let ids = lock(&r.store)
        .apply_kv_pending("keys", &[], &bodies)
        .expect("save pending");
    let jobs = ids
        .into_iter()
        .map(Some)
        .zip(ts)
        .map(|t| (t, None))
        .collect();
    r.dispatcher.route(jobs, &HashMap::new(), system(now));
}

/// A dispatcher loop iteration at `now`, and the groups it started
/// flushed once their `group_wait` (30 s) is over.
fn tick_at(r: &Run, now: i64) {
    r.dispatcher.release_unsuppressed(system(now));
    r.dispatcher.flush(system(now + 31));
}

/// User ids of the alerts queued for `receiver`, in order.
fn users(r: &Run, receiver: &str) -> Vec<String> {
    let alerts = r.notifications(receiver).into_iter().flat_map(|n| n.alerts);
    alerts
        .map(|a| a.labels.get("user_id").cloned().unwrap_or_default())
        .collect()
}

fn publish(snapshot: &RwLock<Snapshot>, active: &[&Transition]) {
    let mut s = snapshot.write().expect("snapshot");
    s.alerts = active.iter().map(|t| t.alert.clone()).collect();
}

fn flatline_inhibits_warnings(config: &mut Config) {
    config.alerting.group_interval = Duration::from_secs(1);
    config.alerting.default_receivers = vec!["ops".into()];
    config.inhibit_rules = vec![InhibitRule {
        source_match: labels(&[("rule", "call_flatline")]),
        target_match: labels(&[("severity", "warning")]),
        equal: vec!["sdkappid".into()],
        ..InhibitRule::default()
    }];
}

#[test]
fn an_app_wide_flatline_inhibits_user_alerts_of_that_app_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = run_with(dir.path(), flatline_inhibits_warnings);
    let snapshot = Arc::new(RwLock::new(Snapshot::default()));
    r.dispatcher.watch_alerts(snapshot.clone());
    let t0 = 1_800_000_000;
    let flatline = firing(
        "call_flatline",
        "critical",
        &[("sdkappid", "1400000001")],
        t0,
    );
    let alice = firing(
        "missed_call_streak",
        "warning",
        &[("sdkappid", "1400000001"), ("user_id", "alice")],
        t0 + 10,
    );
    let bob = firing(
        "missed_call_streak",
        "warning",
        &[("sdkappid", "1400000002"), ("user_id", "bob")],
        t0 + 10,
    );
    publish(&snapshot, &[&flatline]);
    submit_at(&r, vec![flatline.clone()], t0);
    tick_at(&r, t0 + 5);
    publish(&snapshot, &[&flatline, &alice, &bob]);
    submit_at(&r, vec![alice.clone(), bob.clone()], t0 + 10);
    tick_at(&r, t0 + 20);
    assert_eq!(users(&r, "ops"), ["", "bob"], "alice's alert is inhibited");
    assert_eq!(
        r.pending(),
        0,
        "an inhibited transition is not kept pending"
    );

    // The API's view of all active alerts: who inhibits whom.
    let status = r.dispatcher.quiet_status(
        &[
            (flatline.alert.clone(), None),
            (alice.alert.clone(), None),
            (bob.alert.clone(), None),
        ],
        t0 + 20,
    );
    assert!(status[0].0.is_empty());
    assert_eq!(
        status[1].0,
        std::slice::from_ref(&flatline.alert.fingerprint)
    );
    assert!(status[2].0.is_empty());

    // Still inhibited a minute later; once the flatline resolves, alice's
    // still-firing alert goes out, once.
    tick_at(&r, t0 + 80);
    assert_eq!(users(&r, "ops").len(), 2);
    publish(&snapshot, &[&alice, &bob]);
    submit_at(&r, vec![resolved(&flatline, t0 + 100)], t0 + 100);
    tick_at(&r, t0 + 101);
    // The flatline's resolve, then alice's group (bob still in it).
    assert_eq!(users(&r, "ops"), ["", "bob", "", "alice", "bob"]);
    assert_eq!(
        statuses(&r, "ops"),
        ["firing", "firing", "resolved", "firing", "firing"]
    );
    tick_at(&r, t0 + 200);
    assert_eq!(users(&r, "ops").len(), 5, "alice went out once");
}

#[test]
fn an_alert_inhibited_from_start_to_end_is_never_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = run_with(dir.path(), flatline_inhibits_warnings);
    let snapshot = Arc::new(RwLock::new(Snapshot::default()));
    r.dispatcher.watch_alerts(snapshot.clone());
    let t0 = 1_800_000_000;
    let flatline = firing("call_flatline", "critical", &[("sdkappid", "1")], t0);
    let alice = firing(
        "streak",
        "warning",
        &[("sdkappid", "1"), ("user_id", "alice")],
        t0,
    );
    publish(&snapshot, &[&flatline, &alice]);
    submit_at(&r, vec![flatline.clone(), alice.clone()], t0);
    publish(&snapshot, &[&flatline]);
    submit_at(&r, vec![resolved(&alice, t0 + 30)], t0 + 30);
    publish(&snapshot, &[]);
    tick_at(&r, t0 + 60);
    assert_eq!(users(&r, "ops"), [""], "only the flatline");
}

/// `night` is 00:00-07:00 in Shanghai; warnings go to `ops`, muted then.
fn night_in_shanghai(config: &mut Config) {
    config.alerting.group_interval = Duration::from_secs(1);
    config.time_intervals = vec![TimeInterval::new(IntervalConfig {
        name: "night".into(),
        location: Some("Asia/Shanghai".into()),
        times: vec![TimeRange {
            start: "00:00".into(),
            end: "07:00".into(),
        }],
        ..IntervalConfig::default()
    })];
    let route =
        "match = { severity = \"warning\" }\nreceivers = [\"ops\"]\nmute_time_intervals = [\"night\"]";
    let route: crate::config::RouteConfig = figment::Figment::from(
        <figment::providers::Toml as figment::providers::Format>::string(route),
    )
    .extract()
    .expect("route");
    config.routes = vec![route];
}

/// Unix seconds of a wall-clock time in Shanghai.
fn shanghai(civil: &str) -> i64 {
    let dt: jiff::civil::DateTime = civil.parse().expect("civil");
    jiff::tz::TimeZone::get("Asia/Shanghai")
        .expect("zone")
        .to_timestamp(dt)
        .expect("timestamp")
        .as_second()
}

#[test]
fn a_warning_at_night_in_shanghai_goes_out_at_seven_if_still_firing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = run_with(dir.path(), night_in_shanghai);
    let t = firing(
        "slow_answer",
        "warning",
        &[("user_id", "alice")],
        shanghai("2026-11-27T03:00"),
    );
    submit_at(&r, vec![t.clone()], t.at);
    tick_at(&r, t.at + 60);
    tick_at(&r, shanghai("2026-11-27T06:59:59"));
    assert!(users(&r, "ops").is_empty(), "muted all night");
    let status = r.dispatcher.quiet_status(&[(t.alert.clone(), None)], t.at);
    assert_eq!(status[0].1, ["night"]);
    tick_at(&r, shanghai("2026-11-27T07:00"));
    assert_eq!(users(&r, "ops"), ["alice"]);
    assert_eq!(statuses(&r, "ops"), ["firing"]);
    tick_at(&r, shanghai("2026-11-27T08:00"));
    assert_eq!(users(&r, "ops").len(), 1, "sent once");
}

#[test]
fn a_warning_that_resolves_before_seven_is_never_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = run_with(dir.path(), night_in_shanghai);
    let t = firing(
        "slow_answer",
        "warning",
        &[("user_id", "alice")],
        shanghai("2026-11-27T03:00"),
    );
    submit_at(&r, vec![t.clone()], t.at);
    let done = resolved(&t, shanghai("2026-11-27T05:00"));
    submit_at(&r, vec![done.clone()], done.at);
    tick_at(&r, shanghai("2026-11-27T07:00"));
    assert!(users(&r, "ops").is_empty());
}

#[test]
fn a_daytime_warning_is_sent_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = run_with(dir.path(), night_in_shanghai);
    let t = firing(
        "slow_answer",
        "warning",
        &[("user_id", "bob")],
        shanghai("2026-11-27T07:00"),
    );
    submit_at(&r, vec![t.clone()], t.at);
    tick_at(&r, t.at + 1);
    assert_eq!(users(&r, "ops"), ["bob"]);
}
