//! Silences: label matchers with a time range (Alertmanager's model). A
//! silenced alert is still tracked by the engine and the API; it is only
//! kept out of notifications. Pure matching; storage is in `store`.

use std::collections::BTreeMap;

use crate::quiet::labels::anchored;
use crate::store::{Matcher, Silence};

/// A matcher problem, naming the matcher.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error("matcher {name:?}: invalid regex: {message}")]
    Regex { name: String, message: String },
    #[error("silence needs at least one matcher")]
    NoMatchers,
    #[error("matcher name must not be empty")]
    EmptyName,
    #[error("endsAt must be after startsAt")]
    BadRange,
}

/// Checks a silence before it is stored.
pub fn validate(s: &Silence) -> Result<(), SilenceError> {
    if s.matchers.is_empty() {
        return Err(SilenceError::NoMatchers);
    }
    if s.ends_at <= s.starts_at {
        return Err(SilenceError::BadRange);
    }
    for m in &s.matchers {
        if m.name.is_empty() {
            return Err(SilenceError::EmptyName);
        }
        if m.is_regex {
            anchored(&m.value).map_err(|e| SilenceError::Regex {
                name: m.name.clone(),
                message: e.to_string(),
            })?;
        }
    }
    Ok(())
}

fn matcher_matches(m: &Matcher, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&m.name).map(String::as_str).unwrap_or("");
    let hit = if m.is_regex {
        anchored(&m.value).is_ok_and(|r| r.is_match(value))
    } else {
        value == m.value
    };
    hit == m.is_equal
}

/// Whether `s` is in effect at `now` and matches `labels`.
pub fn silences(s: &Silence, labels: &BTreeMap<String, String>, now: i64) -> bool {
    s.starts_at <= now && now < s.ends_at && s.matchers.iter().all(|m| matcher_matches(m, labels))
}

/// The silence's state at `now`, as Alertmanager names it.
pub fn state(s: &Silence, now: i64) -> &'static str {
    if now < s.starts_at {
        "pending"
    } else if now < s.ends_at {
        "active"
    } else {
        "expired"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, value: &str, is_regex: bool, is_equal: bool) -> Matcher {
        Matcher {
            name: name.into(),
            value: value.into(),
            is_regex,
            is_equal,
        }
    }

    fn silence(matchers: Vec<Matcher>) -> Silence {
        Silence {
            id: "s".into(),
            matchers,
            starts_at: 10,
            ends_at: 20,
            comment: String::new(),
            created_by: String::new(),
        }
    }

    #[test]
    fn matching_and_time_range() {
        let labels: BTreeMap<String, String> = [
            (
                "rule".to_string(),
                "interruption_rate_by_platform".to_string(),
            ),
            ("platform".to_string(), "Android".to_string()),
        ]
        .into();
        let s = silence(vec![m("platform", "Android", false, true)]);
        assert!(silences(&s, &labels, 15));
        assert!(!silences(&s, &labels, 9));
        assert!(!silences(&s, &labels, 20));
        let s = silence(vec![
            m("platform", "And.*", true, true),
            m("rule", "x", false, false),
        ]);
        assert!(silences(&s, &labels, 15));
        let s = silence(vec![m("platform", "iOS|Web", true, true)]);
        assert!(!silences(&s, &labels, 15));
        assert_eq!(state(&s, 5), "pending");
        assert_eq!(state(&s, 25), "expired");
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(matches!(
            validate(&silence(vec![])),
            Err(SilenceError::NoMatchers)
        ));
        let err = validate(&silence(vec![m("x", "(", true, true)])).unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
    }
}
