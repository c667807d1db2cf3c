//! Sound interval bounds through the NRPM operator itself, for inputs in a box.
//!
//! For one output, the terms `t_d = a_d·x_d` with `x_d ∈ [x̲_d, x̄_d]` lie in
//! `[t̲_d, t̄_d] = [min(a_d·x̲_d, a_d·x̄_d), max(…)]`, each term depending on its own input only.
//! Per group g (Dg terms, `m = z/Dg`):
//!
//! ```text
//! z⁰      ∈ [Σ_d t̲_d, Σ_d t̄_d]                                           (exact)
//! r_d     = |t_d − zᵏ/Dg| ∈ [r̲_d, r̄_d]   from t_d ∈ [t̲_d, t̄_d], zᵏ ∈ [z̲ᵏ, z̄ᵏ]
//! w_d     = w(r_d) ∈ [w(r̄_d), w(r̲_d)]     (every norm's weight is positive, non-increasing)
//! zᵏ⁺¹/Dg = Σ w_d·t_d / Σ w_d ≤ max_s (Σ_{d ∈ top s} w̄_d·t̄_d + Σ_{rest} w̲_d·t̄_d)
//!                                  / (Σ_{d ∈ top s} w̄_d + Σ_{rest} w̲_d)
//!           (top s: the s largest t̄_d; Karnik–Mendel: the supremum over the weight box is
//!            at such a switch point; sort once, O(Dg log Dg); the lower end mirrors it)
//! exact LAD limit: Dg·median is non-decreasing in every term, so
//!           Dg·median(t̲) ≤ Dg·median(t) ≤ Dg·median(t̄)                  (exact)
//! y       = λ·Σ_g z⁰_g + (1 − λ)·Σ_g zᴷ_g + bias    (interval arithmetic, any λ)
//! ```
//!
//! Soundness and sharpness: proofs/12-nrpm-interval-bounds.md. The weights are treated as
//! independent in their intervals (they share zᵏ in truth), which only widens the bound.

use ndarray::{Array2, ArrayView1, ArrayView2};
use rayon::prelude::*;

use crate::certify::{scale, Bounds};
use crate::error::{Error, Result};
use crate::nrpm::norm::WeightFn;
use crate::nrpm::NrpmConfig;

/// Bounds of the weighted mean `Σ w_d·v_d / Σ w_d` over `v_d ∈ [v̲_d, v̄_d]` and
/// `w_d ∈ [w̲_d, w̄_d]` (`0 < w̲_d ≤ w̄_d`): the exact infimum and supremum over that box
/// (Karnik–Mendel), in O(D log D).
///
/// # Errors
/// [`Error::Shape`] if the four slices differ in length; [`Error::Config`] if they are empty
/// or a weight interval is not `0 < w̲ ≤ w̄`.
///
/// # Example
/// ```
/// use nrpm::certify::nrpm_bounds::weighted_mean_bounds;
/// // One term fixed at 0 with weight 1, one in [1, 1] with weight in [1, 3]: mean in [½, ¾].
/// let (lo, hi) = weighted_mean_bounds(&[0.0, 1.0], &[0.0, 1.0], &[1.0, 1.0], &[1.0, 3.0])?;
/// assert!((lo - 0.5).abs() < 1e-15 && (hi - 0.75).abs() < 1e-15);
/// # Ok::<(), nrpm::Error>(())
/// ```
pub fn weighted_mean_bounds(
    v_lo: &[f64],
    v_hi: &[f64],
    w_lo: &[f64],
    w_hi: &[f64],
) -> Result<(f64, f64)> {
    let n = v_lo.len();
    for (arg, len) in [
        ("v_hi", v_hi.len()),
        ("w_lo", w_lo.len()),
        ("w_hi", w_hi.len()),
    ] {
        if len != n {
            return Err(Error::shape(
                "certify::nrpm_bounds::weighted_mean_bounds",
                arg,
                &[n],
                &[len],
            ));
        }
    }
    if n == 0 || w_lo.iter().zip(w_hi).any(|(&l, &h)| !(l > 0.0 && l <= h)) {
        return Err(Error::config(
            "weights",
            format!("{n} terms"),
            "need at least one term and 0 < w_lo ≤ w_hi",
        ));
    }
    let mut order = Vec::with_capacity(n);
    Ok((
        mean_lower(v_lo, w_lo, w_hi, &mut order),
        mean_upper(v_hi, w_lo, w_hi, &mut order),
    ))
}

