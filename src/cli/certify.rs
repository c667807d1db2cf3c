//! `nrpm certify`: certified robustness of a (reprogrammed) model.
//!
//! ```text
//! --method smoothing   randomized smoothing (Cohen et al. 2019): certified accuracy against
//!                      L2 radius; per-image records (idx label predict radius correct time)
//! --method ibp|crown   L∞ ball ∩ [0, 1]: verified accuracy beside PGD's robust accuracy
//! --method l0          k changed pixels: verified accuracy beside an ℓ0 attack's
//! ```
//!
//! The bracket (ibp, crown, l0) runs on the model in f64, certificates and attacks alike; an
//! image certified yet broken is reported and the command exits with an error.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::{json, Value};

use crate::cli::bar::Bar;
use crate::cli::common::{check_output_file, first_n, parse_list, DataArgs};
use crate::cli::eval::machine_info;
use crate::cli::model_args::{describe, Built, ModelArgs};
use crate::cli::sharded::{parse_records, ShardArgs, ShardRun};
use crate::cli::write_json;
use nrpm::certify::bracket::{self, Bracket, Method};
use nrpm::certify::falsify::{Falsifier, GreedyL0, PgdRestarts};
use nrpm::certify::smoothing::{self, SmoothedRecord, SmoothingConfig};
use nrpm::data::{Dataset, Split};
use nrpm::error::{Error, Result};
use nrpm::models::Model;
use nrpm::progress::Progress;
use nrpm::report::markdown::Table;
use nrpm::report::svg::{LineChart, Series};
use nrpm::report::write_file;

/// Certified accuracy: randomized smoothing, or bound propagation beside an attack.
#[derive(Debug, Args)]
pub struct CertifyArgs {
    /// The model, its checkpoint and its reprogramming.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The images (the test split is certified).
    #[command(flatten)]
    pub data: DataArgs,
    /// smoothing (Cohen et al.: L2 radii of the smoothed classifier) | ibp (interval bounds) |
    /// crown (back-substitution) | l0 (k changed pixels); the last three beside an attack.
    #[arg(long)]
    pub method: String,
    /// Noise σ of smoothing, one or more (one curve each) [default: 0.25; smoothing only].
    #[arg(long)]
    pub sigma: Option<String>,
    /// Selection draws n0 [default: 100; smoothing only].
    #[arg(long)]
    pub n0: Option<usize>,
    /// Estimation draws n [default: 100000; smoothing only].
    #[arg(long)]
    pub samples: Option<usize>,
    /// Failure probability α of each certificate [default: 0.001; smoothing only].
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Radii at which certified accuracy is reported [default: 0,0.25,0.5,0.75,1; smoothing
    /// only].
    #[arg(long)]
    pub radii: Option<String>,
    /// Per-image records (Cohen's columns idx label predict radius correct time) to this TSV
    /// file [smoothing only].
    #[arg(long)]
    pub tsv: Option<PathBuf>,
    /// L∞ budgets ε [default: 0,0.005,0.01; ibp and crown only].
    #[arg(long)]
    pub eps: Option<String>,
    /// Numbers of changed pixels k [default: 0,1,2,4,8; l0 only].
    #[arg(long)]
    pub pixels: Option<String>,
    /// PGD steps of the bracket's attack [default: 100; ibp and crown only].
    #[arg(long)]
    pub attack_steps: Option<usize>,
    /// PGD runs per gradient source (the first from the clean image) [default: 5; ibp and
    /// crown only].
    #[arg(long)]
    pub restarts: Option<usize>,
    /// Certify the first N test images [default: all].
    #[arg(long)]
    pub n: Option<usize>,
    /// Take every S-th of those images (Cohen's --skip).
    #[arg(long, default_value_t = 1)]
    pub skip: usize,
    /// Noisy copies per forward pass (smoothing), images per attack batch (the others); the
    /// figures do not depend on it.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Seed of the smoothing noise and the attacks' random starts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write settings, figures, per-image outcomes, timings and the machine to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the results table as Markdown to this file.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Write an SVG chart (certified accuracy against radius or ε) to this file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Per-image records and sharding (`--method smoothing` only).
    #[command(flatten)]
    pub records: ShardArgs,
}

/// Runs `nrpm certify`.
///
/// # Errors
/// Bad flags (σ ≤ 0, n0 or n = 0, α outside (0, 1), negative radii or ε, flags of another
/// method), unwritable outputs, data and model errors, a network the method cannot bound,
/// and [`Error::Unsound`] when an image is certified yet broken.
pub fn run(args: CertifyArgs) -> Result<()> {
    let start = Instant::now();
    let method = args.method.to_ascii_lowercase();
    args.check_flags(&method)?;
    args.records.check()?;
    if method != "smoothing" && args.records.out.is_some() {
        return Err(Error::Flag {
            flag: "--out".into(),
            problem: format!(
                "per-image records and sharding are for --method smoothing, not {method}"
            ),
        });
    }
    for (flag, path) in [
        ("--json", &args.json),
        ("--markdown", &args.markdown),
        ("--svg", &args.svg),
        ("--tsv", &args.tsv),
    ] {
        if let Some(p) = path {
            check_output_file(flag, p)?;
        }
    }
    match method.as_str() {
        "smoothing" => run_smoothing(&args, start),
        other => run_bracket(&args, Method::from_name(other)?, start),
    }
}

impl CertifyArgs {
    /// Refuses the flags of another method, and checks the numbers before any work.
    fn check_flags(&self, method: &str) -> Result<()> {
        let smoothing = [
            ("--sigma", self.sigma.is_some()),
            ("--n0", self.n0.is_some()),
            ("--samples", self.samples.is_some()),
            ("--alpha", self.alpha.is_some()),
            ("--radii", self.radii.is_some()),
            ("--tsv", self.tsv.is_some()),
        ];
        let linf = [
            ("--eps", self.eps.is_some()),
            ("--attack-steps", self.attack_steps.is_some()),
            ("--restarts", self.restarts.is_some()),
        ];
        let l0 = [("--pixels", self.pixels.is_some())];
        let foreign: Vec<&(&str, bool)> = match method {
            "smoothing" => linf.iter().chain(&l0).collect(),
            "ibp" | "crown" => smoothing.iter().chain(&l0).collect(),
            "l0" => smoothing.iter().chain(&linf).collect(),
            other => return Method::from_name(other).map(|_| ()),
        };
        if let Some((flag, _)) = foreign.iter().find(|(_, given)| *given) {
            return Err(Error::Flag {
                flag: flag.to_string(),
                problem: format!("has no effect with --method {method}"),
            });
        }
        if self.skip == 0 {
            return Err(Error::config("skip", 0, "must be at least 1"));
        }
        if self.batch == 0 {
            return Err(Error::config("batch", 0, "must be at least 1"));
        }
        if self.restarts == Some(0) || self.attack_steps == Some(0) {
            return Err(Error::config(
                "attack",
                0,
                "--restarts and --attack-steps must be at least 1",
            ));
        }
        Ok(())
    }

