//! Empirical finite-sample breakdown point: the smallest fraction m/D of the terms that, replaced
//! by escalating outliers, drives the output past any bound.
//!
//! ```text
//! M_j      = start · ratioʲ,  j = 0 … J              escalating outlier magnitudes
//! t^(m,M)  = (M, …, M, t_{m+1}, …, t_D)               the first m terms replaced by M
//! b_m(M)   = | T(t^(m,M)) − T(t) |                    bias
//! s_m      = ln( b_m(M_J) / b_m(M_{J−1}) ) / ln(ratio)  log–log slope over the last step
//! broken   ⇔ s_m ≥ 1/2                                 (BREAKDOWN_SLOPE)
//! m*       = min { m : broken },  ε* = m*/D
//! ```
//!
//! Why this criterion. Every estimator here is translation-equivariant and, once the outliers
//! dominate, asymptotically homogeneous in them, so for a fixed m its bias either stays bounded
//! (`b_m(M) → const`, slope → 0: the median with m < ⌊(D + 1)/2⌋) or grows in proportion to M
//! (`b_m(M) ≈ c·M`, slope → 1: the mean; NRPM with finite K, PAPER.md §3.2(c)). For NRPM the
//! mean-scale share `c_k = zᵏ/(D·M)` of the outliers follows, as M → ∞ (inliers and ε
//! negligible), `c_{k+1} = m·c_k / (m·c_k + (D − m)·(1 − c_k))` from `c_0 = m/D`: it shrinks
//! by about `m/(D − m)` per step when m < D/2, but stays positive for every finite K. The threshold 1/2 sits
//! between the two limits, and a large ratio (default 10¹⁰) puts the last step far into the
//! asymptotic regime. The verdict is deterministic (no randomness, fixed magnitudes), and it
//! is empirical: a bias whose growth starts only beyond `M_J` (NRPM with K so large that
//! `c·M_J` is below the inliers' spread) is reported as bounded. Placing all outliers at +M on
//! the first m indices is the worst case: one side, and, with N groups, one group filled
//! first. When all D terms are replaced, T = D·M for every estimator here, so m* ≤ D.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::robust::Estimator;

/// The slope threshold: m outliers break the estimator when its bias grows at least like
/// `M^BREAKDOWN_SLOPE` over the last step of the escalation.
pub const BREAKDOWN_SLOPE: f64 = 0.5;

/// Largest `D · M_J` accepted, so that sums of D outliers stay finite in f64.
pub const MAX_SCALED_MAGNITUDE: f64 = 1e300;

/// The most magnitudes an [`Escalation`] may have.
pub const MAX_MAGNITUDES: usize = 1000;

/// The escalating outlier magnitudes `M_j = start · ratioʲ`, `j = 0 … count − 1`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Escalation {
    /// `M_0 > 0`.
    pub start: f64,
    /// Growth factor between magnitudes, > 1.
    pub ratio: f64,
    /// Number of magnitudes, ≥ 2.
    pub count: usize,
}

impl Escalation {
    /// The default escalation for `terms`: `M_0 = 10·(1 + max_d |t_d|)`, ratio 10¹⁰, 11
    /// magnitudes (`M_J = M_0·10¹⁰⁰`).
    pub fn for_terms(terms: &[f64]) -> Self {
        let scale = terms.iter().fold(0.0_f64, |a, t| a.max(t.abs()));
        Self {
            start: 10.0 * (1.0 + scale),
            ratio: 1e10,
            count: 11,
        }
    }

    /// The magnitudes, checked for D terms.
    ///
    /// # Errors
    /// [`Error::Config`] if `start` is not finite and > 0, `ratio` is not finite and > 1,
    /// `count` is not 2 to [`MAX_MAGNITUDES`], or `D · M_J` exceeds [`MAX_SCALED_MAGNITUDE`].
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// let esc = nrpm::robust::Escalation::for_terms(&[0.5, -2.0]); // M_0 = 10·(1 + 2)
    /// let m = esc.magnitudes(2)?;
    /// assert_eq!((m.len(), m[0], m[1]), (11, 30.0, 3e11));
    /// # Ok(()) }
    /// ```
    pub fn magnitudes(&self, d: usize) -> Result<Vec<f64>> {
        if !(self.start.is_finite() && self.start > 0.0) {
            return Err(Error::config(
                "escalation start",
                self.start,
                "must be finite and > 0",
            ));
        }
        if !(self.ratio.is_finite() && self.ratio > 1.0) {
            return Err(Error::config(
                "escalation ratio",
                self.ratio,
                "must be finite and > 1",
            ));
        }
        if !(2..=MAX_MAGNITUDES).contains(&self.count) {
            return Err(Error::config(
                "escalation steps",
                self.count,
                "need 2 to 1000 magnitudes",
            ));
        }
        let last = self.start * self.ratio.powi(self.count as i32 - 1);
        if last * d as f64 > MAX_SCALED_MAGNITUDE {
            return Err(Error::config(
                "escalation",
                format!("D·M_last = {:e}", last * d as f64),
                "D times the largest outlier must stay at most 1e300",
            ));
        }
        Ok((0..self.count)
            .map(|j| self.start * self.ratio.powi(j as i32))
            .collect())
    }
}

