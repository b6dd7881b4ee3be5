//! The notification outbox table: notifications queued per receiver,
//! their attempts and schedule, and what is taken out (expired, beyond
//! the queue's bound). Enqueueing also settles the pending transitions a
//! notification carries, in the same transaction.

use rusqlite::params;

use super::{delete_pending, sql, Store, StoreError};

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

impl Store {
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
