//! The exact least-absolute-deviation limit of NRPM: `z* = D · median_d t_d`.
//!
//! ```text
//! z* = argmin_z Σ_d |z/D − t_d|  =  D · median(t_1, …, t_D)
//! ```
//!
//! This is the `K → ∞, ε → 0` solution of the L1 IRLS (proofs/03-lad-fixed-point.md). For even
//! D every point between the two middle terms minimises the objective; [`median`] returns their
//! midpoint. A configuration built with `exact_lad(true)` runs this limit as a layer mode:
//! `nrpm::forward_with` and `nrpm::backward_with` (so Linear and Conv2d layers, attacks and
//! training) compute `λ·z⁰ + (1 − λ)·Dg·median` and its subgradient here, on every path. [`weighted_median`] solves `argmin_m Σ_d c_d·|m − v_d|`. Selection is O(D) per
//! output (`select_nth_unstable`), sorting for the weighted case O(D log D).

use ndarray::{Array2, Array4, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::nrpm::{
    bias_and_lambda_grads, check_backward, check_forward, mix_output, Iterates, LinearGrads,
    NrpmConfig,
};
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
        midpoint(below, mid)
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
    let rescaled: Vec<f64>;
    let mut weights = weights;
    let mut total: f64 = weights.iter().sum();
    if total.is_infinite() {
        // The sum overflowed: the same weights times 2⁻⁶⁴ (exact for all that matter) have the
        // same median, and no order of summing them overflows.
        rescaled = weights.iter().map(|&c| c * 2f64.powi(-64)).collect();
        weights = &rescaled;
        total = weights.iter().sum();
    }
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
            return Ok(midpoint(values[i], next));
        }
    }
    Ok(values[order[order.len() - 1]])
}

/// `(a + b)/2` of finite values, correctly rounded, also where `a + b` overflows.
fn midpoint<T: Real>(a: T, b: T) -> T {
    let two = T::of(2.0);
    let m = (a + b) / two;
    if m.is_finite() {
        m
    } else {
        a / two + b / two
    }
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
    Ok(forward_saved(x, weight, bias, cfg)?.0)
}

/// [`forward`] with what its backward needs: the iterates `[B, O, N, 2]` hold `z⁰_g` and
/// `Dg·median_g`, under `cfg` with the exact LAD limit on (what `nrpm::forward_with` runs for
/// an `exact_lad` configuration, on every [`crate::Exec`]).
///
/// # Errors
/// As [`crate::nrpm::forward`].
pub(crate) fn forward_saved<T: Real>(
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    bias: Option<ArrayView1<T>>,
    cfg: &NrpmConfig,
) -> Result<(Array2<T>, Iterates<T>)> {
    let op = "nrpm::lad::forward";
    let cfg = NrpmConfig {
        norm: crate::Norm::L1,
        exact_lad: true,
        ..*cfg
    };
    let dims = check_forward(op, &x, &weight, bias.as_ref(), &cfg)?;
    let dgt = T::of(dims.dg as f64);
    let mut z = Array4::zeros((dims.b, dims.o, dims.n, 2));
    z.as_slice_mut()
        .expect("fresh array")
        .par_chunks_mut(dims.o * dims.n * 2)
        .enumerate()
        .for_each(|(b, row)| {
            let mut terms = vec![(T::zero(), 0); dims.dg];
            for (i, out) in row.chunks_exact_mut(2).enumerate() {
                let (o, g) = (i / dims.n, i % dims.n);
                group_terms(&x, &weight, (b, o, g), dims.dg, &mut terms);
                out[0] = terms.iter().map(|t| t.0).sum();
                out[1] = middle(&mut terms).0 * dgt;
            }
        });
    let iterates = Iterates::new(z, cfg, &x, &weight);
    let y = mix_output(op, &iterates, bias)?;
    Ok((y, iterates))
}

/// The terms `(t_d, d)` of group g of output (b, o), into `terms` (Dg entries).
fn group_terms<T: Real>(
    x: &ArrayView2<T>,
    weight: &ArrayView2<T>,
    (b, o, g): (usize, usize, usize),
    dg: usize,
    terms: &mut [(T, usize)],
) {
    for (i, t) in terms.iter_mut().enumerate() {
        let d = g * dg + i;
        *t = (x[[b, d]] * weight[[o, d]], d);
    }
}