    /// The first --n test images, and the test-split indices of every --skip-th of them.
    fn images(&self) -> Result<(Dataset, Vec<usize>)> {
        let full = first_n(self.data.load(Split::Test)?, self.n, "n")?;
        let indices = (0..full.len()).step_by(self.skip).collect();
        Ok((full, indices))
    }

    /// The model as built from the flags, with its notes printed.
    fn build(&self, data: &Dataset) -> Result<Built> {
        let built = self.model.build(data.image_shape(), false)?;
        for note in &built.notices {
            eprintln!("note: {note}");
        }
        Ok(built)
    }
}

/// A list of budgets, each finite and ≥ 0.
fn budgets(flag: &'static str, given: Option<&str>, default: &str) -> Result<Vec<f64>> {
    let list = parse_list::<f64>(flag, given.unwrap_or(default))?;
    match list.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
        Some(bad) => Err(Error::config(flag, bad, "must be finite and ≥ 0")),
        None => Ok(list),
    }
}

/// The header line: model, reprogramming, images.
fn header(args: &CertifyArgs, model: &Model<f32>, data: &Dataset) -> String {
    let weights = args
        .model
        .weights
        .as_ref()
        .map_or("initialised weights".to_string(), |p| {
            p.display().to_string()
        });
    format!(
        "{} ({weights}): {}\n{} images of {} (first {}, every {})\n",
        model.spec().name,
        describe(model),
        data.len(),
        data.name(),
        args.n.map_or("all".to_string(), |n| n.to_string()),
        args.skip
    )
}

