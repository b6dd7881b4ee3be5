//! Grouping: alerts for the same receiver with the same values of
//! the `alerting.group_by` labels go out as one [`Notification`]. A pure
//! state machine in the manner of Alertmanager's aggregation groups, with
//! time passed in:
//!
//! - A new group waits `group_wait` for more alerts before its first
//!   notification.
//! - Afterwards, news for the group (a new alert, a repeat, a resolve) waits
//!   until `group_interval` has passed since the group's last notification.
//! - A notification shows the group's state: every alert still firing, and
//!   the alerts resolved since the last one. Resolved alerts then leave the
//!   group, and a group left empty is forgotten.
//! - Every [`Grouper::submit_tracked`] is news: the alert state machine submits an
//!   alert when it fires, when its rule's `repeat` comes round and when it
//!   resolves, so repeats happen at the rule's pace, not the Grouper's.
//! - An alert a silence held back, submitted when the silence ends
//!   ([`Grouper::submit_released`]), is news nobody has heard: its group
//!   goes out within `group_wait`, even if the group's last notification
//!   was just now.
//! - A receiver may ask to be re-sent its firing groups on a fixed period
//!   ([`Grouper::resend_every`]): Alertmanager expects clients to re-post
//!   firing alerts about every minute.
//!
//! It does not persist anything, route, silence or send.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::alert::{Alert, AlertStatus};
use crate::config::AlertingConfig;

use super::Notification;

/// The grouping knobs of `[alerting]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSettings {
    /// Labels whose values put alerts into the same notification.
    pub group_by: Vec<String>,
    /// How long a new group waits before its first notification.
    pub group_wait: Duration,
    /// Minimum time between two notifications of one group.
    pub group_interval: Duration,
}

impl From<&AlertingConfig> for GroupSettings {
    fn from(c: &AlertingConfig) -> GroupSettings {
        GroupSettings {
            group_by: c.group_by.clone(),
            group_wait: c.group_wait,
            group_interval: c.group_interval,
        }
    }
}

/// A group's identity: the receiver and the values of the group_by labels
/// (labels an alert lacks are left out).
type GroupKey = (String, BTreeMap<String, String>);

#[derive(Debug)]
struct Group {
    /// The newest version of each member, by fingerprint.
    alerts: BTreeMap<String, Alert>,
    /// When the next notification is due, if there is news.
    due_at: Option<SystemTime>,
    /// When the last notification went out.
    last_sent: Option<SystemTime>,
    /// Store ids of the pending transitions the next notification carries.
    pending: Vec<i64>,
}

/// Alerts waiting to go out together; see the module docs for the timing.
#[derive(Debug)]
pub struct Grouper {
    settings: GroupSettings,
    groups: BTreeMap<GroupKey, Group>,
    resend: BTreeMap<String, Duration>,
}

impl Grouper {
    pub fn new(settings: GroupSettings) -> Grouper {
        Grouper {
            settings,
            groups: BTreeMap::new(),
            resend: BTreeMap::new(),
        }
    }

    /// Re-sends `receiver`'s groups that still have firing alerts every
    /// `every`, news or not.
    pub fn resend_every(&mut self, receiver: &str, every: Duration) {
        self.resend.insert(receiver.to_string(), every);
    }

    /// [`Grouper::submit_tracked`] without a pending id (tests).
    #[cfg(test)]
    pub fn submit(&mut self, receiver: &str, alert: Alert, now: SystemTime) {
        self.submit_tracked(receiver, alert, now, None);
    }

