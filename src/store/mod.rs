//! The embedded store (SQLite, `state.dir/callwatch.db`): the notification
//! outbox, silences, alert states and rule `w.state`, and the alert
//! transitions decided but not yet in the outbox (`pending`).
//! Every write is one transaction, so a crash leaves either the old or the
//! new row, never half of one. It knows nothing about HTTP or receivers.
//! The outbox table is in `outbox`, silences in `silences`, the alert
//! history tables in `history`.

mod history;
mod outbox;
mod silences;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};

pub use history::{Delivery, NotificationRow, TransitionRow};
pub use outbox::OutboxItem;
pub use silences::{Matcher, Silence, SILENCE_RETENTION_SECS};

/// The store as the daemon's parts share it: one connection behind one
/// lock. Take it with [`lock`] only.
pub type SharedStore = Arc<Mutex<Store>>;

/// A put (`Some`) or delete (`None`) of one key of a kv space.
pub type KvChange = (String, Option<String>);

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
        self.apply_spaces_pending(&[(space, changes)], pending)
    }

    /// [`Store::apply_kv_pending`] over several spaces in one transaction
    /// (alert states and the stream position they were computed at).
    pub fn apply_spaces_pending(
        &self,
        spaces: &[(&str, &[KvChange])],
        pending: &[String],
    ) -> Result<Vec<i64>, StoreError> {
        if spaces.iter().all(|(_, c)| c.is_empty()) && pending.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self.conn.unchecked_transaction().map_err(sql("begin"))?;
        let mut ids = Vec::with_capacity(pending.len());
        for body in pending {
            tx.execute("INSERT INTO pending (body) VALUES (?1)", params![body])
                .map_err(sql("save pending"))?;
            ids.push(tx.last_insert_rowid());
        }
        for (space, changes) in spaces {
            for (key, value) in changes.iter() {
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
