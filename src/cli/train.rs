//! `nrpm train`: the reprogramming paradigms (1: fixed λ, 2: learn λ, 3: fine-tune all) and
//! plain training from scratch, with clean or adversarial (FGSM / PGD) training, per-epoch
//! checkpoints and resuming.
//!
//! Flags left out take the authors' defaults for the data ([`Recipe`]): one-channel images
//! (MNIST) follow `mnist_mlp.py` (10 epochs, batch 64, lr 0.001, momentum 0.9, FGSM ε = 0.3,
//! clean + adversarial loss); three-channel images (CIFAR-10) follow `train_cifar10_resnet.py`
//! (100 epochs, batch 128, lr 0.1, weight decay 2e-4, LR ÷ 10 at 50 and 75, PGD-7 ε = 8/255,
//! adversarial loss). `--paradigm scratch` defaults to clean training.

use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};

use crate::cli::bar::Bar;
use crate::cli::common::{check_output_file, first_n, parse_list, prepare_output_dir, DataArgs};
use crate::cli::model_args::{Built, ModelArgs};
use crate::cli::write_json;
use nrpm::attacks::{Attack, PgdSettings, StepSize, AUTHORS_ALPHA_RATIO};
use nrpm::data::{Dataset, Split};
use nrpm::error::{Error, Result};
use nrpm::train::{
    self, checkpoint, Adversary, Checkpoints, NoObserver, Paradigm, Recipe, SgdConfig, Snapshot,
    StepObserver, StepTrace, TrainConfig, TrainReport,
};

/// Reprogram a trained model and learn λ (and weights), or train a model from scratch.
///
/// Left-out training flags take the authors' defaults for the data: one-channel images (MNIST)
/// follow mnist_mlp.py, three-channel images (CIFAR-10) train_cifar10_resnet.py.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The model, its checkpoint and its reprogramming.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The images (training split for steps, test split for evaluation).
    #[command(flatten)]
    pub data: DataArgs,
    /// 1: fixed λ, evaluate only; 2: learn λ only; 3: learn weights and λ; scratch: train every
    /// parameter from --init-seed. Learned λ is λ = sigmoid(θ) (the authors' learnable path)
    /// unless --lambda-param raw is given.
    #[arg(long)]
    pub paradigm: String,
    /// Epochs in all; a resumed run continues up to this many [default: 10 for MNIST, 100 for
    /// CIFAR-10].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Base learning rate [default: 0.001 for MNIST, 0.1 for CIFAR-10].
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum [default: 0.9].
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay (L2), on every trained tensor [default: 0 for MNIST, 2e-4 for CIFAR-10].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Images per step [default: 64 for MNIST, 128 for CIFAR-10].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Epochs at which the learning rate is divided by 10: 50,75 — or none [default: none for
    /// MNIST, 50,75 for CIFAR-10].
    #[arg(long)]
    pub lr_steps: Option<String>,
    /// Adversarial training: fgsm | pgd-linf | none (paradigm 1: the evaluation attack)
    /// [default: fgsm for MNIST, pgd-linf for CIFAR-10; none for --paradigm scratch].
    #[arg(long)]
    pub adv: Option<String>,
    /// Attack budget ε (L∞) [default: 0.3 for MNIST, 8/255 for CIFAR-10].
    #[arg(long)]
    pub adv_eps: Option<f64>,
    /// PGD steps [default: 7; pgd-linf only].
    #[arg(long)]
    pub adv_steps: Option<usize>,
    /// PGD step size: a number, eps/4, 0.25*eps or madry [default: eps/4 for CIFAR-10 (the
    /// authors' 2/255 at 8/255), madry = 2.5·ε/steps otherwise; pgd-linf only].
    #[arg(long)]
    pub adv_alpha: Option<String>,
    /// Loss of adversarial training: clean+adv | adv [default: clean+adv for MNIST (the
    /// authors'), adv for CIFAR-10].
    #[arg(long)]
    pub adv_loss: Option<String>,
    /// Run BatchNorm in eval mode while training: running statistics used and never updated.
    /// Without it BatchNorm trains as PyTorch's net.train(), as the authors' scripts do in
    /// every paradigm, so even paradigm 2 (λ only) moves the running statistics.
    #[arg(long)]
    pub frozen_batchnorm: bool,
    /// Gaussian data augmentation: train on x + N(0, σ²) with this σ (not clipped; Cohen et
    /// al.'s training for randomized smoothing, see `nrpm certify --method smoothing`), drawn
    /// per (epoch, batch) from --seed. Training is then clean unless --adv is given, which is
    /// refused (the attacks would clip the noise away) [default: 0 = none].
    #[arg(long)]
    pub noise_sd: Option<f64>,
    /// Seed of shuffling, dropout and attack random starts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train on the first N training images only (at most the number there are) [default:
    /// all].
    #[arg(long)]
    pub train_n: Option<usize>,
    /// Evaluate on the first N test images (the paper: 1000).
    #[arg(long, default_value_t = 1000)]
    pub eval_n: usize,
    /// Write a checkpoint here after every epoch (model.safetensors, optimizer.safetensors,
    /// state.json); the folder is created if missing. Without it (and without --resume) the
    /// trained model is not saved.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from this checkpoint folder: the model is rebuilt from its model.safetensors
    /// (no --weights), and the settings and data must be the checkpoint's (--epochs may
    /// grow); checkpoints go on to --out, or to this folder when --out is not given.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Write settings, per-epoch history and before/after results as JSON to this file (its
    /// folder must exist; checked before training; also written when training diverges).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write one JSON line per SGD step to this file: the loss, and per parameter tensor
    /// max |θ| before the update, ‖g‖₂ and max |g| of its gradient (the step that diverges
    /// gets its error instead); for diagnosing divergence.
    #[arg(long)]
    pub trace: Option<PathBuf>,
}

