//! The end of a closed segment, read backwards: the newest readable
//! record, which dates the segment for pruning, and whatever unreadable
//! bytes follow it (a torn write, or the NUL-filled blocks a power cut
//! leaves), which are reported rather than silently taken for the
//! segment's age. It reads and decides; the writer logs and keeps the file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use super::Record;

/// How much is read per step backwards.
const CHUNK: usize = 256 * 1024;

/// A line longer than this is not a record (bodies are capped far below
/// it); its bytes are not kept while looking for where it starts.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// Unreadable bytes at the end of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// Where they start: just after the last readable record.
    pub offset: u64,
    /// How many, up to the end of the file.
    pub bytes: u64,
}

/// What the end of a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// `received_at` (ms) of the last readable record that has one.
    pub newest_received_at: Option<i64>,
    /// Unreadable bytes after the last readable record, if any.
    pub damage: Option<Damage>,
}

/// Reads `path` backwards until a readable record with a `received_at`.
pub fn scan(path: &Path) -> io::Result<Tail> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut scan = Scan {
        len,
        good_end: None,
        garbage: false,
    };
    let mut pos = len;
    // The bytes from `pos` to `line_end`: the end of a line whose start
    // lies further back (dropped once too long to be a record).
    let mut carry: Vec<u8> = Vec::new();
    let mut carry_too_long = false;
    // Where the line being assembled ends (its newline, or end of file).
    let mut line_end = len;
    let mut chunk = vec![0u8; CHUNK];
    while pos > 0 {
        let start = pos.saturating_sub(CHUNK as u64);
        let n = (pos - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut chunk[..n])?;
        let mut rest: &[u8] = &chunk[..n];
        // Lines that start inside this chunk, newest first.
        while let Some(nl) = rest.iter().rposition(|b| *b == b'\n') {
            let line = Line::of(&rest[nl + 1..], &carry, carry_too_long);
            if let Some(t) = scan.see(line, line_end) {
                return Ok(scan.finish(Some(t)));
            }
            carry.clear();
            carry_too_long = false;
            line_end = start + nl as u64;
            rest = &rest[..nl];
        }
        if carry_too_long || rest.len() + carry.len() > MAX_LINE {
            carry.clear();
            carry_too_long = true;
        } else {
            let mut joined = rest.to_vec();
            joined.extend_from_slice(&carry);
            carry = joined;
        }
        pos = start;
    }
    // The first line of the file.
    let found = scan.see(Line::of(&[], &carry, carry_too_long), line_end);
    Ok(scan.finish(found))
}

enum Line {
    Blank,
    Record(Option<i64>),
    Garbage,
}

impl Line {
    /// Judges the line made of `head` then `tail`.
    fn of(head: &[u8], tail: &[u8], too_long: bool) -> Line {
        if too_long {
            return Line::Garbage;
        }
        let mut line = head.to_vec();
        line.extend_from_slice(tail);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Line::Blank;
        }
        match serde_json::from_slice::<Record>(&line) {
            Ok(r) => Line::Record(r.received_at),
            Err(_) => Line::Garbage,
        }
    }
}

struct Scan {
    len: u64,
    /// End of the newest readable record (just past its newline).
    good_end: Option<u64>,
    /// An unreadable, non-blank line came after it.
    garbage: bool,
}

impl Scan {
    /// Takes the next line back, ending at `end`; returns its
    /// `received_at` once a dated record is found.
    fn see(&mut self, line: Line, end: u64) -> Option<i64> {
        match line {
            Line::Blank => None,
            Line::Garbage => {
                if self.good_end.is_none() {
                    self.garbage = true;
                }
                None
            }
            Line::Record(t) => {
                if self.good_end.is_none() {
                    self.good_end = Some((end + 1).min(self.len));
                }
                t
            }
        }
    }

    fn finish(self, newest: Option<i64>) -> Tail {
        let offset = self.good_end.unwrap_or(0);
        let damage = (self.garbage && offset < self.len).then_some(Damage {
            offset,
            bytes: self.len - offset,
        });
        Tail {
            newest_received_at: newest,
            damage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: i64) -> String {
        format!("{{\"received_at\":{t},\"query\":{{}},\"body\":{{\"n\":{t}}}}}\n")
    }

    fn scan_bytes(bytes: &[u8]) -> Tail {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("segment-0000000001.jsonl");
        std::fs::write(&p, bytes).expect("write");
        scan(&p).expect("scan")
    }

    #[test]
    fn a_clean_segment_is_dated_by_its_last_record() {
        let body = format!("{}{}\n", line(5), line(9));
        let t = scan_bytes(body.as_bytes());
        assert_eq!(t.newest_received_at, Some(9));
        assert_eq!(t.damage, None, "a trailing blank line is not damage");
    }

    #[test]
    fn a_nul_tail_longer_than_a_chunk_is_skipped_and_reported() {
        let good = format!("{}{}", line(5), line(7));
        let mut bytes = good.clone().into_bytes();
        bytes.extend(std::iter::repeat_n(0u8, 3 * CHUNK + 17));
        let t = scan_bytes(&bytes);
        assert_eq!(t.newest_received_at, Some(7));
        assert_eq!(
            t.damage,
            Some(Damage {
                offset: good.len() as u64,
                bytes: 3 * CHUNK as u64 + 17
            })
        );
    }

    #[test]
    fn torn_lines_and_nul_blocks_with_newlines_are_damage() {
        let good = line(3);
        let mut bytes = good.clone().into_bytes();
        bytes.extend_from_slice(b"{\"received_at\":4,\"qu");
        bytes.extend(std::iter::repeat_n(0u8, CHUNK));
        bytes.push(b'\n');
        bytes.extend(std::iter::repeat_n(0u8, 100));
        let t = scan_bytes(&bytes);
        assert_eq!(t.newest_received_at, Some(3));
        assert_eq!(t.damage.map(|d| d.offset), Some(good.len() as u64));
    }

    #[test]
    fn a_line_longer_than_any_record_is_not_kept_in_memory() {
        let mut bytes = line(1).into_bytes();
        bytes.extend(std::iter::repeat_n(b'x', MAX_LINE + 3 * CHUNK));
        let t = scan_bytes(&bytes);
        assert_eq!(t.newest_received_at, Some(1));
        assert!(t.damage.is_some());
    }

    #[test]
    fn nothing_readable() {
        let t = scan_bytes(&[0u8; 1000]);
        assert_eq!(t.newest_received_at, None);
        assert_eq!(
            t.damage,
            Some(Damage {
                offset: 0,
                bytes: 1000
            })
        );
        assert_eq!(scan_bytes(b"").damage, None);
    }
}
