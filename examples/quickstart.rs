//! The README's library tour: train a small LPM MLP on the shipped MNIST subset, reprogram
//! every layer with NRPM (Paradigm 1, no retraining), and attack both with FGSM and PGD.
//!
//! Run: `cargo run --release --example quickstart`

use nrpm::attacks::{evaluate_attacks, Attack, EvalOptions};
use nrpm::data::{Dataset, Split};
use nrpm::models::{LayerSelection, Model, ModelSpec};
use nrpm::nn::LambdaParam;
use nrpm::train::{train, Checkpoints, Paradigm, SgdConfig, TrainConfig};
use nrpm::{progress::Silent, Norm, NrpmConfig};

fn main() -> nrpm::Result<()> {
    let (train_set, test) = (
        Dataset::mnist_subset(Split::Train)?,
        Dataset::mnist_subset(Split::Test)?,
    );
    let mut model = Model::<f32>::new(ModelSpec::from_name("mlp3", 1, 28)?); // 784-256-64-10
    model.init(0);
    let sgd = SgdConfig {
        lr: 0.05,
        momentum: 0.9,
        weight_decay: 0.0,
    };
    let cfg = TrainConfig {
        paradigm: Paradigm::Scratch,
        epochs: 2,
        batch_size: 64,
        sgd,
        lr_steps: vec![],
        adversary: None,
        seed: 0,
        frozen_batchnorm: false,
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
        Attack::Fgsm { eps: 0.1 },
        Attack::PgdLinf {
            eps: 0.1,
            alpha: 0.025,
            steps: 20,
            random_start: true,
        },
    ];
    for label in ["LPM", "NRPM (L1, K = 1, λ = 0.7)"] {
        if label != "LPM" {
            let nrpm_cfg = NrpmConfig::builder()
                .norm(Norm::L1)
                .k(1)
                .eps(5e-5)
                .lambda(0.7)
                .build()?;
            model.reprogram(
                &LayerSelection::All,
                nrpm_cfg.with_lambda(0.7)?,
                LambdaParam::Raw,
            )?;
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
