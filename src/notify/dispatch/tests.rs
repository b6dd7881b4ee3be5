//! The dispatcher against a real store and outbox on disk: crash-safety
//! of pending transitions and what silences hold back. Shared helpers are
//! used by `quiet_tests`.

use std::collections::BTreeMap;

use super::*;
use crate::alert::{Alert, AlertStatus};

fn transition(rule: &str, notify: &[&str]) -> Transition {
    Transition {
        alert: Alert {
            rule: rule.into(),
            status: AlertStatus::Firing,
            severity: "warning".into(),
            summary: "s".into(),
            labels: BTreeMap::from([("rule".to_string(), rule.to_string())]),
            value: serde_json::Value::Null,
            starts_at: 1_700_000_000,
            ends_at: None,
            key: BTreeMap::new(),
            annotations: BTreeMap::new(),
            evidence: Vec::new(),
            url: None,
            reason: None,
            fingerprint: format!("fp-{rule}"),
        },
        notify: Some(notify.iter().map(|s| s.to_string()).collect()),
        at: 1_700_000_000,
    }
}

pub(super) struct Run {
    pub(super) store: Arc<Mutex<Store>>,
    pub(super) dispatcher: Dispatcher,
}

/// A dispatcher over the store in `dir`, as one run of the daemon
/// would build it (group_wait 30 s, so nothing is due on submit).
fn run(dir: &std::path::Path) -> Run {
    run_with(dir, |_| {})
}

/// [`run`] with the config changed by `tweak` first.
pub(super) fn run_with(dir: &std::path::Path, tweak: impl FnOnce(&mut Config)) -> Run {
    let mut config = Config::default();
    config.alerting.group_wait = Duration::from_secs(30);
    tweak(&mut config);
    let store = Arc::new(Mutex::new(Store::open(dir).expect("open store")));
    let receivers = Arc::new(Receivers::from_config(&config).expect("receivers"));
    let metrics = Arc::new(Metrics::new());
    let outbox = Arc::new(Outbox::new(
        store.clone(),
        receivers.clone(),
        metrics.clone(),
        Duration::from_secs(3600),
        Duration::from_secs(60),
    ));
    let dispatcher = Dispatcher::new(&config, &receivers, store.clone(), outbox, metrics);
    Run { store, dispatcher }
}

impl Run {
    /// Saves transitions as the engine thread does, then submits them.
    pub(super) fn submit(&self, ts: Vec<Transition>) {
        let bodies: Vec<String> = ts
            .iter()
            .map(|t| serde_json::to_string(t).expect("serialise"))
            .collect();
        let ids = lock(&self.store)
            .apply_kv_pending("keys", &[], &bodies)
            .expect("save pending");
        self.dispatcher
            .submit(ids.into_iter().map(Some).zip(ts).collect());
    }

    /// The notifications queued for `receiver`, oldest first.
    pub(super) fn notifications(&self, receiver: &str) -> Vec<super::super::Notification> {
        lock(&self.store)
            .due(receiver, i64::MAX, 100)
            .expect("due")
            .iter()
            .map(|item| serde_json::from_str(&item.payload).expect("payload"))
            .collect()
    }

    /// Rules of the queued notifications for `receiver`.
    fn queued(&self, receiver: &str) -> Vec<Vec<String>> {
        let rules = |n: super::super::Notification| n.alerts.into_iter().map(|a| a.rule);
        self.notifications(receiver)
            .into_iter()
            .map(|n| rules(n).collect())
            .collect()
    }

    pub(super) fn pending(&self) -> usize {
        lock(&self.store).pending().expect("pending").len()
    }
}

pub(super) fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().expect("store lock")
}

