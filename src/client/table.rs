//! Plain-text tables for `callwatch alerts` and `callwatch silence ls`:
//! columns padded to their widest cell, long texts cut, times shown as
//! ages ("5m ago", "in 1h59m") since on-call reads these at a glance.
//! Pure: the time is passed in.

use serde_json::Value;

/// Longest summary or comment shown before it is cut with `…`.
const MAX_TEXT: usize = 72;

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// `secs` as a short span: `45s`, `12m`, `3h05m`, `2d04h`.
pub fn span(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// An RFC 3339 time relative to `now`: `5m ago` or `in 1h59m`.
fn relative(t: &Value, now: i64) -> String {
    match t.as_str().and_then(crate::time::parse_rfc3339) {
        Some(t) if t <= now => format!("{} ago", span(now - t)),
        Some(t) => format!("in {}", span(t - now)),
        None => "-".into(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Rows under a header, each column as wide as its widest cell; the last
/// column is not padded.
fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
    }
    out
}

/// The alerts table: rule, status, severity, since, silenced, summary.
/// `SILENCED` shows the first 8 characters of each silence id (enough for
/// `callwatch silence expire`), or `inhibited`.
pub fn alerts(alerts: &[Value], now: i64) -> String {
    let rows: Vec<Vec<String>> = alerts
        .iter()
        .map(|a| {
            let ids = |k: &str| -> Vec<String> {
                a[k].as_array()
                    .map(|v| v.iter().map(text).collect())
                    .unwrap_or_default()
            };
            let mut quiet: Vec<String> = ids("silenced_by")
                .iter()
                .map(|id| id.chars().take(8).collect())
                .collect();
            if !ids("inhibited_by").is_empty() {
                quiet.push("inhibited".into());
            }
            vec![
                text(&a["rule"]),
                text(&a["status"]),
                text(&a["severity"]),
                relative(&a["starts_at"], now),
                if quiet.is_empty() {
                    "-".into()
                } else {
                    quiet.join(",")
                },
                cut(&text(&a["summary"]), MAX_TEXT),
            ]
        })
        .collect();
    render(
        &["RULE", "STATUS", "SEVERITY", "SINCE", "SILENCED", "SUMMARY"],
        &rows,
    )
}

/// A matcher in the syntax `callwatch silence add` takes.
fn matcher(m: &Value) -> String {
    let op = match (
        m["isEqual"].as_bool().unwrap_or(true),
        m["isRegex"].as_bool().unwrap_or(false),
    ) {
        (true, false) => "=",
        (false, false) => "!=",
        (true, true) => "=~",
        (false, true) => "!~",
    };
    format!("{}{op}{}", text(&m["name"]), text(&m["value"]))
}

/// The silences table: id, state, ends, matchers, author, comment.
pub fn silences(list: &[Value], now: i64) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let matchers: Vec<String> = s["matchers"]
                .as_array()
                .map(|ms| ms.iter().map(matcher).collect())
                .unwrap_or_default();
            vec![
                text(&s["id"]),
                text(&s["status"]["state"]),
                relative(&s["endsAt"], now),
                matchers.join(" "),
                text(&s["createdBy"]),
                cut(&text(&s["comment"]), MAX_TEXT),
            ]
        })
        .collect();
    render(
        &["ID", "STATE", "ENDS", "MATCHERS", "CREATED BY", "COMMENT"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn spans_read_at_a_glance() {
        assert_eq!(span(45), "45s");
        assert_eq!(span(720), "12m");
        assert_eq!(span(3 * 3600 + 5 * 60), "3h05m");
        assert_eq!(span(2 * 86_400 + 4 * 3600), "2d04h");
        assert_eq!(span(-5), "0s");
    }

    #[test]
    fn tables_line_up() {
        let now = 1_767_225_600; // 2026-01-01T00:00:00Z
        let list = [
            json!({"id": "a1", "status": {"state": "active"}, "endsAt": "2026-01-01T02:00:00Z",
                   "matchers": [{"name": "platform", "value": "Android", "isRegex": false, "isEqual": true},
                                {"name": "user_id", "value": "u0.*", "isRegex": true, "isEqual": false}],
                   "createdBy": "ops", "comment": "rollout"}),
            json!({"id": "b22", "status": {"state": "expired"}, "endsAt": "2025-12-31T23:55:00Z",
                   "matchers": [], "createdBy": "", "comment": ""}),
        ];
        let t = silences(&list, now);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "ID   STATE    ENDS      MATCHERS                        CREATED BY  COMMENT"
        );
        assert_eq!(
            lines[1],
            "a1   active   in 2h00m  platform=Android user_id!~u0.*  ops         rollout"
        );
        assert_eq!(lines[2].trim_end(), "b22  expired  5m ago");
        let alerts = alerts(
            &[
                json!({"rule": "r", "status": "firing", "severity": "warning",
                     "starts_at": "2025-12-31T23:50:00Z", "summary": "x".repeat(100),
                     "silenced_by": ["0123456789abcdef"], "inhibited_by": []}),
            ],
            now,
        );
        let row = alerts.lines().nth(1).expect("a row");
        assert!(
            row.starts_with("r     firing  warning   10m ago  01234567  xxx"),
            "{row}"
        );
        assert!(row.ends_with("x…") && row.chars().count() < 120, "{row}");
    }
}
