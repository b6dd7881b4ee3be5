//! The embedded store (SQLite, `state.dir/callwatch.db`): the notification
//! outbox and silences today; alert states and rule `w.state` share it.
//! Every write is one transaction, so a crash leaves either the old or the
//! new row, never half of one. It knows nothing about HTTP or receivers.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

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

/// A silence: alerts whose labels match every matcher between `starts_at`
/// and `ends_at` are tracked but not sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    /// Unix seconds.
    #[serde(with = "crate::alert::rfc3339")]
    pub starts_at: i64,
    #[serde(with = "crate::alert::rfc3339")]
    pub ends_at: i64,
    #[serde(default)]
    pub comment: String,
    #[serde(default, rename = "createdBy")]
    pub created_by: String,
}

/// A label matcher (Alertmanager-style: equality or regex, maybe negated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    #[serde(default, rename = "isRegex")]
    pub is_regex: bool,
    #[serde(default = "default_true", rename = "isEqual")]
    pub is_equal: bool,
}

fn default_true() -> bool {
    true
}

pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the store under `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(state_dir.join("callwatch.db")).map_err(sql("open"))?;
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
            );",
        )
        .map_err(sql("create tables"))?;
        Ok(Store { conn })
    }

    /// Persists a notification before its first attempt. Returns its id.
    pub fn enqueue(&self, receiver: &str, payload: &str, now_ms: i64) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO outbox (receiver, payload, created_at, next_attempt_at)
                 VALUES (?1, ?2, ?3, ?3)",
                params![receiver, payload, now_ms],
            )
            .map_err(sql("enqueue"))?;
        Ok(self.conn.last_insert_rowid())
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
            .query_map(params![receiver, now_ms, limit as i64], |r| {
                Ok(OutboxItem {
                    id: r.get(0)?,
                    receiver: r.get(1)?,
                    payload: r.get(2)?,
                    created_at: r.get(3)?,
                    next_attempt_at: r.get(4)?,
                    attempts: r.get(5)?,
                    last_error: r.get(6)?,
                })
            })
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

    /// Notifications waiting, all receivers.
    pub fn outbox_len(&self) -> Result<usize, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(sql("outbox size"))
    }

    pub fn put_silence(&self, s: &Silence) -> Result<(), StoreError> {
        let body = serde_json::to_string(s).map_err(json("put silence"))?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO silences (id, body, ends_at) VALUES (?1, ?2, ?3)",
                params![s.id, body, s.ends_at],
            )
            .map_err(sql("put silence"))?;
        Ok(())
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
        self.put_kv_all(space, &[(key.to_string(), value.map(str::to_string))])
    }

    /// Several [`Store::put_kv`] writes in one transaction (one disk sync).
    pub fn put_kv_all(
        &self,
        space: &str,
        entries: &[(String, Option<String>)],
    ) -> Result<(), StoreError> {
        // `unchecked`: the store is used behind a mutex, never re-entered.
        let tx = self.conn.unchecked_transaction().map_err(sql("put kv"))?;
        for (key, value) in entries {
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
            .map_err(sql("put kv"))?;
        }
        tx.commit().map_err(sql("put kv"))
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
        };
        s.put_silence(&sil).expect("put");
        assert_eq!(s.silences().expect("list"), vec![sil.clone()]);
        assert_eq!(s.get_silence("a").expect("get"), Some(sil));
        s.put_kv("state", "k", Some("v")).expect("put");
        assert_eq!(s.kv("state").expect("kv"), vec![("k".into(), "v".into())]);
        s.put_kv("state", "k", None).expect("delete");
        assert!(s.kv("state").expect("kv").is_empty());
        s.put_kv_all(
            "alerts",
            &[
                ("a".into(), Some("1".into())),
                ("b".into(), Some("2".into())),
            ],
        )
        .expect("put all");
        s.put_kv_all("alerts", &[("a".into(), None)])
            .expect("delete all");
        assert_eq!(s.kv("alerts").expect("kv"), vec![("b".into(), "2".into())]);
    }
}
