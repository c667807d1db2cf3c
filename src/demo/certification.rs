//! The demo's certification stage: lower bounds beside attacks, for LPM and Paradigm 2.
//!
//! ```text
//! smoothing  g(x) = argmax_c P(f(x + δ) = c), δ ~ N(0, σ²I) (Cohen et al., CERTIFY):
//!            cell(r) = #{correct, not abstained, certified L2 radius ≥ r} / images
//! bracket    at each L∞ ε:  verified % ≤ true robust % ≤ attacked %
//!            verified: CROWN for LPM (exact: this MLP has no activation), interval bounds
//!            through the IRLS steps for Paradigm 2; attacked: PGD restarts with the model's and
//!            its LPM twin's gradients; both in f64. An image certified and broken is an error.
//! ```

use serde::{Deserialize, Serialize};

use crate::demo::DemoConfig;
use nrpm::certify::bracket::{self, BracketRow, Method};
use nrpm::certify::falsify::{Falsifier, PgdRestarts};
use nrpm::certify::smoothing::{certified_proportions, certify_dataset};
use nrpm::data::Dataset;
use nrpm::error::Result;
use nrpm::models::Model;
use nrpm::progress::Progress;
use nrpm::report::markdown::Table;
use nrpm::report::stats::Proportion;
use nrpm::report::svg::{LineChart, Series};

/// PGD steps of the bracket's attack (per run; one run per gradient source).
pub const BRACKET_ATTACK_STEPS: usize = 20;

/// Certified accuracy at one radius.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RadiusPoint {
    /// The L2 radius r.
    pub radius: f64,
    /// Images certified at r, with the 95 % interval.
    pub accuracy: Proportion,
}

/// One model's smoothing curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmoothingCurve {
    /// The variant (`LPM`, `P2 learned λ`).
    pub name: String,
    /// One point per radius of the configuration.
    pub points: Vec<RadiusPoint>,
    /// Images where CERTIFY abstained.
    pub abstained: usize,
    /// Noisy copies classified per second.
    pub samples_per_second: f64,
    /// Wall time.
    pub seconds: f64,
}

/// The bracket at one budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BracketPoint {
    /// The L∞ budget ε.
    pub eps: f64,
    /// Images certified robust (the lower bound).
    pub verified: Proportion,
    /// Images correct and not broken by the attack (the upper bound).
    pub attacked: Proportion,
}

/// One model's bracket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BracketSummary {
    /// The variant.
    pub name: String,
    /// `crown` or `ibp`.
    pub method: String,
    /// The attack, in words.
    pub attack: String,
    /// One point per budget.
    pub points: Vec<BracketPoint>,
    /// Wall time (certificates and attack).
    pub seconds: f64,
}

/// Everything the stage measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Certification {
    /// LPM, then Paradigm 2.
    pub smoothing: Vec<SmoothingCurve>,
    /// LPM (CROWN), then Paradigm 2 (intervals).
    pub brackets: Vec<BracketSummary>,
}

/// Smoothing and the bracket for `lpm` and `p2` on the first images of `test`.
///
/// # Errors
/// Settings, model and certificate errors; [`nrpm::Error::Unsound`] when an image is certified
/// and broken (a bug, never a result).
pub(crate) fn certify(
    cfg: &DemoConfig,
    lpm: &Model<f32>,
    p2: &Model<f32>,
    test: &Dataset,
    progress: &mut dyn Progress,
) -> Result<Certification> {
    let models = [
        ("LPM", lpm, Method::Crown),
        ("P2 learned λ", p2, Method::Ibp),
    ];
    let mut smoothing = Vec::new();
    let mut brackets = Vec::new();
    for (name, model, method) in models {
        smoothing.push(smoothing_curve(cfg, name, model, test, progress)?);
        brackets.push(bracket_of(cfg, name, model, method, test, progress)?);
    }
    Ok(Certification {
        smoothing,
        brackets,
    })
}

