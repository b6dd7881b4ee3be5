//! `[[time_intervals]]`: named sets of times that routes mute by
//! (`mute_time_intervals`) or are active in (`active_time_intervals`),
//! with Alertmanager's semantics. An interval matches an instant when all
//! of its given fields match it, read as wall-clock time in its
//! `location` (an IANA zone, default UTC), so "07:00" stays 07:00 local
//! across daylight-saving changes.
//!
//! Two shapes are accepted: the flat one (`name`, `location`, `times`,
//! `weekdays`, `days_of_month`, `months`, `years` on the entry itself) and
//! Alertmanager's (`name` and a list `time_intervals = [{...}, ...]`, any
//! of which may match). The config is parsed once, when it is read; a
//! problem is kept with the key it concerns, for validation to report.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize};

/// One period as written: every field optional (absent = any).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodConfig {
    /// IANA time zone the other fields are read in; default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Times of day, `start` inclusive, `end` exclusive (`"24:00"` allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<TimeRange>,
    /// Day names or ranges (`"monday:friday"`).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "texts"
    )]
    pub weekdays: Vec<String>,
    /// Days of the month, negative counting from its end (`"-1"` = last),
    /// or ranges (`"1:5"`, `"-3:-1"`).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "texts"
    )]
    pub days_of_month: Vec<String>,
    /// Month names or numbers, or ranges (`"june:august"`).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "texts"
    )]
    pub months: Vec<String>,
    /// Years or ranges (`"2026:2027"`).
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "texts"
    )]
    pub years: Vec<String>,
}

/// A time-of-day range, `"HH:MM"` each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRange {
    #[serde(alias = "start_time")]
    pub start: String,
    #[serde(alias = "end_time")]
    pub end: String,
}

/// A `[[time_intervals]]` entry as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalConfig {
    /// What routes call it.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<TimeRange>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "texts"
    )]
    pub weekdays: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "texts"
    )]
    pub days_of_month: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "texts"
    )]
    pub months: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "texts"
    )]
    pub years: Vec<String>,
    /// Alertmanager's shape: a list of periods, any of which may match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_intervals: Vec<PeriodConfig>,
}

impl IntervalConfig {
    fn flat(&self) -> PeriodConfig {
        PeriodConfig {
            location: self.location.clone(),
            times: self.times.clone(),
            weekdays: self.weekdays.clone(),
            days_of_month: self.days_of_month.clone(),
            months: self.months.clone(),
            years: self.years.clone(),
        }
    }

    fn has_flat_fields(&self) -> bool {
        self.flat() != PeriodConfig::default()
    }
}

/// Numbers or strings, kept as text (`days_of_month = [1, "-3:-1"]`).
fn texts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        S(String),
        I(i64),
    }
    Ok(Vec::<Text>::deserialize(d)?
        .into_iter()
        .map(|t| match t {
            Text::S(s) => s,
            Text::I(i) => i.to_string(),
        })
        .collect())
}

/// A problem in one interval: the key below the entry, and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

fn problem(key: String, message: impl Into<String>) -> Problem {
    Problem {
        key,
        message: message.into(),
    }
}

/// One period, parsed. Ranges are inclusive; times are minutes of the day
/// with the end exclusive; weekdays count from Monday = 1.
#[derive(Debug, Clone)]
struct Period {
    tz: TimeZone,
    times: Vec<(i32, i32)>,
    weekdays: Vec<(i32, i32)>,
    days_of_month: Vec<(i32, i32)>,
    months: Vec<(i32, i32)>,
    years: Vec<(i32, i32)>,
}

/// A named time interval, parsed when the config is read.
#[derive(Debug, Clone)]
pub struct TimeInterval {
    config: IntervalConfig,
    periods: Result<Vec<Period>, Problem>,
}

impl PartialEq for TimeInterval {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config
    }
}

impl Serialize for TimeInterval {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.config.serialize(s)
    }
}

impl<'de> Deserialize<'de> for TimeInterval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IntervalConfig::deserialize(d).map(TimeInterval::new)
    }
}