/// `sup Σ w·v / Σ w` over the weight box, values at `v` (their upper ends).
fn mean_upper(v: &[f64], w_lo: &[f64], w_hi: &[f64], order: &mut Vec<usize>) -> f64 {
    order.clear();
    order.extend(0..v.len());
    order.sort_unstable_by(|&i, &j| v[j].total_cmp(&v[i])); // descending
    let mut num: f64 = v.iter().zip(w_lo).map(|(v, w)| v * w).sum();
    let mut den: f64 = w_lo.iter().sum();
    let mut best = num / den;
    for &i in order.iter() {
        let extra = w_hi[i] - w_lo[i];
        num += extra * v[i];
        den += extra;
        best = best.max(num / den);
    }
    best
}

/// `inf Σ w·v / Σ w` over the weight box, values at `v` (their lower ends):
/// `−sup Σ w·(−v) / Σ w`.
fn mean_lower(v: &[f64], w_lo: &[f64], w_hi: &[f64], order: &mut Vec<usize>) -> f64 {
    let neg: Vec<f64> = v.iter().map(|x| -x).collect();
    -mean_upper(&neg, w_lo, w_hi, order)
}

/// Bounds of `zᴷ` of one group whose Dg terms lie in `[t̲_d, t̄_d]`, for K IRLS steps of the
/// weight `wf` (K = 0: the plain sum).
///
/// # Example
/// ```
/// use nrpm::certify::nrpm_bounds::irls_bounds;
/// use nrpm::Norm;
/// let wf = Norm::L1.weight_fn::<f64>(1e-3);
/// // A point box gives the forward value: two terms at 1 and 3 stay at the mean 2·2 = 4.
/// let (lo, hi) = irls_bounds(&[1.0, 3.0], &[1.0, 3.0], &wf, 3);
/// assert!((lo - 4.0).abs() < 1e-12 && (hi - 4.0).abs() < 1e-12);
/// ```
pub fn irls_bounds(t_lo: &[f64], t_hi: &[f64], wf: &WeightFn<f64>, k: usize) -> (f64, f64) {
    let dg = t_lo.len() as f64;
    let mut z = (t_lo.iter().sum::<f64>(), t_hi.iter().sum::<f64>());
    let (mut w_lo, mut w_hi) = (vec![0.0; t_lo.len()], vec![0.0; t_lo.len()]);
    let mut order = Vec::with_capacity(t_lo.len());
    for _ in 0..k {
        let (m_lo, m_hi) = (z.0 / dg, z.1 / dg);
        for d in 0..t_lo.len() {
            let (r_lo, r_hi) = residual_range(t_lo[d] - m_hi, t_hi[d] - m_lo);
            w_lo[d] = wf.weight(r_hi);
            w_hi[d] = wf.weight(r_lo);
        }
        z = (
            dg * mean_lower(t_lo, &w_lo, &w_hi, &mut order),
            dg * mean_upper(t_hi, &w_lo, &w_hi, &mut order),
        );
    }
    z
}

/// `[min |u|, max |u|]` over `u ∈ [lo, hi]`.
fn residual_range(lo: f64, hi: f64) -> (f64, f64) {
    let far = lo.abs().max(hi.abs());
    if lo <= 0.0 && hi >= 0.0 {
        (0.0, far)
    } else {
        (lo.abs().min(hi.abs()), far)
    }
}

/// Bounds of `Dg·median(t)` over `t_d ∈ [t̲_d, t̄_d]`: `Dg·median(t̲)` and `Dg·median(t̄)`,
/// exact since the median is non-decreasing in every term.
///
/// ```
/// let (lo, hi) = nrpm::certify::nrpm_bounds::lad_bounds(&[0.0, 1.0, 5.0], &[2.0, 1.0, 9.0]);
/// assert_eq!((lo, hi), (3.0, 6.0)); // 3·median(0, 1, 5), 3·median(2, 1, 9)
/// ```
pub fn lad_bounds(t_lo: &[f64], t_hi: &[f64]) -> (f64, f64) {
    let dg = t_lo.len() as f64;
    let med = |t: &[f64]| {
        let mut v = t.to_vec();
        crate::nrpm::lad::median(&mut v).unwrap_or(0.0)
    };
    (dg * med(t_lo), dg * med(t_hi))
}