/// CERTIFY on the first `smoothing_n` images, certified accuracy at each radius.
fn smoothing_curve(
    cfg: &DemoConfig,
    name: &str,
    model: &Model<f32>,
    test: &Dataset,
    progress: &mut dyn Progress,
) -> Result<SmoothingCurve> {
    let clock = std::time::Instant::now();
    let images: Vec<usize> = (0..cfg.smoothing_n).collect();
    let records = certify_dataset(model, test, &images, &cfg.smoothing, progress)?;
    let points = cfg
        .smoothing_radii
        .iter()
        .zip(certified_proportions(&records, &cfg.smoothing_radii)?)
        .map(|(&radius, accuracy)| RadiusPoint { radius, accuracy })
        .collect();
    let seconds = clock.elapsed().as_secs_f64();
    let samples = images.len() * (cfg.smoothing.n0 + cfg.smoothing.n);
    Ok(SmoothingCurve {
        name: name.to_string(),
        points,
        abstained: records.iter().filter(|r| r.predict.is_none()).count(),
        samples_per_second: samples as f64 / seconds.max(1e-9),
        seconds,
    })
}

/// The bracket of `model` (in f64) on the first `bracket_n` images; fails on a contradiction.
fn bracket_of(
    cfg: &DemoConfig,
    name: &str,
    model: &Model<f32>,
    method: Method,
    test: &Dataset,
    progress: &mut dyn Progress,
) -> Result<BracketSummary> {
    let clock = std::time::Instant::now();
    let data = test.first(cfg.bracket_n);
    let indices: Vec<usize> = (0..data.len()).collect();
    let falsifier = PgdRestarts {
        steps: BRACKET_ATTACK_STEPS,
        restarts: 1,
        lpm_gradients: true,
        seed: cfg.seed,
    };
    let model = model.to_precision::<f64>()?;
    let b = bracket::bracket(
        &model,
        &data,
        &indices,
        method,
        &cfg.bracket_budgets,
        &falsifier,
        cfg.eval_batch,
        progress,
    )?;
    b.check()?;
    let point = |r: &BracketRow| -> Result<BracketPoint> {
        Ok(BracketPoint {
            eps: r.budget,
            verified: Proportion::new(r.certified, r.n)?,
            attacked: Proportion::new(r.attacked_correct, r.n)?,
        })
    };
    Ok(BracketSummary {
        name: name.to_string(),
        method: method.name().to_string(),
        attack: Falsifier::<f64>::describe(&falsifier),
        points: b.rows.iter().map(point).collect::<Result<_>>()?,
        seconds: clock.elapsed().as_secs_f64(),
    })
}

