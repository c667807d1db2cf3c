//! ℓ0 certificates: at most k entries (pixels) of the image change, each to any value in
//! [0, 1].
//!
//! At the first matching layer (after reshapes), each output reads one row of pixels
//! (a receptive field for Conv2d; padding stays 0) with terms `t_d = a_d·x_d`:
//!
//! ```text
//! LPM sum      z⁰ = Σ_d a_d·x_d changes by a_d·(v − x_d), v ∈ [0, 1]:
//!              up_d = max(a_d·(1 − x_d), −a_d·x_d),  down_d = max(a_d·x_d, −a_d·(1 − x_d))
//!              z⁰ − Σ top-k(down) ≤ z⁰' ≤ z⁰ + Σ top-k(up)                      (exact)
//! median       a changed term t'_d lies in [min(0, a_d), max(0, a_d)]. The q-th smallest
//!              value (0-based) is ≥ v iff at least n − q values are ≥ v, so its largest value
//!              is the largest v with  #{t_d ≥ v} + min(k, #{t̄_d ≥ v} − #{t_d ≥ v}) ≥ n − q;
//!              with unbounded ranges this is the clean order statistic q + k (the breakdown
//!              argument: k corrupted terms keep the median between the clean terms' order
//!              statistics m − k and m + k). Even n: the mean of the two middle bounds.
//! NRPM, exact LAD limit   y = λ·z⁰ + (1 − λ)·Σ_g Dg·median_g + b  (each part bounded, k per
//!              group, then interval arithmetic)
//! ```
//!
//! The rest of the network is bounded by interval propagation (interval.rs), the margin folded
//! into the last layer; when the first layer is the last one, the margin rows `w_y − w_j` get
//! the exact k-pixel bound directly. A first layer that runs K IRLS steps has no k-pixel bound
//! here ([`Error::CannotBound`]: use the exact LAD limit). Proof:
//! proofs/14-l0-median-certificate.md.

use ndarray::{Array1, Array2, Array4, ArrayD, ArrayView1, ArrayView2, ArrayView3};
use rayon::prelude::*;

use crate::certify::interval::{self, fold_margins, margin_rows, op_key};
use crate::certify::{image_f64, scale, Bounds, Certificate, Network, Op, Sum};
use crate::error::{Error, Result};
use crate::nrpm::conv::unfold;
use crate::real::Real;

/// The sum of the k largest of `values` (all of them when k ≥ len).
pub fn top_k_sum(values: &mut [f64], k: usize) -> f64 {
    if k == 0 || values.is_empty() {
        return 0.0;
    }
    if k < values.len() {
        values.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
        values[..k].iter().sum()
    } else {
        values.iter().sum()
    }
}

/// The exact k-pixel bounds of `Σ_d a_d·x_d` over a row of pixels `x` (values in [0, 1])
/// where `free_d` says which entries may change (padding may not).
///
/// ```
/// // a = (2, −1), x = (0.5, 0.5), one pixel: up = max(1, 0.5), down = max(1, 0.5).
/// let (lo, hi) = nrpm::certify::l0::sum_bounds(&[2.0, -1.0], &[0.5, 0.5], &[true, true], 1);
/// assert_eq!((lo, hi), (-0.5, 1.5)); // 0.5 − 1 and 0.5 + 1
/// ```
pub fn sum_bounds(a: &[f64], x: &[f64], free: &[bool], k: usize) -> (f64, f64) {
    let z: f64 = a.iter().zip(x).map(|(a, x)| a * x).sum();
    let mut up = Vec::with_capacity(a.len());
    let mut down = Vec::with_capacity(a.len());
    for ((&a, &x), &f) in a.iter().zip(x).zip(free) {
        if f {
            up.push((a * (1.0 - x)).max(-a * x));
            down.push((a * x).max(-a * (1.0 - x)));
        }
    }
    (z - top_k_sum(&mut down, k), z + top_k_sum(&mut up, k))
}

