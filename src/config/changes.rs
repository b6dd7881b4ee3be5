//! What a reload may change: the keys applied live, and
//! [`Config::restart_only_changes`], the keys that differ between two
//! configs and need a restart. It compares the typed sections field by
//! field, so a new field that is not listed here fails to compile.

use super::{
    AlertingConfig, ClusterConfig, Config, ConsoleConfig, LogConfig, RulesConfig, ServerConfig,
    SmtpConfig, StateConfig,
};

/// Config keys a reload applies at once (with everything under them).
/// A change to any other key is refused: it needs a restart.
pub const LIVE_KEYS: &[&str] = &[
    "server.admin_token",
    "server.max_body_bytes",
    "server.shutdown_timeout",
    "apps",
    "routes",
    "alerting.default_receivers",
];

/// Pushes `section.field` for every field of a section struct that
/// differs. The pattern names every field (no `..`), so adding a field
/// to the struct without listing it here is a compile error.
macro_rules! changed_fields {
    ($out:ident, $section:literal, $old:expr, $new:expr, $Ty:ident { $($field:ident),* $(,)? }) => {{
        let $Ty { $($field),* } = $old;
        $(
            if *$field != $new.$field {
                $out.push(concat!($section, ".", stringify!($field)).to_string());
            }
        )*
    }};
}

/// Pushes `key` when the two whole values differ.
fn changed_whole<T: PartialEq>(out: &mut Vec<String>, key: &str, old: &T, new: &T) {
    if old != new {
        out.push(key.to_string());
    }
}

impl Config {
    /// Dotted paths (`rules.tick`, `receivers`) of the keys whose values
    /// differ between `self` (running) and `new` and that a reload cannot
    /// apply, in key order. Lists (`receivers`, `inhibit_rules`...) are
    /// named whole; `cluster` is named whole when it is added or removed.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<String> {
        let mut out = Vec::new();
        let Config {
            server,
            apps,
            rules,
            state,
            alerting,
            smtp,
            receivers,
            routes,
            inhibit_rules,
            time_intervals,
            log,
            cluster,
            console,
        } = self;
        changed_fields!(
            out,
            "alerting",
            alerting,
            new.alerting,
            AlertingConfig {
                repeat,
                group_by,
                group_wait,
                group_interval,
                give_up_after,
                max_retry_interval,
                max_queued_per_receiver,
                default_receivers,
                evidence_events,
                timezone,
            }
        );
        changed_whole(&mut out, "apps", apps, &new.apps);
        match (cluster, &new.cluster) {
            (Some(old), Some(new)) => changed_fields!(
                out,
                "cluster",
                old,
                new,
                ClusterConfig {
                    nats,
                    node,
                    stream,
                    replicas,
                    retention,
                    leader_ttl,
                    credentials,
                    user,
                    password,
                    tls_ca,
                }
            ),
            (old, new) => changed_whole(&mut out, "cluster", old, new),
        }
        changed_fields!(
            out,
            "console",
            console,
            new.console,
            ConsoleConfig {
                backtest_timeout,
                backtest_max_since,
                backtest_max_operations,
                backtest_max_alerts,
                history_max_rows,
            }
        );
        changed_whole(&mut out, "inhibit_rules", inhibit_rules, &new.inhibit_rules);
        changed_fields!(out, "log", log, new.log, LogConfig { format, level });
        changed_whole(&mut out, "receivers", receivers, &new.receivers);
        changed_whole(&mut out, "routes", routes, &new.routes);
        changed_fields!(
            out,
            "rules",
            rules,
            new.rules,
            RulesConfig {
                dir,
                tick,
                max_operations,
                max_expr_depth,
                max_call_depth,
                max_string_size,
                max_array_size,
                max_map_size,
                max_events_per_key,
                max_keys_per_rule,
                cpu_budget,
                cpu_budget_window,
            }
        );
        changed_fields!(
            out,
            "server",
            server,
            new.server,
            ServerConfig {
                listen,
                callback_path,
                max_body_bytes,
                max_clock_skew,
                dedup_window,
                dedup_max_entries,
                admin_token,
                shutdown_timeout,
                queue_capacity,
                callback_allow,
                max_connections,
                header_read_timeout,
                idle_timeout,
                external_url,
            }
        );
        changed_fields!(
            out,
            "smtp",
            smtp,
            new.smtp,
            SmtpConfig {
                host,
                port,
                security,
                username,
                password,
                from,
                timeout,
            }
        );
        changed_fields!(
            out,
            "state",
            state,
            new.state,
            StateConfig {
                dir,
                fsync,
                segment_bytes
            }
        );
        changed_whole(
            &mut out,
            "time_intervals",
            time_intervals,
            &new.time_intervals,
        );
        out.retain(|k| {
            !LIVE_KEYS
                .iter()
                .any(|live| k == live || k.starts_with(&format!("{live}.")))
        });
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_live_keys_may_change_without_a_restart() {
        let old = Config::default();
        let mut new = old.clone();
        new.server.admin_token = "rotated".into();
        new.server.shutdown_timeout = Duration::from_secs(3);
        new.alerting.default_receivers = vec![];
        new.routes.push(crate::config::RouteConfig {
            matchers: Default::default(),
            match_re: Default::default(),
            receivers: vec!["log".into()],
            continue_: false,
            mute_time_intervals: vec![],
            active_time_intervals: vec![],
        });
        assert!(old.restart_only_changes(&new).is_empty());
        new.server.queue_capacity = 8;
        new.rules.tick = Duration::from_secs(1);
        new.receivers.push(new.receivers[0].clone());
        assert_eq!(
            old.restart_only_changes(&new),
            vec!["receivers", "rules.tick", "server.queue_capacity"]
        );
    }

    #[test]
    fn cluster_is_named_whole_when_added_and_by_key_when_edited() {
        let old = Config::default();
        let mut new = old.clone();
        new.cluster = Some(ClusterConfig::default());
        assert_eq!(old.restart_only_changes(&new), vec!["cluster"]);
        let mut edited = new.clone();
        if let Some(c) = edited.cluster.as_mut() {
            c.replicas += 2;
        }
        assert_eq!(new.restart_only_changes(&edited), vec!["cluster.replicas"]);
    }

    #[test]
    fn a_match_re_regex_compares_by_its_source() {
        let with = |re: &str| {
            let mut c = Config::default();
            c.inhibit_rules.push(crate::quiet::InhibitRule {
                source_match_re: [("a".to_string(), crate::quiet::LabelPattern::new(re))].into(),
                ..Default::default()
            });
            c
        };
        assert!(with("x+").restart_only_changes(&with("x+")).is_empty());
        assert_eq!(
            with("x+").restart_only_changes(&with("y+")),
            vec!["inhibit_rules"]
        );
    }
}
