//! Checkers of the operator's robustness: the breakdown envelope with c < Dg/2 corrupted terms
//! ([`check_breakdown_envelope`]) and sensitivity curves ([`check_sensitivity`]), both against
//! the bounds of proofs/05-finite-k-damping.md §6–§8 ([`crate::testing::envelope`]); and two
//! checkers for any layer ([`check_shift_within`], [`SensitivityCurve`]).

// `!(a <= b)` on purpose throughout: a NaN must fail a check, not pass it.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

use ndarray::{Array1, Array2, ArrayView2};
use proptest::test_runner::TestCaseError;

use crate::testing::envelope::{
    converged_interval, envelope, paper_psi, score_bound, Envelope, Slack,
};
use crate::testing::outliers::OutlierCase;
use crate::testing::U64;
use crate::{forward_with, Exec, Iterates, NrpmConfig};

/// What [`check_breakdown_envelope`] checked.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EnvelopeReport {
    /// (b, o, g) triples whose iterates were held to their envelope.
    pub groups: usize,
    /// Of those, how many had at least one corrupted term.
    pub corrupted_groups: usize,
    /// Of those, how many also had the growth (lower) bound (all corrupted terms on one side).
    pub growth_checked: usize,
    /// The largest `|Δy|` seen.
    pub largest_shift: f64,
    /// The largest `|Δy|` LPM would have had (`|Σ_d Δt_d|`).
    pub largest_lpm_shift: f64,
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

/// `forward_with`, with an error as a test failure.
fn run(
    exec: Exec,
    x: &Array2<f64>,
    w: &Array2<f64>,
    bias: &Array1<f64>,
    cfg: &NrpmConfig,
) -> Result<(Array2<f64>, Iterates<f64>), TestCaseError> {
    forward_with(exec, x.view(), w.view(), Some(bias.view()), cfg)
        .map_err(|e| fail(format!("{exec:?} forward: {e}")))
}

/// The envelope of output (b, o), group g of a case.
fn group_envelope(case: &OutlierCase, b: usize, o: usize, g: usize) -> (Envelope, usize) {
    let d = case.x.ncols();
    let dg = d / case.cfg.groups();
    let cols = g * dg..(g + 1) * dg;
    let term = |x: &Array2<f64>, col: usize| x[[b, col]] * case.w[[o, col]];
    let clean: Vec<f64> = cols
        .clone()
        .filter(|c| !case.positions.contains(c))
        .map(|c| term(&case.x, c))
        .collect();
    let corrupted: Vec<f64> = cols
        .clone()
        .filter(|c| case.positions.contains(c))
        .map(|c| term(&case.corrupted, c))
        .collect();
    let all: Vec<f64> = cols.map(|c| term(&case.corrupted, c)).collect();
    let t_max = all.iter().fold(0.0f64, |m, t| m.max(t.abs()));
    let mean = all.iter().sum::<f64>() / dg as f64;
    let norm = case.cfg.norm();
    let slack = Slack::new(dg, t_max, &norm, U64);
    (
        envelope(&clean, &corrupted, mean, &case.cfg, slack),
        corrupted.len(),
    )
}

/// Checks the iterates of one (b, o, g) against its envelope; returns whether the growth bound
/// applied.
fn check_iterates(
    env: &Envelope,
    z: &[f64],
    dg: usize,
    at: (usize, usize, usize),
) -> Result<bool, TestCaseError> {
    for (k, &zk) in z.iter().enumerate() {
        let m = zk / dg as f64;
        let (e, f) = (m - env.a, env.b - m);
        if !(e <= env.above[k] && f <= env.below[k]) {
            return Err(fail(format!(
                "(b, o, g) = {at:?}, k = {k}: zᵏ/Dg − a = {e:e}, b − zᵏ/Dg = {f:e} exceed the \
                 envelope E = {:e}, F = {:e} (a = {}, b = {})",
                env.above[k], env.below[k], env.a, env.b
            )));
        }
        if let Some(g) = &env.growth {
            let excess = if g.above { e } else { f };
            if excess < g.a_k[k] {
                return Err(fail(format!(
                    "(b, o, g) = {at:?}, k = {k}: excess {excess:e} below the growth bound {:e}",
                    g.a_k[k]
                )));
            }
        }
    }
    Ok(env.growth.is_some())
}