#[test]
fn a_crash_while_groups_wait_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let first = run(dir.path());
        first.submit(vec![
            transition("a", &["ops", "mail"]),
            transition("b", &["ops"]),
        ]);
        assert!(first.queued("ops").is_empty(), "group_wait holds them");
        assert_eq!(first.pending(), 2);
        // Dropped without drain: the process died.
    }
    let second = run(dir.path());
    second.dispatcher.resume();
    second.dispatcher.drain();
    // Default grouping is by rule: one notification per rule.
    assert_eq!(second.queued("ops"), vec![vec!["a"], vec!["b"]]);
    assert_eq!(second.queued("mail"), vec![vec!["a"]]);
    assert_eq!(second.pending(), 0, "every receiver has them now");

    // A third start finds nothing left to send.
    drop(second);
    let third = run(dir.path());
    third.dispatcher.resume();
    third.dispatcher.drain();
    assert_eq!(third.queued("ops").len(), 2);
    assert_eq!(third.queued("mail").len(), 1);
}

#[test]
fn a_receiver_already_reached_is_not_sent_it_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let first = run(dir.path());
        first.submit(vec![transition("a", &["ops", "mail"])]);
        // `ops` got its notification; the process died before `mail`.
        let due = first
            .dispatcher
            .groups()
            .grouper
            .due_tracked(SystemTime::now() + Duration::from_secs(60));
        let (n, ids) = due
            .into_iter()
            .find(|(n, _)| n.receiver == "ops")
            .expect("ops group");
        first
            .dispatcher
            .outbox
            .enqueue_releasing(&n, &ids, &[])
            .expect("enqueue");
    }
    let second = run(dir.path());
    second.dispatcher.resume();
    second.dispatcher.drain();
    assert_eq!(second.queued("ops"), vec![vec!["a"]]);
    assert_eq!(second.queued("mail"), vec![vec!["a"]]);
    assert_eq!(second.pending(), 0);
}

fn silence_rule(r: &Run, rule: &str, ends_at: i64) {
    let silence = crate::store::Silence {
        id: format!("s-{rule}"),
        matchers: vec![crate::store::Matcher {
            name: "rule".into(),
            value: rule.into(),
            is_regex: false,
            is_equal: true,
        }],
        starts_at: crate::time::unix_secs(SystemTime::now()) - 3600,
        ends_at,
        comment: String::new(),
        created_by: String::new(),
        updated_at: 0,
    };
    lock(&r.store).put_silence(&silence).expect("put silence");
}

fn resolved(rule: &str, notify: &[&str]) -> Transition {
    let mut t = transition(rule, notify);
    t.alert.status = AlertStatus::Resolved;
    t.alert.ends_at = Some(t.at + 600);
    t.at += 600;
    t
}

/// A dispatcher loop iteration `days` from now, when every group is
/// due (`drain` would mark groups sent a century ahead, holding back
/// the group's next notification as long).
fn tick(r: &Run, days: u64) {
    r.dispatcher.release_unsuppressed(SystemTime::now());
    r.dispatcher
        .flush(SystemTime::now() + Duration::from_secs(days * 86_400));
}

/// Ends the silence on `rule` and lets the dispatcher notice (day 2).
fn end_silence(r: &Run, rule: &str) {
    silence_rule(r, rule, crate::time::unix_secs(SystemTime::now()) - 1);
    tick(r, 2);
}

/// Statuses of the alerts queued for `receiver`, in order.
pub(super) fn statuses(r: &Run, receiver: &str) -> Vec<String> {
    let alerts = r.notifications(receiver).into_iter().flat_map(|n| n.alerts);
    alerts.map(|a| a.status.as_str().to_string()).collect()
}

#[test]
fn an_alert_firing_when_its_silence_ends_is_sent_then() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = run(dir.path());
    silence_rule(&r, "a", crate::time::unix_secs(SystemTime::now()) + 3600);
    r.submit(vec![transition("a", &["ops"]), transition("b", &["ops"])]);
    tick(&r, 1);
    assert_eq!(r.queued("ops"), vec![vec!["b"]], "a is silenced");
    end_silence(&r, "a");
    assert_eq!(r.queued("ops"), vec![vec!["b"], vec!["a"]]);
    assert_eq!(statuses(&r, "ops"), ["firing", "firing"]);
    // Sent once: nothing is held any more.
    tick(&r, 3);
    assert_eq!(r.queued("ops").len(), 2);
}

