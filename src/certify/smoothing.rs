//! Randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019), with the semantics of their
//! `code/core.py`: CERTIFY and PREDICT of the smoothed classifier
//! `g(x) = argmax_c P(f(x + δ) = c)`, `δ ~ N(0, σ²I)`.
//!
//! ```text
//! CERTIFY(x, n0, n, α)
//!   counts0 = class counts of f(x + δ_i), i = 1..n0          (selection draws)
//!   ĉ       = argmax counts0                                  (first maximum on ties)
//!   counts  = class counts of f(x + δ_i), i = 1..n            (fresh estimation draws)
//!   p̲       = Beta⁻¹(α; counts[ĉ], n − counts[ĉ] + 1)          (0 when counts[ĉ] = 0)
//!             the one-sided (1 − α) Clopper–Pearson lower bound of P(f(x + δ) = ĉ)
//!   abstain if p̲ < ½, else (ĉ, R = σ·Φ⁻¹(p̲))
//! PREDICT(x, n, α)
//!   counts of n draws; c₁, c₂ the top two; abstain unless the two-sided binomial test of
//!   counts[c₁] against counts[c₁] + counts[c₂] trials at p = ½ has p-value ≤ α
//! ```
//!
//! With probability ≥ 1 − α over the draws, a non-abstained CERTIFY answer is correct about
//! g: `g(x') = ĉ` for every `‖x' − x‖₂ < R` (Cohen et al., Theorem 1;
//! proofs/15-randomized-smoothing.md). The noise is not clipped to [0, 1], as theirs.
//!
//! Every draw is named: noisy copy s of phase p (selection, estimation, prediction) of the
//! image with dataset index i takes its C·H·W standard normals from a generator seeded with
//! `derive(seed, [stream::SMOOTHING, i, p, s])`. Figures therefore depend neither on the batch
//! size, nor on the thread count, nor on how the images are split between runs. Noisy copies
//! go through the model in batches (the fused operator, or CUDA for a model on a GPU), several
//! batches at a time, one per free core ([`sample_counts`]).

use std::time::Instant;

use ndarray::{Array4, ArrayView3, Axis};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, Binomial, ContinuousCDF, DiscreteCDF, Normal};

use crate::certify::noise::ChaChaStream;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::Classifier;
use crate::progress::Progress;
use crate::real::Real;
use crate::report::stats::Proportion;
use crate::seeds::{derive, stream};

/// The settings of randomized smoothing. Deserialising checks them as
/// [`SmoothingConfig::validate`] does.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SmoothingFields")]
pub struct SmoothingConfig {
    /// Noise standard deviation σ > 0.
    pub sigma: f64,
    /// Selection draws n0 ≥ 1.
    pub n0: usize,
    /// Estimation draws n ≥ 1.
    pub n: usize,
    /// Failure probability α ∈ (0, 1).
    pub alpha: f64,
    /// Noisy copies per forward pass (figures do not depend on it).
    pub batch: usize,
    /// Seed of every draw.
    pub seed: u64,
}

#[derive(Deserialize)]
struct SmoothingFields {
    sigma: f64,
    n0: usize,
    n: usize,
    alpha: f64,
    batch: usize,
    seed: u64,
}

impl TryFrom<SmoothingFields> for SmoothingConfig {
    type Error = Error;
    fn try_from(f: SmoothingFields) -> Result<Self> {
        let c = SmoothingConfig {
            sigma: f.sigma,
            n0: f.n0,
            n: f.n,
            alpha: f.alpha,
            batch: f.batch,
            seed: f.seed,
        };
        c.validate().map(|_| c)
    }
}

impl Default for SmoothingConfig {
    /// Cohen et al.'s settings: σ = 0.25, n0 = 100, n = 100 000, α = 0.001; batches of 1000,
    /// seed 0.
    fn default() -> Self {
        Self {
            sigma: 0.25,
            n0: 100,
            n: 100_000,
            alpha: 0.001,
            batch: 1000,
            seed: 0,
        }
    }
}

