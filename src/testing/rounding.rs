//! First-order rounding-error bounds of the operator and of every gradient, and the scales the
//! 1e-10 relative criteria are taken against. Derivation: proofs/08-fused-equals-reference.md.

use crate::reference;
use crate::{Norm, NrpmConfig};
use ndarray::{Array1, Array2, ArrayView2};

use crate::testing::strategies::terms;

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
                let ms: Vec<f64> = (0..=steps).map(|k| it.z()[[bi, oi, g, k]] / dgf).collect();
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
                let (dzb0, zb0_abs) = if steps == 0 {
                    (dzb, zb_abs)
                } else {
                    let lg = (lambda * gyv).abs();
                    (dzb + 2.0 * u * (zb.abs() + lg), zb_abs + lg)
                };
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