/// `--method smoothing`.
fn run_smoothing(args: &CertifyArgs, start: Instant) -> Result<()> {
    let sigmas = parse_list::<f64>("sigma", args.sigma.as_deref().unwrap_or("0.25"))?;
    let radii = budgets("radii", args.radii.as_deref(), "0,0.25,0.5,0.75,1")?;
    let base = SmoothingConfig {
        n0: args.n0.unwrap_or(100),
        n: args.samples.unwrap_or(100_000),
        alpha: args.alpha.unwrap_or(0.001),
        batch: args.batch,
        seed: args.seed,
        ..SmoothingConfig::default()
    };
    let configs: Vec<SmoothingConfig> = sigmas
        .iter()
        .map(|&sigma| SmoothingConfig { sigma, ..base })
        .collect();
    configs.iter().try_for_each(SmoothingConfig::validate)?;
    let (full, indices) = args.images()?;
    let built = args.build(&full)?;
    let evaluated = full.select(&indices)?;
    let text = header(args, &built.model, &evaluated);
    print!("{text}");
    println!(
        "smoothing: n0 = {}, n = {}, α = {}, batch {}, seed {}",
        base.n0, base.n, base.alpha, base.batch, base.seed
    );
    let settings = smoothing_settings(args, &built, &configs, &radii, &text);
    let weights = args.model.weights.as_deref();
    if let Some(run) = args
        .records
        .open("certify", settings.clone(), weights, &evaluated)?
    {
        return smoothing_records(args, &built.model, (&full, &indices), &configs, run);
    }
    let mut runs = Vec::new();
    for cfg in &configs {
        let records =
            smoothing::certify_dataset(&built.model, &full, &indices, cfg, &mut Bar::default())?;
        runs.push(records);
    }
    let report = SmoothingReport::new(&settings, runs)?;
    print!("{}", report.table().render());
    report.write_to(&Outputs {
        json: args.json.clone(),
        markdown: args.markdown.clone(),
        svg: args.svg.clone(),
        tsv: args.tsv.clone(),
    })?;
    if let Some(path) = &args.json {
        let mut value = report.json();
        value["timings"] = json!({ "total_seconds": start.elapsed().as_secs_f64() });
        value["machine"] = machine_info();
        write_json(path, &value)?;
    }
    Ok(())
}

