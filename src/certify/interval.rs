//! Interval bound propagation (IBP; Gowal et al. 2018) through every layer nrpm has, with the
//! margin specification folded into the last linear layer.
//!
//! ```text
//! affine (Linear, Conv2d LPM)   y̲ = W⁺·x̲ + W⁻·x̄ + b,  ȳ = W⁺·x̄ + W⁻·x̲ + b   (W⁺ = max(W, 0))
//! NRPM Linear / Conv2d          nrpm_bounds (per output row of unfolded patches)
//! BatchNorm (eval)              y_c = s_c·x_c + t_c: [s·x̲, s·x̄] (swapped for s < 0) + t
//! ReLU, max pooling             monotone: f(x̲) ≤ f(x) ≤ f(x̄)
//! average pooling, flatten      positive linear / reshape: applied to both ends
//! residual block                relu(main(x) + shortcut(x)): the two boxes add
//! margin, last layer LPM        m_j = (w_y − w_j)·h + b_y − b_j, bounded exactly over h's box
//! margin, last layer NRPM       λ·(w_y − w_j)·h exactly, + (1 − λ)·(z̲ᴷ_y − z̄ᴷ_j), + b_y − b_j
//! ```
//!
//! Each rule contains the image of its input box (proofs/11-interval-propagation.md).

use ndarray::{Array1, Array2, Array4, ArrayD, ArrayView1, ArrayView2, ArrayView3, Axis, IxDyn};

use crate::certify::{linf_certificate, nrpm_bounds, scale, Bounds, Certificate, Network, Op, Sum};
use crate::error::{Error, Result};
use crate::nrpm::conv::{unfold, Conv2dGeometry};
use crate::real::Real;

/// `(W⁺·lo + W⁻·hi + b, W⁺·hi + W⁻·lo + b)` for rows `[R, D]`, `weight [O, D]`: `[R, O]` each.
pub(crate) fn affine_rows(
    lo: ArrayView2<f64>,
    hi: ArrayView2<f64>,
    weight: ArrayView2<f64>,
    bias: Option<ArrayView1<f64>>,
) -> (Array2<f64>, Array2<f64>) {
    let pos = weight.mapv(|w| w.max(0.0));
    let neg = weight.mapv(|w| w.min(0.0));
    let mut y_lo = lo.dot(&pos.t()) + hi.dot(&neg.t());
    let mut y_hi = hi.dot(&pos.t()) + lo.dot(&neg.t());
    if let Some(b) = bias {
        y_lo += &b;
        y_hi += &b;
    }
    (y_lo, y_hi)
}

/// Bounds of a matching (Linear or Conv2d rows) `[R, D] → [R, O]`.
fn matching_rows(
    lo: ArrayView2<f64>,
    hi: ArrayView2<f64>,
    weight: ArrayView2<f64>,
    bias: Option<ArrayView1<f64>>,
    sum: &Sum,
) -> Result<(Array2<f64>, Array2<f64>)> {
    match sum {
        Sum::Lpm => Ok(affine_rows(lo, hi, weight, bias)),
        Sum::Nrpm(cfg) => nrpm_bounds::rows(lo, hi, weight, bias, cfg),
    }
}

/// The bounds of one op's output for an input in `b`.
///
/// # Errors
/// [`Error::Shape`] when the input does not fit the op; operator errors.
pub(crate) fn op(op: &Op, b: Bounds) -> Result<Bounds> {
    match op {
        Op::Linear {
            weight, bias, sum, ..
        } => {
            let d = weight.ncols();
            if b.shape() != [d] {
                return Err(Error::shape(
                    "certify::interval",
                    "linear input",
                    &[d],
                    b.shape(),
                ));
            }
            let b = b.reshaped(&[1, d])?;
            let (lo, hi) = (as2(b.lo()), as2(b.hi()));
            let (y_lo, y_hi) =
                matching_rows(lo, hi, weight.view(), bias.as_ref().map(|b| b.view()), sum)?;
            Bounds::raw(y_lo.into_dyn(), y_hi.into_dyn()).reshaped(&[weight.nrows()])
        }
        Op::Conv {
            weight,
            bias,
            geometry,
            sum,
            ..
        } => conv(&b, weight, bias.as_ref(), geometry, sum),
        Op::Channel { scale: s, shift } => channel(b, s, shift),
        Op::Relu => Ok(Bounds::raw(
            b.lo.mapv(|v| v.max(0.0)),
            b.hi.mapv(|v| v.max(0.0)),
        )),
        Op::MaxPool { kernel, stride } => {
            pool(b, |x| crate::nn::pool::max_forward(x, *kernel, *stride))
        }
        Op::AvgPool { kernel, stride } => {
            pool(b, |x| crate::nn::pool::avg_forward(x, *kernel, *stride))
        }
        Op::Flatten => {
            let n = b.lo.len();
            b.reshaped(&[n])
        }
        Op::Residual { main, shortcut } => {
            let m = ops(main, b.clone())?;
            let s = match shortcut {
                Some(sc) => ops(sc, b)?,
                None => b,
            };
            if m.shape() != s.shape() {
                return Err(Error::shape(
                    "certify::interval",
                    "shortcut",
                    m.shape(),
                    s.shape(),
                ));
            }
            let lo = (m.lo + s.lo).mapv(|v| v.max(0.0));
            let hi = (m.hi + s.hi).mapv(|v| v.max(0.0));
            Ok(Bounds::raw(lo, hi))
        }
    }
}

