//! Console login sessions: a bounded in-memory table from a random
//! 256-bit session id (the `callwatch_session` cookie) to the session's
//! CSRF token and its times. Sessions die on idleness, on age, when the
//! admin token they were opened with changes, on logout and on restart
//! (nothing is persisted: a restart asks for the token again). Time is
//! passed in, so expiry is tested without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A session unused this long is gone (an on-call shift).
pub const IDLE_TIMEOUT_SECS: i64 = 12 * 3600;
/// A session older than this is gone however busy it is.
pub const MAX_AGE_SECS: i64 = 7 * 24 * 3600;
/// Most sessions held; a login beyond it drops the least recently used,
/// so a flood of logins costs bounded memory and logs out the oldest.
pub const MAX_SESSIONS: usize = 1024;

/// What a request learns of its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub csrf: String,
}

struct Entry {
    csrf: String,
    /// SHA-256 of the admin token the session was opened with.
    token_digest: [u8; 32],
    created: i64,
    last_seen: i64,
}

/// The session table.
#[derive(Default)]
pub struct Sessions {
    table: Mutex<HashMap<String, Entry>>,
}

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions::default()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session for a client that presented `token` (already
    /// checked) at `now`; returns its id and CSRF token.
    pub fn open(&self, token: &str, now: i64) -> (String, String) {
        let mut table = self.table();
        table.retain(|_, e| alive(e, now));
        if table.len() >= MAX_SESSIONS {
            let oldest = table
                .iter()
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest {
                table.remove(&id);
            }
        }
        let (id, csrf) = (random_hex(), random_hex());
        table.insert(
            id.clone(),
            Entry {
                csrf: csrf.clone(),
                token_digest: digest(token),
                created: now,
                last_seen: now,
            },
        );
        (id, csrf)
    }

    /// The live session `id` names under the admin token now in force,
    /// touched at `now`; a dead one is removed.
    pub fn get(&self, id: &str, token: &str, now: i64) -> Option<SessionView> {
        let mut table = self.table();
        let entry = table.get_mut(id)?;
        let same_token: bool = entry.token_digest.ct_eq(&digest(token)).into();
        if !same_token || !alive(entry, now) {
            table.remove(id);
            return None;
        }
        entry.last_seen = now;
        Some(SessionView {
            csrf: entry.csrf.clone(),
        })
    }

    /// Ends session `id` (logout).
    pub fn close(&self, id: &str) {
        self.table().remove(id);
    }

    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn alive(e: &Entry, now: i64) -> bool {
    now - e.last_seen < IDLE_TIMEOUT_SECS && now - e.created < MAX_AGE_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_old_or_under_another_token() {
        let s = Sessions::new();
        let (id, csrf) = s.open("tok", 1_000);
        assert_eq!(id.len(), 64, "256 bits, hex");
        assert_ne!(id, csrf);
        assert_eq!(s.get(&id, "tok", 1_000).map(|v| v.csrf), Some(csrf));
        assert!(s.get("nope", "tok", 1_000).is_none());
        // Use keeps it alive past the idle timeout...
        let t = 1_000 + IDLE_TIMEOUT_SECS - 1;
        assert!(s.get(&id, "tok", t).is_some());
        assert!(s.get(&id, "tok", t + IDLE_TIMEOUT_SECS - 1).is_some());
        // ...and idleness ends it.
        assert!(s.get(&id, "tok", t + 2 * IDLE_TIMEOUT_SECS).is_none());
        assert!(s.is_empty(), "a dead session is removed");

        // Busy, but too old.
        let (id, _) = s.open("tok", 0);
        let mut t = 0;
        while t < MAX_AGE_SECS - 3600 {
            t += 3600;
            assert!(s.get(&id, "tok", t).is_some(), "{t}");
        }
        assert!(s.get(&id, "tok", MAX_AGE_SECS).is_none());

        // A changed admin token ends every session opened with the old one.
        let (id, _) = s.open("tok", 0);
        assert!(s.get(&id, "new", 1).is_none());
        assert!(s.get(&id, "tok", 1).is_none(), "removed, not kept");

        let (id, _) = s.open("tok", 0);
        s.close(&id);
        assert!(s.get(&id, "tok", 0).is_none());
    }

    #[test]
    fn the_table_is_bounded_and_drops_the_least_recently_used() {
        let s = Sessions::new();
        let (first, _) = s.open("t", 0);
        let (second, _) = s.open("t", 0);
        for i in 0..MAX_SESSIONS {
            // `first` stays in use, `second` does not.
            assert!(s.get(&first, "t", 1 + i as i64).is_some());
            s.open("t", 1 + i as i64);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.get(&first, "t", 5_000).is_some());
        assert!(s.get(&second, "t", 5_000).is_none());
    }
}
