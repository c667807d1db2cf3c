//! `nrpm eval`: robust accuracy of a (reprogrammed) model under one attack at a list of
//! budgets, counted as the authors count it (correct before and after the attack, over all n
//! images). Prints an accuracy-vs-budget table; `--json` writes every setting and figure, with
//! timings and the machine.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::{json, Value};

use crate::attacks::{self, Attack, EvalOptions, EvalResult};
use crate::cli::common::{parse_list, DataArgs, ModelArgs};
use crate::cli::write_json;
use crate::data::{Dataset, Split};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::progress::Bar;

/// Robust accuracy under an attack at several budgets (the first n test images).
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model, its checkpoint and its reprogramming.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The images (the test split is evaluated).
    #[command(flatten)]
    pub data: DataArgs,
    /// Evaluate the first N test images [default: all].
    #[arg(long)]
    pub n: Option<usize>,
    /// Attack: fgsm | pgd-linf | pgd-l2 | l2 | l1 | l0 (the last three: the authors' one-step
    /// attacks).
    #[arg(long, default_value = "fgsm")]
    pub attack: String,
    /// Budgets, comma-separated: ε (L∞ per pixel; L2, L1 per image) or, for l0, pixel counts.
    #[arg(long, default_value = "0,0.05,0.1,0.15,0.2,0.25,0.3")]
    pub eps: String,
    /// PGD steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// PGD step size α [default: ε/4 at each budget].
    #[arg(long)]
    pub alpha: Option<f64>,
    /// PGD starts at a random point of the ε-ball (the default).
    #[arg(long, overrides_with = "no_random_start")]
    pub random_start: bool,
    /// PGD starts at the clean image.
    #[arg(long, overrides_with = "random_start")]
    pub no_random_start: bool,
    /// Targeted attack, towards a wrong class drawn per image from --seed.
    #[arg(long)]
    pub targeted: bool,
    /// Images per batch (the figures do not depend on it).
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Seed of random starts and targets (same seed, same figures).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where the attack takes its gradients: `model` (white box) or `lpm` (the same weights
    /// with every layer LPM — a BPDA-style check that NRPM's robustness is not gradient
    /// masking; the reprogrammed model is still the one classified).
    #[arg(long, default_value = "model")]
    pub gradients_from: String,
    /// Write settings, figures, timings and the machine to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs `nrpm eval`.
///
/// # Errors
/// Bad flags (unknown attack or model, bad budgets, n out of range), unreadable or malformed
/// data and checkpoints, images the model cannot take, attack errors.
pub fn run(args: EvalArgs) -> Result<()> {
    let start = Instant::now();
    let attacks = args.attacks()?;
    let data = args.test_images()?;
    let model = args.model.build(data.image_shape())?;
    let options = EvalOptions {
        batch_size: args.batch_size,
        seed: args.seed,
        targeted: args.targeted,
    };
    let source = args.gradient_source(&model)?;
    let load_seconds = start.elapsed().as_secs_f64();
    let results = attacks::evaluate_transfer(
        &model,
        source.as_ref().unwrap_or(&model),
        &data,
        &attacks,
        &options,
        &mut Bar::default(),
    )?;
    print!("{}", table(&args, &data, &results));
    if let Some(path) = &args.json {
        let total_seconds = start.elapsed().as_secs_f64();
        let report = report_json(
            &args,
            model,
            &data,
            &options,
            &results,
            [load_seconds, total_seconds],
        );
        write_json(path, &report)?;
    }
    Ok(())
}

impl EvalArgs {
    /// The model the attack differentiates, when it is not the evaluated one.
    fn gradient_source(&self, model: &Model<f32>) -> Result<Option<Model<f32>>> {
        match self.gradients_from.as_str() {
            "model" => Ok(None),
            "lpm" => Ok(Some(model.lpm_twin())),
            other => Err(Error::UnknownName {
                what: "gradient source",
                name: other.into(),
                expected: "model, lpm".into(),
            }),
        }
    }

    /// The attack at each budget of `--eps`.
    fn attacks(&self) -> Result<Vec<Attack>> {
        let random_start = !self.no_random_start;
        parse_list::<f64>("eps", &self.eps)?
            .into_iter()
            .map(|eps| Attack::from_name(&self.attack, eps, self.steps, self.alpha, random_start))
            .collect()
    }

    /// The first `--n` test images.
    fn test_images(&self) -> Result<Dataset> {
        let data = self.data.load(Split::Test)?;
        match self.n {
            None => Ok(data),
            Some(0) => Err(Error::config("n", 0, "must be at least 1")),
            Some(n) if n > data.len() => Err(Error::config(
                "n",
                format!("{n} ({} holds {})", data.name(), data.len()),
                "exceeds the number of test images",
            )),
            Some(n) => Ok(data.first(n)),
        }
    }
}

/// The accuracy-vs-budget table, with a header line naming the run.
fn table(args: &EvalArgs, data: &Dataset, results: &[EvalResult]) -> String {
    let first = &results[0];
    let mut out = format!(
        "{} ({}), norm {}, {} attack{}, {} images of {}\nclean accuracy: {:.1} % ({}/{})\n",
        args.model.model,
        args.model
            .weights
            .as_ref()
            .map_or("initialised weights".to_string(), |p| p
                .display()
                .to_string()),
        args.model.norm,
        first.attack.name(),
        if args.targeted { " (targeted)" } else { "" },
        first.n,
        data.name(),
        first.clean_accuracy,
        first.clean_correct,
        first.n,
    );
    out += &format!(
        "{:>10} {:>10} {:>8} {:>9}\n",
        budget_header(&first.attack),
        "robust %",
        "correct",
        "seconds"
    );
    for r in results {
        out += &format!(
            "{:>10} {:>10.1} {:>8} {:>9.2}\n",
            format!("{}", r.attack.budget()),
            r.robust_accuracy,
            r.robust_correct,
            r.seconds
        );
    }
    out
}

/// The budget column's title.
fn budget_header(attack: &Attack) -> &'static str {
    match attack {
        Attack::L0 { .. } => "pixels",
        _ => "eps",
    }
}

