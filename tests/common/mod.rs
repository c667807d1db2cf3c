//! Shared helpers of the property tests (`tests/prop_*.rs`, `tests/edge_cases.rs`): the
//! strategies and checkers of `nrpm::testing` (enabled for every test target through the
//! crate's dev-dependency on itself with the `testing` feature), re-exported here.
#![allow(unused_imports)] // each test binary uses a subset

pub use nrpm::testing::*;
