//! Silences in the store: the silence and matcher types, kept as JSON
//! rows with their end time so expired ones can be purged.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{json, sql, Store, StoreError};

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

impl Matcher {
    /// `name` against `value`: a regex if `is_regex`, else equality;
    /// negated unless `is_equal`.
    pub fn new(name: &str, value: &str, is_regex: bool, is_equal: bool) -> Matcher {
        Matcher {
            name: name.into(),
            value: value.into(),
            is_regex,
            is_equal,
        }
    }
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

impl Store {
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
}
