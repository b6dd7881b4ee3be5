//! Time: the wall clock, read here and nowhere else in the daemon, and
//! the RFC 3339 form alerts and the admin API show times in.
//!
//! The pure core (windows, rules, alerts, quiet, timeline) never calls
//! the clock readers: time is passed in, so `replay` and `test` can run
//! it in event time. The formatting helpers are pure.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch by the wall clock (0 if the clock
/// is set before 1970).
pub fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

/// Seconds since the Unix epoch by the wall clock.
pub fn now_secs() -> i64 {
    now_ms() / 1000
}

/// `t` as milliseconds since the Unix epoch (0 before 1970).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `t` as whole seconds since the Unix epoch (0 before 1970).
pub fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Formats Unix seconds as RFC 3339 UTC (`2026-11-25T20:00:00Z`).
pub fn format_rfc3339(secs: i64) -> String {
    match ::time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => t
            .format(&::time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| secs.to_string()),
        Err(_) => secs.to_string(),
    }
}

/// Parses RFC 3339 back into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    ::time::OffsetDateTime::parse(s, &::time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// `#[serde(with)]` for Unix seconds written as RFC 3339.
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_rfc3339(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_rfc3339(&s).ok_or_else(|| serde::de::Error::custom("bad RFC 3339 time"))
    }
}

/// `#[serde(with)]` for optional Unix seconds written as RFC 3339.
pub mod rfc3339_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&super::format_rfc3339(*v)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => super::parse_rfc3339(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("bad RFC 3339 time")),
        }
    }
}
