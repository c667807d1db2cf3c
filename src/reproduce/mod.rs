//! `nrpm reproduce`: the paper's experiments on the authors' checkpoints, each of our numbers
//! beside the paper's (hand-copied into `data/paper/tables.json`) with a 95 % interval.
//!
//! ```text
//! experiment        what                                                   paper numbers
//! mlp-p1            MLP: vanilla + Paradigm 1, λ = 0.9 … 0.0; FGSM (+PGD)  Table 1
//! mlp-p2            MLP: Paradigm 2, learn λ = σ(θ), weights frozen         Table 1
//! mlp-p3            MLP: Paradigm 3, learn weights and λ                    Table 1
//! mlp-nrpm-tuned    MLP: λ = 0, weights fine-tuned from the checkpoint      Table 1 "NRPM (tuning all)"
//! mlp-nrpm-scratch  MLP: λ = 0, weights trained from a seeded init          Table 1 "NRPM (tuning all)"
//! mlp-lpm-at        MLP: LPM fine-tuned with Paradigm 3's exact recipe       not in the paper
//! lenet             LeNet: LPM + Paradigm 1, λ = 0.9 … 0.0 (convs); FGSM    not retrieved
//! attacks           the authors' L2 / L1 / L0 attacks, MLP and LeNet        not retrieved
//! ablation-k        MLP, λ = 0.7: K = 1, 2, 3, 5, 10                        not retrieved
//! ablation-eps      MLP, λ = 0.7, K = 1: ε_irls = 1e-6 … 1e-2               not retrieved
//! cifar             narrow ResNet18: Paradigm 1, λ = 1 … 0.4, PGD-20        §6.2, §6.7
//! ```
//!
//! Operator settings are the authors' script defaults (PAPER.md §2.5), since the paper does
//! not state the K and ε behind its tables: MLP `mnist_mlp.py` (L1, K = 1, ε = 5e-5, all three
//! layers), LeNet `mnist_lenet.py` (K = 1, ε = 1e-3, conv1 and conv2), ResNet
//! `test_cifar10_resnet.py` (K = 1, ε = 5e-4, the block convolutions). Training follows
//! `mnist_mlp.py` `adv_train` ([`nrpm::train::Recipe::mnist`]). Accuracy is counted as the
//! authors count it (correct before and after the attack) on the first n test images.
//!
//! Files: `paper.rs` (the paper's numbers), `table.rs` (cells, rows, measuring), `setup.rs`
//! (models and data), `mnist.rs` (evaluation-only experiments), `training.rs` (paradigms 2–3),
//! `cifar.rs`, `render.rs` (the Markdown report).

mod cifar;
mod mnist;
pub mod paper;
pub mod render;
mod setup;
mod smoothing;
pub mod table;
mod training;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use setup::Checkpoint;

use crate::reproduce::paper::{Missing, PaperData};
use crate::reproduce::table::ResultTable;
use nrpm::error::{Error, Result};
use nrpm::progress::Progress;
use nrpm::Device;

/// One experiment of the reproduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Experiment {
    /// Table 1: vanilla and Paradigm 1 rows.
    MlpP1,
    /// Table 1: Paradigm 2.
    MlpP2,
    /// Table 1: Paradigm 3.
    MlpP3,
    /// Table 1: NRPM (tuning all), fine-tuned from the checkpoint.
    MlpNrpmTuned,
    /// Table 1: NRPM (tuning all), trained from a seeded initialisation.
    MlpNrpmScratch,
    /// Paradigm 3's recipe with every layer LPM: what adversarial fine-tuning alone gives.
    MlpLpmAt,
    /// LeNet, Paradigm 1.
    Lenet,
    /// L2 / L1 / L0 attacks.
    Attacks,
    /// K ablation.
    AblationK,
    /// ε_irls ablation.
    AblationEps,
    /// §5.4: certified accuracy by randomized smoothing, LPM vs Paradigms 1–3.
    Smoothing,
    /// CIFAR-10 narrow ResNet18.
    Cifar,
}

impl Experiment {
    /// Every experiment, in the order they run.
    pub const ALL: [Experiment; 12] = [
        Experiment::MlpP1,
        Experiment::MlpP2,
        Experiment::MlpP3,
        Experiment::MlpNrpmTuned,
        Experiment::MlpNrpmScratch,
        Experiment::MlpLpmAt,
        Experiment::Lenet,
        Experiment::Attacks,
        Experiment::AblationK,
        Experiment::AblationEps,
        Experiment::Smoothing,
        Experiment::Cifar,
    ];

