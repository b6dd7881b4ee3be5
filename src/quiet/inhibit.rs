//! `[[inhibit_rules]]` with Alertmanager's semantics: while an alert
//! matching `source_match`/`source_match_re` fires, alerts matching
//! `target_match`/`target_match_re` whose `equal` labels have the same
//! values as the source's (absent counts as empty on both sides) are not
//! sent. An alert never inhibits itself, and a pending or resolved alert
//! inhibits nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::labels::{self, LabelPattern};
use crate::alert::{Alert, AlertStatus};

/// One inhibit rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    /// Labels a source alert must have, with these values.
    #[serde(default)]
    pub source_match: BTreeMap<String, String>,
    /// Labels a source alert's values must match (anchored regexes).
    #[serde(default)]
    pub source_match_re: BTreeMap<String, LabelPattern>,
    /// Labels an inhibited alert must have, with these values.
    #[serde(default)]
    pub target_match: BTreeMap<String, String>,
    /// Labels an inhibited alert's values must match (anchored regexes).
    #[serde(default)]
    pub target_match_re: BTreeMap<String, LabelPattern>,
    /// Labels whose values must be the same in source and target.
    #[serde(default)]
    pub equal: Vec<String>,
}

impl InhibitRule {
    fn is_source(&self, a: &Alert) -> bool {
        labels::matches(&self.source_match, &self.source_match_re, &a.labels)
    }

    fn is_target(&self, a: &Alert) -> bool {
        labels::matches(&self.target_match, &self.target_match_re, &a.labels)
    }

    fn equal_labels(&self, a: &Alert, b: &Alert) -> bool {
        fn value<'a>(x: &'a Alert, k: &str) -> &'a str {
            x.labels.get(k).map(String::as_str).unwrap_or("")
        }
        self.equal.iter().all(|k| value(a, k) == value(b, k))
    }

    /// `(key, message)` per problem, keys under `prefix`
    /// (`inhibit_rules[0]`).
    pub fn problems(&self, prefix: &str) -> Vec<(String, String)> {
        let mut out = labels::problems(&format!("{prefix}.source_match_re"), &self.source_match_re);
        out.extend(labels::problems(
            &format!("{prefix}.target_match_re"),
            &self.target_match_re,
        ));
        // Without matchers a rule would take every alert as source or
        // target: almost certainly a mistake, and a silent one.
        if self.source_match.is_empty() && self.source_match_re.is_empty() {
            out.push((
                prefix.to_string(),
                "needs source_match or source_match_re".into(),
            ));
        }
        if self.target_match.is_empty() && self.target_match_re.is_empty() {
            out.push((
                prefix.to_string(),
                "needs target_match or target_match_re".into(),
            ));
        }
        out
    }
}

/// Fingerprints of the alerts in `active` that inhibit `target` under
/// `rules` (sorted, each once). Only firing alerts inhibit.
pub fn inhibited_by(rules: &[InhibitRule], target: &Alert, active: &[Alert]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rule in rules.iter().filter(|r| r.is_target(target)) {
        for source in active {
            if source.status == AlertStatus::Firing
                && source.fingerprint != target.fingerprint
                && rule.is_source(source)
                && rule.equal_labels(source, target)
            {
                out.push(source.fingerprint.clone());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(rule: &str, severity: &str, pairs: &[(&str, &str)]) -> Alert {
        let mut labels: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.insert("rule".into(), rule.into());
        labels.insert("severity".into(), severity.into());
        Alert {
            rule: rule.into(),
            status: AlertStatus::Firing,
            severity: severity.into(),
            summary: String::new(),
            fingerprint: crate::alert::fingerprint(rule, &labels),
            labels,
            value: serde_json::Value::Null,
            starts_at: 0,
            ends_at: None,
            key: Default::default(),
            annotations: Default::default(),
            evidence: Vec::new(),
            url: None,
            reason: None,
        }
    }

    fn flatline_rule() -> InhibitRule {
        InhibitRule {
            source_match: BTreeMap::from([("rule".to_string(), "call_flatline".to_string())]),
            target_match: BTreeMap::from([("severity".to_string(), "warning".to_string())]),
            equal: vec!["sdkappid".into()],
            ..InhibitRule::default()
        }
    }

    #[test]
    fn a_firing_source_inhibits_targets_with_equal_labels_only() {
        let rules = [flatline_rule()];
        let flatline = alert("call_flatline", "critical", &[("sdkappid", "1400000001")]);
        let same_app = alert(
            "missed_call_streak",
            "warning",
            &[("sdkappid", "1400000001"), ("user_id", "alice")],
        );
        let other_app = alert(
            "missed_call_streak",
            "warning",
            &[("sdkappid", "1400000002"), ("user_id", "bob")],
        );
        let active = vec![flatline.clone(), same_app.clone(), other_app.clone()];
        assert_eq!(
            inhibited_by(&rules, &same_app, &active),
            std::slice::from_ref(&flatline.fingerprint)
        );
        assert!(inhibited_by(&rules, &other_app, &active).is_empty());

        // Pending or gone: no longer a source.
        let mut pending = flatline.clone();
        pending.status = AlertStatus::Pending;
        assert!(inhibited_by(&rules, &same_app, &[pending, same_app.clone()]).is_empty());
        assert!(inhibited_by(&rules, &same_app, std::slice::from_ref(&same_app)).is_empty());
    }

    #[test]
    fn an_alert_never_inhibits_itself() {
        // Every warning inhibits every other warning of its app.
        let rule = InhibitRule {
            source_match: BTreeMap::from([("severity".to_string(), "warning".to_string())]),
            target_match_re: BTreeMap::from([(
                "severity".to_string(),
                LabelPattern::new("warn.*"),
            )]),
            equal: vec!["sdkappid".into(), "team".into()],
            ..InhibitRule::default()
        };
        let a = alert("a", "warning", &[("sdkappid", "1")]);
        let b = alert("b", "warning", &[("sdkappid", "1")]);
        assert!(inhibited_by(std::slice::from_ref(&rule), &a, std::slice::from_ref(&a)).is_empty());
        // `team` is absent on both: equal.
        assert_eq!(
            inhibited_by(&[rule], &a, &[a.clone(), b.clone()]),
            [b.fingerprint]
        );
    }

    #[test]
    fn problems_name_the_key() {
        let rule = InhibitRule {
            source_match_re: BTreeMap::from([("rule".to_string(), LabelPattern::new("(x"))]),
            ..InhibitRule::default()
        };
        let p = rule.problems("inhibit_rules[1]");
        assert_eq!(p[0].0, "inhibit_rules[1].source_match_re.rule");
        assert!(p
            .iter()
            .any(|(k, m)| k == "inhibit_rules[1]" && m.contains("target_match")));
    }
}
