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
