//! Strategies that draw the operator's inputs and configuration together (shape, norm, K, ε,
//! λ, N, values with ties), small ranges first, and the helpers they share.
//!
//! ```text
//! linear_case(Spec)   x [B, D], weight [O, D], bias [O], gy [B, O], NrpmConfig   (D = N·Dg)
//! conv_case(…)        x [B, C, H, W], weight [O, C, kh, kw], geometry, NrpmConfig
//! ```

use std::ops::RangeInclusive;

use crate::{Conv2dGeometry, Norm, NrpmConfig};
use ndarray::{Array1, Array2, Array4, ArrayView2, Dimension};
use proptest::prelude::*;

/// Any of the five norms, with γ, δ drawn so that the clamps are active for residuals of the
/// size the strategies draw (terms within ±4).
pub fn norm_any() -> BoxedStrategy<Norm> {
    prop_oneof![
        Just(Norm::Lpm),
        norm_robust(),
        norm_robust(), // robust norms twice as often: they carry the IRLS
    ]
    .boxed()
}

/// The four robust norms (everything but `Lpm`).
pub fn norm_robust() -> BoxedStrategy<Norm> {
    prop_oneof![
        Just(Norm::L1),
        (0.05f64..3.0).prop_map(|delta| Norm::Huber { delta }),
        (0.2f64..6.0).prop_map(|gamma| Norm::Mcp { gamma }),
        (0.05f64..2.0, 0.05f64..3.0).prop_map(|(delta, gap)| Norm::Hm {
            gamma: delta + gap,
            delta
        }),
    ]
    .boxed()
}

/// Every norm once, with the authors' γ = 4, δ = 3 (and a small-δ Huber so its clamp bites).
pub fn all_norms() -> [Norm; 6] {
    [
        Norm::Lpm,
        Norm::L1,
        Norm::Huber { delta: 3.0 },
        Norm::Huber { delta: 0.2 },
        Norm::Mcp { gamma: 4.0 },
        Norm::Hm {
            gamma: 4.0,
            delta: 3.0,
        },
    ]
}

/// `10^e` for `e` uniform in `lo..hi`: a log-uniform ε.
pub fn log_uniform(lo: f64, hi: f64) -> BoxedStrategy<f64> {
    (lo..hi).prop_map(|e| 10f64.powf(e)).boxed()
}

/// How values are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Values {
    /// Uniform in ±2 (no ties with probability 1): for finite differences.
    Continuous,
    /// Mostly uniform in ±2, with exact zeros and small integers mixed in, so that ties
    /// (equal terms, residuals that are exactly 0) occur.
    WithTies,
}

/// One scalar.
pub fn value(kind: Values) -> BoxedStrategy<f64> {
    match kind {
        Values::Continuous => (-2.0f64..2.0).boxed(),
        Values::WithTies => prop_oneof![
            8 => -2.0f64..2.0,
            1 => Just(0.0),
            1 => (-2i32..=2).prop_map(f64::from),
        ]
        .boxed(),
    }
}

/// A `rows × cols` matrix of values.
pub fn matrix(rows: usize, cols: usize, kind: Values) -> BoxedStrategy<Array2<f64>> {
    proptest::collection::vec(value(kind), rows * cols)
        .prop_map(move |v| Array2::from_shape_vec((rows, cols), v).expect("rows·cols values"))
        .boxed()
}

/// A vector of values.
pub fn vector(len: usize, kind: Values) -> BoxedStrategy<Array1<f64>> {
    proptest::collection::vec(value(kind), len)
        .prop_map(Array1::from_vec)
        .boxed()
}

/// What a [`linear_case`] draws from.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Batch B.
    pub b: RangeInclusive<usize>,
    /// Outputs O.
    pub o: RangeInclusive<usize>,
    /// Groups N.
    pub n: RangeInclusive<usize>,
    /// Terms per group D/N.
    pub dg: RangeInclusive<usize>,
    /// IRLS steps K (drawn from this list).
    pub k: Vec<usize>,
    /// log₁₀ ε range.
    pub log_eps: (f64, f64),
    /// λ range.
    pub lambda: (f64, f64),
    /// Value kind.
    pub values: Values,
    /// Norms.
    pub norms: BoxedStrategy<Norm>,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            b: 1..=5,
            o: 1..=5,
            n: 1..=3,
            dg: 1..=9,
            k: vec![0, 1, 2, 3],
            log_eps: (-3.0, 0.0),
            lambda: (-0.5, 1.5),
            values: Values::WithTies,
            norms: norm_any(),
        }
    }
}

/// One draw of a linear NRPM call: `x [B, D]`, `w [O, D]`, `bias [O]`, `gy [B, O]` (the
/// cotangent of the output), and a validated configuration.
#[derive(Clone, Debug)]
pub struct LinearCase {
    /// `[B, D]`.
    pub x: Array2<f64>,
    /// `[O, D]`.
    pub w: Array2<f64>,
    /// `[O]`.
    pub bias: Array1<f64>,
    /// `[B, O]`.
    pub gy: Array2<f64>,
    /// Norm, K, ε, λ, N.
    pub cfg: NrpmConfig,
}