/// Runs `nrpm train`.
///
/// # Errors
/// Bad flags, files or checkpoints; training errors (see [`train::train`]).
pub fn run(args: TrainArgs) -> Result<()> {
    let paradigm: Paradigm = args.paradigm.parse()?;
    check_weights(&args, paradigm)?;
    check_outputs(&args)?;
    let (data, eval) = load_data(&args)?;
    let mut model_args = args.model.clone();
    if let Some(dir) = &args.resume {
        model_args.weights = Some(dir.join(checkpoint::MODEL_FILE));
    }
    let built = model_args.build(data.image_shape(), paradigm.is_trained())?;
    for note in &built.notices {
        eprintln!("note: {note}");
    }
    let mut model = built.model;
    let cfg = config(&args, paradigm, Recipe::for_images(data.image_shape()))?;
    let dirs = Checkpoints {
        out: args.out.clone().or_else(|| args.resume.clone()),
        resume: args.resume.clone(),
    };
    let model_json = model_args.report_json(&Built {
        model: model.clone(),
        notices: Vec::new(),
        from_record: built.from_record,
    });
    let mut trace = args.trace.as_deref().map(StepTrace::create).transpose()?;
    let observer: &mut dyn StepObserver<f32> = match &mut trace {
        Some(t) => t,
        None => &mut NoObserver,
    };
    let bar = &mut Bar::default();
    let result = train::train_observed(&mut model, &data, &eval, &cfg, &dirs, bar, observer);
    let report = match result {
        Ok(report) => report,
        Err(Error::Diverged(d)) => {
            if let Some(path) = &args.json {
                let doc = json!({
                    "command": "train", "settings": cfg.to_json(true), "model": model_json,
                    "diverged": d.to_string(), "history": d.history,
                });
                write_json(path, &doc)?;
            }
            return Err(Error::Diverged(d));
        }
        Err(e) => return Err(e),
    };
    println!("{}", summary(&report, &cfg));
    if let Some(path) = &args.json {
        write_json(path, &report_json(&cfg, model_json, &data, &eval, &report))?;
    }
    if dirs.out.is_none() && paradigm.is_trained() {
        eprintln!("note: no --out was given, so the trained model was not saved");
    }
    Ok(())
}