/// The largest value the q-th smallest (0-based) of `t` can take when at most k entries are
/// raised, entry d to at most `hi_d ≥ t_d`.
///
/// ```
/// use nrpm::certify::l0::order_statistic_upper;
/// let t = [1.0, 2.0, 3.0, 4.0, 5.0];
/// let far = [1e9; 5];
/// assert_eq!(order_statistic_upper(&t, &far, 2, 1), 4.0); // median 3 → clean rank 2 + 1
/// assert_eq!(order_statistic_upper(&t, &t, 2, 4), 3.0);   // nothing can rise
/// ```
pub fn order_statistic_upper(t: &[f64], hi: &[f64], q: usize, k: usize) -> f64 {
    let n = t.len();
    let mut ts = t.to_vec();
    let mut hs: Vec<f64> = hi.iter().zip(t).map(|(h, t)| h.max(*t)).collect();
    ts.sort_unstable_by(f64::total_cmp);
    hs.sort_unstable_by(f64::total_cmp);
    let at_least = |s: &[f64], v: f64| s.len() - s.partition_point(|&x| x < v);
    let need = n - q.min(n - 1);
    let feasible = |v: f64| {
        let ct = at_least(&ts, v);
        ct + k.min(at_least(&hs, v) - ct) >= need
    };
    let mut cands: Vec<f64> = ts.iter().chain(&hs).copied().collect();
    cands.sort_unstable_by(|a, b| b.total_cmp(a));
    cands.dedup();
    // Descending candidates: infeasible ones first, then feasible; the first feasible is the max.
    let first = cands.partition_point(|&v| !feasible(v));
    cands.get(first).copied().unwrap_or(ts[0])
}

/// Bounds of the median (as `nrpm::lad::median`: the mean of the middle pair for even n) of
/// `t` when at most k entries change, entry d within `[lo_d, hi_d]` (which contains `t_d`).
///
/// ```
/// let t = [1.0, 2.0, 3.0, 4.0, 5.0];
/// let (lo, hi) = nrpm::certify::l0::median_bounds(&t, &[-9.0; 5], &[9.0; 5], 2);
/// assert_eq!((lo, hi), (1.0, 5.0)); // order statistics m − 2 and m + 2 of the clean terms
/// ```
pub fn median_bounds(t: &[f64], lo: &[f64], hi: &[f64], k: usize) -> (f64, f64) {
    let n = t.len();
    let neg = |v: &[f64]| v.iter().map(|x| -x).collect::<Vec<_>>();
    let (nt, nlo) = (neg(t), neg(lo));
    let upper = |q: usize| order_statistic_upper(t, hi, q, k);
    let lower = |q: usize| -order_statistic_upper(&nt, &nlo, n - 1 - q, k);
    if n % 2 == 1 {
        (lower(n / 2), upper(n / 2))
    } else {
        let (a, b) = (n / 2 - 1, n / 2);
        ((lower(a) + lower(b)) / 2.0, (upper(a) + upper(b)) / 2.0)
    }
}

/// One row of pixels and which of them may change.
struct Row<'a> {
    x: ArrayView1<'a, f64>,
    free: Vec<bool>,
}

/// Bounds `(lo, hi)` of one output of the first layer for row `r`: `a` its weight row
/// (`spec` rows for the linear part when the margin is folded), `sum` its operator.
fn output_bounds(
    r: &Row,
    a: ArrayView1<f64>,
    robust: Option<(ArrayView1<f64>, &crate::NrpmConfig)>,
    k: usize,
) -> (f64, f64) {
    let (xs, a) = (r.x.to_vec(), a.to_vec());
    let z0 = sum_bounds(&a, &xs, &r.free, k);
    let Some((w, cfg)) = robust else {
        return z0;
    };
    let (lambda, groups) = (cfg.lambda(), cfg.groups());
    let dg = xs.len() / groups;
    let med = (0..groups).fold((0.0, 0.0), |acc, g| {
        let range = g * dg..(g + 1) * dg;
        let t: Vec<f64> = range.clone().map(|d| w[d] * xs[d]).collect();
        let lo: Vec<f64> = range
            .clone()
            .map(|d| {
                if r.free[d] {
                    w[d].min(0.0)
                } else {
                    t[d - g * dg]
                }
            })
            .collect();
        let hi: Vec<f64> = range
            .map(|d| {
                if r.free[d] {
                    w[d].max(0.0)
                } else {
                    t[d - g * dg]
                }
            })
            .collect();
        let (l, h) = median_bounds(&t, &lo, &hi, k);
        (acc.0 + dg as f64 * l, acc.1 + dg as f64 * h)
    });
    let (a0, b0) = scale(z0.0, z0.1, lambda);
    let (a1, b1) = scale(med.0, med.1, 1.0 - lambda);
    (a0 + a1, b0 + b1)
}