#[test]
fn an_alert_that_fired_and_resolved_under_a_silence_is_never_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = run(dir.path());
    silence_rule(&r, "a", crate::time::unix_secs(SystemTime::now()) + 3600);
    r.submit(vec![transition("a", &["ops"])]);
    r.submit(vec![resolved("a", &["ops"])]);
    end_silence(&r, "a");
    assert!(r.queued("ops").is_empty());
}

#[test]
fn a_resolve_a_silence_held_back_is_sent_when_it_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = run(dir.path());
    r.submit(vec![transition("a", &["ops"])]);
    tick(&r, 1);
    silence_rule(&r, "a", crate::time::unix_secs(SystemTime::now()) + 3600);
    // A repeat and the resolve, both under the silence.
    let mut repeat = transition("a", &["ops"]);
    repeat.at += 300;
    r.submit(vec![repeat]);
    r.submit(vec![resolved("a", &["ops"])]);
    tick(&r, 1);
    assert_eq!(statuses(&r, "ops"), ["firing"]);
    end_silence(&r, "a");
    assert_eq!(statuses(&r, "ops"), ["firing", "resolved"]);
}

#[test]
fn a_transition_sent_after_a_silence_replaces_what_it_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = run(dir.path());
    silence_rule(&r, "a", crate::time::unix_secs(SystemTime::now()) + 3600);
    r.submit(vec![transition("a", &["ops"])]);
    // Deleted through the API, and the alert resolved and fired again
    // before the dispatcher looked: only the new firing goes out.
    silence_rule(&r, "a", crate::time::unix_secs(SystemTime::now()) - 1);
    let mut again = transition("a", &["ops"]);
    again.at += 900;
    again.alert.starts_at += 900;
    r.submit(vec![again]);
    tick(&r, 1);
    assert_eq!(r.queued("ops"), vec![vec!["a"]]);
}

#[test]
fn silenced_or_unrouted_transitions_are_not_kept_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = run(dir.path());
    r.submit(vec![transition("a", &[])]);
    assert_eq!(r.pending(), 0);
}

#[test]
fn a_released_alert_does_not_wait_for_its_groups_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = run(dir.path());
    // One group per rule: alice (silenced) shares it with bob.
    let alert = |user: &str| {
        let mut t = transition("a", &["ops"]);
        t.alert.labels.insert("user_id".into(), user.into());
        t.alert.fingerprint = format!("fp-{user}");
        t
    };
    let silence = crate::store::Silence {
        id: "s-alice".into(),
        matchers: vec![crate::store::Matcher {
            name: "user_id".into(),
            value: "alice".into(),
            is_regex: false,
            is_equal: true,
        }],
        starts_at: crate::time::unix_secs(SystemTime::now()) - 60,
        ends_at: crate::time::unix_secs(SystemTime::now()) + 3600,
        comment: String::new(),
        created_by: String::new(),
        updated_at: 0,
    };
    lock(&r.store).put_silence(&silence).expect("put silence");
    r.submit(vec![alert("alice"), alert("bob")]);
    // Bob's group goes out now (as after group_wait).
    r.dispatcher
        .flush(SystemTime::now() + Duration::from_secs(30));
    assert_eq!(r.notifications("ops").len(), 1);
    lock(&r.store)
        .put_silence(&crate::store::Silence {
            ends_at: crate::time::unix_secs(SystemTime::now()) - 1,
            ..silence
        })
        .expect("end silence");
    let now = SystemTime::now();
    r.dispatcher.release_unsuppressed(now);
    // group_interval is 5 min; alice goes out after group_wait (30 s).
    r.dispatcher.flush(now + Duration::from_secs(29));
    assert_eq!(r.notifications("ops").len(), 1, "group_wait first");
    r.dispatcher.flush(now + Duration::from_secs(31));
    let sent = r.notifications("ops");
    assert_eq!(sent.len(), 2, "alice must not wait for group_interval");
    let users: Vec<&str> = sent[1]
        .alerts
        .iter()
        .map(|a| a.labels["user_id"].as_str())
        .collect();
    assert_eq!(users, ["alice", "bob"]);
}
