//! `nrpm reproduce`: runs the paper's experiments on the authors' checkpoints and writes
//! `OUT/report.json`, `OUT/report.md` and, with `--markdown`, a copy of the Markdown report
//! whose hand-written analysis block is kept (see [`crate::reproduce`]).

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::bar::Bar;
use crate::cli::common::{check_output_file, prepare_output_dir};
use crate::cli::sharded::ShardFlags;
use crate::cli::write_json;
use crate::reproduce::{self, render, Experiment, Options, Report, Status};
use nrpm::data::cifar::is_cifar10_folder;
use nrpm::error::{Error, Result};
use nrpm::records::{file_sha256, sha256_hex, Header, RecordFile, Shard, ShardSource};
use nrpm::report::write_file;

/// The checkpoints beside the repository.
const SHARED_MODELS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/models");

/// Run the paper's experiments and write a report with our numbers beside the paper's.
#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// Folder of the authors' checkpoints (mlp3_mnist, lenet_mnist, tinyresnet18_cifar10
    /// .safetensors) [default: ../shared/models beside the repository].
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Data: a folder of MNIST IDX files (the full 60 000 + 10 000), `mnist-subset` (shipped,
    /// 5 000 training images), and/or a folder of CIFAR-10 binary batches; repeat the flag for
    /// both [default: ../shared/data/mnist beside the repository].
    #[arg(long)]
    pub data: Vec<String>,
    /// Experiments, comma-separated: all, mnist, training, mlp-p1, mlp-p2, mlp-p3,
    /// mlp-nrpm-tuned, mlp-nrpm-scratch, mlp-lpm-at, lenet, attacks, ablation-k, ablation-eps, cifar.
    #[arg(long, default_value = "all")]
    pub experiments: String,
    /// Evaluate on the first N test images (the authors: 1000).
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Seed of attack random starts and of training.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Images per evaluation batch (the figures do not depend on it).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// PGD steps.
    #[arg(long, default_value_t = 20)]
    pub pgd_steps: usize,
    /// AutoAttack (standard, L∞, ε = 0.05 and 0.1) and its gradient-masking checks on the
    /// first N of the evaluated test images, for every MNIST model; 0 leaves them out. Minutes
    /// per NRPM model at 200.
    #[arg(long, default_value_t = 200)]
    pub autoattack_n: usize,
    /// Training epochs (the authors: 10); fewer shortens paradigms 2 and 3, and the report
    /// says so.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Train on the first N training images only (the report says so).
    #[arg(long)]
    pub train_n: Option<usize>,
    /// Where the NRPM operators run: cpu | cuda | cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Output folder: report.json, report.md, checkpoints/<experiment>/ (created if missing).
    #[arg(long, default_value = "reproduction")]
    pub out: PathBuf,
    /// Also write the Markdown report here (e.g. docs/REPRODUCTION.md), keeping the file's
    /// hand-written analysis block (its folder must exist).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Also write the JSON report here (e.g. docs/REPRODUCTION.json; its folder must exist).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Continue each training run from its checkpoint in OUT/checkpoints/ when there is one
    /// (a finished run is then only evaluated).
    #[arg(long)]
    pub reuse_checkpoints: bool,
    /// Which shard of the experiments (records in OUT/records-I-of-N.jsonl), and whether to
    /// continue its records.
    #[command(flatten)]
    pub sharding: ShardFlags,
}

/// Runs `nrpm reproduce`.
///
/// # Errors
/// Bad flags (unknown experiment, missing models or data folder, bad device); errors writing
/// the report; an experiment that failed (after the report is written).
pub fn run(args: ReproduceArgs) -> Result<()> {
    for (flag, path) in [("--json", &args.json), ("--markdown", &args.markdown)] {
        if let Some(path) = path {
            check_output_file(flag, path)?;
        }
    }
    prepare_output_dir("--out", &args.out)?;
    let options = options(&args)?;
    let (shard, source) = args.sharding.resolve()?;
    if source != ShardSource::Whole {
        return run_shard(&args, &options, shard, &source);
    }
    if args.sharding.resume {
        return Err(Error::Flag {
            flag: "--resume".into(),
            problem: "has no effect without sharding (use --reuse-checkpoints to continue \
                      training runs)"
                .into(),
        });
    }
    let report = reproduce::run(&options, &mut Bar::default())?;
    write_reports(&report, &options.out, &args)?;
    println!("{}", summary(&report, &options.out));
    outcome(&report)
}

