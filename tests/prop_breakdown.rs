//! Breakdown and sensitivity of the NRPM operator itself (the function the layers call), on the
//! reference and the fused path, for every norm, K, λ and N: c < Dg/2 corrupted terms per
//! group keep every iterate inside the envelope proofs/05 §6 derives; sensitivity curves grow
//! where §8 says they grow (a positive LPM share λ, or a finite K) and stay bounded where §7
//! says they are bounded (converged L1 or Huber with λ = 0).

mod common;

use common::{
    check_breakdown_envelope, check_sensitivity, linear_case, minority_positions, norm_any,
    norm_robust, outlier_case, Spec, Values,
};
use ndarray::Array2;
use nrpm::{Exec, Norm, NrpmConfig};
use proptest::prelude::*;

const EXECS: [Exec; 2] = [Exec::Reference, Exec::Fused];

/// Shapes with at least 3 terms per group (so that a group can hold a corrupted term while the
/// clean ones stay a strict majority), every norm, K ≤ 6, λ ∈ (−0.5, 1.5), N ≤ 3.
fn spec(norms: BoxedStrategy<Norm>) -> Spec {
    Spec {
        b: 1..=3,
        o: 1..=3,
        dg: 3..=9,
        k: (0..=6).collect(),
        log_eps: (-6.0, -0.5),
        norms,
        ..Spec::default()
    }
}

proptest! {
    #![proptest_config(common::config(96, "proptest-regressions/prop_breakdown.txt"))]

    /// With c_g ≤ ⌊(Dg − 1)/2⌋ columns of every group replaced by `±10^{0…12}` (independently
    /// per row), every iterate zᵏ/Dg of every output and group stays in
    /// `[b − F_k, a + E_k]` (and above the growth bound A_k when the corrupted terms lie on one
    /// side), and every output moves by at most the envelope's bound; on both paths, for every
    /// norm, K ≤ 6, λ and N ≤ 3. Tolerance: the rounding slack of proofs/05 §6.
    /// Proof: proofs/05-finite-k-damping.md §6
    #[test]
    fn operator_stays_in_breakdown_envelope(c in outlier_case(spec(norm_any()), (0.0, 12.0))) {
        for exec in EXECS {
            let r = check_breakdown_envelope(&c, exec)?;
            prop_assert_eq!(r.groups, c.x.nrows() * c.w.nrows() * c.cfg.groups());
        }
    }
}

/// One output (`x [1, D]`, `w [1, D]`, no weight near 0) and c_g ≤ ⌊(Dg − 1)/2⌋ positions per
/// group (at least one in all).
fn row_with_positions(
    norms: BoxedStrategy<Norm>,
    k: Vec<usize>,
    lambda: (f64, f64),
) -> impl Strategy<Value = (Array2<f64>, Array2<f64>, Vec<usize>, NrpmConfig)> {
    let s = Spec {
        b: 1..=1,
        o: 1..=1,
        dg: 3..=9,
        k,
        lambda,
        log_eps: (-6.0, -0.5),
        values: Values::WithTies,
        norms,
        ..Spec::default()
    };
    linear_case(s)
        .prop_flat_map(|c| {
            let n = c.cfg.groups();
            let dg = c.x.ncols() / n;
            (Just(c), minority_positions(n, dg))
        })
        .prop_filter_map("at least one corrupted position", |(c, picks)| {
            let positions: Vec<usize> = picks.into_iter().flatten().collect();
            if positions.is_empty() {
                return None;
            }
            let mut w = c.w.clone();
            for &j in &positions {
                if w[[0, j]].abs() < 0.25 {
                    w[[0, j]] = 1.0;
                }
            }
            Some((c.x, w, positions, c.cfg))
        })
}

/// x₀ on both sides, from inside the data to 10¹².
fn grid() -> Vec<f64> {
    (-1..=12)
        .flat_map(|e| [10f64.powi(e), -10f64.powi(e)])
        .chain([0.0, 0.5, -1.5])
        .collect()
}

proptest! {
    #![proptest_config(common::config(64, "proptest-regressions/prop_breakdown.txt"))]

    /// Sensitivity curves of the operator (the c corrupted terms all moved to x₀ over ±10¹²):
    /// every point lies in the breakdown envelope, and with an LPM share λ ∈ (0, 1] the curve
    /// grows at least like `λ·Σ_j |x₀ − t_j| − (1 − λ)·Σ_g Dg·s_g` (the LPM part has
    /// breakdown point 1/D: one term drags it anywhere), whatever the norm and K — including
    /// K = 300, where the IRLS part has converged.
    /// Proof: proofs/05-finite-k-damping.md §8, proofs/06-influence-functions.md
    #[test]
    fn operator_sensitivity_grows_with_an_lpm_share(
        (x, w, positions, cfg) in row_with_positions(norm_any(), vec![0, 1, 2, 3, 6, 300], (0.05, 1.0)),
    ) {
        for exec in EXECS {
            let r = check_sensitivity(x.view(), w.view(), &positions, &grid(), &cfg, exec, false)?;
            prop_assert_eq!(r.grows_with_slope, Some(cfg.lambda() * positions.len() as f64));
            // The slope is visible: at 10¹² the output has moved by at least λ·c·10¹²/2.
            let far = r.curve.iter().find(|p| p.0 == 1e12).unwrap().1;
            prop_assert!(far >= 0.5 * cfg.lambda() * positions.len() as f64 * 1e12,
                "SC(1e12) = {:e}", far);
        }
    }

    /// With λ = 0 and a finite K ≤ 6 the curve still grows (breakdown point 1/D, proofs/05 (C)
    /// and §6's growth bound A_K, checked at every point by the envelope); with L1 or Huber
    /// and K = 300 (IRLS converged: the full score at zᴷ is at most ψ̄/2) it is bounded by a
    /// constant that does not depend on x₀: the interval of proofs/05 §7.
    /// Proof: proofs/05-finite-k-damping.md §7, §8
    #[test]
    fn operator_sensitivity_is_bounded_once_converged_and_grows_at_finite_k(
        (x, w, positions, cfg) in row_with_positions(norm_robust(), vec![1, 2, 3, 300], (0.0, 1e-300)),
    ) {
        let cfg = cfg.with_lambda(0.0).unwrap();
        let converged = cfg.k() == 300 && matches!(cfg.norm(), Norm::L1 | Norm::Huber { .. });
        for exec in EXECS {
            let r = check_sensitivity(x.view(), w.view(), &positions, &grid(), &cfg, exec, converged)?;
            if converged {
                let bound = r.bounded_by.expect("L1 and Huber have a bounded score");
                prop_assert!(r.curve.iter().all(|p| p.1.abs() <= bound));
            } else if matches!(cfg.norm(), Norm::L1) && cfg.k() <= 3 {
                // Finite K: SC(10¹²) is of the order of κᴷ·10¹², far beyond any data scale.
                let far = r.curve.iter().find(|p| p.0 == 1e12).unwrap().1;
                prop_assert!(far >= 1e3, "SC(1e12) = {:e} for K = {}", far, cfg.k());
            }
        }
    }
}
