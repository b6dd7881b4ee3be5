//! Routing: which receivers an alert goes to. A rule's `notify`
//! list wins; else the `[[routes]]` in order, the first whose `match`
//! labels all equal the alert's and whose `match_re` regexes all match
//! (`continue = true` goes on to later routes); else
//! `alerting.default_receivers`. A route's `mute_time_intervals` and
//! `active_time_intervals` say when its receivers are not to be sent to;
//! [`deliveries`] reports that per receiver. Pure: no I/O, no clock.

use crate::alert::Alert;
use crate::config::RouteConfig;
use crate::quiet::{labels, TimeInterval};

/// A receiver an alert goes to, and the time intervals that keep it from
/// that receiver at the time asked about (empty: send).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub receiver: String,
    pub muted_by: Vec<String>,
}

/// The receivers for `alert`, in order, each named once.
pub fn receivers_for(
    alert: &Alert,
    rule_notify: Option<&[String]>,
    routes: &[RouteConfig],
    default: &[String],
) -> Vec<String> {
    deliveries(alert, rule_notify, routes, default, &[], 0)
        .into_iter()
        .map(|d| d.receiver)
        .collect()
}

/// Why `route` is muted at `now`: the mute intervals containing it, or,
/// outside all of its active intervals, those. Unknown names (a config
/// that skipped validation) count as never containing anything.
fn route_muted_by(route: &RouteConfig, intervals: &[TimeInterval], now: i64) -> Vec<String> {
    let contains = |name: &String| {
        intervals
            .iter()
            .any(|i| i.name() == name && i.contains(now))
    };
    let mut by: Vec<String> = route
        .mute_time_intervals
        .iter()
        .filter(|n| contains(n))
        .cloned()
        .collect();
    if !route.active_time_intervals.is_empty() && !route.active_time_intervals.iter().any(contains)
    {
        by.extend(route.active_time_intervals.iter().cloned());
    }
    by
}

/// The receivers for `alert`, in order, each once, with what mutes each
/// at `now`. A receiver two matching routes share is muted only if both
/// routes are. A rule's `notify` and the default receivers are never
/// muted: time intervals belong to routes.
pub fn deliveries(
    alert: &Alert,
    rule_notify: Option<&[String]>,
    routes: &[RouteConfig],
    default: &[String],
    intervals: &[TimeInterval],
    now: i64,
) -> Vec<Delivery> {
    if let Some(notify) = rule_notify {
        return unmuted(dedup(notify.iter()));
    }
    let mut chosen: Vec<Delivery> = Vec::new();
    let mut matched = false;
    for route in routes {
        let matches = route
            .matchers
            .iter()
            .all(|(k, v)| alert.labels.get(k) == Some(v))
            && labels::matches(&Default::default(), &route.match_re, &alert.labels);
        if !matches {
            continue;
        }
        matched = true;
        let muted_by = if intervals.is_empty() {
            Vec::new()
        } else {
            route_muted_by(route, intervals, now)
        };
        for r in &route.receivers {
            match chosen.iter_mut().find(|d| &d.receiver == r) {
                // Sent through one route is sent.
                Some(d) if d.muted_by.is_empty() || muted_by.is_empty() => d.muted_by.clear(),
                Some(d) => {
                    for n in &muted_by {
                        if !d.muted_by.contains(n) {
                            d.muted_by.push(n.clone());
                        }
                    }
                }
                None => chosen.push(Delivery {
                    receiver: r.clone(),
                    muted_by: muted_by.clone(),
                }),
            }
        }
        if !route.continue_ {
            break;
        }
    }
    if !matched {
        return unmuted(dedup(default.iter()));
    }
    chosen
}

fn unmuted(receivers: Vec<String>) -> Vec<Delivery> {
    receivers
        .into_iter()
        .map(|receiver| Delivery {
            receiver,
            muted_by: Vec::new(),
        })
        .collect()
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
            key: BTreeMap::new(),
            annotations: BTreeMap::new(),
            evidence: Vec::new(),
            url: None,
            reason: None,
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

    fn night() -> TimeInterval {
        // 22:00-24:00 UTC every day.
        TimeInterval::new(crate::quiet::interval::IntervalConfig {
            name: "night".into(),
            times: vec![crate::quiet::interval::TimeRange {
                start: "22:00".into(),
                end: "24:00".into(),
            }],
            ..Default::default()
        })
    }

    #[test]
    fn match_re_and_mutes_are_per_route() {
        let a = alert(&[("severity", "warning"), ("platform", "Android")]);
        let mut muted = route(&[("severity", "warning")], &["pager", "ops"], true);
        muted.match_re.insert(
            "platform".into(),
            crate::quiet::LabelPattern::new("iOS|Android"),
        );
        muted.mute_time_intervals = names(&["night"]);
        let mut day_only = route(&[], &["chat", "ops"], false);
        day_only.active_time_intervals = names(&["night"]);
        let routes = [muted, day_only];
        let intervals = [night()];
        let at_night = 22 * 3600 + 60;
        let by = |d: &[Delivery]| -> Vec<(String, Vec<String>)> {
            d.iter()
                .map(|d| (d.receiver.clone(), d.muted_by.clone()))
                .collect()
        };
        let d = deliveries(&a, None, &routes, &names(&["log"]), &intervals, at_night);
        assert_eq!(
            by(&d),
            [
                ("pager".to_string(), names(&["night"])),
                // Muted on the first route, sent through the second.
                ("ops".to_string(), vec![]),
                ("chat".to_string(), vec![]),
            ]
        );
        let d = deliveries(&a, None, &routes, &names(&["log"]), &intervals, 12 * 3600);
        assert_eq!(
            by(&d),
            [
                ("pager".to_string(), vec![]),
                ("ops".to_string(), vec![]),
                ("chat".to_string(), names(&["night"])),
            ]
        );
        // The regex is anchored: "Androidx" is no match.
        let other = alert(&[("severity", "warning"), ("platform", "Androidx")]);
        assert_eq!(
            receivers_for(&other, None, &routes, &names(&["log"])),
            ["chat", "ops"]
        );
    }
}
