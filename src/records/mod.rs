//! Per-image records of long runs, and the one place that knows how work is split: shards,
//! resuming, merging. A run writes one JSON-lines file per shard; `nrpm merge` reads them back
//! and gives exactly the report of the unsharded run.
//!
//! ```text
//! OUT/records-I-of-N.jsonl
//!   line 1    header  {"nrpm_records": 1, "nrpm_version", "command", "settings",
//!                      "settings_sha256", "checkpoint_sha256", "data_sha256", "shard", "images"}
//!   line 2…   one record per finished image {"index": i, …}   (any order; flushed per batch)
//! ```
//!
//! - A record is written as one line ending in `\n`, and the file is flushed and synced after
//!   each batch: a process killed at any moment leaves whole records and at most one last line
//!   cut short, which [`RecordFile::open`] (with resume) drops, and [`read_file`] skips with a
//!   warning. Resuming never repeats a finished image and never loses one.
//! - The header's `settings_sha256` is the SHA-256 of the settings' canonical JSON (keys
//!   sorted); files of one run agree on it, on the nrpm version, and on the checkpoint's and
//!   the data's SHA-256. [`merge`] refuses anything else, duplicates, and gaps (listing the
//!   missing ranges).
//!
//! Files: `shard.rs` (which images a process owns, from `--shard` or the scheduler's
//! variables); this file (the record files, resuming, merging).

mod shard;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use shard::{Shard, ShardSource};

use crate::error::{Error, Result};

/// Format tag of a records file's header.
pub const FORMAT: u32 = 1;

/// SHA-256 (hex) of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// SHA-256 (hex) of a file's bytes.
///
/// # Errors
/// [`Error::Io`] if it cannot be read.
pub fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(sha256_hex(&bytes))
}

/// The first line of a records file: what the run is, so that files of one run can be
/// recognised and files of different runs refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// [`FORMAT`].
    pub nrpm_records: u32,
    /// nrpm's version.
    pub nrpm_version: String,
    /// The subcommand (`eval`, `certify`).
    pub command: String,
    /// Every setting that changes a figure (not the shard, not the batch size).
    pub settings: Value,
    /// SHA-256 of the settings' canonical JSON.
    pub settings_sha256: String,
    /// SHA-256 of the checkpoint file (`None` for initialised weights).
    pub checkpoint_sha256: Option<String>,
    /// SHA-256 of the evaluated images and labels ([`crate::data::Dataset::sha256`]).
    pub data_sha256: String,
    /// Number of images of the whole (unsharded) run.
    pub images: usize,
    /// This file's shard.
    pub shard: Shard,
}

impl Header {
    /// The header of shard `shard` of a run with these settings.
    pub fn new(
        command: &str,
        settings: Value,
        checkpoint_sha256: Option<String>,
        data_sha256: String,
        images: usize,
        shard: Shard,
    ) -> Self {
        let canonical = serde_json::to_string(&settings).expect("JSON values serialise");
        Self {
            nrpm_records: FORMAT,
            nrpm_version: env!("CARGO_PKG_VERSION").to_string(),
            command: command.to_string(),
            settings_sha256: sha256_hex(canonical.as_bytes()),
            settings,
            checkpoint_sha256,
            data_sha256,
            images,
            shard,
        }
    }

    /// The first difference from `other` that makes their records belong to different runs
    /// (the shard may differ), in words.
    pub fn mismatch(&self, other: &Header) -> Option<String> {
        let checks = [
            (
                "format",
                self.nrpm_records.to_string(),
                other.nrpm_records.to_string(),
            ),
            (
                "nrpm version",
                self.nrpm_version.clone(),
                other.nrpm_version.clone(),
            ),
            ("command", self.command.clone(), other.command.clone()),
            (
                "settings hash",
                self.settings_sha256.clone(),
                other.settings_sha256.clone(),
            ),
            (
                "checkpoint hash",
                format!("{:?}", self.checkpoint_sha256),
                format!("{:?}", other.checkpoint_sha256),
            ),
            (
                "data hash",
                self.data_sha256.clone(),
                other.data_sha256.clone(),
            ),
            (
                "image count",
                self.images.to_string(),
                other.images.to_string(),
            ),
        ];
        checks
            .into_iter()
            .find(|(_, a, b)| a != b)
            .map(|(what, a, b)| format!("{what} differs: {a} against {b}"))
    }
}

