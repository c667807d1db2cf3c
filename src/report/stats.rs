//! Accuracies on n images as binomial proportions with exact (Clopper–Pearson) intervals.
//!
//! ```text
//! k correct of n, confidence 1 − α:
//!   lower = Beta⁻¹(α/2; k, n − k + 1)        (0 when k = 0)
//!   upper = Beta⁻¹(1 − α/2; k + 1, n − k)    (1 when k = n)
//! ```
//!
//! The interval covers the true accuracy with probability ≥ 1 − α for every true value
//! (Clopper & Pearson, 1934); it is conservative, never too narrow.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, ContinuousCDF, Normal};

use crate::error::{Error, Result};

/// `k` successes out of `n`, in percent, with a two-sided interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proportion {
    /// Successes.
    pub k: usize,
    /// Trials.
    pub n: usize,
    /// `100·k/n`.
    pub percent: f64,
    /// Lower end of the interval, percent.
    pub lo: f64,
    /// Upper end of the interval, percent.
    pub hi: f64,
}

impl Proportion {
    /// `k` of `n` with the 95 % Clopper–Pearson interval.
    ///
    /// # Errors
    /// [`Error::Config`] if `n == 0` or `k > n`.
    ///
    /// # Example
    /// ```
    /// let p = nrpm::report::stats::Proportion::new(912, 1000)?;
    /// assert!((p.percent - 91.2).abs() < 1e-12);
    /// assert!(p.lo < 91.2 && 91.2 < p.hi && p.hi - p.lo < 4.0);
    /// # Ok::<(), nrpm::Error>(())
    /// ```
    pub fn new(k: usize, n: usize) -> Result<Self> {
        let (lo, hi) = clopper_pearson(k, n, 0.95)?;
        Ok(Self {
            k,
            n,
            percent: 100.0 * k as f64 / n as f64,
            lo: 100.0 * lo,
            hi: 100.0 * hi,
        })
    }

    /// `91.2 [89.3, 92.9]`.
    pub fn display(&self) -> String {
        format!("{:.1} [{:.1}, {:.1}]", self.percent, self.lo, self.hi)
    }
}

/// The Clopper–Pearson interval `(lower, upper)` (fractions) for `k` of `n` at `confidence`.
///
/// # Errors
/// [`Error::Config`] if `n == 0`, `k > n`, or the confidence is not in (0, 1).
pub fn clopper_pearson(k: usize, n: usize, confidence: f64) -> Result<(f64, f64)> {
    if n == 0 || k > n {
        return Err(Error::config(
            "k of n",
            format!("{k} of {n}"),
            "needs n ≥ 1 and k ≤ n",
        ));
    }
    if !(confidence > 0.0 && confidence < 1.0) {
        return Err(Error::config("confidence", confidence, "must be in (0, 1)"));
    }
    let alpha = 1.0 - confidence;
    let (k, n) = (k as f64, n as f64);
    let beta = |a: f64, b: f64| Beta::new(a, b).expect("shape parameters are positive");
    let lo = if k == 0.0 {
        0.0
    } else {
        beta(k, n - k + 1.0).inverse_cdf(alpha / 2.0)
    };
    let hi = if k == n {
        1.0
    } else {
        beta(k + 1.0, n - k).inverse_cdf(1.0 - alpha / 2.0)
    };
    Ok((lo, hi))
}

/// Two-sided p-value of the pooled two-proportion z test of `a` against `b`:
///
/// ```text
/// p̂ = (k_a + k_b)/(n_a + n_b)     z = (k_a/n_a − k_b/n_b) / √(p̂(1 − p̂)(1/n_a + 1/n_b))
/// p-value = 2·(1 − Φ(|z|))         (1 when p̂ is 0 or 1: no variation, no evidence)
/// ```
///
/// For two models measured on the same images the outcomes are paired and positively
/// correlated, so this unpaired test overstates the variance of the difference: its p-values
/// are conservative (too large), never too small.
///
/// # Errors
/// [`Error::Config`] when a proportion has no trials.
///
/// # Example
/// ```
/// use nrpm::report::stats::{two_proportion_p_value, Proportion};
/// let (a, b) = (Proportion::new(60, 100)?, Proportion::new(40, 100)?);
/// assert!((two_proportion_p_value(&a, &b)? - 0.004678).abs() < 1e-5);
/// # Ok::<(), nrpm::Error>(())
/// ```
pub fn two_proportion_p_value(a: &Proportion, b: &Proportion) -> Result<f64> {
    if a.n == 0 || b.n == 0 {
        return Err(Error::config(
            "trials",
            0,
            "a proportion needs at least one",
        ));
    }
    let (na, nb) = (a.n as f64, b.n as f64);
    let pooled = (a.k + b.k) as f64 / (na + nb);
    let var = pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb);
    if var <= 0.0 {
        return Ok(1.0);
    }
    let z = (a.k as f64 / na - b.k as f64 / nb) / var.sqrt();
    let normal = Normal::standard();
    Ok((2.0 * (1.0 - normal.cdf(z.abs()))).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values solved independently by bisection on the exact binomial CDF
    /// (P(X ≥ k; lo) = α/2, P(X ≤ k; hi) = α/2), as R's `binom.test(k, n)$conf.int` defines them.
    #[test]
    fn matches_reference_intervals() {
        let cases = [
            (912, 1000, 0.892705, 0.928825),
            (0, 1000, 0.0, 0.0036821),
            (1000, 1000, 0.996318, 1.0),
            (5, 10, 0.187086, 0.812914),
        ];
        for (k, n, lo, hi) in cases {
            let (l, h) = clopper_pearson(k, n, 0.95).unwrap();
            assert!(
                (l - lo).abs() < 2e-5 && (h - hi).abs() < 2e-5,
                "{k}/{n}: ({l}, {h})"
            );
        }
    }

    #[test]
    fn bad_counts_are_errors() {
        assert!(clopper_pearson(3, 0, 0.95).is_err());
        assert!(clopper_pearson(4, 3, 0.95).is_err());
        assert!(clopper_pearson(1, 3, 1.0).is_err());
    }
}
