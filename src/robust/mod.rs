//! Robust-statistics analysis of one NRPM output: sensitivity curves, empirical breakdown
//! points, the objective IRLS decreases, and the operator norms (Lipschitz constants) of LPM
//! layers.
//!
//! One output of a layer aggregates D terms `t_d = a_d·x_d` (PyTorch: `x [B, D]`, a row
//! `weight [o, :]`). Everything here studies that aggregation on its own, as an estimator of
//! the D terms at the operator's sum scale:
//!
//! ```text
//! T(t_1, …, t_D)        one output, the operator applied to x = t, weight row = (1, …, 1)
//! Lpm:   T = Σ_d t_d                                 (D · mean)
//! Nrpm:  T = λ·z⁰ + (1 − λ)·zᴷ                       (Algorithm 1, K IRLS steps, any norm)
//! Lad:   T = D · median_d t_d                        (the K → ∞, ε → 0 limit of L1)
//! ```
//!
//! - [`objective`](mod@objective): `L(z) = Σ_d ρ(z/D − t_d)`, the function IRLS with weight `w = ψ(r)/r`
//!   decreases (L1: the smoothed `L_ε`), and its values along the operator's iterates;
//! - [`influence`]: the sensitivity curve of one output to one term moved over a grid;
//! - [`breakdown`]: the empirical finite-sample breakdown point under escalating outliers;
//! - [`lipschitz`]: `‖W‖₂` and `‖W‖∞` of a checkpoint's linear and conv weights.
//!
//! Theory (PAPER.md §3.2, our reconstruction): the mean's influence is unbounded and its
//! breakdown point is 1/D; the median's influence is bounded and its breakdown point is
//! ⌊(D + 1)/2⌋/D; NRPM with finite K starts from the mean, so one term still drives it past any
//! bound (breakdown point 1/D), but its slope in that term is damped, by 1 + (D − 1)² in the
//! first IRLS step and by about D − 1 in each further one.

pub mod breakdown;
pub mod influence;
pub mod lipschitz;
pub mod objective;
#[cfg(feature = "linalg")]
mod svd;

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::nrpm::{self, lad, NrpmConfig};

pub use breakdown::{breakdown_point, BiasRow, BreakdownEstimate, Escalation, BREAKDOWN_SLOPE};
pub use influence::{gross_error_sensitivity, linear_grid, sensitivity_curve, SensitivityPoint};
pub use lipschitz::{
    inf_norm, layer_norms, spectral_norm, spectral_norm_power, spectral_norm_svd, LayerNorms,
    SpectralMethod, SpectralNorm,
};
pub use objective::{objective, objective_trace, smoothed_lad_objective, ObjectiveStep};

/// One output of a layer seen as an estimator of its D terms (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", content = "config", rename_all = "lowercase")]
pub enum Estimator {
    /// Linear pattern matching: `T = Σ_d t_d`.
    Lpm,
    /// The NRPM operator with this configuration (norm, K, ε, λ and groups all apply).
    Nrpm(NrpmConfig),
    /// The exact least-absolute-deviation limit `T = D · median_d t_d` ([`lad::lad_sum`]).
    Lad,
}

impl Estimator {
    /// A short label: `lpm`, `lad`, or `nrpm(l1, K=3, eps=0.001, lambda=0, groups=1)`.
    pub fn label(&self) -> String {
        match self {
            Estimator::Lpm => "lpm".into(),
            Estimator::Lad => "lad".into(),
            Estimator::Nrpm(c) => format!(
                "nrpm({}, K={}, eps={}, lambda={}, groups={})",
                c.norm().name(),
                c.k(),
                c.eps(),
                c.lambda(),
                c.groups()
            ),
        }
    }

    /// The output `T(t)` for the D terms `t`.
    ///
    /// # Errors
    /// [`Error::Config`] if `terms` is empty (or the groups do not divide D);
    /// [`Error::NonFinite`] on NaN or ±Inf; [`Error::Overflow`] if the output overflows.
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// use nrpm::robust::Estimator;
    /// let t = [1.0, 2.0, 3.0, 100.0];
    /// assert_eq!(Estimator::Lpm.estimate(&t)?, 106.0);
    /// assert_eq!(Estimator::Lad.estimate(&t)?, 4.0 * 2.5);
    /// # Ok(()) }
    /// ```
    pub fn estimate(&self, terms: &[f64]) -> Result<f64> {
        check_terms(terms)?;
        match self {
            Estimator::Lpm => {
                let z: f64 = terms.iter().sum();
                nrpm::check_overflow("robust::Estimator::estimate", &[z][..])?;
                Ok(z)
            }
            Estimator::Lad => lad::lad_sum(&mut terms.to_vec()),
            Estimator::Nrpm(cfg) => {
                let x = Array2::from_shape_vec((1, terms.len()), terms.to_vec())
                    .expect("one row of D terms");
                let ones = Array2::ones((1, terms.len()));
                let (y, _) = nrpm::forward(x.view(), ones.view(), None, cfg)?;
                Ok(y[[0, 0]])
            }
        }
    }
}

