//! The embedded store (SQLite, `state.dir/callwatch.db`): the notification
//! outbox, silences, alert states and rule `w.state`, and the alert
//! transitions decided but not yet in the outbox (`pending`).
//! Every write is one transaction, so a crash leaves either the old or the
//! new row, never half of one. It knows nothing about HTTP or receivers.
//! The alert history tables are in `history`.

mod history;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

pub use history::{Delivery, NotificationRow, TransitionRow};

/// The store as the daemon's parts share it: one connection behind one
/// lock. Take it with [`lock`] only.
pub type SharedStore = Arc<Mutex<Store>>;

/// Locks the store: the one poison policy for every user of it.
///
/// A poisoned lock means some thread panicked while holding it. Every
/// write is one SQLite transaction, which either committed or was rolled
/// back when the panicking frame dropped it, so the data behind a
/// poisoned lock is as consistent as behind a clean one: the lock is
/// taken over, never propagated as an error or a second panic.
pub fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

/// A store problem, naming the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {op}: {source}")]
    Sql {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("store {op}: {source}")]
    Json {
        op: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

fn sql(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sql { op, source }
}

fn json(op: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |source| StoreError::Json { op, source }
}

/// One queued notification.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub receiver: String,
    /// The serialised notification.
    pub payload: String,
    /// Unix ms.
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// How long an expired silence stays in the store (and in
/// `GET /api/v1/silences`, as `expired`), and in a cluster's silences
/// bucket: five days, Alertmanager's default `--data.retention`, so an
/// operator can still see what was silenced over a long weekend.
pub const SILENCE_RETENTION_SECS: i64 = 5 * 24 * 3600;

/// A silence: alerts whose labels match every matcher between `starts_at`
/// and `ends_at` are tracked but not sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    /// Unix seconds.
    #[serde(with = "crate::time::rfc3339")]
    pub starts_at: i64,
    #[serde(with = "crate::time::rfc3339")]
    pub ends_at: i64,
    #[serde(default)]
    pub comment: String,
    #[serde(default, rename = "createdBy")]
    pub created_by: String,
    /// Unix seconds of the last create, update or expiry; 0 in records
    /// written before it was kept (shown as `starts_at` then).
    #[serde(default)]
    pub updated_at: i64,
}

/// A label matcher (Alertmanager-style: equality or regex, maybe negated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    #[serde(default, rename = "isRegex", alias = "is_regex")]
    pub is_regex: bool,
    #[serde(default = "default_true", rename = "isEqual", alias = "is_equal")]
    pub is_equal: bool,
}

fn write_silence(conn: &Connection, s: &Silence) -> Result<(), StoreError> {
    let body = serde_json::to_string(s).map_err(json("put silence"))?;
    conn.execute(
        "INSERT OR REPLACE INTO silences (id, body, ends_at) VALUES (?1, ?2, ?3)",
        params![s.id, body, s.ends_at],
    )
    .map_err(sql("put silence"))?;
    Ok(())
}

fn default_true() -> bool {
    true
}

pub struct Store {
    conn: Connection,
    /// Rows kept per alert-history table (`console.history_max_rows`).
    history_limit: u64,
}

/// The store's file under a state dir.
fn db_path(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("callwatch.db")
}

/// Whether a store file exists under `state_dir` (before opening it,
/// which creates one).
pub fn exists(state_dir: &Path) -> bool {
    db_path(state_dir).exists()
}

