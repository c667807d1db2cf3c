//! Linear-relaxation back-substitution (CROWN; Zhang et al. 2018) for LPM networks.
//!
//! A segment of affine maps `h ↦ W·h + b` (Linear and Conv2d LPM as dense matrices, BatchNorm
//! as a diagonal, average pooling) and ReLUs starts at a box `[x̲, x̄]`. A lower bound of
//! `Λ·h_n + c` at the segment's end is carried back op by op:
//!
//! ```text
//! affine   c ← c + Λ·b,  Λ ← Λ·W
//! ReLU     pre-activation p ∈ [l, u] (itself bounded by back-substitution):
//!          u ≤ 0: relu(p) = 0;   l ≥ 0: relu(p) = p;   else
//!          α·p ≤ relu(p) ≤ s·(p − l),  s = u/(u − l),  α = 1 if u ≥ −l else 0
//!          column j: Λ_mj ≥ 0 takes the lower line (Λ_mj ← Λ_mj·α_j),
//!                    Λ_mj < 0 the upper one (c_m ← c_m − Λ_mj·s_j·l_j, Λ_mj ← Λ_mj·s_j)
//! box      min over [x̲, x̄] of Λ·x + c = Λ⁺·x̲ + Λ⁻·x̄ + c
//! ```
//!
//! Upper bounds negate Λ and c. The margin specification `C` (rows `e_y − e_j`) enters folded
//! into the last Linear layer (`Λ = C·W`, `c = C·b`). Without ReLU the whole network is one
//! affine map and the bound is the exact minimum margin over the box
//! (proofs/13-crown-back-substitution.md). Max pooling, NRPM layers and residual blocks end a
//! segment: the box of their input is concretised, interval propagation carries it through
//! them, and a new segment starts at the result.

use ndarray::{Array1, Array2, ArrayD, ArrayView3, IxDyn};

use crate::certify::interval::{self, fold_margins, margin_rows, op_key};
use crate::certify::{linf_certificate, Bounds, Certificate, Network, Op, Sum};
use crate::error::{Error, Result};
use crate::nrpm::conv::{unfold, Conv2dGeometry};
use crate::real::Real;

/// The largest dense matrix (entries) a segment builds for one layer; larger layers (e.g. the
/// wide convolutions of a ResNet) are refused with [`Error::CannotBound`].
pub const MAX_DENSE_ENTRIES: usize = 1 << 25;

/// One relaxable step of a segment.
#[derive(Clone, Debug)]
enum Step {
    /// `W·h + b`.
    Affine { w: Array2<f64>, b: Array1<f64> },
    /// `s ⊙ h + t`.
    Diag { s: Array1<f64>, t: Array1<f64> },
    /// ReLU with the bounds `[l, u]` of its input.
    Relu { l: Array1<f64>, u: Array1<f64> },
}

/// A run of steps from a box.
struct Segment {
    lo: Array1<f64>,
    hi: Array1<f64>,
    steps: Vec<Step>,
    /// Shape of the current activation.
    shape: Vec<usize>,
}

impl Segment {
    fn start(b: Bounds) -> Self {
        let shape = b.shape().to_vec();
        let n = b.lo().len();
        let flat = |a: &ArrayD<f64>| {
            a.view()
                .into_shape_with_order(n)
                .expect("any shape flattens")
                .to_owned()
        };
        Self {
            lo: flat(b.lo()),
            hi: flat(b.hi()),
            steps: Vec::new(),
            shape,
        }
    }

    /// Lower bounds of `Λ·h + c`, h the output of the first `upto` steps.
    fn lower(&self, mut lam: Array2<f64>, mut c: Array1<f64>, upto: usize) -> Array1<f64> {
        for step in self.steps[..upto].iter().rev() {
            match step {
                Step::Affine { w, b } => {
                    c += &lam.dot(b);
                    lam = lam.dot(w);
                }
                Step::Diag { s, t } => {
                    c += &lam.dot(t);
                    lam *= s;
                }
                Step::Relu { l, u } => relax(&mut lam, &mut c, l, u),
            }
        }
        let pos = lam.mapv(|v| v.max(0.0));
        let neg = lam.mapv(|v| v.min(0.0));
        c + pos.dot(&self.lo) + neg.dot(&self.hi)
    }

