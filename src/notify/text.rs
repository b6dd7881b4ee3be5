//! Human-readable text for notifications: the title
//! (`[FIRING:2] interruption_rate_by_platform (warning) platform=Android`),
//! small pieces every message shows the same way, and fitting per-alert
//! blocks (rendered by `render`) into a service's size limit with a clear
//! `… N more alerts` marker. It knows nothing about transports or payload
//! shapes.

use crate::alert::{Alert, AlertStatus};

use super::Notification;

/// Markup of a message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    /// CommonMark as DingTalk, WeCom, Discord and Teams render it.
    Markdown,
    /// Slack's mrkdwn, with `&`, `<` and `>` escaped.
    Slack,
}

/// How a service counts the length of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Bytes,
    Chars,
    /// Telegram counts UTF-16 code units.
    Utf16,
}

/// A size limit on a message text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    pub max: usize,
    pub unit: Unit,
}

impl Limit {
    pub const fn bytes(max: usize) -> Limit {
        Limit {
            max,
            unit: Unit::Bytes,
        }
    }

    pub const fn chars(max: usize) -> Limit {
        Limit {
            max,
            unit: Unit::Chars,
        }
    }

    pub const fn utf16(max: usize) -> Limit {
        Limit {
            max,
            unit: Unit::Utf16,
        }
    }

    fn len(&self, s: &str) -> usize {
        match self.unit {
            Unit::Bytes => s.len(),
            Unit::Chars => s.chars().count(),
            Unit::Utf16 => s.encode_utf16().count(),
        }
    }

    /// The longest prefix of `s` within `max` units, ending in `…` if cut.
    fn cut(&self, s: &str, max: usize) -> String {
        if self.len(s) <= max {
            return s.to_string();
        }
        let Some(budget) = max.checked_sub(self.len("…")) else {
            return String::new();
        };
        let mut used = 0;
        let mut end = 0;
        for (i, c) in s.char_indices() {
            used += match self.unit {
                Unit::Bytes => c.len_utf8(),
                Unit::Chars => 1,
                Unit::Utf16 => c.len_utf16(),
            };
            if used > budget {
                break;
            }
            end = i + c.len_utf8();
        }
        format!("{}…", &s[..end])
    }
}

/// The subject line: `[FIRING:2] rule (severity) k=v`, `[RESOLVED] rule
/// (severity) k=v`, with a `[TEST]` marker in front of test notifications.
/// The severity is the most urgent of the alerts the status counts; `k=v`
/// is the alerts' key when they share one, else the group's labels.
pub(crate) fn title(n: &Notification) -> String {
    let test = if n.test { "[TEST] " } else { "" };
    let (state, counted): (String, Vec<&Alert>) = match n.status {
        AlertStatus::Resolved => ("[RESOLVED]".to_string(), n.alerts.iter().collect()),
        _ => (
            format!("[FIRING:{}]", n.firing().count()),
            n.firing().collect(),
        ),
    };
    let severity = counted
        .iter()
        .map(|a| a.severity.as_str())
        .min_by_key(|s| urgency(s))
        .unwrap_or("info");
    let rule = rule_name(n);
    let first_key = n.alerts.first().map(|a| &a.key);
    let shared_key = first_key.filter(|k| !k.is_empty() && n.alerts.iter().all(|a| &a.key == *k));
    let pairs: Vec<String> = match shared_key {
        Some(key) => key.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        None => n
            .group_labels
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "rule" | "severity"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
    };
    let mut out = format!("{test}{state} {rule} ({severity})");
    for p in pairs {
        out.push(' ');
        out.push_str(&p);
    }
    out
}

/// Lower is more urgent; unknown severities sort last.
fn urgency(severity: &str) -> u8 {
    match severity {
        "critical" => 0,
        "warning" => 1,
        "info" => 2,
        _ => 3,
    }
}

/// The group's rule, or the distinct rules of its alerts.
fn rule_name(n: &Notification) -> String {
    if let Some(rule) = n.group_labels.get("rule") {
        return rule.clone();
    }
    let mut rules: Vec<&str> = n.alerts.iter().map(|a| a.rule.as_str()).collect();
    rules.dedup();
    rules.join(", ")
}

/// The group's labels: the rule's name bare, then the others as `k=v`.
/// Without group labels, the distinct rule names of the alerts.
pub(crate) fn group_name(n: &Notification) -> String {
    if n.group_labels.is_empty() {
        return rule_name(n);
    }
    let mut parts = Vec::new();
    if let Some(rule) = n.group_labels.get("rule") {
        parts.push(rule.clone());
    }
    parts.extend(
        n.group_labels
            .iter()
            .filter(|(k, _)| k.as_str() != "rule")
            .map(|(k, v)| format!("{k}={v}")),
    );
    parts.join(" ")
}

/// Alerts in display order: firing first, then resolved.
pub(crate) fn ordered(n: &Notification) -> Vec<&Alert> {
    n.firing().chain(n.resolved()).collect()
}

/// `[FIRING]` / `[RESOLVED]`.
pub(crate) fn status_tag(a: &Alert) -> &'static str {
    match a.status {
        AlertStatus::Resolved => "[RESOLVED]",
        _ => "[FIRING]",
    }
}

/// `k=v` pairs joined by `sep`.
pub(crate) fn labels(a: &Alert, sep: &str) -> String {
    a.labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(sep)
}

/// The alert's value as text, or `None` when it has none.
pub(crate) fn value(a: &Alert) -> Option<String> {
    match &a.value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        v => Some(v.to_string()),
    }
}

