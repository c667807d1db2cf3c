//! Robustness properties: IRLS is a majorise–minimise algorithm (property 3), NRPM approaches
//! the exact LAD solution as K grows and ε shrinks (property 4), breakdown points of LPM, LAD
//! and finite-K NRPM with the derived damping bound (property 5), and the sensitivity curves
//! of LAD (bounded) and LPM (unbounded) (property 6). Proofs: proofs/README.md.

mod common;

use common::{linear_case, log_uniform, norm_robust, terms, Spec, Values, U64};
use ndarray::Array2;
use nrpm::lad;
use nrpm::{forward_with, Exec, Norm, NrpmConfig};
use proptest::prelude::*;

/// `L(z) = Σ_d ρ(z/D − t_d)` with the norm's ρ; for L1 the closed form
/// `ρ_ε(r) = |r| − ε·ln(1 + |r|/ε)` is written out here, independently of `Norm::rho`.
fn objective(norm: &Norm, eps: f64, z: f64, t: &[f64]) -> f64 {
    let m = z / t.len() as f64;
    t.iter()
        .map(|&td| {
            let r = (m - td).abs();
            match norm {
                Norm::L1 => r - eps * (r / eps).ln_1p(),
                _ => norm.rho(r, eps),
            }
        })
        .sum()
}

/// `(min, max)` of a slice.
fn range(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &t| {
            (lo.min(t), hi.max(t))
        })
}

proptest! {
    #![proptest_config(common::config(128, "proptest-regressions/prop_robust.txt"))]

    /// Every IRLS step, for every K, does not increase `L(z) = Σ_d ρ(z/D − t_d)`, the loss
    /// whose IRLS weight the norm is (L1: `ρ_ε(r) = |r| − ε·ln(1 + |r|/ε)`; Huber, MCP, HM:
    /// `ρ(r) = ∫₀^|r| s·w(s) ds`), on both paths, with ties and exact zeros in the terms.
    /// Also: the first k iterates of a K-step run are those of a k-step run.
    /// Tolerance: `1e-12·(1 + Σ_d |t_d| + L)`, about 100× the f64 error of evaluating L
    /// (Dg ≤ 9 terms of a few roundings each) and of the rounded iterate.
    /// Proof: proofs/02-irls-majorise-minimise.md
    #[test]
    fn irls_step_never_increases_objective(
        c in linear_case(Spec {
            k: (1..=12).collect(),
            log_eps: (-4.0, 0.0),
            norms: norm_robust(),
            ..Spec::default()
        }),
    ) {
        let (cfg, n) = (c.cfg, c.cfg.groups());
        let dg = c.x.ncols() / n;
        for exec in [Exec::Reference, Exec::Fused] {
            let (_, it) = forward_with(exec, c.x.view(), c.w.view(), None, &cfg).unwrap();
            for ((b, o), _) in c.gy.indexed_iter() {
                for g in 0..n {
                    let t = terms(&c.x.view(), &c.w.view(), b, o, g, dg);
                    let scale: f64 = t.iter().map(|v| v.abs()).sum::<f64>() + 1.0;
                    for k in 0..cfg.k() {
                        let l0 = objective(&cfg.norm(), cfg.eps(), it.z()[[b, o, g, k]], &t);
                        let l1 = objective(&cfg.norm(), cfg.eps(), it.z()[[b, o, g, k + 1]], &t);
                        prop_assert!(
                            l1 <= l0 + 1e-12 * (scale + l0),
                            "{:?} {:?}: step {} raised L from {:e} to {:e}", exec, cfg.norm(), k, l0, l1
                        );
                    }
                }
            }
            // Prefix consistency: a shorter run reproduces the first iterates.
            let short = NrpmConfig::builder().norm(cfg.norm()).k(cfg.k() / 2).eps(cfg.eps()).lambda(cfg.lambda()).build().unwrap().with_groups(n).unwrap();
            let (_, it_short) = forward_with(exec, c.x.view(), c.w.view(), None, &short).unwrap();
            let kk = short.steps();
            prop_assert_eq!(&it_short.z(), &it.z().slice(ndarray::s![.., .., .., ..=kk]).to_owned());
        }
    }
}

