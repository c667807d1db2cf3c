//! Shared helpers of the property tests (`tests/prop_*.rs`, `tests/edge_cases.rs`):
//!
//! - strategies that draw shape, values and configuration together ([`linear_case`],
//!   [`norm_any`]), small ranges first;
//! - the terms `t_d = x[b, d]·W[o, d]` of one output ([`terms`]);
//! - first-order rounding-error bounds of the operator and of every gradient
//!   ([`rounding_bounds`], derived in proofs/08-fused-equals-reference.md), which give the
//!   justified tolerances of the fused ≡ reference and permutation tests;
//! - a central-difference checker with a Richardson error estimate and a kink guard
//!   ([`check_fd`], justified in proofs/09-gradient-exactness.md).
#![allow(dead_code)] // each test binary uses a subset

use std::ops::RangeInclusive;

use ndarray::{Array1, Array2, Array4, ArrayView2, Dimension, Zip};
use nrpm::nrpm::reference;
use nrpm::Conv2dGeometry;
use nrpm::{Norm, NrpmConfig};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};

/// Unit roundoff of f64, `2⁻⁵³`.
pub const U64: f64 = f64::EPSILON / 2.0;
/// Unit roundoff of f32, `2⁻²⁴`.
pub const U32: f64 = f32::EPSILON as f64 / 2.0;

/// The proptest configuration of every property test: `cases` cases, failures persisted to
/// `file` (under `proptest-regressions/`, committed, re-run first on every run). The
/// environment variable `PROPTEST_CASES` overrides `cases` (e.g. for a long soak run).
pub fn config(cases: u32, file: &'static str) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..ProptestConfig::default()
    }
}

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
            let cfg = NrpmConfig::new(norm, k, 10f64.powf(log_eps), lambda)
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

/// Absolute first-order rounding-error bounds of one computation of the operator in a
/// precision with unit roundoff `u`, and the magnitudes ("scales") the 1e-10 relative
/// criteria of the f64 tests are taken against. Derivation: proofs/08-fused-equals-reference.md.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// Forward output `[B, O]`.
    pub y: Array2<f64>,
    /// `∂/∂x` `[B, D]`.
    pub gx: Array2<f64>,
    /// `∂/∂W` `[O, D]`.
    pub gw: Array2<f64>,
    /// `∂/∂bias` `[O]`.
    pub gb: Array1<f64>,
    /// `∂/∂λ`.
    pub gl: f64,
    /// Scale of y: `(|λ| + |1 − λ|)·Σ_g Dg·max_d |t_d| + |bias|` (`Σ_d |t_d| + |bias|` for LPM).
    pub y_scale: Array2<f64>,
    /// Scale of `∂/∂x`: the gradient evaluated with absolute values (no cancellation).
    pub gx_scale: Array2<f64>,
    /// Scale of `∂/∂W`.
    pub gw_scale: Array2<f64>,
    /// Scale of `∂/∂bias`: `Σ_b |gy|`.
    pub gb_scale: Array1<f64>,
    /// Scale of `∂/∂λ`: `Σ |gy|·(|z⁰| + |zᴷ|)`.
    pub gl_scale: f64,
}

/// `(max |w(r ± ρ) − w(r)|, max |w'(r ± ρ) − w'(r)|, |w'(r)|)`: how far the weight and its
/// derivative can move when the residual is off by at most ρ (exact for the monotone pieces,
/// and it includes the jump of w' at a clamp point).
fn weight_moves(norm: &Norm, eps: f64, r: f64, rho: f64) -> (f64, f64, f64) {
    let wf = norm.weight_fn::<f64>(eps);
    let (w, dw) = wf.weight_and_derivative(r);
    let lo = (r - rho).max(0.0);
    let (w_lo, dw_lo) = wf.weight_and_derivative(lo);
    let (w_hi, dw_hi) = wf.weight_and_derivative(r + rho);
    let dw_max = dw.abs().max(dw_lo.abs()).max(dw_hi.abs());
    (
        (w_lo - w).abs().max((w_hi - w).abs()),
        (dw_lo - dw).abs().max((dw_hi - dw).abs()),
        dw_max,
    )
}