impl SmoothingConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::Config`] for σ ≤ 0 or not finite, n0 = 0, n = 0, α outside (0, 1), batch 0.
    pub fn validate(&self) -> Result<()> {
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return Err(Error::config("sigma", self.sigma, "must be finite and > 0"));
        }
        if self.n0 == 0 {
            return Err(Error::config("n0", 0, "needs at least one selection draw"));
        }
        if self.n == 0 {
            return Err(Error::config(
                "samples",
                0,
                "needs at least one estimation draw",
            ));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(Error::config("alpha", self.alpha, "must be in (0, 1)"));
        }
        if self.batch == 0 {
            return Err(Error::config("batch", 0, "must be at least 1"));
        }
        Ok(())
    }
}

/// Which draws of an image: CERTIFY's selection and estimation, PREDICT's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Phase {
    /// The n0 draws that choose ĉ.
    Selection = 0,
    /// The n draws that estimate P(f(x + δ) = ĉ).
    Estimation = 1,
    /// PREDICT's n draws.
    Prediction = 2,
}

/// The one-sided (1 − α) Clopper–Pearson lower bound of a success probability from `count`
/// successes in `n` trials: `Beta⁻¹(α; count, n − count + 1)`, 0 when `count = 0` (Cohen's
/// `proportion_confint(count, n, alpha=2α, method="beta")[0]`).
///
/// # Errors
/// [`Error::Config`] for n = 0, count > n, or α outside (0, 1).
///
/// ```
/// let p = nrpm::certify::smoothing::lower_confidence_bound(100_000, 100_000, 0.001)?;
/// assert!((p - 0.9999309248).abs() < 1e-10); // = 0.001^(1/100000)
/// # Ok::<(), nrpm::Error>(())
/// ```
pub fn lower_confidence_bound(count: usize, n: usize, alpha: f64) -> Result<f64> {
    if n == 0 || count > n {
        return Err(Error::config(
            "count of n",
            format!("{count} of {n}"),
            "needs n ≥ 1 and count ≤ n",
        ));
    }
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(Error::config("alpha", alpha, "must be in (0, 1)"));
    }
    if count == 0 {
        return Ok(0.0);
    }
    let beta = Beta::new(count as f64, (n - count + 1) as f64).map_err(|_| {
        Error::config(
            "count of n",
            format!("{count} of {n}"),
            "no Beta distribution",
        )
    })?;
    Ok(beta.inverse_cdf(alpha))
}

/// The two-sided binomial test of `k` successes in `n` trials against p = ½ (scipy's
/// `binom_test(k, n, 0.5)`): the probability of an outcome at most as likely as k, which for
/// p = ½ is `min(1, 2·P(X ≤ min(k, n − k)))`.
///
/// # Errors
/// [`Error::Config`] for n = 0 or k > n.
///
/// ```
/// use nrpm::certify::smoothing::binomial_p_value;
/// assert!((binomial_p_value(10, 10)? - 2.0 * 0.5f64.powi(10)).abs() < 1e-15);
/// assert_eq!(binomial_p_value(5, 10)?, 1.0);
/// # Ok::<(), nrpm::Error>(())
/// ```
pub fn binomial_p_value(k: usize, n: usize) -> Result<f64> {
    if n == 0 || k > n {
        return Err(Error::config(
            "k of n",
            format!("{k} of {n}"),
            "needs n ≥ 1 and k ≤ n",
        ));
    }
    if 2 * k == n {
        return Ok(1.0);
    }
    let tail = Binomial::new(0.5, n as u64)
        .map_err(|_| Error::config("n", n, "no binomial distribution"))?
        .cdf(k.min(n - k) as u64);
    Ok((2.0 * tail).min(1.0))
}

/// The certified L2 radius `σ·Φ⁻¹(p̲)` for `p̲ ≥ ½`.
fn radius(sigma: f64, p_lower: f64) -> f64 {
    sigma * Normal::standard().inverse_cdf(p_lower)
}

