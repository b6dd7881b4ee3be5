//! Alerts: the alert object (docs/alerts.md) and the per-(rule, key) state machine
//! (pending → firing → resolved, with `for` and `repeat`). Pure: time is
//! passed in and the machine returns the transitions to notify; it never
//! sends anything itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::annotations::{Annotations, TemplateContext};
use crate::event::Event;
// Where the RFC 3339 helpers lived before `time` gathered them.
pub use crate::time::{format_rfc3339, parse_rfc3339, rfc3339, rfc3339_opt};

/// Lifecycle of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Pending,
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Pending => "pending",
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// The alert object of docs/alerts.md (webhook `alerts[]`, replay output, API).
/// Times are Unix seconds internally and RFC 3339 on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub rule: String,
    pub status: AlertStatus,
    pub severity: String,
    pub summary: String,
    pub labels: BTreeMap<String, String>,
    /// A number when `check` gave one, else null.
    pub value: serde_json::Value,
    pub fingerprint: String,
    #[serde(with = "rfc3339")]
    pub starts_at: i64,
    #[serde(with = "rfc3339_opt")]
    pub ends_at: Option<i64>,
    /// The key the alert is about: the rule's `group_by` fields and values.
    #[serde(default)]
    pub key: BTreeMap<String, String>,
    /// `RULE.annotations` rendered for this alert, then `check`'s.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Calls that show the problem, newest first (gathered when the alert
    /// is notified, not on every evaluation).
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// `{server.external_url}/ui/alerts/{fingerprint}`, when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Why a resolved alert resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ResolveReason>,
}

/// Why an alert resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolveReason {
    /// `check` stopped firing.
    Cleared,
    /// The window emptied.
    Expired,
    /// The rule was edited and no longer fires.
    RuleChanged,
    /// The rule was removed.
    RuleRemoved,
}

impl ResolveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ResolveReason::Cleared => "cleared",
            ResolveReason::Expired => "expired",
            ResolveReason::RuleChanged => "rule_changed",
            ResolveReason::RuleRemoved => "rule_removed",
        }
    }
}

/// One event shown with an alert, enough to find the call in the TRTC
/// console.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    #[serde(with = "rfc3339")]
    pub event_time: i64,
    pub event: String,
    pub user_id: Option<String>,
    pub call_id: Option<String>,
    pub platform: Option<String>,
    pub call_result: Option<String>,
}

impl Evidence {
    pub fn of(e: &Event) -> Evidence {
        let text = |t: &Option<crate::event::Text>| t.as_ref().map(|s| s.to_string());
        Evidence {
            event_time: e.event_time,
            event: e.event.to_string(),
            user_id: text(&e.user_id),
            call_id: text(&e.call_id),
            platform: text(&e.platform),
            call_result: Some(e.call_result.to_string()).filter(|s| !s.is_empty()),
        }
    }
}

/// Stable identity of an alert: SHA-256 over the rule name and the key
/// labels, hex, first 16 bytes. Stable across restarts and versions.
pub fn fingerprint(rule: &str, key: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    h.update(rule.as_bytes());
    for (k, v) in key {
        h.update([0u8]);
        h.update(k.as_bytes());
        h.update([1u8]);
        h.update(v.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// An alert that must be notified, with where the rule wants it to go.
/// Serialisable: it waits in the store until its notification is queued.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Transition {
    pub alert: Alert,
    /// The rule's `notify` list, which bypasses routes.
    pub notify: Option<Vec<String>>,
    /// Engine time of the transition.
    pub at: i64,
}

/// What a rule's `check` decided for one key at one evaluation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Condition {
    pub summary: Option<String>,
    pub severity: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub value: Option<f64>,
    /// Annotations from `check`; they win over `RULE.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// Events `check` chose as evidence; `None` lets the engine choose.
    pub evidence: Option<Vec<Evidence>>,
}

/// The per-rule settings the state machine needs.
#[derive(Debug, Clone)]
pub struct Policy {
    pub rule: String,
    pub severity: String,
    pub for_secs: i64,
    pub repeat_secs: i64,
    pub resolve: bool,
    /// `RULE.keep_firing_for`: a firing alert whose condition stops stays
    /// firing this long, and resolves only if it stays quiet throughout.
    pub keep_firing_for_secs: i64,
    /// Labels from `RULE.labels`.
    pub labels: BTreeMap<String, String>,
    /// `RULE.annotations`, compiled.
    pub annotations: Arc<Annotations>,
    /// `server.external_url`, without a trailing `/`.
    pub external_url: Option<String>,
    /// Most events shown as evidence (`alerting.evidence_events`).
    pub evidence_events: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "lowercase")]
