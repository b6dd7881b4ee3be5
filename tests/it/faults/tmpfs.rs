//! A real, small tmpfs for disk-full tests. Mounting needs root: outside
//! CI a non-root run skips these tests; in CI (`CI` set) it fails them,
//! since CI runs as root and a skip there would hide a regression.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"4m"`); `None` (with a note on
    /// stderr) when the test should be skipped.
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let in_ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        if !root {
            assert!(!in_ci, "CI must run the disk-full tests as root");
            eprintln!("skipping: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(Tmpfs { dir }),
            other => {
                assert!(!in_ci, "mounting a tmpfs failed in CI: {other:?}");
                eprintln!("skipping: cannot mount a tmpfs ({other:?})");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with a file until a write fails (ENOSPC);
    /// returns its path (delete it to free the space).
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("create filler");
        let block = vec![0xa5u8; 4096];
        loop {
            match f.write(&block) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a daemon thread may still hold a file open.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
