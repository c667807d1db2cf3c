//! Breakdown envelopes of finite-K NRPM with c corrupted terms (proofs/05-finite-k-damping.md
//! §6), and of the converged operator (§7): the bounds the property tests hold the operator to.
//!
//! One output and group: `n = Dg − c` untouched ("clean") terms in `[a, b]`, spread `s = b − a`,
//! and c corrupted terms anywhere. With `m = z/Dg`, the two excesses `e = m − a`, `f = b − m`
//! (`e + f = s`), any robust norm (w positive and non-increasing), every step k:
//!
//! ```text
//! e_k ≤ E_k,  f_k ≤ F_k          E_0 = e_0, F_0 = f_0 (the mean), R_k = max(E_k, F_k)
//! E_{k+1} = s + (H⁺ − s)·Ω⁺(E_k) / (n·w(R_k) + Ω⁺(E_k)),  Ω⁺(E) = Σ_{t_j > b} w((t_j − a − E)₊)
//! F_{k+1} = s + (H⁻ − s)·Ω⁻(F_k) / (n·w(R_k) + Ω⁻(F_k)),  Ω⁻(F) = Σ_{t_j < a} w((b − t_j − F)₊)
//! ```
//!
//! (`H⁺ = max_{t_j > b} t_j − a`, `H⁻ = b − min_{t_j < a} t_j`; a side with no corrupted term
//! has `E_{k+1} = s`.) When every corrupted term lies above b (`h_j = t_j − a ∈ [h̲, h̄]`) the
//! excess also grows at least as `e_k ≥ A_k`:
//!
//! ```text
//! A_{k+1} = h̲ / (1 + n·w((A_k − s)₊) / (c·w(h̄ − A_k + (h̄ − h̲))))
//! ```
//!
//! Converged operator (L1 and Huber, whose score ψ(r) = r·w(|r|) is non-decreasing and bounded
//! by ψ̄ = 1, δ): with `g(m) = Σ_d ψ(m − t_d)` the score of all Dg terms and
//! `S(m) = Σ_{clean} ψ(m − c_i)`, every m satisfies `S(m) ∈ [g − c·ψ̄, g + c·ψ̄]`, so
//! `m ∈ [S⁻¹(g − c·ψ̄), S⁻¹(g + c·ψ̄)]`: an interval that does not depend on where the corrupted
//! terms are, finite while `|g| + c·ψ̄ < n·ψ̄`.
//!
//! Every bound here is evaluated with a rounding slack (`Slack`): the recursions bound the
//! iterates the code computes, whose weights and sums carry rounding errors.

use crate::{Norm, NrpmConfig};

/// Rounding slack of one IRLS step in a precision of unit roundoff `u` (first order, with a
/// safety factor 4; proofs/05 §6 "Rounding").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slack {
    /// Error of a residual `|t_d − zᵏ/Dg|` as the code computes it.
    pub residual: f64,
    /// Relative error of a weight (its formula).
    pub weight_rel: f64,
    /// Absolute error of a weight (cancellation in `1/(r + ε) − 1/γ` and `p/(r + ε) − q`).
    pub weight_abs: f64,
    /// Error of one iterate `zᵏ⁺¹/Dg` beyond its weights (rounded products, sums, division),
    /// and of the excess `m − a`.
    pub step: f64,
}

impl Slack {
    /// The slack for `dg` terms of magnitude at most `t_max` (corrupted ones included), the
    /// norm's constants (`p/(r + ε) − q`), unit roundoff `u`.
    pub fn new(dg: usize, t_max: f64, norm: &Norm, u: f64) -> Self {
        let (p, q) = match *norm {
            Norm::Lpm | Norm::L1 => (1.0, 0.0),
            Norm::Huber { delta } => (delta, 0.0),
            Norm::Mcp { gamma } => (1.0 / gamma, 0.0),
            Norm::Hm { gamma, delta } => (delta / (gamma - delta) * gamma, delta / (gamma - delta)),
        };
        let dgf = dg as f64;
        Self {
            residual: 4.0 * 2.0 * u * (2.0 * t_max),
            weight_rel: 4.0 * 3.0 * u,
            weight_abs: 4.0 * 4.0 * u * (p + q + 1.0),
            step: 4.0 * (2.0 * dgf + 8.0) * u * t_max,
        }
    }