/// Relative rounding error of evaluating the weight formula (not counting its argument):
/// `1/(r + ε)` costs 2 roundings, `p·inv` one more; `inv − p` and `p·inv − q` can cancel down
/// to their floor ε, which multiplies their error by `(p + q)/w`.
fn weight_eval_error(norm: &Norm, eps: f64, w: f64, u: f64) -> f64 {
    let wf = norm.weight_fn::<f64>(eps);
    match norm {
        Norm::Lpm => 0.0,
        Norm::L1 | Norm::Huber { .. } => 3.0 * u,
        Norm::Mcp { .. } | Norm::Hm { .. } => u * (4.0 + 3.0 * (wf.p + wf.q) / w),
    }
}

/// First-order rounding-error bounds (in a precision of unit roundoff `u`) of the forward
/// output and of every gradient of one operator call, with the magnitudes they are relative
/// to. Every quantity is evaluated on the f64 reference trajectory; proofs/08 derives each line.
pub fn rounding_bounds(
    x: &ArrayView2<f64>,
    w: &ArrayView2<f64>,
    bias: Option<&Array1<f64>>,
    gy: &ArrayView2<f64>,
    cfg: &NrpmConfig,
    u: f64,
) -> Bounds {
    let (b_n, d_n) = x.dim();
    let o_n = w.nrows();
    let n = cfg.groups();
    let dg = d_n / n;
    let dgf = dg as f64;
    let steps = cfg.steps();
    let lambda = cfg.lambda();
    let norm = cfg.norm();
    let eps = cfg.eps();
    let wf = norm.weight_fn::<f64>(eps);
    let (_, it) = reference::forward(*x, *w, bias.map(|b| b.view()), cfg).expect("valid case");

    let mut y = Array2::zeros((b_n, o_n));
    let mut y_scale = Array2::zeros((b_n, o_n));
    // Per (b, o, d): bound and magnitude of the term adjoint t̄ (IRLS part + z̄⁰ part).
    let mut tbar_err = ndarray::Array3::<f64>::zeros((b_n, o_n, d_n));
    let mut tbar_abs = ndarray::Array3::<f64>::zeros((b_n, o_n, d_n));
    let mut gl = 0.0;
    let mut gl_scale = 0.0;
    let counts = (o_n + b_n + steps + 8) as f64; // accumulation lengths of the scatters/GEMMs
    for bi in 0..b_n {
        for oi in 0..o_n {
            let gyv = gy[[bi, oi]];
            let mut y_err = 0.0;
            let mut y_mag = 0.0;
            let mut z0_mag = 0.0;
            let mut zk_mag = 0.0;
            let mut zk_err = 0.0;
            let mut z0_err = 0.0;
            for g in 0..n {
                let t = terms(x, w, bi, oi, g, dg);
                let t_abs: f64 = t.iter().map(|v| v.abs()).sum();
                let t_max = t.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let ms: Vec<f64> = (0..=steps).map(|k| it.z[[bi, oi, g, k]] / dgf).collect();
                // Forward, in units of m = z/Dg: E_0 from the GEMM (Dg products and sums).
                let mut e = vec![0.0; steps + 1];
                e[0] = (dgf + 2.0) * u * t_abs / dgf + u * ms[0].abs();
                // Per step: weights, moves and the backward ingredients.
                struct Step {
                    s: f64,
                    ds: f64,
                    q: f64,
                    dq: f64,
                    q_abs: f64,
                    e: Vec<f64>,
                    de: Vec<f64>,
                }
                let mut st: Vec<Step> = Vec::with_capacity(steps);
                for k in 0..steps {
                    let (m, m1) = (ms[k], ms[k + 1]);
                    let mut s = 0.0;
                    let mut num = 0.0;
                    let mut sum_pt = 0.0;
                    let mut ds = 0.0;
                    let mut q = 0.0;
                    let mut q_abs = 0.0;
                    let mut dq_terms = 0.0;
                    let mut ee = vec![0.0; dg];
                    let mut de = vec![0.0; dg];
                    // The next iterate's error is needed by v_d; it is computed first.
                    let mut moves = Vec::with_capacity(dg);
                    for &td in &t {
                        let uu = td - m;
                        let r = uu.abs();
                        let rho = e[k] + 2.0 * u * (td.abs() + m.abs());
                        let (ww, dw) = wf.weight_and_derivative(r);
                        let (dw_move, ddw_move, dw_max) = weight_moves(&norm, eps, r, rho);
                        let eta = weight_eval_error(&norm, eps, ww, u);
                        let dwt = dw_move + eta * ww;
                        s += ww;
                        num += dwt * (td - m1).abs();
                        sum_pt += ww * td.abs();
                        moves.push((uu, r, rho, ww, dw, dwt, ddw_move, dw_max));
                    }
                    e[k + 1] = num / s
                        + u * sum_pt / s
                        + (dgf + 2.0) * u * sum_pt / s
                        + (dgf + 3.0) * u * m1.abs();
                    for (i, &td) in t.iter().enumerate() {
                        let (uu, _r, rho, ww, dw, dwt, ddw_move, dw_max) = moves[i];
                        let sign = if uu > 0.0 {
                            1.0
                        } else if uu < 0.0 {
                            -1.0
                        } else {
                            0.0
                        };
                        let gd = dw * sign;
                        // δg: the derivative's move plus its own rounding; a sign that rounding
                        // can flip (|u| ≤ ρ) adds up to 2|w'|.
                        let mut dg_err = ddw_move + 4.0 * u * dw_max;
                        if uu.abs() <= rho {
                            dg_err += 2.0 * dw_max;
                        }
                        let lever = (td - m1).abs();
                        let dlever = u * td.abs() + e[k + 1];
                        let v = (td - m1) * gd;
                        let dv = dlever * (gd.abs() + dg_err) + lever * dg_err + 2.0 * u * v.abs();
                        ee[i] = ww + v;
                        de[i] = dwt + dv + u * (ww.abs() + v.abs());
                        ds += dwt;
                        q += v;
                        q_abs += v.abs();
                        dq_terms += dv;
                    }
                    ds += dgf * u * s;
                    let dq = dq_terms + dgf * u * q_abs;
                    st.push(Step {
                        s,
                        ds,
                        q,
                        dq,
                        q_abs,
                        e: ee,
                        de,
                    });
                }
                let z0 = ms[0] * dgf;
                let zk = ms[steps] * dgf;
                z0_err += dgf * e[0];
                zk_err += dgf * e[steps];
                z0_mag += z0.abs();
                zk_mag += zk.abs();
                if cfg.is_lpm() {
                    y_mag += t_abs;
                } else {
                    y_mag += (lambda.abs() + (1.0 - lambda).abs()) * dgf * t_max;
                }
                // Backward recursion with error and magnitude.
                let mut cs = vec![(0.0, 0.0, 0.0); steps]; // (c, δc, |c|_abs)
                let (mut zb, mut dzb, mut zb_abs) = if steps == 0 {
                    (gyv, 0.0, gyv.abs())
                } else {
                    let zb = (1.0 - lambda) * gyv;
                    (zb, 2.0 * u * zb.abs(), zb.abs())
                };
                for k in (0..steps).rev() {
                    let sk = &st[k];
                    let c = zb * dgf / sk.s;
                    let dc = (dzb * dgf + zb.abs() * dgf * sk.ds / sk.s) / sk.s + 2.0 * u * c.abs();
                    let c_abs = zb_abs * dgf / sk.s;
                    cs[k] = (c, dc, c_abs);
                    let nzb = -c * sk.q / dgf;
                    dzb = (dc * sk.q.abs() + c.abs() * sk.dq) / dgf + 2.0 * u * nzb.abs();
                    zb_abs = c_abs * sk.q_abs / dgf;
                    zb = nzb;
                }
                // Z̄⁰ = z̄⁰ + λ·ȳ when IRLS ran (else ȳ).
                let (zb0, dzb0, zb0_abs) = if steps == 0 {
                    (zb, dzb, zb_abs)
                } else {
                    let v = zb + lambda * gyv;
                    (
                        v,
                        dzb + 2.0 * u * (zb.abs() + (lambda * gyv).abs()),
                        zb_abs + (lambda * gyv).abs(),
                    )
                };
                let _ = zb0;
                for i in 0..dg {
                    let d = g * dg + i;
                    let mut err = dzb0;
                    let mut mag = zb0_abs;
                    for (k, &(c, dc, c_abs)) in cs.iter().enumerate() {
                        let ek = st[k].e[i];
                        err += dc * ek.abs()
                            + c.abs() * st[k].de[i]
                            + (steps as f64) * u * (c * ek).abs();
                        mag += c_abs * ek.abs();
                    }
                    tbar_err[[bi, oi, d]] = err;
                    tbar_abs[[bi, oi, d]] = mag;
                }
            }
            // y = λ·Σz⁰ + (1 − λ)·Σzᴷ + b.
            let bv = bias.map_or(0.0, |b| b[oi]);
            if cfg.is_lpm() {
                y_err += z0_err + (n as f64 + 2.0) * u * (z0_mag + bv.abs());
            } else {
                y_err += lambda.abs() * z0_err
                    + (1.0 - lambda).abs() * zk_err
                    + (n as f64 + 4.0)
                        * u
                        * (lambda.abs() * z0_mag + (1.0 + 2.0 * lambda.abs()) * zk_mag + bv.abs());
                gl += gyv.abs() * (z0_err + zk_err)
                    + (b_n * o_n + n + 2) as f64 * u * gyv.abs() * (z0_mag + zk_mag);
                gl_scale += gyv.abs() * (z0_mag + zk_mag);
            }
            y[[bi, oi]] = y_err;
            y_scale[[bi, oi]] = y_mag + bv.abs();
        }
    }
    // Scatter to the factors: x̄[b, d] = Σ_o t̄·W[o, d], W̄[o, d] = Σ_b t̄·x[b, d].
    let mut gx = Array2::zeros((b_n, d_n));
    let mut gx_scale = Array2::zeros((b_n, d_n));
    let mut gw = Array2::zeros((o_n, d_n));
    let mut gw_scale = Array2::zeros((o_n, d_n));
    for ((bi, oi, d), &err) in tbar_err.indexed_iter() {
        let mag = tbar_abs[[bi, oi, d]];
        let (wv, xv) = (w[[oi, d]].abs(), x[[bi, d]].abs());
        gx[[bi, d]] += err * wv + counts * u * mag * wv;
        gx_scale[[bi, d]] += mag * wv;
        gw[[oi, d]] += err * xv + counts * u * mag * xv;
        gw_scale[[oi, d]] += mag * xv;
    }
    let gb_scale = gy.mapv(f64::abs).sum_axis(ndarray::Axis(0));
    let gb = &gb_scale * (b_n as f64 * u);
    Bounds {
        y,
        gx,
        gw,
        gb,
        gl,
        y_scale,
        gx_scale,
        gw_scale,
        gb_scale,
        gl_scale,
    }
}

