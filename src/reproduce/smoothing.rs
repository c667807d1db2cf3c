//! §5.4-style certified robustness by randomized smoothing (the paper evaluates it; its
//! settings, numbers and code were not released, PAPER.md): the LPM MLP against the Paradigm 1,
//! 2 and 3 NRPM MLPs, each smoothed at σ ∈ {0.25, 0.5}.
//!
//! ```text
//! g(x) = argmax_c P(f(x + δ) = c),  δ ~ N(0, σ²I)                 (Cohen et al. 2019, CERTIFY)
//! n0 = 100 draws choose ĉ; n = 10 000 fresh draws count n_ĉ; p̲ = Clopper–Pearson lower bound
//! at level α = 0.001; radius σ·Φ⁻¹(p̲) when p̲ > ½, else abstain
//! cell(r) = #{correct, not abstained, radius ≥ r} / images, with its 95 % interval
//! ```
//!
//! The Paradigm 2 and 3 models are those of the `mlp-p2` and `mlp-p3` experiments (trained
//! here, or loaded with `--reuse-checkpoints`). None of the four was trained with Gaussian
//! noise (`nrpm train --noise-sd σ` does that).

use serde_json::json;

use crate::reproduce::mnist::P1_REFERENCE_LAMBDA;
use crate::reproduce::setup::{Checkpoint, Context, ModelSetup};
use crate::reproduce::table::{plain_budget, ResultTable, Row};
use crate::reproduce::{training, Body, Experiment};
use nrpm::certify::smoothing::{certified_proportions, certify_dataset, SmoothingConfig};
use nrpm::error::Result;
use nrpm::models::Model;
use nrpm::progress::Progress;

/// The noise levels (Cohen's two smallest).
pub const SIGMAS: [f64; 2] = [0.25, 0.5];
/// The L2 radii of the columns.
pub const RADII: [f64; 6] = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5];
/// Images certified: the first this many of the run's test images.
pub const IMAGES: usize = 100;
/// Estimation draws per image (Cohen: 100 000; 10 000 keeps the run in minutes and caps the
/// reachable radius at σ·Φ⁻¹(α^(1/n)) ≈ 3.2·σ).
pub const SAMPLES: usize = 10_000;

/// The models compared: label, setup and model.
type Subject = (String, ModelSetup, Model<f32>);

/// The experiment: one table per σ, one row per model.
///
/// # Errors
/// Data, checkpoint, training and model errors.
pub fn run(ctx: &mut Context, progress: &mut dyn Progress) -> Result<Body> {
    let subjects = subjects(ctx, progress)?;
    let test = ctx.mnist_test()?;
    let images: Vec<usize> = (0..IMAGES.min(test.len())).collect();
    let mut tables = Vec::new();
    for sigma in SIGMAS {
        let cfg = config(ctx, sigma);
        let mut table = empty_table(&cfg, images.len());
        for (label, setup, model) in &subjects {
            let clock = std::time::Instant::now();
            let records = certify_dataset(model, &test, &images, &cfg, progress)?;
            let accuracy = certified_proportions(&records, &RADII)?;
            let mut row = Row::new(label.clone(), setup.to_json(), &RADII, accuracy);
            row.lambdas = model.lambdas();
            row.seconds = clock.elapsed().as_secs_f64();
            let abstained = records.iter().filter(|r| r.predict.is_none()).count();
            table.notes.push(format!(
                "{label}: {abstained} of {} abstained; {:.2} s per image ({:.0} noisy samples/s).",
                images.len(),
                row.seconds / images.len() as f64,
                (images.len() * (cfg.n0 + cfg.n)) as f64 / row.seconds
            ));
            table.rows.push(row);
        }
        tables.push(table);
    }
    let cfg = config(ctx, SIGMAS[0]);
    Ok(Body {
        settings: json!({
            "model": "mlp3",
            "sigmas": SIGMAS,
            "radii": RADII,
            "images": images.len(),
            "n0": cfg.n0,
            "n": cfg.n,
            "alpha": cfg.alpha,
            "seed": cfg.seed,
            "models": subjects.iter().map(|(_, s, _)| s.to_json()).collect::<Vec<_>>(),
        }),
        tables,
        notes: vec![NOTE.into()],
        ..Body::default()
    })
}

