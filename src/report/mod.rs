//! Reports: results in, files out — no maths beyond formatting and confidence intervals.
//!
//! - [`stats`]: accuracies as proportions with 95 % Clopper–Pearson intervals (`statrs`);
//! - [`markdown`]: GitHub-flavoured tables;
//! - [`svg`]: self-contained SVG line and grouped-bar charts (no plotting dependency);
//! - [`write_file`]: writes a report file, creating its folder;
//! - [`machine`], [`load_average`], [`utc_now`]: where and when a report was made.

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

/// Now, in UTC, as `2025-01-31 13:45:07 UTC`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_string(secs)
}

/// Seconds since 1970-01-01 00:00:00 UTC as `YYYY-MM-DD hh:mm:ss UTC`.
///
/// ```text
/// days → (year, month, day): the proleptic Gregorian calendar in 400-year eras of 146 097
/// days, counted from 0000-03-01 so that the leap day ends each year (H. Hinnant, civil_from_days)
/// ```
///
/// # Example
/// ```
/// assert_eq!(nrpm::report::utc_string(951_782_400), "2000-02-29 00:00:00 UTC");
/// assert_eq!(nrpm::report::utc_string(0), "1970-01-01 00:00:00 UTC");
/// ```
pub fn utc_string(secs: u64) -> String {
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}