/// Smoothing with per-image records in `--out`: this shard's images not yet recorded, a few
/// at a time, each group appended as it ends; an unsharded run then writes its report (OUT/
/// report.json, .md, .svg, .tsv) from the records, as `nrpm merge` does for a sharded one.
fn smoothing_records(
    args: &CertifyArgs,
    model: &Model<f32>,
    (full, indices): (&Dataset, &[usize]),
    configs: &[SmoothingConfig],
    mut run: ShardRun,
) -> Result<()> {
    if run.shard.count > 1 {
        let given = [
            ("--json", args.json.is_some()),
            ("--markdown", args.markdown.is_some()),
            ("--svg", args.svg.is_some()),
            ("--tsv", args.tsv.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
            return Err(Error::Flag {
                flag: flag.to_string(),
                problem: "has no effect on one shard: `nrpm merge` writes the report of all \
                          shards into its folder"
                    .into(),
            });
        }
    }
    let mut bar = Bar::default();
    bar.start("smoothing", run.todo.len() as u64);
    for group in run.todo.chunks(RECORD_GROUP) {
        let dataset_indices: Vec<usize> = group.iter().map(|&p| indices[p]).collect();
        let mut per_sigma = Vec::with_capacity(configs.len());
        for cfg in configs {
            let records = smoothing::certify_dataset(
                model,
                full,
                &dataset_indices,
                cfg,
                &mut nrpm::progress::Silent,
            )?;
            per_sigma.push(records);
        }
        let lines: Vec<Value> = group
            .iter()
            .enumerate()
            .map(|(j, &p)| {
                let sigmas: Vec<&SmoothedRecord> = per_sigma.iter().map(|r| &r[j]).collect();
                json!({ "index": p, "sigmas": sigmas })
            })
            .collect();
        run.file.append(&lines)?;
        bar.advance(group.len() as u64);
    }
    bar.finish("");
    let Some(records) = run.finish()? else {
        return Ok(());
    };
    let report = SmoothingReport::from_records(&run.file.header().settings, &records)?;
    print!("{}", report.table().render());
    report.write_to(&Outputs::in_folder(&run.out))?;
    for (flag, path) in [("--json", &args.json), ("--markdown", &args.markdown)] {
        if let Some(path) = path {
            let from = run.out.join(if flag == "--json" {
                "report.json"
            } else {
                "report.md"
            });
            std::fs::copy(&from, path).map_err(|e| Error::io(path, e))?;
        }
    }
    Ok(())
}

/// Images certified between two appends to the records file.
const RECORD_GROUP: usize = 4;

/// Everything that fixes a smoothing run's figures, as the records' header keeps it (not the
/// checkpoint's path, whose hash is kept apart; not the batch size).
fn smoothing_settings(
    args: &CertifyArgs,
    built: &Built,
    configs: &[SmoothingConfig],
    radii: &[f64],
    header: &str,
) -> Value {
    let mut model = args.model.report_json(built);
    model["weights"] = Value::Null;
    let configs: Vec<Value> = configs
        .iter()
        .map(
            |c| json!({ "sigma": c.sigma, "n0": c.n0, "n": c.n, "alpha": c.alpha, "seed": c.seed }),
        )
        .collect();
    json!({
        "method": "smoothing",
        "model": model,
        "describe": describe(&built.model),
        "header": header,
        "data": { "source": args.data.data, "split": "test", "n": args.n, "skip": args.skip },
        "configs": configs,
        "radii": radii,
    })
}

/// Where a smoothing report goes.
#[derive(Debug, Default)]
struct Outputs {
    json: Option<PathBuf>,
    markdown: Option<PathBuf>,
    svg: Option<PathBuf>,
    tsv: Option<PathBuf>,
}

impl Outputs {
    /// `dir/report.{json,md,svg,tsv}`.
    fn in_folder(dir: &std::path::Path) -> Self {
        Self {
            json: Some(dir.join("report.json")),
            markdown: Some(dir.join("report.md")),
            svg: Some(dir.join("report.svg")),
            tsv: Some(dir.join("report.tsv")),
        }
    }
}

/// A smoothing run's figures: per σ, the per-image records, and what is made of them.
#[derive(Debug)]
pub struct SmoothingReport {
    settings: Value,
    sigmas: Vec<f64>,
    radii: Vec<f64>,
    runs: Vec<Vec<SmoothedRecord>>,
}

impl SmoothingReport {
    /// From `settings` (see `smoothing_settings`) and one list of records per σ.
    fn new(settings: &Value, runs: Vec<Vec<SmoothedRecord>>) -> Result<Self> {
        let numbers = |key: &str| -> Vec<f64> {
            settings[key]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default()
        };
        let sigmas: Vec<f64> = settings["configs"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["sigma"].as_f64()).collect())
            .unwrap_or_default();
        if sigmas.len() != runs.len() || sigmas.is_empty() {
            return Err(Error::Records {
                what: "certify".into(),
                problem: format!("{} σ in the settings for {} runs", sigmas.len(), runs.len()),
            });
        }
        Ok(Self {
            settings: settings.clone(),
            sigmas,
            radii: numbers("radii"),
            runs,
        })
    }

    /// From the records of a run (`{"index", "sigmas": [record per σ]}`, in index order).
    ///
    /// # Errors
    /// [`Error::Records`] for records that are not a smoothing run's.
    pub fn from_records(settings: &Value, records: &[Value]) -> Result<Self> {
        let count = settings["configs"].as_array().map_or(0, Vec::len);
        let mut runs = vec![Vec::with_capacity(records.len()); count];
        for r in records {
            let per_sigma: Vec<SmoothedRecord> =
                parse_records("certify", r["sigmas"].as_array().map_or(&[][..], |a| a))?;
            if per_sigma.len() != count {
                return Err(Error::Records {
                    what: "certify".into(),
                    problem: format!("image record {r} does not hold one result per σ"),
                });
            }
            for (run, rec) in runs.iter_mut().zip(per_sigma) {
                run.push(rec);
            }
        }
        Self::new(settings, runs)
    }

    /// The printed and Markdown table: per σ and radius, certified accuracy.
    fn table(&self) -> Table {
        let mut table = Table::new([
            "σ",
            "radius",
            "certified %",
            "certified",
            "abstained",
            "s/image",
        ]);
        for (sigma, records) in self.sigmas.iter().zip(&self.runs) {
            let abstained = records.iter().filter(|r| r.predict.is_none()).count();
            let seconds: f64 = records.iter().map(|r| r.time).sum();
            for row in smoothing::certified_accuracy(records, &self.radii) {
                table.row([
                    sigma.to_string(),
                    row.budget.to_string(),
                    format!("{:.1}", row.certified_accuracy),
                    format!("{}/{}", row.certified, records.len()),
                    abstained.to_string(),
                    format!("{:.2}", seconds / records.len().max(1) as f64),
                ]);
            }
        }
        table
    }

    /// The JSON report (without timings of the whole command or the machine).
    fn json(&self) -> Value {
        let results: Vec<Value> = self
            .sigmas
            .iter()
            .zip(&self.runs)
            .flat_map(|(&sigma, records)| {
                smoothing::certified_accuracy(records, &self.radii)
                    .into_iter()
                    .map(move |r| {
                        json!({ "sigma": sigma, "budget": r.budget,
                                "certified_accuracy": r.certified_accuracy,
                                "certified": r.certified, "n": records.len() })
                    })
            })
            .collect();
        let images: Vec<Value> = self
            .sigmas
            .iter()
            .zip(&self.runs)
            .map(|(s, r)| {
                let seconds: f64 = r.iter().map(|x| x.time).sum();
                json!({ "sigma": s, "records": r, "seconds": seconds })
            })
            .collect();
        json!({
            "command": "certify",
            "method": "smoothing",
            "nrpm_version": env!("CARGO_PKG_VERSION"),
            "model": self.settings["model"],
            "data": self.settings["data"],
            "settings": self.settings["configs"],
            "results": results,
            "images": images,
        })
    }

    /// The SVG of certified accuracy against radius, one curve per σ.
    fn svg(&self) -> String {
        let name = self.settings["model"]["name"].as_str().unwrap_or("model");
        let series = self
            .sigmas
            .iter()
            .zip(&self.runs)
            .map(|(sigma, records)| Series {
                name: format!("{name} σ = {sigma}"),
                points: smoothing::certified_accuracy(records, &self.radii)
                    .iter()
                    .map(|r| (r.budget, r.certified_accuracy))
                    .collect(),
                band: None,
                dashed: false,
            })
            .collect();
        let chart = LineChart {
            title: format!(
                "Randomized smoothing: {}",
                self.settings["describe"].as_str().unwrap_or(name)
            ),
            x_label: "L2 radius".into(),
            y_label: "certified accuracy (%)".into(),
            series,
            y_range: Some((0.0, 100.0)),
        };
        chart.to_svg()
    }

    /// Cohen's TSV (one block per σ when there are several).
    fn tsv(&self) -> String {
        match self.runs.as_slice() {
            [records] => smoothing::tsv(records),
            many => self
                .sigmas
                .iter()
                .zip(many)
                .map(|(s, r)| format!("# sigma {s}\n{}", smoothing::tsv(r)))
                .collect(),
        }
    }

    /// Writes the outputs that are asked for (JSON without timings or machine).
    fn write_to(&self, out: &Outputs) -> Result<()> {
        if let Some(path) = &out.json {
            write_json(path, &self.json())?;
        }
        if let Some(path) = &out.markdown {
            let header = self.settings["header"].as_str().unwrap_or("");
            write_file(path, &format!("{header}\n{}", self.table().render()))?;
        }
        if let Some(path) = &out.svg {
            write_file(path, &self.svg())?;
        }
        if let Some(path) = &out.tsv {
            write_file(path, &self.tsv())?;
        }
        Ok(())
    }
}

