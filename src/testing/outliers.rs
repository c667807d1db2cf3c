//! Inputs with corrupted terms: c < Dg/2 columns of each group of `x` replaced by values of any
//! size, for the breakdown-envelope checks ([`crate::testing::check_breakdown_envelope`]).

use ndarray::{Array1, Array2};
use proptest::prelude::*;

use crate::testing::strategies::{linear_case, Spec};
use crate::NrpmConfig;

/// A clean input, the same input with some columns replaced, and the operator's other inputs.
#[derive(Clone, Debug)]
pub struct OutlierCase {
    /// The clean input `[B, D]`.
    pub x: Array2<f64>,
    /// `x` with the columns in `positions` replaced (`[B, D]`).
    pub corrupted: Array2<f64>,
    /// `weight [O, D]`.
    pub w: Array2<f64>,
    /// `bias [O]`.
    pub bias: Array1<f64>,
    /// The replaced columns, increasing; fewer than half of each group's Dg columns.
    pub positions: Vec<usize>,
    /// Norm, K, ε, λ, N.
    pub cfg: NrpmConfig,
}

/// The largest number of corrupted terms a group of `dg` terms can take while the untouched
/// ones stay a strict majority: `⌊(Dg − 1)/2⌋`.
pub fn minority(dg: usize) -> usize {
    dg.saturating_sub(1) / 2
}

/// For each of `n` groups of `dg` columns, an increasing subset of at most
/// [`minority`]`(dg)` of its columns (indices into the whole row).
pub fn minority_positions(n: usize, dg: usize) -> Vec<BoxedStrategy<Vec<usize>>> {
    (0..n)
        .map(|g| {
            proptest::sample::subsequence(
                (g * dg..(g + 1) * dg).collect::<Vec<_>>(),
                0..=minority(dg),
            )
            .boxed()
        })
        .collect()
}

/// Draws a [`crate::testing::LinearCase`] from `spec` and corrupts 0 ≤ c_g ≤ ⌊(Dg − 1)/2⌋
/// columns of every group g with values `±10^e`, e uniform in `log_size` (independently for
/// every row and column).
pub fn outlier_case(spec: Spec, log_size: (f64, f64)) -> BoxedStrategy<OutlierCase> {
    linear_case(spec)
        .prop_flat_map(move |case| {
            let (b, d) = case.x.dim();
            let n = case.cfg.groups();
            let dg = d / n;
            let picks = minority_positions(n, dg);
            let sizes = proptest::collection::vec((log_size.0..log_size.1, any::<bool>()), b * d);
            (Just(case), picks, sizes)
        })
        .prop_map(|(case, picks, sizes)| {
            let positions: Vec<usize> = picks.into_iter().flatten().collect();
            let d = case.x.ncols();
            let mut corrupted = case.x.clone();
            for ((bi, col), v) in corrupted.indexed_iter_mut() {
                if positions.contains(&col) {
                    let (e, neg) = sizes[bi * d + col];
                    *v = if neg { -1.0 } else { 1.0 } * 10f64.powf(e);
                }
            }
            OutlierCase {
                x: case.x,
                corrupted,
                w: case.w,
                bias: case.bias,
                positions,
                cfg: case.cfg,
            }
        })
        .boxed()
}
