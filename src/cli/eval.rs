//! `nrpm eval`: robust accuracy of a (reprogrammed) model under one attack at a list of
//! budgets, counted as the authors count it (correct before and after the attack, over all n
//! images). Prints an accuracy-vs-budget table; `--json` writes every setting and figure, with
//! timings and the machine.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::{json, Value};

use crate::cli::bar::Bar;
use crate::cli::common::{check_output_file, first_n, parse_list, DataArgs};
use crate::cli::model_args::{describe, Built, ModelArgs};
use crate::cli::sharded::{parse_records, ShardArgs, ShardRun};
use crate::cli::strong::{self, StrongArgs};
use crate::cli::write_json;
use nrpm::attacks::checks;
use nrpm::attacks::{self, Attack, EvalOptions, EvalResult, ImageOutcome, PgdSettings, StepSize};
use nrpm::data::{Dataset, Split};
use nrpm::error::{Error, Result};
use nrpm::models::Model;
use nrpm::report::markdown::Table;
use nrpm::report::write_file;

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
    /// Attack: fgsm | pgd-linf | pgd-l2 | l2 | l1 | l0 (the authors' one-step attacks) |
    /// apgd-ce | apgd-dlr | apgd-t | square | fab-t | autoattack (the strong attacks;
    /// autoattack: the standard suite APGD-CE → APGD-T → FAB-T → Square, with per-image
    /// records of the attack that broke each image).
    #[arg(long, default_value = "fgsm")]
    pub attack: String,
    /// Budgets, comma-separated: ε (L∞ per pixel; L2, L1 per image) or, for l0, pixel counts.
    #[arg(long, default_value = "0,0.05,0.1,0.15,0.2,0.25,0.3")]
    pub eps: String,
    /// Steps of PGD [default: 20] or of APGD and FAB [default: 100].
    #[arg(long)]
    pub steps: Option<usize>,
    /// PGD step size α: a number, or relative to each budget (eps/4, 0.25*eps), or madry
    /// [default: madry = 2.5·ε/steps, which lets any number of steps reach the ε-sphere; PGD
    /// only].
    #[arg(long)]
    pub alpha: Option<String>,
    /// PGD starts at a random point of the ε-ball (the default; PGD only).
    #[arg(long, overrides_with = "no_random_start")]
    pub random_start: bool,
    /// PGD starts at the clean image (PGD only).
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
    /// Write settings, figures, timings and the machine to this JSON file (its folder must
    /// exist; checked before the run).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Per-image records and sharding.
    #[command(flatten)]
    pub records: ShardArgs,
    /// The strong attacks' flags.
    #[command(flatten)]
    pub strong: StrongArgs,
    /// With --attack autoattack: write the suite's stages and the masking checks to this
    /// Markdown file (its folder must exist; checked before the run; not with --out).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
}

/// PGD's default number of steps.
pub const DEFAULT_STEPS: usize = 20;