    /// Adds or updates `alert` in its group for `receiver` and schedules a
    /// notification of the group. `id` is the transition's id in the
    /// store's pending table, if it has one: [`Grouper::due_tracked`] hands
    /// it back with the notification that carries it.
    pub fn submit_tracked(
        &mut self,
        receiver: &str,
        alert: Alert,
        now: SystemTime,
        id: Option<i64>,
    ) {
        let (wait, interval) = (self.settings.group_wait, self.settings.group_interval);
        let group = self.group_of(receiver, &alert);
        group.pending.extend(id);
        group.alerts.insert(alert.fingerprint.clone(), alert);
        if group.due_at.is_none() {
            group.due_at = Some(match group.last_sent {
                None => now + wait,
                Some(last) => (last + interval).max(now),
            });
        }
    }

    /// Adds `alert`, which a silence kept back until `now`, to its group
    /// for `receiver`, and makes the group due within `group_wait`.
    pub fn submit_released(&mut self, receiver: &str, alert: Alert, now: SystemTime) {
        let wait = self.settings.group_wait;
        let group = self.group_of(receiver, &alert);
        group.alerts.insert(alert.fingerprint.clone(), alert);
        let at = now + wait;
        group.due_at = Some(group.due_at.map_or(at, |due| due.min(at)));
    }

    /// The group `alert` belongs to for `receiver`, created if new.
    fn group_of(&mut self, receiver: &str, alert: &Alert) -> &mut Group {
        let labels = self
            .settings
            .group_by
            .iter()
            .filter_map(|l| Some((l.clone(), alert.labels.get(l)?.clone())))
            .collect();
        self.groups
            .entry((receiver.to_string(), labels))
            .or_insert_with(|| Group {
                alerts: BTreeMap::new(),
                due_at: None,
                last_sent: None,
                pending: Vec::new(),
            })
    }

    /// [`Grouper::due_tracked`] without the pending ids (tests).
    #[cfg(test)]
    pub fn due(&mut self, now: SystemTime) -> Vec<Notification> {
        self.due_tracked(now).into_iter().map(|(n, _)| n).collect()
    }

    /// The notifications due at `now`, in group order, each with the
    /// pending ids it carries. Each group sent is marked sent at `now`; its
    /// resolved alerts leave it.
    pub fn due_tracked(&mut self, now: SystemTime) -> Vec<(Notification, Vec<i64>)> {
        let mut out = Vec::new();
        for ((receiver, labels), group) in &mut self.groups {
            let resend = self.resend.get(receiver).copied();
            if !is_due(group, resend, now) {
                continue;
            }
            let mut alerts: Vec<Alert> = group.alerts.values().cloned().collect();
            alerts
                .sort_by(|a, b| (a.starts_at, &a.fingerprint).cmp(&(b.starts_at, &b.fingerprint)));
            out.push((
                Notification::new(receiver.clone(), alerts, labels.clone()),
                std::mem::take(&mut group.pending),
            ));
            group
                .alerts
                .retain(|_, a| a.status != AlertStatus::Resolved);
            group.due_at = None;
            group.last_sent = Some(now);
        }
        self.groups.retain(|_, g| !g.alerts.is_empty());
        out
    }