    /// Bounds `(lower, upper)` of `Λ·h + c` at the end of the segment.
    fn bounds(&self, lam: Array2<f64>, c: Array1<f64>) -> (Array1<f64>, Array1<f64>) {
        let n = self.steps.len();
        let lo = self.lower(lam.clone(), c.clone(), n);
        let hi = -self.lower(-lam, -c, n);
        (lo, hi)
    }

    /// Concrete bounds of the current activation.
    fn concretise(&self) -> Bounds {
        let (lo, hi) = self.concrete_upto(self.steps.len());
        let hi = ndarray::Zip::from(&hi)
            .and(&lo)
            .map_collect(|&h, &l| h.max(l));
        Bounds::raw(
            lo.into_shape_with_order(IxDyn(&self.shape))
                .expect("same count"),
            hi.into_shape_with_order(IxDyn(&self.shape))
                .expect("same count"),
        )
    }

    /// Concrete bounds (flat) of the output of the first `n` steps.
    fn concrete_upto(&self, n: usize) -> (Array1<f64>, Array1<f64>) {
        match self.steps[..n].last() {
            None => (self.lo.clone(), self.hi.clone()),
            Some(Step::Relu { l, u }) => (l.mapv(|v| v.max(0.0)), u.mapv(|v| v.max(0.0))),
            Some(Step::Affine { w, b }) => (
                self.lower(w.clone(), b.clone(), n - 1),
                -self.lower(-w, -b, n - 1),
            ),
            Some(Step::Diag { s, t }) => {
                let (mut lo, mut hi) = self.concrete_upto(n - 1);
                for i in 0..lo.len() {
                    let (a, b) = crate::certify::scale(lo[i], hi[i], s[i]);
                    lo[i] = a + t[i];
                    hi[i] = b + t[i];
                }
                (lo, hi)
            }
        }
    }
}

/// Carries `Λ`, `c` back through a ReLU whose input lies in `[l, u]`.
fn relax(lam: &mut Array2<f64>, c: &mut Array1<f64>, l: &Array1<f64>, u: &Array1<f64>) {
    for j in 0..l.len() {
        let (lj, uj) = (l[j], u[j]);
        let (alpha, slope) = if uj <= 0.0 {
            (0.0, 0.0)
        } else if lj >= 0.0 {
            (1.0, 1.0)
        } else {
            (if uj >= -lj { 1.0 } else { 0.0 }, uj / (uj - lj))
        };
        let unstable = lj < 0.0 && uj > 0.0;
        for (m, v) in lam.column_mut(j).iter_mut().enumerate() {
            if *v >= 0.0 {
                *v *= alpha;
            } else {
                if unstable {
                    c[m] -= *v * slope * lj;
                }
                *v *= slope;
            }
        }
    }
}

/// [`Error::CannotBound`] unless a dense map of `rows × cols` fits [`MAX_DENSE_ENTRIES`].
fn check_dense(key: &str, rows: usize, cols: usize) -> Result<()> {
    if rows.saturating_mul(cols) > MAX_DENSE_ENTRIES {
        return Err(Error::CannotBound {
            layer: key.to_string(),
            reason: format!(
                "crown would build a dense {rows}×{cols} map (over {MAX_DENSE_ENTRIES} entries): \
                 use the interval method (ibp) for this network"
            ),
        });
    }
    Ok(())
}