/// Bounds of the robust part `Σ_g zᴷ_g` (or `Σ_g Dg·median_g` for the exact LAD limit) of
/// every output, for one input row in `[lo, hi]` (`[D]`), `weight [O, D]`: `(lo, hi)` per
/// output.
fn robust_row(
    lo: ArrayView1<f64>,
    hi: ArrayView1<f64>,
    weight: &ArrayView2<f64>,
    cfg: &NrpmConfig,
) -> Vec<(f64, f64)> {
    let (o, d) = weight.dim();
    let dg = d / cfg.groups();
    let wf = cfg.norm().weight_fn::<f64>(cfg.eps());
    let (mut t_lo, mut t_hi) = (vec![0.0; d], vec![0.0; d]);
    (0..o)
        .map(|oi| {
            for i in 0..d {
                let a = weight[[oi, i]];
                let (l, h) = scale(lo[i], hi[i], a);
                t_lo[i] = l;
                t_hi[i] = h;
            }
            (0..cfg.groups()).fold((0.0, 0.0), |acc, g| {
                let (gl, gh) = (&t_lo[g * dg..][..dg], &t_hi[g * dg..][..dg]);
                let z = match cfg.exact_lad() {
                    true => lad_bounds(gl, gh),
                    false => irls_bounds(gl, gh, &wf, cfg.steps()),
                };
                (acc.0 + z.0, acc.1 + z.1)
            })
        })
        .collect()
}

/// The robust parts of rows `[R, D]` in `[lo, hi]`: `(lo, hi)`, each `[R, O]`.
///
/// # Errors
/// [`Error::Shape`] if the shapes disagree; [`Error::Config`] if the groups do not divide D.
pub(crate) fn robust_rows(
    lo: ArrayView2<f64>,
    hi: ArrayView2<f64>,
    weight: ArrayView2<f64>,
    cfg: &NrpmConfig,
) -> Result<(Array2<f64>, Array2<f64>)> {
    let op = "certify::nrpm_bounds";
    let (r, d) = lo.dim();
    if hi.dim() != (r, d) {
        return Err(Error::shape(op, "hi", &[r, d], hi.shape()));
    }
    if weight.ncols() != d {
        return Err(Error::shape(
            op,
            "weight",
            &[weight.nrows(), d],
            weight.shape(),
        ));
    }
    if d == 0 || d % cfg.groups() != 0 {
        return Err(Error::config(
            "groups",
            cfg.groups(),
            "must divide the number of terms D ≥ 1",
        ));
    }
    let o = weight.nrows();
    let rows: Vec<Vec<(f64, f64)>> = (0..r)
        .into_par_iter()
        .map(|i| robust_row(lo.row(i), hi.row(i), &weight, cfg))
        .collect();
    let (mut out_lo, mut out_hi) = (Array2::zeros((r, o)), Array2::zeros((r, o)));
    for (i, row) in rows.iter().enumerate() {
        for (j, &(l, h)) in row.iter().enumerate() {
            out_lo[[i, j]] = l;
            out_hi[[i, j]] = h;
        }
    }
    Ok((out_lo, out_hi))
}

/// Bounds of the NRPM outputs of rows `[R, D]` in `[lo, hi]`:
/// `y = λ·z⁰ + (1 − λ)·Σ_g zᴷ_g + bias`, `[R, O]` each, with z⁰ bounded exactly
/// (`W⁺·lo + W⁻·hi`).
///
/// # Errors
/// As [`linear`].
pub(crate) fn rows(
    lo: ArrayView2<f64>,
    hi: ArrayView2<f64>,
    weight: ArrayView2<f64>,
    bias: Option<ArrayView1<f64>>,
    cfg: &NrpmConfig,
) -> Result<(Array2<f64>, Array2<f64>)> {
    let (r_lo, r_hi) = robust_rows(lo, hi, weight, cfg)?;
    let (z_lo, z_hi) = crate::certify::interval::affine_rows(lo, hi, weight, None);
    let lambda = cfg.lambda();
    let mut y_lo = Array2::zeros(r_lo.raw_dim());
    let mut y_hi = Array2::zeros(r_lo.raw_dim());
    for ((i, j), out) in y_lo.indexed_iter_mut() {
        let (a, b) = scale(z_lo[[i, j]], z_hi[[i, j]], lambda);
        let (c, d) = scale(r_lo[[i, j]], r_hi[[i, j]], 1.0 - lambda);
        let shift = bias.map_or(0.0, |b| b[j]);
        *out = a + c + shift;
        y_hi[[i, j]] = b + d + shift;
    }
    Ok((y_lo, y_hi))
}