/// One output's worth of terms for the LAD and breakdown tests: `x [1, D]` and `W [1, D]`
/// with nonzero weights (the terms are `t_d = x_d·W_d`).
fn row_case(d: std::ops::RangeInclusive<usize>) -> BoxedStrategy<(Array2<f64>, Array2<f64>)> {
    d.prop_flat_map(|d| {
        (
            proptest::collection::vec(common::value(Values::WithTies), d),
            proptest::collection::vec(
                (0.5f64..2.0, any::<bool>()).prop_map(|(m, neg)| if neg { -m } else { m }),
                d,
            ),
        )
    })
    .prop_map(|(x, w)| {
        let d = x.len();
        (
            Array2::from_shape_vec((1, d), x).unwrap(),
            Array2::from_shape_vec((1, d), w).unwrap(),
        )
    })
    .boxed()
}

proptest! {
    #![proptest_config(common::config(64, "proptest-regressions/prop_robust.txt"))]

    /// NRPM (L1, λ = 0) approaches the exact LAD solution `z* = D·median(t)` (`nrpm::lad`):
    /// z* minimises `L₀(z) = Σ|z/D − t_d|`. At every step k ≥ 1 the IRLS iterate is a
    /// weighted mean of the terms, so zᵏ/D lies in `[min t, max t]` (checked), and the
    /// a-posteriori bound `L₀(zᵏ) − L₀(z*) ≤ D·ε·ln(1 + R/ε) + R·|Σ_d ψ_ε(zᵏ/D − t_d)|`
    /// (proofs/03 (5), R = spread of the terms) holds; that bound holds for any z in the data's
    /// range, so it is a consistency check, not a claim about IRLS. The claims about IRLS:
    /// at K = 150 the gap is at most twice the smoothing bias `D·ε·ln(1 + R/ε)` of that ε,
    /// checked at 100·ε and at ε (so the gap is held to a bound that shrinks like
    /// ε·ln(1/ε); the test does not claim the measured gap itself decreases between the two),
    /// and for odd D the output itself is within D times the gap of z*.
    /// Even D is covered through the objective (its minimisers form an interval).
    /// Proof: proofs/03-lad-fixed-point.md
    #[test]
    fn nrpm_approaches_lad_as_k_grows(
        (x, w) in row_case(1..=15),
        outlier in proptest::option::of(-3.0f64..3.0),
        log_eps in -7.0f64..-2.0,
    ) {
        let mut x = x;
        // Sometimes (None: no outlier) one gross outlier, to start IRLS far from the median.
        if let Some(o) = outlier {
            x[[0, 0]] += o.signum() * 10f64.powf(o.abs());
        }
        let d = x.ncols();
        let t = terms(&x.view(), &w.view(), 0, 0, 0, d);
        let (lo, hi) = range(&t);
        let spread = hi - lo;
        let eval_tol = 8.0 * d as f64 * U64 * t.iter().map(|v| v.abs()).sum::<f64>();
        let z_star = lad::forward(x.view(), w.view(), None, &NrpmConfig::builder().norm(Norm::L1).k(1).eps(1.0).lambda(0.0).build().unwrap()).unwrap()[[0, 0]];
        let l_star = lad::lad_objective(z_star, &t);
        for eps in [10f64.powf(log_eps + 2.0), 10f64.powf(log_eps)] {
            let bias = d as f64 * eps * (spread / eps).ln_1p();
            let cfg = NrpmConfig::builder().norm(Norm::L1).k(150).eps(eps).lambda(0.0).build().unwrap();
            let (y, it) = forward_with(Exec::Fused, x.view(), w.view(), None, &cfg).unwrap();
            for k in 0..=150 {
                let z = it.z()[[0, 0, 0, k]];
                let m = z / d as f64;
                let hull = 4.0 * U64 * (lo.abs() + hi.abs()) + eval_tol;
                prop_assert!(k == 0 || (m >= lo - hull && m <= hi + hull),
                    "k = {}: zᵏ/D = {:e} left the terms' range [{:e}, {:e}]", k, m, lo, hi);
                let gap = lad::lad_objective(z, &t) - l_star;
                prop_assert!(gap >= -eval_tol, "z* = {} is not a minimiser: L₀(z{}) < L₀(z*)", z_star, k);
                let score: f64 = t.iter().map(|&td| (m - td) / ((m - td).abs() + eps)).sum();
                prop_assert!(gap <= bias + spread * score.abs() + eval_tol,
                    "a-posteriori bound fails at k = {}: gap {:e}, bias {:e}, R·|ψ| {:e}", k, gap, bias, spread * score.abs());
            }
            let gap = lad::lad_objective(y[[0, 0]], &t) - l_star;
            prop_assert!(gap <= 2.0 * bias + eval_tol, "K = 150, ε = {:e}: gap {:e} > 2·bias {:e}", eps, gap, 2.0 * bias);
            if d % 2 == 1 {
                prop_assert!((y[[0, 0]] - z_star).abs() <= d as f64 * (2.0 * bias + eval_tol) + eval_tol,
                    "odd D: |zᴷ − z*| = {:e} > D·gap bound", (y[[0, 0]] - z_star).abs());
            }
        }
    }

    /// Breakdown of exact LAD: with fewer than half of the D terms corrupted (any number
    /// c ≤ ⌊(D − 1)/2⌋, any size up to 1e12, either sign), `lad::forward` stays inside
    /// D·[min, max] of the clean terms; with ⌊(D + 1)/2⌋ terms set to M it follows M
    /// (≥ D·(M − 4)/2, the clean terms being within ±4), so the breakdown point is ⌊(D + 1)/2⌋/D. LPM moves by exactly the
    /// corruption of one term (breakdown point 1/D).
    /// Proof: proofs/04-breakdown-points.md
    #[test]
    fn lad_resists_minority_corruption_and_lpm_does_not(
        (x, w) in row_case(1..=15),
        picks in proptest::collection::vec(any::<proptest::sample::Index>(), 8),
        sizes in proptest::collection::vec((0.0f64..12.0, any::<bool>()), 8),
    ) {
        let d = x.ncols();
        let lad_cfg = NrpmConfig::builder().norm(Norm::L1).k(1).eps(1.0).lambda(0.0).build().unwrap();
        // Distinct corrupted positions, at most ⌊(D − 1)/2⌋ of them.
        let mut pos: Vec<usize> = picks.iter().map(|i| i.index(d)).collect();
        pos.sort_unstable();
        pos.dedup();
        pos.truncate((d - 1) / 2);
        let clean: Vec<f64> = (0..d).filter(|i| !pos.contains(i)).map(|i| x[[0, i]] * w[[0, i]]).collect();
        let (lo, hi) = range(&clean);
        let mut xc = x.clone();
        for (&p, &(e, neg)) in pos.iter().zip(&sizes) {
            xc[[0, p]] = if neg { -1.0 } else { 1.0 } * 10f64.powf(e) / w[[0, p]];
        }
        let z = lad::forward(xc.view(), w.view(), None, &lad_cfg).unwrap()[[0, 0]];
        let df = d as f64;
        prop_assert!(z >= df * lo && z <= df * hi, "LAD left D·[{}, {}]: {}", lo, hi, z);

        // Half (rounded up) corrupted to +M: the median follows M.
        let m_big = 1e12;
        let mut xb = x.clone();
        let wb = Array2::from_shape_fn((1, d), |(_, i)| if i < d.div_ceil(2) { 1.0 } else { w[[0, i]] });
        for i in 0..d.div_ceil(2) { xb[[0, i]] = m_big; }
        let zb = lad::forward(xb.view(), wb.view(), None, &lad_cfg).unwrap()[[0, 0]];
        prop_assert!(zb >= df * (m_big - 4.0) / 2.0, "⌊(D+1)/2⌋ corrupted: LAD {} did not break", zb);

        // LPM: one corrupted term moves the output by exactly its change.
        let lpm = NrpmConfig::lpm();
        let y0 = forward_with(Exec::Fused, x.view(), w.view(), None, &lpm).unwrap().0[[0, 0]];
        let mut x1 = x.clone();
        x1[[0, 0]] += m_big;
        let y1 = forward_with(Exec::Fused, x1.view(), w.view(), None, &lpm).unwrap().0[[0, 0]];
        let moved = m_big * w[[0, 0]];
        prop_assert!(((y1 - y0) - moved).abs() <= 4.0 * df * U64 * (moved.abs() + 4.0 * df),
            "LPM moved by {} instead of {}", y1 - y0, moved);
    }
}

