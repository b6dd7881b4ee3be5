//! Summary statistics shared by the `cargo bench` programs.

use std::time::Duration;

/// The `p`-th percentile (0–100) of `sorted`, by nearest rank; zero when
/// there is nothing to rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let Some(last) = sorted.len().checked_sub(1) else {
        return Duration::ZERO;
    };
    let i = (last as f64 * p / 100.0).round() as usize;
    sorted[i.min(last)]
}
