//! Where the running config came from, so a reload reads it again from
//! the same place.

use std::path::PathBuf;

/// Where the running config came from, for reloads.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// Built in code (tests): a reload re-reads rules only.
    Fixed,
    /// `Config::load` with this `-c` argument (None: default lookup).
    Load(Option<PathBuf>),
}