/// Asserts `|got − want| ≤ tol` elementwise (all finite), naming the first offender.
pub fn assert_within<D: Dimension>(
    what: &str,
    got: &ndarray::Array<f64, D>,
    want: &ndarray::Array<f64, D>,
    tol: &ndarray::Array<f64, D>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.shape(), want.shape(), "{}: shapes", what);
    let mut worst: Option<(f64, f64, f64)> = None;
    Zip::from(got).and(want).and(tol).for_each(|&g, &w, &t| {
        let bad = !(g.is_finite() && w.is_finite()) || (g - w).abs() > t;
        if bad && worst.is_none() {
            worst = Some((g, w, t));
        }
    });
    if let Some((g, w, t)) = worst {
        return Err(TestCaseError::fail(format!(
            "{what}: {g:e} vs {w:e}, |Δ| = {:e} > tol {t:e}",
            (g - w).abs()
        )));
    }
    Ok(())
}

/// What one finite-difference sweep did.
#[derive(Clone, Copy, Debug, Default)]
pub struct FdReport {
    /// Coordinates compared.
    pub checked: usize,
    /// Coordinates skipped because a kink lies within the stencil.
    pub skipped: usize,
}

/// A loss evaluation for [`check_fd`]: `θ ↦ (loss, kink arguments)`.
pub type LossAndKinks<'a> = &'a dyn Fn(&[f64]) -> (f64, Vec<f64>);