/// Writes the report of a merged smoothing run into `out`; returns the number of images.
///
/// # Errors
/// Records that are not a smoothing run's; I/O errors.
pub fn write_merged(settings: &Value, records: &[Value], out: &std::path::Path) -> Result<usize> {
    let report = SmoothingReport::from_records(settings, records)?;
    report.write_to(&Outputs::in_folder(out))?;
    Ok(records.len())
}

/// `--method ibp | crown | l0`.
fn run_bracket(args: &CertifyArgs, method: Method, start: Instant) -> Result<()> {
    let list = match method {
        Method::L0 => budgets("pixels", args.pixels.as_deref(), "0,1,2,4,8")?,
        _ => budgets("eps", args.eps.as_deref(), "0,0.005,0.01")?,
    };
    list.iter().try_for_each(|&b| method.check_budget(b))?;
    let (full, indices) = args.images()?;
    let data = full.select(&indices)?;
    let built = args.build(&data)?;
    let model = built.model.to_precision::<f64>()?;
    nrpm::certify::Network::new(&model)?; // a network nrpm cannot bound fails before the attack
    let falsifier: Box<dyn Falsifier<f64>> = match method {
        Method::L0 => Box::new(GreedyL0 {
            lpm_gradients: true,
        }),
        _ => Box::new(PgdRestarts {
            steps: args.attack_steps.unwrap_or(100),
            restarts: args.restarts.unwrap_or(5),
            lpm_gradients: true,
            seed: args.seed,
        }),
    };
    print!("{}", header(args, &built.model, &data));
    println!(
        "{}: verified (lower bound) beside {} (upper bound), f64",
        method.name(),
        falsifier.describe()
    );
    let result = bracket::bracket(
        &model,
        &data,
        &indices,
        method,
        &list,
        falsifier.as_ref(),
        args.batch,
        &mut Bar::default(),
    )?;
    let table = bracket_table(&result);
    print!("{}", table.render());
    if let Some(path) = &args.markdown {
        nrpm::report::write_file(
            path,
            &format!("{}\n{}", header(args, &built.model, &data), table.render()),
        )?;
    }
    if let Some(path) = &args.svg {
        nrpm::report::write_file(path, &bracket_chart(&result, &built.model).to_svg())?;
    }
    if let Some(path) = &args.json {
        write_json(
            path,
            &bracket_json(args, &built, &result, start.elapsed().as_secs_f64()),
        )?;
    }
    result.check()
}