    /// No slack (exact arithmetic).
    pub fn exact() -> Self {
        Self {
            residual: 0.0,
            weight_rel: 0.0,
            weight_abs: 0.0,
            step: 0.0,
        }
    }
}

/// The bounds of one output and group (module doc), for k = 0..=K.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// `a`, the smallest clean term.
    pub a: f64,
    /// `b`, the largest clean term.
    pub b: f64,
    /// `E_k ≥ zᵏ/Dg − a`.
    pub above: Vec<f64>,
    /// `F_k ≥ b − zᵏ/Dg`.
    pub below: Vec<f64>,
    /// `A_k ≤ zᵏ/Dg − a` when every corrupted term lies above b; `A_k ≤ b − zᵏ/Dg` (mirrored)
    /// when every one lies below a; `None` otherwise.
    pub growth: Option<Growth>,
}

/// The lower (growth) bound of an [`Envelope`] and the side it applies to.
#[derive(Clone, Debug, PartialEq)]
pub struct Growth {
    /// `true`: the corrupted terms lie above the clean ones and `A_k ≤ zᵏ/Dg − a`; `false`:
    /// below, and `A_k ≤ b − zᵏ/Dg`.
    pub above: bool,
    /// `A_k`, k = 0..=K.
    pub a_k: Vec<f64>,
}

impl Envelope {
    /// The interval `[lo, hi]` the K-th iterate `zᴷ/Dg` lies in.
    pub fn interval(&self) -> (f64, f64) {
        let k = self.above.len() - 1;
        let (mut lo, mut hi) = (self.b - self.below[k], self.a + self.above[k]);
        if let Some(g) = &self.growth {
            if g.above {
                lo = lo.max(self.a + g.a_k[k]);
            } else {
                hi = hi.min(self.b - g.a_k[k]);
            }
        }
        (lo, hi)
    }
}

/// The norm's weight `w(r)`, `r ≥ 0`, written out from the paper's formulas (src/nrpm/norm.rs
/// module doc) independently of the code under test, which the checkers must not share.
pub fn paper_weight(norm: &Norm, r: f64, eps: f64) -> f64 {
    let inv = 1.0 / (r + eps);
    match *norm {
        Norm::Lpm => 1.0,
        Norm::L1 => inv,
        Norm::Huber { delta } => (delta * inv).min(1.0),
        Norm::Mcp { gamma } => (inv - 1.0 / gamma).max(eps),
        Norm::Hm { gamma, delta } => {
            (delta / (gamma - delta) * (gamma * inv - 1.0)).clamp(eps, 1.0)
        }
    }
}

/// The score `ψ(r) = r·w(|r|)` of [`paper_weight`].
pub fn paper_psi(norm: &Norm, r: f64, eps: f64) -> f64 {
    r * paper_weight(norm, r.abs(), eps)
}

/// The weight bounded below and above over a residual known to within the slack.
struct Weights<'a> {
    norm: &'a Norm,
    eps: f64,
    slack: Slack,
}

impl Weights<'_> {
    /// A lower bound of the computed weight at any residual `≤ r`.
    fn lower(&self, r: f64) -> f64 {
        let w = paper_weight(self.norm, r + self.slack.residual, self.eps);
        (w * (1.0 - self.slack.weight_rel) - self.slack.weight_abs).max(0.0)
    }
    /// An upper bound of the computed weight at any residual `≥ r`.
    fn upper(&self, r: f64) -> f64 {
        let w = paper_weight(self.norm, (r - self.slack.residual).max(0.0), self.eps);
        w * (1.0 + self.slack.weight_rel) + self.slack.weight_abs
    }
}

/// One side's step `s + (H − s)·Ω/(W + Ω)` (s when no corrupted term lies on that side).
fn side_step(s: f64, far: Option<f64>, omega: f64, clean_weight: f64) -> f64 {
    match far {
        Some(h) if omega > 0.0 => s + (h - s) * omega / (clean_weight + omega),
        Some(h) if clean_weight <= 0.0 => h.max(s),
        _ => s,
    }
}

