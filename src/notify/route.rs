//! Routing (SPEC §6): which receivers an alert goes to. A rule's `notify`
//! list wins; else the `[[routes]]` in order, the first whose `match`
//! labels all equal the alert's (`continue = true` goes on to later
//! routes); else `alerting.default_receivers`. Pure: no I/O, no clock.

use crate::alert::Alert;
use crate::config::RouteConfig;

/// The receivers for `alert`, in order, each named once.
pub fn receivers_for(
    alert: &Alert,
    rule_notify: Option<&[String]>,
    routes: &[RouteConfig],
    default: &[String],
) -> Vec<String> {
    if let Some(notify) = rule_notify {
        return dedup(notify.iter());
    }
    let mut chosen = Vec::new();
    let mut matched = false;
    for route in routes {
        let matches = route
            .matchers
            .iter()
            .all(|(k, v)| alert.labels.get(k) == Some(v));
        if matches {
            matched = true;
            chosen.extend(route.receivers.iter());
            if !route.continue_ {
                break;
            }
        }
    }
    if !matched {
        return dedup(default.iter());
    }
    dedup(chosen.into_iter())
}

fn dedup<'a>(names: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if !out.contains(n) {
            out.push(n.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::alert::AlertStatus;

    fn alert(labels: &[(&str, &str)]) -> Alert {
        Alert {
            rule: "r".into(),
            status: AlertStatus::Firing,
            severity: "warning".into(),
            summary: String::new(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value: serde_json::Value::Null,
            fingerprint: "f".into(),
            starts_at: 0,
            ends_at: None,
        }
    }

    fn route(matchers: &[(&str, &str)], receivers: &[&str], continue_: bool) -> RouteConfig {
        RouteConfig {
            matchers: matchers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            receivers: receivers.iter().map(|r| r.to_string()).collect(),
            continue_,
            match_re: BTreeMap::new(),
            mute_time_intervals: Vec::new(),
            active_time_intervals: Vec::new(),
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rule_notify_wins_over_routes() {
        let a = alert(&[("severity", "critical")]);
        let routes = [route(&[("severity", "critical")], &["pager"], false)];
        let notify = names(&["oncall", "oncall", "ops"]);
        assert_eq!(
            receivers_for(&a, Some(&notify), &routes, &names(&["log"])),
            ["oncall", "ops"]
        );
    }

    #[test]
    fn first_matching_route_wins_unless_continue() {
        let a = alert(&[("severity", "critical"), ("team", "mobile")]);
        let routes = [
            route(&[("severity", "warning")], &["chat"], false),
            route(
                &[("severity", "critical"), ("team", "mobile")],
                &["pager"],
                false,
            ),
            route(&[("team", "mobile")], &["mobile"], false),
        ];
        let default = names(&["log"]);
        assert_eq!(receivers_for(&a, None, &routes, &default), ["pager"]);

        let routes = [
            route(&[("severity", "critical")], &["pager", "ops"], true),
            route(&[("team", "web")], &["web"], false),
            route(&[("team", "mobile")], &["mobile", "ops"], false),
            route(&[], &["catch_all"], false),
        ];
        assert_eq!(
            receivers_for(&a, None, &routes, &default),
            ["pager", "ops", "mobile"]
        );
    }

    #[test]
    fn no_match_falls_back_to_default() {
        let a = alert(&[("severity", "info")]);
        let routes = [route(&[("severity", "critical")], &["pager"], false)];
        assert_eq!(receivers_for(&a, None, &routes, &names(&["log"])), ["log"]);
        // A label the alert lacks never matches.
        let routes = [route(&[("team", "")], &["pager"], false)];
        assert_eq!(receivers_for(&a, None, &routes, &names(&["log"])), ["log"]);
        // An empty `match` matches everything.
        let routes = [route(&[], &["all"], false)];
        assert_eq!(receivers_for(&a, None, &routes, &names(&["log"])), ["all"]);
    }
}