/// The file name of shard `shard`'s records.
pub fn file_name(shard: Shard) -> String {
    format!("records-{}-of-{}.jsonl", shard.index, shard.count)
}

/// An open records file: the header written (or checked), the images already done, ready to
/// append.
#[derive(Debug)]
pub struct RecordFile {
    path: PathBuf,
    file: File,
    header: Header,
    done: BTreeSet<usize>,
}

impl RecordFile {
    /// Opens shard `header.shard`'s file in `dir` (created if missing). A new file gets the
    /// header. An existing one is refused unless `resume`; with `resume` its header must match
    /// `header` (same run), its finished records are kept, and a last line cut short by a
    /// killed process is removed.
    ///
    /// # Errors
    /// [`Error::Io`] for an unwritable folder; [`Error::Records`] for an existing file without
    /// `resume`, or `resume` on a file of another run (nothing in it is changed then);
    /// [`Error::Format`] for a file that is not a records file.
    pub fn open(dir: &Path, header: &Header, resume: bool) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(file_name(header.shard));
        if !path.exists() {
            let mut file = File::create(&path).map_err(|e| Error::io(&path, e))?;
            let line = serde_json::to_string(header).expect("a header serialises") + "\n";
            file.write_all(line.as_bytes())
                .and_then(|_| file.sync_data())
                .map_err(|e| Error::io(&path, e))?;
            return Ok(Self {
                path,
                file,
                header: header.clone(),
                done: BTreeSet::new(),
            });
        }
        if !resume {
            return Err(records_error(
                &path,
                "already exists: pass --resume to continue that run, or use another --out",
            ));
        }
        let contents = read_file(&path)?;
        if let Some(why) = contents.header.mismatch(header) {
            return Err(records_error(
                &path,
                &format!("belongs to another run ({why}); nothing was changed, use another --out"),
            ));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.set_len(contents.valid_bytes)
            .and_then(|_| file.seek(SeekFrom::End(0)).map(|_| ()))
            .map_err(|e| Error::io(&path, e))?;
        let done = contents.records.iter().map(|(i, _)| *i).collect();
        Ok(Self {
            path,
            file,
            header: contents.header,
            done,
        })
    }

    /// The file's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Whether image `index` already has a record.
    pub fn is_done(&self, index: usize) -> bool {
        self.done.contains(&index)
    }

    /// How many records the file holds.
    pub fn done_count(&self) -> usize {
        self.done.len()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one batch of records (each an object with `"index"`), one line each, then
    /// flushes and syncs the file.
    ///
    /// # Errors
    /// [`Error::Config`] for a record without an index or one already written;
    /// [`Error::Io`] if the file cannot be written.
    pub fn append(&mut self, records: &[Value]) -> Result<()> {
        let mut text = String::new();
        for r in records {
            let i = record_index(r).ok_or_else(|| {
                Error::config("record", r, "needs a non-negative integer \"index\"")
            })?;
            if !self.done.insert(i) {
                return Err(Error::config("record", i, "image already has a record"));
            }
            text += &serde_json::to_string(r).expect("JSON values serialise");
            text.push('\n');
        }
        self.file
            .write_all(text.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))
    }
}

/// [`Error::Records`] about the file `path`.
fn records_error(path: &Path, problem: &str) -> Error {
    Error::Records {
        what: path.display().to_string(),
        problem: problem.to_string(),
    }
}

/// The index of a record.
fn record_index(r: &Value) -> Option<usize> {
    r.get("index")?.as_u64().map(|i| i as usize)
}

/// What a records file holds.
#[derive(Debug)]
pub struct Contents {
    /// Its header.
    pub header: Header,
    /// `(index, record)` in file order.
    pub records: Vec<(usize, Value)>,
    /// Bytes up to the end of the last complete record.
    pub valid_bytes: u64,
    /// Whether a last line cut short was dropped.
    pub dropped_partial: bool,
}