/// A `[1, D]` view of a `[1, D]` array.
fn as2(a: &ArrayD<f64>) -> ArrayView2<'_, f64> {
    a.view().into_dimensionality().expect("[1, D]")
}

/// The bounds after a run of ops.
///
/// # Errors
/// As [`op`], inside [`Error::InLayer`] for keyed layers.
pub(crate) fn ops(list: &[Op], mut b: Bounds) -> Result<Bounds> {
    for o in list {
        b = op(o, b).map_err(|e| e.in_layer(op_key(o)))?;
    }
    Ok(b)
}

/// The key of a matching op (empty for the others).
pub(crate) fn op_key(o: &Op) -> &str {
    match o {
        Op::Linear { key, .. } | Op::Conv { key, .. } => key,
        _ => "",
    }
}

/// Conv2d bounds through the unfolded patches (padding is the point 0).
fn conv(
    b: &Bounds,
    weight: &Array4<f64>,
    bias: Option<&Array1<f64>>,
    geometry: &Conv2dGeometry,
    sum: &Sum,
) -> Result<Bounds> {
    let (o, c, kh, kw) = weight.dim();
    let shape = b.shape();
    if shape.len() != 3 || shape[0] != c {
        return Err(Error::shape(
            "certify::interval",
            "conv input [C, H, W]",
            &[c, 0, 0],
            shape,
        ));
    }
    let (h, w) = (shape[1], shape[2]);
    let (ho, wo) = geometry.output_size(h, w, kh, kw)?;
    let img = |a: &ArrayD<f64>| -> Result<Array2<f64>> {
        let a4 = a
            .view()
            .into_shape_with_order((1, c, h, w))
            .expect("[C, H, W]");
        unfold(a4, kh, kw, geometry)
    };
    let flat = weight
        .view()
        .into_shape_with_order((o, c * kh * kw))
        .expect("contiguous");
    let (y_lo, y_hi) = matching_rows(
        img(&b.lo)?.view(),
        img(&b.hi)?.view(),
        flat,
        bias.map(|b| b.view()),
        sum,
    )?;
    Ok(Bounds::from_rows(y_lo, y_hi, [o, ho, wo]))
}

/// Per-channel affine bounds (BatchNorm in eval mode).
fn channel(b: Bounds, s: &Array1<f64>, t: &Array1<f64>) -> Result<Bounds> {
    let c = s.len();
    if b.shape().first() != Some(&c) {
        return Err(Error::shape(
            "certify::interval",
            "batchnorm input [C, …]",
            &[c],
            b.shape(),
        ));
    }
    let (mut lo, mut hi) = (b.lo, b.hi);
    for ch in 0..c {
        let mut l = lo.index_axis_mut(Axis(0), ch);
        let mut h = hi.index_axis_mut(Axis(0), ch);
        ndarray::Zip::from(&mut l).and(&mut h).for_each(|l, h| {
            let (a, b) = scale(*l, *h, s[ch]);
            *l = a + t[ch];
            *h = b + t[ch];
        });
    }
    Ok(Bounds::raw(lo, hi))
}

/// A monotone non-decreasing pooling applied to both ends (`[C, H, W]`).
fn pool(
    b: Bounds,
    f: impl Fn(ArrayD<f64>) -> Result<(ArrayD<f64>, crate::nn::Cache<f64>)>,
) -> Result<Bounds> {
    let run = |a: ArrayD<f64>| -> Result<ArrayD<f64>> {
        let mut shape = vec![1];
        shape.extend_from_slice(a.shape());
        let a = a.into_shape_with_order(IxDyn(&shape)).map_err(|_| {
            Error::shape("certify::interval", "pool input", &[0, 0, 0], &shape[1..])
        })?;
        let y = f(a)?.0;
        let out = y.shape()[1..].to_vec();
        Ok(y.into_shape_with_order(IxDyn(&out)).expect("batch of one"))
    };
    Ok(Bounds::raw(run(b.lo)?, run(b.hi)?))
}