enum Phase {
    Inactive,
    Pending {
        since: i64,
    },
    Firing {
        since: i64,
        notified: i64,
        /// When `check` stopped firing, while `keep_firing_for` holds
        /// the alert firing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quiet_since: Option<i64>,
    },
}

/// Alert state of one (rule, key). Serialisable so it survives restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tracker {
    phase: Phase,
    /// The latest alert object (for the API), while pending or firing.
    current: Option<Alert>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            phase: Phase::Inactive,
            current: None,
        }
    }
}

impl Tracker {
    /// Pending or firing.
    pub fn is_active(&self) -> bool {
        !matches!(self.phase, Phase::Inactive)
    }

    /// The phase as a name, to tell whether an evaluation changed it.
    pub fn phase_name(&self) -> &'static str {
        match self.phase {
            Phase::Inactive => "inactive",
            Phase::Pending { .. } => "pending",
            Phase::Firing { .. } => "firing",
        }
    }

    pub fn is_firing(&self) -> bool {
        matches!(self.phase, Phase::Firing { .. })
    }

    /// The current alert, while pending or firing.
    pub fn current(&self) -> Option<&Alert> {
        self.current.as_ref()
    }

    fn build(
        policy: &Policy,
        key: &BTreeMap<String, String>,
        c: &Condition,
        status: AlertStatus,
        starts_at: i64,
    ) -> Alert {
        let severity = c
            .severity
            .clone()
            .unwrap_or_else(|| policy.severity.clone());
        // Precedence, lowest first: key fields, RULE.labels, check's labels;
        // `rule` and `severity` always describe the alert itself.
        let mut labels = key.clone();
        labels.extend(policy.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        labels.extend(c.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        labels.insert("rule".into(), policy.rule.clone());
        labels.insert("severity".into(), severity.clone());
        let summary = c
            .summary
            .clone()
            .unwrap_or_else(|| default_summary(&policy.rule, key));
        let value = c
            .value
            .and_then(serde_json::Number::from_f64)
            .map(|n| match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    serde_json::Value::from(f as i64)
                }
                _ => serde_json::Value::Number(n),
            })
            .unwrap_or(serde_json::Value::Null);
        let mut annotations = if policy.annotations.is_empty() {
            BTreeMap::new()
        } else {
            policy.annotations.render(&TemplateContext {
                labels: &labels,
                value: &value,
                summary: &summary,
                rule: &policy.rule,
                severity: &severity,
                starts_at: &format_rfc3339(starts_at),
            })
        };
        annotations.extend(c.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
        let fingerprint = fingerprint(&policy.rule, key);
        let mut evidence = c.evidence.clone().unwrap_or_default();
        evidence.truncate(policy.evidence_events);
        Alert {
            rule: policy.rule.clone(),
            status,
            severity,
            summary,
            labels,
            value,
            url: policy
                .external_url
                .as_ref()
                .map(|base| format!("{base}/ui/alerts/{fingerprint}")),
            fingerprint,
            starts_at,
            ends_at: None,
            key: key.clone(),
            annotations,
            evidence,
            reason: None,
        }
    }

    /// Feeds one evaluation result at engine time `now`. Returns the alert
    /// to notify, if this evaluation is a notification point: first firing,
    /// a repeat, or a resolve.
    pub fn observe(
        &mut self,
        policy: &Policy,
        key: &BTreeMap<String, String>,
        condition: Option<&Condition>,
        now: i64,
    ) -> Option<Alert> {
        match (condition, self.phase.clone()) {
            (Some(c), Phase::Inactive) if policy.for_secs > 0 => {
                self.phase = Phase::Pending { since: now };
                self.current = Some(Self::build(policy, key, c, AlertStatus::Pending, now));
                None
            }
            (Some(c), Phase::Pending { since }) if now - since < policy.for_secs => {
                self.current = Some(Self::build(policy, key, c, AlertStatus::Pending, since));
                None
            }
            (Some(c), Phase::Inactive | Phase::Pending { .. }) => {
                self.phase = Phase::Firing {
                    since: now,
                    notified: now,
                    quiet_since: None,
                };
                let a = Self::build(policy, key, c, AlertStatus::Firing, now);
                self.current = Some(a.clone());
                Some(a)
            }
            (
                Some(c),
                Phase::Firing {
                    since, notified, ..
                },
            ) => {
                let a = Self::build(policy, key, c, AlertStatus::Firing, since);
                self.current = Some(a.clone());
                let repeat = policy.repeat_secs > 0 && now - notified >= policy.repeat_secs;
                self.phase = Phase::Firing {
                    since,
                    notified: if repeat { now } else { notified },
                    quiet_since: None,
                };
                repeat.then_some(a)
            }
            (
                None,
                Phase::Firing {
                    since,
                    notified,
                    quiet_since,
                },
            ) if now - quiet_since.unwrap_or(now) < policy.keep_firing_for_secs => {
                // Quiet, but not for `keep_firing_for` yet: still firing
                // (and repeating), so a condition that flaps around its
                // threshold notifies once, not at every crossing.
                let repeat = policy.repeat_secs > 0 && now - notified >= policy.repeat_secs;
                self.phase = Phase::Firing {
                    since,
                    notified: if repeat { now } else { notified },
                    quiet_since: Some(quiet_since.unwrap_or(now)),
                };
                if repeat {
                    self.current.clone()
                } else {
                    None
                }
            }
            (None, Phase::Inactive) => None,
            (None, Phase::Pending { .. }) => {
                // Stopped before `for` elapsed: never notified.
                self.phase = Phase::Inactive;
                self.current = None;
                None
            }
            (None, Phase::Firing { .. }) => {
                self.phase = Phase::Inactive;
                let mut a = self.current.take()?;
                a.status = AlertStatus::Resolved;
                a.ends_at = Some(now);
                policy.resolve.then_some(a)
            }
        }
    }
}