/// Whether `head` and all of `blocks` fit in `limit` as [`fit`] joins them.
pub(crate) fn fits(head: &str, blocks: &[String], limit: Limit) -> bool {
    let joined: usize = blocks
        .iter()
        .map(|b| limit.len(b) + limit.len("\n\n"))
        .sum();
    limit.len(head) + joined <= limit.max
}

/// The marker that stands for alerts left out.
fn more(n: usize) -> String {
    if n == 1 {
        "… 1 more alert".to_string()
    } else {
        format!("… {n} more alerts")
    }
}

/// Joins `head` and `blocks` with blank lines, keeping within `limit`.
/// Blocks that do not fit are replaced by `… N more alerts`; a first block
/// too long on its own is cut, so a message always shows one alert.
pub(crate) fn fit(head: &str, blocks: &[String], limit: Limit) -> String {
    const SEP: &str = "\n\n";
    let mut out = head.to_string();
    let sep = |out: &str| if out.is_empty() { "" } else { SEP };
    for (i, block) in blocks.iter().enumerate() {
        let left_after = blocks.len() - i - 1;
        let reserve = match left_after {
            0 => 0,
            k => limit.len(SEP) + limit.len(&more(k)),
        };
        let used = limit.len(&out) + limit.len(sep(&out));
        if used + limit.len(block) + reserve <= limit.max {
            out.push_str(sep(&out));
            out.push_str(block);
            continue;
        }
        let mut left = blocks.len() - i;
        if i == 0 {
            let room = limit.max.saturating_sub(used + reserve);
            let cut = limit.cut(block, room);
            if !cut.is_empty() {
                out.push_str(sep(&out));
                out.push_str(&cut);
                left -= 1;
            }
        }
        if left > 0 {
            out.push_str(sep(&out));
            out.push_str(&more(left));
        }
        break;
    }
    limit.cut(&out, limit.max)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn alert(rule: &str, status: AlertStatus, summary: &str) -> Alert {
        let labels = BTreeMap::from([
            ("rule".to_string(), rule.to_string()),
            ("platform".to_string(), "Android".to_string()),
        ]);
        Alert {
            rule: rule.into(),
            status,
            severity: "warning".into(),
            summary: summary.into(),
            labels,
            value: serde_json::json!(0.25),
            fingerprint: "f".into(),
            starts_at: 1_764_100_800,
            ends_at: (status == AlertStatus::Resolved).then_some(1_764_101_400),
            key: BTreeMap::new(),
            annotations: BTreeMap::new(),
            evidence: Vec::new(),
            url: None,
            reason: None,
        }
    }

    fn group(alerts: Vec<Alert>) -> Notification {
        let labels = BTreeMap::from([
            (
                "rule".to_string(),
                "interruption_rate_by_platform".to_string(),
            ),
            ("platform".to_string(), "Android".to_string()),
        ]);
        Notification::new("r", alerts, labels)
    }

    #[test]
    fn titles() {
        let r = "interruption_rate_by_platform";
        let mut n = group(vec![
            alert(r, AlertStatus::Firing, "a"),
            alert(r, AlertStatus::Firing, "b"),
            alert(r, AlertStatus::Resolved, "c"),
        ]);
        assert_eq!(
            title(&n),
            "[FIRING:2] interruption_rate_by_platform (warning) platform=Android"
        );
        n.test = true;
        assert!(title(&n).starts_with("[TEST] [FIRING:2] "));
        let n = group(vec![alert(r, AlertStatus::Resolved, "c")]);
        assert_eq!(
            title(&n),
            "[RESOLVED] interruption_rate_by_platform (warning) platform=Android"
        );
        let mut one = alert("x", AlertStatus::Firing, "");
        one.severity = "critical".into();
        one.key = BTreeMap::from([("user_id".to_string(), "alice".to_string())]);
        let n = Notification::new("r", vec![one], BTreeMap::new());
        assert_eq!(title(&n), "[FIRING:1] x (critical) user_id=alice");
    }

    #[test]
    fn fit_keeps_within_limit_and_counts_the_rest() {
        let blocks: Vec<String> = (0..50)
            .map(|i| format!("alert {i:02} {}", "x".repeat(80)))
            .collect();
        for limit in [Limit::bytes(1000), Limit::chars(2000), Limit::utf16(4096)] {
            let out = fit("HEAD", &blocks, limit);
            assert!(limit.len(&out) <= limit.max);
            let shown = out.matches("alert ").count();
            assert!(shown >= 1);
            if shown < 50 {
                assert!(
                    out.ends_with(&format!("… {} more alerts", 50 - shown)),
                    "{out}"
                );
            }
        }
        let all = fit("HEAD", &blocks[..2], Limit::bytes(10_000));
        assert_eq!(all, format!("HEAD\n\n{}\n\n{}", blocks[0], blocks[1]));
    }

    #[test]
    fn fit_cuts_a_huge_first_block() {
        let blocks = vec!["é".repeat(5000), "second".to_string()];
        let out = fit("HEAD", &blocks, Limit::bytes(4096));
        assert!(out.len() <= 4096);
        assert!(out.starts_with("HEAD\n\néé"));
        assert!(
            out.contains("…\n\n… 1 more alert"),
            "{}",
            &out[out.len() - 40..]
        );
        let emoji = vec!["😀".repeat(5000)];
        let out = fit("", &emoji, Limit::utf16(4096));
        assert!(out.encode_utf16().count() <= 4096);
    }
}