impl Store {
    /// Opens (creating if needed) the store under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(db_path(state_dir)).map_err(sql("open"))?;
        Self::init(conn)
    }

    /// An in-memory store, for tests and `replay`.
    pub fn in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory().map_err(sql("open"))?)
    }

    fn init(conn: Connection) -> Result<Store, StoreError> {
        // WAL: readers do not block the writer, and a commit is one fsync.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql("pragma"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql("pragma"))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS outbox (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                receiver TEXT NOT NULL,
                payload TEXT NOT NULL,
                created_at INTEGER NOT NULL,
                next_attempt_at INTEGER NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_error TEXT
            );
            CREATE INDEX IF NOT EXISTS outbox_due ON outbox (receiver, next_attempt_at);
            CREATE TABLE IF NOT EXISTS silences (
                id TEXT PRIMARY KEY,
                body TEXT NOT NULL,
                ends_at INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS kv (
                space TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                PRIMARY KEY (space, key)
            );
            CREATE TABLE IF NOT EXISTS pending (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                body TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS pending_done (
                id INTEGER NOT NULL,
                receiver TEXT NOT NULL,
                PRIMARY KEY (id, receiver)
            );",
        )
        .map_err(sql("create tables"))?;
        history::create_tables(&conn)?;
        Ok(Store {
            conn,
            history_limit: crate::config::ConsoleConfig::default().history_max_rows,
        })
    }

    /// [`Store::enqueue_releasing`] with nothing to release (tests).
    #[cfg(test)]
    pub fn enqueue(&self, receiver: &str, payload: &str, now_ms: i64) -> Result<i64, StoreError> {
        self.enqueue_releasing(receiver, payload, now_ms, &[], &[])
    }

    /// Persists a notification before its first attempt (returning its id)
    /// and, in the same transaction, marks the pending transitions it
    /// carries as delivered to `receiver`: `done` are still owed to other
    /// receivers, `finished` are owed to nobody any more and are deleted. After a crash either the notification is
    /// queued and the transitions are off the books for this receiver, or
    /// neither.
    pub fn enqueue_releasing(
        &self,
        receiver: &str,
        payload: &str,
        now_ms: i64,
        done: &[i64],
        finished: &[i64],
    ) -> Result<i64, StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(sql("begin"))?;
        tx.execute(
            "INSERT INTO outbox (receiver, payload, created_at, next_attempt_at)
             VALUES (?1, ?2, ?3, ?3)",
            params![receiver, payload, now_ms],
        )
        .map_err(sql("enqueue"))?;
        let id = tx.last_insert_rowid();
        for p in done {
            tx.execute(
                "INSERT OR IGNORE INTO pending_done (id, receiver) VALUES (?1, ?2)",
                params![p, receiver],
            )
            .map_err(sql("enqueue"))?;
        }
        delete_pending(&tx, finished)?;
        tx.commit().map_err(sql("commit"))?;
        Ok(id)
    }

    /// Forgets pending transitions that no receiver is owed (silenced,
    /// routed nowhere).
    pub fn release_pending(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction().map_err(sql("begin"))?;
        delete_pending(&tx, ids)?;
        tx.commit().map_err(sql("commit"))
    }

    /// Every pending transition, oldest first: (id, body, receivers it
    /// already reached).
    pub fn pending(&self) -> Result<Vec<(i64, String, Vec<String>)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, body FROM pending ORDER BY id")
            .map_err(sql("read pending"))?;
        let rows: Vec<(i64, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("read pending"))?
            .collect::<Result<_, _>>()
            .map_err(sql("read pending"))?;
        let mut done = self
            .conn
            .prepare_cached("SELECT receiver FROM pending_done WHERE id = ?1 ORDER BY receiver")
            .map_err(sql("read pending"))?;
        rows.into_iter()
            .map(|(id, body)| {
                let reached = done
                    .query_map(params![id], |r| r.get(0))
                    .map_err(sql("read pending"))?
                    .collect::<Result<_, _>>()
                    .map_err(sql("read pending"))?;
                Ok((id, body, reached))
            })
            .collect()
    }

    /// Notifications of `receiver` due at `now_ms`, oldest first.
    pub fn due(
        &self,
        receiver: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, receiver, payload, created_at, next_attempt_at, attempts, last_error
                 FROM outbox WHERE receiver = ?1 AND next_attempt_at <= ?2
                 ORDER BY id LIMIT ?3",
            )
            .map_err(sql("due"))?;
        let rows = stmt
            .query_map(params![receiver, now_ms, limit as i64], outbox_item)
            .map_err(sql("due"))?;
        rows.collect::<Result<_, _>>().map_err(sql("due"))
    }

    /// The earliest next attempt of `receiver`, if anything is queued.
    pub fn next_due(&self, receiver: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE receiver = ?1",
                params![receiver],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map_err(sql("next due"))
    }

    /// Removes a delivered (or given-up) notification.
    pub fn remove(&self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM outbox WHERE id = ?1", params![id])
            .map_err(sql("remove"))?;
        Ok(())
    }

    /// Records a failed attempt and when to try again.
    pub fn reschedule(&self, id: i64, next_ms: i64, error: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
                 WHERE id = ?1",
                params![id, next_ms, error],
            )
            .map_err(sql("reschedule"))?;
        Ok(())
    }

    /// Removes and returns the notifications of `receiver` created before
    /// `cutoff_ms` (past `alerting.give_up_after`), whenever their next
    /// attempt was planned.
    pub fn take_expired(
        &self,
        receiver: &str,
        cutoff_ms: i64,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.take_where(
            "receiver = ?1 AND created_at < ?2 ORDER BY id",
            params![receiver, cutoff_ms],
            "give up",
        )
    }

    /// Removes and returns the oldest notifications of `receiver` beyond
    /// the newest `keep`.
    pub fn take_oldest_beyond(
        &self,
        receiver: &str,
        keep: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.take_where(
            "receiver = ?1 AND id NOT IN
               (SELECT id FROM outbox WHERE receiver = ?1 ORDER BY id DESC LIMIT ?2)
             ORDER BY id",
            params![receiver, keep as i64],
            "trim outbox",
        )
    }

    fn take_where(
        &self,
        condition: &str,
        args: &[&dyn rusqlite::ToSql],
        op: &'static str,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(sql("begin"))?;
        let items: Vec<OutboxItem> = {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "SELECT id, receiver, payload, created_at, next_attempt_at, attempts, last_error
                     FROM outbox WHERE {condition}"
                ))
                .map_err(sql(op))?;
            let rows: Vec<OutboxItem> = stmt
                .query_map(args, outbox_item)
                .map_err(sql(op))?
                .collect::<Result<_, _>>()
                .map_err(sql(op))?;
            rows
        };
        for item in &items {
            tx.execute("DELETE FROM outbox WHERE id = ?1", params![item.id])
                .map_err(sql(op))?;
        }
        tx.commit().map_err(sql("commit"))?;
        Ok(items)
    }

    /// Notifications waiting, all receivers.
    pub fn outbox_len(&self) -> Result<usize, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(sql("outbox size"))
    }

    pub fn put_silence(&self, s: &Silence) -> Result<(), StoreError> {
        write_silence(&self.conn, s)
    }

    /// Stores `new` and, in the same transaction, `old` (an expired
    /// version of the silence `new` replaces), so a crash leaves either
    /// the old silence in force or the new one, never both or neither.
    pub fn replace_silence(&self, old: &Silence, new: &Silence) -> Result<(), StoreError> {
        let tx = self.conn.unchecked_transaction().map_err(sql("begin"))?;
        write_silence(&tx, old)?;
        write_silence(&tx, new)?;
        tx.commit().map_err(sql("commit"))
    }

    /// Deletes silences that ended before `cutoff` (Unix seconds).
    /// Returns how many.
    pub fn delete_silences_ended_before(&self, cutoff: i64) -> Result<usize, StoreError> {
        self.conn
            .execute("DELETE FROM silences WHERE ends_at < ?1", params![cutoff])
            .map_err(sql("delete old silences"))
    }

    pub fn silences(&self) -> Result<Vec<Silence>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT body FROM silences ORDER BY id")
            .map_err(sql("list silences"))?;
        let bodies: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .map_err(sql("list silences"))?
            .collect::<Result<_, _>>()
            .map_err(sql("list silences"))?;
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).map_err(json("list silences")))
            .collect()
    }

    pub fn get_silence(&self, id: &str) -> Result<Option<Silence>, StoreError> {
        let body: Option<String> = self
            .conn
            .query_row(
                "SELECT body FROM silences WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("get silence"))?;
        body.map(|b| serde_json::from_str(&b).map_err(json("get silence")))
            .transpose()
    }

    /// Stores a value under (space, key); `None` deletes it.
    pub fn put_kv(&self, space: &str, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        match value {
            Some(v) => self.conn.execute(
                "INSERT OR REPLACE INTO kv (space, key, value) VALUES (?1, ?2, ?3)",
                params![space, key, v],
            ),
            None => self.conn.execute(
                "DELETE FROM kv WHERE space = ?1 AND key = ?2",
                params![space, key],
            ),
        }
        .map_err(sql("put kv"))?;
        Ok(())
    }

    /// The value under (space, key), if any.
    pub fn get_kv(&self, space: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT value FROM kv WHERE space = ?1 AND key = ?2",
                params![space, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("get kv"))
    }

    /// Applies puts (`Some`) and deletes (`None`) to a space in one
    /// transaction: after a crash either all of them are there or none.
    pub fn apply_kv(
        &self,
        space: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<(), StoreError> {
        self.apply_kv_pending(space, changes, &[]).map(|_| ())
    }

    /// [`Store::apply_kv`], and in the same transaction records `pending`
    /// transitions (serialised) that must still reach the outbox. Returns
    /// their ids, in order. Saving an alert as firing and saving that its
    /// notification is owed is one commit, so a crash between the two
    /// cannot lose the notification.
    pub fn apply_kv_pending(
        &self,
        space: &str,
        changes: &[(String, Option<String>)],
        pending: &[String],
    ) -> Result<Vec<i64>, StoreError> {
        if changes.is_empty() && pending.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.conn.unchecked_transaction().map_err(sql("begin"))?;
        let mut ids = Vec::with_capacity(pending.len());
        for body in pending {
            tx.execute("INSERT INTO pending (body) VALUES (?1)", params![body])
                .map_err(sql("save pending"))?;
            ids.push(tx.last_insert_rowid());
        }
        for (key, value) in changes {
            match value {
                Some(v) => tx.execute(
                    "INSERT OR REPLACE INTO kv (space, key, value) VALUES (?1, ?2, ?3)",
                    params![space, key, v],
                ),
                None => tx.execute(
                    "DELETE FROM kv WHERE space = ?1 AND key = ?2",
                    params![space, key],
                ),
            }
            .map_err(sql("apply kv"))?;
        }
        tx.commit().map_err(sql("commit"))?;
        Ok(ids)
    }

    /// Every (key, value) of a space.
    pub fn kv(&self, space: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT key, value FROM kv WHERE space = ?1 ORDER BY key")
            .map_err(sql("read kv"))?;
        let rows = stmt
            .query_map(params![space], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("read kv"))?;
        rows.collect::<Result<_, _>>().map_err(sql("read kv"))
    }
}

fn delete_pending(tx: &rusqlite::Transaction<'_>, ids: &[i64]) -> Result<(), StoreError> {
    for p in ids {
        tx.execute("DELETE FROM pending WHERE id = ?1", params![p])
            .map_err(sql("release pending"))?;
        tx.execute("DELETE FROM pending_done WHERE id = ?1", params![p])
            .map_err(sql("release pending"))?;
    }
    Ok(())
}

/// An outbox row, selected as `id, receiver, payload, created_at,
/// next_attempt_at, attempts, last_error`.
fn outbox_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxItem> {
    Ok(OutboxItem {
        id: r.get(0)?,
        receiver: r.get(1)?,
        payload: r.get(2)?,
        created_at: r.get(3)?,
        next_attempt_at: r.get(4)?,
        attempts: r.get(5)?,
        last_error: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_lifecycle_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = {
            let s = Store::open(dir.path()).expect("open");
            let id = s.enqueue("ops", "{}", 1000).expect("enqueue");
            s.enqueue("mail", "{}", 1000).expect("enqueue");
            assert_eq!(s.due("ops", 1000, 10).expect("due").len(), 1);
            s.reschedule(id, 5000, "connection refused")
                .expect("reschedule");
            assert!(s.due("ops", 4999, 10).expect("due").is_empty());
            id
        };
        let s = Store::open(dir.path()).expect("reopen");
        let due = s.due("ops", 5000, 10).expect("due");
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].attempts, 1);
        assert_eq!(due[0].last_error.as_deref(), Some("connection refused"));
        assert_eq!(s.next_due("ops").expect("next"), Some(5000));
        s.remove(id).expect("remove");
        assert_eq!(s.outbox_len().expect("len"), 1);
    }

    #[test]
    fn expired_and_excess_notifications_are_taken_out() {
        let s = Store::in_memory().expect("open");
        for t in 0..5 {
            s.enqueue("ops", &format!("{t}"), t * 1000)
                .expect("enqueue");
        }
        s.enqueue("mail", "m", 0).expect("enqueue");
        let old = s.take_expired("ops", 2000).expect("expire");
        assert_eq!(
            old.iter().map(|i| i.payload.as_str()).collect::<Vec<_>>(),
            ["0", "1"]
        );
        let excess = s.take_oldest_beyond("ops", 2).expect("trim");
        assert_eq!(excess.len(), 1);
        assert_eq!(excess[0].payload, "2");
        assert_eq!(s.due("ops", i64::MAX, 10).expect("due").len(), 2);
        assert_eq!(s.outbox_len().expect("len"), 3, "mail untouched");
    }

    #[test]
    fn silences_and_kv() {
        let s = Store::in_memory().expect("open");
        let sil = Silence {
            id: "a".into(),
            matchers: vec![Matcher {
                name: "platform".into(),
                value: "Android".into(),
                is_regex: false,
                is_equal: true,
            }],
            starts_at: 0,
            ends_at: 100,
            comment: "release".into(),
            created_by: "ops".into(),
            updated_at: 0,
        };
        s.put_silence(&sil).expect("put");
        assert_eq!(s.silences().expect("list"), vec![sil.clone()]);
        assert_eq!(s.get_silence("a").expect("get"), Some(sil.clone()));
        // Ended at 100: kept at cutoff 100, gone after.
        assert_eq!(s.delete_silences_ended_before(100).expect("gc"), 0);
        assert_eq!(s.delete_silences_ended_before(101).expect("gc"), 1);
        assert!(s.silences().expect("list").is_empty());
        s.put_silence(&sil).expect("put again");
        s.put_kv("state", "k", Some("v")).expect("put");
        assert_eq!(s.kv("state").expect("kv"), vec![("k".into(), "v".into())]);
        s.put_kv("state", "k", None).expect("delete");
        assert!(s.kv("state").expect("kv").is_empty());
    }

    #[test]
    fn pending_transitions_leave_with_their_notifications() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = {
            let s = Store::open(dir.path()).expect("open");
            let ids = s
                .apply_kv_pending(
                    "keys",
                    &[("r/k".into(), Some("firing".into()))],
                    &["t1".into(), "t2".into()],
                )
                .expect("save");
            // t1 reached `ops` but is still owed to `mail`; t2 is done.
            s.enqueue_releasing("ops", "{}", 1, &[ids[0]], &[ids[1]])
                .expect("enqueue");
            ids
        };
        let s = Store::open(dir.path()).expect("reopen");
        assert_eq!(s.kv("keys").expect("kv").len(), 1);
        assert_eq!(s.outbox_len().expect("len"), 1);
        assert_eq!(
            s.pending().expect("pending"),
            vec![(ids[0], "t1".to_string(), vec!["ops".to_string()])]
        );
        s.release_pending(&[ids[0]]).expect("release");
        assert!(s.pending().expect("pending").is_empty());
    }
}