    /// The earliest time at which [`Grouper::due_tracked`] will have something,
    /// so the caller knows how long it may sleep.
    pub fn next_due(&self) -> Option<SystemTime> {
        self.groups
            .iter()
            .filter_map(|((receiver, _), g)| {
                let resend = self.resend.get(receiver).copied();
                let resend_at = match (resend, g.last_sent) {
                    (Some(every), Some(last)) if has_firing(g) => Some(last + every),
                    _ => None,
                };
                match (g.due_at, resend_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            })
            .min()
    }

    /// Number of groups held.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }
}

fn has_firing(g: &Group) -> bool {
    g.alerts.values().any(|a| a.status != AlertStatus::Resolved)
}

fn is_due(g: &Group, resend: Option<Duration>, now: SystemTime) -> bool {
    if g.due_at.is_some_and(|at| at <= now) {
        return true;
    }
    match (resend, g.last_sent) {
        (Some(every), Some(last)) => has_firing(g) && last + every <= now,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use AlertStatus::{Firing, Resolved};

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn settings() -> GroupSettings {
        GroupSettings {
            group_by: vec!["rule".into(), "platform".into()],
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
        }
    }

    fn alert(rule: &str, platform: &str, user: &str, status: AlertStatus) -> Alert {
        let labels = BTreeMap::from([
            ("rule".to_string(), rule.to_string()),
            ("platform".to_string(), platform.to_string()),
            ("user_id".to_string(), user.to_string()),
        ]);
        Alert {
            rule: rule.into(),
            status,
            severity: "warning".into(),
            summary: format!("{user} on {platform}"),
            fingerprint: crate::alert::fingerprint(rule, &labels),
            labels,
            value: serde_json::Value::Null,
            starts_at: 1_700_000_000,
            ends_at: (status == AlertStatus::Resolved).then_some(1_700_000_100),
            key: BTreeMap::new(),
            annotations: BTreeMap::new(),
            evidence: Vec::new(),
            url: None,
            reason: None,
        }
    }

    /// The users of a notification's alerts, sorted, with their status.
    fn users(n: &Notification) -> Vec<(&str, AlertStatus)> {
        let mut u: Vec<_> = n
            .alerts
            .iter()
            .map(|a| (a.labels["user_id"].as_str(), a.status))
            .collect();
        u.sort_by_key(|(user, _)| *user);
        u
    }

    #[test]
    fn a_new_group_waits_group_wait_and_collects() {
        let mut g = Grouper::new(settings());
        g.submit("ops", alert("r", "Android", "alice", Firing), t(0));
        g.submit("ops", alert("r", "Android", "bob", Firing), t(10));
        assert_eq!(g.next_due(), Some(t(30)));
        assert!(g.due(t(29)).is_empty());
        let sent = g.due(t(30));
        assert_eq!(sent.len(), 1);
        let n = &sent[0];
        assert_eq!(n.receiver, "ops");
        assert_eq!(n.status, Firing);
        assert_eq!(
            n.group_labels,
            BTreeMap::from([
                ("platform".to_string(), "Android".to_string()),
                ("rule".to_string(), "r".to_string()),
            ])
        );
        assert_eq!(users(n).len(), 2);
        assert!(g.due(t(31)).is_empty());
        assert_eq!(g.next_due(), None);
    }

    #[test]
    fn groups_split_by_receiver_and_group_by_labels() {
        let mut g = Grouper::new(settings());
        g.submit("ops", alert("r", "Android", "alice", Firing), t(0));
        g.submit("ops", alert("r", "iOS", "bob", Firing), t(0));
        g.submit("oncall", alert("r", "Android", "alice", Firing), t(0));
        g.submit("ops", alert("other", "Android", "carol", Firing), t(0));
        let sent = g.due(t(30));
        assert_eq!(sent.len(), 4);
        assert!(sent.iter().all(|n| n.alerts.len() == 1));
        // A label the alert lacks is left out of the group's labels.
        let mut g = Grouper::new(GroupSettings {
            group_by: vec!["rule".into(), "team".into()],
            ..settings()
        });
        g.submit("ops", alert("r", "Android", "alice", Firing), t(0));
        g.submit("ops", alert("r", "iOS", "bob", Firing), t(0));
        let sent = g.due(t(30));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].group_labels.len(), 1);
        assert_eq!(users(&sent[0]), [("alice", Firing), ("bob", Firing)]);
    }

    #[test]
    fn news_after_the_first_notification_waits_group_interval() {
        let mut g = Grouper::new(settings());
        g.submit("ops", alert("r", "Android", "alice", Firing), t(0));
        assert_eq!(g.due(t(30)).len(), 1);
        g.submit("ops", alert("r", "Android", "bob", Firing), t(60));
        assert_eq!(g.next_due(), Some(t(330)));
        assert!(g.due(t(329)).is_empty());
        let sent = g.due(t(330));
        // The whole group's state goes out: alice still fires.
        assert_eq!(users(&sent[0]), [("alice", Firing), ("bob", Firing)]);
        // Long after the last notification, news goes out at once.
        g.submit("ops", alert("r", "Android", "carol", Firing), t(5000));
        assert_eq!(g.next_due(), Some(t(5000)));
        assert_eq!(g.due(t(5000))[0].alerts.len(), 3);
    }

