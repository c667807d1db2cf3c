//! Golden figures: FGSM robust accuracy of the authors' MNIST checkpoints (all layers LPM) on
//! the first 1000 MNIST test images, as printed by the authors' scripts (`mnist_mlp.py` and
//! `mnist_lenet.py`, github.com/chris-hzc/Robustness-Reprogramming at 2f247bf: batch 1,
//! `--norm L2`, ε ∈ {0, .05, …, .3}). Skipped with a printed reason when ../shared/models is
//! absent.
//!
//! Tolerance ±0.3 points (3 of 1000 images): the authors ran PyTorch float32 with other
//! summation orders, so an image within rounding of the decision boundary may flip.

use nrpm::attacks::{evaluate_attacks, Attack, EvalOptions};
use nrpm::data::{Dataset, Split};
use nrpm::models::{Model, ModelSpec};
use nrpm::progress::Silent;

const BUDGETS: [f64; 7] = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3];
const TOLERANCE: f64 = 0.3;

/// Robust accuracies (%) under FGSM at [`BUDGETS`] of `../shared/models/<file>` (a `name`
/// model, LPM everywhere), or `None` with a printed reason when the file is absent.
fn fgsm_accuracies(name: &str, file: &str) -> Option<Vec<f64>> {
    let path = format!("{}/../shared/models/{file}", env!("CARGO_MANIFEST_DIR"));
    if !std::path::Path::new(&path).exists() {
        nrpm::testing::skip("shared", name, &format!("{path} not found"));
        return None;
    }
    let mut model = Model::<f32>::new(ModelSpec::from_name(name, 1, 28).unwrap());
    model.load_file(&path, false).unwrap();
    let data = Dataset::mnist_subset(Split::Test).unwrap();
    assert_eq!(
        data.len(),
        1000,
        "the subset's test split is the first 1000 MNIST test images"
    );
    let attacks: Vec<Attack> = BUDGETS.iter().map(|&eps| Attack::Fgsm { eps }).collect();
    let results = evaluate_attacks(
        &model,
        &data,
        &attacks,
        &EvalOptions::default(),
        &mut Silent,
    )
    .unwrap();
    Some(results.iter().map(|r| r.robust_accuracy).collect())
}

fn assert_close(what: &str, got: &[f64], expected: &[f64]) {
    for ((eps, g), e) in BUDGETS.iter().zip(got).zip(expected) {
        assert!(
            (g - e).abs() <= TOLERANCE + 1e-9,
            "{what}, FGSM ε = {eps}: {g} % vs the authors' {e} % (all: {got:?})"
        );
    }
}

/// `mnist_mlp.py --num_linear 3 --norm L2` with `mlp3_mnist_model.pth`.
#[test]
fn mlp3_fgsm_matches_mnist_mlp_py() {
    if let Some(got) = fgsm_accuracies("mlp3", "mlp3_mnist.safetensors") {
        assert_close("mlp3", &got, &[91.2, 49.9, 7.4, 0.3, 0.0, 0.0, 0.0]);
    }
}

/// `mnist_lenet.py --norm L2` with `lenet_mnist_model.pth` (conv biases unused, as in the
/// authors' robust convolution).
#[test]
fn lenet_fgsm_matches_mnist_lenet_py() {
    if let Some(got) = fgsm_accuracies("lenet", "lenet_mnist.safetensors") {
        assert_close("lenet", &got, &[98.5, 94.0, 85.2, 69.8, 44.4, 20.4, 8.4]);
    }
}
