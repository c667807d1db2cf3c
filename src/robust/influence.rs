//! Sensitivity curves: how one output moves when one of its D terms is moved over a grid.
//!
//! ```text
//! t^(j←v)   = (t_1, …, t_{j−1}, v, t_{j+1}, …, t_D)      term j replaced by the value v
//! SC_j(v)   = D · ( T(t^(j←v))/D − T(t)/D )  =  T(t^(j←v)) − T(t)
//! γ*        = max_v |SC_j(v)| over the grid               (empirical gross-error sensitivity)
//! ```
//!
//! This is the *replacement* form of Tukey's sensitivity curve: the location estimate is
//! `T/D` (the operator works at the sum scale), and the factor D of the classical
//! `SC(v) = D·(T_D(t_1..t_{D−1}, v) − T_{D−1}(t_1..t_{D−1}))` is kept, but term j is replaced
//! rather than added, so D (and the operator, its groups included) stays the same. For large D
//! both forms approach the influence function `IF(v; T, F)` of PAPER.md §3.2(b).
//!
//! Expected shapes: LPM `SC(v) = v − t_j`, a line of slope 1 (unbounded); LAD bounded, and
//! constant once v is beyond the other terms; NRPM with finite K in between: close to LAD near
//! the data, with a slope far below 1 away from it (damped, though still unbounded).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::nrpm;
use crate::robust::Estimator;

/// One point of a sensitivity curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SensitivityPoint {
    /// The value v given to the moved term.
    pub value: f64,
    /// The output `T(t^(j←v))`.
    pub output: f64,
    /// `SC_j(v) = T(t^(j←v)) − T(t)`.
    pub sc: f64,
}

/// The sensitivity curve of `estimator` on the D `terms` when term `index` takes each value of
/// `grid` (see the module doc). Returns one point per grid value, in grid order.
///
/// # Errors
/// [`Error::Config`] if `terms` or `grid` is empty or `index ≥ D`; [`Error::NonFinite`] on
/// NaN or ±Inf in `terms` or `grid`; the estimator's own errors (e.g. groups not dividing D).
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::robust::{sensitivity_curve, Estimator};
/// let t = [0.5, -1.0, 2.0, 0.0];
/// let lpm = sensitivity_curve(&Estimator::Lpm, &t, 0, &[10.0, 100.0])?;
/// assert_eq!(lpm[1].sc, 100.0 - 0.5); // SC(v) = v − t_j
/// let lad = sensitivity_curve(&Estimator::Lad, &t, 0, &[10.0, 100.0])?;
/// assert_eq!(lad[0].sc, lad[1].sc); // bounded: constant beyond the data
/// # Ok(()) }
/// ```
pub fn sensitivity_curve(
    estimator: &Estimator,
    terms: &[f64],
    index: usize,
    grid: &[f64],
) -> Result<Vec<SensitivityPoint>> {
    let clean = estimator.estimate(terms)?;
    if index >= terms.len() {
        return Err(Error::config(
            "outlier index",
            index,
            "must be less than the number of terms D",
        ));
    }
    check_grid(grid)?;
    let mut moved = terms.to_vec();
    grid.iter()
        .map(|&value| {
            moved[index] = value;
            let output = estimator.estimate(&moved)?;
            Ok(SensitivityPoint {
                value,
                output,
                sc: output - clean,
            })
        })
        .collect()
}

/// The empirical gross-error sensitivity `γ* = max |SC(v)|` of a curve (0 for an empty one).
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::robust::{gross_error_sensitivity, sensitivity_curve, Estimator};
/// let curve = sensitivity_curve(&Estimator::Lpm, &[0.0, 1.0], 0, &[-3.0, 2.0])?;
/// assert_eq!(gross_error_sensitivity(&curve), 3.0);
/// # Ok(()) }
/// ```
pub fn gross_error_sensitivity(curve: &[SensitivityPoint]) -> f64 {
    curve.iter().map(|p| p.sc.abs()).fold(0.0, f64::max)
}

/// The most values [`linear_grid`] makes.
pub const MAX_GRID_POINTS: usize = 1_000_000;

/// `n` equally spaced values from `lo` to `hi`, both included (`[lo]` when `n = 1`).
///
/// # Errors
/// [`Error::Config`] if `n = 0` or `n >` [`MAX_GRID_POINTS`], `lo` or `hi` is not finite, or `lo > hi`.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// assert_eq!(nrpm::robust::linear_grid(-1.0, 1.0, 5)?, vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
/// # Ok(()) }
/// ```
pub fn linear_grid(lo: f64, hi: f64, n: usize) -> Result<Vec<f64>> {
    if n == 0 || n > MAX_GRID_POINTS {
        return Err(Error::config("grid points", n, "must be 1 to 1000000"));
    }
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(Error::config(
            "grid",
            format!("[{lo}, {hi}]"),
            "needs finite bounds with min ≤ max",
        ));
    }
    if n == 1 {
        return Ok(vec![lo]);
    }
    let step = (hi - lo) / (n - 1) as f64;
    Ok((0..n)
        .map(|i| if i + 1 == n { hi } else { lo + step * i as f64 })
        .collect())
}

