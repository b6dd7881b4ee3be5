//! Counting callbacks without building a label set each time: the counter
//! of every (family, command, outcome) seen is kept by the labels, found
//! again by borrowed strings, so the hot path neither allocates the three
//! label strings nor takes the family's lock.

use std::sync::RwLock;

use hashbrown::{Equivalent, HashMap};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::CallbackLabels;

/// `callwatch_callbacks_total` by label set. The set of keys is bounded as
/// the family is: unknown commands are counted as `other`.
pub struct CallbackCounters {
    family: Family<CallbackLabels, Counter>,
    known: RwLock<HashMap<CallbackLabels, Counter>>,
}

/// The labels, borrowed. Hashes as [`CallbackLabels`] does: `derive(Hash)`
/// hashes fields in order, and a `&str` hashes as a `String`.
#[derive(Hash)]
struct Borrowed<'a> {
    family: &'a str,
    command: &'a str,
    outcome: &'a str,
}

impl Equivalent<CallbackLabels> for Borrowed<'_> {
    fn equivalent(&self, k: &CallbackLabels) -> bool {
        self.family == k.family && self.command == k.command && self.outcome == k.outcome
    }
}

impl CallbackCounters {
    pub fn new(family: Family<CallbackLabels, Counter>) -> Self {
        CallbackCounters {
            family,
            known: RwLock::new(HashMap::new()),
        }
    }

    /// Counts one callback with these labels.
    pub fn inc(&self, family: &str, command: &str, outcome: &str) {
        let key = Borrowed {
            family,
            command,
            outcome,
        };
        if let Some(c) = self
            .known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            c.inc();
            return;
        }
        let labels = CallbackLabels {
            family: family.to_string(),
            command: command.to_string(),
            outcome: outcome.to_string(),
        };
        let counter = self.family.get_or_create(&labels).clone();
        counter.inc();
        self.known
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(labels, counter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_counters_share_the_family_count() {
        let family = Family::<CallbackLabels, Counter>::default();
        let counters = CallbackCounters::new(family.clone());
        counters.inc("a", "start_call", "accepted");
        counters.inc("a", "start_call", "accepted");
        counters.inc("a", "other", "accepted");
        let get = |command: &str| {
            family
                .get_or_create(&CallbackLabels {
                    family: "a".into(),
                    command: command.into(),
                    outcome: "accepted".into(),
                })
                .get()
        };
        assert_eq!(get("start_call"), 2);
        assert_eq!(get("other"), 1);
        assert_eq!(counters.known.read().unwrap().len(), 2);
    }
}