/// The page's certification section.
pub(crate) fn markdown(c: &Certification, cfg: &DemoConfig) -> String {
    let s = &cfg.smoothing;
    let mut smoothing = Table::new(
        std::iter::once("variant".to_string())
            .chain(cfg.smoothing_radii.iter().map(|r| format!("r = {r}")))
            .chain(["abstained".to_string(), "noisy samples/s".to_string()]),
    );
    for curve in &c.smoothing {
        smoothing.row(
            std::iter::once(curve.name.clone())
                .chain(curve.points.iter().map(|p| p.accuracy.display()))
                .chain([
                    curve.abstained.to_string(),
                    format!("{:.0}", curve.samples_per_second),
                ]),
        );
    }
    let mut bracket = Table::new([
        "variant",
        "certificate",
        "ε",
        "verified (lower)",
        "attacked (upper)",
    ]);
    for b in &c.brackets {
        for p in &b.points {
            bracket.row([
                b.name.clone(),
                b.method.clone(),
                p.eps.to_string(),
                p.verified.display(),
                p.attacked.display(),
            ]);
        }
    }
    let attack = c
        .brackets
        .first()
        .map_or(String::new(), |b| b.attack.clone());
    format!(
        "## Certification: lower bounds beside attacks\n\n\
         Every figure above is an attack's *upper* bound on robust accuracy. Here are *lower* \
         bounds, which no attack can break.\n\n\
         **Randomized smoothing** (Cohen et al. 2019, CERTIFY; `nrpm certify --method \
         smoothing`): the smoothed classifier g(x) = argmax_c P(f(x + δ) = c), δ ~ N(0, σ²I), \
         σ = {sigma}, n0 = {n0}, n = {n}, α = {alpha}, on the first {images} test images. A cell \
         is the share of images predicted correctly with a certified L2 radius ≥ r (95 % \
         interval). With n = {n} draws the radius cannot exceed σ·Φ⁻¹(α^(1/n)); neither model \
         was trained with noise.\n\n{smoothing_table}\n![certified accuracy]({svg})\n\n\
         **The robustness bracket** (`nrpm certify --method crown|ibp`): on the first \
         {bracket_n} test images, the share certified robust in the L∞ ball (lower bound) \
         beside the share left correct by the attack (upper bound; {attack}); the true robust \
         accuracy lies between them (an image broken at a smaller ε counts as broken at every \
         larger one). CROWN is exact for the LPM MLP (it has no activation, so its margins \
         are affine in the image); through the NRPM layers the bounds are intervals of the IRLS \
         steps, sound but loose, so Paradigm 2's lower bound says little. No image was \
         certified and broken (the run stops with an error if one is).\n\n{bracket_table}\n\
         ![bracket]({bracket_svg})\n",
        sigma = s.sigma,
        n0 = s.n0,
        n = s.n,
        alpha = s.alpha,
        images = cfg.smoothing_n,
        smoothing_table = smoothing.render(),
        svg = SMOOTHING_SVG,
        bracket_n = cfg.bracket_n,
        bracket_table = bracket.render(),
        bracket_svg = BRACKET_SVG,
    )
}

/// File name of the smoothing chart.
pub const SMOOTHING_SVG: &str = "certified_smoothing.svg";
/// File name of the bracket chart.
pub const BRACKET_SVG: &str = "bracket.svg";

/// Certified accuracy against the L2 radius, one line per variant (95 % band).
pub(crate) fn smoothing_chart(c: &Certification, cfg: &DemoConfig) -> String {
    let series = c
        .smoothing
        .iter()
        .map(|curve| Series {
            name: curve.name.clone(),
            points: curve
                .points
                .iter()
                .map(|p| (p.radius, p.accuracy.percent))
                .collect(),
            band: Some(
                curve
                    .points
                    .iter()
                    .map(|p| (p.accuracy.lo, p.accuracy.hi))
                    .collect(),
            ),
            dashed: curve.name == "LPM",
        })
        .collect();
    LineChart {
        title: format!(
            "Randomized smoothing, σ = {}, n = {}: certified accuracy",
            cfg.smoothing.sigma, cfg.smoothing.n
        ),
        x_label: "L2 radius r".into(),
        y_label: "certified accuracy (%), 95 % interval shaded".into(),
        series,
        y_range: Some((0.0, 100.0)),
    }
    .to_svg()
}

/// Verified (solid) and attacked (dashed) accuracy against ε, per variant.
pub(crate) fn bracket_chart(c: &Certification) -> String {
    let mut series = Vec::new();
    for b in &c.brackets {
        let line = |what: &str, f: &dyn Fn(&BracketPoint) -> f64, dashed| Series {
            name: format!("{} {what}", b.name),
            points: b.points.iter().map(|p| (p.eps, f(p))).collect(),
            band: None,
            dashed,
        };
        series.push(line("verified", &|p| p.verified.percent, false));
        series.push(line("attacked", &|p| p.attacked.percent, true));
    }
    LineChart {
        title: "The robustness bracket: verified ≤ robust ≤ attacked".into(),
        x_label: "L∞ budget ε".into(),
        y_label: "accuracy (%)".into(),
        series,
        y_range: Some((0.0, 100.0)),
    }
    .to_svg()
}
