//! The alert history tables: every transition the daemon saved (firing,
//! repeat, resolved; with the alert as it was) and every delivery outcome
//! of every notification (sent, failed and retried, given up, dropped),
//! per alert fingerprint. Both are bounded: past `history_max_rows` rows
//! the oldest go. History is for people looking back; nothing decides on
//! it, so a failed history write is logged by the caller and skipped.

use rusqlite::{params, Connection};
use serde_json::Value;

use super::{sql, Store, StoreError};

/// Rows an alert's history answers at most, per table (the newest).
pub const PER_ALERT: usize = 200;

pub(super) fn create_tables(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS alert_transitions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            fingerprint TEXT NOT NULL,
            at INTEGER NOT NULL,
            from_status TEXT NOT NULL,
            to_status TEXT NOT NULL,
            alert TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS alert_transitions_fp ON alert_transitions (fingerprint, id);
        CREATE TABLE IF NOT EXISTS alert_notifications (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            fingerprint TEXT NOT NULL,
            receiver TEXT NOT NULL,
            at_ms INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            status TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            error TEXT
        );
        CREATE INDEX IF NOT EXISTS alert_notifications_fp ON alert_notifications (fingerprint, id);",
    )
    .map_err(sql("create history tables"))
}

/// One saved transition of an alert.
#[derive(Debug, Clone, PartialEq)]
pub struct TransitionRow {
    /// Engine time, Unix seconds.
    pub at: i64,
    /// The state before: `inactive` for a new alert, else the state the
    /// previous row moved to.
    pub from: String,
    /// `firing` (a repeat when `from` is `firing` too) or `resolved`.
    pub to: String,
    /// The alert object as notified.
    pub alert: Value,
}

/// One delivery outcome of a notification carrying an alert.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRow {
    pub receiver: String,
    /// Unix ms.
    pub at_ms: i64,
    /// `sent`, `failed` (retried later), `given_up` or `dropped`.
    pub outcome: String,
    /// The alert's status in that notification.
    pub status: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub error: Option<String>,
}

/// What a delivery outcome row says besides the alerts it carried.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub receiver: &'a str,
    pub at_ms: i64,
    pub outcome: &'a str,
    pub attempt: u32,
    pub error: Option<&'a str>,
}

impl Store {
    /// How many rows each history table keeps (the oldest go first).
    pub fn set_history_limit(&mut self, rows: u64) {
        self.history_limit = rows.max(1);
    }