/// The envelope of one output and group: `clean` the untouched terms, `corrupted` the values
/// of the corrupted ones, `mean` = `z⁰/Dg` (the start), `cfg` the norm, ε and K.
///
/// # Panics
/// If `clean` is empty (the envelope needs at least one untouched term).
pub fn envelope(
    clean: &[f64],
    corrupted: &[f64],
    mean: f64,
    cfg: &NrpmConfig,
    slack: Slack,
) -> Envelope {
    assert!(!clean.is_empty(), "an envelope needs an untouched term");
    let (a, b) = clean
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &t| {
            (lo.min(t), hi.max(t))
        });
    let s = b - a;
    let n = clean.len() as f64;
    let norm = cfg.norm();
    let wt = Weights {
        norm: &norm,
        eps: cfg.eps(),
        slack,
    };
    let up: Vec<f64> = corrupted
        .iter()
        .filter(|&&t| t > b)
        .map(|&t| t - a)
        .collect();
    let down: Vec<f64> = corrupted
        .iter()
        .filter(|&&t| t < a)
        .map(|&t| b - t)
        .collect();
    let far = |v: &[f64]| v.iter().copied().reduce(f64::max);
    let (h_up, h_down) = (far(&up), far(&down));
    let steps = cfg.steps();
    let d = slack.step;
    let mut above = vec![mean - a + d];
    let mut below = vec![b - mean + d];
    for k in 0..steps {
        let (e, f) = (above[k], below[k]);
        let clean_weight = n * wt.lower(e.max(f));
        let omega = |h: &[f64], x: f64| h.iter().map(|&hj| wt.upper((hj - x).max(0.0))).sum();
        above.push(side_step(s, h_up, omega(&up, e), clean_weight) + d);
        below.push(side_step(s, h_down, omega(&down, f), clean_weight) + d);
    }
    let growth = if !corrupted.is_empty() && up.len() == corrupted.len() {
        Some(Growth {
            above: true,
            a_k: growth(&up, s, n, mean - a, steps, &wt),
        })
    } else if !corrupted.is_empty() && down.len() == corrupted.len() {
        Some(Growth {
            above: false,
            a_k: growth(&down, s, n, b - mean, steps, &wt),
        })
    } else {
        None
    };
    Envelope {
        a,
        b,
        above,
        below,
        growth,
    }
}

/// `A_k` for corrupted terms at distances `h` (all beyond the far end of the clean range).
fn growth(h: &[f64], s: f64, n: f64, e0: f64, steps: usize, wt: &Weights) -> Vec<f64> {
    let (lo, hi) = h
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, u), &v| {
            (l.min(v), u.max(v))
        });
    let c = h.len() as f64;
    let d = wt.slack.step;
    let mut a_k = vec![e0 - d];
    for k in 0..steps {
        let e = a_k[k];
        let clean = n * wt.upper((e - s).max(0.0));
        let out = c * wt.lower((hi - e).max(0.0) + (hi - lo));
        let next = if out > 0.0 {
            lo / (1.0 + clean / out)
        } else {
            0.0
        };
        a_k.push(next - d);
    }
    a_k
}

/// `ψ̄ = sup |ψ|` of a norm whose score is non-decreasing and bounded (L1: 1, Huber: δ), or
/// `None` (LPM: unbounded; MCP, HM: the floor ε makes ψ grow like ε·r).
pub fn score_bound(norm: &Norm) -> Option<f64> {
    match *norm {
        Norm::L1 => Some(1.0),
        Norm::Huber { delta } => Some(delta),
        _ => None,
    }
}

/// The interval of proofs/05 §7 for the converged operator: every `m` whose full score
/// `g(m) = Σ_d ψ(m − t_d)` satisfies `|g(m)| ≤ g_max` lies in `[S⁻¹(−g_max − c·ψ̄),
/// S⁻¹(g_max + c·ψ̄)]`, `S` the clean terms' score. `None` when the norm has no bounded,
/// monotone score or the interval is unbounded (`g_max + c·ψ̄ ≥ n·ψ̄`).
pub fn converged_interval(
    clean: &[f64],
    c: usize,
    g_max: f64,
    cfg: &NrpmConfig,
) -> Option<(f64, f64)> {
    let norm = cfg.norm();
    let psi_max = score_bound(&norm)?;
    let theta = g_max + c as f64 * psi_max;
    if clean.is_empty() || theta >= clean.len() as f64 * psi_max {
        return None;
    }
    let score = |m: f64| -> f64 {
        clean
            .iter()
            .map(|&t| paper_psi(&norm, m - t, cfg.eps()))
            .sum()
    };
    Some((
        solve(&score, -theta, clean, false),
        solve(&score, theta, clean, true),
    ))
}