/// The robust operator a first layer may have for this certificate.
fn robust_cfg<'a>(sum: &'a Sum, key: &str) -> Result<Option<&'a crate::NrpmConfig>> {
    match sum {
        Sum::Lpm => Ok(None),
        Sum::Nrpm(cfg) if cfg.exact_lad() => Ok(Some(cfg)),
        Sum::Nrpm(_) => Err(Error::CannotBound {
            layer: key.to_string(),
            reason: "the l0 certificate needs the layer the pixels enter to be LPM or the exact \
                     LAD limit (a median; --exact-lad): K IRLS steps have no k-pixel bound here"
                .into(),
        }),
    }
}

/// Bounds `[R, O]` of the first layer's outputs over its rows.
fn layer_rows(
    rows: &[Row],
    weight: ArrayView2<f64>,
    bias: Option<&Array1<f64>>,
    cfg: Option<&crate::NrpmConfig>,
    k: usize,
) -> (Array2<f64>, Array2<f64>) {
    let o = weight.nrows();
    let per: Vec<Vec<(f64, f64)>> = rows
        .par_iter()
        .map(|r| {
            (0..o)
                .map(|j| {
                    let (l, h) =
                        output_bounds(r, weight.row(j), cfg.map(|c| (weight.row(j), c)), k);
                    let b = bias.map_or(0.0, |b| b[j]);
                    (l + b, h + b)
                })
                .collect()
        })
        .collect();
    let lo = Array2::from_shape_fn((rows.len(), o), |(i, j)| per[i][j].0);
    let hi = Array2::from_shape_fn((rows.len(), o), |(i, j)| per[i][j].1);
    (lo, hi)
}

/// Lower bounds of the margins `logit_label − logit_j` when at most `pixels` entries of
/// `x [C, H, W]` (values in [0, 1]) change, each to any value in [0, 1].
///
/// # Errors
/// [`Error::Shape`] for an image of another shape; [`Error::Config`] for an image outside
/// [0, 1] or a bad label; [`Error::CannotBound`] when the first layer after reshapes is not a
/// Linear or Conv2d layer, or runs K IRLS steps.
pub fn margins(net: &Network, x: &ArrayD<f64>, label: usize, pixels: usize) -> Result<Array1<f64>> {
    net.check_image(&x.view())?;
    net.check_label(label)?;
    if x.iter().any(|v| !(0.0..=1.0).contains(v)) {
        return Err(Error::config(
            "image",
            "values outside [0, 1]",
            "certificates take images in [0, 1]",
        ));
    }
    let first = net
        .ops
        .iter()
        .position(|o| !matches!(o, Op::Flatten))
        .ok_or_else(|| {
            Error::config(
                "network",
                "no matching layer",
                "an l0 certificate needs a Linear or Conv2d layer",
            )
        })?;
    let flat = first > 0;
    let is_last = first + 1 == net.ops.len();
    let entry = &net.ops[first];
    let out = match entry {
        Op::Linear {
            key,
            weight,
            bias,
            sum,
        } => {
            let cfg = robust_cfg(sum, key)?;
            let d = weight.ncols();
            let xs = x
                .view()
                .into_shape_with_order(d)
                .map_err(|_| Error::shape("certify::l0", "linear input", &[d], x.shape()))?;
            if !flat && x.ndim() != 1 {
                return Err(Error::shape(
                    "certify::l0",
                    "linear input (flatten first)",
                    &[d],
                    x.shape(),
                ));
            }
            let row = Row {
                x: xs,
                free: vec![true; d],
            };
            if is_last {
                return linear_margins(&row, weight.view(), bias.as_ref(), cfg, label, pixels);
            }
            let (lo, hi) = layer_rows(
                std::slice::from_ref(&row),
                weight.view(),
                bias.as_ref(),
                cfg,
                pixels,
            );
            Bounds::raw(lo.into_dyn(), hi.into_dyn()).reshaped(&[weight.nrows()])?
        }
        Op::Conv {
            key,
            weight,
            bias,
            geometry,
            sum,
        } => {
            let cfg = robust_cfg(sum, key)?;
            let (o, c, kh, kw) = weight.dim();
            let [_, h, w] = net.input();
            let x4 = x
                .view()
                .into_shape_with_order((1, c, h, w))
                .map_err(|_| Error::shape("certify::l0", "conv input", &[c, h, w], x.shape()))?;
            let cols = unfold(x4, kh, kw, geometry)?;
            let mask = unfold(Array4::<f64>::ones((1, c, h, w)).view(), kh, kw, geometry)?;
            let rows: Vec<Row> = (0..cols.nrows())
                .map(|i| Row {
                    x: cols.row(i),
                    free: mask.row(i).iter().map(|&m| m > 0.0).collect(),
                })
                .collect();
            let flat_w = weight
                .view()
                .into_shape_with_order((o, c * kh * kw))
                .expect("contiguous");
            let (lo, hi) = layer_rows(&rows, flat_w, bias.as_ref(), cfg, pixels);
            let (ho, wo) = geometry.output_size(h, w, kh, kw)?;
            Bounds::from_rows(lo, hi, [o, ho, wo])
        }
        other => {
            return Err(Error::CannotBound {
                layer: op_key(other).to_string(),
                reason: "the l0 certificate needs a Linear or Conv2d layer first (after flatten)"
                    .into(),
            })
        }
    };
    let rest = &net.ops[first + 1..];
    let (last, body) = rest.split_last().expect("the entry is not the last op");
    let h = interval::ops(body, out)?;
    fold_margins(last, h, label, net.classes()).map_err(|e| e.in_layer(op_key(last)))
}