impl TimeInterval {
    pub fn new(config: IntervalConfig) -> TimeInterval {
        let periods = parse(&config);
        TimeInterval { config, periods }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// What is wrong with the entry, if anything (key relative to it).
    pub fn problem(&self) -> Option<&Problem> {
        self.periods.as_ref().err()
    }

    /// Whether Unix second `at` falls inside the interval. A broken entry
    /// contains nothing (validation refuses such a config).
    pub fn contains(&self, at: i64) -> bool {
        let Ok(periods) = &self.periods else {
            return false;
        };
        let Ok(ts) = jiff::Timestamp::from_second(at) else {
            return false;
        };
        periods.iter().any(|p| p.contains(p.tz.to_datetime(ts)))
    }
}

fn in_ranges(ranges: &[(i32, i32)], v: i32) -> bool {
    ranges.is_empty() || ranges.iter().any(|&(b, e)| b <= v && v <= e)
}

impl Period {
    fn contains(&self, t: DateTime) -> bool {
        let minute = i32::from(t.hour()) * 60 + i32::from(t.minute());
        let times = self.times.is_empty()
            || self
                .times
                .iter()
                .any(|&(start, end)| start <= minute && minute < end);
        let weekday = i32::from(t.weekday().to_monday_one_offset());
        // A weekday range may wrap past Sunday ("saturday:monday").
        let weekdays = self.weekdays.is_empty()
            || self.weekdays.iter().any(|&(b, e)| {
                if b <= e {
                    b <= weekday && weekday <= e
                } else {
                    weekday >= b || weekday <= e
                }
            });
        times
            && weekdays
            && self.day_of_month_matches(t)
            && in_ranges(&self.months, i32::from(t.month()))
            && in_ranges(&self.years, i32::from(t.year()))
    }

    /// Alertmanager's rule: negative days count back from the month's
    /// end; a range starting past the month's end matches nothing that
    /// month, and ends are clamped into the month.
    fn day_of_month_matches(&self, t: DateTime) -> bool {
        if self.days_of_month.is_empty() {
            return true;
        }
        let len = i32::from(t.days_in_month());
        let day = i32::from(t.day());
        self.days_of_month.iter().any(|&(b, e)| {
            let begin = if b < 0 { len + b + 1 } else { b };
            let end = if e < 0 { len + e + 1 } else { e };
            if begin > len {
                return false;
            }
            let (begin, end) = (begin.clamp(-len, len), end.clamp(-len, len));
            begin <= day && day <= end
        })
    }
}

fn parse(c: &IntervalConfig) -> Result<Vec<Period>, Problem> {
    if c.name.trim().is_empty() {
        return Err(problem("name".into(), "must not be empty"));
    }
    if !c.time_intervals.is_empty() {
        if c.has_flat_fields() {
            return Err(problem(
                "time_intervals".into(),
                "give either the fields (times, weekdays, ...) or a list of time_intervals, not both",
            ));
        }
        return c
            .time_intervals
            .iter()
            .enumerate()
            .map(|(i, p)| parse_period(p, &format!("time_intervals[{i}].")))
            .collect();
    }
    Ok(vec![parse_period(&c.flat(), "")?])
}

fn parse_period(p: &PeriodConfig, prefix: &str) -> Result<Period, Problem> {
    let key = |field: &str, i: usize| format!("{prefix}{field}[{i}]");
    let tz = match p.location.as_deref() {
        None | Some("") | Some("UTC") => TimeZone::UTC,
        Some("Local") => TimeZone::system(),
        Some(name) => TimeZone::get(name).map_err(|_| {
            let names: Vec<String> = jiff::tz::db().available().map(|n| n.to_string()).collect();
            let hint = super::did_you_mean(name, names.iter().map(String::as_str));
            problem(
                format!("{prefix}location"),
                format!("unknown time zone {name:?}{hint}"),
            )
        })?,
    };
    let mut times = Vec::new();
    for (i, t) in p.times.iter().enumerate() {
        let start = clock(&t.start).ok_or_else(|| {
            problem(
                format!("{}.start", key("times", i)),
                format!("{:?}: expected HH:MM between 00:00 and 24:00", t.start),
            )
        })?;
        let end = clock(&t.end).ok_or_else(|| {
            problem(
                format!("{}.end", key("times", i)),
                format!("{:?}: expected HH:MM between 00:00 and 24:00", t.end),
            )
        })?;
        if end <= start {
            return Err(problem(
                key("times", i),
                format!(
                    "end {:?} must be after start {:?} (split a range over midnight in two: \"{}\"-\"24:00\" and \"00:00\"-\"{}\")",
                    t.end, t.start, t.start, t.end
                ),
            ));
        }
        times.push((start, end));
    }
    let weekdays = ranges(
        &p.weekdays,
        |s| named(s, &WEEKDAYS),
        true,
        |i| key("weekdays", i),
    )?;
    let days_of_month = p
        .days_of_month
        .iter()
        .enumerate()
        .map(|(i, s)| day_range(s).map_err(|m| problem(key("days_of_month", i), m)))
        .collect::<Result<Vec<_>, _>>()?;
    let months = ranges(
        &p.months,
        |s| named(s, &MONTHS).or_else(|| s.parse().ok().filter(|m| (1..=12).contains(m))),
        false,
        |i| key("months", i),
    )?;
    let years = ranges(
        &p.years,
        |s| s.parse().ok().filter(|y| (1..=9999).contains(y)),
        false,
        |i| key("years", i),
    )?;
    Ok(Period {
        tz,
        times,
        weekdays,
        days_of_month,
        months,
        years,
    })
}

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// 1-based position of `s` (any case) among `names`.
fn named(s: &str, names: &[&str]) -> Option<i32> {
    let s = s.trim().to_ascii_lowercase();
    names.iter().position(|n| *n == s).map(|i| i as i32 + 1)
}

/// `"HH:MM"` as minutes of the day, up to `"24:00"`.
fn clock(s: &str) -> Option<i32> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    let ok = (0..24).contains(&h) && (0..60).contains(&m) || (h == 24 && m == 0);
    ok.then_some(h * 60 + m)
}