/// The damping bounds of proofs/05-finite-k-damping.md for one outlier of distance `h` above
/// the bottom of the clean range (width `s`), D terms, ε: lower and upper recursions
/// `A_k ≤ e_k ≤ B_k` for `e_k = zᵏ/D − a`, both started at the exact `e_0`.
fn damping_recursions(
    d: usize,
    h: f64,
    s: f64,
    eps: f64,
    e0: f64,
    k: usize,
) -> (Vec<f64>, Vec<f64>) {
    let dm1 = (d - 1) as f64;
    let (mut a, mut b) = (vec![e0], vec![e0]);
    for i in 0..k {
        let (ak, bk) = (a[i], b[i]);
        a.push(h / (1.0 + dm1 * (h - ak + eps) / ((ak - s).max(0.0) + eps)));
        b.push(s + (h - s) / (1.0 + dm1 * (h - bk + eps) / (bk.max(s) + eps)));
    }
    (a, b)
}

proptest! {
    #![proptest_config(common::config(192, "proptest-regressions/prop_robust.txt"))]

    /// Finite-K NRPM (L1) with one outlier at distance h beyond a clean cluster of width s:
    /// every iterate satisfies `A_k ≤ zᵏ/D − a ≤ B_k` (the two recursions of
    /// proofs/05-finite-k-damping.md). For D ≥ 3 and a gross outlier
    /// (h ≥ D·(s + ρε)/(1 − ρ), ρ = D/(D − 1)²) the closed form
    /// `|zᴷ − z_clean| ≤ ρᴷ·(h + (D − 1)·s) + D·(s + ρε)/(1 − ρ)` holds for every z_clean in
    /// D·[a, b], and the lower bound `zᴷ/D − a ≥ κᴷ·h/D − s·κ/(1 − κ)`, κ = h/(D·(h + ε)),
    /// grows linearly in h: the breakdown point of finite-K NRPM is still 1/D.
    /// Tolerance: `1e-12` relative plus `64·D·u·(|M| + |a| + |b| + 1)` for the rounded iterates.
    /// Proof: proofs/05-finite-k-damping.md
    #[test]
    fn nrpm_damps_one_outlier_by_derived_bound(
        (x, w) in row_case(2..=16),
        log_h in 0.0f64..10.0,
        above in any::<bool>(),
        eps in log_uniform(-6.0, -1.0),
        k in 0usize..=6,
        where_ in any::<proptest::sample::Index>(),
    ) {
        let d = x.ncols();
        let j = where_.index(d);
        let clean: Vec<f64> = (0..d).filter(|&i| i != j).map(|i| x[[0, i]] * w[[0, i]]).collect();
        let (lo, hi) = range(&clean);
        let s = hi - lo;
        // Orientation σ: the outlier lies above (σ = 1) or below (σ = −1) the clean range.
        let sigma = if above { 1.0 } else { -1.0 };
        let anchor = if above { lo } else { -hi }; // a' = min of σ·clean
        let target = if above { hi + 10f64.powf(log_h) } else { lo - 10f64.powf(log_h) };
        let mut xo = x.clone();
        xo[[0, j]] = target / w[[0, j]];
        let t = terms(&xo.view(), &w.view(), 0, 0, 0, d);
        // h = s + 10^log_h up to rounding: the outlier lies at least 1 beyond the clean range.
        let h = sigma * t[j] - anchor;
        let cfg = NrpmConfig::builder().norm(Norm::L1).k(k).eps(eps).lambda(0.0).build().unwrap();
        let (_, it) = forward_with(Exec::Fused, xo.view(), w.view(), None, &cfg).unwrap();
        let df = d as f64;
        let e: Vec<f64> = (0..=k).map(|i| sigma * it.z()[[0, 0, 0, i]] / df - anchor).collect();
        let e0 = t.iter().map(|v| sigma * v).sum::<f64>() / df - anchor;
        let (a, b) = damping_recursions(d, h, s, eps, e0, k);
        let tol = |v: f64| 1e-12 * v.abs() + 64.0 * df * U64 * (t[j].abs() + lo.abs() + hi.abs() + 1.0);
        for i in 0..=k {
            prop_assert!(e[i] <= b[i] + tol(b[i]), "k = {}: e = {:e} > upper {:e}", i, e[i], b[i]);
            prop_assert!(e[i] >= a[i] - tol(a[i]), "k = {}: e = {:e} < lower {:e}", i, e[i], a[i]);
        }
        if d >= 3 {
            let rho = df / ((df - 1.0) * (df - 1.0));
            if h >= df * (s + rho * eps) / (1.0 - rho) {
                let closed = rho.powi(k as i32) * (h + (df - 1.0) * s) + df * (s + rho * eps) / (1.0 - rho);
                // |zᴷ − z_clean| ≤ D·max(e_K, s) for z_clean anywhere in D·[a, b].
                let dev = df * e[k].max(s);
                prop_assert!(dev <= closed + df * tol(closed), "closed form: {:e} > {:e}", dev, closed);
            }
        }
        let kappa = h / (df * (h + eps));
        let lower = kappa.powi(k as i32) * h / df - s * kappa / (1.0 - kappa);
        prop_assert!(e[k] >= lower - tol(lower), "closed lower bound: {:e} < {:e}", e[k], lower);
    }

    /// Sensitivity curves (D ≥ 3 terms, D − 1 clean ones u and one at x₀):
    /// `SC(x₀) = z(u ∪ {x₀}) − D·T(u)`. For exact LAD, |SC| ≤ (D/2)·g with g the gap(s) between
    /// the middle order statistics of u (proofs/06), the bound is attained as x₀ → ±∞, and SC is
    /// constant beyond the clean range; for LPM, SC(x₀) = x₀ − mean(u), unbounded.
    /// Proof: proofs/06-influence-functions.md
    #[test]
    fn lad_sensitivity_is_bounded_and_lpm_is_not(
        (x, w) in row_case(2..=15),
    ) {
        let n = x.ncols(); // clean terms; D = n + 1
        let d = n + 1;
        let df = d as f64;
        let mut u = terms(&x.view(), &w.view(), 0, 0, 0, n);
        u.sort_by(|a, b| a.total_cmp(b));
        // Bound of proofs/06: n = 2p even → (D/2)(u₍ₚ₊₁₎ − u₍ₚ₎); n = 2p − 1 odd →
        // (D/2)·max(u₍ₚ₎ − u₍ₚ₋₁₎, u₍ₚ₊₁₎ − u₍ₚ₎) (1-based order statistics).
        let bound = if n % 2 == 0 {
            let p = n / 2;
            df / 2.0 * (u[p] - u[p - 1])
        } else {
            let p = n.div_ceil(2);
            df / 2.0 * (u[p - 1] - u[p - 2]).max(u[p] - u[p - 1])
        };
        let lad_cfg = NrpmConfig::builder().norm(Norm::L1).k(1).eps(1.0).lambda(0.0).build().unwrap();
        let clean = lad::forward(x.view(), w.view(), None, &lad_cfg).unwrap()[[0, 0]] * df / n as f64;
        let mean = u.iter().sum::<f64>() / n as f64;
        let umax = u.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let tol = 8.0 * df * U64 * umax;
        let row = |x0: f64| {
            let xs = Array2::from_shape_fn((1, d), |(_, i)| if i < n { x[[0, i]] } else { x0 });
            let ws = Array2::from_shape_fn((1, d), |(_, i)| if i < n { w[[0, i]] } else { 1.0 });
            (xs, ws)
        };
        let mut grid: Vec<f64> = (-3..=12).flat_map(|e| [10f64.powi(e), -10f64.powi(e)]).collect();
        grid.extend(u.iter().map(|v| v + 1e-3));
        grid.push(0.0);
        let sc_at = |x0: f64| {
            let (xs, ws) = row(x0);
            lad::forward(xs.view(), ws.view(), None, &lad_cfg).unwrap()[[0, 0]] - clean
        };
        for &x0 in &grid {
            let sc = sc_at(x0);
            prop_assert!(sc.abs() <= bound + tol, "LAD SC({}) = {:e} > bound {:e}", x0, sc, bound);
            let (xs, ws) = row(x0);
            let lpm = forward_with(Exec::Reference, xs.view(), ws.view(), None, &NrpmConfig::lpm()).unwrap().0[[0, 0]];
            let sc_lpm = lpm - df * mean;
            prop_assert!((sc_lpm - (x0 - mean)).abs() <= 4.0 * df * U64 * (x0.abs() + df * umax) + tol,
                "LPM SC({}) = {:e}, want x₀ − mean = {:e}", x0, sc_lpm, x0 - mean);
        }
        // Flat tails, and sharpness: beyond the data SC equals the closed form
        // D·(median(u ∪ {±∞}) − median(u)), computed here from the sorted u alone (not through
        // `lad`), at 10⁶·(1 + max|u|) and at 10¹²; and the sup of the two is the bound.
        let median = |v: &[f64]| {
            let m = v.len();
            if m % 2 == 1 { v[m / 2] } else { (v[m / 2 - 1] + v[m / 2]) / 2.0 }
        };
        let with = |x0: f64| {
            let mut v = u.clone();
            v.push(x0);
            v.sort_by(|a, b| a.total_cmp(b));
            df * (median(&v) - median(&u))
        };
        let (want_lo, want_hi) = (with(f64::NEG_INFINITY), with(f64::INFINITY));
        for far in [1e6 * (1.0 + umax), 1e12] {
            let (lo_sc, hi_sc) = (sc_at(-far), sc_at(far));
            prop_assert!((lo_sc - want_lo).abs() <= tol && (hi_sc - want_hi).abs() <= tol,
                "SC(∓{:e}) = ({:e}, {:e}), want ({:e}, {:e})", far, lo_sc, hi_sc, want_lo, want_hi);
        }
        if n >= 2 {
            prop_assert!((want_lo.abs().max(want_hi.abs()) - bound).abs() <= tol,
                "sup |SC| = {:e} is not the bound {:e}", want_lo.abs().max(want_hi.abs()), bound);
        }
    }
}