/// The breakdown envelope of the operator on the path `exec` (f64), proofs/05 §6: with the
/// columns `case.positions` of x replaced (fewer than half of every group), every iterate of
/// every output and group lies in its envelope `[b − F_k, a + E_k]` (and above the growth
/// bound `A_k` when all corrupted terms of the group lie on one side), and every output moves
/// by at most `Σ_g |λ|·|Δz⁰_g| + |1 − λ|·Dg·max(hi_g − m_g, m_g − lo_g)` (`[lo_g, hi_g]` the
/// envelope of `zᴷ_g/Dg`, `m_g` the clean `zᴷ_g/Dg`), plus the rounding of y.
///
/// # Errors
/// A [`TestCaseError`] naming the output, group and step that leave the envelope.
pub fn check_breakdown_envelope(
    case: &OutlierCase,
    exec: Exec,
) -> Result<EnvelopeReport, TestCaseError> {
    let cfg = &case.cfg;
    let (y0, it0) = run(exec, &case.x, &case.w, &case.bias, cfg)?;
    let (y1, it1) = run(exec, &case.corrupted, &case.w, &case.bias, cfg)?;
    let (z0, z1) = (it0.z(), it1.z());
    let (bn, on, n, kk) = z1.dim();
    let dg = case.x.ncols() / n;
    let lambda = cfg.lambda();
    let mut report = EnvelopeReport::default();
    for b in 0..bn {
        for o in 0..on {
            let (mut bound, mut mag, mut lpm) = (0.0, case.bias[o].abs(), 0.0);
            for g in 0..n {
                let (env, c) = group_envelope(case, b, o, g);
                let z: Vec<f64> = (0..kk).map(|k| z1[[b, o, g, k]]).collect();
                let grew = check_iterates(&env, &z, dg, (b, o, g))?;
                report.groups += 1;
                report.corrupted_groups += usize::from(c > 0);
                report.growth_checked += usize::from(grew);
                let dz0 = (z1[[b, o, g, 0]] - z0[[b, o, g, 0]]).abs();
                lpm += dz0;
                let last = kk - 1;
                if cfg.is_lpm() {
                    bound += dz0;
                    mag += z0[[b, o, g, 0]].abs() + z1[[b, o, g, 0]].abs();
                } else {
                    let (lo, hi) = env.interval();
                    let mc = z0[[b, o, g, last]] / dg as f64;
                    bound += lambda.abs() * dz0
                        + (1.0 - lambda).abs() * dg as f64 * (hi - mc).max(mc - lo);
                    mag += lambda.abs() * (z0[[b, o, g, 0]].abs() + z1[[b, o, g, 0]].abs())
                        + (1.0 + 2.0 * lambda.abs())
                            * (z0[[b, o, g, last]].abs() + z1[[b, o, g, last]].abs());
                }
            }
            let shift = (y1[[b, o]] - y0[[b, o]]).abs();
            let tol = 4.0 * (n as f64 + 4.0) * U64 * mag;
            if !(shift <= bound + tol) {
                return Err(fail(format!(
                    "output ({b}, {o}) moved by {shift:e} > envelope {bound:e} (+ {tol:e})"
                )));
            }
            report.largest_shift = report.largest_shift.max(shift);
            report.largest_lpm_shift = report.largest_lpm_shift.max(lpm);
        }
    }
    Ok(report)
}

/// What [`check_sensitivity`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct SensitivityReport {
    /// `(x₀, SC(x₀))` for every grid point.
    pub curve: Vec<(f64, f64)>,
    /// `Some(C)`: the curve was held to `|SC| ≤ C` for every x₀ (converged L1 or Huber, λ = 0).
    pub bounded_by: Option<f64>,
    /// `Some(slope)`: the curve was held to grow at least like `slope·|x₀| − const`.
    pub grows_with_slope: Option<f64>,
}