/// What the experiment is and is not.
const NOTE: &str = "The paper reports certified robustness by randomized smoothing (§5.4) \
    without its settings, numbers or code, so there is nothing to compare with: these are ours \
    only. The four models are the Table 1 models as trained for clean and FGSM accuracy, none \
    with Gaussian noise, so low certified radii are expected; a smoothed classifier is only as \
    good as the base model under noise. The smoothed prediction needs no gradient, so gradient \
    masking cannot inflate these figures: every radius is a certificate (with probability \
    1 − α per image).";

/// Cohen's CERTIFY settings at σ, with [`SAMPLES`] estimation draws and the run's seed.
fn config(ctx: &Context, sigma: f64) -> SmoothingConfig {
    SmoothingConfig {
        sigma,
        n: SAMPLES,
        seed: ctx.options.seed,
        ..SmoothingConfig::default()
    }
}

/// LPM, Paradigm 1 (λ = [`P1_REFERENCE_LAMBDA`]), and the trained Paradigm 2 and 3 models.
fn subjects(ctx: &mut Context, progress: &mut dyn Progress) -> Result<Vec<Subject>> {
    let mut out = Vec::new();
    for (label, setup) in [
        (
            "LPM (vanilla)".to_string(),
            ModelSetup::lpm(Checkpoint::Mlp3),
        ),
        (
            format!("Paradigm 1, λ = {P1_REFERENCE_LAMBDA}"),
            ModelSetup::fixed(Checkpoint::Mlp3, P1_REFERENCE_LAMBDA),
        ),
    ] {
        let model = ctx.build(&setup)?;
        out.push((label, setup, model));
    }
    for exp in [Experiment::MlpP2, Experiment::MlpP3] {
        let (model, setup, label) = training::trained_model(exp, ctx, progress)?;
        out.push((label.to_string(), setup, model));
    }
    Ok(out)
}

/// The table of `cfg`'s σ, rows to come.
fn empty_table(cfg: &SmoothingConfig, images: usize) -> ResultTable {
    let SmoothingConfig {
        sigma,
        n0,
        n,
        alpha,
        ..
    } = *cfg;
    ResultTable {
        title: format!("Certified accuracy at L2 radius r, σ = {sigma}"),
        attack: format!(
            "randomized smoothing, CERTIFY (Cohen et al. 2019): σ = {sigma}, n0 = {n0}, \
             n = {n}, α = {alpha}, noise not clipped, on the first {images} test images; a \
             cell counts images predicted correctly, not abstained, with certified radius ≥ r"
        ),
        budget_label: "r".into(),
        budgets: RADII.to_vec(),
        budget_names: RADII.iter().map(|&r| radius_name(r)).collect(),
        paper_table: None,
        rows: Vec::new(),
        reference: None,
        notes: Vec::new(),
    }
}

/// `0` → `"0"` (a radius of 0 is not "clean": it is the smoothed classifier's accuracy).
fn radius_name(r: f64) -> String {
    match r == 0.0 {
        true => "0".into(),
        false => plain_budget(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radius_zero_is_not_called_clean() {
        assert_eq!(radius_name(0.0), "0");
        assert_eq!(radius_name(0.25), "0.25");
        let cfg = SmoothingConfig {
            sigma: 0.5,
            n: SAMPLES,
            ..SmoothingConfig::default()
        };
        let t = empty_table(&cfg, 7);
        assert_eq!(t.budget_names, ["0", "0.25", "0.5", "0.75", "1", "1.5"]);
        assert!(t.attack.contains("first 7 test images"), "{}", t.attack);
        assert!(
            t.attack.contains("σ = 0.5, n0 = 100, n = 10000, α = 0.001"),
            "{}",
            t.attack
        );
    }
}