    /// The names `--experiments` accepts (groups included).
    pub const NAMES: &'static str = "all, mnist (all but cifar), training (mlp-p2, mlp-p3, \
        mlp-nrpm-tuned, mlp-nrpm-scratch, mlp-lpm-at), mlp-p1, mlp-p2, mlp-p3, mlp-nrpm-tuned, \
        mlp-nrpm-scratch, mlp-lpm-at, lenet, attacks, ablation-k, ablation-eps, smoothing, cifar";

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Experiment::MlpP1 => "mlp-p1",
            Experiment::MlpP2 => "mlp-p2",
            Experiment::MlpP3 => "mlp-p3",
            Experiment::MlpNrpmTuned => "mlp-nrpm-tuned",
            Experiment::MlpNrpmScratch => "mlp-nrpm-scratch",
            Experiment::MlpLpmAt => "mlp-lpm-at",
            Experiment::Lenet => "lenet",
            Experiment::Attacks => "attacks",
            Experiment::AblationK => "ablation-k",
            Experiment::AblationEps => "ablation-eps",
            Experiment::Smoothing => "smoothing",
            Experiment::Cifar => "cifar",
        }
    }

    /// What it reproduces, in one line.
    pub fn title(self) -> &'static str {
        match self {
            Experiment::MlpP1 => "Table 1: 3-layer MLP, vanilla and Paradigm 1 (λ = 0.9 … 0.0)",
            Experiment::MlpP2 => "Table 1: 3-layer MLP, Paradigm 2 (learn λ, weights frozen)",
            Experiment::MlpP3 => "Table 1: 3-layer MLP, Paradigm 3 (learn weights and λ)",
            Experiment::MlpNrpmTuned => {
                "Table 1: NRPM (tuning all), reading 1: λ = 0, fine-tuned from the checkpoint"
            }
            Experiment::MlpNrpmScratch => {
                "Table 1: NRPM (tuning all), reading 2: λ = 0, trained from a random start"
            }
            Experiment::MlpLpmAt => {
                "3-layer MLP, LPM fine-tuned with Paradigm 3's recipe (adversarial training alone)"
            }
            Experiment::Lenet => "LeNet: LPM and Paradigm 1 (λ = 0.9 … 0.0 in conv1, conv2)",
            Experiment::Attacks => "The authors' L2, L1 and L0 attacks on the MLP and LeNet",
            Experiment::AblationK => "Ablation: IRLS steps K (MLP, λ = 0.7)",
            Experiment::AblationEps => "Ablation: ε of the IRLS weight (MLP, λ = 0.7, K = 1)",
            Experiment::Smoothing => {
                "§5.4: certified accuracy by randomized smoothing, LPM vs Paradigm 1/2/3 MLPs \
                 (σ = 0.25, 0.5)"
            }
            Experiment::Cifar => "CIFAR-10 narrow ResNet18: Paradigm 1 under PGD (§6.2, §6.7)",
        }
    }

    /// The checkpoint files it needs.
    fn checkpoints(self) -> &'static [Checkpoint] {
        match self {
            Experiment::Lenet => &[Checkpoint::Lenet],
            Experiment::Attacks => &[Checkpoint::Mlp3, Checkpoint::Lenet],
            Experiment::Cifar => &[Checkpoint::TinyResnet18],
            Experiment::MlpNrpmScratch => &[],
            _ => &[Checkpoint::Mlp3],
        }
    }

    /// Whether it trains (needs the training images). `smoothing` trains Paradigms 2 and 3
    /// too unless their checkpoints are reused, but is not in the `training` group.
    fn trains(self) -> bool {
        matches!(
            self,
            Experiment::MlpP2
                | Experiment::MlpP3
                | Experiment::MlpNrpmTuned
                | Experiment::MlpNrpmScratch
                | Experiment::MlpLpmAt
        )
    }

    /// Parses a comma-separated list of names and groups, in [`Experiment::ALL`] order.
    ///
    /// # Errors
    /// [`Error::UnknownName`] for a name that is neither an experiment nor a group.
    ///
    /// # Example
    /// ```
    /// use nrpm::reproduce::Experiment;
    /// let e = Experiment::parse_list("cifar,mlp-p1")?;
    /// assert_eq!(e, vec![Experiment::MlpP1, Experiment::Cifar]);
    /// assert_eq!(Experiment::parse_list("mnist")?.len(), 11);
    /// assert!(Experiment::parse_list("table9").is_err());
    /// # Ok::<(), nrpm::Error>(())
    /// ```
    pub fn parse_list(s: &str) -> Result<Vec<Experiment>> {
        let mut chosen = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => chosen.extend(Experiment::ALL),
                "mnist" => chosen.extend(Experiment::ALL.iter().filter(|e| **e != Self::Cifar)),
                "training" => chosen.extend(Experiment::ALL.iter().filter(|e| e.trains())),
                _ => chosen.push(name.parse()?),
            }
        }
        if chosen.is_empty() {
            return Err(Error::config("experiments", s, "names no experiment"));
        }
        Ok(Experiment::ALL
            .into_iter()
            .filter(|e| chosen.contains(e))
            .collect())
    }
}