/// The share `c_K = zᴷ/(D·M)` that m outliers at M keep in pure NRPM (λ = 0, one group) after
/// K IRLS steps, in the limit M → ∞ for a weight that behaves like `α/r` for large r (L1,
/// Huber): `c_0 = m/D`, `c_{k+1} = m·c_k / (m·c_k + (D − m)·(1 − c_k))`. The output then grows
/// like `D·c_K·M`: for m = 1 the slope of the sensitivity curve far from the data is `D·c_K`
/// (LPM: 1), `c_1 = 1/(1 + (D − 1)²)`, and each further step divides it by about D − 1.
/// m = D gives 1.
///
/// # Errors
/// [`Error::Config`] unless `1 ≤ m ≤ D`.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// let c1 = nrpm::robust::breakdown::asymptotic_outlier_share(16, 1, 1)?;
/// assert!((c1 - 1.0 / 226.0).abs() < 1e-15);
/// # Ok(()) }
/// ```
pub fn asymptotic_outlier_share(d: usize, m: usize, k: usize) -> Result<f64> {
    if m == 0 || m > d {
        return Err(Error::config("m", m, "outliers must number 1 to D"));
    }
    let (m, rest) = (m as f64, (d - m) as f64);
    Ok((0..k).fold(m / d as f64, |c, _| m * c / (m * c + rest * (1.0 - c))))
}

/// The bias of one contamination level m across the escalation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BiasRow {
    /// Number of replaced terms.
    pub m: usize,
    /// m/D.
    pub fraction: f64,
    /// `b_m(M_j)` for each magnitude.
    pub bias: Vec<f64>,
    /// The log–log slope over the last step (+∞, written as JSON null, if the bias jumps from 0).
    pub slope: f64,
    /// `slope ≥ BREAKDOWN_SLOPE`.
    pub broken: bool,
}

/// The empirical breakdown point of one estimator on one clean input.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BreakdownEstimate {
    /// Number of terms D.
    pub d: usize,
    /// The smallest m that breaks the estimator (`None`: none did within the escalation).
    pub m: Option<usize>,
    /// m/D.
    pub fraction: Option<f64>,
    /// The output on the clean terms, `T(t)`.
    pub clean_output: f64,
    /// The magnitudes `M_j` used.
    pub magnitudes: Vec<f64>,
    /// One row per m = 1 … D.
    pub rows: Vec<BiasRow>,
}