/// Budget, verified and attacked accuracy side by side.
fn bracket_table(b: &Bracket) -> Table {
    let unit = match b.method {
        Method::L0 => "pixels",
        _ => "eps",
    };
    let mut t = Table::new([
        unit,
        "verified %",
        "attacked %",
        "certified",
        "not broken",
        "clean",
        "contradictions",
        "s certify",
        "s attack",
    ]);
    for r in &b.rows {
        t.row([
            r.budget.to_string(),
            format!("{:.1}", r.certified_accuracy),
            format!("{:.1}", r.attacked_accuracy),
            format!("{}/{}", r.certified, r.n),
            format!("{}/{}", r.attacked_correct, r.n),
            format!("{}/{}", r.clean_correct, r.n),
            r.contradictions.len().to_string(),
            format!("{:.1}", r.certify_seconds),
            format!("{:.1}", r.attack_seconds),
        ]);
    }
    t
}

/// Verified and attacked accuracy against the budget.
fn bracket_chart(b: &Bracket, model: &Model<f32>) -> LineChart {
    let line = |name: &str, f: &dyn Fn(&bracket::BracketRow) -> f64, dashed: bool| Series {
        name: name.to_string(),
        points: b.rows.iter().map(|r| (r.budget, f(r))).collect(),
        band: None,
        dashed,
    };
    LineChart {
        title: format!("{} bracket: {}", b.method.name(), describe(model)),
        x_label: match b.method {
            Method::L0 => "changed pixels k".into(),
            _ => "L∞ ε".into(),
        },
        y_label: "accuracy (%)".into(),
        series: vec![
            line("verified (lower bound)", &|r| r.certified_accuracy, false),
            line("attacked (upper bound)", &|r| r.attacked_accuracy, true),
        ],
        y_range: Some((0.0, 100.0)),
    }
}

/// The bracket report.
fn bracket_json(args: &CertifyArgs, built: &Built, b: &Bracket, total: f64) -> Value {
    let results: Vec<Value> = b
        .rows
        .iter()
        .map(|r| {
            json!({
                "budget": r.budget, "certified_accuracy": r.certified_accuracy, "certified": r.certified,
                "attacked_accuracy": r.attacked_accuracy, "attacked_correct": r.attacked_correct,
                "clean_correct": r.clean_correct, "n": r.n, "contradictions": r.contradictions,
                "certify_seconds": r.certify_seconds, "attack_seconds": r.attack_seconds,
            })
        })
        .collect();
    json!({
        "command": "certify",
        "method": b.method.name(),
        "nrpm_version": env!("CARGO_PKG_VERSION"),
        "model": args.model.report_json(built),
        "data": { "source": args.data.data, "split": "test", "n": args.n, "skip": args.skip },
        "attack": b.attack,
        "precision": "f64",
        "results": results,
        "images": b.rows.iter().map(|r| json!({ "budget": r.budget, "outcomes": r.images })).collect::<Vec<_>>(),
        "timings": { "total_seconds": total },
        "machine": machine_info(),
    })
}