/// The median of finite `(value, position)` pairs (reordered) and the positions of the middle
/// pair(s): `[p, p]` for an odd count, the lower and upper middle for an even one, so that
/// `∂median/∂t_p = ½` per listed entry. Ties are broken by position, so the choice is the
/// same on every run.
fn middle<T: Real>(terms: &mut [(T, usize)]) -> (T, [usize; 2]) {
    let n = terms.len();
    let cmp = |a: &(T, usize), b: &(T, usize)| {
        a.0.partial_cmp(&b.0)
            .expect("finite terms")
            .then(a.1.cmp(&b.1))
    };
    let (lower, &mut upper, _) = terms.select_nth_unstable_by(n / 2, cmp);
    if n % 2 == 1 {
        return (upper.0, [upper.1, upper.1]);
    }
    let below = *lower.iter().max_by(|a, b| cmp(a, b)).expect("n ≥ 2");
    ((below.0 + upper.0) / T::of(2.0), [below.1, upper.1])
}

/// Backward pass of the exact LAD layer (a subgradient: the median's derivative is ½ on each
/// listed middle term, ties broken by position):
///
/// ```text
/// ∂y_bo/∂t_d = λ + (1 − λ)·Dg·c_d,  c_d = ½ per listing of d among the middle pair(s)
/// x̄ = λ·ȳ·W + Σ sparse middle terms,  W̄ = λ·ȳᵀ·x + Σ sparse middle terms
/// ```
///
/// # Errors
/// As [`crate::nrpm::backward`].
pub(crate) fn backward_unchecked<T: Real>(
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    iterates: &Iterates<T>,
    grad_output: ArrayView2<T>,
) -> Result<LinearGrads<T>> {
    let cfg = iterates.cfg;
    let dims = check_backward("nrpm::lad::backward", &x, &weight, iterates, &grad_output)?;
    let lambda = T::of(cfg.lambda());
    let half = (T::one() - lambda) * T::of(dims.dg as f64) / T::of(2.0);
    let mids = middle_positions(&x, &weight, dims.dg, dims.n);
    let per_b = dims.o * dims.n;
    let mut gx = grad_output.dot(&weight) * lambda;
    gx.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(b, mut row)| {
            for (i, pair) in mids[b * per_b..][..per_b].iter().enumerate() {
                let o = i / dims.n;
                let c = grad_output[[b, o]] * half;
                for &d in pair {
                    row[d] += c * weight[[o, d]];
                }
            }
        });
    let mut gw = grad_output.t().dot(&x) * lambda;
    gw.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(o, mut row)| {
            for b in 0..dims.b {
                let c = grad_output[[b, o]] * half;
                for pair in &mids[b * per_b + o * dims.n..][..dims.n] {
                    for &d in pair {
                        row[d] += c * x[[b, d]];
                    }
                }
            }
        });
    let (bias, lambda) = bias_and_lambda_grads(iterates, &grad_output);
    Ok(LinearGrads {
        x: gx,
        weight: gw,
        bias,
        lambda,
    })
}