/// One shard of the experiments: each finished experiment is appended to the shard's records
/// file; `nrpm merge` assembles the report.
fn run_shard(
    args: &ReproduceArgs,
    options: &Options,
    shard: Shard,
    source: &ShardSource,
) -> Result<()> {
    eprintln!(
        "shard {shard} (from {source}) of {} experiment(s)",
        options.experiments.len()
    );
    let header = records_header(options, shard)?;
    let mut file = RecordFile::open(&options.out, &header, args.sharding.resume)?;
    let owned = |e: usize| shard.owns(e) && !file.is_done(e);
    let todo: Vec<usize> = (0..options.experiments.len())
        .filter(|&e| owned(e))
        .collect();
    // Each experiment is recorded (and the file synced) as soon as it ends.
    let ran = reproduce::run_experiments(
        options,
        |e| todo.contains(&e),
        &mut Bar::default(),
        |position, e| {
            let value = serde_json::to_value(e).expect("an experiment report serialises");
            file.append(&[serde_json::json!({ "index": position, "experiment": value })])
        },
    )?;
    println!(
        "shard {shard}: {} experiment(s) recorded in {} ({} in all); merge with `nrpm merge {}`",
        ran.len(),
        file.path().display(),
        file.done_count(),
        options.out.display()
    );
    Ok(())
}

