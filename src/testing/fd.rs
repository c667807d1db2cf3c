//! The central-difference checker with a Richardson error estimate and a kink guard.
//! Justification of the tolerance: proofs/09-gradient-exactness.md §4.

use crate::NrpmConfig;
use ndarray::ArrayView2;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::testing::strategies::terms;

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
    z: &ndarray::ArrayView4<f64>,
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