/// The sensitivity curve of output 0 of a one-row problem (`x [1, D]`, `w [1, D]`, no zero
/// weight at `positions`): the terms at `positions` are all set to `x₀` (`x_j = x₀/w_j`) for
/// every `x₀` in `grid`, `SC(x₀) = y(x₀) − y(x)`, and:
///
/// - every point satisfies the breakdown envelope ([`check_breakdown_envelope`]);
/// - **grows** (λ ∈ (0, 1], x₀ beyond every clean term, σ = +1 above them, −1 below):
///   `σ·SC(x₀) ≥ λ·Σ_j |x₀ − t_j| − (1 − λ)·Σ_g Dg·s_g` (s_g the spread of group g's
///   clean terms): the LPM share drags the output along, whatever the norm and K
///   (proofs/05 §8);
/// - **bounded** (L1 or Huber, λ = 0, `converged`): the full score at every iterate `zᴷ_g`
///   is at most ψ̄/2, and so every `zᴷ_g/Dg` lies in the interval of proofs/05 §7, which does
///   not depend on x₀: `|SC(x₀)| ≤ Σ_g Dg·max(hi_g − m_g, m_g − lo_g)` for every x₀.
///
/// # Errors
/// A [`TestCaseError`] naming the grid point and the claim that fails.
pub fn check_sensitivity(
    x: ArrayView2<f64>,
    w: ArrayView2<f64>,
    positions: &[usize],
    grid: &[f64],
    cfg: &NrpmConfig,
    exec: Exec,
    converged: bool,
) -> Result<SensitivityReport, TestCaseError> {
    let bias = Array1::zeros(1);
    let (y0, _) = run(exec, &x.to_owned(), &w.to_owned(), &bias, cfg)?;
    let dg = x.ncols() / cfg.groups();
    let lambda = cfg.lambda();
    let clean_terms: Vec<f64> = (0..x.ncols()).map(|d| x[[0, d]] * w[[0, d]]).collect();
    let spreads: f64 = (0..cfg.groups())
        .map(|g| {
            let v = &clean_terms[g * dg..(g + 1) * dg];
            let (lo, hi) = v
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &t| {
                    (l.min(t), h.max(t))
                });
            dg as f64 * (hi - lo)
        })
        .sum();
    let hull = clean_terms
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &t| {
            (l.min(t), h.max(t))
        });
    let bounded = if converged && lambda == 0.0 && !cfg.is_lpm() {
        converged_bound(x, w, positions, cfg, exec)?
    } else {
        None
    };
    let grows = (lambda > 0.0 && lambda <= 1.0).then_some(lambda * positions.len() as f64);
    let mut curve = Vec::with_capacity(grid.len());
    for &x0 in grid {
        let mut xc = x.to_owned();
        for &j in positions {
            xc[[0, j]] = x0 / w[[0, j]];
        }
        let case = OutlierCase {
            x: x.to_owned(),
            corrupted: xc.clone(),
            w: w.to_owned(),
            bias: bias.clone(),
            positions: positions.to_vec(),
            cfg: *cfg,
        };
        check_breakdown_envelope(&case, exec)?;
        let (y1, _) = run(exec, &xc, &w.to_owned(), &bias, cfg)?;
        let sc = y1[[0, 0]] - y0[[0, 0]];
        if let Some(c) = bounded {
            check_converged_iterate(xc.view(), w, positions, cfg, exec)?;
            if !(sc.abs() <= c) {
                return Err(fail(format!(
                    "|SC({x0:e})| = {:e} > the bound {c:e}",
                    sc.abs()
                )));
            }
        }
        if grows.is_some() && (x0 > hull.1 || x0 < hull.0) {
            let pull: f64 = positions
                .iter()
                .map(|&j| (xc[[0, j]] * w[[0, j]] - clean_terms[j]).abs())
                .sum();
            let lower = lambda * pull - (1.0 - lambda) * spreads;
            let tol = 64.0 * x.ncols() as f64 * U64 * (pull + spreads + x0.abs());
            let side = if x0 > hull.1 { 1.0 } else { -1.0 };
            if !(sc * side >= lower - tol) {
                return Err(fail(format!(
                    "SC({x0:e}) = {sc:e}: below the growth bound {lower:e} (λ = {lambda})"
                )));
            }
        }
        curve.push((x0, sc));
    }
    Ok(SensitivityReport {
        curve,
        bounded_by: bounded,
        grows_with_slope: grows,
    })
}

/// For the converged check: `C = Σ_g Dg·max(hi_g − m_g, m_g − lo_g)`, `[lo_g, hi_g]` the
/// interval of proofs/05 §7 with score slack ψ̄/2 and `m_g` the clean run's `zᴷ_g/Dg`; `None`
/// when the norm's score is unbounded or an interval is.
fn converged_bound(
    x: ArrayView2<f64>,
    w: ArrayView2<f64>,
    positions: &[usize],
    cfg: &NrpmConfig,
    exec: Exec,
) -> Result<Option<f64>, TestCaseError> {
    let Some(psi_max) = score_bound(&cfg.norm()) else {
        return Ok(None);
    };
    let (_, it) = run(exec, &x.to_owned(), &w.to_owned(), &Array1::zeros(1), cfg)?;
    let dg = x.ncols() / cfg.groups();
    let mut total = 0.0;
    for g in 0..cfg.groups() {
        let clean = untouched(x, w, positions, g, dg);
        let Some((lo, hi)) = converged_interval(&clean, dg - clean.len(), psi_max / 2.0, cfg)
        else {
            return Ok(None);
        };
        let mc = it.z()[[0, 0, g, cfg.steps()]] / dg as f64;
        total += dg as f64 * (hi - mc).max(mc - lo);
    }
    Ok(Some(total))
}

/// The untouched terms of group g of a one-row problem.
fn untouched(
    x: ArrayView2<f64>,
    w: ArrayView2<f64>,
    positions: &[usize],
    g: usize,
    dg: usize,
) -> Vec<f64> {
    (g * dg..(g + 1) * dg)
        .filter(|c| !positions.contains(c))
        .map(|c| x[[0, c]] * w[[0, c]])
        .collect()
}

