//! Judging one `[[expect]]` against the active alerts, and writing what
//! a failure looks like: the expected alerts not found (`-`), the active
//! alerts not expected (`+`) and those that matched, diff-style. Running
//! the engine belongs to the runner.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::file::{Active, Expectation, ExpectedAlert};
use crate::alert::{Alert, AlertStatus};

/// A failed `[[expect]]`: what was expected, what was active, and which
/// of each found no partner.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub expectation: Expectation,
    /// Unix seconds of the evaluation.
    pub at: i64,
    pub active: Vec<Alert>,
    /// For each expected alert, the active alert it matched.
    pub matched: Vec<Option<usize>>,
}

fn matches(want: &ExpectedAlert, got: &Alert) -> bool {
    let status = match want.status {
        Active::Pending => AlertStatus::Pending,
        Active::Firing => AlertStatus::Firing,
    };
    got.rule == want.rule
        && got.status == status
        && want
            .labels
            .iter()
            .all(|(k, v)| got.labels.get(k) == Some(v))
        && want.summary.as_ref().is_none_or(|s| *s == got.summary)
}

/// Pairs every expected alert with a distinct active alert where possible
/// (a maximum bipartite matching: a loose expectation must not take the
/// only alert a stricter one could match).
fn pair(expected: &[ExpectedAlert], active: &[Alert]) -> Vec<Option<usize>> {
    let edges: Vec<Vec<usize>> = expected
        .iter()
        .map(|w| {
            (0..active.len())
                .filter(|&j| matches(w, &active[j]))
                .collect()
        })
        .collect();
    let mut owner: Vec<Option<usize>> = vec![None; active.len()];
    for i in 0..expected.len() {
        let mut seen = vec![false; active.len()];
        augment(i, &edges, &mut owner, &mut seen);
    }
    let mut out = vec![None; expected.len()];
    for (j, o) in owner.iter().enumerate() {
        if let Some(i) = o {
            out[*i] = Some(j);
        }
    }
    out
}

fn augment(i: usize, edges: &[Vec<usize>], owner: &mut [Option<usize>], seen: &mut [bool]) -> bool {
    for &j in &edges[i] {
        if seen[j] {
            continue;
        }
        seen[j] = true;
        if owner[j].is_none_or(|k| augment(k, edges, owner, seen)) {
            owner[j] = Some(i);
            return true;
        }
    }
    false
}