/// Runs `nrpm eval`.
///
/// # Errors
/// Bad flags (unknown attack or model, bad budgets, n out of range, flags with no effect),
/// an unwritable `--json`, unreadable or malformed data and checkpoints, images the model
/// cannot take, attack errors.
pub fn run(args: EvalArgs) -> Result<()> {
    let start = Instant::now();
    for (flag, path) in [("--json", &args.json), ("--markdown", &args.markdown)] {
        if let Some(path) = path {
            check_output_file(flag, path)?;
        }
    }
    if args.markdown.is_some() && !args.attack.eq_ignore_ascii_case("autoattack") {
        return Err(Error::Flag {
            flag: "--markdown".into(),
            problem: format!("has no effect with --attack {}", args.attack),
        });
    }
    args.records.check()?;
    if args.records.out.is_some() {
        let report_only = [
            ("--markdown", args.markdown.is_some()),
            ("--masking-checks", args.strong.masking_checks),
        ];
        if let Some((flag, _)) = report_only.iter().find(|(_, g)| *g) {
            return Err(Error::Flag {
                flag: flag.to_string(),
                problem: "not with --out: the records hold per-image outcomes only".into(),
            });
        }
    }
    let attacks = args.attacks()?;
    let data = first_n(args.data.load(Split::Test)?, args.n, "n")?;
    let built = args.model.build(data.image_shape(), false)?;
    for note in &built.notices {
        eprintln!("note: {note}");
    }
    if let Some(a) = attacks.iter().find(|a| !a.reaches_sphere()) {
        eprintln!(
            "warning: {a}: steps·α = {:.4} < ε, so the attack cannot reach the ε-sphere from the \
             clean image; raise --steps or --alpha",
            a.steps_times_alpha()
        );
    }
    let options = EvalOptions {
        batch_size: args.batch_size,
        seed: args.seed,
        targeted: args.targeted,
    };
    let model = &built.model;
    let source = args.gradient_source(model)?;
    print!("{}", header(&args, &data, model, &attacks[0]));
    let load_seconds = start.elapsed().as_secs_f64();
    let settings = settings_json(&args, &built, &data, &attacks, &options);
    let weights = args.model.weights.as_deref();
    if let Some(run) = args.records.open("eval", settings, weights, &data)? {
        return run_records(
            &args,
            &built,
            source.as_ref(),
            &data,
            &attacks,
            &options,
            run,
        );
    }
    let strong_run = match Attack::is_strong(&args.attack) {
        true => Some(strong::run(
            model,
            source.as_ref(),
            &data,
            &attacks,
            &options,
            args.strong.masking_checks,
        )?),
        false => None,
    };
    let results = match &strong_run {
        Some(run) => run.results.clone(),
        None => attacks::evaluate_transfer(
            model,
            source.as_ref().unwrap_or(model),
            &data,
            &attacks,
            &options,
            &mut Bar::default(),
        )?,
    };
    print!("{}", table(&results));
    if let Some(run) = &strong_run {
        print!("{}", run.text());
    }
    if let (Some(path), Some(run)) = (&args.markdown, &strong_run) {
        let title = header(&args, &data, model, &attacks[0]);
        write_file(
            path,
            &(run.markdown(title.trim()) + &table_markdown(&results)),
        )?;
    }
    if let Some(path) = &args.json {
        let total_seconds = start.elapsed().as_secs_f64();
        let mut report = report_json(
            &args,
            &built,
            &data,
            &options,
            &results,
            [load_seconds, total_seconds],
        );
        if let Some(run) = &strong_run {
            report["results"] = run.results_json();
        }
        write_json(path, &report)?;
    }
    Ok(())
}

/// The evaluation with per-image records in `--out`: this shard's images not yet recorded,
/// each batch appended as it ends; an unsharded run then writes its report from the records.
fn run_records(
    args: &EvalArgs,
    built: &Built,
    source: Option<&Model<f32>>,
    data: &Dataset,
    attacks: &[Attack],
    options: &EvalOptions,
    mut run: ShardRun,
) -> Result<()> {
    if run.shard.count > 1 && args.json.is_some() {
        return Err(Error::Flag {
            flag: "--json".into(),
            problem: "has no effect on one shard: `nrpm merge` writes the report of all shards"
                .into(),
        });
    }
    let model = &built.model;
    let mut append = |batch: &[ImageOutcome]| {
        let lines: Vec<Value> = batch
            .iter()
            .map(|o| serde_json::to_value(o).expect("an outcome serialises"))
            .collect();
        run.file.append(&lines)
    };
    // As without --out (one rule for both: `checks::with_gradients_from`).
    checks::with_gradients_from(&attacks[0], model, source, |attacker| {
        attacks::evaluate_images(
            model,
            attacker,
            data,
            &run.todo,
            attacks,
            options,
            &mut Bar::default(),
            &mut append,
        )
    })?;
    let Some(records) = run.finish()? else {
        return Ok(());
    };
    let report = write_report(&run.out, &run.file.header().settings, &records)?;
    print!("{}", table(&report.1));
    if let Some(path) = &args.json {
        write_json(path, &report.0)?;
    }
    Ok(())
}