/// Class counts of `f(x + δ)` over `num` noisy copies of image `x [C, H, W]` (dataset index
/// `image`, draws of `phase`), in batches of `cfg.batch`.
///
/// The batches are independent (each copy's noise is named by its index), so they run in
/// parallel, each on whichever core is free, and their counts are added: the result does not
/// depend on the order. Within a batch the forward pass is parallel too (rayon steals its
/// tasks when a core has no batch of its own), so one batch per core keeps both busy through
/// the sequential parts of a forward pass (input checks, the λ mix, allocation).
///
/// # Errors
/// Model errors; [`Error::Config`] when the model predicts a class ≥ its number of classes.
pub fn sample_counts<T: Real, C: Classifier<T> + Sync + ?Sized>(
    model: &C,
    x: ArrayView3<T>,
    image: usize,
    phase: Phase,
    num: usize,
    cfg: &SmoothingConfig,
) -> Result<Vec<usize>> {
    let classes = model.classes();
    let x = x.as_standard_layout();
    let x = x.view();
    let per_batch: Vec<Vec<usize>> = (0..num.div_ceil(cfg.batch))
        .into_par_iter()
        .map(|k| {
            let start = k * cfg.batch;
            let size = cfg.batch.min(num - start);
            let batch = noisy_copies(x, image, phase, start, size, cfg);
            model.predict(batch.view())
        })
        .collect::<Result<_>>()?;
    let mut counts = vec![0; classes];
    for p in per_batch.into_iter().flatten() {
        *counts
            .get_mut(p)
            .ok_or_else(|| Error::config("prediction", p, "is not a class of the model"))? += 1;
    }
    Ok(counts)
}

/// Noisy copies `start..start + size` of image `x [C, H, W]` (standard layout), `[size, C, H,
/// W]`: copy s is `x + σ·δ_s`, δ_s the C·H·W standard normals of the generator seeded with
/// `derive(seed, [SMOOTHING, image, phase, s])`.
fn noisy_copies<T: Real>(
    x: ArrayView3<T>,
    image: usize,
    phase: Phase,
    start: usize,
    size: usize,
    cfg: &SmoothingConfig,
) -> Array4<T> {
    let (c, h, w) = x.dim();
    let xs = x.to_slice().expect("standard layout");
    let mut batch = Array4::<T>::zeros((size, c, h, w));
    batch
        .as_slice_mut()
        .expect("fresh array")
        .par_chunks_mut((c * h * w).max(1))
        .enumerate()
        .for_each(|(i, copy)| {
            let s = (start + i) as u64;
            let seed = derive(
                cfg.seed,
                &[stream::SMOOTHING, image as u64, phase as u64, s],
            );
            if crate::nrpm::simd::avx512_active() {
                add_noise(&mut ChaChaStream::seed_from_u64(seed), xs, cfg.sigma, copy);
            } else {
                add_noise(&mut StdRng::seed_from_u64(seed), xs, cfg.sigma, copy);
            }
        });
    batch
}

/// `copy = x + σ·δ`, δ the next standard normals of `rng`. [`ChaChaStream`] and `StdRng`
/// give the same δ for one seed; the first is faster where AVX-512 runs.
#[inline]
fn add_noise<T: Real, R: Rng>(rng: &mut R, x: &[T], sigma: f64, copy: &mut [T]) {
    for (v, &x) in copy.iter_mut().zip(x) {
        let e: f64 = StandardNormal.sample(rng);
        *v = x + T::of(sigma * e);
    }
}

/// The first maximum of `counts`.
fn top(counts: &[usize]) -> usize {
    let best = counts.iter().copied().max().unwrap_or(0);
    counts.iter().position(|&c| c == best).unwrap_or(0)
}

/// CERTIFY for one image `x [C, H, W]` with dataset index `image`: `(Some(ĉ), R)`, or
/// `(None, 0)` when it abstains.
///
/// # Errors
/// [`Error::Config`] for invalid settings; model errors.
pub fn certify<T: Real, C: Classifier<T> + Sync + ?Sized>(
    model: &C,
    x: ArrayView3<T>,
    image: usize,
    cfg: &SmoothingConfig,
) -> Result<(Option<usize>, f64)> {
    cfg.validate()?;
    let selection = sample_counts(model, x, image, Phase::Selection, cfg.n0, cfg)?;
    let chosen = top(&selection);
    let estimation = sample_counts(model, x, image, Phase::Estimation, cfg.n, cfg)?;
    let p_lower = lower_confidence_bound(estimation[chosen], cfg.n, cfg.alpha)?;
    Ok(match p_lower < 0.5 {
        true => (None, 0.0),
        false => (Some(chosen), radius(cfg.sigma, p_lower)),
    })
}

