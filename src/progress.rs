//! Progress bars for long offline runs (`replay`, and any command that
//! walks a large input): drawn on stderr only when stderr is a terminal,
//! so piped and captured output never holds bar fragments. It owns the
//! drawing and the counting of bytes read; what a run counts (callbacks,
//! events, tests) is the caller's.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar over a known or unknown total, hidden unless stderr is
/// a terminal.
pub struct Progress {
    bar: ProgressBar,
    /// Bytes read through [`Progress::track`]ed readers; the bar's position
    /// when the caller sets none itself.
    bytes: Arc<AtomicU64>,
    started: Instant,
}

/// A reader that adds every byte it reads to a [`Progress`].
pub struct Tracked<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Progress {
    /// A bar over `total` bytes of input (a spinner when `None`), drawn on
    /// stderr when it is a terminal.
    pub fn for_bytes(total: Option<u64>) -> Progress {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Progress::hidden();
        }
        let bar = match total {
            Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template("{bar:30} {percent:>3}% {msg} ETA {eta}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        Progress {
            bar,
            bytes: Arc::default(),
            started: Instant::now(),
        }
    }

    /// A bar that draws nothing (tests, pipes, library callers).
    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
            bytes: Arc::default(),
            started: Instant::now(),
        }
    }

    /// Whether anything is drawn.
    pub fn is_visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// `inner`, counting what is read from it into the bar's position.
    pub fn track<R: Read>(&self, inner: R) -> Tracked<R> {
        Tracked {
            inner,
            bytes: self.bytes.clone(),
        }
    }

    /// Sets the position directly (for totals that are not bytes read).
    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
    }

    /// Shows `done` `what` (e.g. "callbacks") with their rate; the
    /// position follows the tracked readers, if any.
    pub fn update(&self, done: u64, what: &str) {
        if self.bar.is_hidden() {
            return;
        }
        let read = self.bytes.load(Ordering::Relaxed);
        if read > 0 {
            self.bar.set_position(read);
        }
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar
            .set_message(format!("{done} {what} ({:.0}/s)", done as f64 / secs));
    }

    /// Runs `f` (which writes to stderr) with the bar out of the way.
    pub fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        self.bar.suspend(f)
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_readers_count_bytes_and_hidden_bars_draw_nothing() {
        let p = Progress::hidden();
        assert!(!p.is_visible());
        let mut r = p.track(&b"hello world"[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        assert_eq!(out, b"hello world");
        assert_eq!(p.bytes.load(Ordering::Relaxed), 11);
        p.update(3, "callbacks");
        p.finish();
    }
}