/// Everything that fixes an evaluation's figures, as the records' header keeps it: the model
/// as used (not the checkpoint's path: its hash is kept apart), the data, the attacks, the
/// seed. Not the batch size, which changes no figure.
fn settings_json(
    args: &EvalArgs,
    built: &Built,
    data: &Dataset,
    attacks: &[Attack],
    options: &EvalOptions,
) -> Value {
    let mut model = args.model.report_json(built);
    model["weights"] = Value::Null;
    json!({
        "model": model,
        "data": { "source": args.data.data, "split": "test", "record": data.record() },
        "attack": attack_json(args, attacks),
        "attacks": attacks,
        "seed": options.seed,
        "targeted": options.targeted,
    })
}

/// The report of a run with records (an unsharded run, or `nrpm merge` of its shards):
/// `(report.json's value, the figures)`, written to `out/report.json` and `out/report.md`.
///
/// # Errors
/// Records that are not an evaluation's, or settings without their attacks; I/O errors.
pub fn write_report(
    out: &std::path::Path,
    settings: &Value,
    records: &[Value],
) -> Result<(Value, Vec<EvalResult>)> {
    let outcomes: Vec<ImageOutcome> = parse_records("eval", records)?;
    let attacks: Vec<Attack> = parse_records("eval", &[settings["attacks"].clone()])?
        .pop()
        .unwrap_or_default();
    let results = attacks::results_from_outcomes(&attacks, &outcomes)?;
    let mut report = json!({
        "command": "eval",
        "nrpm_version": env!("CARGO_PKG_VERSION"),
        "clean": {
            "correct": results[0].clean_correct,
            "accuracy": results[0].clean_accuracy,
            "seconds": results[0].clean_seconds,
        },
        "results": results,
    });
    for key in ["model", "data", "attack", "seed", "targeted"] {
        report[key] = settings[key].clone();
    }
    write_json(&out.join("report.json"), &report)?;
    let markdown = format!(
        "# nrpm eval\n\n{} ({}) on {} images of {}\n\n```text\n{}```\n",
        settings["model"]["name"].as_str().unwrap_or("model"),
        settings["attack"]["name"].as_str().unwrap_or("attack"),
        outcomes.len(),
        settings["data"]["record"]["name"]
            .as_str()
            .unwrap_or("data"),
        table(&results)
    );
    write_file(&out.join("report.md"), &markdown)?;
    Ok((report, results))
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

    /// Whether `--attack` is a PGD.
    fn is_pgd(&self) -> bool {
        matches!(
            self.attack.to_ascii_lowercase().as_str(),
            "pgd" | "pgd-linf" | "pgd-l2"
        )
    }

    /// The attack at each budget of `--eps`; PGD flags with another attack, and strong
    /// attacks' flags with a weak one, are refused.
    fn attacks(&self) -> Result<Vec<Attack>> {
        self.strong.refuse_unused(&self.attack)?;
        let budgets = parse_list::<f64>("eps", &self.eps)?;
        if Attack::is_strong(&self.attack) {
            if let Some((flag, _)) = self.pgd_flags().iter().skip(1).find(|(_, g)| *g) {
                return Err(Error::Flag {
                    flag: flag.to_string(),
                    problem: format!(
                        "has no effect with --attack {}: only pgd-linf and pgd-l2 take a step \
                         size and a choice of start",
                        self.attack
                    ),
                });
            }
            let settings = self.strong.settings(self.steps)?;
            return budgets
                .into_iter()
                .map(|eps| Attack::strong(&self.attack, eps, settings))
                .collect();
        }
        if !self.is_pgd() {
            if let Some((flag, _)) = self.pgd_flags().iter().find(|(_, g)| *g) {
                return Err(Error::Flag {
                    flag: flag.to_string(),
                    problem: format!(
                        "has no effect with --attack {}: only pgd-linf and pgd-l2 take steps, \
                         a step size and a random start",
                        self.attack
                    ),
                });
            }
        }
        let settings = PgdSettings {
            steps: self.steps.unwrap_or(DEFAULT_STEPS),
            step_size: match &self.alpha {
                Some(s) => s.parse()?,
                None => StepSize::Madry,
            },
            random_start: !self.no_random_start,
        };
        budgets
            .into_iter()
            .map(|eps| Attack::from_name(&self.attack, eps, settings))
            .collect()
    }

    /// PGD's flags (`--steps` first), and whether each is given.
    fn pgd_flags(&self) -> [(&'static str, bool); 4] {
        [
            ("--steps", self.steps.is_some()),
            ("--alpha", self.alpha.is_some()),
            ("--random-start", self.random_start),
            ("--no-random-start", self.no_random_start),
        ]
    }

    /// The step-size rule as given, for the report.
    fn step_size(&self) -> String {
        self.alpha.clone().unwrap_or_else(|| "madry".into())
    }
}

/// The run's header: model and checkpoint, the reprogramming as used (λ per layer), the data,
/// the attack, and where its gradients come from.
fn header(args: &EvalArgs, data: &Dataset, model: &Model<f32>, attack: &Attack) -> String {
    let weights = args
        .model
        .weights
        .as_ref()
        .map_or("initialised weights".to_string(), |p| {
            p.display().to_string()
        });
    let gradients = match args.gradients_from.as_str() {
        "lpm" => "gradients from the LPM twin (BPDA-style check)",
        _ => "gradients from the model (white box)",
    };
    let kind = match attack {
        Attack::PgdLinf {
            steps,
            random_start,
            ..
        }
        | Attack::PgdL2 {
            steps,
            random_start,
            ..
        } => {
            let start = if *random_start {
                "random start"
            } else {
                "clean start"
            };
            format!(
                "{} ({steps} steps, α = {}, {start})",
                attack.name(),
                args.step_size()
            )
        }
        _ => attack.name().to_string(),
    };
    format!(
        "{} ({weights}): {}\n{kind} attack{}, {gradients}, {} images of {}\n",
        model.spec().name,
        describe(model),
        if args.targeted { " (targeted)" } else { "" },
        data.len(),
        data.name(),
    )
}

/// The clean accuracy and the accuracy-vs-budget table.
fn table(results: &[EvalResult]) -> String {
    let first = &results[0];
    let mut out = format!(
        "clean accuracy: {:.1} % ({}/{})\n",
        first.clean_accuracy, first.clean_correct, first.n,
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

/// The accuracy-vs-budget table in Markdown.
fn table_markdown(results: &[EvalResult]) -> String {
    let mut t = Table::new([
        budget_header(&results[0].attack),
        "robust %",
        "correct",
        "seconds",
    ]);
    for r in results {
        t.row([
            format!("{}", r.attack.budget()),
            format!("{:.1}", r.robust_accuracy),
            format!("{}", r.robust_correct),
            format!("{:.2}", r.seconds),
        ]);
    }
    format!(
        "\nRobust accuracy (clean {:.1} %):\n\n{}",
        results[0].clean_accuracy,
        t.render()
    )
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
    built: &Built,
    data: &Dataset,
    options: &EvalOptions,
    results: &[EvalResult],
    [load_seconds, total_seconds]: [f64; 2],
) -> Value {
    json!({
        "command": "eval",
        "nrpm_version": env!("CARGO_PKG_VERSION"),
        "model": args.model.report_json(built),
        "data": { "source": args.data.data, "split": "test", "record": data.record() },
        "attack": attack_json(args, &results.iter().map(|r| r.attack.clone()).collect::<Vec<_>>()),
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
/// The attack's settings for the reports.
fn attack_json(args: &EvalArgs, attacks: &[Attack]) -> Value {
    let pgd = args.is_pgd();
    json!({
        "name": attacks[0].name(),
        "norm": attacks[0].norm(),
        "budgets": attacks.iter().map(Attack::budget).collect::<Vec<_>>(),
        "steps": pgd.then(|| args.steps.unwrap_or(DEFAULT_STEPS)),
        "alpha_rule": pgd.then(|| args.step_size()),
        "random_start": pgd.then_some(!args.no_random_start),
        "targeted": args.targeted,
        "gradients_from": args.gradients_from,
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