/// PREDICT for one image: the top class of n draws, or `None` (abstain) when the binomial
/// test cannot tell it from the runner-up at level α.
///
/// # Errors
/// [`Error::Config`] for invalid settings; model errors.
pub fn predict<T: Real, C: Classifier<T> + Sync + ?Sized>(
    model: &C,
    x: ArrayView3<T>,
    image: usize,
    cfg: &SmoothingConfig,
) -> Result<Option<usize>> {
    cfg.validate()?;
    let counts = sample_counts(model, x, image, Phase::Prediction, cfg.n, cfg)?;
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    let (c1, c2) = (counts[order[0]], order.get(1).map_or(0, |&i| counts[i]));
    Ok((binomial_p_value(c1, c1 + c2)? <= cfg.alpha).then_some(order[0]))
}

/// One certified image, with Cohen's columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmoothedRecord {
    /// Index of the image in the dataset.
    pub idx: usize,
    /// Its label.
    pub label: usize,
    /// The smoothed prediction, `None` when CERTIFY abstained.
    pub predict: Option<usize>,
    /// The certified L2 radius (0 when abstained).
    pub radius: f64,
    /// Whether the prediction is the label.
    pub correct: bool,
    /// Wall time of this image (s; Cohen's `time` column).
    pub time: f64,
}

/// CERTIFY for the images of `data` at `indices` (in that order).
///
/// # Errors
/// [`Error::Config`] for invalid settings or an index out of range; model errors.
pub fn certify_dataset<T: Real, C: Classifier<T> + Sync + ?Sized>(
    model: &C,
    data: &Dataset,
    indices: &[usize],
    cfg: &SmoothingConfig,
    progress: &mut dyn Progress,
) -> Result<Vec<SmoothedRecord>> {
    cfg.validate()?;
    if let Some(&bad) = indices.iter().find(|&&i| i >= data.len()) {
        return Err(Error::config(
            "image index",
            bad,
            "must be below the number of images",
        ));
    }
    progress.start(
        &format!("smoothing σ = {}", cfg.sigma),
        indices.len() as u64,
    );
    let mut out = Vec::with_capacity(indices.len());
    for &i in indices {
        let clock = Instant::now();
        let x = data
            .images()
            .index_axis(Axis(0), i)
            .mapv(|v| T::of(f64::from(v)));
        let (predict, radius) = certify(model, x.view(), i, cfg)?;
        let label = data.labels()[i];
        out.push(SmoothedRecord {
            idx: i,
            label,
            predict,
            radius,
            correct: predict == Some(label),
            time: clock.elapsed().as_secs_f64(),
        });
        progress.advance(1);
    }
    progress.finish("");
    Ok(out)
}

/// Certified accuracy at one radius.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RadiusRow {
    /// The radius r.
    pub budget: f64,
    /// Images correct, not abstained, with radius ≥ r.
    pub certified: usize,
    /// `100·certified / n` over all evaluated images (%).
    pub certified_accuracy: f64,
}

/// Certified accuracy at each radius (an image counts when its prediction is correct, not
/// abstained, and its radius ≥ r), over all records.
///
/// ```
/// use nrpm::certify::smoothing::{certified_accuracy, SmoothedRecord};
/// let r = |radius: f64, correct: bool| SmoothedRecord {
///     idx: 0, label: 1, predict: Some(if correct { 1 } else { 2 }), radius, correct, time: 0.0 };
/// let rows = certified_accuracy(&[r(0.3, true), r(0.9, true), r(1.2, false)], &[0.0, 0.5]);
/// assert_eq!((rows[0].certified, rows[1].certified), (2, 1));
/// assert!((rows[1].certified_accuracy - 100.0 / 3.0).abs() < 1e-12);
/// ```
pub fn certified_accuracy(records: &[SmoothedRecord], radii: &[f64]) -> Vec<RadiusRow> {
    let n = records.len().max(1) as f64;
    radii
        .iter()
        .map(|&r| {
            let certified = records
                .iter()
                .filter(|x| x.correct && x.radius >= r)
                .count();
            RadiusRow {
                budget: r,
                certified,
                certified_accuracy: 100.0 * certified as f64 / n,
            }
        })
        .collect()
}

