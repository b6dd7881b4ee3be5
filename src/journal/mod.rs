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

pub mod tail;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
}

/// Handle to the journal writer. Cheap to share behind an `Arc`.
pub struct Journal {
    tx: mpsc::Sender<Cmd>,
    thread: Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
}

struct Segment {
    path: PathBuf,
    bytes: u64,
    /// Newest `received_at` in it (ms); it may go once that is past retention.
    max_received_at: i64,
}

struct Writer {
    dir: PathBuf,
    policy: FsyncPolicy,
    segment_bytes: u64,
    closed: Vec<Segment>,
    current: Segment,
    file: File,
    next_seq: u64,
    metrics: Arc<Metrics>,
    /// Set when a failed write could be neither cut back nor left behind
    /// for a new segment: nothing is written until one of them works.
    broken: bool,
    log_rate: LogRate,
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

/// The newest `received_at` in a closed segment, from its last readable
/// record however much unreadable tail follows it (which is reported), or
/// the file's modification time if it holds no readable record: never 0,
/// which would make housekeeping delete the segment at once.
fn segment_age(path: &Path, metrics: &Metrics) -> i64 {
    let modified = || -> i64 {
        fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(i64::MAX, |d| d.as_millis() as i64)
    };
    match tail::scan(path) {
        Ok(t) => {
            if let Some(d) = t.damage {
                metrics.faults.journal_damaged_tails.inc();
                tracing::warn!(
                    path = %path.display(),
                    offset = d.offset,
                    bytes = d.bytes,
                    "journal segment ends in unreadable bytes (torn write or power cut); they were never acknowledged and are skipped"
                );
            }
            t.newest_received_at.unwrap_or_else(modified)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the end of a journal segment; dating it by its modification time");
            modified()
        }
    }
}

fn sync_dir(dir: &Path) {
    // Makes a new segment's directory entry durable; best effort on
    // platforms where directories cannot be opened.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Writer {
    fn open_segment(dir: &Path, seq: u64) -> io::Result<(Segment, File)> {
        let path = segment_path(dir, seq);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        sync_dir(dir);
        let bytes = file.metadata()?.len();
        Ok((
            Segment {
                path,
                bytes,
                max_received_at: 0,
            },
            file,
        ))
    }

    fn update_gauges(&self) {
        let total: u64 = self.closed.iter().map(|s| s.bytes).sum::<u64>() + self.current.bytes;
        self.metrics.journal_size_bytes.set(total as i64);
        self.metrics
            .journal_segments
            .set(self.closed.len() as i64 + 1);
    }

    fn sync(&mut self) -> io::Result<()> {
        let t = Instant::now();
        let r = self.file.sync_data();
        self.metrics
            .journal_fsync_seconds
            .observe(t.elapsed().as_secs_f64());
        r
    }

    fn rotate_if_full(&mut self) -> io::Result<()> {
        if self.current.bytes < self.segment_bytes {
            return Ok(());
        }
        self.sync()?;
        let (seg, file) = Self::open_segment(&self.dir, self.next_seq)?;
        self.next_seq += 1;
        let old = std::mem::replace(&mut self.current, seg);
        self.closed.push(old);
        self.file = file;
        self.update_gauges();
        Ok(())
    }

    /// Writes one batch of appends and acknowledges them per the policy.
    fn write_batch(&mut self, batch: Vec<(Vec<u8>, i64, OnStored)>) {
        if self.broken && !self.repair() {
            let n = batch.len() as u64;
            for (_, _, done) in batch {
                done(Err(io::Error::other(
                    "journal segment could not be cut back after a failed write",
                )));
            }
            self.metrics.faults.journal_write_failures.inc_by(n);
            return;
        }
        let mut buf = Vec::with_capacity(batch.iter().map(|(l, _, _)| l.len() + 1).sum());
        let mut acks = Vec::with_capacity(batch.len());
        let mut newest = 0;
        for (line, received_at, done) in batch {
            if self.policy == FsyncPolicy::Always {
                // One fsync per record: the slow, maximally strict mode.
                let mut one = line;
                one.push(b'\n');
                let r = self.write_durably(&one, received_at, 1);
                done(r);
                continue;
            }
            buf.extend_from_slice(&line);
            buf.push(b'\n');
            newest = newest.max(received_at);
            acks.push(done);
        }
        if !acks.is_empty() {
            let r = self.write_durably(&buf, newest, acks.len() as u64);
            for done in acks {
                done(match &r {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                });
            }
        }
        if let Err(e) = self.rotate_if_full() {
            tracing::error!(error = %e, "journal segment rotation failed");
        }
    }

    /// Writes `buf` (`records` whole lines) and, unless the policy is
    /// `never`, fsyncs it. On failure the segment is cut back to where it
    /// was, so that the next write starts on a line boundary.
    fn write_durably(&mut self, buf: &[u8], newest: i64, records: u64) -> io::Result<()> {
        let good = self.current.bytes;
        let mut r = self.write_buf(buf);
        if r.is_ok() && self.policy != FsyncPolicy::Never {
            r = self.sync();
        }
        match r {
            Ok(()) => {
                self.note_written(buf.len(), newest, records);
                Ok(())
            }
            Err(e) => {
                self.metrics.faults.journal_write_failures.inc_by(records);
                if let Some(held_back) = self.log_rate.check_now(&format!("write {}", e.kind())) {
                    tracing::error!(
                        path = %self.current.path.display(),
                        error = %e,
                        records,
                        similar_since_last_log = held_back,
                        "journal write failed; its callbacks are refused with 503"
                    );
                }
                self.cut_back(good);
                Err(e)
            }
        }
    }

    /// Cuts the current segment back to `good` bytes after a failed or
    /// short write (or fsync, after which what reached the disk is
    /// unknown). If that fails the segment is closed as it is (its torn
    /// tail is skipped on reading) and a new one begins; if that fails
    /// too, the writer refuses everything until one of them works.
    fn cut_back(&mut self, good: u64) {
        let cut = self.file.set_len(good).and_then(|_| self.file.sync_all());
        match cut {
            Ok(()) => {
                self.metrics.faults.journal_cut_backs.inc();
                self.broken = false;
            }
            Err(e) => {
                tracing::error!(path = %self.current.path.display(), error = %e, "cannot cut a journal segment back after a failed write; starting a new one");
                match Self::open_segment(&self.dir, self.next_seq) {
                    Ok((seg, file)) => {
                        self.next_seq += 1;
                        let old = std::mem::replace(&mut self.current, seg);
                        self.closed.push(old);
                        self.file = file;
                        self.broken = false;
                        self.update_gauges();
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a new journal segment either; refusing callbacks until the disk recovers");
                        self.broken = true;
                    }
                }
            }
        }
    }

    /// Retries [`Writer::cut_back`] after it failed; true once writing
    /// may resume.
    fn repair(&mut self) -> bool {
        self.cut_back(self.current.bytes);
        !self.broken
    }

    fn write_buf(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }

    fn note_written(&mut self, bytes: usize, received_at: i64, records: u64) {
        self.current.bytes += bytes as u64;
        self.current.max_received_at = self.current.max_received_at.max(received_at);
        self.metrics.journal_appends.inc_by(records);
        self.metrics.journal_bytes_written.inc_by(bytes as u64);
        self.update_gauges();
    }

    fn prune(&mut self, cutoff_ms: i64) -> usize {
        let mut removed = 0;
        self.closed.retain(|s| {
            if s.max_received_at >= cutoff_ms {
                return true;
            }
            match fs::remove_file(&s.path) {
                Ok(()) => {
                    removed += 1;
                    false
                }
                Err(e) => {
                    tracing::warn!(path = %s.path.display(), error = %e, "cannot prune journal segment");
                    true
                }
            }
        });
        self.update_gauges();
        removed
    }

    fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        while let Some(cmd) = rx.blocking_recv() {
            let mut appends = Vec::new();
            let mut others = Vec::new();
            let mut next = Some(cmd);
            // Group commit: take everything already waiting (bounded, so a
            // flood cannot delay the first waiter's fsync indefinitely).
            while let Some(c) = next.take() {
                match c {
                    Cmd::Append {
                        line,
                        received_at,
                        done,
                    } => appends.push((line, received_at, done)),
                    other => others.push(other),
                }
                if appends.len() < 4096 {
                    next = rx.try_recv().ok();
                }
            }
            if !appends.is_empty() {
                self.write_batch(appends);
            }
            for c in others {
                match c {
                    Cmd::Prune { cutoff_ms, ack } => {
                        let _ = ack.send(self.prune(cutoff_ms));
                    }
                    Cmd::Flush { ack } => {
                        let _ = ack.send(self.file.flush().and_then(|_| self.sync()));
                    }
                    Cmd::Append { .. } => {}
                }
            }
        }
        // Channel closed: everything written is made durable before exit.
        if let Err(e) = self.sync() {
            tracing::error!(error = %e, "final journal fsync failed");
        }
    }
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

/// Calls `f(line_no, line)` for every non-blank line of `reader` (1-based
/// numbers, without the newline), reusing one buffer: recovery and replay
/// read millions of lines.
pub fn each_line<R: BufRead, E: From<io::Error>>(
    mut reader: R,
    mut f: impl FnMut(usize, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut buf = Vec::with_capacity(1024);
    let mut line_no = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(());
        }
        line_no += 1;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if !is_blank(line) {
            f(line_no, line)?;
        }
    }
}