/// `T(F_η)` for one reweighting step with fixed centre y (proofs/06 statement 1):
/// `F = (1/n)·Σ_i δ_{u_i}`, `F_η = (1 − η)F + η·δ_Δ`, `T = E[w(X)X]/E[w(X)]`,
/// `w(X) = 1/(|X − y| + ε)`.
fn one_step(u: &[f64], y: f64, eps: f64, eta: f64, delta: f64) -> f64 {
    let w = |x: f64| 1.0 / ((x - y).abs() + eps);
    let n = u.len() as f64;
    let ew: f64 = u.iter().map(|&x| w(x)).sum::<f64>() / n;
    let ewx: f64 = u.iter().map(|&x| w(x) * x).sum::<f64>() / n;
    // η = 0 is F itself (skipping the term also avoids 0·∞ when ε = 0 and Δ = y).
    let (cw, cwx) = if eta == 0.0 {
        (0.0, 0.0)
    } else {
        (eta * w(delta), eta * w(delta) * delta)
    };
    ((1.0 - eta) * ewx + cwx) / ((1.0 - eta) * ew + cw)
}

/// The median of `F_η = (1 − η)·Logistic(μ, s) + η·δ_Δ`, by bisection on
/// `F_η(ν) = (1 − η)·F(ν) + η·1[Δ ≤ ν] = ½`.
fn contaminated_logistic_median(mu: f64, s: f64, eta: f64, delta: f64) -> f64 {
    let cdf =
        |v: f64| (1.0 - eta) / (1.0 + (-(v - mu) / s).exp()) + if delta <= v { eta } else { 0.0 };
    let (mut lo, mut hi) = (mu - 50.0 * s, mu + 50.0 * s);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if cdf(mid) < 0.5 {
            lo = mid
        } else {
            hi = mid
        }
    }
    0.5 * (lo + hi)
}