/// Draws shape, values and configuration together.
pub fn linear_case(spec: Spec) -> BoxedStrategy<LinearCase> {
    let k = proptest::sample::select(spec.k.clone());
    let (e0, e1) = spec.log_eps;
    let (l0, l1) = spec.lambda;
    let values = spec.values;
    (
        spec.b.clone(),
        spec.o.clone(),
        spec.n.clone(),
        spec.dg.clone(),
        k,
        spec.norms.clone(),
        e0..e1,
        l0..l1,
    )
        .prop_flat_map(move |(b, o, n, dg, k, norm, log_eps, lambda)| {
            let cfg = NrpmConfig::builder()
                .norm(norm)
                .k(k)
                .eps(10f64.powf(log_eps))
                .lambda(lambda)
                .build()
                .and_then(|c| c.with_groups(n))
                .expect("strategy draws valid configurations");
            let d = n * dg;
            (
                Just(cfg),
                matrix(b, d, values),
                matrix(o, d, values),
                vector(o, Values::Continuous),
                matrix(b, o, Values::Continuous),
            )
        })
        .prop_map(|(cfg, x, w, bias, gy)| LinearCase {
            x,
            w,
            bias,
            gy,
            cfg,
        })
        .boxed()
}

/// The terms `t_d = x[b, d]·W[o, d]` of output (b, o), group g of `dg` terms.
pub fn terms(
    x: &ArrayView2<f64>,
    w: &ArrayView2<f64>,
    b: usize,
    o: usize,
    g: usize,
    dg: usize,
) -> Vec<f64> {
    (g * dg..(g + 1) * dg)
        .map(|d| x[[b, d]] * w[[o, d]])
        .collect()
}

/// Converts an f64 array to f32 (the f32 tests draw in f64, round once, and then use the
/// rounded values, exactly representable in f64, as the inputs of both precisions).
pub fn to_f32<D: Dimension>(a: &ndarray::Array<f64, D>) -> ndarray::Array<f32, D> {
    a.mapv(|v| v as f32)
}

/// Converts an f32 array to f64 (exact).
pub fn to_f64<D: Dimension>(a: &ndarray::Array<f32, D>) -> ndarray::Array<f64, D> {
    a.mapv(f64::from)
}

/// One conv2d draw: `x [B, C, H, W]`, `weight [O, C, kh, kw]`, bias, cotangent, geometry,
/// configuration (groups N ∈ {1, C, C·kh}, which divide D = C·kh·kw).
#[derive(Clone, Debug)]
pub struct ConvCase {
    /// `[B, C, H, W]`.
    pub x: Array4<f64>,
    /// `[O, C, kh, kw]`.
    pub w: Array4<f64>,
    /// `[O]`.
    pub bias: Array1<f64>,
    /// `[B, O, Ho, Wo]`.
    pub gy: Array4<f64>,
    /// Stride, padding, dilation.
    pub geom: Conv2dGeometry,
    /// Norm, K, ε, λ, N.
    pub cfg: NrpmConfig,
}

/// The output size by PyTorch's formula, written out independently of the library.
pub fn out_len(size: usize, k: usize, stride: usize, pad: usize, dil: usize) -> usize {
    (size + 2 * pad - dil * (k - 1) - 1) / stride + 1
}

/// Draws a conv2d case; `max_extra` bounds how much H, W exceed the smallest size that fits,
/// and ε is log-uniform in `10^log_eps.0 ..= 10^log_eps.1`.
pub fn conv_case(
    norms: BoxedStrategy<Norm>,
    values: Values,
    max_extra: usize,
    log_eps: (f64, f64),
) -> BoxedStrategy<ConvCase> {
    (
        (1usize..=2, 1usize..=3, 1usize..=3), // B, C, O
        (1usize..=3, 1usize..=3),             // kh, kw
        (
            [1usize..=3, 1..=3],
            [0usize..=2, 0..=2],
            [1usize..=3, 1..=3],
        ), // stride, pad, dil
        (0..=max_extra, 0..=max_extra),       // extra H, W beyond the minimum
        (
            norms,
            0usize..=3,
            log_eps.0..log_eps.1,
            -0.5f64..1.5,
            0usize..=2,
        ),
    )
        .prop_flat_map(
            move |(
                (b, c, o),
                (kh, kw),
                (stride, padding, dilation),
                (eh, ew),
                (norm, k, le, lambda, gsel),
            )| {
                let geom = Conv2dGeometry {
                    stride,
                    padding,
                    dilation,
                };
                let min = |k: usize, axis: usize| {
                    let span = dilation[axis] * (k - 1) + 1;
                    span.saturating_sub(2 * padding[axis]).max(1)
                };
                let (h, w) = (min(kh, 0) + eh, min(kw, 1) + ew);
                let (ho, wo) = (
                    out_len(h, kh, stride[0], padding[0], dilation[0]),
                    out_len(w, kw, stride[1], padding[1], dilation[1]),
                );
                let groups = [1, c, c * kh][gsel];
                let cfg = NrpmConfig::builder()
                    .norm(norm)
                    .k(k)
                    .eps(10f64.powf(le))
                    .lambda(lambda)
                    .build()
                    .and_then(|cfg| cfg.with_groups(groups))
                    .expect("valid");
                let v4 = move |shape: (usize, usize, usize, usize), kind| {
                    proptest::collection::vec(value(kind), shape.0 * shape.1 * shape.2 * shape.3)
                        .prop_map(move |v| Array4::from_shape_vec(shape, v).unwrap())
                };
                (
                    v4((b, c, h, w), values),
                    v4((o, c, kh, kw), values),
                    vector(o, Values::Continuous),
                    v4((b, o, ho, wo), Values::Continuous),
                    Just(geom),
                    Just(cfg),
                )
            },
        )
        .prop_map(|(x, w, bias, gy, geom, cfg)| ConvCase {
            x,
            w,
            bias,
            gy,
            geom,
            cfg,
        })
        .boxed()
}
