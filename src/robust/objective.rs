//! The objective that NRPM's IRLS decreases, and its values along the operator's iterates.
//!
//! ```text
//! L(z)   = Σ_d ρ(z/D − t_d)                 ρ = norm.rho, ρ(r) = ∫₀^|r| s·w(s) ds
//! L1:      ρ_ε(r) = |r| − ε·ln(1 + |r|/ε)    so L = L_ε, the smoothed LAD objective
//! Lpm:     ρ(r) = r²/2                        the least-squares objective of LPM
//! ```
//!
//! Since every weight `w(r) = ψ(r)/r` is positive and non-increasing in `|r|`, one IRLS step
//! `zᵏ⁺¹ = D·Σ_d w_d·t_d / Σ_d w_d` (`w_d = w(|t_d − zᵏ/D|)`) minimises a quadratic that
//! majorises L and touches it at zᵏ, hence `L(zᵏ⁺¹) ≤ L(zᵏ)` (PAPER.md §3.2(a), majorise–
//! minimise). [`objective_trace`] evaluates L at the iterates the operator actually computes,
//! so that decrease can be checked. As ε → 0, `L_ε → Σ_d |z/D − t_d|`, minimised by
//! `D·median(t)` ([`crate::nrpm::lad`]).

use ndarray::Array2;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::nrpm::{self, Norm, NrpmConfig};

/// `L(z) = Σ_d ρ(z/D − t_d)` for the norm's loss ρ with smoothing ε, over the D `terms`.
///
/// # Errors
/// [`Error::Config`] if `terms` is empty or ε is not finite and > 0; [`Error::NonFinite`] if
/// `z` or a term is NaN or ±Inf.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::{robust::objective, Norm};
/// let t = [1.0, 2.0, 6.0];
/// let at_median = objective(Norm::L1, 1e-9, 3.0 * 2.0, &t)?; // Σ|2 − t_d| = 5
/// assert!((at_median - 5.0).abs() < 1e-6);
/// assert!(objective(Norm::L1, 1e-9, 3.0 * 2.5, &t)? > at_median);
/// # Ok(()) }
/// ```
pub fn objective(norm: Norm, eps: f64, z: f64, terms: &[f64]) -> Result<f64> {
    check_objective_inputs(eps, z, terms)?;
    Ok(objective_unchecked(norm, eps, z, terms))
}

/// The smoothed LAD objective that IRLS with weight `1/(r + ε)` decreases:
/// `L_ε(z) = Σ_d ρ_ε(z/D − t_d)`, `ρ_ε(r) = |r| − ε·ln(1 + |r|/ε)`.
///
/// # Errors
/// As [`objective`].
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// let (eps, r) = (0.5_f64, 2.0_f64); // one term t = −2, z = 0: r = z/D − t = 2
/// let l = nrpm::robust::smoothed_lad_objective(eps, 0.0, &[-2.0])?;
/// assert!((l - (r - eps * (1.0 + r / eps).ln())).abs() < 1e-15);
/// # Ok(()) }
/// ```
pub fn smoothed_lad_objective(eps: f64, z: f64, terms: &[f64]) -> Result<f64> {
    objective(Norm::L1, eps, z, terms)
}

/// L at one iterate of the operator.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ObjectiveStep {
    /// The step k (0 = the LPM start).
    pub k: usize,
    /// The pure-NRPM iterate zᵏ (summed over groups; λ not applied).
    pub z: f64,
    /// `Σ_g L_g(zᵏ_g)`: the objective of each group of D/N terms at its own iterate, summed.
    pub objective: f64,
}

/// The objective at every iterate `z⁰ … zᴷ` of the operator with configuration `cfg` on the D
/// `terms` (one output, weight row of ones). With N groups the objective is the sum of the
/// groups' objectives, each over its own D/N terms at its own iterate. Steps run: K (0 when
/// the norm is `Lpm` or K = 0), so the result has `cfg.steps() + 1` entries.
///
/// # Errors
/// As [`crate::nrpm::forward`] on a `[1, D]` input.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// let cfg = nrpm::NrpmConfig::builder().norm(nrpm::Norm::L1).k(5).eps(1e-3).lambda(0.0).build()?;
/// let trace = nrpm::robust::objective_trace(&cfg, &[0.3, -0.2, 0.1, 40.0])?;
/// assert_eq!(trace.len(), 6);
/// assert!(trace.windows(2).all(|s| s[1].objective <= s[0].objective));
/// # Ok(()) }
/// ```
pub fn objective_trace(cfg: &NrpmConfig, terms: &[f64]) -> Result<Vec<ObjectiveStep>> {
    super::check_terms(terms)?;
    let d = terms.len();
    let x = Array2::from_shape_vec((1, d), terms.to_vec()).expect("one row of D terms");
    let (_, iterates) = nrpm::forward(x.view(), Array2::ones((1, d)).view(), None, cfg)?;
    let chunks: Vec<&[f64]> = terms.chunks(d / cfg.groups()).collect();
    let steps = iterates.z.dim().3;
    let trace = (0..steps).map(|k| {
        let zg = |g: usize| iterates.z[[0, 0, g, k]];
        ObjectiveStep {
            k,
            z: (0..chunks.len()).map(zg).sum(),
            objective: chunks
                .iter()
                .enumerate()
                .map(|(g, chunk)| objective_unchecked(cfg.norm(), cfg.eps(), zg(g), chunk))
                .sum(),
        }
    });
    Ok(trace.collect())
}