/// The largest D [`synthetic_terms`] accepts: a breakdown table costs O(D²·J·K) operator
/// work (D contamination levels × J magnitudes × one D-term output each).
pub const MAX_SYNTHETIC_TERMS: usize = 10_000;

/// D synthetic terms `t_d ~ N(0, 1)`, i.i.d., drawn from `StdRng` seeded with `seed`: the same
/// seed gives the same terms.
///
/// # Errors
/// [`Error::Config`] if `d == 0` or `d >` [`MAX_SYNTHETIC_TERMS`].
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// let a = nrpm::robust::synthetic_terms(8, 7)?;
/// assert_eq!(a, nrpm::robust::synthetic_terms(8, 7)?);
/// assert_ne!(a, nrpm::robust::synthetic_terms(8, 8)?);
/// # Ok(()) }
/// ```
pub fn synthetic_terms(d: usize, seed: u64) -> Result<Vec<f64>> {
    if d == 0 || d > MAX_SYNTHETIC_TERMS {
        return Err(Error::config("d", d, "must be 1 to 10000 terms"));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    Ok((0..d).map(|_| StandardNormal.sample(&mut rng)).collect())
}

/// Checks that `terms` is a non-empty list of finite numbers.
fn check_terms(terms: &[f64]) -> Result<()> {
    if terms.is_empty() {
        return Err(Error::config("D", 0, "an output needs at least one term"));
    }
    nrpm::check_finite("terms", terms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nrpm::Norm;

    #[test]
    fn estimators_agree_on_equal_terms() {
        let cfg = NrpmConfig::builder()
            .norm(Norm::L1)
            .k(3)
            .eps(1e-3)
            .lambda(0.0)
            .build()
            .unwrap();
        for est in [Estimator::Lpm, Estimator::Lad, Estimator::Nrpm(cfg)] {
            let z = est.estimate(&[2.5; 6]).unwrap();
            assert!((z - 15.0).abs() < 1e-12, "{}: {z}", est.label());
        }
    }

    #[test]
    fn nrpm_estimator_is_the_operator_on_one_row() {
        let cfg = NrpmConfig::builder()
            .norm(Norm::L1)
            .k(30)
            .eps(1e-9)
            .lambda(0.0)
            .build()
            .unwrap();
        let t = [0.1, -0.4, 0.3, 50.0, 0.2];
        let z = Estimator::Nrpm(cfg).estimate(&t).unwrap();
        assert!((z - 5.0 * 0.2).abs() < 1e-3, "{z}"); // near D·median
        let lpm = Estimator::Nrpm(NrpmConfig::lpm()).estimate(&t).unwrap();
        assert!((lpm - t.iter().sum::<f64>()).abs() < 1e-12);
    }

    #[test]
    fn estimate_rejects_empty_and_non_finite_terms() {
        for est in [Estimator::Lpm, Estimator::Lad] {
            assert!(matches!(est.estimate(&[]), Err(Error::Config { .. })));
            assert!(matches!(
                est.estimate(&[1.0, f64::NAN]),
                Err(Error::NonFinite { .. })
            ));
        }
        assert!(matches!(
            Estimator::Lpm.estimate(&[f64::MAX, f64::MAX]),
            Err(Error::Overflow { .. })
        ));
    }

    #[test]
    fn synthetic_terms_are_seeded_standard_normal() {
        assert!(synthetic_terms(0, 0).is_err());
        assert!(synthetic_terms(MAX_SYNTHETIC_TERMS + 1, 0).is_err());
        let t = synthetic_terms(MAX_SYNTHETIC_TERMS, 3).unwrap();
        let mean = t.iter().sum::<f64>() / t.len() as f64;
        let var = t.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / t.len() as f64;
        // 5 standard errors with n = 10⁴: 5/√n = 0.05 for the mean, 5·√(2/n) ≈ 0.071 for the
        // variance.
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.071,
            "{mean} {var}"
        );
    }
}