/// Checks that the K-th iterate of every group of a one-row run has converged (full score at
/// most ψ̄/2, proofs/05 §7) and lies in its x₀-independent interval.
///
/// # Errors
/// A [`TestCaseError`] naming the group.
pub fn check_converged_iterate(
    x: ArrayView2<f64>,
    w: ArrayView2<f64>,
    positions: &[usize],
    cfg: &NrpmConfig,
    exec: Exec,
) -> Result<(), TestCaseError> {
    let Some(psi_max) = score_bound(&cfg.norm()) else {
        return Ok(());
    };
    let (_, it) = run(exec, &x.to_owned(), &w.to_owned(), &Array1::zeros(1), cfg)?;
    let dg = x.ncols() / cfg.groups();
    for g in 0..cfg.groups() {
        let m = it.z()[[0, 0, g, cfg.steps()]] / dg as f64;
        let terms: Vec<f64> = (g * dg..(g + 1) * dg)
            .map(|c| x[[0, c]] * w[[0, c]])
            .collect();
        let score: f64 = terms
            .iter()
            .map(|&t| paper_psi(&cfg.norm(), m - t, cfg.eps()))
            .sum();
        if !(score.abs() <= psi_max / 2.0) {
            return Err(fail(format!(
                "group {g}: IRLS has not converged after K = {}: score {score:e} (ψ̄ = {psi_max})",
                cfg.k()
            )));
        }
        let clean = untouched(x, w, positions, g, dg);
        if let Some((lo, hi)) = converged_interval(&clean, dg - clean.len(), psi_max / 2.0, cfg) {
            if !(m >= lo && m <= hi) {
                return Err(fail(format!(
                    "group {g}: zᴷ/Dg = {m:e} outside [{lo:e}, {hi:e}]"
                )));
            }
        }
    }
    Ok(())
}

/// Asserts `|y_corrupted − y_clean| ≤ bound` elementwise: the shift of any layer's output under
/// a corruption of its input, against the bound the layer promises.
///
/// # Errors
/// A [`TestCaseError`] naming the first element over its bound.
pub fn check_shift_within(
    what: &str,
    y_clean: ArrayView2<f64>,
    y_corrupted: ArrayView2<f64>,
    bound: ArrayView2<f64>,
) -> Result<f64, TestCaseError> {
    let mut largest = 0.0f64;
    for (((i, j), &a), &b) in y_clean.indexed_iter().zip(y_corrupted.iter()) {
        let shift = (b - a).abs();
        if !(shift <= bound[[i, j]]) {
            return Err(fail(format!(
                "{what}: output ({i}, {j}) moved by {shift:e} > {:e}",
                bound[[i, j]]
            )));
        }
        largest = largest.max(shift);
    }
    Ok(largest)
}

/// A sensitivity curve of any layer: `(x₀, SC(x₀))` pairs, and the two claims one makes about
/// it.
#[derive(Clone, Debug, PartialEq)]
pub struct SensitivityCurve {
    /// `(x₀, SC(x₀))`.
    pub points: Vec<(f64, f64)>,
}

impl SensitivityCurve {
    /// Evaluates `sc` at every point of `grid`.
    pub fn new(grid: &[f64], sc: impl Fn(f64) -> f64) -> Self {
        Self {
            points: grid.iter().map(|&x0| (x0, sc(x0))).collect(),
        }
    }

    /// Asserts `|SC(x₀)| ≤ bound` at every point (bounded influence).
    ///
    /// # Errors
    /// A [`TestCaseError`] naming the first point over the bound.
    pub fn check_bounded(&self, bound: f64) -> Result<(), TestCaseError> {
        match self.points.iter().find(|(_, sc)| !(sc.abs() <= bound)) {
            Some((x0, sc)) => Err(fail(format!("|SC({x0:e})| = {:e} > {bound:e}", sc.abs()))),
            None => Ok(()),
        }
    }

    /// Asserts `|SC(x₀)| ≥ slope·|x₀| − offset` at every point (unbounded influence).
    ///
    /// # Errors
    /// A [`TestCaseError`] naming the first point below the line.
    pub fn check_grows(&self, slope: f64, offset: f64) -> Result<(), TestCaseError> {
        match self
            .points
            .iter()
            .find(|(x0, sc)| !(sc.abs() >= slope * x0.abs() - offset))
        {
            Some((x0, sc)) => Err(fail(format!(
                "|SC({x0:e})| = {:e} < {slope}·|x₀| − {offset}",
                sc.abs()
            ))),
            None => Ok(()),
        }
    }
}