/// Paradigms 1–3 reprogram a trained model; scratch starts from the initialisation; a resumed
/// run takes its model from the checkpoint.
fn check_weights(args: &TrainArgs, paradigm: Paradigm) -> Result<()> {
    match (paradigm, &args.model.weights, &args.resume) {
        (_, Some(_), Some(dir)) => Err(Error::Flag {
            flag: "--weights".into(),
            problem: format!(
                "has no effect with --resume: the model comes from {}",
                dir.join(checkpoint::MODEL_FILE).display()
            ),
        }),
        (Paradigm::Scratch, Some(w), None) => Err(Error::config(
            "weights",
            w.display(),
            "--paradigm scratch trains from --init-seed; use --paradigm 3 to fine-tune a checkpoint",
        )),
        (p, None, None) if p != Paradigm::Scratch => Err(Error::config(
            "paradigm",
            p.name(),
            "reprograms a trained model: give --weights (or use --paradigm scratch)",
        )),
        _ => Ok(()),
    }
}

/// `--json` and `--out` can be written (checked before any work).
fn check_outputs(args: &TrainArgs) -> Result<()> {
    if let Some(path) = &args.json {
        check_output_file("--json", path)?;
    }
    if let Some(path) = &args.trace {
        check_output_file("--trace", path)?;
    }
    if let Some(dir) = &args.out {
        prepare_output_dir("--out", dir)?;
    }
    Ok(())
}

/// The training split (first --train-n images) and the evaluation images (first --eval-n).
fn load_data(args: &TrainArgs) -> Result<(Dataset, Dataset)> {
    let data = first_n(args.data.load(Split::Train)?, args.train_n, "train-n")?;
    let eval = args.data.load(Split::Test)?.take(args.eval_n, "eval-n")?;
    Ok((data, eval))
}

