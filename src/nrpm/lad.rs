//! The exact least-absolute-deviation limit of NRPM: `z* = D · median_d t_d`.
//!
//! ```text
//! z* = argmin_z Σ_d |z/D − t_d|  =  D · median(t_1, …, t_D)
//! ```
//!
//! This is the `K → ∞, ε → 0` solution of the L1 IRLS (proofs/03-lad-fixed-point.md). For even
//! D every point between the two middle terms minimises the objective; [`median`] returns their
//! midpoint. [`weighted_median`] solves `argmin_m Σ_d c_d·|m − v_d|`. Selection is O(D) per
//! output (`select_nth_unstable`), sorting for the weighted case O(D log D).

use ndarray::{Array2, ArrayView1, ArrayView2};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::nrpm::{check_forward, NrpmConfig};
use crate::real::Real;

/// The median of finite `values` (reordered in place); the midpoint of the two middle values
/// when the length is even.
///
/// # Errors
/// [`Error::Config`] if `values` is empty; [`Error::NonFinite`] on NaN or ±Inf.
pub fn median<T: Real>(values: &mut [T]) -> Result<T> {
    if values.is_empty() {
        return Err(Error::config(
            "values",
            "[]",
            "the median needs at least one value",
        ));
    }
    crate::nrpm::check_finite("median input", &values[..])?;
    Ok(median_finite(values))
}

/// [`median`] without the checks (values known finite and non-empty).
fn median_finite<T: Real>(values: &mut [T]) -> T {
    let n = values.len();
    let cmp = |a: &T, b: &T| a.partial_cmp(b).expect("finite values");
    let (lower, &mut mid, _) = values.select_nth_unstable_by(n / 2, cmp);
    if n % 2 == 1 {
        mid
    } else {
        let below = lower.iter().copied().fold(T::neg_infinity(), T::max);
        (below + mid) / T::of(2.0)
    }
}

/// `D · median(t)`: the exact minimiser of `Σ_d |z/D − t_d|` (terms reordered in place).
///
/// # Errors
/// As [`median`].
pub fn lad_sum<T: Real>(terms: &mut [T]) -> Result<T> {
    let d = T::of(terms.len() as f64);
    Ok(median(terms)? * d)
}

/// The LAD objective `Σ_d |z/D − t_d|`.
pub fn lad_objective(z: f64, terms: &[f64]) -> f64 {
    let d = terms.len() as f64;
    terms.iter().map(|t| (z / d - t).abs()).sum()
}

/// A minimiser of `Σ_d c_d·|m − v_d|` (weights `c_d ≥ 0`, not all 0): the smallest `v` whose
/// cumulative weight reaches half the total, or the midpoint of the flat stretch when a
/// cumulative weight equals exactly half.
///
/// # Errors
/// [`Error::Shape`] if the lengths differ; [`Error::Config`] for empty input, negative or
/// all-zero weights; [`Error::NonFinite`] on NaN or ±Inf.
pub fn weighted_median(values: &[f64], weights: &[f64]) -> Result<f64> {
    if values.len() != weights.len() {
        return Err(Error::shape(
            "nrpm::lad::weighted_median",
            "weights",
            &[values.len()],
            &[weights.len()],
        ));
    }
    crate::nrpm::check_finite("weighted_median values", values)?;
    crate::nrpm::check_finite("weighted_median weights", weights)?;
    if weights.iter().any(|&c| c < 0.0) {
        return Err(Error::config("weights", "negative", "must be ≥ 0"));
    }
    let total: f64 = weights.iter().sum();
    if values.is_empty() || total <= 0.0 {
        return Err(Error::config(
            "weights",
            total,
            "need at least one positive weight",
        ));
    }
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut cum = 0.0;
    for (pos, &i) in order.iter().enumerate() {
        cum += weights[i];
        if cum > total / 2.0 {
            return Ok(values[i]);
        }
        if cum == total / 2.0 {
            // Flat between this value and the next one with positive weight.
            let next = order[pos + 1..]
                .iter()
                .find(|&&j| weights[j] > 0.0)
                .map_or(values[i], |&j| values[j]);
            return Ok((values[i] + next) / 2.0);
        }
    }
    Ok(values[order[order.len() - 1]])
}

