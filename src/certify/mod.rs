//! Certificates: lower bounds on robust accuracy that no attack can break, beside the attacks'
//! upper bounds.
//!
//! ```text
//! randomized smoothing (smoothing.rs)   g(x) = argmax_c P(f(x + δ) = c),  δ ~ N(0, σ²I)
//!     certified radius R = σ·Φ⁻¹(p̲),  p̲ = Clopper–Pearson lower bound of P(f(x + δ) = ĉ)
//! bound propagation under ‖x' − x‖∞ ≤ ε, x' ∈ [0, 1]
//!     interval.rs      IBP through every layer; the margin folded into the last layer
//!     nrpm_bounds.rs   sound intervals through the NRPM operator (K IRLS steps, the λ mix,
//!                      N groups, every norm) and the exact LAD limit
//!     crown.rs         linear-relaxation back-substitution (exact on activation-free nets)
//! ℓ0 (k changed pixels, values in [0, 1])
//!     l0.rs            exact k-pixel bounds of the LPM sum and the median at the first layer
//! the bracket (bracket.rs, falsify.rs)
//!     verified accuracy ≤ true robust accuracy ≤ the strongest attack's robust accuracy
//! ```
//!
//! An image is certified at a budget when the lower bound of every margin
//! `m_j = logit_y − logit_j` (j ≠ y, y its label) is > 0 over the threat set. Bounds are
//! computed in f64 for the real-valued network the weights define; a [`Network`] is the
//! model's layers read once into f64 (a `Layer::Custom`, whose maths nrpm does not know, is
//! [`Error::CannotBound`]). Bounds in, counts out: this module writes no file.
//!
//! Proofs: `proofs/11-*.md` to `proofs/15-*.md`.

pub mod bracket;
pub mod crown;
pub mod falsify;
pub mod interval;
pub mod l0;
pub(crate) mod noise;
pub mod nrpm_bounds;
pub mod smoothing;

use ndarray::{Array1, Array2, Array4, ArrayD, ArrayViewD, IxDyn};

use crate::error::{Error, Result};
use crate::models::Model;
use crate::nn::{Layer, Matching, Sequential};
use crate::nrpm::conv::Conv2dGeometry;
use crate::nrpm::NrpmConfig;
use crate::real::Real;

/// Element-wise bounds `lo ≤ v ≤ hi` of one image's activation (any shape, no batch axis).
#[derive(Clone, Debug, PartialEq)]
pub struct Bounds {
    lo: ArrayD<f64>,
    hi: ArrayD<f64>,
}

impl Bounds {
    /// Bounds from their two ends.
    ///
    /// # Errors
    /// [`Error::Shape`] if the shapes differ; [`Error::NonFinite`] on NaN or ±Inf;
    /// [`Error::Config`] if some `lo > hi`.
    pub fn new(lo: ArrayD<f64>, hi: ArrayD<f64>) -> Result<Self> {
        if lo.shape() != hi.shape() {
            return Err(Error::shape(
                "certify::Bounds::new",
                "hi",
                lo.shape(),
                hi.shape(),
            ));
        }
        crate::nrpm::check_finite("bound lo", &lo)?;
        crate::nrpm::check_finite("bound hi", &hi)?;
        if lo.iter().zip(hi.iter()).any(|(l, h)| l > h) {
            return Err(Error::config(
                "bounds",
                "lo > hi",
                "need lo ≤ hi everywhere",
            ));
        }
        Ok(Self { lo, hi })
    }

    /// Ends known to be ordered and finite (computed by a bound).
    pub(crate) fn raw(lo: ArrayD<f64>, hi: ArrayD<f64>) -> Self {
        debug_assert_eq!(lo.shape(), hi.shape());
        Self { lo, hi }
    }

    /// Bounds of a convolution's output from its rows `[L, O]` (one row per output pixel,
    /// L = Ho·Wo) as `[O, Ho, Wo]`.
    pub(crate) fn from_rows(lo: Array2<f64>, hi: Array2<f64>, shape: [usize; 3]) -> Self {
        let nchw = |y: Array2<f64>| {
            y.reversed_axes()
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order(IxDyn(&shape))
                .expect("[O, L] holds O·Ho·Wo entries")
        };
        Self::raw(nchw(lo), nchw(hi))
    }