/// A line of only whitespace: skipped by every reader of recorded callbacks
/// (it still counts for the line numbers of the lines after it).
fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// Reads recorded callbacks from a reader, one per line; blank lines are
/// skipped and a bad line is an error naming `name:line`.
pub fn read_records<R: BufRead + 'static>(
    name: &str,
    reader: R,
) -> impl Iterator<Item = Result<(usize, Record), JournalError>> {
    let name = name.to_string();
    reader
        .split(b'\n')
        .enumerate()
        .filter_map(move |(i, line)| {
            let line_no = i + 1;
            let line = match line {
                Ok(l) => l,
                Err(e) => return Some(Err(JournalError::Io(e))),
            };
            if is_blank(&line) {
                return None;
            }
            Some(
                serde_json::from_slice::<Record>(&line)
                    .map(|r| (line_no, r))
                    .map_err(|e| JournalError::BadLine {
                        path: name.clone(),
                        line: line_no,
                        message: e.to_string(),
                    }),
            )
        })
}

/// Streams every line of the journal under `state_dir` to `f(path,
/// line_no, line)`, oldest segment first, without holding them in memory.
/// Returns how many lines were read.
pub fn for_each_line(state_dir: &Path, mut f: impl FnMut(&str, usize, &[u8])) -> io::Result<u64> {
    let mut n = 0;
    for seg in segments(&journal_dir(state_dir))? {
        let name = seg.display().to_string();
        let file = match File::open(&seg) {
            Ok(f) => f,
            // Pruned between listing and opening: nothing in it was needed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        each_line(BufReader::with_capacity(1 << 20, file), |line_no, line| {
            n += 1;
            f(&name, line_no, line);
            Ok::<_, io::Error>(())
        })?;
    }
    Ok(n)
}

