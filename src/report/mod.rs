//! Reports: results in, files out — no maths beyond formatting and confidence intervals.
//!
//! - [`stats`]: accuracies as proportions with 95 % Clopper–Pearson intervals (`statrs`);
//! - [`markdown`]: GitHub-flavoured tables;
//! - [`svg`]: self-contained SVG line and grouped-bar charts (no plotting dependency);
//! - [`write_file`]: writes a report file, creating its folder;
//! - [`machine`], [`load_average`]: where, and under what load, a report was made.

pub mod markdown;
pub mod stats;
pub mod svg;

use std::path::Path;

use crate::error::{Error, Result};

/// Writes `content` to `path`, creating the parent folder.
///
/// # Errors
/// [`Error::Io`] naming the path.
pub fn write_file(path: &Path, content: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::write(path, content).map_err(|e| Error::io(path, e))
}

/// A one-line description of this machine: CPU model, logical cores, OS and architecture.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpu}, {cores} logical cores, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// The 1-, 5- and 15-minute load averages (Linux `/proc/loadavg`), or `None` elsewhere.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}