    #[test]
    fn resolved_alerts_go_out_once_then_leave() {
        let mut g = Grouper::new(settings());
        g.submit("ops", alert("r", "Android", "alice", Firing), t(0));
        g.submit("ops", alert("r", "Android", "bob", Firing), t(0));
        g.due(t(30));
        g.submit("ops", alert("r", "Android", "alice", Resolved), t(100));
        let sent = g.due(t(330));
        assert_eq!(sent[0].status, Firing);
        assert_eq!(users(&sent[0]), [("alice", Resolved), ("bob", Firing)]);
        g.submit("ops", alert("r", "Android", "bob", Resolved), t(400));
        let sent = g.due(t(630));
        assert_eq!(sent[0].status, Resolved);
        assert_eq!(users(&sent[0]), [("bob", Resolved)]);
        // Nothing is left: the group is forgotten, and a new alert starts
        // a new group with group_wait.
        assert!(g.is_empty());
        g.submit("ops", alert("r", "Android", "dave", Firing), t(700));
        assert_eq!(g.next_due(), Some(t(730)));
    }

    #[test]
    fn a_released_alert_waits_group_wait_not_group_interval() {
        let mut g = Grouper::new(settings());
        g.submit("ops", alert("r", "Android", "bob", Firing), t(0));
        assert_eq!(g.due(t(30)).len(), 1);
        // Alice's silence ends 10 s after bob's group went out.
        g.submit_released("ops", alert("r", "Android", "alice", Firing), t(40));
        assert_eq!(g.next_due(), Some(t(70)), "not t(330)");
        let sent = g.due(t(70));
        assert_eq!(users(&sent[0]), [("alice", Firing), ("bob", Firing)]);
        // Ordinary news still waits for group_interval after that.
        g.submit("ops", alert("r", "Android", "carol", Firing), t(80));
        assert_eq!(g.next_due(), Some(t(370)));
        // A release never postpones a group already due sooner.
        g.submit_released("ops", alert("r", "Android", "dave", Firing), t(360));
        assert_eq!(g.next_due(), Some(t(370)));
    }

    #[test]
    fn a_repeat_is_news() {
        let mut g = Grouper::new(settings());
        g.submit("ops", alert("r", "Android", "alice", Firing), t(0));
        g.due(t(30));
        assert_eq!(g.next_due(), None);
        // The rule's `repeat` came round: the state machine submits again.
        g.submit("ops", alert("r", "Android", "alice", Firing), t(3600));
        let sent = g.due(t(3600));
        assert_eq!(users(&sent[0]), [("alice", Firing)]);
    }

    #[test]
    fn resend_every_re_posts_firing_groups() {
        let mut g = Grouper::new(settings());
        g.resend_every("am", Duration::from_secs(60));
        g.submit("am", alert("r", "Android", "alice", Firing), t(0));
        g.submit("ops", alert("r", "Android", "alice", Firing), t(0));
        assert_eq!(g.due(t(30)).len(), 2);
        assert_eq!(g.next_due(), Some(t(90)));
        let sent = g.due(t(90));
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].receiver, "am");
        g.submit("am", alert("r", "Android", "alice", Resolved), t(100));
        // The resolve is news and waits for group_interval (from t=90);
        // with nothing firing there is nothing to re-post meanwhile.
        assert_eq!(g.next_due(), Some(t(390)));
        assert!(g.due(t(389)).is_empty());
        let sent = g.due(t(390));
        assert_eq!(sent[0].status, Resolved);
        assert!(g.due(t(1000)).is_empty());
    }
}
