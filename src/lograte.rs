//! Rate-limited logging of repeated errors. When the disk is full every
//! journal append fails, and when a receiver is down every attempt does:
//! one log line per failure buried the first (useful) one under thousands
//! of copies. A [`LogRate`] lets the first occurrence of an error kind
//! through, then at most one line per interval carrying how many were
//! held back. It decides; the caller logs, so fields and levels stay at
//! the call site.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Distinct error kinds remembered at most; past it the oldest half is
/// forgotten (a forgotten kind merely logs its next occurrence at once).
const MAX_KINDS: usize = 1024;

/// One limiter, usually one per component.
pub struct LogRate {
    interval: Duration,
    kinds: Mutex<HashMap<String, Seen>>,
}

struct Seen {
    logged_at: Instant,
    held_back: u64,
}

impl LogRate {
    /// At most one line per kind per `interval`.
    pub fn new(interval: Duration) -> LogRate {
        LogRate {
            interval,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Records an occurrence of `kind` at `now`. `Some(n)` means log it
    /// now, mentioning the `n` occurrences held back since the last line;
    /// `None` means it was counted and held back.
    pub fn check(&self, kind: &str, now: Instant) -> Option<u64> {
        // A poisoned map only loses counts; limiting still works.
        let mut kinds = self.kinds.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(seen) = kinds.get_mut(kind) {
            if now.saturating_duration_since(seen.logged_at) < self.interval {
                seen.held_back += 1;
                return None;
            }
            let held_back = std::mem::take(&mut seen.held_back);
            seen.logged_at = now;
            return Some(held_back);
        }
        if kinds.len() >= MAX_KINDS {
            let mut by_age: Vec<(Instant, String)> = kinds
                .iter()
                .map(|(k, s)| (s.logged_at, k.clone()))
                .collect();
            by_age.sort();
            for (_, k) in by_age.into_iter().take(MAX_KINDS / 2) {
                kinds.remove(&k);
            }
        }
        kinds.insert(
            kind.to_string(),
            Seen {
                logged_at: now,
                held_back: 0,
            },
        );
        Some(0)
    }

    /// [`LogRate::check`] at the current instant.
    pub fn check_now(&self, kind: &str) -> Option<u64> {
        self.check(kind, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_passes_repeats_are_counted_into_one_line_per_interval() {
        let rate = LogRate::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(rate.check("enospc", t0), Some(0));
        let held: usize = (1..=12_888)
            .filter(|i| {
                rate.check("enospc", t0 + Duration::from_millis(*i / 2))
                    .is_some()
            })
            .count();
        assert_eq!(held, 0, "nothing more within the interval");
        // Another kind is not held back by the first.
        assert_eq!(rate.check("eio", t0 + Duration::from_secs(1)), Some(0));
        assert_eq!(
            rate.check("enospc", t0 + Duration::from_secs(10)),
            Some(12_888)
        );
        assert_eq!(rate.check("enospc", t0 + Duration::from_secs(11)), None);
        assert_eq!(rate.check("enospc", t0 + Duration::from_secs(20)), Some(1));
    }

    #[test]
    fn kinds_are_bounded() {
        let rate = LogRate::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..(MAX_KINDS * 3) {
            assert_eq!(rate.check(&format!("k{i}"), t0), Some(0));
        }
        let kinds = rate.kinds.lock().expect("lock").len();
        assert!(kinds <= MAX_KINDS, "{kinds}");
    }
}
