//! Shared helpers of the property tests (`tests/prop_*.rs`, `tests/edge_cases.rs`): the
//! strategies and checkers of `nrpm::testing` (enabled for every test target through the
//! crate's dev-dependency on itself with the `testing` feature), re-exported here; and the
//! authors' MNIST MLP from ../shared, as the attack tests load it.
#![allow(unused_imports)] // each test binary uses a subset

use nrpm::models::{LayerSelection, Model, ModelSpec};
use nrpm::nn::LambdaParam;
use nrpm::{Norm, NrpmConfig};

pub use nrpm::testing::*;

/// mlp3 from ../shared/models, LPM, or NRPM (L1, K = 3, λ = 0.7) in every layer; `None`
/// with a printed reason when the checkpoint is absent.
#[allow(dead_code)] // not every test binary loads it
pub fn shared_mlp3(nrpm: bool) -> Option<Model<f32>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/models/mlp3_mnist.safetensors"
    );
    if !std::path::Path::new(path).exists() {
        nrpm::testing::skip("shared", "shared_mlp3", &format!("{path} not found"));
        return None;
    }
    let mut model = Model::<f32>::new(ModelSpec::from_name("mlp3", 1, 28).unwrap());
    if nrpm {
        let cfg = NrpmConfig::builder()
            .norm(Norm::L1)
            .k(3)
            .eps(1e-3)
            .lambda(1.0)
            .build()
            .unwrap();
        model
            .reprogram(
                &LayerSelection::Default,
                cfg.with_lambda(0.7).unwrap(),
                LambdaParam::Raw,
            )
            .unwrap();
    }
    model.load_file(path, false).unwrap();
    Some(model)
}
