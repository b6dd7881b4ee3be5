//! The Grafana dashboard and the Prometheus rules in `contrib/` name only
//! metrics that callwatch exports, so a renamed metric cannot leave them
//! silently empty.

use std::collections::BTreeSet;

use callwatch::metrics::{Metrics, ReasonLabels, ReceiverLabels, RuleLabels, StateLabels};

/// Every sample name the registry can expose: a counter `x` is scraped
/// as `x_total`, a histogram as `x_bucket`, `x_sum` and `x_count`. A
/// labelled family is only rendered once it has a sample, so each gets one.
fn exported() -> BTreeSet<String> {
    let m = Metrics::new();
    m.callback("a", "caller_start_call", "accepted");
    let rule = RuleLabels { rule: "r".into() };
    m.late_events.get_or_create(&rule).inc();
    m.rule_evaluations.get_or_create(&rule).inc();
    m.rule_errors.get_or_create(&rule).inc();
    m.rule_eval_seconds.get_or_create(&rule).observe(0.001);
    m.rule_keys.get_or_create(&rule).set(1);
    m.alerts
        .get_or_create(&StateLabels {
            state: "firing".into(),
        })
        .set(1);
    m.notifications
        .get_or_create(&ReceiverLabels {
            receiver: "log".into(),
            outcome: "sent".into(),
        })
        .inc();
    m.script_output
        .get_or_create(&ReasonLabels {
            reason: "print".into(),
        })
        .inc();
    let text = m.render();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// The `callwatch_*` identifiers a file mentions.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("callwatch_") {
        let start = i + pos;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if before_ok {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

#[test]
fn contrib_files_reference_only_exported_metrics() {
    let exported = exported();
    assert!(
        exported.contains("callwatch_callbacks_total"),
        "registry parse found {exported:?}"
    );
    let root = env!("CARGO_MANIFEST_DIR");
    for file in [
        "contrib/grafana-dashboard.json",
        "contrib/prometheus-rules.yml",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).expect("read contrib file");
        let names = referenced(&text);
        assert!(!names.is_empty(), "{file} names no callwatch metric");
        let unknown: Vec<_> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics callwatch does not export: {unknown:?}"
        );
    }
}

#[test]
fn dashboard_is_valid_json_with_panels() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/contrib/grafana-dashboard.json"))
        .expect("read dashboard");
    let v: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let panels = v["panels"].as_array().expect("panels array");
    assert!(panels.len() >= 10, "{} panels", panels.len());
}