/// Summary when `check` returned `true`: the rule and its key.
pub fn default_summary(rule: &str, key: &BTreeMap<String, String>) -> String {
    if key.is_empty() {
        return format!("{rule} is firing");
    }
    let k: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{rule} is firing for {}", k.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(for_secs: i64, repeat_secs: i64) -> Policy {
        Policy {
            rule: "r".into(),
            severity: "warning".into(),
            for_secs,
            repeat_secs,
            resolve: true,
            keep_firing_for_secs: 0,
            labels: [("team".to_string(), "mobile".to_string())].into(),
            annotations: Arc::default(),
            external_url: None,
            evidence_events: 5,
        }
    }

    fn key() -> BTreeMap<String, String> {
        [("user_id".to_string(), "alice".to_string())].into()
    }

    fn firing(v: f64) -> Condition {
        Condition {
            value: Some(v),
            ..Condition::default()
        }
    }

    #[test]
    fn fires_repeats_and_resolves() {
        let p = policy(0, 100);
        let mut t = Tracker::default();
        let a = t
            .observe(&p, &key(), Some(&firing(3.0)), 10)
            .expect("fires");
        assert_eq!(a.status, AlertStatus::Firing);
        assert_eq!(a.value, serde_json::json!(3));
        assert_eq!(a.labels["team"], "mobile");
        assert_eq!(a.labels["user_id"], "alice");
        assert_eq!(a.labels["rule"], "r");
        assert_eq!(a.summary, "r is firing for user_id=alice");
        assert!(t.observe(&p, &key(), Some(&firing(4.0)), 50).is_none());
        let r = t
            .observe(&p, &key(), Some(&firing(4.0)), 110)
            .expect("repeats");
        assert_eq!(r.starts_at, 10);
        let done = t.observe(&p, &key(), None, 120).expect("resolves");
        assert_eq!(done.status, AlertStatus::Resolved);
        assert_eq!(done.ends_at, Some(120));
        assert!(!t.is_active());
        assert!(t.observe(&p, &key(), None, 130).is_none());
    }

    #[test]
    fn pending_for_and_early_stop() {
        let p = policy(60, 0);
        let mut t = Tracker::default();
        assert!(t.observe(&p, &key(), Some(&firing(1.0)), 0).is_none());
        assert_eq!(t.current().map(|a| a.status), Some(AlertStatus::Pending));
        assert!(t.observe(&p, &key(), None, 30).is_none(), "never notified");
        assert!(!t.is_active());
        assert!(t.observe(&p, &key(), Some(&firing(1.0)), 100).is_none());
        let a = t
            .observe(&p, &key(), Some(&firing(1.0)), 160)
            .expect("fires after for");
        assert_eq!(a.starts_at, 160);
        assert!(
            t.observe(&p, &key(), Some(&firing(1.0)), 10_000).is_none(),
            "no repeat"
        );
    }

    #[test]
    fn check_overrides_and_no_resolve() {
        let mut p = policy(0, 0);
        p.resolve = false;
        let c = Condition {
            summary: Some("boom".into()),
            severity: Some("critical".into()),
            labels: [("team".to_string(), "web".to_string())].into(),
            value: Some(0.25),
            ..Condition::default()
        };
        let mut t = Tracker::default();
        let a = t.observe(&p, &key(), Some(&c), 0).expect("fires");
        assert_eq!(a.severity, "critical");
        assert_eq!(a.labels["severity"], "critical");
        assert_eq!(a.labels["team"], "web");
        assert_eq!(a.summary, "boom");
        assert_eq!(a.value, serde_json::json!(0.25));
        assert!(t.observe(&p, &key(), None, 5).is_none(), "resolve = false");
    }

    #[test]
    fn alert_object_shape() {
        let mut labels = BTreeMap::new();
        labels.insert("rule".to_string(), "r".to_string());
        let a = Alert {
            rule: "r".into(),
            status: AlertStatus::Firing,
            severity: "warning".into(),
            summary: "s".into(),
            labels: labels.clone(),
            value: serde_json::json!(3),
            fingerprint: fingerprint("r", &labels),
            starts_at: 1_764_100_800,
            ends_at: None,
            key: BTreeMap::new(),
            annotations: BTreeMap::new(),
            evidence: Vec::new(),
            url: None,
            reason: None,
        };
        let v = serde_json::to_value(&a).expect("serialize");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["starts_at"], "2025-11-25T20:00:00Z");
        assert_eq!(v["ends_at"], serde_json::Value::Null);
        let back: Alert = serde_json::from_value(v.clone()).expect("deserialize");
        assert_eq!(back, a);
        assert_eq!(a.fingerprint.len(), 32);
        assert_eq!(v["annotations"], serde_json::json!({}));
        assert_eq!(v["evidence"], serde_json::json!([]));
        assert!(v.get("url").is_none() && v.get("reason").is_none());
        // An alert saved before annotations, evidence and reasons existed
        // still loads.
        let old = serde_json::json!({
            "rule": "r", "status": "firing", "severity": "warning", "summary": "s",
            "labels": {}, "value": null, "fingerprint": "f",
            "starts_at": "2025-11-25T20:00:00Z", "ends_at": null,
        });
        let back: Alert = serde_json::from_value(old).expect("old alert loads");
        assert!(back.annotations.is_empty() && back.evidence.is_empty());
    }

    #[test]
    fn keep_firing_for_rides_out_quiet_spells_shorter_than_it() {
        let mut p = policy(0, 1000);
        p.keep_firing_for_secs = 60;
        let mut t = Tracker::default();
        let mut sent = Vec::new();
        // Firing and quiet in turn, every 20 s, for 200 s: one alert.
        for (i, now) in (0..=200).step_by(20).enumerate() {
            let c = (i % 2 == 0).then(|| firing(1.0));
            sent.extend(t.observe(&p, &key(), c.as_ref(), now));
        }
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert!(t.is_firing());
        // Quiet from 220: still firing at 270, resolved at 280.
        assert!(t.observe(&p, &key(), None, 220).is_none());
        assert!(t.observe(&p, &key(), None, 270).is_none());
        assert!(t.is_firing());
        let done = t.observe(&p, &key(), None, 280).expect("resolves");
        assert_eq!(done.status, AlertStatus::Resolved);
        assert_eq!(done.starts_at, 0);
        assert_eq!(done.ends_at, Some(280));
        // A firing state saved before the field existed still reads.
        let old = r#"{"phase":{"phase":"firing","since":1,"notified":2},"current":null}"#;
        let back: Tracker = serde_json::from_str(old).expect("old state");
        assert!(back.is_firing());
    }

    #[test]
    fn an_alert_kept_firing_still_repeats() {
        let mut p = policy(0, 100);
        p.keep_firing_for_secs = 1000;
        let mut t = Tracker::default();
        assert!(t.observe(&p, &key(), Some(&firing(1.0)), 0).is_some());
        assert!(t.observe(&p, &key(), None, 50).is_none());
        let again = t.observe(&p, &key(), None, 100).expect("repeat");
        assert_eq!(again.status, AlertStatus::Firing);
        assert!(t
            .observe(&p, &key(), None, 1049)
            .is_some_and(|a| a.status == AlertStatus::Firing));
        assert!(t
            .observe(&p, &key(), None, 1050)
            .is_some_and(|a| a.status == AlertStatus::Resolved));
    }
}