/// The empirical breakdown point of `estimator` on the clean D `terms` (see the module doc for
/// the criterion), with the bias table for every m = 1 … D.
///
/// # Errors
/// As [`Escalation::magnitudes`] and [`Estimator::estimate`].
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::robust::{breakdown_point, synthetic_terms, Escalation, Estimator};
/// let t = synthetic_terms(10, 0)?;
/// let esc = Escalation::for_terms(&t);
/// assert_eq!(breakdown_point(&Estimator::Lpm, &t, &esc)?.m, Some(1));
/// assert_eq!(breakdown_point(&Estimator::Lad, &t, &esc)?.m, Some(5)); // ⌊(D + 1)/2⌋
/// # Ok(()) }
/// ```
pub fn breakdown_point(
    estimator: &Estimator,
    terms: &[f64],
    escalation: &Escalation,
) -> Result<BreakdownEstimate> {
    let clean_output = estimator.estimate(terms)?;
    let d = terms.len();
    let magnitudes = escalation.magnitudes(d)?;
    let rows = (1..=d)
        .map(|m| {
            bias_row(
                estimator,
                terms,
                clean_output,
                m,
                &magnitudes,
                escalation.ratio,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let m = rows.iter().find(|r| r.broken).map(|r| r.m);
    Ok(BreakdownEstimate {
        d,
        m,
        fraction: m.map(|m| m as f64 / d as f64),
        clean_output,
        magnitudes,
        rows,
    })
}

/// The biases `b_m(M_j)` and the breakdown verdict for m replaced terms.
fn bias_row(
    estimator: &Estimator,
    terms: &[f64],
    clean_output: f64,
    m: usize,
    magnitudes: &[f64],
    ratio: f64,
) -> Result<BiasRow> {
    let mut contaminated = terms.to_vec();
    let bias = magnitudes
        .iter()
        .map(|&big| {
            contaminated[..m].fill(big);
            Ok((estimator.estimate(&contaminated)? - clean_output).abs())
        })
        .collect::<Result<Vec<f64>>>()?;
    let slope = last_step_slope(&bias, ratio);
    Ok(BiasRow {
        m,
        fraction: m as f64 / terms.len() as f64,
        bias,
        slope,
        broken: slope >= BREAKDOWN_SLOPE,
    })
}

/// `ln(b_J / b_{J−1}) / ln(ratio)`; 0 when both are 0, +∞ when only the last is positive.
fn last_step_slope(bias: &[f64], ratio: f64) -> f64 {
    let (prev, last) = (bias[bias.len() - 2], bias[bias.len() - 1]);
    match (prev > 0.0, last > 0.0) {
        (true, true) => (last / prev).ln() / ratio.ln(),
        (false, true) => f64::INFINITY,
        (_, false) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nrpm::{Norm, NrpmConfig};
    use crate::robust::synthetic_terms;

    fn m_star(est: Estimator, d: usize, seed: u64) -> Option<usize> {
        let t = synthetic_terms(d, seed).unwrap();
        breakdown_point(&est, &t, &Escalation::for_terms(&t))
            .unwrap()
            .m
    }

    /// `M_0 = 10·(1 + max_d |t_d|)`, ratio 10¹⁰, 11 magnitudes.
    #[test]
    fn default_escalation_scales_with_the_largest_term() {
        let esc = Escalation::for_terms(&[0.5, -2.0, 1.0]);
        assert_eq!((esc.start, esc.ratio, esc.count), (30.0, 1e10, 11));
        assert_eq!(Escalation::for_terms(&[]).start, 10.0);
        assert_eq!(Escalation::for_terms(&[0.0, -0.0]).start, 10.0);
    }

    #[test]
    fn lpm_breaks_at_one_term() {
        for d in [1, 2, 7, 64] {
            assert_eq!(m_star(Estimator::Lpm, d, 1), Some(1), "D = {d}");
        }
    }

    #[test]
    fn lad_breaks_at_half_the_terms() {
        for d in [1, 2, 3, 8, 15, 16, 64] {
            assert_eq!(m_star(Estimator::Lad, d, 2), Some(d.div_ceil(2)), "D = {d}");
            // ⌊(D+1)/2⌋
        }
    }

    #[test]
    fn nrpm_with_finite_k_breaks_at_one_term() {
        for (norm, k, d) in [
            (Norm::L1, 1, 16),
            (Norm::L1, 3, 16),
            (Norm::L1, 3, 64),
            (Norm::Huber { delta: 0.5 }, 3, 16),
        ] {
            let cfg = NrpmConfig::builder()
                .norm(norm)
                .k(k)
                .eps(1e-3)
                .lambda(0.0)
                .build()
                .unwrap();
            assert_eq!(
                m_star(Estimator::Nrpm(cfg), d, 3),
                Some(1),
                "{norm:?}, K = {k}, D = {d}"
            );
        }
        let mixed = NrpmConfig::builder()
            .norm(Norm::L1)
            .k(3)
            .eps(1e-3)
            .lambda(0.5)
            .build()
            .unwrap();
        assert_eq!(m_star(Estimator::Nrpm(mixed), 16, 3), Some(1));
    }

    #[test]
    fn nrpm_bias_at_one_term_is_damped() {
        let t = synthetic_terms(16, 4).unwrap();
        let esc = Escalation::for_terms(&t);
        let lpm = breakdown_point(&Estimator::Lpm, &t, &esc).unwrap();
        let cfg = NrpmConfig::builder()
            .norm(Norm::L1)
            .k(2)
            .eps(1e-3)
            .lambda(0.0)
            .build()
            .unwrap();
        let nrpm = breakdown_point(&Estimator::Nrpm(cfg), &t, &esc).unwrap();
        let last = esc.count - 1;
        // At M_J ≈ 1e101 the asymptotic recurrence is exact to ~1e−90:
        // c_1 = 1/(1 + 15²), c_2 = c_1/(c_1 + 15·(1 − c_1)); NRPM/LPM bias = D·c_2 ≈ 4.7e−3.
        let c = asymptotic_outlier_share(16, 1, 2).unwrap();
        assert!(asymptotic_outlier_share(16, 17, 2).is_err());
        assert!(asymptotic_outlier_share(16, 0, 2).is_err());
        // m = D: every term is an outlier, so the output is all theirs at every K.
        assert_eq!(asymptotic_outlier_share(16, 16, 0).unwrap(), 1.0);
        assert_eq!(asymptotic_outlier_share(16, 16, 3).unwrap(), 1.0);
        assert!((c - 1.0 / 226.0 / (1.0 / 226.0 + 15.0 * 225.0 / 226.0)).abs() < 1e-18);
        let damping = nrpm.rows[0].bias[last] / lpm.rows[0].bias[last];
        assert!(
            (damping / (16.0 * c) - 1.0).abs() < 1e-9,
            "{damping} vs {}",
            16.0 * c
        );
    }

    #[test]
    fn huge_k_looks_bounded_within_the_escalation() {
        // m = 1: c_K ≈ 15^(−K) ≈ 1e−236 for K = 200, so c·M_J ≈ 1e−135 stays below the inliers'
        // spread and the bias looks bounded; m = 7: c_K ≈ (7/9)^200 ≈ 1e−22 still breaks.
        let cfg = NrpmConfig::builder()
            .norm(Norm::L1)
            .k(200)
            .eps(1e-6)
            .lambda(0.0)
            .build()
            .unwrap();
        let m = m_star(Estimator::Nrpm(cfg), 16, 5).unwrap();
        assert!((2..=9).contains(&m), "{m}");
    }

    #[test]
    fn bias_table_is_complete_and_deterministic() {
        let t = synthetic_terms(6, 9).unwrap();
        let esc = Escalation::for_terms(&t);
        let a = breakdown_point(&Estimator::Lad, &t, &esc).unwrap();
        assert_eq!(a.rows.len(), 6);
        assert!(a.rows.iter().all(|r| r.bias.len() == esc.count));
        assert_eq!(a.rows[5].fraction, 1.0);
        assert_eq!(a, breakdown_point(&Estimator::Lad, &t, &esc).unwrap());
    }

    /// `b_m(M_j) = |T(t with its first m terms set to M_j) − T(t)|`, on terms whose clean
    /// output is far from 0; below half the terms LAD's bias stays within `D·(max t − min t)`.
    #[test]
    fn bias_is_the_distance_from_the_clean_output() {
        let t: Vec<f64> = synthetic_terms(6, 9)
            .unwrap()
            .iter()
            .map(|v| v + 5.0)
            .collect();
        let spread =
            t.iter().fold(f64::MIN, |m, &v| m.max(v)) - t.iter().fold(f64::MAX, |m, &v| m.min(v));
        let esc = Escalation::for_terms(&t);
        for est in [Estimator::Lpm, Estimator::Lad] {
            let b = breakdown_point(&est, &t, &esc).unwrap();
            assert_eq!(b.clean_output, est.estimate(&t).unwrap());
            for row in &b.rows {
                for (&big, &bias) in b.magnitudes.iter().zip(&row.bias) {
                    let mut c = t.clone();
                    c[..row.m].fill(big);
                    let want = (est.estimate(&c).unwrap() - b.clean_output).abs();
                    assert_eq!(bias, want, "{} m={} M={big}", est.label(), row.m);
                }
            }
            if matches!(est, Estimator::Lad) {
                for row in &b.rows[..2] {
                    assert!(
                        row.bias.iter().all(|&v| v <= t.len() as f64 * spread),
                        "{row:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn escalation_rejects_bad_settings() {
        let ok = Escalation::for_terms(&[1.0]);
        assert!(ok.magnitudes(4).is_ok());
        // The limit is on D·M_last = D·start·ratio^(count − 1): M_last = 2e299 is allowed for
        // D = 4, not for D = 6; 5e299·2 = 1e300 is exactly the limit, allowed for D = 1 only.
        let near = Escalation {
            start: 1e299,
            ratio: 2.0,
            count: 2,
        };
        assert_eq!(near.magnitudes(4).unwrap(), vec![1e299, 2e299]);
        assert!(matches!(near.magnitudes(6), Err(Error::Config { .. })));
        let at = Escalation {
            start: 5e299,
            ..near
        };
        assert_eq!(at.magnitudes(1).unwrap(), vec![5e299, 1e300]);
        assert!(matches!(at.magnitudes(2), Err(Error::Config { .. })));
        for bad in [
            Escalation { start: 0.0, ..ok },
            Escalation {
                start: f64::NAN,
                ..ok
            },
            Escalation { ratio: 1.0, ..ok },
            Escalation { count: 1, ..ok },
            Escalation { count: 40, ..ok },
            Escalation {
                count: usize::MAX,
                ratio: 1.0 + 1e-12,
                ..ok
            },
        ] {
            assert!(
                matches!(bad.magnitudes(4), Err(Error::Config { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn slope_of_edge_cases() {
        assert_eq!(last_step_slope(&[0.0, 0.0], 10.0), 0.0);
        assert_eq!(last_step_slope(&[0.0, 1.0], 10.0), f64::INFINITY);
        assert!((last_step_slope(&[2.0, 20.0], 10.0) - 1.0).abs() < 1e-12);
    }
}