impl FromStr for Experiment {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Experiment::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| Error::UnknownName {
                what: "experiment",
                name: s.to_string(),
                expected: Experiment::NAMES.to_string(),
            })
    }
}

/// Everything a reproduction run needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The experiments, in order.
    pub experiments: Vec<Experiment>,
    /// Folder of the authors' checkpoints (converted to safetensors).
    pub models: PathBuf,
    /// MNIST: `mnist-subset` or a folder of IDX files (the full 60 000 + 10 000).
    pub mnist: Option<String>,
    /// A folder of CIFAR-10 binary batches.
    pub cifar: Option<PathBuf>,
    /// Evaluate on the first n test images.
    pub n: usize,
    /// Seed of attacks' random starts and of training.
    pub seed: u64,
    /// Images per evaluation batch (figures do not depend on it).
    pub batch_size: usize,
    /// PGD steps in every PGD evaluation.
    pub pgd_steps: usize,
    /// AutoAttack rows (and their gradient-masking checks) on the first this many of the `n`
    /// test images; 0 leaves them out.
    pub autoattack_n: usize,
    /// Training epochs (the authors: 10).
    pub epochs: usize,
    /// Train on the first N training images only (`None`: all).
    pub train_n: Option<usize>,
    /// Where the NRPM operators run.
    pub device: Device,
    /// Output folder; checkpoints go to `out/checkpoints/<experiment>/`.
    pub out: PathBuf,
    /// Continue a training run from its checkpoint in `out/checkpoints/` when there is one.
    pub reuse_checkpoints: bool,
    /// The exact command line, for the report.
    pub command: String,
}

/// How an experiment ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// It ran to the end.
    Ran,
    /// It did not run, for this reason (missing data or checkpoint).
    NotRun {
        /// Why.
        reason: String,
    },
    /// It stopped with this error.
    Failed {
        /// The error message.
        error: String,
    },
}

/// What an experiment produced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Body {
    /// Its settings (operator, attacks, training).
    pub settings: Value,
    /// Result tables.
    pub tables: Vec<ResultTable>,
    /// Training reports (settings, per-epoch history, λ, wall time), one per trained model.
    pub training: Vec<Value>,
    /// Remarks for the report.
    pub notes: Vec<String>,
}

/// One experiment's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentReport {
    /// CLI name.
    pub name: String,
    /// What it reproduces.
    pub title: String,
    /// How it ended.
    #[serde(flatten)]
    pub status: Status,
    /// Wall time (s).
    pub seconds: f64,
    /// 1-, 5-, 15-minute load averages when it started and ended.
    pub load: [Option<[f64; 3]>; 2],
    /// What it produced.
    #[serde(flatten)]
    pub body: Body,
}

/// A difference from the paper larger than [`table::NOTABLE_DIFFERENCE`] points.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// Experiment name.
    pub experiment: String,
    /// Our row.
    pub row: String,
    /// The paper row.
    pub paper_row: String,
    /// Budget.
    pub budget: String,
    /// Our accuracy (%).
    pub ours: f64,
    /// The paper's (%).
    pub paper: f64,
    /// `ours − paper` (points).
    pub difference: f64,
}

/// A result of the paper this command does not run, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotRun {
    /// Which result.
    pub what: String,
    /// Why not.
    pub why: String,
}

