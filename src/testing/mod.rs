//! Property-based robustness testing (cargo feature `testing`): the proptest strategies and the
//! checkers nrpm's own tests use, for a crate that tests its own layers or models with them.
//!
//! ```text
//! strategies   linear_case(Spec), conv_case, norm_any, norm_robust, all_norms, value, matrix
//!              (shape, norm, K, ε, λ, N and values drawn together, ties mixed in)
//! outliers     outlier_case: inputs with c < Dg/2 columns of every group moved arbitrarily far
//! envelope     the finite-K breakdown envelope with c corrupted terms, its growth bound, and
//!              the converged (K → ∞) interval: proofs/05-finite-k-damping.md §6–§8
//! breakdown    check_breakdown_envelope, check_sensitivity (the operator);
//!              check_shift_within, SensitivityCurve (any layer)
//! compare      assert_within, Tolerance (element-wise, with a ceiling, counting fallbacks),
//!              check_fused_matches_reference
//! fd           check_fd: gradient ≡ central differences, with a kink guard (proofs/09 §4)
//! rounding     rounding_bounds: first-order rounding bounds of the operator (proofs/08 §3)
//! require      skip(requirement, …): a printed skip, or a failure under NRPM_REQUIRE
//! ```
//!
//! Every checker returns `Result<_, TestCaseError>`, so it composes with `?` inside
//! `proptest!`. A downstream crate enables the feature in its dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! nrpm = { version = "…", default-features = false, features = ["testing"] }
//! ```
//!
//! ```
//! use nrpm::testing::{check_breakdown_envelope, outlier_case, Spec};
//! use nrpm::testing::proptest::prelude::*;
//! use nrpm::Exec;
//!
//! proptest! {
//!     #![proptest_config(ProptestConfig::with_cases(16))]
//!     fn minority_outliers_stay_in_the_envelope(c in outlier_case(Spec::default(), (0.0, 12.0))) {
//!         check_breakdown_envelope(&c, Exec::Fused)?;
//!     }
//! }
//! # fn main() { minority_outliers_stay_in_the_envelope(); }
//! ```

mod breakdown;
mod compare;
pub mod envelope;
mod fd;
mod outliers;
pub mod require;
mod rounding;
mod strategies;

pub use breakdown::{
    check_breakdown_envelope, check_converged_iterate, check_sensitivity, check_shift_within,
    EnvelopeReport, SensitivityCurve, SensitivityReport,
};
pub use compare::{
    assert_same_f64, assert_within, check_fused_matches_reference, run_case, Tolerance,
    ToleranceUse,
};
pub use fd::{check_fd, kink_arguments, FdReport, LossAndKinks};
pub use outliers::{minority, minority_positions, outlier_case, OutlierCase};
/// The proptest these strategies and checkers are written against.
pub use proptest;
pub use require::skip;
pub use rounding::{rounding_bounds, Bounds};
pub use strategies::{
    all_norms, conv_case, linear_case, log_uniform, matrix, norm_any, norm_robust, out_len, terms,
    to_f32, to_f64, value, vector, ConvCase, LinearCase, Spec, Values,
};

use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};

/// Unit roundoff of f64, `2⁻⁵³`.
pub const U64: f64 = f64::EPSILON / 2.0;
/// Unit roundoff of f32, `2⁻²⁴`.
pub const U32: f64 = f32::EPSILON as f64 / 2.0;

/// A proptest configuration: `cases` cases, failures persisted to `file` (commit it; proptest
/// re-runs those first). The environment variable `PROPTEST_CASES` overrides `cases` (e.g. for
/// a long soak run).
pub fn config(cases: u32, file: &'static str) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..ProptestConfig::default()
    }
}
