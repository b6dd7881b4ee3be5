//! What a person reads: the minijinja templates of every human-readable
//! message (`templates/`: a block per alert in plain text, Markdown and
//! Slack's mrkdwn, and the HTML mail), and the view of an alert they are
//! rendered from — times in `alerting.timezone` with the zone named,
//! durations, the resolve reason, description, runbook link and evidence.
//! Fitting a message into a service's size limit is `text`'s; payload
//! shapes and transports are the receivers'.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::tz::TimeZone;
use minijinja::Environment;
use serde::Serialize;

use crate::alert::{Alert, AlertStatus};

use super::text::{self, Limit, Style};
use super::Notification;

/// Annotations shown in their own place rather than as a `name: text` note.
const PLACED: &[&str] = &["description", "runbook_url", "summary"];

/// Evidence rows per alert tried, in order, when a chat message is too
/// long: all of them, then fewer, before whole alerts are left out. The
/// newest row stays: one CallId to look up is what makes an alert
/// actionable.
const EVIDENCE_STEPS: &[usize] = &[usize::MAX, 3, 1];

/// The templates and the zone times are shown in.
pub(crate) struct Render {
    env: Environment<'static>,
    tz: TimeZone,
}

impl std::fmt::Debug for Render {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Render")
            .field("tz", &self.tz.iana_name())
            .finish()
    }
}

#[derive(Serialize)]
struct Note {
    name: String,
    text: String,
}

#[derive(Serialize)]
struct EvidenceView {
    time: String,
    event: String,
    user_id: String,
    call_id: String,
    platform: String,
    call_result: String,
}

/// One alert as the templates see it; every text already escaped for the
/// style it is shown in.
#[derive(Serialize)]
struct AlertView {
    tag: &'static str,
    resolved: bool,
    rule: String,
    severity: String,
    summary: String,
    description: Option<String>,
    /// `user_id=alice platform=Android`; empty for a rule without group_by.
    key: String,
    value: Option<String>,
    /// The labels other than the key's.
    labels: String,
    started: String,
    ended: Option<String>,
    duration: Option<String>,
    reason: Option<String>,
    runbook: Option<String>,
    notes: Vec<Note>,
    url: Option<String>,
    evidence: Vec<EvidenceView>,
    /// Events left out to fit the message.
    evidence_more: usize,
    /// The zone's abbreviation, for evidence times.
    zone: String,
}