/// Everything about a run: settings, model reprogramming, figures, timings, machine.
fn report_json(
    args: &EvalArgs,
    mut model: Model<f32>,
    data: &Dataset,
    options: &EvalOptions,
    results: &[EvalResult],
    [load_seconds, total_seconds]: [f64; 2],
) -> Value {
    let m = &args.model;
    let pgd = matches!(
        results[0].attack,
        Attack::PgdLinf { .. } | Attack::PgdL2 { .. }
    );
    let lambdas: Vec<Value> = model
        .lambdas()
        .into_iter()
        .map(|(key, lambda)| json!({ "layer": key, "lambda": lambda }))
        .collect();
    json!({
        "command": "eval",
        "nrpm_version": env!("CARGO_PKG_VERSION"),
        "model": {
            "name": m.model,
            "spec": model.spec,
            "weights": m.weights,
            "init_seed": m.weights.is_none().then_some(m.init_seed),
            "norm": m.norm,
            "lambda": m.lambda,
            "k": m.k,
            "eps_irls": m.eps_irls,
            "gamma": m.gamma,
            "delta": m.delta,
            "group": m.group,
            "layers": m.layers,
            "lambda_param": m.lambda_param,
            "reprogrammed": lambdas,
        },
        "data": { "source": args.data.data, "name": data.name(), "split": "test", "n": data.len() },
        "attack": {
            "name": results[0].attack.name(),
            "norm": results[0].attack.norm(),
            "budgets": results.iter().map(|r| r.attack.budget()).collect::<Vec<_>>(),
            "steps": pgd.then_some(args.steps),
            "alpha": pgd.then(|| args.alpha.map_or(json!("eps/4"), |a| json!(a))),
            "random_start": pgd.then_some(!args.no_random_start),
            "targeted": args.targeted,
            "gradients_from": args.gradients_from,
        },
        "options": options,
        "clean": {
            "correct": results[0].clean_correct,
            "accuracy": results[0].clean_accuracy,
            "seconds": results[0].clean_seconds,
        },
        "results": results,
        "timings": { "load_seconds": load_seconds, "total_seconds": total_seconds },
        "machine": machine_info(),
    })
}

/// The machine a run used: logical CPUs available to the process, the CPU model (Linux
/// `/proc/cpuinfo`), OS and architecture, rayon's thread count.
pub fn machine_info() -> Value {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    json!({
        "available_parallelism": cpus,
        "rayon_threads": rayon::current_num_threads(),
        "cpu_model": cpu_model,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
    })
}