    /// Records transitions, each `(fingerprint, at, to, alert json)`, in
    /// one commit, and trims the table to its limit.
    pub fn record_transitions(
        &self,
        rows: &[(String, i64, &'static str, String)],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction().map_err(sql("begin"))?;
        for (fingerprint, at, to, alert) in rows {
            let from: Option<String> = tx
                .query_row(
                    "SELECT to_status FROM alert_transitions WHERE fingerprint = ?1 ORDER BY id DESC LIMIT 1",
                    params![fingerprint],
                    |r| r.get(0),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .map_err(sql("read history"))?;
            // A resolved alert that fires again starts a new episode.
            let from = from.unwrap_or_else(|| "inactive".into());
            let from = if from == "resolved" && *to == "firing" {
                "inactive".to_string()
            } else {
                from
            };
            tx.execute(
                "INSERT INTO alert_transitions (fingerprint, at, from_status, to_status, alert) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![fingerprint, at, from, to, alert],
            )
            .map_err(sql("record transition"))?;
        }
        trim(&tx, "alert_transitions", self.history_limit)?;
        tx.commit().map_err(sql("commit"))
    }

    /// Records one delivery outcome for each `(fingerprint, status)` of
    /// the notification's alerts, and trims the table to its limit.
    pub fn record_delivery(
        &self,
        d: &Delivery<'_>,
        alerts: &[(String, &'static str)],
    ) -> Result<(), StoreError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let tx = self.conn.unchecked_transaction().map_err(sql("begin"))?;
        for (fingerprint, status) in alerts {
            tx.execute(
                "INSERT INTO alert_notifications (fingerprint, receiver, at_ms, outcome, status, attempt, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![fingerprint, d.receiver, d.at_ms, d.outcome, status, d.attempt, d.error],
            )
            .map_err(sql("record notification"))?;
        }
        trim(&tx, "alert_notifications", self.history_limit)?;
        tx.commit().map_err(sql("commit"))
    }

    /// The newest `PER_ALERT` transitions of an alert, oldest first.
    pub fn alert_transitions(&self, fingerprint: &str) -> Result<Vec<TransitionRow>, StoreError> {
        self.newest_of(
            "SELECT at, from_status, to_status, alert FROM alert_transitions
             WHERE fingerprint = ?1 ORDER BY id DESC LIMIT ?2",
            fingerprint,
            |r| {
                let alert: String = r.get(3)?;
                Ok(TransitionRow {
                    at: r.get(0)?,
                    from: r.get(1)?,
                    to: r.get(2)?,
                    alert: serde_json::from_str(&alert).unwrap_or(Value::Null),
                })
            },
        )
    }

    /// The newest `PER_ALERT` delivery outcomes of an alert, oldest
    /// first.
    pub fn alert_notifications(
        &self,
        fingerprint: &str,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        self.newest_of(
            "SELECT receiver, at_ms, outcome, status, attempt, error FROM alert_notifications
             WHERE fingerprint = ?1 ORDER BY id DESC LIMIT ?2",
            fingerprint,
            |r| {
                Ok(NotificationRow {
                    receiver: r.get(0)?,
                    at_ms: r.get(1)?,
                    outcome: r.get(2)?,
                    status: r.get(3)?,
                    attempt: r.get(4)?,
                    error: r.get(5)?,
                })
            },
        )
    }

    /// Runs `query` (newest first, `?1` the fingerprint, `?2` the limit)
    /// and hands the rows back oldest first.
    fn newest_of<T>(
        &self,
        query: &str,
        fingerprint: &str,
        row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(query)
            .map_err(sql("read history"))?;
        let mut out = stmt
            .query_map(params![fingerprint, PER_ALERT as i64], row)
            .map_err(sql("read history"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql("read history"))?;
        out.reverse();
        Ok(out)
    }
}

/// Deletes the oldest rows of `table` beyond `limit` (ids only grow, so
/// this is one range delete on the primary key).
fn trim(conn: &Connection, table: &'static str, limit: u64) -> Result<(), StoreError> {
    conn.execute(
        &format!("DELETE FROM {table} WHERE id <= (SELECT MAX(id) FROM {table}) - ?1"),
        params![limit as i64],
    )
    .map(|_| ())
    .map_err(sql("trim history"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_know_where_they_came_from_and_are_bounded() {
        let mut store = Store::in_memory().expect("store");
        store.set_history_limit(5);
        let row =
            |at: i64, to: &'static str| ("fp1".to_string(), at, to, format!("{{\"at\":{at}}}"));
        store
            .record_transitions(&[row(1, "firing"), row(2, "firing"), row(3, "resolved")])
            .expect("recorded");
        store
            .record_transitions(&[row(4, "firing")])
            .expect("recorded");
        let got: Vec<(i64, String, String)> = store
            .alert_transitions("fp1")
            .expect("read")
            .into_iter()
            .map(|r| (r.at, r.from, r.to))
            .collect();
        let want = [
            (1, "inactive", "firing"),
            (2, "firing", "firing"),
            (3, "firing", "resolved"),
            (4, "inactive", "firing"),
        ];
        let want: Vec<(i64, String, String)> = want
            .iter()
            .map(|(a, f, t)| (*a, f.to_string(), t.to_string()))
            .collect();
        assert_eq!(got, want);
        assert!(store.alert_transitions("other").expect("read").is_empty());
        for at in 5..20 {
            store
                .record_transitions(&[row(at, "firing")])
                .expect("recorded");
        }
        let kept = store.alert_transitions("fp1").expect("read");
        assert_eq!(kept.len(), 5);
        assert_eq!(kept[0].at, 15);
        assert_eq!(kept[0].alert["at"], 15);
    }

    #[test]
    fn deliveries_are_recorded_per_alert() {
        let store = Store::in_memory().expect("store");
        let d = Delivery {
            receiver: "ops",
            at_ms: 1_000,
            outcome: "failed",
            attempt: 1,
            error: Some("503"),
        };
        store
            .record_delivery(&d, &[("a".into(), "firing"), ("b".into(), "resolved")])
            .expect("recorded");
        let sent = Delivery {
            outcome: "sent",
            attempt: 2,
            error: None,
            at_ms: 2_000,
            ..d
        };
        store
            .record_delivery(&sent, &[("a".into(), "firing")])
            .expect("recorded");
        let a = store.alert_notifications("a").expect("read");
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].outcome.as_str(), a[0].attempt, a[0].error.as_deref()),
            ("failed", 1, Some("503"))
        );
        assert_eq!((a[1].outcome.as_str(), a[1].at_ms), ("sent", 2_000));
        let b = store.alert_notifications("b").expect("read");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].status, "resolved");
    }
}
