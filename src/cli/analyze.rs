//! `nrpm analyze`: robust statistics of one output (sensitivity curve, empirical breakdown
//! point, IRLS objective) for LPM, the configured NRPM and exact LAD on a synthetic D-term
//! input, and, with `--weights`, the operator norms (Lipschitz constants) of a checkpoint's
//! linear and conv weights. Prints compact tables; `--json` writes everything, settings
//! included.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::common::check_output_file;
use crate::cli::{write_json, OperatorArgs};
use nrpm::error::Result;
use nrpm::models::ModelRecord;
use nrpm::robust::{
    self, breakdown::BREAKDOWN_SLOPE, lipschitz, BreakdownEstimate, Escalation, Estimator,
    LayerNorms, ObjectiveStep, SensitivityPoint,
};
use nrpm::tensor_file::TensorFile;
use nrpm::NrpmConfig;

/// Sensitivity curve and breakdown point of one output of D synthetic terms t_d ~ N(0, 1), for
/// LPM, NRPM (the operator flags) and exact LAD; with --weights, ‖W‖₂ and ‖W‖∞ of every 2-D
/// and 4-D weight of a checkpoint.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// The NRPM operator to analyse.
    #[command(flatten)]
    pub op: OperatorArgs,
    /// Number of terms D of the synthetic output.
    #[arg(long, default_value_t = 64)]
    pub d: usize,
    /// Seed of the synthetic terms (same seed, same terms).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Index (0-based) of the term the sensitivity curve moves.
    #[arg(long, default_value_t = 0)]
    pub outlier_index: usize,
    /// Smallest value given to the moved term.
    #[arg(long, default_value_t = -50.0, allow_negative_numbers = true)]
    pub grid_min: f64,
    /// Largest value given to the moved term.
    #[arg(long, default_value_t = 50.0, allow_negative_numbers = true)]
    pub grid_max: f64,
    /// Number of equally spaced grid values.
    #[arg(long, default_value_t = 101)]
    pub grid_points: usize,
    /// Factor between successive outlier magnitudes of the breakdown search.
    #[arg(long, default_value_t = 1e10)]
    pub escalation_ratio: f64,
    /// Number of outlier magnitudes; the first is 10·(1 + max|t_d|).
    #[arg(long, default_value_t = 11)]
    pub escalation_steps: usize,
    /// Write all settings and results to this JSON file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A safetensors checkpoint whose layers' operator norms to report.
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

/// The analysis of one estimator.
#[derive(Debug, Serialize)]
struct EstimatorReport {
    label: String,
    estimator: Estimator,
    clean_output: f64,
    gross_error_sensitivity: f64,
    influence: Vec<SensitivityPoint>,
    breakdown: BreakdownEstimate,
}