/// The outer end of `{m : score(m) = θ}` by bisection (score non-decreasing, reaching every
/// value in `(−n·ψ̄, n·ψ̄)`): the largest root for `upper`, the smallest otherwise.
fn solve(score: &dyn Fn(f64) -> f64, theta: f64, clean: &[f64], upper: bool) -> f64 {
    let (lo_t, hi_t) = clean
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, u), &v| {
            (l.min(v), u.max(v))
        });
    let span = (hi_t - lo_t).max(1.0);
    let (mut lo, mut hi) = (lo_t - span, hi_t + span);
    while score(lo) > theta {
        lo -= 2.0 * (hi - lo);
    }
    while score(hi) < theta {
        hi += 2.0 * (hi - lo);
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        let v = score(mid);
        if v < theta || (upper && v == theta) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    if upper {
        hi
    } else {
        lo
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(norm: Norm, k: usize, eps: f64) -> NrpmConfig {
        NrpmConfig::builder()
            .norm(norm)
            .k(k)
            .eps(eps)
            .lambda(0.0)
            .build()
            .unwrap()
    }

    #[test]
    fn one_outlier_matches_proof_05_recursion() {
        // D − 1 = 4 clean terms in [0, 1], one outlier at 100: E_1 is proof 05's B_1.
        let (clean, out) = ([0.0, 0.25, 0.5, 1.0], [100.0]);
        let mean = (clean.iter().sum::<f64>() + 100.0) / 5.0;
        let eps = 1e-3;
        let env = envelope(&clean, &out, mean, &cfg(Norm::L1, 1, eps), Slack::exact());
        let (s, h, e0) = (1.0, 100.0, mean);
        let b1 = s + (h - s) / (1.0 + 4.0 * (h - e0 + eps) / (e0.max(s) + eps));
        assert!(
            (env.above[1] - b1).abs() < 1e-12 * b1,
            "{} vs {b1}",
            env.above[1]
        );
        let a1 = h / (1.0 + 4.0 * (h - e0 + eps) / ((e0 - s).max(0.0) + eps));
        let g = env.growth.unwrap();
        assert!(g.above && (g.a_k[1] - a1).abs() < 1e-12 * a1);
    }

    #[test]
    fn no_corruption_keeps_the_iterates_in_the_clean_range() {
        let env = envelope(
            &[1.0, 2.0, 4.0],
            &[],
            7.0 / 3.0,
            &cfg(Norm::L1, 3, 1e-2),
            Slack::exact(),
        );
        assert!(env.above[1..].iter().all(|&e| e == 3.0) && env.growth.is_none());
        assert_eq!(env.interval(), (1.0, 4.0));
    }

    #[test]
    fn converged_interval_is_the_median_bracket_as_eps_vanishes() {
        // Clean {0, 1, 2, 3}, c = 1: S(m) = ±1 at m → 1 and m → 2 as ε → 0.
        let (lo, hi) =
            converged_interval(&[0.0, 1.0, 2.0, 3.0], 1, 0.0, &cfg(Norm::L1, 1, 1e-9)).unwrap();
        assert!(
            (lo - 1.0).abs() < 1e-6 && (hi - 2.0).abs() < 1e-6,
            "{lo} {hi}"
        );
        // c = 2 of D = 6 … but c + g ≥ n·ψ̄ is unbounded.
        assert!(converged_interval(&[0.0, 1.0], 2, 0.0, &cfg(Norm::L1, 1, 1e-3)).is_none());
        assert!(converged_interval(
            &[0.0, 1.0, 2.0],
            1,
            0.0,
            &cfg(Norm::Mcp { gamma: 4.0 }, 1, 1e-3)
        )
        .is_none());
    }
}
