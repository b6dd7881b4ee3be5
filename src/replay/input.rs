//! Opening recorded callbacks for `replay`: files or stdin (`-`), plain or
//! gzip-compressed (told by the gzip magic bytes, whatever the name), with
//! the bytes read counted for a progress bar. Reading lines is the
//! replay's business.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

use super::ReplayError;
use crate::progress::Progress;

/// An opened input: its name in messages and a reader of its lines.
pub type Input = (String, Box<dyn BufRead + Send>);

/// The first bytes of every gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Large reads: replay reads through whole files.
const BUF: usize = 1 << 20;

/// Opens every path (`-` = stdin) as an [`Input`], counting bytes read
/// into `progress`. A file that cannot be opened is an input error.
pub fn open_all(
    paths: &[impl AsRef<Path>],
    progress: &Progress,
) -> Result<Vec<Input>, ReplayError> {
    paths.iter().map(|p| open(p.as_ref(), progress)).collect()
}

/// The summed size of the files among `paths` (stdin has none), for a
/// progress bar's total.
pub fn total_size(paths: &[impl AsRef<Path>]) -> Option<u64> {
    paths
        .iter()
        .map(|p| {
            let p = p.as_ref();
            (p.as_os_str() != "-")
                .then(|| std::fs::metadata(p).ok().map(|m| m.len()))
                .flatten()
        })
        .sum()
}

fn open(path: &Path, progress: &Progress) -> Result<Input, ReplayError> {
    if path.as_os_str() == "-" {
        // `Stdin` rather than its lock: the input is read on another thread.
        let reader = BufReader::with_capacity(BUF, progress.track(std::io::stdin()));
        return Ok(("<stdin>".into(), decompressed(reader)?));
    }
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| ReplayError::Input(format!("{name}: {e}")))?;
    let reader = BufReader::with_capacity(BUF, progress.track(file));
    let reader = decompressed(reader).map_err(|e| match e {
        ReplayError::Input(m) => ReplayError::Input(format!("{name}: {m}")),
        other => other,
    })?;
    Ok((name, reader))
}

/// `reader` itself, or its gzip decompression when it starts with the gzip
/// magic bytes.
fn decompressed<R: BufRead + Send + 'static>(
    mut reader: R,
) -> Result<Box<dyn BufRead + Send>, ReplayError> {
    let head = reader
        .fill_buf()
        .map_err(|e| ReplayError::Input(format!("cannot read: {e}")))?;
    if head.starts_with(&GZIP_MAGIC) {
        let gz = GzipReader(MultiGzDecoder::new(reader));
        Ok(Box::new(BufReader::with_capacity(BUF, gz)))
    } else {
        Ok(Box::new(reader))
    }
}

/// A gzip stream whose read errors say that the compressed data is bad,
/// not the file.
struct GzipReader<R>(MultiGzDecoder<R>);

impl<R: BufRead> Read for GzipReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| std::io::Error::new(e.kind(), format!("bad gzip data: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).expect("compress");
        enc.finish().expect("compress")
    }

    fn read_all(mut r: Box<dyn BufRead + Send>) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn gzip_is_told_by_its_magic_bytes_not_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("a.jsonl.gz");
        let packed = dir.path().join("b.jsonl");
        std::fs::write(&plain, b"{\"x\":1}\n").expect("write");
        // Two members, as `cat a.gz b.gz` makes.
        let two = [gzip(b"{\"y\":2}\n"), gzip(b"{\"z\":3}\n")].concat();
        std::fs::write(&packed, &two).expect("write");
        let p = Progress::hidden();
        let inputs = open_all(&[&plain, &packed], &p).expect("opens");
        let mut texts = Vec::new();
        for (_, r) in inputs {
            texts.push(read_all(r).expect("reads"));
        }
        assert_eq!(texts, [&b"{\"x\":1}\n"[..], b"{\"y\":2}\n{\"z\":3}\n"]);
        assert_eq!(total_size(&[&plain, &packed]), Some(8 + two.len() as u64));
    }

    #[test]
    fn bad_gzip_data_and_missing_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("bad.gz");
        let mut data = gzip(&[b'x'; 10_000]);
        let mid = data.len() / 2;
        data[mid..].fill(0xff);
        std::fs::write(&bad, &data).expect("write");
        let p = Progress::hidden();
        let (_, r) = open(&bad, &p).expect("opens");
        let e = read_all(r).expect_err("corrupt");
        assert!(e.to_string().starts_with("bad gzip data: "), "{e}");
        let missing = dir.path().join("nope.jsonl");
        match open(&missing, &p) {
            Err(ReplayError::Input(m)) => assert!(m.contains("nope.jsonl: "), "{m}"),
            _ => panic!("a missing file is an input error"),
        }
    }
}
