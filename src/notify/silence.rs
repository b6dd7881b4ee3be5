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
    #[error("endsAt is in the past")]
    EndsInPast,
    #[error("at least one matcher must not match an empty label value (this silence would match every alert)")]
    MatchesEverything,
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
    // Alertmanager refuses these too: a silence that matches alerts
    // lacking its labels matches everything, and is almost surely a typo.
    let empty = BTreeMap::new();
    if s.matchers.iter().all(|m| matcher_matches(m, &empty)) {
        return Err(SilenceError::MatchesEverything);
    }
    Ok(())
}

/// Checks a silence being created or updated at `now`: [`validate`], and
/// it must not have ended already.
pub fn validate_new(s: &Silence, now: i64) -> Result<(), SilenceError> {
    validate(s)?;
    if s.ends_at <= now {
        return Err(SilenceError::EndsInPast);
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

/// The ids of the silences among `all` that cover `labels` at `now`.
pub fn silenced_by(all: &[Silence], labels: &BTreeMap<String, String>, now: i64) -> Vec<String> {
    all.iter()
        .filter(|s| silences(s, labels, now))
        .map(|s| s.id.clone())
        .collect()
}

/// What posting a silence with the id of a stored one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// The stored silence takes the new times and comment, keeping its id.
    InPlace,
    /// The stored silence expires (if it has not) and the posted one is
    /// created under a new id.
    Replace,
}

/// Decides an update the way Alertmanager does: the matchers must be
/// unchanged; an active silence may change its end (not into the past)
/// but not its start; a pending one may move as long as it does not start
/// in the past; an expired one is never revived.
pub fn plan_update(stored: &Silence, posted: &Silence, now: i64) -> Update {
    if stored.matchers != posted.matchers {
        return Update::Replace;
    }
    let allowed = match state(stored, now) {
        "active" => posted.starts_at == stored.starts_at && posted.ends_at >= now,
        "pending" => posted.starts_at >= now,
        _ => false,
    };
    if allowed {
        Update::InPlace
    } else {
        Update::Replace
    }
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

    fn silence(matchers: Vec<Matcher>) -> Silence {
        Silence {
            id: "s".into(),
            matchers,
            starts_at: 10,
            ends_at: 20,
            comment: String::new(),
            created_by: String::new(),
            updated_at: 0,
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
        let s = silence(vec![Matcher::new("platform", "Android", false, true)]);
        assert!(silences(&s, &labels, 15));
        assert!(!silences(&s, &labels, 9));
        assert!(!silences(&s, &labels, 20));
        let s = silence(vec![
            Matcher::new("platform", "And.*", true, true),
            Matcher::new("rule", "x", false, false),
        ]);
        assert!(silences(&s, &labels, 15));
        let s = silence(vec![Matcher::new("platform", "iOS|Web", true, true)]);
        assert!(!silences(&s, &labels, 15));
        assert_eq!(state(&s, 5), "pending");
        assert_eq!(state(&s, 25), "expired");
    }

    #[test]
    fn updates_follow_alertmanager() {
        let stored = silence(vec![Matcher::new("platform", "Android", false, true)]);
        let mut posted = stored.clone();
        // Active (10..20 at 15): a new end is fine, a new start is not.
        posted.ends_at = 30;
        assert_eq!(plan_update(&stored, &posted, 15), Update::InPlace);
        posted.starts_at = 12;
        assert_eq!(plan_update(&stored, &posted, 15), Update::Replace);
        // Pending (at 5): it may move, but not start in the past.
        assert_eq!(plan_update(&stored, &posted, 5), Update::InPlace);
        posted.starts_at = 4;
        assert_eq!(plan_update(&stored, &posted, 5), Update::Replace);
        // Other matchers, or an expired silence: always a new one.
        let mut other = stored.clone();
        other.matchers[0].value = "iOS".into();
        assert_eq!(plan_update(&stored, &other, 15), Update::Replace);
        assert_eq!(plan_update(&stored, &stored, 25), Update::Replace);
    }

    #[test]
    fn a_silence_matching_everything_is_refused() {
        for matchers in [
            vec![Matcher::new("platform", "", false, true)],
            vec![Matcher::new("platform", ".*", true, true)],
            vec![
                Matcher::new("platform", "x", true, false),
                Matcher::new("rule", "", false, true),
            ],
        ] {
            assert!(
                matches!(
                    validate(&silence(matchers.clone())),
                    Err(SilenceError::MatchesEverything)
                ),
                "{matchers:?}"
            );
        }
        // A negative matcher on an absent label is a real restriction.
        assert!(validate(&silence(vec![Matcher::new("platform", "", false, false)])).is_ok());
        let s = silence(vec![Matcher::new("platform", "Android", false, true)]);
        assert!(validate_new(&s, 15).is_ok());
        assert!(matches!(
            validate_new(&s, 20),
            Err(SilenceError::EndsInPast)
        ));
    }

    #[test]
    fn validation_names_the_problem() {
        assert!(matches!(
            validate(&silence(vec![])),
            Err(SilenceError::NoMatchers)
        ));
        let err = validate(&silence(vec![Matcher::new("x", "(", true, true)])).unwrap_err();
        assert!(err.to_string().contains("\"x\""), "{err}");
    }
}