/// The run's settings: flags, else the recipe.
fn config(args: &TrainArgs, paradigm: Paradigm, recipe: Recipe) -> Result<TrainConfig> {
    let lr_steps = match args.lr_steps.as_deref() {
        None => recipe.lr_steps.clone(),
        Some("none") => Vec::new(),
        Some(s) => parse_list("lr steps", s)?,
    };
    let cfg = TrainConfig {
        paradigm,
        epochs: args.epochs.unwrap_or(recipe.epochs),
        batch_size: args.batch_size.unwrap_or(recipe.batch_size),
        sgd: SgdConfig {
            lr: args.lr.unwrap_or(recipe.sgd.lr),
            momentum: args.momentum.unwrap_or(recipe.sgd.momentum),
            weight_decay: args.weight_decay.unwrap_or(recipe.sgd.weight_decay),
        },
        lr_steps,
        adversary: adversary(args, paradigm, &recipe)?,
        seed: args.seed,
        frozen_batchnorm: args.frozen_batchnorm,
        noise_sd: noise_sd(args, paradigm)?,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// `--adv` and its flags; left out, the recipe's attack (clean training for scratch), with
/// ε from the recipe and 7 steps with a random start; α = ε/4 when the recipe is the authors'
/// PGD-7 (2/255 at 8/255), 2.5·ε/steps otherwise.
fn adversary(args: &TrainArgs, paradigm: Paradigm, recipe: &Recipe) -> Result<Option<Adversary>> {
    let (recipe_name, recipe_eps) = match recipe.attack {
        Attack::PgdLinf { eps, .. } => ("pgd-linf", eps),
        Attack::Fgsm { eps } => ("fgsm", eps),
        _ => ("fgsm", 0.3),
    };
    let default = if paradigm == Paradigm::Scratch || args.noise_sd.is_some() {
        "none"
    } else {
        recipe_name
    };
    let name = args.adv.as_deref().unwrap_or(default);
    if name == "none" {
        return no_adversary(args);
    }
    if !["fgsm", "pgd-linf"].contains(&name) {
        return Err(Error::UnknownName {
            what: "adversarial training attack",
            name: name.into(),
            expected: "fgsm, pgd-linf, none".into(),
        });
    }
    if name == "fgsm" {
        let pgd_only = [
            ("--adv-steps", args.adv_steps.is_some()),
            ("--adv-alpha", args.adv_alpha.is_some()),
        ];
        if let Some((flag, _)) = pgd_only.iter().find(|(_, set)| *set) {
            return Err(Error::Flag {
                flag: flag.to_string(),
                problem: "has no effect with --adv fgsm (one step of size ε)".into(),
            });
        }
    }
    let eps = args.adv_eps.unwrap_or(recipe_eps);
    let steps = args.adv_steps.unwrap_or(7);
    let step_size = match (&args.adv_alpha, recipe_name) {
        (Some(s), _) => s.parse()?,
        (None, "pgd-linf") => StepSize::Relative(AUTHORS_ALPHA_RATIO),
        (None, _) => StepSize::Madry,
    };
    let settings = PgdSettings {
        steps,
        step_size,
        random_start: true,
    };
    let attack = Attack::from_name(name, eps, settings)?;
    let loss = match &args.adv_loss {
        Some(s) => s.parse()?,
        None => recipe.adv_loss,
    };
    Ok(Some(Adversary { attack, loss }))
}

/// σ of `--noise-sd` (0 without it); refused where nothing is trained.
fn noise_sd(args: &TrainArgs, paradigm: Paradigm) -> Result<f64> {
    match (args.noise_sd, paradigm.is_trained()) {
        (Some(_), false) => Err(Error::Flag {
            flag: "--noise-sd".into(),
            problem: "has no effect with --paradigm 1, which trains nothing".into(),
        }),
        (Some(sd), true) => Ok(sd),
        (None, _) => Ok(0.0),
    }
}

/// Clean training; attack flags are then a mistake.
fn no_adversary(args: &TrainArgs) -> Result<Option<Adversary>> {
    let given = [
        ("adv-eps", args.adv_eps.is_some()),
        ("adv-steps", args.adv_steps.is_some()),
        ("adv-alpha", args.adv_alpha.is_some()),
        ("adv-loss", args.adv_loss.is_some()),
    ];
    match given.iter().find(|(_, set)| *set) {
        Some((flag, _)) => Err(Error::config(
            "adv",
            format!("none with --{flag}"),
            "attack flags need --adv fgsm or pgd-linf",
        )),
        None => Ok(None),
    }
}

/// `clean 88.1% → 85.0%, robust 5.0% → 25.1% (…), λ fc1 0.600 → 0.553 …` on one line.
fn summary(report: &TrainReport, cfg: &TrainConfig) -> String {
    let pct = |v: f64| format!("{v:.2}%");
    let (b, a) = (&report.before, &report.after);
    let mut line = format!(
        "paradigm {}: {} epoch(s), {:.1} s; clean {} → {}",
        report.paradigm.name(),
        report.epochs,
        report.seconds,
        pct(b.clean),
        pct(a.clean)
    );
    if let (Some(rb), Some(ra), Some(adv)) = (b.robust, a.robust, &cfg.adversary) {
        line += &format!("; robust {} → {} ({})", pct(rb), pct(ra), adv.attack);
    }
    for ((key, lb), (_, la)) in b.lambdas.iter().zip(&a.lambdas) {
        line += &format!("; λ {key} {lb:.4} → {la:.4}");
    }
    line
}

fn snapshot_json(s: &Snapshot) -> Value {
    json!({ "clean": s.clean, "robust": s.robust, "lambdas": s.lambdas })
}

fn report_json(
    cfg: &TrainConfig,
    model: Value,
    data: &Dataset,
    eval: &Dataset,
    report: &TrainReport,
) -> Value {
    json!({
        "command": "train",
        "nrpm_version": env!("CARGO_PKG_VERSION"),
        "settings": cfg.to_json(true),
        "model": model,
        "data": { "train": data.record(), "eval": eval.record() },
        "resumed_from": report.resumed_from,
        "epochs": report.epochs,
        "seconds": report.seconds,
        "before": snapshot_json(&report.before),
        "after": snapshot_json(&report.after),
        "history": report.history,
    })
}
