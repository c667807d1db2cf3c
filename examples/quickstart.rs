//! The README's library tour: train a small LPM MLP on the shipped MNIST subset, reprogram
//! every layer with NRPM (Paradigm 1, no retraining), and attack both with FGSM and PGD.
//!
//! Run: `cargo run --release --example quickstart`

use nrpm::attacks::{evaluate_attacks, Attack, EvalOptions, PgdSettings};
use nrpm::data::{Dataset, Split};
use nrpm::models::{LayerSelection, Model, ModelSpec};
use nrpm::nn::LambdaParam;
use nrpm::train::{train, Checkpoints, SgdConfig, TrainConfig};
use nrpm::{progress::Silent, NrpmConfig};

fn main() -> nrpm::Result<()> {
    let (train_set, test) = (
        Dataset::mnist_subset(Split::Train)?,
        Dataset::mnist_subset(Split::Test)?,
    );
    let mut model = Model::<f32>::new(ModelSpec::from_name("mlp3", 1, 28)?); // 784-256-64-10
    model.init(0);
    let sgd = SgdConfig {
        lr: 0.05,
        ..SgdConfig::default()
    };
    let cfg = TrainConfig {
        epochs: 2,
        sgd,
        ..TrainConfig::default()
    };
    train(
        &mut model,
        &train_set,
        &test,
        &cfg,
        &Checkpoints::default(),
        &mut Silent,
    )?;
    let attacks = [
        Attack::fgsm(0.1)?,
        Attack::pgd_linf(0.1, PgdSettings::default())?,
    ];
    for label in ["LPM", "NRPM (L1, K = 1, λ = 0.7)"] {
        if label != "LPM" {
            let nrpm_cfg = NrpmConfig::builder().k(1).eps(5e-5).lambda(0.7).build()?;
            model.reprogram(&LayerSelection::All, nrpm_cfg, LambdaParam::Raw)?;
        }
        let res = evaluate_attacks(
            &model,
            &test,
            &attacks,
            &EvalOptions::default(),
            &mut Silent,
        )?;
        println!(
            "{label}: clean {:.1} %, FGSM-0.1 {:.1} %, PGD-20-0.1 {:.1} %",
            res[0].clean_accuracy, res[0].robust_accuracy, res[1].robust_accuracy
        );
    }
    Ok(())
}
