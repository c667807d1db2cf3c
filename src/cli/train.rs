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

use crate::attacks::Attack;
use crate::cli::common::{parse_list, DataArgs, ModelArgs};
use crate::cli::write_json;
use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::progress::Bar;
use crate::train::{
    self, Adversary, Checkpoints, Paradigm, Recipe, SgdConfig, Snapshot, TrainConfig, TrainReport,
};

/// Reprogram a trained model and learn λ (and weights), or train a model from scratch.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The model, its checkpoint and its reprogramming.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The images (training split for steps, test split for evaluation).
    #[command(flatten)]
    pub data: DataArgs,
    /// 1: fixed λ, evaluate only; 2: learn λ only; 3: learn weights and λ; scratch: train every
    /// parameter from --init-seed. Paradigms 2, 3 and scratch learn λ = sigmoid(θ) (the
    /// authors' learnable path), whatever --lambda-param says.
    #[arg(long)]
    pub paradigm: String,
    /// Epochs in all (a resumed run continues up to this many).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Base learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// SGD momentum.
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay (L2), on every trained tensor.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Images per step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Epochs at which the learning rate is divided by 10: 50,75 — or none.
    #[arg(long)]
    pub lr_steps: Option<String>,
    /// Adversarial training: fgsm | pgd-linf | none (paradigm 1: the evaluation attack).
    #[arg(long)]
    pub adv: Option<String>,
    /// Attack budget ε (L∞).
    #[arg(long)]
    pub adv_eps: Option<f64>,
    /// PGD steps.
    #[arg(long)]
    pub adv_steps: Option<usize>,
    /// PGD step size α [default: ε/4].
    #[arg(long)]
    pub adv_alpha: Option<f64>,
    /// Loss of adversarial training: clean+adv (authors' MNIST) | adv (authors' CIFAR-10).
    #[arg(long)]
    pub adv_loss: Option<String>,
    /// Seed of shuffling, dropout and attack random starts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train on the first N training images only.
    #[arg(long)]
    pub train_n: Option<usize>,
    /// Evaluate on the first N test images (the paper: 1000).
    #[arg(long, default_value_t = 1000)]
    pub eval_n: usize,
    /// Write a checkpoint here after every epoch (model.safetensors, optimizer.safetensors,
    /// state.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from this checkpoint folder (same flags; --epochs may grow); checkpoints go
    /// on to --out, or to this folder when --out is not given.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Write settings, per-epoch history and before/after results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs `nrpm train`.
///
/// # Errors
/// Bad flags, files or checkpoints; training errors (see [`train::train`]).
pub fn run(args: TrainArgs) -> Result<()> {
    let paradigm: Paradigm = args.paradigm.parse()?;
    check_weights(&args, paradigm)?;
    let (data, eval) = load_data(&args)?;
    let mut model_args = args.model.clone();
    if paradigm.is_trained() {
        model_args.lambda_param = "sigmoid".into();
    }
    let mut model = model_args.build(data.image_shape())?;
    let cfg = config(&args, paradigm, Recipe::for_images(data.image_shape()))?;
    let dirs = Checkpoints {
        out: args.out.clone().or_else(|| args.resume.clone()),
        resume: args.resume.clone(),
    };
    let report = train::train(&mut model, &data, &eval, &cfg, &dirs, &mut Bar::default())?;
    println!("{}", summary(&report, &cfg));
    if let Some(path) = &args.json {
        write_json(path, &report_json(&args, &cfg, &data, &eval, &report))?;
    }
    Ok(())
}

/// Paradigms 1–3 reprogram a trained model; scratch starts from the initialisation.
fn check_weights(args: &TrainArgs, paradigm: Paradigm) -> Result<()> {
    match (paradigm, &args.model.weights) {
        (Paradigm::Scratch, Some(w)) => Err(Error::config(
            "weights",
            w.display(),
            "--paradigm scratch trains from --init-seed; use --paradigm 3 to fine-tune a checkpoint",
        )),
        (p, None) if p != Paradigm::Scratch && args.resume.is_none() => Err(Error::config(
            "paradigm",
            p.name(),
            "reprograms a trained model: give --weights (or use --paradigm scratch)",
        )),
        _ => Ok(()),
    }
}

/// The training split (first --train-n images) and the evaluation images (first --eval-n).
fn load_data(args: &TrainArgs) -> Result<(Dataset, Dataset)> {
    let mut data = args.data.load(Split::Train)?;
    if let Some(n) = args.train_n {
        data = data.first(n);
    }
    if data.is_empty() || args.eval_n == 0 {
        return Err(Error::config(
            "data",
            format!("{} training, {} evaluation images", data.len(), args.eval_n),
            "needs at least one image of each",
        ));
    }
    Ok((data, args.data.load(Split::Test)?.first(args.eval_n)))
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
    };
    cfg.validate()?;
    Ok(cfg)
}

/// `--adv` and its flags; left out, the recipe's attack (clean training for scratch), with
/// ε from the recipe, α = ε/4 and 7 steps with a random start (the recipe's PGD-7 at 8/255
/// has α = 2/255).
fn adversary(args: &TrainArgs, paradigm: Paradigm, recipe: &Recipe) -> Result<Option<Adversary>> {
    let (recipe_name, recipe_eps) = match recipe.attack {
        Attack::PgdLinf { eps, .. } => ("pgd-linf", eps),
        Attack::Fgsm { eps } => ("fgsm", eps),
        _ => ("fgsm", 0.3),
    };
    let default = if paradigm == Paradigm::Scratch {
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
    let eps = args.adv_eps.unwrap_or(recipe_eps);
    let steps = args.adv_steps.unwrap_or(7);
    let attack = Attack::from_name(name, eps, steps, args.adv_alpha, true)?;
    let loss = match &args.adv_loss {
        Some(s) => s.parse()?,
        None => recipe.adv_loss,
    };
    Ok(Some(Adversary { attack, loss }))
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
        line += &format!("; robust {} → {} ({:?})", pct(rb), pct(ra), adv.attack);
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
    args: &TrainArgs,
    cfg: &TrainConfig,
    data: &Dataset,
    eval: &Dataset,
    report: &TrainReport,
) -> Value {
    let m = &args.model;
    json!({
        "command": "train",
        "settings": cfg.to_json(true),
        "model": {
            "model": m.model, "weights": m.weights, "norm": m.norm, "k": m.k,
            "eps_irls": m.eps_irls, "lambda": m.lambda, "layers": m.layers,
        },
        "data": { "train": data.name(), "train_n": data.len(), "eval": eval.name(), "eval_n": eval.len() },
        "resumed_from": report.resumed_from,
        "epochs": report.epochs,
        "seconds": report.seconds,
        "before": snapshot_json(&report.before),
        "after": snapshot_json(&report.after),
        "history": report.history,
    })
}
