//! The journal: every accepted callback, appended as one recorded-callback
//! JSON line (docs/recording.md) to segment files under
//! `state.dir/journal/` before its 200 is sent.
//! One writer thread owns the files; it batches whatever requests are
//! waiting into one write and (with `fsync = "batch"`) one fsync, so
//! throughput survives durability (group commit). Segments rotate by size
//! and are pruned by age. Reading segments back (recovery, `replay`) also
//! lives here; decoding records into events does not.
//!
//! A write that fails (a full disk, an I/O error, a failed fsync) is cut
//! back to the segment's last complete record before anything else is
//! written, so a later record is never glued to a fragment; the callbacks
//! of the failed batch are refused.

mod read;
pub mod tail;
#[cfg(test)]
mod tests;
mod writer;

pub use read::{each_line, for_each_line, for_each_record, read_journal, read_records};
use writer::{segment_age, Segment, Writer};

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use crate::config::FsyncPolicy;
use crate::lograte::LogRate;
use crate::metrics::Metrics;

/// One recorded callback (docs/recording.md), exactly as it came in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<i64>,
    #[serde(default)]
    pub query: Map<String, Value>,
    pub body: Value,
}

impl Record {
    /// The record as one journal line, without the newline.
    pub fn to_line(&self) -> Vec<u8> {
        // Serialising plain JSON values cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A journal or recorded-callback file problem, naming file and line.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal: {0}")]
    Io(#[from] io::Error),
    #[error("journal writer has stopped")]
    Closed,
    #[error("journal writer is behind; retry shortly")]
    Busy,
    #[error("{path}:{line}: {message}")]
    BadLine {
        path: String,
        line: usize,
        message: String,
    },
}

/// Called on the writer thread with the outcome of one append, once its
/// batch is written (and synced per the policy) or refused. It runs
/// between two group commits, so it must be quick and must not block.
pub type OnStored = Box<dyn FnOnce(io::Result<()>) + Send>;

/// Called on the writer thread after the last [`OnStored`] of each batch, so a caller can defer what wakes other threads
/// from each append to once per batch. Quick and non-blocking, as
/// [`OnStored`].
pub type AfterBatch = Box<dyn FnMut() + Send>;

enum Cmd {
    Append {
        line: Vec<u8>,
        received_at: i64,
        done: OnStored,
    },
    Prune {
        cutoff_ms: i64,
        ack: oneshot::Sender<usize>,
    },
    Flush {
        ack: oneshot::Sender<io::Result<()>>,
    },
    AfterBatch(AfterBatch),
}

/// Handle to the journal writer. Cheap to share behind an `Arc`.
pub struct Journal {
    tx: mpsc::Sender<Cmd>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
}

/// The journal directory under a state dir.
pub fn journal_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("journal")
}

/// Segment files in order (oldest first).
pub fn segments(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let p = e?.path();
                if segment_seq(&p).is_some() {
                    out.push(p);
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    }
    out.sort_by_key(|p| segment_seq(p));
    Ok(out)
}

fn segment_seq(p: &Path) -> Option<u64> {
    let name = p.file_name()?.to_str()?;
    name.strip_suffix(".jsonl")?
        .strip_prefix("segment-")?
        .parse()
        .ok()
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("segment-{seq:010}.jsonl"))
}

impl Journal {
    /// Opens the journal under `state_dir`, starting a fresh segment (the
    /// last one of a crashed run may end in a torn line; it is left as is).
    pub fn open(
        state_dir: &Path,
        policy: FsyncPolicy,
        segment_bytes: u64,
        metrics: Arc<Metrics>,
    ) -> io::Result<Journal> {
        let dir = journal_dir(state_dir);
        fs::create_dir_all(&dir)?;
        let existing = segments(&dir)?;
        let next_seq = existing
            .last()
            .and_then(|p| segment_seq(p))
            .map_or(1, |s| s + 1);
        let closed = existing
            .into_iter()
            .map(|path| Segment {
                bytes: fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                max_received_at: segment_age(&path, &metrics),
                path,
            })
            .collect();
        let (current, file) = Writer::open_segment(&dir, next_seq)?;
        let writer = Writer {
            dir: dir.clone(),
            policy,
            segment_bytes: segment_bytes.max(1),
            closed,
            current,
            file,
            next_seq: next_seq + 1,
            metrics,
            broken: false,
            log_rate: LogRate::new(Duration::from_secs(10)),
            after_batch: None,
        };
        writer.update_gauges();
        let (tx, rx) = mpsc::channel(16 * 1024);
        let thread = std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || writer.run(rx))?;
        Ok(Journal {
            tx,
            thread: Mutex::new(Some(thread)),
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a record; returns once it is written per the fsync policy.
    pub async fn append(&self, record: &Record) -> Result<(), JournalError> {
        self.append_line(record.to_line(), record.received_at.unwrap_or(0))
            .await
    }

    /// Appends a ready-made journal line (one recorded callback, no newline).
    pub async fn append_line(&self, line: Vec<u8>, received_at: i64) -> Result<(), JournalError> {
        let (ack, stored) = oneshot::channel();
        let done: OnStored = Box::new(move |r| {
            let _ = ack.send(r);
        });
        self.tx
            .send(Cmd::Append {
                line,
                received_at,
                done,
            })
            .await
            .map_err(|_| JournalError::Closed)?;
        stored.await.map_err(|_| JournalError::Closed)??;
        Ok(())
    }

    /// Queues a ready-made journal line without waiting: `done` is called
    /// on the writer thread with the outcome once the line's batch is
    /// durable per the fsync policy (or refused). Nothing here awaits, so
    /// a caller that is cancelled afterwards cannot lose the append. If
    /// the line cannot be queued (the writer is behind by the channel's
    /// capacity, or has stopped), `done` is dropped without being called
    /// and the error says why.
    pub fn append_then(
        &self,
        line: Vec<u8>,
        received_at: i64,
        done: OnStored,
    ) -> Result<(), JournalError> {
        use mpsc::error::TrySendError;
        self.tx
            .try_send(Cmd::Append {
                line,
                received_at,
                done,
            })
            .map_err(|e| match e {
                TrySendError::Full(_) => JournalError::Busy,
                TrySendError::Closed(_) => JournalError::Closed,
            })
    }

    /// Installs the hook the writer calls after each batch's completions
    /// (replacing any earlier one). It takes effect before any append
    /// queued after this call completes: the writer reads its queue in
    /// order.
    pub fn set_after_batch(&self, hook: AfterBatch) -> Result<(), JournalError> {
        use mpsc::error::TrySendError;
        self.tx
            .try_send(Cmd::AfterBatch(hook))
            .map_err(|e| match e {
                TrySendError::Full(_) => JournalError::Busy,
                TrySendError::Closed(_) => JournalError::Closed,
            })
    }

    /// Deletes closed segments whose newest record is older than `cutoff_ms`.
    pub async fn prune(&self, cutoff_ms: i64) -> Result<usize, JournalError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Cmd::Prune { cutoff_ms, ack })
            .await
            .map_err(|_| JournalError::Closed)?;
        done.await.map_err(|_| JournalError::Closed)
    }

    /// Flushes and fsyncs what has been written.
    pub async fn flush(&self) -> Result<(), JournalError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Cmd::Flush { ack })
            .await
            .map_err(|_| JournalError::Closed)?;
        done.await.map_err(|_| JournalError::Closed)??;
        Ok(())
    }

    /// Stops the writer after everything queued is written and synced.
    pub fn close(self) {
        let Journal { tx, thread, .. } = self;
        drop(tx);
        let handle = thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}
