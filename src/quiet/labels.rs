//! Label matchers of routes and inhibit rules: `match` (label present with
//! exactly this value) and `match_re` (the label's value, empty when the
//! label is absent, matches the whole regex, as Alertmanager anchors it).
//! A regex is compiled once, when the config is read; one that does not
//! compile is kept with its error so validation can name the key.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `pattern` compiled to match whole values only, as Alertmanager does.
pub fn anchored(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

/// A `match_re` value: the pattern as written and its compiled form.
#[derive(Clone)]
pub struct LabelPattern {
    source: String,
    regex: Result<regex::Regex, String>,
}

impl LabelPattern {
    pub fn new(source: impl Into<String>) -> LabelPattern {
        let source = source.into();
        let regex = anchored(&source).map_err(|e| e.to_string());
        LabelPattern { source, regex }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Why the pattern does not compile, if it does not.
    pub fn error(&self) -> Option<&str> {
        self.regex.as_ref().err().map(String::as_str)
    }

    /// Whether the whole of `value` matches (never, for a broken pattern).
    pub fn is_match(&self, value: &str) -> bool {
        self.regex.as_ref().is_ok_and(|r| r.is_match(value))
    }
}

impl fmt::Debug for LabelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

impl PartialEq for LabelPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for LabelPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for LabelPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(LabelPattern::new)
    }
}

/// Whether `labels` has every `equal` label with its value and every
/// `re` label (absent counts as empty) matching its pattern. No matchers
/// at all match everything.
pub fn matches(
    equal: &BTreeMap<String, String>,
    re: &BTreeMap<String, LabelPattern>,
    labels: &BTreeMap<String, String>,
) -> bool {
    equal.iter().all(|(k, v)| labels.get(k) == Some(v))
        && re
            .iter()
            .all(|(k, p)| p.is_match(labels.get(k).map(String::as_str).unwrap_or("")))
}

/// `(key, message)` for each pattern in `re` that does not compile, keys
/// as `{prefix}.{label}`.
pub fn problems(prefix: &str, re: &BTreeMap<String, LabelPattern>) -> Vec<(String, String)> {
    re.iter()
        .filter_map(|(label, p)| {
            p.error().map(|e| {
                (
                    format!("{prefix}.{label}"),
                    format!("invalid regex {:?}: {e}", p.as_str()),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn regexes_are_anchored_and_absent_labels_are_empty() {
        let re = BTreeMap::from([("platform".to_string(), LabelPattern::new("And|iOS"))]);
        let none = BTreeMap::new();
        assert!(!matches(&none, &re, &labels(&[("platform", "Android")])));
        let re = BTreeMap::from([("platform".to_string(), LabelPattern::new("And.*|iOS"))]);
        assert!(matches(&none, &re, &labels(&[("platform", "Android")])));
        assert!(!matches(&none, &re, &labels(&[("platform", "xiOS")])));
        let optional = BTreeMap::from([("team".to_string(), LabelPattern::new("|mobile"))]);
        assert!(matches(&none, &optional, &labels(&[])));
        let eq = labels(&[("severity", "warning")]);
        assert!(matches(
            &eq,
            &re,
            &labels(&[("severity", "warning"), ("platform", "iOS")])
        ));
        assert!(!matches(&eq, &re, &labels(&[("platform", "iOS")])));
    }

    #[test]
    fn a_broken_pattern_matches_nothing_and_is_reported() {
        let re = BTreeMap::from([("user_id".to_string(), LabelPattern::new("(alice"))]);
        assert!(!matches(
            &BTreeMap::new(),
            &re,
            &labels(&[("user_id", "(alice")])
        ));
        let p = problems("routes[2].match_re", &re);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, "routes[2].match_re.user_id");
        assert!(p[0].1.contains("invalid regex \"(alice\""), "{}", p[0].1);
    }
}
