//! What `replay` tells on stderr after its output: the per-rule count of
//! failed evaluations (always, when there are any) and the per-rule table
//! of `--summary`. Text only; the numbers come from [`ReplaySummary`].

use std::fmt::Write as _;

use super::ReplaySummary;

/// The alert lines one rule printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// `firing` lines of an alert that was not firing yet.
    pub fired: u64,
    /// `firing` lines re-sent while firing (`repeat`).
    pub repeated: u64,
    pub resolved: u64,
}

/// One line per rule whose evaluations failed, naming the count and the
/// last error; empty when none failed.
pub fn error_report(s: &ReplaySummary) -> String {
    let mut out = String::new();
    for (rule, _, stats) in &s.rules {
        if stats.errors > 0 {
            let _ = writeln!(
                out,
                "callwatch: rule {rule}: {} script error(s) in {} evaluations; last: {}",
                stats.errors,
                stats.evaluations,
                stats.last_error.as_deref().unwrap_or("?")
            );
        }
    }
    out
}

/// The `--summary` table: per rule, alerts fired (and repeated), resolved,
/// keys tracked at the end, failed and total evaluations, and the time
/// spent in `check`.
pub fn summary_table(s: &ReplaySummary) -> String {
    let width = s
        .rules
        .iter()
        .map(|(r, _, _)| r.len())
        .chain([4])
        .max()
        .unwrap_or(4);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>7}  {:>8}  {:>8}  {:>8}  {:>7}  {:>11}  {:>10}",
        "rule", "fired", "repeated", "resolved", "keys", "errors", "evaluations", "eval time"
    );
    for (rule, keys, stats) in &s.rules {
        let t = s.tally.get(rule).copied().unwrap_or_default();
        let _ = writeln!(
            out,
            "{rule:<width$}  {:>7}  {:>8}  {:>8}  {keys:>8}  {:>7}  {:>11}  {:>8.3} s",
            t.fired, t.repeated, t.resolved, stats.errors, stats.evaluations, stats.eval_secs
        );
    }
    let _ = writeln!(out, "{} callback(s) replayed", s.callbacks);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RuleStats;

    #[test]
    fn table_has_a_row_per_rule_and_errors_are_named() {
        let mut s = ReplaySummary {
            callbacks: 12,
            ..ReplaySummary::default()
        };
        s.rules.push((
            "missed_call_streak".into(),
            3,
            RuleStats {
                evaluations: 40,
                eval_secs: 0.0125,
                ..RuleStats::default()
            },
        ));
        s.rules.push((
            "bad".into(),
            1,
            RuleStats {
                evaluations: 5,
                errors: 5,
                last_error: Some("rules/bad.rhai:3:5: boom".into()),
                ..RuleStats::default()
            },
        ));
        s.tally.insert(
            "missed_call_streak".into(),
            Tally {
                fired: 2,
                repeated: 1,
                resolved: 2,
            },
        );
        let table = summary_table(&s);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[0].starts_with("rule "), "{table}");
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "missed_call_streak",
                "2",
                "1",
                "2",
                "3",
                "0",
                "40",
                "0.013",
                "s"
            ]
        );
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(row[..7], ["bad", "0", "0", "0", "1", "5", "5"]);
        assert_eq!(lines[3], "12 callback(s) replayed");
        assert_eq!(
            error_report(&s),
            "callwatch: rule bad: 5 script error(s) in 5 evaluations; last: rules/bad.rhai:3:5: boom\n"
        );
    }
}