/// `Σ_d ρ(z/D − t_d)` on checked inputs.
fn objective_unchecked(norm: Norm, eps: f64, z: f64, terms: &[f64]) -> f64 {
    let zd = z / terms.len() as f64;
    terms.iter().map(|t| norm.rho(zd - t, eps)).sum()
}

fn check_objective_inputs(eps: f64, z: f64, terms: &[f64]) -> Result<()> {
    super::check_terms(terms)?;
    if !(eps.is_finite() && eps > 0.0) {
        return Err(Error::config("eps", eps, "must be finite and > 0"));
    }
    nrpm::check_finite("z", &[z][..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nrpm::lad;
    use crate::robust::synthetic_terms;

    fn norms() -> [Norm; 5] {
        [
            Norm::Lpm,
            Norm::L1,
            Norm::Huber { delta: 0.5 },
            Norm::Mcp { gamma: 4.0 },
            Norm::Hm {
                gamma: 4.0,
                delta: 3.0,
            },
        ]
    }

    #[test]
    fn l1_objective_is_the_closed_form_l_eps() {
        let (eps, z) = (0.03_f64, 1.7_f64);
        let t = [0.4_f64, -2.0, 3.0, 0.0];
        let want: f64 = t
            .iter()
            .map(|t| {
                let r = (z / 4.0 - t).abs();
                r - eps * (1.0 + r / eps).ln()
            })
            .sum();
        let got = smoothed_lad_objective(eps, z, &t).unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn lpm_objective_is_half_the_squared_residuals() {
        let t = [1.0, 2.0, 4.0];
        let got = objective(Norm::Lpm, 1e-3, 6.0, &t).unwrap(); // z/D = 2
        assert!((got - 0.5 * (1.0 + 0.0 + 4.0)).abs() < 1e-12);
    }

    #[test]
    fn l_eps_tends_to_the_lad_objective() {
        let t = synthetic_terms(9, 1).unwrap();
        for z in [-3.0, 0.0, 2.5] {
            let lad = lad::lad_objective(z, &t);
            let smooth = smoothed_lad_objective(1e-10, z, &t).unwrap();
            // ρ_ε(r) ≥ |r| − ε·ln(1 + |r|/ε): the gap is at most D·ε·ln(1 + max|r|/ε) ≈ 2.6e-8.
            assert!(smooth <= lad && lad - smooth < 1e-7, "{smooth} vs {lad}");
        }
    }

    #[test]
    fn irls_decreases_the_objective_for_every_norm() {
        for seed in 0..20 {
            let mut t = synthetic_terms(12, seed).unwrap();
            t[seed as usize % 12] = 30.0 + seed as f64; // one gross outlier
            for norm in norms() {
                for groups in [1, 3] {
                    let cfg = NrpmConfig::builder()
                        .norm(norm)
                        .k(8)
                        .eps(1e-3)
                        .lambda(0.3)
                        .build()
                        .unwrap()
                        .with_groups(groups)
                        .unwrap();
                    let trace = objective_trace(&cfg, &t).unwrap();
                    assert_eq!(trace.len(), cfg.steps() + 1);
                    for s in trace.windows(2) {
                        let slack = 1e-12 * s[0].objective.abs().max(1.0);
                        assert!(
                            s[1].objective <= s[0].objective + slack,
                            "{norm:?}, N = {groups}, seed {seed}: {:?}",
                            trace
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn trace_starts_at_the_sum() {
        let cfg = NrpmConfig::builder()
            .norm(Norm::L1)
            .k(2)
            .eps(1e-3)
            .lambda(0.0)
            .build()
            .unwrap();
        let t = [1.0, 2.0, 10.0, 3.0];
        let trace = objective_trace(&cfg, &t).unwrap();
        assert_eq!(trace[0].k, 0);
        assert!((trace[0].z - 16.0).abs() < 1e-12);
        assert!(trace[2].z < trace[0].z);
    }

    #[test]
    fn objective_rejects_bad_inputs() {
        assert!(matches!(
            objective(Norm::L1, 1e-3, 0.0, &[]),
            Err(Error::Config { .. })
        ));
        assert!(matches!(
            objective(Norm::L1, 0.0, 0.0, &[1.0]),
            Err(Error::Config { .. })
        ));
        assert!(matches!(
            objective(Norm::L1, 1e-3, f64::NAN, &[1.0]),
            Err(Error::NonFinite { .. })
        ));
        let cfg = NrpmConfig::builder()
            .norm(Norm::L1)
            .k(2)
            .eps(1e-3)
            .lambda(0.0)
            .build()
            .unwrap()
            .with_groups(2)
            .unwrap();
        assert!(matches!(
            objective_trace(&cfg, &[1.0, 2.0, 3.0]),
            Err(Error::Config { .. })
        ));
    }
}