/// Runs `nrpm analyze`.
///
/// # Errors
/// Invalid flags (unknown norm, D = 0, empty grid, outlier index ≥ D, groups not dividing D,
/// bad escalation); an unreadable or malformed `--weights` file; an unwritable `--json` path.
pub fn run(args: AnalyzeArgs) -> Result<()> {
    if let Some(path) = &args.json {
        check_output_file("--json", path)?;
    }
    let file = args.weights.as_ref().map(TensorFile::read).transpose()?;
    let cfg = match checkpoint_operator(file.as_ref())? {
        Some((key, op)) if !args.op.any_given() => {
            eprintln!("note: analysing the operator of the checkpoint's layer {key}: {op}");
            op
        }
        Some((key, op)) => {
            let cfg = args.op.config_over(op)?;
            if cfg != op {
                eprintln!(
                    "note: the operator flags replace the checkpoint's operator of {key} ({op})"
                );
            }
            cfg
        }
        None => args.op.config()?,
    };
    let layers = file.as_ref().map(robust::layer_norms).transpose()?;
    let terms = robust::synthetic_terms(args.d, args.seed)?;
    let grid = robust::linear_grid(args.grid_min, args.grid_max, args.grid_points)?;
    let escalation = Escalation {
        ratio: args.escalation_ratio,
        count: args.escalation_steps,
        ..Escalation::for_terms(&terms)
    };
    let reports = [Estimator::Lpm, Estimator::Nrpm(cfg), Estimator::Lad]
        .iter()
        .map(|est| analyse(est, &terms, args.outlier_index, &grid, &escalation))
        .collect::<Result<Vec<_>>>()?;
    let trace = robust::objective_trace(&cfg, &terms)?;
    print_summary(&args, &escalation, &reports, &trace);
    if let Some(layers) = &layers {
        print_layers(&args, layers);
    }
    if let Some(path) = &args.json {
        write_json(
            path,
            &report_json(&args, &cfg, &terms, &reports, &trace, layers.as_deref()),
        )?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The operator of the first NRPM layer of a checkpoint written by nrpm (`None` for files
/// without a record, or with no NRPM layer).
fn checkpoint_operator(file: Option<&TensorFile>) -> Result<Option<(String, NrpmConfig)>> {
    let Some(file) = file else { return Ok(None) };
    let layers = ModelRecord::from_file(file)?
        .and_then(|r| r.nrpm_layers)
        .unwrap_or_default();
    Ok(layers.first().map(|l| (l.key.clone(), l.operator)))
}

fn analyse(
    est: &Estimator,
    terms: &[f64],
    index: usize,
    grid: &[f64],
    escalation: &Escalation,
) -> Result<EstimatorReport> {
    let influence = robust::sensitivity_curve(est, terms, index, grid)?;
    let breakdown = robust::breakdown_point(est, terms, escalation)?;
    Ok(EstimatorReport {
        label: est.label(),
        estimator: *est,
        clean_output: breakdown.clean_output,
        gross_error_sensitivity: robust::gross_error_sensitivity(&influence),
        influence,
        breakdown,
    })
}

fn print_summary(
    args: &AnalyzeArgs,
    esc: &Escalation,
    reports: &[EstimatorReport],
    trace: &[ObjectiveStep],
) {
    let mags = &reports[0].breakdown.magnitudes;
    println!(
        "one output of D = {} synthetic terms t_d ~ N(0, 1), seed {}",
        args.d, args.seed
    );
    println!(
        "sensitivity: term {} moved over [{}, {}] ({} points), SC(v) = T(t with t_{} = v) − T(t)",
        args.outlier_index, args.grid_min, args.grid_max, args.grid_points, args.outlier_index
    );
    println!(
        "breakdown: first m terms set to M = {:.1e} … {:.1e} (×{:e}); broken when the bias grows ≥ M^{BREAKDOWN_SLOPE}",
        mags[0],
        mags[mags.len() - 1],
        esc.ratio
    );
    println!(
        "{:<46} {:>11} {:>11} {:>11} {:>11} {:>13} {:>5} {:>7}",
        "estimator", "T(t)", "min SC", "max SC", "max|SC|", "bias(m=1,M_J)", "m*", "m*/D"
    );
    for r in reports {
        let sc = r.influence.iter().map(|p| p.sc);
        let (lo, hi) = sc.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let bias1 = r.breakdown.rows[0].bias[mags.len() - 1];
        let (m, frac) = match (r.breakdown.m, r.breakdown.fraction) {
            (Some(m), Some(f)) => (m.to_string(), format!("{f:.4}")),
            _ => ("none".into(), "-".into()),
        };
        println!(
            "{:<46} {:>11.4e} {:>11.4e} {:>11.4e} {:>11.4e} {:>13.4e} {:>5} {:>7}",
            r.label, r.clean_output, lo, hi, r.gross_error_sensitivity, bias1, m, frac
        );
    }
    let (start, end) = (&trace[0], &trace[trace.len() - 1]);
    let decreasing = trace.windows(2).all(|s| s[1].objective <= s[0].objective);
    println!(
        "IRLS objective L(z) = Σ_d ρ(z/D − t_d) of {}: L(z⁰) = {:.6e} → L(z^{}) = {:.6e} (non-increasing: {})",
        reports[1].label,
        start.objective,
        end.k,
        end.objective,
        if decreasing { "yes" } else { "no" }
    );
}

fn print_layers(args: &AnalyzeArgs, layers: &[LayerNorms]) {
    let path = args.weights.as_ref().expect("layers come from --weights");
    println!(
        "operator norms of {} (‖W‖₂ by {}; conv weights as [O, C·kh·kw], the per-patch map):",
        path.display(),
        method_name()
    );
    println!(
        "{:<32} {:<18} {:<12} {:>12} {:>12}",
        "layer", "shape", "matrix", "‖W‖₂", "‖W‖∞"
    );
    for l in layers {
        println!(
            "{:<32} {:<18} {:<12} {:>12.6} {:>12.6}",
            l.name,
            format!("{:?}", l.shape),
            format!("{}×{}", l.matrix[0], l.matrix[1]),
            l.spectral.value,
            l.inf
        );
    }
}

/// `"svd"` with the `linalg` feature, else the power iteration and its tolerance.
fn method_name() -> String {
    if cfg!(feature = "linalg") {
        "svd (LAPACK)".into()
    } else {
        format!(
            "power iteration on WᵀW, relative tol {:e}",
            lipschitz::POWER_TOL
        )
    }
}

fn report_json(
    args: &AnalyzeArgs,
    cfg: &NrpmConfig,
    terms: &[f64],
    reports: &[EstimatorReport],
    trace: &[ObjectiveStep],
    layers: Option<&[LayerNorms]>,
) -> Value {
    json!({
        "command": "analyze",
        "settings": settings_json(args, cfg),
        "terms": terms,
        "estimators": reports,
        "objective_trace": trace,
        "layers": layers.map(|entries| json!({
            "path": args.weights.as_ref().map(|p| p.display().to_string()),
            "spectral_method": if cfg!(feature = "linalg") { "svd" } else { "power_iteration" },
            "power_tol": lipschitz::POWER_TOL,
            "power_max_iter": lipschitz::POWER_MAX_ITER,
            "entries": entries,
        })),
    })
}

fn settings_json(args: &AnalyzeArgs, cfg: &NrpmConfig) -> Value {
    json!({
        "operator": cfg, "norm": cfg.norm().name(), "k": cfg.k(), "eps_irls": cfg.eps(),
        "lambda": cfg.lambda(), "group": cfg.groups(),
        "d": args.d, "seed": args.seed, "terms_distribution": "N(0, 1)",
        "outlier_index": args.outlier_index,
        "grid_min": args.grid_min, "grid_max": args.grid_max, "grid_points": args.grid_points,
        "escalation_ratio": args.escalation_ratio, "escalation_steps": args.escalation_steps,
        "breakdown_slope": BREAKDOWN_SLOPE,
        "outliers": "the first m terms set to +M",
        "sensitivity": "SC(v) = T(t with t_j = v) − T(t)",
        "weights": args.weights.as_ref().map(|p| p.display().to_string()),
        "json": args.json.as_ref().map(|p| p.display().to_string()),
        "linalg_feature": cfg!(feature = "linalg"),
    })
}