/// The header of a sharded reproduction: the options that fix the figures, and the hashes of
/// the checkpoints and data folders.
fn records_header(options: &Options, shard: Shard) -> Result<Header> {
    let mut settings = reproduce::options_json(options);
    if let Some(map) = settings.as_object_mut() {
        map.remove("out");
    }
    let models: Vec<String> = reproduce::Checkpoint::ALL
        .iter()
        .map(|c| options.models.join(c.file()))
        .filter(|p| p.is_file())
        .map(|p| file_sha256(&p))
        .collect::<Result<_>>()?;
    let data = [
        options.mnist.clone(),
        options.cifar.as_ref().map(|p| p.display().to_string()),
    ];
    let data_hashes = data
        .iter()
        .flatten()
        .map(|d| folder_sha256(Path::new(d)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Header::new(
        "reproduce",
        settings,
        Some(sha256_hex(models.join(",").as_bytes())),
        sha256_hex(data_hashes.join(",").as_bytes()),
        options.experiments.len(),
        shard,
    ))
}

/// SHA-256 over the files of a data folder (names and contents, sorted by name); the shipped
/// subset's name stands for itself.
fn folder_sha256(dir: &Path) -> Result<String> {
    if !dir.is_dir() {
        return Ok(sha256_hex(dir.display().to_string().as_bytes()));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let parts = files
        .iter()
        .map(|p| {
            Ok(format!(
                "{}:{}",
                p.file_name().unwrap_or_default().to_string_lossy(),
                file_sha256(p)?
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(sha256_hex(parts.join(",").as_bytes()))
}

/// Writes the report of a merged sharded reproduction into `out` (report.json, report.md).
///
/// # Errors
/// Records that are not a reproduction's; errors writing the files.
pub fn write_merged(header: &Header, records: &[serde_json::Value], out: &Path) -> Result<Report> {
    let experiments = records
        .iter()
        .map(|r| serde_json::from_value(r["experiment"].clone()))
        .collect::<std::result::Result<Vec<reproduce::ExperimentReport>, _>>()
        .map_err(|e| Error::Records {
            what: "merge".into(),
            problem: format!("a reproduction record is not an experiment report: {e}"),
        })?;
    let command = format!("nrpm merge (of {})", header.command);
    let mut options = header.settings.clone();
    options["out"] = serde_json::json!(out);
    let report = reproduce::assemble(options, &command, experiments);
    let value = serde_json::to_value(&report).expect("the report serialises");
    write_json(&out.join("report.json"), &value)?;
    write_file(&out.join("report.md"), &render::markdown(&report))?;
    Ok(report)
}

/// `Ok` when no experiment failed and at least one ran.
fn outcome(report: &Report) -> Result<()> {
    if let Some(e) = report
        .experiments
        .iter()
        .find(|e| matches!(e.status, Status::Failed { .. }))
    {
        return Err(Error::config(
            "experiment",
            &e.name,
            "failed; its error is in the report",
        ));
    }
    if report.experiments.iter().all(|e| e.status != Status::Ran) {
        let reasons: Vec<String> = report
            .experiments
            .iter()
            .filter_map(|e| match &e.status {
                Status::NotRun { reason } => Some(format!("{}: {reason}", e.name)),
                _ => None,
            })
            .collect();
        return Err(Error::config(
            "experiments",
            reasons.join("; "),
            "none of them could run",
        ));
    }
    Ok(())
}

/// The run's options from the flags.
fn options(args: &ReproduceArgs) -> Result<Options> {
    let device: nrpm::Device = args.device.parse()?;
    device.open()?;
    let (mnist, cifar) = data_folders(&args.data)?;
    Ok(Options {
        experiments: Experiment::parse_list(&args.experiments)?,
        models: args
            .models
            .clone()
            .unwrap_or_else(|| SHARED_MODELS_DIR.into()),
        mnist,
        cifar,
        n: args.n,
        seed: args.seed,
        batch_size: args.batch_size,
        pgd_steps: args.pgd_steps,
        autoattack_n: args.autoattack_n,
        epochs: args.epochs,
        train_n: args.train_n,
        device,
        out: args.out.clone(),
        reuse_checkpoints: args.reuse_checkpoints,
        command: command_line(),
    })
}

/// Sorts the `--data` entries into the MNIST source and the CIFAR-10 folder.
fn data_folders(entries: &[String]) -> Result<(Option<String>, Option<PathBuf>)> {
    if entries.is_empty() {
        let shared = nrpm::data::SHARED_MNIST_DIR;
        return Ok((Path::new(shared).is_dir().then(|| shared.to_string()), None));
    }
    let (mut mnist, mut cifar) = (None, None);
    for entry in entries {
        let dir = Path::new(entry);
        if entry != "mnist-subset" && !dir.is_dir() {
            let e = std::io::Error::new(std::io::ErrorKind::NotFound, "no such data folder");
            return Err(Error::io(dir, e));
        }
        let slot = match entry != "mnist-subset" && is_cifar10_folder(dir) {
            true => &mut cifar,
            false => &mut mnist,
        };
        if slot.replace(entry.clone()).is_some() {
            return Err(Error::config(
                "data",
                entry,
                "names a second folder of the same kind",
            ));
        }
    }
    Ok((mnist, cifar.map(PathBuf::from)))
}

/// The command line as typed, quoted where a word needs it.
fn command_line() -> String {
    let words: Vec<String> = std::env::args()
        .enumerate()
        .map(|(i, a)| if i == 0 { "nrpm".into() } else { a })
        .map(|a| {
            match a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
                true => format!("'{}'", a.replace('\'', r"'\''")),
                false => a,
            }
        })
        .collect();
    words.join(" ")
}

/// Writes OUT/report.json, OUT/report.md and the `--json` and `--markdown` copies.
fn write_reports(report: &Report, out: &Path, args: &ReproduceArgs) -> Result<()> {
    let value = serde_json::to_value(report).expect("the report serialises");
    for path in std::iter::once(out.join("report.json")).chain(args.json.clone()) {
        write_json(&path, &value)?;
    }
    let text = render::markdown(report);
    write_file(&out.join("report.md"), &text)?;
    if let Some(path) = &args.markdown {
        let existing = std::fs::read_to_string(path).ok();
        write_file(path, &render::keep_analysis(&text, existing.as_deref()))?;
    }
    Ok(())
}

/// One line per experiment and where the files went.
fn summary(report: &Report, out: &Path) -> String {
    let mut s = String::new();
    for e in &report.experiments {
        s += &format!(
            "{:<18} {:<8} {:>8.1} s\n",
            e.name,
            reproduce::status_word(&e.status),
            e.seconds
        );
    }
    s += &format!(
        "{} differences over 2 points; report: {}",
        report.differences.len(),
        out.join("report.md").display()
    );
    s
}
