//! Deduplication of Tencent's retried deliveries: remembers the identity of
//! each accepted callback for `server.dedup_window`, bounded to
//! `server.dedup_max_entries` (the oldest are forgotten first). It holds
//! 64-bit hashes, not callbacks, so a million entries cost ~40 MB at most.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};

/// A set of recently seen delivery identities with expiry.
pub struct Dedup {
    /// Keyed per process (the set is rebuilt from the journal on start, so
    /// keys never outlive it): foldhash rather than SipHash, as hashing
    /// the identity is on every request's path. Its seed comes from
    /// address-space randomisation, not a strong entropy source; that is
    /// enough here, as no sender ever sees a key and only signed callbacks
    /// reach the set. An accidental collision (2^-64 per pair) would take
    /// a delivery for a retry, as any 64-bit digest could.
    hasher: foldhash::quality::RandomState,
    window_ms: i64,
    max_entries: usize,
    /// hash → time it was recorded (ms); the newest record wins. The keys
    /// are already keyed hash values no sender can aim, so the map hashes
    /// them with hashbrown's fast default.
    seen: hashbrown::HashMap<u64, i64>,
    /// Insertion order, for expiry and the size bound.
    order: VecDeque<(i64, u64)>,
}

/// Outcome of [`Dedup::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    New(u64),
    Duplicate,
}

impl Dedup {
    pub fn new(window_ms: i64, max_entries: usize) -> Self {
        Dedup {
            hasher: Default::default(),
            window_ms,
            max_entries: max_entries.max(1),
            seen: hashbrown::HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Hashes a delivery identity (docs/callbacks.md: sdkappid, command, CallId,
    /// UserId, EventTime).
    pub fn key(&self, identity: impl Hash) -> u64 {
        self.hasher.hash_one(identity)
    }

    /// Records `key` at `now_ms` unless it was seen within the window.
    pub fn reserve(&mut self, key: u64, now_ms: i64) -> Seen {
        self.expire(now_ms);
        if let Some(&at) = self.seen.get(&key) {
            if now_ms - at < self.window_ms {
                return Seen::Duplicate;
            }
        }
        self.insert(key, now_ms);
        Seen::New(key)
    }

    /// Forgets a reservation whose callback could not be made durable, so
    /// Tencent's retry is processed.
    pub fn release(&mut self, key: u64) {
        self.seen.remove(&key);
    }

    /// Records a key seen at `at_ms` (used when rebuilding from the journal).
    pub fn insert(&mut self, key: u64, at_ms: i64) {
        self.seen.insert(key, at_ms);
        self.order.push_back((at_ms, key));
        while self.order.len() > self.max_entries {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((at, key)) = self.order.pop_front() {
            // Only forget it if this is the entry's latest record.
            if self.seen.get(&key) == Some(&at) {
                self.seen.remove(&key);
            }
        }
    }

    fn expire(&mut self, now_ms: i64) {
        while let Some(&(at, _)) = self.order.front() {
            if now_ms - at < self.window_ms {
                break;
            }
            self.pop_oldest();
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// A stable id for a delivery (cluster mode's `Nats-Msg-Id`): a digest of
/// the identity Tencent keeps across retries (app, command, and call,
/// user and event time of each event; docs/callbacks.md), written out
/// field by field so every node and version computes the same id (the
/// set's own hash is seeded per process).
pub fn stable_id(sdkappid: u64, command: &str, events: &[(&str, &str, i64)]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(sdkappid.to_string());
    h.update([0]);
    h.update(command);
    for (call, user, time) in events {
        h.update([0]);
        h.update(call);
        h.update([0]);
        h.update(user);
        h.update([0]);
        h.update(time.to_string());
    }
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_id_is_stable_and_tells_deliveries_apart() {
        let a = stable_id(1400000001, "CallStatusChange", &[("c1", "u1", 1700000000)]);
        let b = stable_id(1400000001, "CallStatusChange", &[("c1", "u2", 1700000000)]);
        // Field boundaries count: ("c1u", "1") is another delivery.
        let c = stable_id(1400000001, "CallStatusChange", &[("c1u", "1", 1700000000)]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        // Fixed across builds and hosts: nodes of different versions
        // must give one delivery the same id.
        assert_eq!(a, "4dc7a73cea0c513fb3a5a157c398e232");
    }

    #[test]
    fn duplicates_within_window_only() {
        let mut d = Dedup::new(1000, 10);
        let k = d.key(("a", 1));
        assert_eq!(d.reserve(k, 0), Seen::New(k));
        assert_eq!(d.reserve(k, 999), Seen::Duplicate);
        assert!(matches!(d.reserve(k, 1000), Seen::New(_)));
    }

    #[test]
    fn bounded_and_releasable() {
        let mut d = Dedup::new(1_000_000, 3);
        for i in 0..10 {
            let k = d.key(i);
            d.reserve(k, i);
        }
        assert_eq!(d.len(), 3);
        let k = d.key(42);
        d.reserve(k, 20);
        d.release(k);
        assert!(matches!(d.reserve(k, 21), Seen::New(_)));
    }
}
