//! The downstream layer property-tested with nrpm's `testing` feature (enabled in this crate's
//! dev-dependencies): nrpm's strategies draw the inputs and the corrupted columns, nrpm's
//! checkers hold the layer to the bound it promises.
//!
//! `ClippedLinear` promises: corrupting c input columns, by any amount, moves each output by at
//! most `2·c·clip` (each corrupted term can move from one edge of `[−clip, clip]` to the other),
//! plus the f32 rounding of the two sums. Its sensitivity curve is therefore bounded by
//! `2·clip`. The operator the crate could use instead (nrpm's NRPM) is checked against its
//! breakdown envelope on the same kind of draws.

use nrpm::ndarray::Array2;
use nrpm::testing::proptest::prelude::*;
use nrpm::testing::{
    check_breakdown_envelope, check_shift_within, outlier_case, OutlierCase, SensitivityCurve, Spec,
};
use nrpm::Exec;
use nrpm_downstream::ClippedLinear;

/// Inputs with fewer than half of the columns corrupted to `±10^{0…12}`, from nrpm's
/// [`outlier_case`] (B, O ≤ 3, one group of 3…12 terms).
fn corrupted_inputs() -> BoxedStrategy<OutlierCase> {
    let spec = Spec {
        b: 1..=3,
        o: 1..=3,
        n: 1..=1,
        dg: 3..=12,
        ..Spec::default()
    };
    outlier_case(spec, (0.0, 12.0))
}

/// The layer on an f64 input (rounded to f32 once), as f64.
fn apply(layer: &ClippedLinear, x: &Array2<f64>) -> Array2<f64> {
    layer
        .apply(&x.mapv(|v| v as f32))
        .expect("x has the layer's width")
        .mapv(f64::from)
}

/// The f32 rounding of one output: a sum of D clipped terms, each at most `clip`.
fn rounding(d: usize, clip: f64) -> f64 {
    2.0 * (d as f64 + 2.0) * f64::from(f32::EPSILON) * (d as f64 * clip + 1.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// c < D/2 corrupted columns move each output by at most `2·c·clip` (plus rounding).
    #[test]
    fn corruption_moves_each_output_by_at_most_twice_c_clips(
        case in corrupted_inputs(),
        clip in 0.01f32..1.0,
        seed in 0u64..1000,
    ) {
        let (d, o) = (case.x.ncols(), case.w.nrows());
        let layer = ClippedLinear::new(d, o, clip, seed).unwrap();
        let clip = f64::from(clip);
        let (clean, corrupted) = (apply(&layer, &case.x), apply(&layer, &case.corrupted));
        let c = case.positions.len() as f64;
        let bound = Array2::from_elem(clean.dim(), 2.0 * c * clip + 2.0 * rounding(d, clip));
        check_shift_within("ClippedLinear", clean.view(), corrupted.view(), bound.view())?;
    }

    /// The sensitivity curve of one input column, over ±10¹², is bounded by `2·clip`.
    #[test]
    fn sensitivity_curve_is_bounded_by_twice_the_clip(
        case in corrupted_inputs(),
        clip in 0.01f32..1.0,
        seed in 0u64..1000,
        column in any::<prop::sample::Index>(),
    ) {
        let (d, o) = (case.x.ncols(), case.w.nrows());
        let layer = ClippedLinear::new(d, o, clip, seed).unwrap();
        let clip = f64::from(clip);
        let j = column.index(d);
        let clean = apply(&layer, &case.x);
        let grid: Vec<f64> = (-1..=12).flat_map(|e| [10f64.powi(e), -10f64.powi(e)]).collect();
        for out in 0..o {
            let curve = SensitivityCurve::new(&grid, |x0| {
                let mut x = case.x.clone();
                x[[0, j]] = x0;
                apply(&layer, &x)[[0, out]] - clean[[0, out]]
            });
            curve.check_bounded(2.0 * clip + 2.0 * rounding(d, clip))?;
        }
    }

    /// nrpm's operator on the same draws (every norm, K, λ from nrpm's strategy) stays in its
    /// breakdown envelope, on both paths.
    #[test]
    fn nrpm_operator_stays_in_its_envelope(case in corrupted_inputs()) {
        for exec in [Exec::Reference, Exec::Fused] {
            check_breakdown_envelope(&case, exec)?;
        }
    }
}
