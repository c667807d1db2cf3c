//! Element-wise comparison with justified tolerances, and the fused ≡ reference checker.
//!
//! A tolerance derived from a rounding bound (proofs/08) grows without limit on badly
//! conditioned draws; a whole-array relative error hides one wrong element. So every
//! comparison here is element-wise, and a [`Tolerance`] is
//!
//! ```text
//! tol_i = max(rel·scale_i, min(factor·bound_i, ceiling·scale_i))
//! ```
//!
//! with a [`ToleranceUse`] counting the elements (and draws) where the bound, not the relative
//! floor, decided ("fell back") and where the ceiling cut the bound ("capped"), so a test can
//! assert how often that happens.

use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{Array, Array1, Array2, Dimension, Zip};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::testing::rounding::rounding_bounds;
use crate::testing::strategies::LinearCase;
use crate::testing::U64;
use crate::{backward_with, forward_with, Exec, LinearGrads};

/// Asserts `|got − want| ≤ tol` elementwise (all finite), naming the first offender.
///
/// # Errors
/// A [`TestCaseError`] with the first element over its tolerance (or non-finite).
pub fn assert_within<D: Dimension>(
    what: &str,
    got: &Array<f64, D>,
    want: &Array<f64, D>,
    tol: &Array<f64, D>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.shape(), want.shape(), "{}: shapes", what);
    let mut worst: Option<(Vec<usize>, f64, f64, f64)> = None;
    for (i, ((g, w), t)) in got.iter().zip(want.iter()).zip(tol.iter()).enumerate() {
        let bad = !(g.is_finite() && w.is_finite()) || (g - w).abs() > *t;
        if bad && worst.is_none() {
            worst = Some((unravel(i, got.shape()), *g, *w, *t));
        }
    }
    if let Some((at, g, w, t)) = worst {
        return Err(TestCaseError::fail(format!(
            "{what}{at:?}: {g:e} vs {w:e}, |Δ| = {:e} > tol {t:e}",
            (g - w).abs()
        )));
    }
    Ok(())
}

/// The multi-index of flat (row-major) index `i` in `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut at = vec![0; shape.len()];
    for (a, &n) in at.iter_mut().zip(shape).rev() {
        *a = i % n.max(1);
        i /= n.max(1);
    }
    at
}

/// `max(rel·scale, min(factor·bound, ceiling·scale))` (module doc).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// The relative floor (1e-10 for two f64 computations).
    pub rel: f64,
    /// The safety factor on the rounding bound (8: two computations, 4 for second order).
    pub factor: f64,
    /// The ceiling, relative to the scale, above which the bound is not trusted.
    pub ceiling: f64,
}

/// How often a [`Tolerance`] fell back to the rounding bound, or capped it. Shared counters,
/// so a whole property run can be summed (`AtomicUsize`: proptest may run cases in any order).
#[derive(Debug, Default)]
pub struct ToleranceUse {
    /// Elements compared.
    pub elements: AtomicUsize,
    /// Elements whose tolerance was the (capped) bound rather than the relative floor.
    pub fell_back: AtomicUsize,
    /// Elements whose bound exceeded the ceiling.
    pub capped: AtomicUsize,
    /// Draws with at least one element that fell back.
    pub draws_fell_back: AtomicUsize,
    /// Draws compared.
    pub draws: AtomicUsize,
}

impl ToleranceUse {
    /// All counters at 0 (`const`, so a test binary can keep one in a `static`).
    pub const fn new() -> Self {
        Self {
            elements: AtomicUsize::new(0),
            fell_back: AtomicUsize::new(0),
            capped: AtomicUsize::new(0),
            draws_fell_back: AtomicUsize::new(0),
            draws: AtomicUsize::new(0),
        }
    }

    /// `(draws, draws that fell back, elements, elements that fell back, elements capped)`.
    pub fn counts(&self) -> (usize, usize, usize, usize, usize) {
        let get = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        (
            get(&self.draws),
            get(&self.draws_fell_back),
            get(&self.elements),
            get(&self.fell_back),
            get(&self.capped),
        )
    }
}

impl Tolerance {
    /// The f64 tolerance of proofs/08 §4 with a ceiling of 1e-6 of the scale.
    pub const F64: Tolerance = Tolerance {
        rel: 1e-10,
        factor: 8.0,
        ceiling: 1e-6,
    };