    /// The single point `x`.
    pub fn point(x: ArrayD<f64>) -> Self {
        Self {
            lo: x.clone(),
            hi: x,
        }
    }

    /// The L∞ ball of radius ε around `x`, intersected with [0, 1]: `[max(x − ε, 0),
    /// min(x + ε, 1)]`.
    ///
    /// # Errors
    /// [`Error::Config`] for ε < 0 or not finite, or `x` outside [0, 1].
    pub fn linf_ball(x: ArrayViewD<f64>, eps: f64) -> Result<Self> {
        check_budget("eps", eps)?;
        if x.iter().any(|v| !(0.0..=1.0).contains(v)) {
            return Err(Error::config(
                "image",
                "values outside [0, 1]",
                "certificates take images in [0, 1]",
            ));
        }
        Ok(Self {
            lo: x.mapv(|v| (v - eps).max(0.0)),
            hi: x.mapv(|v| (v + eps).min(1.0)),
        })
    }

    /// Lower ends.
    pub fn lo(&self) -> &ArrayD<f64> {
        &self.lo
    }

    /// Upper ends.
    pub fn hi(&self) -> &ArrayD<f64> {
        &self.hi
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.lo.shape()
    }

    /// Whether every entry of `v` lies in `[lo − tol, hi + tol]`.
    pub fn contains(&self, v: &ArrayD<f64>, tol: f64) -> bool {
        v.shape() == self.shape()
            && ndarray::Zip::from(v)
                .and(&self.lo)
                .and(&self.hi)
                .all(|&v, &l, &h| v >= l - tol && v <= h + tol)
    }

    /// The same bounds in another shape of as many entries.
    pub(crate) fn reshaped(self, shape: &[usize]) -> Result<Self> {
        let from = self.shape().to_vec();
        let bad = |_| Error::shape("certify::Bounds", "reshape", shape, &from);
        Ok(Self {
            lo: self.lo.into_shape_with_order(IxDyn(shape)).map_err(bad)?,
            hi: self.hi.into_shape_with_order(IxDyn(shape)).map_err(bad)?,
        })
    }
}

/// [`Error::Config`] unless a budget is finite and ≥ 0.
pub(crate) fn check_budget(name: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::config(name, v, "must be finite and ≥ 0"))
    }
}

/// `[lo, hi]·s` for a scalar s of any sign.
pub(crate) fn scale(lo: f64, hi: f64, s: f64) -> (f64, f64) {
    if s >= 0.0 {
        (lo * s, hi * s)
    } else {
        (hi * s, lo * s)
    }
}

/// A matching layer's operator as the bounds see it: the plain sum, or NRPM with its
/// configuration (λ as the forward pass uses it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Sum {
    /// `z⁰ = Σ_d t_d`.
    Lpm,
    /// `λ·z⁰ + (1 − λ)·zᴷ` (or the exact LAD limit).
    Nrpm(NrpmConfig),
}

/// One step of a network in f64, as the bounds see it.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// `[D] → [O]`: `weight [O, D]`, optional bias.
    Linear {
        key: String,
        weight: Array2<f64>,
        bias: Option<Array1<f64>>,
        sum: Sum,
    },
    /// `[C, H, W] → [O, Ho, Wo]`: `weight [O, C, kh, kw]`, optional (applied) bias.
    Conv {
        key: String,
        weight: Array4<f64>,
        bias: Option<Array1<f64>>,
        geometry: Conv2dGeometry,
        sum: Sum,
    },
    /// Eval-mode BatchNorm: `y_c = scale_c·x_c + shift_c` per channel.
    Channel {
        scale: Array1<f64>,
        shift: Array1<f64>,
    },
    /// `max(x, 0)`.
    Relu,
    /// Max pooling.
    MaxPool { kernel: usize, stride: usize },
    /// Average pooling.
    AvgPool { kernel: usize, stride: usize },
    /// `[…] → [∏…]`.
    Flatten,
    /// `relu(main(x) + shortcut(x))` (identity shortcut when `None`).
    Residual {
        main: Vec<Op>,
        shortcut: Option<Vec<Op>>,
    },
}