/// Single values or `a:b` ranges of `value`s. `wraps`: a range may run
/// past the end (weekdays), else its start must not be after its end.
fn ranges(
    items: &[String],
    value: impl Fn(&str) -> Option<i32>,
    wraps: bool,
    key: impl Fn(usize) -> String,
) -> Result<Vec<(i32, i32)>, Problem> {
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let bad = |what: &str| problem(key(i), format!("{item:?}: {what}"));
        let (b, e) = match item.split_once(':') {
            Some((b, e)) => (b, e),
            None => (item.as_str(), item.as_str()),
        };
        let b = value(b).ok_or_else(|| bad("unknown value"))?;
        let e = value(e).ok_or_else(|| bad("unknown value"))?;
        if b > e && !wraps {
            return Err(bad("start is after end"));
        }
        out.push((b, e));
    }
    Ok(out)
}

/// A `days_of_month` entry: a day (1..31 or -31..-1) or a range of them.
fn day_range(s: &str) -> Result<(i32, i32), String> {
    let day = |d: &str| -> Result<i32, String> {
        match d.trim().parse::<i32>() {
            Ok(n) if (1..=31).contains(&n.abs()) => Ok(n),
            _ => Err(format!(
                "{s:?}: a day is 1..31, or -31..-1 counting from the month's end"
            )),
        }
    };
    let (b, e) = match s.split_once(':') {
        Some((b, e)) => (day(b)?, day(e)?),
        None => (day(s)?, day(s)?),
    };
    if (b < 0) == (e < 0) && b > e {
        return Err(format!("{s:?}: start is after end"));
    }
    if b < 0 && e > 0 {
        return Err(format!(
            "{s:?}: a range starting from the end must end from the end too"
        ));
    }
    Ok((b, e))
}

#[cfg(test)]
mod tests {
    use figment::providers::Format;

    use super::*;

    /// Parses one entry through serde from TOML, as the config loader does.
    fn interval(text: &str) -> TimeInterval {
        figment::Figment::from(figment::providers::Toml::string(text))
            .extract()
            .expect("interval")
    }

    /// Unix seconds of a wall-clock time in `zone`.
    fn at(zone: &str, civil: &str) -> i64 {
        let dt: DateTime = civil.parse().expect("civil time");
        TimeZone::get(zone)
            .expect("zone")
            .to_timestamp(dt)
            .expect("timestamp")
            .as_second()
    }

    #[test]
    fn night_in_shanghai_on_weekdays() {
        let night = interval(
            r#"name = "night"
               location = "Asia/Shanghai"
               times = [{ start = "00:00", end = "07:00" }]
               weekdays = ["monday:friday"]"#,
        );
        assert!(night.problem().is_none(), "{:?}", night.problem());
        // 2026-11-27 is a Friday.
        assert!(night.contains(at("Asia/Shanghai", "2026-11-27T03:00")));
        assert!(night.contains(at("Asia/Shanghai", "2026-11-27T06:59")));
        assert!(!night.contains(at("Asia/Shanghai", "2026-11-27T07:00")));
        assert!(
            !night.contains(at("Asia/Shanghai", "2026-11-28T03:00")),
            "Saturday"
        );
        // 03:00 in Shanghai is 19:00 UTC the day before.
        assert!(night.contains(at("UTC", "2026-11-26T19:00")));
    }