/// The whole reproduction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The exact command.
    pub command: String,
    /// nrpm's version.
    pub nrpm_version: String,
    /// CPU, cores, OS.
    pub machine: String,
    /// Rayon worker threads.
    pub threads: usize,
    /// When it started (UTC).
    pub started: String,
    /// Wall time of the whole run (s).
    pub seconds: f64,
    /// The options, as JSON.
    pub options: Value,
    /// Where the paper's numbers come from.
    pub paper_source: String,
    /// One record per experiment.
    pub experiments: Vec<ExperimentReport>,
    /// Every cell more than 2 points from the paper.
    pub differences: Vec<Difference>,
    /// Results of the paper not run here, and why.
    pub not_run: Vec<NotRun>,
    /// Results of the paper that cannot be compared: the digest lacks their numbers.
    pub not_compared: Vec<Missing>,
}

/// Runs the chosen experiments; an experiment that cannot run (missing data or checkpoint)
/// or fails is recorded as such and the others go on.
///
/// # Errors
/// [`Error::Io`] if the models folder does not exist; [`Error::Config`] for n = 0.
pub fn run(options: &Options, progress: &mut dyn Progress) -> Result<Report> {
    let started = nrpm::report::utc_now();
    let clock = Instant::now();
    let experiments = run_experiments(options, |_| true, progress, |_, _| Ok(()))?;
    let mut report = assemble(options_json(options), &options.command, experiments);
    report.started = started;
    report.seconds = clock.elapsed().as_secs_f64();
    Ok(report)
}

/// Runs the experiments at the positions `owned` accepts (a shard's share), handing each
/// finished one to `done(position, report)` as it ends (to record it), and returns them.
///
/// # Errors
/// As [`run`]; the errors of `done`.
pub fn run_experiments(
    options: &Options,
    owned: impl Fn(usize) -> bool,
    progress: &mut dyn Progress,
    mut done: impl FnMut(usize, &ExperimentReport) -> Result<()>,
) -> Result<Vec<ExperimentReport>> {
    check(options)?;
    let paper = PaperData::builtin();
    let mut ctx = setup::Context::new(options, &paper);
    let mut experiments = Vec::new();
    for (position, &exp) in options.experiments.iter().enumerate() {
        if !owned(position) {
            continue;
        }
        let record = run_one(exp, &mut ctx, progress);
        progress.finish(&format!(
            "{}: {} ({:.1} s)",
            record.name,
            status_word(&record.status),
            record.seconds
        ));
        done(position, &record)?;
        experiments.push(record);
    }
    Ok(experiments)
}

/// The report of a run with these options (as JSON) and experiments (in the order of the
/// options), computed from them alone, so that the report of a sharded run merged from its
/// records is the unsharded run's. `started` and `seconds` are left for the caller to fill.
pub fn assemble(options: Value, command: &str, experiments: Vec<ExperimentReport>) -> Report {
    let paper = PaperData::builtin();
    let cifar_given = !options["cifar"].is_null();
    Report {
        command: command.to_string(),
        nrpm_version: env!("CARGO_PKG_VERSION").into(),
        machine: nrpm::report::machine(),
        threads: rayon::current_num_threads(),
        started: String::new(),
        seconds: experiments.iter().map(|e| e.seconds).sum(),
        options,
        paper_source: paper::TABLES_PATH.into(),
        differences: differences(&experiments),
        experiments,
        not_run: not_run(cifar_given),
        not_compared: paper.not_retrieved.clone(),
    }
}

/// `ran`, `not run` or `failed`.
pub fn status_word(status: &Status) -> &'static str {
    match status {
        Status::Ran => "ran",
        Status::NotRun { .. } => "not run",
        Status::Failed { .. } => "failed",
    }
}

/// Rejects options no experiment can use.
fn check(options: &Options) -> Result<()> {
    if !options.models.is_dir() {
        let e = std::io::Error::new(std::io::ErrorKind::NotFound, "no such models folder");
        return Err(Error::io(&options.models, e));
    }
    if options.n == 0 {
        return Err(Error::config("n", 0, "must be at least 1"));
    }
    if options.epochs == 0 || options.train_n == Some(0) {
        return Err(Error::config("epochs / train-n", 0, "must be at least 1"));
    }
    Ok(())
}