/// The dense `[O·Ho·Wo, C·H·W]` matrix of a convolution on `[C, H, W]` inputs (NCHW order),
/// and its bias per output.
fn conv_dense(
    key: &str,
    shape: &[usize],
    weight: &ndarray::Array4<f64>,
    bias: Option<&Array1<f64>>,
    geometry: &Conv2dGeometry,
) -> Result<(Array2<f64>, Array1<f64>)> {
    let (o, c, kh, kw) = weight.dim();
    let (h, w) = (shape[1], shape[2]);
    let (ho, wo) = geometry.output_size(h, w, kh, kw)?;
    let (rows, cols) = (o * ho * wo, c * h * w);
    check_dense(key, rows, cols)?;
    // Unfolding the image of (flat index + 1) gives each tap's source; 0 marks padding.
    let index = ndarray::Array4::from_shape_fn((1, c, h, w), |(_, ci, y, x)| {
        ((ci * h + y) * w + x + 1) as f64
    });
    let taps = unfold(index.view(), kh, kw, geometry)?;
    let flat = weight
        .view()
        .into_shape_with_order((o, c * kh * kw))
        .expect("contiguous");
    let l = ho * wo;
    let mut dense = Array2::zeros((rows, cols));
    for oi in 0..o {
        for p in 0..l {
            for (d, &src) in taps.row(p).iter().enumerate() {
                if src > 0.0 {
                    dense[[oi * l + p, src as usize - 1]] += flat[[oi, d]];
                }
            }
        }
    }
    let b = Array1::from_shape_fn(rows, |r| bias.map_or(0.0, |b| b[r / l]));
    Ok((dense, b))
}

/// The dense map of `k×k` average pooling with stride `s` on `[C, H, W]`.
fn avg_dense(shape: &[usize], k: usize, s: usize) -> Result<Array2<f64>> {
    let (c, h, w) = (shape[0], shape[1], shape[2]);
    if k == 0 || s == 0 || h < k || w < k {
        return Err(Error::config(
            "pool window",
            k,
            "kernel and stride ≥ 1, window must fit",
        ));
    }
    let (ho, wo) = ((h - k) / s + 1, (w - k) / s + 1);
    check_dense("avgpool", c * ho * wo, c * h * w)?;
    let mut dense = Array2::zeros((c * ho * wo, c * h * w));
    let share = 1.0 / (k * k) as f64;
    for ci in 0..c {
        for oy in 0..ho {
            for ox in 0..wo {
                for i in 0..k {
                    for j in 0..k {
                        dense[[
                            (ci * ho + oy) * wo + ox,
                            (ci * h + oy * s + i) * w + ox * s + j,
                        ]] += share;
                    }
                }
            }
        }
    }
    Ok(dense)
}

/// Adds one op to the segment, or ends it at a breakpoint and starts the next.
fn push(seg: Segment, op: &Op) -> Result<Segment> {
    let mut seg = seg;
    match op {
        Op::Linear {
            weight,
            bias,
            sum: Sum::Lpm,
            ..
        } => {
            let b = bias
                .clone()
                .unwrap_or_else(|| Array1::zeros(weight.nrows()));
            seg.steps.push(Step::Affine {
                w: weight.clone(),
                b,
            });
            seg.shape = vec![weight.nrows()];
        }
        Op::Conv {
            key,
            weight,
            bias,
            geometry,
            sum: Sum::Lpm,
        } => {
            let (w, b) = conv_dense(key, &seg.shape, weight, bias.as_ref(), geometry)?;
            let (ho, wo) =
                geometry.output_size(seg.shape[1], seg.shape[2], weight.dim().2, weight.dim().3)?;
            seg.steps.push(Step::Affine { w, b });
            seg.shape = vec![weight.dim().0, ho, wo];
        }
        Op::Channel { scale, shift } => {
            let per = seg.shape[1..].iter().product::<usize>();
            let s = Array1::from_shape_fn(seg.shape.iter().product::<usize>(), |i| scale[i / per]);
            let t = Array1::from_shape_fn(s.len(), |i| shift[i / per]);
            match seg.steps.last_mut() {
                // Folded into the affine map before it: diag(s)·(W·h + b) + t.
                Some(Step::Affine { w, b }) => {
                    for (i, mut row) in w.rows_mut().into_iter().enumerate() {
                        row *= s[i];
                    }
                    *b = &*b * &s + &t;
                }
                _ => seg.steps.push(Step::Diag { s, t }),
            }
        }
        Op::AvgPool { kernel, stride } => {
            let w = avg_dense(&seg.shape, *kernel, *stride)?;
            let (ho, wo) = (
                (seg.shape[1] - kernel) / stride + 1,
                (seg.shape[2] - kernel) / stride + 1,
            );
            let b = Array1::zeros(w.nrows());
            seg.steps.push(Step::Affine { w, b });
            seg.shape = vec![seg.shape[0], ho, wo];
        }
        Op::Flatten => seg.shape = vec![seg.shape.iter().product::<usize>()],
        Op::Relu => {
            let pre = seg.concretise();
            let n = pre.lo().len();
            let flat =
                |a: &ArrayD<f64>| a.view().into_shape_with_order(n).expect("flat").to_owned();
            seg.steps.push(Step::Relu {
                l: flat(pre.lo()),
                u: flat(pre.hi()),
            });
        }
        breakpoint => {
            let out = interval::op(breakpoint, seg.concretise())?;
            return Ok(Segment::start(out));
        }
    }
    Ok(seg)
}