/// A model's layers read once into f64 for the bounds: images `[C, H, W]` in, `classes`
/// logits out. Dropout is the identity (eval mode), nested sequences are flattened.
#[derive(Clone, Debug)]
pub struct Network {
    pub(crate) ops: Vec<Op>,
    input: [usize; 3],
    classes: usize,
}

impl Network {
    /// The network of `model` (eval mode, λ of each NRPM layer as its forward pass uses it).
    ///
    /// # Errors
    /// [`Error::CannotBound`] for a `Layer::Custom` (nrpm does not know its maths) or a
    /// diverged λ.
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// use nrpm::models::{Model, ModelSpec};
    /// let mut model = Model::<f32>::new(ModelSpec::from_name("mlp2", 1, 28)?);
    /// model.init(0);
    /// let net = nrpm::certify::Network::new(&model)?;
    /// assert_eq!((net.input(), net.classes()), ([1, 28, 28], 10));
    /// # Ok(()) }
    /// ```
    pub fn new<T: Real>(model: &Model<T>) -> Result<Self> {
        Ok(Self {
            ops: compile(model.net(), "")?,
            input: model.spec().input,
            classes: model.spec().classes,
        })
    }

    /// `[C, H, W]` of one image.
    pub fn input(&self) -> [usize; 3] {
        self.input
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Whether any matching layer runs NRPM (finite K or the exact LAD limit).
    pub fn has_nrpm(&self) -> bool {
        fn any(ops: &[Op]) -> bool {
            ops.iter().any(|op| match op {
                Op::Linear { sum, .. } | Op::Conv { sum, .. } => matches!(sum, Sum::Nrpm(_)),
                Op::Residual { main, shortcut } => {
                    any(main) || shortcut.as_deref().is_some_and(any)
                }
                _ => false,
            })
        }
        any(&self.ops)
    }

    /// [`Error::Shape`] unless `x` is one image of this network.
    pub(crate) fn check_image(&self, x: &ArrayViewD<f64>) -> Result<()> {
        if x.shape() != self.input {
            return Err(Error::shape(
                "certify",
                "image [C, H, W]",
                &self.input,
                x.shape(),
            ));
        }
        Ok(())
    }

    /// [`Error::Config`] unless `label` is a class.
    pub(crate) fn check_label(&self, label: usize) -> Result<()> {
        if label >= self.classes {
            return Err(Error::config(
                "label",
                label,
                "must be below the number of classes",
            ));
        }
        Ok(())
    }
}

/// The ops of a sequence of layers under `prefix`.
fn compile<T: Real>(seq: &Sequential<T>, prefix: &str) -> Result<Vec<Op>> {
    let mut ops = Vec::new();
    for (name, layer) in &seq.layers {
        let key = crate::nn::join(prefix, name);
        match layer {
            Layer::Sequential(s) => ops.extend(compile(s, &key)?),
            other => ops.extend(compile_layer(other, &key)?),
        }
    }
    Ok(ops)
}

/// The op of one (non-sequence) layer; `None` for the identity (dropout in eval mode).
fn compile_layer<T: Real>(layer: &Layer<T>, key: &str) -> Result<Option<Op>> {
    let f = |a: &ndarray::ArrayView1<T>| a.mapv(|v| v.f64());
    Ok(Some(match layer {
        Layer::Linear(l) => Op::Linear {
            key: key.to_string(),
            weight: l.weight().mapv(|v| v.f64()),
            bias: l.bias().map(|b| f(&b)),
            sum: sum_of(&l.matching, key)?,
        },
        Layer::Conv2d(c) => Op::Conv {
            key: key.to_string(),
            weight: c.weight().mapv(|v| v.f64()),
            bias: c.bias().filter(|_| c.apply_bias).map(|b| f(&b)),
            geometry: c.geometry,
            sum: sum_of(&c.matching, key)?,
        },
        Layer::BatchNorm2d(bn) => {
            let (mean, var, _) = bn.running_stats();
            let (g, b) = (f(&bn.weight()), f(&bn.bias()));
            let scale: Array1<f64> = ndarray::Zip::from(&g)
                .and(&var)
                .map_collect(|&g, &v| g / (v.f64() + bn.eps).sqrt());
            let shift = ndarray::Zip::from(&b)
                .and(&mean)
                .and(&scale)
                .map_collect(|&b, &m, &s| b - s * m.f64());
            Op::Channel { scale, shift }
        }
        Layer::Relu => Op::Relu,
        Layer::MaxPool2d { kernel, stride } => Op::MaxPool {
            kernel: *kernel,
            stride: *stride,
        },
        Layer::AvgPool2d { kernel, stride } => Op::AvgPool {
            kernel: *kernel,
            stride: *stride,
        },
        Layer::Dropout { .. } | Layer::Dropout2d { .. } => return Ok(None),
        Layer::Flatten => Op::Flatten,
        Layer::Residual(r) => Op::Residual {
            main: compile(&r.main, key)?,
            shortcut: r
                .shortcut
                .as_ref()
                .map(|s| compile(s, &crate::nn::join(key, "shortcut")))
                .transpose()?,
        },
        Layer::Sequential(s) => {
            return Err(Error::CannotBound {
                layer: key.to_string(),
                reason: format!("nested sequence of {} layers in a leaf", s.layers.len()),
            })
        }
        Layer::Custom(m) => {
            return Err(Error::CannotBound {
                layer: key.to_string(),
                reason: format!(
                    "a custom layer ({m:?}) has no bound in nrpm: certificates need layers \
                     whose maths nrpm knows"
                ),
            })
        }
    }))
}

/// The operator of a matching.
fn sum_of<T: Real>(matching: &Matching<T>, key: &str) -> Result<Sum> {
    match matching {
        Matching::Lpm => Ok(Sum::Lpm),
        Matching::Nrpm(m) => {
            let cfg = m.config().map_err(|e| Error::CannotBound {
                layer: key.to_string(),
                reason: e.to_string(),
            })?;
            Ok(if cfg.is_lpm() {
                Sum::Lpm
            } else {
                Sum::Nrpm(cfg)
            })
        }
    }
}

/// The outcome of one image under one certificate.
#[derive(Clone, Debug, PartialEq)]
pub struct Certificate {
    /// Lower bounds of the margins `logit_y − logit_j` (`+∞` at j = y).
    pub margins: Array1<f64>,
}

impl Certificate {
    /// Whether every margin's lower bound is > 0: no point of the threat set changes the
    /// prediction from the label.
    pub fn certified(&self) -> bool {
        self.margins.iter().all(|&m| m > 0.0)
    }

    /// The smallest margin lower bound.
    pub fn min_margin(&self) -> f64 {
        self.margins.iter().copied().fold(f64::INFINITY, f64::min)
    }
}

/// The certificate of image `x [C, H, W]` with `label` over the L∞ ball of radius `eps`
/// (∩ [0, 1]), its margins bounded by `margins`.
///
/// # Errors
/// [`Error::Config`] for a bad ε or an image outside [0, 1]; the errors of `margins`.
pub(crate) fn linf_certificate<T: Real>(
    net: &Network,
    x: ndarray::ArrayView3<T>,
    label: usize,
    eps: f64,
    margins: fn(&Network, &Bounds, usize) -> Result<Array1<f64>>,
) -> Result<Certificate> {
    check_budget("eps", eps)?;
    let input = Bounds::linf_ball(image_f64(x).view(), eps)?;
    Ok(Certificate {
        margins: margins(net, &input, label)?,
    })
}

/// An image `[C, H, W]` of `T` as f64, standard layout.
pub(crate) fn image_f64<T: Real>(x: ndarray::ArrayView3<T>) -> ArrayD<f64> {
    x.mapv(|v| v.f64()).into_dyn()
}
