//! Quieter alerts: the pure decisions that keep a firing alert out of
//! notifications without forgetting it. [`inhibit`]: `[[inhibit_rules]]`
//! (a firing source alert holds back matching targets); [`interval`]:
//! `[[time_intervals]]` that routes mute or activate by; [`labels`]: regex
//! label matchers (`match_re`), anchored like Alertmanager's.
//!
//! Nothing here does I/O or reads the clock: time is passed in. Holding
//! back what these decide to keep quiet, and sending it when that ends, is
//! the dispatcher's job (`notify::dispatch`); `replay` reports the same
//! decisions in event time.

pub mod inhibit;
pub mod interval;
pub mod labels;

pub use inhibit::InhibitRule;
pub use interval::TimeInterval;
pub use labels::LabelPattern;

/// The name among `known` closest to `given`, if one is close enough to
/// be a likely typo (for "did you mean" hints).
pub fn suggest<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (given.chars().count() / 3).max(1);
    known
        .into_iter()
        .map(|k| (strsim::osa_distance(given, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// ` (did you mean "x"?)` when a close name exists, else nothing.
pub fn did_you_mean<'a>(given: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    suggest(given, known)
        .map(|k| format!(" (did you mean {k:?}?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_close_names() {
        let known = ["night", "weekend", "business_hours"];
        assert_eq!(suggest("nigth", known), Some("night"));
        assert_eq!(suggest("weekends", known), Some("weekend"));
        assert_eq!(suggest("lunch", known), None);
        assert_eq!(did_you_mean("nigth", known), " (did you mean \"night\"?)");
    }
}