/// Lower bounds of the margins `logit_label − logit_j` over `input` by back-substitution.
///
/// # Errors
/// [`Error::Shape`] if the box is not one image; [`Error::Config`] for a bad label;
/// [`Error::CannotBound`] for a layer too wide for dense maps ([`MAX_DENSE_ENTRIES`]).
pub fn margins(net: &Network, input: &Bounds, label: usize) -> Result<Array1<f64>> {
    net.check_image(&input.lo().view())?;
    net.check_label(label)?;
    let (last, body) = net.ops.split_last().ok_or_else(|| {
        Error::config(
            "network",
            "no layers",
            "a certificate needs at least one layer",
        )
    })?;
    let mut seg = Segment::start(input.clone());
    for op in body {
        seg = push(seg, op).map_err(|e| e.in_layer(op_key(op)))?;
    }
    let classes = net.classes();
    match last {
        Op::Linear {
            weight,
            bias,
            sum: Sum::Lpm,
            ..
        } if weight.nrows() == classes => {
            if seg.shape != [weight.ncols()] {
                return Err(Error::shape(
                    "certify::crown",
                    "last layer input",
                    &[weight.ncols()],
                    &seg.shape,
                ));
            }
            let spec = margin_rows(weight.view(), label);
            let c =
                Array1::from_shape_fn(classes, |j| bias.as_ref().map_or(0.0, |b| b[label] - b[j]));
            let mut m = seg.bounds(spec, c).0;
            m[label] = f64::INFINITY;
            Ok(m)
        }
        other => fold_margins(other, seg.concretise(), label, classes)
            .map_err(|e| e.in_layer(op_key(other))),
    }
}

/// Bounds `(lower, upper)` of every logit over `input` by back-substitution (the identity
/// specification at the last layer).
///
/// # Errors
/// As [`margins`].
pub fn logits(net: &Network, input: &Bounds) -> Result<Bounds> {
    net.check_image(&input.lo().view())?;
    let mut seg = Segment::start(input.clone());
    for op in &net.ops {
        seg = push(seg, op).map_err(|e| e.in_layer(op_key(op)))?;
    }
    Ok(seg.concretise())
}

/// The CROWN certificate of image `x [C, H, W]` with label `label` under `‖x' − x‖∞ ≤ ε`,
/// `x' ∈ [0, 1]`.
///
/// # Errors
/// As [`margins`]; [`Error::Config`] for ε < 0 or an image outside [0, 1].
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::certify::{crown, interval, Network};
/// use nrpm::models::{Model, ModelSpec};
/// let data = nrpm::data::Dataset::mnist_subset(nrpm::data::Split::Test)?.first(1);
/// let mut model = Model::<f64>::new(ModelSpec::from_name("mlp3", 1, 28)?); // no ReLU
/// model.init(0);
/// let net = Network::new(&model)?;
/// let x = data.images().index_axis(ndarray::Axis(0), 0).mapv(f64::from);
/// let (y, eps) = (data.labels()[0], 0.01);
/// let exact = crown::certify(&net, x.view(), y, eps)?.min_margin();
/// let ibp = interval::certify(&net, x.view(), y, eps)?.min_margin();
/// assert!(exact >= ibp); // back-substitution is exact here, IBP is not
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