fn template_env() -> Environment<'static> {
    let mut env = Environment::new();
    // `.html` templates escape HTML; the others are escaped by the view.
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    // minijinja's HTML escaping also turns `/` into `&#x2f;`, which mail
    // clients decode but makes every link unreadable in the source; only
    // the characters that matter in text and quoted attributes are escaped.
    env.set_formatter(|out, state, value| match value.as_str() {
        Some(s)
            if matches!(state.auto_escape(), minijinja::AutoEscape::Html) && !value.is_safe() =>
        {
            out.write_str(&html_escape(s))
                .map_err(minijinja::Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    });
    for (name, source) in [
        ("block.txt", include_str!("templates/block.txt")),
        ("block.md", include_str!("templates/block.md")),
        ("block.slack", include_str!("templates/block.slack")),
        ("email.html", include_str!("templates/email.html")),
    ] {
        // The templates are part of the program; the unit tests render
        // each of them, so a broken one never ships.
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "message template does not compile");
        }
    }
    env
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Render {
    pub fn new(tz: TimeZone) -> Render {
        Render {
            env: template_env(),
            tz,
        }
    }

    /// `2025-11-26 04:00:00 CST (+08:00)`: local time, zone abbreviation
    /// and offset.
    pub fn time(&self, secs: i64) -> String {
        self.strftime(secs, "%Y-%m-%d %H:%M:%S %Z (%:z)")
    }

    /// `11-26 04:00:00`, for evidence rows (the zone is named once above).
    fn short_time(&self, secs: i64) -> String {
        self.strftime(secs, "%m-%d %H:%M:%S")
    }

    fn strftime(&self, secs: i64, format: &str) -> String {
        match jiff::Timestamp::from_second(secs) {
            Ok(t) => t
                .to_zoned_datetime(self.tz.clone())
                .strftime(format)
                .to_string(),
            Err(_) => secs.to_string(),
        }
    }

    /// The zone's abbreviation now (`UTC`, `CST`).
    fn zone(&self, secs: i64) -> String {
        self.strftime(secs, "%Z")
    }

    fn view(&self, a: &Alert, style: Style, max_evidence: usize) -> AlertView {
        let esc = |s: &str| match style {
            Style::Slack => slack_escape(s),
            _ => s.to_string(),
        };
        let pairs = |m: &BTreeMap<String, String>, sep: &str| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(sep)
        };
        let ended = a.ends_at.filter(|_| a.status == AlertStatus::Resolved);
        let shown = a.evidence.len().min(max_evidence);
        let dash = |v: &Option<String>| esc(v.as_deref().unwrap_or("-"));
        AlertView {
            tag: text::status_tag(a),
            resolved: a.status == AlertStatus::Resolved,
            rule: esc(&a.rule),
            severity: esc(&a.severity),
            summary: esc(&a.summary),
            description: a.annotations.get("description").map(|d| esc(d)),
            key: esc(&pairs(&a.key, " ")),
            value: text::value(a).map(|v| esc(&v)),
            // The key's labels are shown as the key.
            labels: esc(&pairs(
                &a.labels
                    .iter()
                    .filter(|(k, _)| !a.key.contains_key(*k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                ", ",
            )),
            started: self.time(a.starts_at),
            ended: ended.map(|e| self.time(e)),
            duration: ended.map(|e| {
                let secs = (e - a.starts_at).max(0) as u64;
                humantime::format_duration(Duration::from_secs(secs)).to_string()
            }),
            reason: ended.map(|_| a.reason.map_or("resolved", |r| r.as_str()).to_string()),
            runbook: a.annotations.get("runbook_url").map(|r| esc(r)),
            notes: a
                .annotations
                .iter()
                .filter(|(k, _)| !PLACED.contains(&k.as_str()))
                .map(|(k, v)| Note {
                    name: esc(k),
                    text: esc(v),
                })
                .collect(),
            url: a.url.as_deref().map(esc),
            evidence: a.evidence[..shown]
                .iter()
                .map(|e| EvidenceView {
                    time: self.short_time(e.event_time),
                    event: esc(&e.event),
                    user_id: dash(&e.user_id),
                    call_id: dash(&e.call_id),
                    platform: dash(&e.platform),
                    call_result: dash(&e.call_result),
                })
                .collect(),
            evidence_more: a.evidence.len() - shown,
            zone: self.zone(a.starts_at),
        }
    }

    fn render(&self, template: &str, ctx: minijinja::Value) -> String {
        let rendered = self.env.get_template(template).and_then(|t| t.render(ctx));
        rendered.unwrap_or_else(|e| {
            tracing::error!(template, error = %e, "message template failed");
            String::new()
        })
    }

    /// One alert as a block of text in `style`, with at most
    /// `max_evidence` evidence rows.
    pub fn block(&self, a: &Alert, style: Style, max_evidence: usize) -> String {
        let template = match style {
            Style::Plain => "block.txt",
            Style::Markdown => "block.md",
            Style::Slack => "block.slack",
        };
        let view = self.view(a, style, max_evidence);
        let block = self.render(
            template,
            minijinja::context! { a => minijinja::Value::from(minijinja::value::Serde(view)) },
        );
        if block.is_empty() {
            // Never an empty message because of a template.
            format!(
                "{} {} ({})\n{}",
                text::status_tag(a),
                a.rule,
                a.severity,
                a.summary
            )
        } else {
            block
        }
    }

    /// `head`, then every alert's block, within `limit`: evidence lists
    /// shrink first, then whole alerts are left out (`… N more alerts`).
    pub fn body(&self, n: &Notification, head: &str, style: Style, limit: Limit) -> String {
        let alerts = text::ordered(n);
        let mut blocks = Vec::new();
        for &max in EVIDENCE_STEPS {
            blocks = alerts.iter().map(|a| self.block(a, style, max)).collect();
            if text::fits(head, &blocks, limit) {
                break;
            }
        }
        text::fit(head, &blocks, limit)
    }

    /// The HTML part of an alert mail: a section per alert with the
    /// evidence as a table. At most `max_alerts` alerts are shown.
    pub fn email_html(&self, n: &Notification, max_alerts: usize) -> String {
        let alerts = text::ordered(n);
        let shown: Vec<AlertView> = alerts
            .iter()
            .take(max_alerts)
            .map(|a| self.view(a, Style::Plain, usize::MAX))
            .collect();
        let ctx = minijinja::context! {
            title => text::title(n),
            test => n.test,
            firing => n.firing().count(),
            resolved => n.resolved().count(),
            group => text::group_name(n),
            alerts => minijinja::Value::from(minijinja::value::Serde(shown)),
            more => alerts.len().saturating_sub(max_alerts),
            receiver => n.receiver.clone(),
        };
        self.render("email.html", ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Evidence, ResolveReason};

    fn alert(status: AlertStatus) -> Alert {
        let labels = BTreeMap::from([
            ("rule".to_string(), "r".to_string()),
            ("user_id".to_string(), "alice".to_string()),
        ]);
        Alert {
            rule: "r".into(),
            status,
            severity: "warning".into(),
            summary: "alice <missed> calls".into(),
            labels,
            value: serde_json::json!(3),
            fingerprint: "f".into(),
            starts_at: 1_764_100_800,
            ends_at: (status == AlertStatus::Resolved).then_some(1_764_101_400),
            key: BTreeMap::from([("user_id".to_string(), "alice".to_string())]),
            annotations: BTreeMap::from([
                ("description".to_string(), "Calls ring out".to_string()),
                ("runbook_url".to_string(), "https://wiki/x".to_string()),
                ("team_hint".to_string(), "ask mobile".to_string()),
            ]),
            evidence: (0..5)
                .map(|i| Evidence {
                    event_time: 1_764_100_800 - i,
                    event: "not_answer_call".into(),
                    user_id: Some("alice".into()),
                    call_id: Some(format!("call-{i}")),
                    platform: Some("Android".into()),
                    call_result: None,
                })
                .collect(),
            url: Some("https://cw/ui/alerts/f".into()),
            reason: (status == AlertStatus::Resolved).then_some(ResolveReason::Expired),
        }
    }

    #[test]
    fn every_template_renders_everything() {
        let shanghai = Render::new(TimeZone::get("Asia/Shanghai").expect("tz"));
        let a = alert(AlertStatus::Resolved);
        for style in [Style::Plain, Style::Markdown, Style::Slack] {
            let b = shanghai.block(&a, style, usize::MAX);
            for want in [
                "[RESOLVED] r",
                "Calls ring out",
                "user_id=alice",
                "2025-11-26 04:00:00 CST (+08:00)",
                "after 10m, expired",
                "https://wiki/x",
                "team_hint: ask mobile",
                "https://cw/ui/alerts/f",
                "call-0",
                "call-4",
                "times CST",
            ] {
                assert!(b.contains(want), "{style:?}: {want:?} not in\n{b}");
            }
        }
        let slack = shanghai.block(&a, Style::Slack, 1);
        assert!(slack.contains("alice &lt;missed&gt; calls"), "{slack}");
        assert!(slack.contains("… 4 more"), "{slack}");
        let plain = Render::new(TimeZone::UTC).block(&alert(AlertStatus::Firing), Style::Plain, 5);
        assert!(plain.starts_with("[FIRING] r (warning)\nalice <missed> calls\nCalls ring out\nkey: user_id=alice\nvalue: 3\n"), "{plain}");
        assert!(
            plain.contains("started: 2025-11-25 20:00:00 UTC (+00:00)"),
            "{plain}"
        );
        assert!(!plain.contains("ended"), "{plain}");
    }

    #[test]
    fn html_escapes_and_tabulates() {
        let r = Render::new(TimeZone::UTC);
        let n = Notification::new("mail", vec![alert(AlertStatus::Firing)], BTreeMap::new());
        let html = r.email_html(&n, 100);
        assert!(html.contains("alice &lt;missed&gt; calls"), "{html}");
        assert!(html.contains("<code>call-3</code>"), "{html}");
        assert!(
            html.contains(r#"<a href="https:&#x2f;&#x2f;wiki&#x2f;x">"#)
                || html.contains(r#"<a href="https://wiki/x">"#),
            "{html}"
        );
    }

    #[test]
    fn evidence_shrinks_before_alerts_are_dropped() {
        let r = Render::new(TimeZone::UTC);
        let alerts = vec![alert(AlertStatus::Firing), alert(AlertStatus::Firing)];
        let n = Notification::new("chat", alerts, BTreeMap::new());
        let full = r.body(&n, "HEAD", Style::Plain, Limit::bytes(100_000));
        assert_eq!(full.matches("call-4").count(), 2);
        let one = r.block(&n.alerts[0], Style::Plain, 1).len();
        let tight = r.body(&n, "HEAD", Style::Plain, Limit::bytes(2 * one + 20));
        assert_eq!(tight.matches("[FIRING] r").count(), 2, "{tight}");
        assert!(
            tight.contains("call-0") && !tight.contains("call-4"),
            "{tight}"
        );
    }
}