fn check_grid(grid: &[f64]) -> Result<()> {
    if grid.is_empty() {
        return Err(Error::config("grid", "[]", "needs at least one value"));
    }
    nrpm::check_finite("grid", grid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nrpm::{Norm, NrpmConfig};
    use crate::robust::{breakdown, synthetic_terms};

    fn far_grid() -> Vec<f64> {
        linear_grid(-1e3, 1e3, 41).unwrap()
    }

    #[test]
    fn lpm_curve_is_the_line_v_minus_tj() {
        let t = synthetic_terms(16, 4).unwrap();
        for p in sensitivity_curve(&Estimator::Lpm, &t, 5, &far_grid()).unwrap() {
            assert!((p.sc - (p.value - t[5])).abs() < 1e-9, "{p:?}");
        }
    }

    /// γ* is the largest |SC| of the curve: for LPM on a grid around t_j, the farthest point.
    #[test]
    fn gross_error_sensitivity_is_the_largest_absolute_sensitivity() {
        let t = synthetic_terms(16, 4).unwrap();
        let curve = sensitivity_curve(&Estimator::Lpm, &t, 5, &far_grid()).unwrap();
        let want = (1e3 + t[5]).max(1e3 - t[5]);
        assert!((gross_error_sensitivity(&curve) - want).abs() < 1e-9);
        assert_eq!(gross_error_sensitivity(&[]), 0.0);
    }

    #[test]
    fn lad_curve_is_bounded_by_the_data_spread() {
        let t = synthetic_terms(15, 5).unwrap();
        let spread =
            t.iter().fold(f64::MIN, |a, &b| a.max(b)) - t.iter().fold(f64::MAX, |a, &b| a.min(b));
        let curve = sensitivity_curve(&Estimator::Lad, &t, 0, &far_grid()).unwrap();
        assert!(gross_error_sensitivity(&curve) <= 15.0 * spread);
        // Beyond the other terms the median no longer moves: the two tails are flat.
        assert_eq!(curve[0].sc, curve[1].sc);
        assert_eq!(curve[39].sc, curve[40].sc);
    }

    #[test]
    fn nrpm_curve_is_damped_but_not_flat() {
        let t = synthetic_terms(16, 6).unwrap();
        let lpm = sensitivity_curve(&Estimator::Lpm, &t, 2, &far_grid()).unwrap();
        let far = [1e8, 1e10];
        for k in [1, 2, 3] {
            let est = Estimator::Nrpm(
                NrpmConfig::builder()
                    .norm(Norm::L1)
                    .k(k)
                    .eps(1e-3)
                    .lambda(0.0)
                    .build()
                    .unwrap(),
            );
            let near = sensitivity_curve(&est, &t, 2, &far_grid()).unwrap();
            // At |v| = 1000 one step already divides the slope by 1 + (D − 1)² = 226
            // (asymptotically; the inliers still count here), so a factor 10 is safe.
            for i in [0, 40] {
                assert!(
                    near[i].sc.abs() < lpm[i].sc.abs() / 10.0,
                    "K = {k}: {:?}",
                    near[i]
                );
            }
            // Far from the data the curve is a line of slope D·c_K: small, but not 0
            // (finite K stays unbounded in one term, PAPER.md §3.2(c)).
            let c = sensitivity_curve(&est, &t, 2, &far).unwrap();
            let slope = (c[1].sc - c[0].sc) / (far[1] - far[0]);
            let want = 16.0 * breakdown::asymptotic_outlier_share(16, 1, k).unwrap();
            assert!(
                (slope / want - 1.0).abs() < 1e-2,
                "K = {k}: {slope} vs {want}"
            );
        }
    }

    #[test]
    fn curve_rejects_bad_inputs() {
        let t = [1.0, 2.0, 3.0];
        let est = Estimator::Lpm;
        assert!(matches!(
            sensitivity_curve(&est, &t, 3, &[0.0]),
            Err(Error::Config { .. })
        ));
        assert!(matches!(
            sensitivity_curve(&est, &t, 0, &[]),
            Err(Error::Config { .. })
        ));
        assert!(matches!(
            sensitivity_curve(&est, &[], 0, &[1.0]),
            Err(Error::Config { .. })
        ));
        assert!(matches!(
            sensitivity_curve(&est, &t, 0, &[f64::INFINITY]),
            Err(Error::NonFinite { .. })
        ));
        assert!(linear_grid(0.0, 1.0, 0).is_err());
        assert!(linear_grid(1.0, 0.0, 3).is_err());
        assert!(linear_grid(f64::NAN, 0.0, 3).is_err());
        assert_eq!(linear_grid(2.0, 5.0, 1).unwrap(), vec![2.0]);
        assert_eq!(
            linear_grid(-1.0, 1.0, 5).unwrap(),
            vec![-1.0, -0.5, 0.0, 0.5, 1.0]
        );
        // 0.2 + 0.35·2 is 0.8999999999999999 in f64: the last point is set to hi, not computed.
        assert_eq!(linear_grid(0.2, 0.9, 3).unwrap(), vec![0.2, 0.55, 0.9]);
        assert_eq!(
            linear_grid(0.0, 1.0, MAX_GRID_POINTS).unwrap().len(),
            MAX_GRID_POINTS
        );
        assert!(linear_grid(0.0, 1.0, MAX_GRID_POINTS + 1).is_err());
    }
}