    /// The element-wise tolerance, counting into `use_`; returns it and whether any element
    /// fell back.
    pub fn apply<D: Dimension>(
        &self,
        bound: &Array<f64, D>,
        scale: &Array<f64, D>,
        use_: &ToleranceUse,
    ) -> (Array<f64, D>, bool) {
        let (mut fell, mut capped) = (0, 0);
        let tol = Zip::from(bound).and(scale).map_collect(|&b, &s| {
            let floor = self.rel * s;
            let top = self.ceiling * s;
            capped += usize::from(self.factor * b > top);
            let t = (self.factor * b).min(top);
            fell += usize::from(t > floor);
            t.max(floor)
        });
        use_.elements.fetch_add(bound.len(), Ordering::Relaxed);
        use_.fell_back.fetch_add(fell, Ordering::Relaxed);
        use_.capped.fetch_add(capped, Ordering::Relaxed);
        (tol, fell > 0)
    }
}

/// Runs forward + backward of a case on one path, f64.
///
/// # Errors
/// The operator's error, as a test failure.
pub fn run_case(
    exec: Exec,
    c: &LinearCase,
) -> Result<(Array2<f64>, LinearGrads<f64>), TestCaseError> {
    let (y, it) = forward_with(exec, c.x.view(), c.w.view(), Some(c.bias.view()), &c.cfg)
        .map_err(|e| TestCaseError::fail(format!("{exec:?} forward: {e}")))?;
    let g = backward_with(exec, c.x.view(), c.w.view(), &it, c.gy.view())
        .map_err(|e| TestCaseError::fail(format!("{exec:?} backward: {e}")))?;
    Ok((y, g))
}

/// Asserts that two f64 evaluations `a`, `b` of the same case agree element-wise to `tol`
/// (forward and every gradient), counting fallbacks into `use_`.
///
/// # Errors
/// A [`TestCaseError`] naming the quantity and element.
pub fn assert_same_f64(
    what: &str,
    c: &LinearCase,
    a: &(Array2<f64>, LinearGrads<f64>),
    b: &(Array2<f64>, LinearGrads<f64>),
    tol: Tolerance,
    use_: &ToleranceUse,
) -> Result<(), TestCaseError> {
    let bd = rounding_bounds(
        &c.x.view(),
        &c.w.view(),
        Some(&c.bias),
        &c.gy.view(),
        &c.cfg,
        U64,
    );
    let (ty, f1) = tol.apply(&bd.y, &bd.y_scale, use_);
    let (tx, f2) = tol.apply(&bd.gx, &bd.gx_scale, use_);
    let (tw, f3) = tol.apply(&bd.gw, &bd.gw_scale, use_);
    let (tb, f4) = tol.apply(&bd.gb, &bd.gb_scale, use_);
    let (tl, f5) = tol.apply(
        &Array1::from_elem(1, bd.gl),
        &Array1::from_elem(1, bd.gl_scale),
        use_,
    );
    use_.draws.fetch_add(1, Ordering::Relaxed);
    if f1 || f2 || f3 || f4 || f5 {
        use_.draws_fell_back.fetch_add(1, Ordering::Relaxed);
    }
    assert_within(&format!("{what}: y"), &a.0, &b.0, &ty)?;
    assert_within(&format!("{what}: ∂x"), &a.1.x, &b.1.x, &tx)?;
    assert_within(&format!("{what}: ∂W"), &a.1.weight, &b.1.weight, &tw)?;
    assert_within(&format!("{what}: ∂b"), &a.1.bias, &b.1.bias, &tb)?;
    let (ga, gb) = (
        Array1::from_elem(1, a.1.lambda),
        Array1::from_elem(1, b.1.lambda),
    );
    assert_within(&format!("{what}: ∂λ"), &ga, &gb, &tl)
}

/// fused ≡ reference in f64, forward and every gradient (proofs/08 §4): both paths on the
/// case, compared element-wise with [`Tolerance::F64`].
///
/// # Errors
/// A [`TestCaseError`] naming the quantity and element that differ.
pub fn check_fused_matches_reference(
    c: &LinearCase,
    use_: &ToleranceUse,
) -> Result<(), TestCaseError> {
    let r = run_case(Exec::Reference, c)?;
    let f = run_case(Exec::Fused, c)?;
    assert_same_f64("fused vs reference", c, &f, &r, Tolerance::F64, use_)
}