/// [`certified_accuracy`] as proportions of the records, each with its 95 % Clopper–Pearson
/// interval.
///
/// # Errors
/// [`Error::Config`] when there are no records.
pub fn certified_proportions(records: &[SmoothedRecord], radii: &[f64]) -> Result<Vec<Proportion>> {
    certified_accuracy(records, radii)
        .iter()
        .map(|r| Proportion::new(r.certified, records.len()))
        .collect()
}

/// The records as Cohen's `certify.py` writes them: tab-separated
/// `idx label predict radius correct time`, −1 for an abstention, radius with 3 significant
/// digits, correct as 0/1, time as `h:mm:ss.ffffff`.
pub fn tsv(records: &[SmoothedRecord]) -> String {
    let mut out = String::from("idx\tlabel\tpredict\tradius\tcorrect\ttime\n");
    for r in records {
        let predict = r.predict.map_or("-1".to_string(), |p| p.to_string());
        out += &format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            r.idx,
            r.label,
            predict,
            three_significant(r.radius),
            u8::from(r.correct),
            timedelta(r.time)
        );
    }
    out
}

/// Python's `"{:.3}".format(v)` for the radii Cohen prints (general format, 3 significant
/// digits).
fn three_significant(v: f64) -> String {
    if v == 0.0 {
        return "0.0".into();
    }
    let exp = v.abs().log10().floor() as i32;
    if (-4..2).contains(&exp) {
        let decimals = (2 - exp).max(0) as usize;
        let s = format!("{v:.decimals$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let mantissa = v / 10f64.powi(exp);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa:.2}e{sign}{:02}", exp.abs())
    }
}

/// Python's `str(datetime.timedelta(seconds=s))`: `h:mm:ss.ffffff` (no fraction when whole).
fn timedelta(seconds: f64) -> String {
    let micros = (seconds.max(0.0) * 1e6).round() as u64;
    let (s, us) = (micros / 1_000_000, micros % 1_000_000);
    let base = format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    match us {
        0 => base,
        _ => format!("{base}.{us:06}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python() {
        assert_eq!(three_significant(0.6744897), "0.674");
        assert_eq!(three_significant(1.0), "1.0");
        assert_eq!(three_significant(0.25), "0.25");
        assert_eq!(three_significant(0.0), "0.0");
        assert_eq!(three_significant(12.0), "12.0");
        assert_eq!(three_significant(123.4), "1.23e+02");
        assert_eq!(three_significant(0.00012345), "0.000123");
        assert_eq!(timedelta(1.5), "0:00:01.500000");
        assert_eq!(timedelta(3725.0), "1:02:05");
    }

    #[test]
    fn bad_settings_are_errors() {
        let ok = SmoothingConfig::default();
        for bad in [
            SmoothingConfig { sigma: 0.0, ..ok },
            SmoothingConfig { sigma: -1.0, ..ok },
            SmoothingConfig { n0: 0, ..ok },
            SmoothingConfig { n: 0, ..ok },
            SmoothingConfig { alpha: 0.0, ..ok },
            SmoothingConfig { alpha: 1.0, ..ok },
            SmoothingConfig { batch: 0, ..ok },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn abstains_below_one_half_and_radius_grows_with_p() {
        assert!(lower_confidence_bound(0, 10, 0.001).unwrap() == 0.0);
        assert!(lower_confidence_bound(11, 10, 0.001).is_err());
        assert!(radius(0.5, 0.5).abs() < 1e-12);
        assert!(radius(0.5, 0.9) > radius(0.5, 0.8));
    }
}