proptest! {
    #![proptest_config(common::config(128, "proptest-regressions/prop_robust.txt"))]

    /// Statement 1 of proofs/06 as corrected: (a) the median's IF at a logistic F (density
    /// `1/(4s)` at its median μ) is `sign(Δ − μ)·2s` — for Δ > ν the defining equation is
    /// `(1 − η)F(ν_η) = ½`, so ν_η moves *up*, for Δ < ν down; (b) the one-step IF with
    /// fixed centre y and ε > 0 is `w(Δ)(Δ − T)/E[w]`, bounded by `(1 + |y − T|/ε)/E[w]`
    /// for every Δ; (c) at ε = 0 it is not bounded: as Δ → y it grows like
    /// `|y − T|/(|Δ − y|·E[w])`. Each IF is measured as a difference quotient
    /// `(T(F_η) − T(F))/η` (η = 1e-7 for the median, 1e-9 for (b), 1e-12 for (c): small
    /// enough that the second-order term η·w(Δ)/E[w] stays below 1e-5 relative, large enough
    /// that rounding stays below 1e-6 absolute).
    /// Proof: proofs/06-influence-functions.md §1
    #[test]
    fn influence_functions_match_corrected_statement(
        u in proptest::collection::vec(-2.0f64..2.0, 2..=12),
        y in -1.0f64..1.0,
        eps in log_uniform(-3.0, 0.0),
        delta in -1e3f64..1e3,
        mu in -2.0f64..2.0,
        s in 0.1f64..3.0,
        log_near in 2.0f64..6.0,
    ) {
        let eta = 1e-7;
        // (a) the median: sign(Δ − μ)/(2f(μ)) = sign(Δ − μ)·2s.
        prop_assume!((delta - mu).abs() > 1e-3);
        let nu0 = contaminated_logistic_median(mu, s, 0.0, delta);
        let if_med = (contaminated_logistic_median(mu, s, eta, delta) - nu0) / eta;
        let want = (delta - mu).signum() * 2.0 * s;
        prop_assert!((if_med - want).abs() <= 1e-3 * s, "median IF({}) = {} ≠ {}", delta, if_med, want);

        // (b) one step, ε > 0: the formula, and the bound (1 + |y − T|/ε)/E[w].
        let t0 = one_step(&u, y, eps, 0.0, delta);
        let n = u.len() as f64;
        let ew = u.iter().map(|&x| 1.0 / ((x - y).abs() + eps)).sum::<f64>() / n;
        // η·w(Δ)/E[w] ≤ 1e-9·10³·5: the quotient's second-order error is below 1e-5 relative.
        let eta_b = 1e-9;
        let measured = (one_step(&u, y, eps, eta_b, delta) - t0) / eta_b;
        let formula = (delta - t0) / (((delta - y).abs() + eps) * ew);
        prop_assert!((measured - formula).abs() <= 1e-4 * formula.abs() + 1e-6,
            "one-step IF({}) = {} ≠ formula {}", delta, measured, formula);
        let bound = (1.0 + (y - t0).abs() / eps) / ew;
        prop_assert!(formula.abs() <= bound * (1.0 + 1e-12), "|IF| = {} > bound {}", formula, bound);

        // (c) ε = 0: near the centre the IF grows like |y − T|/(|Δ − y|·E[w]).
        prop_assume!(u.iter().all(|&x| (x - y).abs() > 1e-2));
        let t00 = one_step(&u, y, 0.0, 0.0, y);
        let near = y + 10f64.powf(-log_near);
        // The IF at Δ is w(Δ)(Δ − T)/E[w] and Δ − T = (Δ − y) + (y − T): it grows like
        // |y − T|/|Δ − y| only while |Δ − y| is small beside |y − T| (a CI draw with
        // Δ − y = 1e-2 ≈ T − y cancelled to almost 0; proptest-regressions/prop_robust.txt).
        prop_assume!((y - t00).abs() > 1e-2 && (y - t00).abs() >= 10.0 * (near - y));
        let ew0 = u.iter().map(|&x| 1.0 / (x - y).abs()).sum::<f64>() / n;
        let if_near = (one_step(&u, y, 0.0, 1e-12, near) - t00) / 1e-12;
        let grows = (y - t00).abs() / ((near - y).abs() * ew0);
        prop_assert!(if_near.abs() >= 0.5 * grows,
            "ε = 0: IF({}) = {} does not blow up like {}", near, if_near, grows);
    }
}