/// Judges an expectation at `at` (Unix seconds) against the active
/// alerts of the rules under test: `None` when it holds.
pub fn judge(expectation: &Expectation, at: i64, active: Vec<Alert>) -> Option<Mismatch> {
    let matched = pair(&expectation.alerts, &active);
    let all_found = matched.iter().all(Option::is_some);
    if all_found && active.len() == expectation.alerts.len() {
        return None;
    }
    Some(Mismatch {
        expectation: expectation.clone(),
        at,
        active,
        matched,
    })
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels
        .iter()
        // The rule is shown first on the line already.
        .filter(|(k, _)| k.as_str() != "rule")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

fn expected_text(a: &ExpectedAlert) -> String {
    let mut s = format!(
        "{} {} {}",
        a.rule,
        a.status.as_str(),
        labels_text(&a.labels)
    );
    if let Some(summary) = &a.summary {
        let _ = write!(s, " summary={summary:?}");
    }
    s
}

fn active_text(a: &Alert) -> String {
    let mut s = format!(
        "{} {} {} summary={:?}",
        a.rule,
        a.status.as_str(),
        labels_text(&a.labels),
        a.summary
    );
    if !a.value.is_null() {
        let _ = write!(s, " value={}", a.value);
    }
    s
}

impl Mismatch {
    /// The failure as indented lines: a heading naming the `[[expect]]`,
    /// then `-` for an expected alert with no active partner, `+` for an
    /// active alert nobody expected, and `=` for pairs that matched.
    pub fn render(&self) -> String {
        let e = &self.expectation;
        let missing = self.matched.iter().filter(|m| m.is_none()).count();
        let extra = self.active.len() - (self.matched.len() - missing);
        let mut out = format!(
            "  [[expect]] at {} ({}), line {}: {} expected alert(s) not active, {} active alert(s) not expected\n",
            e.at_text,
            crate::time::format_rfc3339(self.at),
            e.line,
            missing,
            extra
        );
        for (want, got) in e.alerts.iter().zip(&self.matched) {
            if got.is_none() {
                let _ = writeln!(out, "    - expected {}", expected_text(want));
            }
        }
        let taken: Vec<usize> = self.matched.iter().flatten().copied().collect();
        for (j, a) in self.active.iter().enumerate() {
            if !taken.contains(&j) {
                let _ = writeln!(out, "    + active   {}", active_text(a));
            }
        }
        for got in self.matched.iter().flatten() {
            let _ = writeln!(out, "    = active   {}", active_text(&self.active[*got]));
        }
        if self.active.is_empty() {
            out.push_str("    (no alert of the rules under test is active)\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(rule: &str, status: AlertStatus, user: &str, summary: &str) -> Alert {
        Alert {
            rule: rule.into(),
            status,
            severity: "warning".into(),
            summary: summary.into(),
            labels: [("rule", rule), ("user_id", user), ("severity", "warning")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value: serde_json::Value::from(7),
            fingerprint: format!("fp-{user}"),
            starts_at: 0,
            ends_at: None,
            key: Default::default(),
            annotations: Default::default(),
            evidence: Vec::new(),
            url: None,
            reason: None,
        }
    }

    fn want(user: Option<&str>, summary: Option<&str>) -> ExpectedAlert {
        ExpectedAlert {
            rule: "r".into(),
            status: Active::Firing,
            labels: user
                .map(|u| [("user_id".to_string(), u.to_string())].into())
                .unwrap_or_default(),
            summary: summary.map(String::from),
        }
    }

    fn expectation(alerts: Vec<ExpectedAlert>) -> Expectation {
        Expectation {
            at: 600,
            at_text: "10m".into(),
            line: 12,
            alerts,
        }
    }

    #[test]
    fn a_loose_expectation_does_not_steal_the_strict_ones_alert() {
        let active = vec![
            alert("r", AlertStatus::Firing, "alice", "a"),
            alert("r", AlertStatus::Firing, "bob", "b"),
        ];
        // Taken in order, "any r alert" would take alice's, leaving the
        // expectation for alice nothing.
        let e = expectation(vec![want(None, None), want(Some("alice"), None)]);
        assert_eq!(judge(&e, 0, active), None);
    }

    #[test]
    fn extra_missing_and_wrong_status_alerts_fail() {
        let active = vec![alert("r", AlertStatus::Firing, "alice", "a")];
        assert_eq!(
            judge(&expectation(vec![]), 0, active.clone()).map(|m| m.matched),
            Some(vec![])
        );
        let e = expectation(vec![want(Some("alice"), None), want(Some("bob"), None)]);
        assert!(judge(&e, 0, active.clone()).is_some());
        let pending = vec![alert("r", AlertStatus::Pending, "alice", "a")];
        assert!(judge(&expectation(vec![want(Some("alice"), None)]), 0, pending).is_some());
        let e = expectation(vec![want(Some("alice"), Some("not a"))]);
        assert!(judge(&e, 0, active).is_some());
    }

    #[test]
    fn a_failure_reads_as_a_diff() {
        let active = vec![alert(
            "r",
            AlertStatus::Firing,
            "alice",
            "alice left 6 calls",
        )];
        let e = expectation(vec![want(Some("alice"), Some("alice left 7 calls"))]);
        let text = judge(&e, 1_767_226_200, active).expect("fails").render();
        assert_eq!(
            text,
            "  [[expect]] at 10m (2026-01-01T00:10:00Z), line 12: 1 expected alert(s) not active, 1 active alert(s) not expected\n\
             \x20   - expected r firing {user_id=\"alice\"} summary=\"alice left 7 calls\"\n\
             \x20   + active   r firing {severity=\"warning\", user_id=\"alice\"} summary=\"alice left 6 calls\" value=7\n"
        );
    }
}