/// Lower bounds of the margins `logit_label − logit_j` (`+∞` at j = label) when the input of
/// the last op `last` lies in `b`, the margin folded into it when it is a Linear layer.
///
/// # Errors
/// As [`op`]; [`Error::Shape`] if the output is not `[classes]`.
pub(crate) fn fold_margins(
    last: &Op,
    b: Bounds,
    label: usize,
    classes: usize,
) -> Result<Array1<f64>> {
    let Op::Linear {
        weight, bias, sum, ..
    } = last
    else {
        let y = op(last, b)?;
        return logit_margins(&y, label, classes);
    };
    if weight.nrows() != classes || b.shape() != [weight.ncols()] {
        return Err(Error::shape(
            "certify::interval",
            "last layer",
            &[classes, b.lo.len()],
            weight.shape(),
        ));
    }
    let spec = margin_rows(weight.view(), label);
    let bias_spec = bias
        .as_ref()
        .map(|bv| Array1::from_shape_fn(classes, |j| bv[label] - bv[j]));
    let row = |a: &ArrayD<f64>| {
        a.view()
            .into_shape_with_order((1, weight.ncols()))
            .expect("[D]")
            .to_owned()
    };
    let (lo, hi) = (row(&b.lo), row(&b.hi));
    let mut m = match sum {
        Sum::Lpm => affine_rows(lo.view(), hi.view(), spec.view(), None)
            .0
            .row(0)
            .to_owned(),
        Sum::Nrpm(cfg) => {
            let (s_lo, s_hi) = affine_rows(lo.view(), hi.view(), spec.view(), None);
            let (r_lo, r_hi) = nrpm_bounds::robust_rows(lo.view(), hi.view(), weight.view(), cfg)?;
            let lambda = cfg.lambda();
            Array1::from_shape_fn(classes, |j| {
                let linear = scale(s_lo[[0, j]], s_hi[[0, j]], lambda).0;
                let (gap_lo, gap_hi) = (
                    r_lo[[0, label]] - r_hi[[0, j]],
                    r_hi[[0, label]] - r_lo[[0, j]],
                );
                linear + scale(gap_lo, gap_hi, 1.0 - lambda).0
            })
        }
    };
    if let Some(bs) = bias_spec {
        m += &bs;
    }
    m[label] = f64::INFINITY;
    Ok(m)
}

/// The rows `w_label − w_j` of the margin specification folded into `weight [K, D]`.
pub(crate) fn margin_rows(weight: ArrayView2<f64>, label: usize) -> Array2<f64> {
    let top = weight.row(label).to_owned();
    let mut spec = weight.to_owned();
    for mut r in spec.rows_mut() {
        r.zip_mut_with(&top, |w, &t| *w = t - *w);
    }
    spec
}

/// `lo_label − hi_j` from logit bounds (`+∞` at j = label).
pub(crate) fn logit_margins(y: &Bounds, label: usize, classes: usize) -> Result<Array1<f64>> {
    if y.shape() != [classes] {
        return Err(Error::shape(
            "certify::interval",
            "logits",
            &[classes],
            y.shape(),
        ));
    }
    Ok(Array1::from_shape_fn(classes, |j| match j == label {
        true => f64::INFINITY,
        false => y.lo[label] - y.hi[j],
    }))
}

/// Bounds of the logits `[classes]` for images in `input` (`[C, H, W]`).
///
/// # Errors
/// [`Error::Shape`] if the box is not one image of the network; layer errors inside
/// [`Error::InLayer`].
pub fn logits(net: &Network, input: &Bounds) -> Result<Bounds> {
    net.check_image(&input.lo.view())?;
    ops(&net.ops, input.clone())
}

/// Lower bounds of the margins `logit_label − logit_j` over `input`, the margin folded into
/// the last layer.
///
/// # Errors
/// As [`logits`]; [`Error::Config`] for a label that is not a class.
pub fn margins(net: &Network, input: &Bounds, label: usize) -> Result<Array1<f64>> {
    net.check_image(&input.lo.view())?;
    net.check_label(label)?;
    let (last, body) = net.ops.split_last().ok_or_else(|| {
        Error::config(
            "network",
            "no layers",
            "a certificate needs at least one layer",
        )
    })?;
    let h = ops(body, input.clone())?;
    fold_margins(last, h, label, net.classes()).map_err(|e| e.in_layer(op_key(last)))
}

/// The IBP certificate of image `x [C, H, W]` (values in [0, 1]) with label `label` under
/// `‖x' − x‖∞ ≤ ε`, `x' ∈ [0, 1]`.
///
/// # Errors
/// As [`margins`]; [`Error::Config`] for ε < 0 or an image outside [0, 1].
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::certify::{interval, Network};
/// use nrpm::models::{Model, ModelSpec};
/// let data = nrpm::data::Dataset::mnist_subset(nrpm::data::Split::Test)?.first(1);
/// let mut model = Model::<f64>::new(ModelSpec::from_name("mlp1", 1, 28)?);
/// model.init(0);
/// let net = Network::new(&model)?;
/// let x = data.images().index_axis(ndarray::Axis(0), 0).mapv(f64::from);
/// let at0 = interval::certify(&net, x.view(), data.labels()[0], 0.0)?;
/// let wide = interval::certify(&net, x.view(), data.labels()[0], 0.5)?;
/// assert!(wide.min_margin() <= at0.min_margin()); // a larger ball, a smaller margin
/// # Ok(()) }
/// ```
pub fn certify<T: Real>(
    net: &Network,
    x: ArrayView3<T>,
    label: usize,
    eps: f64,
) -> Result<Certificate> {
    linf_certificate(net, x, label, eps, margins)
}