/// Margins when the first layer is also the last: the margin rows `w_label − w_j` get the
/// exact k-pixel bound of their sum; the robust parts are bounded per class.
fn linear_margins(
    row: &Row,
    weight: ArrayView2<f64>,
    bias: Option<&Array1<f64>>,
    cfg: Option<&crate::NrpmConfig>,
    label: usize,
    k: usize,
) -> Result<Array1<f64>> {
    let classes = weight.nrows();
    let spec = margin_rows(weight, label);
    let xs = row.x.to_vec();
    let bias_gap = |j: usize| bias.map_or(0.0, |b| b[label] - b[j]);
    let mut m = Array1::from_shape_fn(classes, |j| {
        let z = sum_bounds(&spec.row(j).to_vec(), &xs, &row.free, k);
        match cfg {
            None => z.0 + bias_gap(j),
            Some(cfg) => {
                let lambda = cfg.lambda();
                // The robust part alone: the bounds of the same operator with λ = 0.
                let med = |c: usize| {
                    let zero = cfg.with_lambda(0.0).expect("λ = 0 is finite");
                    output_bounds(row, weight.row(c), Some((weight.row(c), &zero)), k)
                };
                let (my, mj) = (med(label), med(j));
                scale(z.0, z.1, lambda).0
                    + scale(my.0 - mj.1, my.1 - mj.0, 1.0 - lambda).0
                    + bias_gap(j)
            }
        }
    });
    m[label] = f64::INFINITY;
    Ok(m)
}

/// The ℓ0 certificate of image `x [C, H, W]` with label `label` when at most `pixels` entries
/// change (any value in [0, 1]).
///
/// # Errors
/// As [`margins`].
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::certify::{l0, Network};
/// use nrpm::models::{Model, ModelSpec};
/// let data = nrpm::data::Dataset::mnist_subset(nrpm::data::Split::Test)?.first(1);
/// let mut model = Model::<f64>::new(ModelSpec::from_name("mlp2", 1, 28)?);
/// model.init(0);
/// let net = Network::new(&model)?;
/// let x = data.images().index_axis(ndarray::Axis(0), 0).mapv(f64::from);
/// let m0 = l0::certify(&net, x.view(), data.labels()[0], 0)?.min_margin();
/// let m4 = l0::certify(&net, x.view(), data.labels()[0], 4)?.min_margin();
/// assert!(m4 <= m0); // more pixels, a smaller margin
/// # Ok(()) }
/// ```
pub fn certify<T: Real>(
    net: &Network,
    x: ArrayView3<T>,
    label: usize,
    pixels: usize,
) -> Result<Certificate> {
    Ok(Certificate {
        margins: margins(net, &image_f64(x), label, pixels)?,
    })
}
