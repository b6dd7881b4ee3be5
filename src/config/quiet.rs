//! Validation of the quieter-alerts keys (`[[inhibit_rules]]`,
//! `[[time_intervals]]`, and routes' `match_re`, `mute_time_intervals`
//! and `active_time_intervals`): every regex compiles, every interval
//! parses, every interval a route names exists. Errors name the key as a
//! path into the file (`routes[2].mute_time_intervals[0]`).

use super::{invalid, Config, ConfigError};
use crate::quiet::{did_you_mean, labels};

impl Config {
    pub(super) fn validate_quiet(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (i, interval) in self.time_intervals.iter().enumerate() {
            if let Some(p) = interval.problem() {
                return Err(invalid(
                    format!("time_intervals[{i}].{}", p.key),
                    &p.message,
                ));
            }
            if !names.insert(interval.name()) {
                return Err(invalid(
                    format!("time_intervals[{i}].name"),
                    format!("time interval {:?} defined twice", interval.name()),
                ));
            }
        }
        for (i, rule) in self.inhibit_rules.iter().enumerate() {
            if let Some((key, message)) = rule.problems(&format!("inhibit_rules[{i}]")).pop() {
                return Err(invalid(key, message));
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            if let Some((key, message)) =
                labels::problems(&format!("routes[{i}].match_re"), &route.match_re).pop()
            {
                return Err(invalid(key, message));
            }
            let lists = [
                ("mute_time_intervals", &route.mute_time_intervals),
                ("active_time_intervals", &route.active_time_intervals),
            ];
            for (field, list) in lists {
                for (j, name) in list.iter().enumerate() {
                    if !names.contains(name.as_str()) {
                        let hint = did_you_mean(name, names.iter().copied());
                        return Err(invalid(
                            format!("routes[{i}].{field}[{j}]"),
                            format!("unknown time interval {name:?}{hint}"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The time interval named `name`.
    pub fn time_interval(&self, name: &str) -> Option<&crate::quiet::TimeInterval> {
        self.time_intervals.iter().find(|t| t.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load_str;

    const NIGHT: &str = r#"
[[time_intervals]]
name = "night"
location = "Asia/Shanghai"
times = [{ start = "00:00", end = "07:00" }]
weekdays = ["monday:friday"]
"#;

    #[test]
    fn a_full_example_loads() {
        let c = load_str(
            &format!(
                r#"{NIGHT}
[[inhibit_rules]]
source_match = {{ rule = "call_flatline" }}
target_match = {{ severity = "warning" }}
equal = ["sdkappid"]

[[routes]]
match = {{ severity = "warning" }}
match_re = {{ platform = "iOS|Android" }}
receivers = ["log"]
mute_time_intervals = ["night"]
"#
            ),
            &[],
        )
        .expect("loads");
        assert_eq!(c.time_intervals[0].name(), "night");
        assert_eq!(c.inhibit_rules[0].equal, ["sdkappid"]);
        assert_eq!(c.routes[0].mute_time_intervals, ["night"]);
        assert!(c.routes[0].match_re["platform"].is_match("iOS"));
    }

    #[test]
    fn every_reference_is_checked_with_its_path() {
        let route = |extra: &str| {
            format!(
                "{NIGHT}\n[[routes]]\nreceivers = [\"log\"]\n[[routes]]\nreceivers = [\"log\"]\n\
                 [[routes]]\nreceivers = [\"log\"]\n{extra}\n"
            )
        };
        let cases = [
            (
                route("mute_time_intervals = [\"nigth\"]"),
                "routes[2].mute_time_intervals[0]: unknown time interval \"nigth\" (did you mean \"night\"?)",
            ),
            (
                route("active_time_intervals = [\"night\", \"lunch\"]"),
                "routes[2].active_time_intervals[1]: unknown time interval \"lunch\"",
            ),
            (
                route("match_re = { user_id = \"(alice\" }"),
                "routes[2].match_re.user_id: invalid regex \"(alice\"",
            ),
            (
                route("").replace("receivers = [\"log\"]\n\n", "receivers = [\"lgo\"]\n"),
                "routes[2].receivers[0]: unknown receiver \"lgo\" (did you mean \"log\"?)",
            ),
            (
                format!("{NIGHT}{NIGHT}"),
                "time_intervals[1].name: time interval \"night\" defined twice",
            ),
            (
                NIGHT.replace("07:00", "7"),
                "time_intervals[0].times[0].end: \"7\": expected HH:MM",
            ),
            (
                "[[inhibit_rules]]\nsource_match_re = { rule = \"[\" }\ntarget_match = { severity = \"warning\" }\n"
                    .to_string(),
                "inhibit_rules[0].source_match_re.rule: invalid regex \"[\"",
            ),
            (
                "[[inhibit_rules]]\nsource_match = { rule = \"x\" }\n".to_string(),
                "inhibit_rules[0]: needs target_match",
            ),
            (
                "[[inhibit_rules]]\nsource_match = { rule = \"x\" }\ntarget = 1\n".to_string(),
                "target",
            ),
        ];
        for (toml, want) in cases {
            let err = load_str(&toml, &[]).expect_err(want).to_string();
            assert!(err.contains(want), "want {want:?}, got {err:?}");
        }
    }
}