/// Compares `analytic[i]` with the central difference of `eval` along coordinate i, for every i.
///
/// `eval(θ)` returns the loss and the signed distances of every kink argument (residuals
/// `t_d − zᵏ/D`, and `|t_d − zᵏ/D| − (clamp point)`). A coordinate whose 5-point stencil
/// `θ ± h, θ ± 2h` sees a kink argument change sign is skipped (the function is not
/// differentiable across it). Otherwise, with `D_h`, `D_2h` the central differences,
/// the assertion is
///
/// ```text
/// |analytic − D_h| ≤ |D_h − D_2h| + 3·f_err/h + 1e-9·(1 + |analytic|)
/// ```
///
/// (proofs/09-gradient-exactness.md: `D_2h − D_h ≈ 3·(D_h − f')` estimates three times the
/// truncation error; `f_err` bounds the rounding error of one loss evaluation).
pub fn check_fd(
    what: &str,
    theta: &[f64],
    analytic: &[f64],
    f_err: f64,
    eval: LossAndKinks,
) -> Result<FdReport, TestCaseError> {
    let mut report = FdReport::default();
    let (_, kinks0) = eval(theta);
    for i in 0..theta.len() {
        let h = 1e-5 * (1.0 + theta[i].abs());
        let at = |delta: f64| {
            let mut th = theta.to_vec();
            th[i] += delta;
            eval(&th)
        };
        let (fp1, kp1) = at(h);
        let (fm1, km1) = at(-h);
        let (fp2, kp2) = at(2.0 * h);
        let (fm2, km2) = at(-2.0 * h);
        // Sign classes −, 0, +: an argument that stays exactly 0 (D = 1, equal terms) is no
        // crossing; one that changes class is.
        let class = |v: f64| (v > 0.0) as i8 - (v < 0.0) as i8;
        let crosses = kinks0.iter().enumerate().any(|(j, &k0)| {
            [&kp1, &km1, &kp2, &km2]
                .iter()
                .any(|ks| class(ks[j]) != class(k0))
        });
        if crosses {
            report.skipped += 1;
            continue;
        }
        let d_h = (fp1 - fm1) / (2.0 * h);
        let d_2h = (fp2 - fm2) / (4.0 * h);
        let tol = (d_h - d_2h).abs() + 3.0 * f_err / h + 1e-9 * (1.0 + analytic[i].abs());
        prop_assert!(
            (analytic[i] - d_h).abs() <= tol,
            "{}[{}]: analytic {:e} vs central difference {:e} (D_2h {:e}), |Δ| = {:e} > tol {:e}",
            what,
            i,
            analytic[i],
            d_h,
            d_2h,
            (analytic[i] - d_h).abs(),
            tol
        );
        report.checked += 1;
    }
    Ok(report)
}

