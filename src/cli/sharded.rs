//! The flags and steps that the per-image subcommands (`eval`, `certify`) share to split their
//! images over processes: `--out DIR` for per-image records, `--shard I/N` (or a Slurm array's
//! or a Kubernetes Indexed Job's variables, with `--shards N`), `--resume`. `nrpm reproduce`
//! splits its experiments with the same three flags ([`ShardFlags`]).
//!
//! ```text
//! image i (its index among the evaluated images) belongs to shard i mod N      (interleaved)
//! OUT/records-I-of-N.jsonl   header + one record per finished image, flushed per batch
//! unsharded run (N = 1)      OUT/report.json, OUT/report.md from its own records
//! sharded run                `nrpm merge OUT…` writes the same report from all shards' records
//! ```

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::Value;

use crate::cli::common::prepare_output_dir;
use nrpm::data::Dataset;
use nrpm::error::{Error, Result};
use nrpm::records::{self, file_sha256, Header, RecordFile, Shard, ShardSource};

/// The flags that pick one shard of a run's work items (the images of `eval` and `certify`,
/// the experiments of `reproduce`) and continue its records. `nrpm reproduce` flattens them
/// beside its own `--out`; [`ShardArgs`] beside the per-image one.
#[derive(Debug, Clone, Default, Args)]
pub struct ShardFlags {
    /// Run shard I of N (0-based) of the work items (the images of eval and certify, the
    /// experiments of reproduce in the order they run): item i belongs to shard i mod N
    /// (interleaved). Each shard records its finished items in OUT/records-I-of-N.jsonl, and
    /// `nrpm merge OUT…` writes the report of all shards. Without it, a Slurm array's
    /// SLURM_ARRAY_TASK_* or a Kubernetes Indexed Job's JOB_COMPLETION_INDEX (with --shards)
    /// are used when set.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// The number of shards of a Kubernetes Indexed Job (its completions).
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,
    /// Continue this shard's records in OUT: items already recorded are not run again, a last
    /// line cut short by a killed process is dropped. Refused on records of other settings,
    /// data, checkpoint or version.
    #[arg(long)]
    pub resume: bool,
}

impl ShardFlags {
    /// The shard to run and where it came from (the flags, Slurm's or Kubernetes' variables,
    /// or the whole run).
    ///
    /// # Errors
    /// [`Error::Flag`] for a malformed `--shard`, `--shards` without a job index, or
    /// inconsistent variables.
    pub fn resolve(&self) -> Result<(Shard, ShardSource)> {
        Shard::resolve(self.shard.as_deref(), self.shards, |k| {
            std::env::var(k).ok()
        })
    }
}

/// Per-image records and sharding.
#[derive(Debug, Clone, Default, Args)]
pub struct ShardArgs {
    /// Write one record per image to OUT/records-I-of-N.jsonl (flushed per batch; created if
    /// missing) and, for an unsharded run, the report to OUT/report.json and OUT/report.md.
    /// Needed by --shard, --shards and --resume.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Which shard, and whether to continue its records.
    #[command(flatten)]
    pub flags: ShardFlags,
}

/// An open shard of a per-image run: which images it still has to do, and its records file.
#[derive(Debug)]
pub struct ShardRun {
    /// The shard.
    pub shard: Shard,
    /// Where the records and the report go.
    pub out: PathBuf,
    /// The shard's images not yet recorded, in order.
    pub todo: Vec<usize>,
    /// The records file, open for appending.
    pub file: RecordFile,
}

impl ShardArgs {
    /// Refuses the sharding flags without `--out`, and checks `--out` before any work.
    ///
    /// # Errors
    /// [`Error::Flag`] for `--shard`, `--shards` or `--resume` without `--out`, or an `--out`
    /// that cannot be created or written.
    pub fn check(&self) -> Result<()> {
        if let Some(out) = &self.out {
            return prepare_output_dir("--out", out);
        }
        let given = [
            ("--shard", self.flags.shard.is_some()),
            ("--shards", self.flags.shards.is_some()),
            ("--resume", self.flags.resume),
        ];
        match given.iter().find(|(_, g)| *g) {
            Some((flag, _)) => Err(Error::Flag {
                flag: flag.to_string(),
                problem: "needs --out DIR, where the per-image records go".into(),
            }),
            None => Ok(()),
        }
    }

    /// Opens this process's shard of a `command` run over `data` (all its images) with
    /// `settings` (everything that changes a figure, not the batch size): resolves the shard,
    /// prints where it came from, opens (or, with `--resume`, continues) its records file.
    /// `None` without `--out`.
    ///
    /// # Errors
    /// Bad shard flags or scheduler variables; records of another run in OUT; an unreadable
    /// checkpoint; I/O errors.
    pub fn open(
        &self,
        command: &str,
        settings: Value,
        checkpoint: Option<&Path>,
        data: &Dataset,
    ) -> Result<Option<ShardRun>> {
        let Some(out) = &self.out else {
            return Ok(None);
        };
        let (shard, source) = self.flags.resolve()?;
        let checkpoint_sha256 = checkpoint.map(file_sha256).transpose()?;
        let header = Header::new(
            command,
            settings,
            checkpoint_sha256,
            data.sha256(),
            data.len(),
            shard,
        );
        let file = RecordFile::open(out, &header, self.flags.resume)?;
        let todo: Vec<usize> = shard
            .images(data.len())
            .into_iter()
            .filter(|&i| !file.is_done(i))
            .collect();
        if source != ShardSource::Whole || self.flags.resume {
            eprintln!(
                "shard {shard} (from {source}): {} image(s) to do, {} already recorded in {}",
                todo.len(),
                file.done_count(),
                file.path().display()
            );
        }
        Ok(Some(ShardRun {
            shard,
            out: out.clone(),
            todo,
            file,
        }))
    }
}

impl ShardRun {
    /// After the run: for an unsharded one, its records in index order (to write the report);
    /// for a shard, `None`, after printing how to merge.
    ///
    /// # Errors
    /// The records file cannot be read back.
    pub fn finish(&self) -> Result<Option<Vec<Value>>> {
        if self.shard.count > 1 {
            println!(
                "shard {}: {} image(s) recorded in {}; when every shard is done: nrpm merge {}",
                self.shard,
                self.file.done_count(),
                self.file.path().display(),
                self.out.display()
            );
            return Ok(None);
        }
        let (_, records, _) = records::merge(&[self.file.path().to_path_buf()])?;
        Ok(Some(records))
    }
}

/// The records of a run, each turned into `R`.
///
/// # Errors
/// [`Error::Records`] for a record that is not an `R` (records of another kind or version).
pub fn parse_records<R: serde::de::DeserializeOwned>(
    command: &str,
    records: &[Value],
) -> Result<Vec<R>> {
    records
        .iter()
        .map(|r| {
            serde_json::from_value(r.clone()).map_err(|e| Error::Records {
                what: "merge".into(),
                problem: format!("a record is not an `nrpm {command}` image record: {e}"),
            })
        })
        .collect()
}
