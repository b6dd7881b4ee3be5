//! Reading recorded callbacks back: from any reader (replay of a file or
//! stdin) or from the journal's segments in order (recovery, backtests).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use super::{journal_dir, segments, JournalError, Record};

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