/// The kink arguments of an operator call (see [`check_fd`]): for every output, group, step
/// `k < K` and term, the residual `u = t_d − zᵏ/Dg` and `|u| − s` for every clamp point `s > 0`
/// of the norm.
pub fn kink_arguments(
    x: &ArrayView2<f64>,
    w: &ArrayView2<f64>,
    z: &ndarray::Array4<f64>,
    cfg: &NrpmConfig,
) -> Vec<f64> {
    let (b_n, d_n) = x.dim();
    let o_n = w.nrows();
    let n = cfg.groups();
    let dg = d_n / n;
    let clamps: Vec<f64> = cfg
        .norm()
        .pieces(cfg.eps())
        .iter()
        .map(|p| p.start)
        .filter(|&s| s > 0.0)
        .collect();
    let mut out = Vec::new();
    for bi in 0..b_n {
        for oi in 0..o_n {
            for g in 0..n {
                let t = terms(x, w, bi, oi, g, dg);
                for k in 0..cfg.steps() {
                    let m = z[[bi, oi, g, k]] / dg as f64;
                    for &td in &t {
                        let u = td - m;
                        out.push(u);
                        for &c in &clamps {
                            out.push(u.abs() - c);
                        }
                    }
                }
            }
        }
    }
    out
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

/// Draws a conv2d case; `max_extra` bounds how much H, W exceed the smallest size that fits.
pub fn conv_case(
    norms: BoxedStrategy<Norm>,
    values: Values,
    max_extra: usize,
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
        (norms, 0usize..=3, -2.0f64..0.0, -0.5f64..1.5, 0usize..=2),
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
                let cfg = NrpmConfig::new(norm, k, 10f64.powf(le), lambda)
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