/// Runs one experiment, timing it and catching what stops it.
fn run_one(
    exp: Experiment,
    ctx: &mut setup::Context,
    progress: &mut dyn Progress,
) -> ExperimentReport {
    let clock = Instant::now();
    let load_before = nrpm::report::load_average();
    let (status, body) = match ctx.missing(exp) {
        Some(reason) => (Status::NotRun { reason }, Body::default()),
        None => match dispatch(exp, ctx, progress) {
            Ok(body) => (Status::Ran, body),
            Err(e) => (
                Status::Failed {
                    error: e.to_string(),
                },
                Body::default(),
            ),
        },
    };
    ExperimentReport {
        name: exp.name().into(),
        title: exp.title().into(),
        status,
        seconds: clock.elapsed().as_secs_f64(),
        load: [load_before, nrpm::report::load_average()],
        body,
    }
}

fn dispatch(
    exp: Experiment,
    ctx: &mut setup::Context,
    progress: &mut dyn Progress,
) -> Result<Body> {
    match exp {
        Experiment::MlpP1 => mnist::mlp_p1(ctx, progress),
        Experiment::Lenet => mnist::lenet(ctx, progress),
        Experiment::Attacks => mnist::attacks(ctx, progress),
        Experiment::AblationK => mnist::ablation_k(ctx, progress),
        Experiment::AblationEps => mnist::ablation_eps(ctx, progress),
        Experiment::Smoothing => smoothing::run(ctx, progress),
        Experiment::Cifar => cifar::run(ctx, progress),
        trained => training::run(trained, ctx, progress),
    }
}

/// Every cell of every table more than 2 points from the paper.
fn differences(experiments: &[ExperimentReport]) -> Vec<Difference> {
    let mut out = Vec::new();
    for e in experiments {
        for t in &e.body.tables {
            for r in &t.rows {
                for c in r.notable() {
                    let j = t.budgets.iter().position(|b| *b == c.budget).unwrap_or(0);
                    out.push(Difference {
                        experiment: e.name.clone(),
                        row: r.label.clone(),
                        paper_row: r.paper_row.clone().unwrap_or_default(),
                        budget: t.budget_names[j].clone(),
                        ours: c.accuracy.percent,
                        paper: c.paper.unwrap_or(f64::NAN),
                        difference: c.difference.unwrap_or(f64::NAN),
                    });
                }
            }
        }
    }
    out
}

/// The paper's results this command does not run, and why.
fn not_run(cifar_given: bool) -> Vec<NotRun> {
    let item = |what: &str, why: &str| NotRun {
        what: what.into(),
        why: why.into(),
    };
    let mut v = Vec::new();
    if !cifar_given {
        v.push(item(
            "§6.2 narrow ResNet18 Paradigm 1 rows (λ = 1.0 … 0.4, PGD 8/16/32/255) and §6.7 \
             gradient-masking test",
            "no CIFAR-10 folder was given: the data cannot be downloaded on this machine. \
             `nrpm reproduce --experiments cifar --data DIR` runs them on a folder of CIFAR-10 \
             binary batches (tested on a small generated file).",
        ));
    }
    v.push(item(
        "§6.2 narrow ResNet18 Paradigms 2 and 3",
        "they fine-tune on the 50 000 CIFAR-10 training images with PGD-7 adversarial training \
         (the authors: 14.6 min/epoch for ResNet18 on an RTX A6000); no CIFAR-10 data here and \
         no GPU lent to this task.",
    ));
    v.push(item(
        "§6.3–6.4 (Table 5) full-width ResNet18 against adversarial-training baselines; \
         DeepFool-k",
        "neither the full-width ResNet18 nor the baselines' checkpoints were released; C&W, \
         AutoAttack, DeepFool and SPSA are not implemented in nrpm.",
    ));
    v.push(item(
        "§6.5 corruptions; §6.6 CIFAR-100 / Tiny-ImageNet / WRN-28-10",
        "no checkpoints or data for these models and datasets.",
    ));
    v.push(item(
        "§6.8 efficiency",
        "timings on the authors' GPU; docs/PERFORMANCE.md has nrpm's own operator timings.",
    ));
    v
}

/// The options as JSON (every setting that fixes the figures).
pub fn options_json(o: &Options) -> Value {
    serde_json::json!({
        "experiments": o.experiments.iter().map(|e| e.name()).collect::<Vec<_>>(),
        "models": o.models,
        "mnist": o.mnist,
        "cifar": o.cifar,
        "n": o.n,
        "seed": o.seed,
        "batch_size": o.batch_size,
        "pgd_steps": o.pgd_steps,
        "autoattack_n": o.autoattack_n,
        "epochs": o.epochs,
        "train_n": o.train_n,
        "device": o.device.to_string(),
        "out": o.out,
        "reuse_checkpoints": o.reuse_checkpoints,
    })
}
