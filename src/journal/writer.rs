//! The journal's writer thread: group commit of appended lines into the
//! current segment, fsync per policy, rotation, pruning by age, and
//! cutting a failed write back to the last complete record.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use super::{segment_path, tail, AfterBatch, Cmd, OnStored};
use crate::config::FsyncPolicy;
use crate::lograte::LogRate;
use crate::metrics::Metrics;

pub(super) struct Segment {
    pub(super) path: PathBuf,
    pub(super) bytes: u64,
    /// Newest `received_at` in it (ms); it may go once that is past retention.
    pub(super) max_received_at: i64,
}

pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) policy: FsyncPolicy,
    pub(super) segment_bytes: u64,
    pub(super) closed: Vec<Segment>,
    pub(super) current: Segment,
    pub(super) file: File,
    pub(super) next_seq: u64,
    pub(super) metrics: Arc<Metrics>,
    /// Set when a failed write could be neither cut back nor left behind
    /// for a new segment: nothing is written until one of them works.
    pub(super) broken: bool,
    pub(super) log_rate: LogRate,
    pub(super) after_batch: Option<AfterBatch>,
}

/// The newest `received_at` in a closed segment, from its last readable
/// record however much unreadable tail follows it (which is reported), or
/// the file's modification time if it holds no readable record: never 0,
/// which would make housekeeping delete the segment at once.
pub(super) fn segment_age(path: &Path, metrics: &Metrics) -> i64 {
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
    pub(super) fn open_segment(dir: &Path, seq: u64) -> io::Result<(Segment, File)> {
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

    pub(super) fn update_gauges(&self) {
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

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
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
                    // A setting, not an operation: in force for this batch.
                    Cmd::AfterBatch(hook) => self.after_batch = Some(hook),
                    other => others.push(other),
                }
                if appends.len() < 4096 {
                    next = rx.try_recv().ok();
                }
            }
            if !appends.is_empty() {
                self.write_batch(appends);
                if let Some(hook) = self.after_batch.as_mut() {
                    hook();
                }
            }
            for c in others {
                match c {
                    Cmd::Prune { cutoff_ms, ack } => {
                        let _ = ack.send(self.prune(cutoff_ms));
                    }
                    Cmd::Flush { ack } => {
                        let _ = ack.send(self.file.flush().and_then(|_| self.sync()));
                    }
                    Cmd::Append { .. } | Cmd::AfterBatch(_) => {}
                }
            }
        }
        // Channel closed: everything written is made durable before exit.
        if let Err(e) = self.sync() {
            tracing::error!(error = %e, "final journal fsync failed");
        }
    }
}