/// Bounds of an NRPM linear layer's outputs `[O]` for inputs in `x` (`[D]`), `weight [O, D]`,
/// optional `bias [O]`, under `cfg` (any norm, K, λ, groups, or the exact LAD limit).
///
/// # Errors
/// [`Error::Shape`] if `x` is not `[D]` or the bias not `[O]`; [`Error::Config`] if the
/// groups do not divide D.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::certify::{nrpm_bounds, Bounds};
/// let x = Bounds::linf_ball(ndarray::arr1(&[0.2, 0.4, 0.1, 0.9]).into_dyn().view(), 0.05)?;
/// let w = ndarray::arr2(&[[1.0, 1.0, 1.0, 1.0]]);
/// let cfg = nrpm::NrpmConfig::builder().k(3).lambda(0.0).build()?;
/// let y = nrpm_bounds::linear(&x, w.view(), None, &cfg)?;
/// let (lo, hi) = (y.lo()[0], y.hi()[0]);
/// let (at, _) = nrpm::forward(ndarray::arr2(&[[0.2, 0.4, 0.1, 0.9]]).view(), w.view(), None, &cfg)?;
/// assert!(lo <= at[[0, 0]] && at[[0, 0]] <= hi);
/// # Ok(()) }
/// ```
pub fn linear(
    x: &Bounds,
    weight: ArrayView2<f64>,
    bias: Option<ArrayView1<f64>>,
    cfg: &NrpmConfig,
) -> Result<Bounds> {
    let d = weight.ncols();
    if x.shape() != [d] {
        return Err(Error::shape(
            "certify::nrpm_bounds::linear",
            "x ([D])",
            &[d],
            x.shape(),
        ));
    }
    if let Some(b) = &bias {
        if b.len() != weight.nrows() {
            return Err(Error::shape(
                "certify::nrpm_bounds::linear",
                "bias",
                &[weight.nrows()],
                &[b.len()],
            ));
        }
    }
    let as_row = |a: &ndarray::ArrayD<f64>| {
        a.view()
            .into_shape_with_order((1, d))
            .expect("[D] is one row")
            .to_owned()
    };
    let (lo, hi) = rows(
        as_row(x.lo()).view(),
        as_row(x.hi()).view(),
        weight,
        bias,
        cfg,
    )?;
    Ok(Bounds::raw(
        lo.into_shape_with_order(weight.nrows())
            .expect("one row")
            .into_dyn(),
        hi.into_shape_with_order(weight.nrows())
            .expect("one row")
            .into_dyn(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force over the 2^D vertices of the weight box (the mean is quasi-linear in each
    /// weight, so its extremes are at vertices).
    fn vertex_extremes(v: &[f64], w_lo: &[f64], w_hi: &[f64]) -> (f64, f64) {
        let n = v.len();
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for mask in 0..(1u32 << n) {
            let w: Vec<f64> = (0..n)
                .map(|i| if mask >> i & 1 == 1 { w_hi[i] } else { w_lo[i] })
                .collect();
            let m = v.iter().zip(&w).map(|(v, w)| v * w).sum::<f64>() / w.iter().sum::<f64>();
            lo = lo.min(m);
            hi = hi.max(m);
        }
        (lo, hi)
    }

    #[test]
    fn karnik_mendel_equals_the_vertex_extremes() {
        let v = [0.3, -1.2, 2.5, 0.0, 0.7];
        let w_lo = [0.5, 1.0, 0.1, 2.0, 0.3];
        let w_hi = [1.5, 4.0, 0.2, 2.0, 3.0];
        let (lo, hi) = weighted_mean_bounds(&v, &v, &w_lo, &w_hi).unwrap();
        let (blo, bhi) = vertex_extremes(&v, &w_lo, &w_hi);
        assert!((lo - blo).abs() < 1e-14 && (hi - bhi).abs() < 1e-14);
    }

    #[test]
    fn weighted_mean_rejects_bad_weights() {
        assert!(weighted_mean_bounds(&[1.0], &[1.0], &[0.0], &[1.0]).is_err());
        assert!(weighted_mean_bounds(&[1.0], &[1.0], &[2.0], &[1.0]).is_err());
        assert!(weighted_mean_bounds(&[], &[], &[], &[]).is_err());
        assert!(weighted_mean_bounds(&[1.0], &[1.0, 2.0], &[1.0], &[1.0]).is_err());
    }

    #[test]
    fn residual_range_cases() {
        assert_eq!(residual_range(-1.0, 2.0), (0.0, 2.0));
        assert_eq!(residual_range(1.0, 2.0), (1.0, 2.0));
        assert_eq!(residual_range(-3.0, -1.0), (1.0, 3.0));
    }
}