/// Reads a records file, dropping a last line that was cut short (no newline, or not JSON).
///
/// # Errors
/// [`Error::Io`]; [`Error::Format`] for a missing or bad header, or a bad line that is not
/// the last.
pub fn read_file(path: &Path) -> Result<Contents> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    let mut valid = 0u64;
    let n = reader
        .read_line(&mut line)
        .map_err(|e| Error::io(path, e))?;
    if n == 0 || !line.ends_with('\n') {
        return Err(Error::format(
            path,
            "no complete header line: not a records file",
        ));
    }
    let header: Header =
        serde_json::from_str(&line).map_err(|e| Error::format(path, format!("bad header: {e}")))?;
    if header.nrpm_records != FORMAT {
        return Err(Error::format(
            path,
            format!(
                "records format {} (this nrpm reads {FORMAT})",
                header.nrpm_records
            ),
        ));
    }
    valid += n as u64;
    let mut records = Vec::new();
    let mut dropped_partial = false;
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        let parsed = serde_json::from_str::<Value>(&line).ok();
        let index = parsed.as_ref().and_then(record_index);
        match (line.ends_with('\n'), parsed, index) {
            (true, Some(v), Some(i)) => {
                records.push((i, v));
                valid += n as u64;
            }
            (false, _, _) => {
                dropped_partial = true; // the last line, cut by a kill
                break;
            }
            (true, _, _) => {
                return Err(Error::format(
                    path,
                    format!(
                        "line {} is not a record: {}",
                        records.len() + 2,
                        line.trim_end()
                    ),
                ))
            }
        }
    }
    Ok(Contents {
        header,
        records,
        valid_bytes: valid,
        dropped_partial,
    })
}

/// The records of every file in `dirs` (their `records-*.jsonl`), checked to be one complete
/// run: the same header apart from the shard, no image twice, no image missing. Returns the
/// header (of the first file) and the records sorted by index, and notes (dropped partial
/// lines).
///
/// # Errors
/// [`Error::Records`] naming the problem: no records files; headers of different runs
/// (settings, version, checkpoint, data); duplicate images; missing images (as ranges).
pub fn merge(dirs: &[PathBuf]) -> Result<(Header, Vec<Value>, Vec<String>)> {
    let files = record_files(dirs)?;
    let mut header: Option<Header> = None;
    let mut by_index: BTreeMap<usize, (Value, PathBuf)> = BTreeMap::new();
    let mut notes = Vec::new();
    for path in &files {
        let c = read_file(path)?;
        if c.dropped_partial {
            notes.push(format!("{}: dropped a last line cut short", path.display()));
        }
        match &header {
            None => header = Some(c.header.clone()),
            Some(h) => {
                if let Some(why) = h.mismatch(&c.header) {
                    let first = files[0].display();
                    return Err(records_error(
                        path,
                        &format!("is from another run than {first} ({why})"),
                    ));
                }
            }
        }
        for (i, r) in c.records {
            if let Some((_, first)) = by_index.get(&i) {
                let both = format!("{} and {}", first.display(), path.display());
                return Err(records_error(
                    path,
                    &format!("image {i} is in both {both}: overlapping shards"),
                ));
            }
            by_index.insert(i, (r, path.clone()));
        }
    }
    let header = header.expect("at least one file");
    let missing = missing_ranges(header.images, &by_index);
    if !missing.is_empty() {
        return Err(Error::Records {
            what: "merge".into(),
            problem: format!(
                "images {} are missing: a shard did not finish (run it again with --resume) \
                 or was not given",
                missing.join(", ")
            ),
        });
    }
    if let Some(&beyond) = by_index.keys().find(|&&i| i >= header.images) {
        return Err(Error::Records {
            what: "merge".into(),
            problem: format!(
                "image {beyond} is beyond the run's {} images",
                header.images
            ),
        });
    }
    Ok((
        header,
        by_index.into_values().map(|(r, _)| r).collect(),
        notes,
    ))
}

/// Every `records-*.jsonl` file in `dirs` (or `dirs` themselves when they are files).
fn record_files(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for d in dirs {
        if d.is_file() {
            files.push(d.clone());
            continue;
        }
        let entries = std::fs::read_dir(d).map_err(|e| Error::io(d, e))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("records-") && n.ends_with(".jsonl"))
            })
            .collect();
        found.sort();
        files.extend(found);
    }
    if files.is_empty() {
        let given: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(Error::Records {
            what: given.join(" "),
            problem: "holds no records-*.jsonl file".into(),
        });
    }
    Ok(files)
}

