//! Routing (SPEC §6): which receivers an alert goes to. A rule's `notify`
//! list wins; else the first `[[routes]]` whose `match` labels all equal the
//! alert's (a route with `continue = true` lets later routes match too);
//! else `alerting.default_receivers`. Pure.

use crate::alert::Alert;
use crate::config::RouteConfig;

/// Receiver names for `alert`, in order, without duplicates.
pub fn receivers_for(
    alert: &Alert,
    rule_notify: Option<&[String]>,
    routes: &[RouteConfig],
    default: &[String],
) -> Vec<String> {
    if let Some(n) = rule_notify {
        return dedup(n.iter().cloned());
    }
    let mut out = Vec::new();
    for route in routes {
        let matches = route
            .matchers
            .iter()
            .all(|(k, v)| alert.labels.get(k) == Some(v));
        if matches {
            out.extend(route.receivers.iter().cloned());
            if !route.continue_ {
                break;
            }
        }
    }
    if out.is_empty() {
        out.extend(default.iter().cloned());
    }
    dedup(out.into_iter())
}

fn dedup(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertStatus;

    fn alert(severity: &str, team: &str) -> Alert {
        Alert {
            rule: "r".into(),
            status: AlertStatus::Firing,
            severity: severity.into(),
            summary: String::new(),
            labels: [
                ("severity".to_string(), severity.to_string()),
                ("team".to_string(), team.to_string()),
            ]
            .into(),
            value: serde_json::Value::Null,
            fingerprint: String::new(),
            starts_at: 0,
            ends_at: None,
        }
    }

    fn route(k: &str, v: &str, to: &[&str], cont: bool) -> RouteConfig {
        RouteConfig {
            matchers: [(k.to_string(), v.to_string())].into(),
            receivers: to.iter().map(|s| s.to_string()).collect(),
            continue_: cont,
        }
    }

    #[test]
    fn notify_then_routes_then_default() {
        let routes = vec![
            route("severity", "critical", &["pager", "ops"], true),
            route("team", "mobile", &["mobile", "ops"], false),
            route("team", "mobile", &["never"], false),
        ];
        let default = vec!["log".to_string()];
        let notify = vec!["x".to_string()];
        assert_eq!(
            receivers_for(
                &alert("critical", "mobile"),
                Some(&notify),
                &routes,
                &default
            ),
            ["x"]
        );
        assert_eq!(
            receivers_for(&alert("critical", "mobile"), None, &routes, &default),
            ["pager", "ops", "mobile"]
        );
        assert_eq!(
            receivers_for(&alert("warning", "web"), None, &routes, &default),
            ["log"]
        );
    }
}
