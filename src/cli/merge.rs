//! `nrpm merge DIR…`: the report of a sharded run from its shards' records, the same as the
//! unsharded run's. Refuses records of different runs (settings, nrpm version, checkpoint or
//! data), duplicate images and missing ones (listing the missing ranges).
//!
//! `nrpm merge --worst-case DIR…`: each DIR one whole `nrpm eval` run (its shards' records) of
//! one model on the same images and budgets under a different attack; the report gives each
//! attack's robust accuracy and the per-image worst case (AutoAttack's way of combining
//! attacks run as separate jobs), with the attack that broke each image.

use std::path::PathBuf;

use clap::Args;

use crate::cli::common::prepare_output_dir;
use nrpm::error::{Error, Result};
use nrpm::records;

/// Merge the records of a sharded run into its report.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Folders (or files) holding the shards' records-I-of-N.jsonl.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where to write the report [default: the first folder] (created if missing).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Each folder is a whole `nrpm eval` run of the same model, images and budgets under
    /// another attack: report each attack and the per-image worst case over all of them.
    #[arg(long)]
    pub worst_case: bool,
}

/// Runs `nrpm merge`.
///
/// # Errors
/// The refusals of [`records::merge`]; records of a command that cannot be merged; errors
/// writing the report.
pub fn run(args: MergeArgs) -> Result<()> {
    let out = args.report.clone().unwrap_or_else(|| args.dirs[0].clone());
    let out = if out.is_file() {
        out.parent().map(PathBuf::from).unwrap_or_default()
    } else {
        out
    };
    prepare_output_dir("--report", &out)?;
    if args.worst_case {
        return crate::cli::worst_case::run(&args.dirs, &out);
    }
    let (header, records, notes) = records::merge(&args.dirs)?;
    for note in notes {
        eprintln!("note: {note}");
    }
    match header.command.as_str() {
        "reproduce" => {
            let report = crate::cli::reproduce::write_merged(&header, &records, &out)?;
            println!(
                "merged {} experiment(s) of {} shard(s): {}",
                report.experiments.len(),
                header.shard.count,
                out.join("report.md").display()
            );
            Ok(())
        }
        "eval" => {
            let (_, results) = crate::cli::eval::write_report(&out, &header.settings, &records)?;
            println!(
                "merged {} image(s) of {} shard(s): {}",
                results[0].n,
                header.shard.count,
                out.join("report.md").display()
            );
            Ok(())
        }
        "certify" => {
            let n = crate::cli::certify::write_merged(&header.settings, &records, &out)?;
            println!(
                "merged {n} image(s) of {} shard(s): {}",
                header.shard.count,
                out.join("report.md").display()
            );
            Ok(())
        }
        other => Err(Error::Records {
            what: "merge".into(),
            problem: format!("records of `nrpm {other}` cannot be merged by this version"),
        }),
    }
}