/// The exact LAD layer: `y = λ·Σ_g z⁰_g + (1 − λ)·Σ_g Dg·median_{d∈g}(t_d) + bias`, with the
/// groups and λ of `cfg` (its norm, K and ε are ignored: this is their limit).
/// `x [B, D]`, `weight [O, D]`, `bias [O]` → `[B, O]`.
///
/// # Errors
/// As [`crate::nrpm::forward`].
pub fn forward<T: Real>(
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    bias: Option<ArrayView1<T>>,
    cfg: &NrpmConfig,
) -> Result<Array2<T>> {
    let dims = check_forward("nrpm::lad::forward", &x, &weight, bias.as_ref(), cfg)?;
    let lambda = T::of(cfg.lambda());
    let dgt = T::of(dims.dg as f64);
    let mut y = Array2::zeros((dims.b, dims.o));
    y.as_slice_mut()
        .expect("fresh array")
        .par_chunks_mut(dims.o)
        .enumerate()
        .for_each(|(b, row)| {
            let mut terms = vec![T::zero(); dims.dg];
            for (o, out) in row.iter_mut().enumerate() {
                let mut total = T::zero();
                for g in 0..dims.n {
                    for (i, t) in terms.iter_mut().enumerate() {
                        let d = g * dims.dg + i;
                        *t = x[[b, d]] * weight[[o, d]];
                    }
                    let z0: T = terms.iter().copied().sum();
                    total += lambda * z0 + (T::one() - lambda) * median_finite(&mut terms) * dgt;
                }
                *out = total + bias.as_ref().map_or(T::zero(), |b| b[o]);
            }
        });
    crate::nrpm::check_overflow("nrpm::lad::forward", &y)?;
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn median_odd_even_and_errors() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]).unwrap(), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]).unwrap(), 2.5);
        assert_eq!(median(&mut [7.0f32]).unwrap(), 7.0);
        assert!(median::<f64>(&mut []).is_err());
        assert!(median(&mut [1.0, f64::NAN]).is_err());
    }

    #[test]
    fn lad_sum_minimises_the_objective() {
        let terms = [0.3, -1.2, 5.0, 0.1, 0.2];
        let z = lad_sum(&mut terms.clone()).unwrap();
        assert_eq!(z, 5.0 * 0.2);
        let best = lad_objective(z, &terms);
        for dz in [-0.1, -1e-3, 1e-3, 0.1] {
            assert!(lad_objective(z + dz, &terms) > best);
        }
    }

    #[test]
    fn weighted_median_cases() {
        assert_eq!(
            weighted_median(&[1.0, 2.0, 3.0], &[1.0, 1.0, 1.0]).unwrap(),
            2.0
        );
        assert_eq!(
            weighted_median(&[1.0, 2.0, 3.0], &[5.0, 1.0, 1.0]).unwrap(),
            1.0
        );
        assert_eq!(weighted_median(&[1.0, 3.0], &[1.0, 1.0]).unwrap(), 2.0);
        assert!(weighted_median(&[1.0], &[0.0]).is_err());
        assert!(weighted_median(&[1.0], &[1.0, 2.0]).is_err());
    }

    #[test]
    fn forward_mixes_median_and_sum() {
        let x = array![[1.0, 1.0, 1.0, 100.0, 2.0]];
        let w = array![[1.0, 1.0, 1.0, 1.0, 1.0]];
        let cfg = NrpmConfig::builder()
            .norm(crate::Norm::L1)
            .k(1)
            .eps(1e-3)
            .lambda(0.25)
            .build()
            .unwrap();
        let y = forward(x.view(), w.view(), Some(array![0.5].view()), &cfg).unwrap();
        let want: f64 = 0.25 * 105.0 + 0.75 * 5.0 * 1.0 + 0.5;
        assert!((y[[0, 0]] - want).abs() < 1e-12);
    }
}