/// Streams every record of the journal under `state_dir` to `f`, oldest
/// segment first. Unreadable lines (a torn tail after a power cut) are
/// logged and skipped: they were never acknowledged. Returns how many
/// lines were read.
pub fn for_each_record(state_dir: &Path, mut f: impl FnMut(Record)) -> io::Result<u64> {
    for_each_line(
        state_dir,
        |name, line_no, line| match serde_json::from_slice::<Record>(line) {
            Ok(r) => f(r),
            Err(e) => {
                tracing::warn!(path = name, line = line_no, error = %e, "skipping unreadable journal line")
            }
        },
    )
}

/// Reads every record of the journal under `state_dir`, oldest segment
/// first. Unreadable lines (a torn tail after a power cut) are logged and
/// skipped: they were never acknowledged.
pub fn read_journal(state_dir: &Path) -> io::Result<Vec<Record>> {
    let mut out = Vec::new();
    for_each_record(state_dir, |r| out.push(r))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(i: i64) -> Record {
        Record {
            received_at: Some(i),
            query: json!({"sdkappid": "1", "command": "caller_start_call"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            body: json!({"UserId": format!("u{i}"), "EventTime": i}),
        }
    }

    #[tokio::test]
    async fn append_read_rotate_prune() {
        let dir = tempfile::tempdir().expect("tempdir");
        for policy in [FsyncPolicy::Always, FsyncPolicy::Batch, FsyncPolicy::Never] {
            let state = dir.path().join(format!("{policy:?}"));
            let j = Journal::open(&state, policy, 200, Arc::new(Metrics::new())).expect("open");
            for i in 0..20 {
                j.append(&rec(i)).await.expect("append");
            }
            j.flush().await.expect("flush");
            let back = read_journal(&state).expect("read");
            assert_eq!(back, (0..20).map(rec).collect::<Vec<_>>());
            let before = segments(&journal_dir(&state)).expect("segments").len();
            assert!(before > 3, "rotated into {before} segments");
            let removed = j.prune(10).await.expect("prune");
            assert!(removed > 0);
            let rest = read_journal(&state).expect("read");
            assert!(rest.iter().all(|r| r.received_at >= Some(5)));
            assert!(rest.iter().any(|r| r.received_at == Some(10)));
            j.close();
        }
    }

    #[test]
    fn append_then_completes_in_order_once_the_line_is_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().to_path_buf();
        let j = Journal::open(
            &state,
            FsyncPolicy::Batch,
            1 << 20,
            Arc::new(Metrics::new()),
        )
        .expect("open");
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..50 {
            let (tx, state) = (tx.clone(), state.clone());
            let done: OnStored = Box::new(move |r| {
                // What a reader finds when the completion runs, on the
                // writer thread: the line must already be there.
                let on_disk = read_journal(&state).map(|v| v.len()).unwrap_or(0);
                let _ = tx.send((i, r.is_ok(), on_disk));
            });
            j.append_then(rec(i).to_line(), i, done).expect("queued");
        }
        let seen: Vec<_> = (0..50)
            .map(|_| {
                rx.recv_timeout(Duration::from_secs(10))
                    .expect("a completion")
            })
            .collect();
        for (n, (i, ok, on_disk)) in seen.into_iter().enumerate() {
            assert_eq!(i, n as i64, "completions run in append order");
            assert!(ok);
            assert!(on_disk > n, "record {i} not on disk at its completion");
        }
        j.close();
    }

    #[tokio::test]
    async fn reopen_continues_in_new_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(
            dir.path(),
            FsyncPolicy::Batch,
            1 << 20,
            Arc::new(Metrics::new()),
        )
        .expect("open");
        j.append(&rec(1)).await.expect("append");
        j.close();
        // A torn tail from a crash must not hide the good lines.
        let seg = segments(&journal_dir(dir.path())).expect("segments")[0].clone();
        OpenOptions::new()
            .append(true)
            .open(&seg)
            .and_then(|mut f| f.write_all(b"{\"received_at\":2,\"que"))
            .expect("tear");
        let j = Journal::open(
            dir.path(),
            FsyncPolicy::Batch,
            1 << 20,
            Arc::new(Metrics::new()),
        )
        .expect("reopen");
        j.append(&rec(3)).await.expect("append");
        j.close();
        let back = read_journal(dir.path()).expect("read");
        assert_eq!(back, vec![rec(1), rec(3)]);
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let input = b"{\"query\":{},\"body\":{}}\n\nnot json\n";
        let errs: Vec<_> = read_records("t.jsonl", &input[..])
            .filter_map(Result::err)
            .collect();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].to_string().starts_with("t.jsonl:3:"), "{}", errs[0]);
    }
}