/// The middle positions of every (b, o, g), flat in that order (`[B·O·N]`).
fn middle_positions<T: Real>(
    x: &ArrayView2<T>,
    weight: &ArrayView2<T>,
    dg: usize,
    n: usize,
) -> Vec<[usize; 2]> {
    let (b, o) = (x.nrows(), weight.nrows());
    (0..b)
        .into_par_iter()
        .flat_map_iter(|bi| {
            let mut terms = vec![(T::zero(), 0); dg];
            (0..o * n)
                .map(|i| {
                    group_terms(x, weight, (bi, i / n, i % n), dg, &mut terms);
                    middle(&mut terms).1
                })
                .collect::<Vec<_>>()
        })
        .collect()
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
        // The midpoint of two huge middle values does not overflow.
        assert_eq!(
            median(&mut [f32::MAX, 0.0, f32::MAX, f32::MAX]).unwrap(),
            f32::MAX
        );
        assert_eq!(median(&mut [f64::MAX, -f64::MAX]).unwrap(), 0.0);
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
        // The flat stretch ends at the next value of positive weight: |m − 1| + |m − 3|.
        assert_eq!(
            weighted_median(&[1.0, 2.0, 3.0], &[1.0, 0.0, 1.0]).unwrap(),
            2.0
        );
        assert_eq!(
            weighted_median(&[1.0, 1.5, 4.0], &[1.0, 0.0, 1.0]).unwrap(),
            2.5
        );
        // Weights whose sum overflows f64 have the median of the same weights scaled down:
        // summed in the input's order, 2⁹⁶⁹ + 2⁹⁶⁹ + MAX overflows, while MAX + 2⁹⁶⁹ + 2⁹⁶⁹
        // (sorted by value) does not.
        let (big, small) = (f64::MAX, 2f64.powi(969));
        assert_eq!(
            weighted_median(&[3.0, 2.0, 1.0], &[small, small, big]).unwrap(),
            1.0
        );
        assert_eq!(weighted_median(&[1.0, 3.0], &[big, big]).unwrap(), 2.0);
        assert_eq!(
            weighted_median(&[1.0, 3.0, 5.0], &[big, big, big]).unwrap(),
            3.0
        );
        // The midpoint of two huge values does not overflow.
        assert_eq!(weighted_median(&[big, big], &[1.0, 1.0]).unwrap(), big);
        assert_eq!(weighted_median(&[-big, big], &[1.0, 1.0]).unwrap(), 0.0);
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

    /// A layer mode: `nrpm::forward` with `exact_lad` is `lad::forward`, and its backward is
    /// the derivative of `λ·z⁰ + (1 − λ)·Dg·median` away from ties (central differences).
    #[test]
    fn exact_lad_mode_forward_and_backward() {
        let x = array![
            [0.3, -1.2, 5.0, 0.1, 0.7, 0.2],
            [1.1, 0.4, -0.6, 2.2, 0.9, -0.3]
        ];
        let w = array![
            [1.0, 0.5, -0.2, 2.0, 0.3, 1.5],
            [-0.7, 1.2, 0.4, 0.1, 0.9, -1.1]
        ];
        let bias = array![0.1, -0.2];
        for groups in [1, 2] {
            let cfg = NrpmConfig::builder()
                .lambda(0.3)
                .groups(groups)
                .exact_lad(true)
                .build()
                .unwrap();
            let (y, saved) =
                crate::nrpm::forward(x.view(), w.view(), Some(bias.view()), &cfg).unwrap();
            let direct = forward(x.view(), w.view(), Some(bias.view()), &cfg).unwrap();
            assert!((&y - &direct).iter().all(|d: &f64| d.abs() < 1e-12));
            let gy = array![[0.7, -1.3], [0.2, 0.5]];
            let g = crate::nrpm::backward(x.view(), w.view(), &saved, gy.view()).unwrap();
            let loss = |x: &Array2<f64>, w: &Array2<f64>| -> f64 {
                let y = forward(x.view(), w.view(), Some(bias.view()), &cfg).unwrap();
                (&y * &gy).sum()
            };
            let h = 1e-6;
            for (b, d) in [(0, 0), (0, 5), (1, 3), (1, 2)] {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[[b, d]] += h;
                xm[[b, d]] -= h;
                let fd = (loss(&xp, &w) - loss(&xm, &w)) / (2.0 * h);
                assert!(
                    (fd - g.x[[b, d]]).abs() < 1e-6,
                    "x[{b},{d}]: {fd} vs {}",
                    g.x[[b, d]]
                );
                let (mut wp, mut wm) = (w.clone(), w.clone());
                wp[[b, d]] += h;
                wm[[b, d]] -= h;
                let fd = (loss(&x, &wp) - loss(&x, &wm)) / (2.0 * h);
                assert!((fd - g.weight[[b, d]]).abs() < 1e-6, "w[{b},{d}]");
            }
        }
    }

    #[test]
    fn exact_lad_needs_l1() {
        let bad = NrpmConfig::builder()
            .norm(crate::Norm::Huber { delta: 3.0 })
            .exact_lad(true)
            .build();
        assert!(bad.is_err());
    }
}
