//! The `log` receiver: one stable, human-readable line per alert on stdout,
//! for a fresh checkout with no setup and for piping into other tools.

use std::io::Write;

use crate::time::format_rfc3339;

use super::text::{labels, status_tag, value};
use super::{Notification, NotifyError};

/// The lines the `log` receiver prints for `n`, one per alert:
/// `[FIRING] rule (severity) summary | value=3 | k=v k=v | since <time>`,
/// then for a resolved alert ` until <time> (reason)`, then the
/// description, runbook and evidence CallIds when there are any. Times are
/// RFC 3339 UTC here, for tools reading the lines.
/// Control characters in the summary are escaped so each alert stays on
/// one line.
pub fn log_lines(n: &Notification) -> Vec<String> {
    let test = if n.test { "[TEST] " } else { "" };
    super::text::ordered(n)
        .into_iter()
        .map(|a| {
            let mut line = format!(
                "{test}{} {} ({}) {}",
                status_tag(a),
                one_line(&a.rule),
                one_line(&a.severity),
                one_line(&a.summary)
            );
            if let Some(v) = value(a) {
                line.push_str(&format!(" | value={}", one_line(&v)));
            }
            line.push_str(&format!(" | {}", one_line(&labels(a, " "))));
            line.push_str(&format!(" | since {}", format_rfc3339(a.starts_at)));
            if let Some(end) = a.ends_at {
                line.push_str(&format!(" until {}", format_rfc3339(end)));
            }
            if let Some(reason) = a.reason {
                line.push_str(&format!(" ({})", reason.as_str()));
            }
            if let Some(d) = a.annotations.get("description") {
                line.push_str(&format!(" | {}", one_line(d)));
            }
            if let Some(r) = a.annotations.get("runbook_url") {
                line.push_str(&format!(" | runbook {}", one_line(r)));
            }
            let calls: Vec<&str> = a
                .evidence
                .iter()
                .filter_map(|e| e.call_id.as_deref())
                .collect();
            if !calls.is_empty() {
                line.push_str(&format!(" | calls {}", one_line(&calls.join(","))));
            }
            line
        })
        .collect()
}

/// Escapes control characters (`\n` and friends) and leaves the rest.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().collect()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Prints the lines under one stdout lock, so groups never interleave.
pub(crate) fn print(n: &Notification) -> Result<(), NotifyError> {
    let mut out = std::io::stdout().lock();
    for line in log_lines(n) {
        writeln!(out, "{line}").map_err(|e| NotifyError::retryable(format!("stdout: {e}")))?;
    }
    out.flush()
        .map_err(|e| NotifyError::retryable(format!("stdout: {e}")))
}