    #[test]
    fn daylight_saving_does_not_shift_new_york_mornings() {
        let early = interval(
            r#"name = "early"
               location = "America/New_York"
               times = [{ start = "00:00", end = "07:00" }]"#,
        );
        // DST starts 2026-03-08 (UTC-5 → UTC-4) and ends 2026-11-01.
        for day in [
            "2026-03-07",
            "2026-03-08",
            "2026-03-09",
            "2026-10-31",
            "2026-11-01",
            "2026-11-02",
        ] {
            let end = at("America/New_York", &format!("{day}T07:00"));
            assert!(early.contains(end - 60), "{day} 06:59");
            assert!(!early.contains(end), "{day} 07:00");
        }
        // In UTC the end moves by an hour across the change.
        assert!(early.contains(at("UTC", "2026-03-07T11:59")));
        assert!(!early.contains(at("UTC", "2026-03-07T12:00")));
        assert!(!early.contains(at("UTC", "2026-03-09T11:00")));
        assert!(early.contains(at("UTC", "2026-03-09T10:59")));
        // 02:30 does not exist on 2026-03-08; 01:59 EST and 03:00 EDT do.
        assert!(early.contains(at("UTC", "2026-03-08T06:59")));
        assert!(early.contains(at("UTC", "2026-03-08T07:00")));
    }

    #[test]
    fn days_of_month_months_and_the_list_shape() {
        let month_end = interval(
            r#"name = "month_end"
               days_of_month = ["-3:-1", 15]
               months = ["january:march", "december", 6]"#,
        );
        assert!(month_end.problem().is_none(), "{:?}", month_end.problem());
        assert!(
            month_end.contains(at("UTC", "2026-02-26T12:00")),
            "3rd last of Feb"
        );
        assert!(!month_end.contains(at("UTC", "2026-02-25T12:00")));
        assert!(month_end.contains(at("UTC", "2026-06-15T00:00")));
        assert!(
            !month_end.contains(at("UTC", "2026-07-31T00:00")),
            "July not listed"
        );
        assert!(month_end.contains(at("UTC", "2026-12-31T23:59")));

        let weekend = interval(
            r#"name = "weekend"
               time_intervals = [
                 { weekdays = ["saturday:sunday"] },
                 { weekdays = ["friday"], times = [{ start_time = "18:00", end_time = "24:00" }] },
               ]"#,
        );
        assert!(weekend.problem().is_none(), "{:?}", weekend.problem());
        assert!(
            weekend.contains(at("UTC", "2026-11-27T18:00")),
            "Friday evening"
        );
        assert!(!weekend.contains(at("UTC", "2026-11-27T17:59")));
        assert!(weekend.contains(at("UTC", "2026-11-29T10:00")), "Sunday");
        assert!(!weekend.contains(at("UTC", "2026-11-30T10:00")), "Monday");
    }

    #[test]
    fn problems_name_the_key() {
        let cases = [
            (
                r#"name = "x"
                location = "Asia/Shangai""#,
                "location",
                "did you mean \"Asia/Shanghai\"",
            ),
            (
                r#"name = "x"
                times = [{ start = "22:00", end = "07:00" }]"#,
                "times[0]",
                "split",
            ),
            (
                r#"name = "x"
                times = [{ start = "7am", end = "09:00" }]"#,
                "times[0].start",
                "HH:MM",
            ),
            (
                r#"name = "x"
                weekdays = ["monday", "fridya"]"#,
                "weekdays[1]",
                "unknown",
            ),
            (
                r#"name = "x"
                days_of_month = ["0"]"#,
                "days_of_month[0]",
                "1..31",
            ),
            (
                r#"name = "x"
                months = ["march:january"]"#,
                "months[0]",
                "after end",
            ),
            (
                r#"name = "x"
                times = [{ start = "00:00", end = "07:00" }]
                time_intervals = [{ weekdays = ["monday"] }]"#,
                "time_intervals",
                "not both",
            ),
            (
                r#"name = "x"
                time_intervals = [{ weekdays = ["monday"] }, { months = ["smarch"] }]"#,
                "time_intervals[1].months[0]",
                "unknown",
            ),
        ];
        for (text, key, words) in cases {
            let i = interval(text);
            let p = i
                .problem()
                .unwrap_or_else(|| panic!("no problem in {text}"));
            assert_eq!(p.key, key, "{text}");
            assert!(p.message.contains(words), "{text}: {}", p.message);
        }
    }
}