/// The indices of `0..n` without a record, as `a–b` ranges.
fn missing_ranges<V>(n: usize, have: &BTreeMap<usize, V>) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = None;
    for i in 0..=n {
        let gap = i < n && !have.contains_key(&i);
        match (gap, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(if s + 1 == i {
                    s.to_string()
                } else {
                    format!("{s}–{}", i - 1)
                });
                start = None;
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nrpm-records-{name}-{}", std::process::id()));
        std::fs::remove_dir_all(&d).ok();
        d
    }

    fn header(shard: Shard, settings: Value) -> Header {
        Header::new("eval", settings, Some("c".into()), "d".into(), 6, shard)
    }

    #[test]
    fn shards_merge_into_one_run_and_gaps_duplicates_and_other_runs_are_refused() {
        let dir = temp("merge");
        for s in 0..2 {
            let shard = Shard::new(s, 2).unwrap();
            let mut f = RecordFile::open(&dir, &header(shard, json!({"eps": 0.1})), false).unwrap();
            let recs: Vec<Value> = shard
                .images(6)
                .iter()
                .map(|&i| json!({"index": i, "ok": i % 2}))
                .collect();
            f.append(&recs).unwrap();
        }
        let (h, records, notes) = merge(std::slice::from_ref(&dir)).unwrap();
        assert_eq!(h.images, 6);
        assert!(notes.is_empty());
        assert_eq!(
            records
                .iter()
                .map(|r| record_index(r).unwrap())
                .collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5]
        );
        // Another run in the same folder.
        let other = temp("merge-other");
        let mut f = RecordFile::open(
            &other,
            &header(Shard::new(0, 2).unwrap(), json!({"eps": 0.2})),
            false,
        )
        .unwrap();
        f.append(&[json!({"index": 0})]).unwrap();
        let err = merge(&[dir.clone(), other.clone()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("settings hash differs"), "{err}");
        // A gap.
        std::fs::remove_file(dir.join(file_name(Shard::new(1, 2).unwrap()))).unwrap();
        let err = merge(std::slice::from_ref(&dir)).unwrap_err().to_string();
        assert!(err.contains("images 1, 3, 5 are missing"), "{err}");
        std::fs::remove_dir_all(dir).ok();
        std::fs::remove_dir_all(other).ok();
    }

    #[test]
    fn a_cut_last_line_is_dropped_and_resume_continues_without_repeats() {
        let dir = temp("resume");
        let h = header(Shard::WHOLE, json!({"k": 1}));
        let mut f = RecordFile::open(&dir, &h, false).unwrap();
        f.append(&[json!({"index": 0}), json!({"index": 1})])
            .unwrap();
        drop(f);
        let path = dir.join(file_name(Shard::WHOLE));
        let mut raw = OpenOptions::new().append(true).open(&path).unwrap();
        raw.write_all(br#"{"index": 2, "rob"#).unwrap(); // killed mid-write
        drop(raw);
        assert!(
            RecordFile::open(&dir, &h, false).is_err(),
            "exists without --resume"
        );
        let other = header(Shard::WHOLE, json!({"k": 2}));
        let before = std::fs::read(&path).unwrap();
        assert!(RecordFile::open(&dir, &other, true).is_err(), "another run");
        assert_eq!(std::fs::read(&path).unwrap(), before, "nothing rewritten");
        let mut f = RecordFile::open(&dir, &h, true).unwrap();
        assert!(f.is_done(1) && !f.is_done(2));
        assert!(f.append(&[json!({"index": 1})]).is_err(), "no repeats");
        f.append(&[json!({"index": 2})]).unwrap();
        let c = read_file(&path).unwrap();
        assert_eq!(c.records.len(), 3);
        assert!(!c.dropped_partial);
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn ranges_compress_gaps() {
        let have: BTreeMap<usize, ()> = [0, 1, 5, 9].into_iter().map(|i| (i, ())).collect();
        assert_eq!(missing_ranges(10, &have), ["2–4", "6–8"]);
    }
}
