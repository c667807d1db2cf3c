//! Trains a small network that uses the downstream crate's own robust layer on nrpm's shipped
//! MNIST subset with nrpm's optimiser and training loop, then attacks it with nrpm's attacks
//! (FGSM and PGD-L∞) and prints the robust accuracies — nrpm's public API only.
//!
//! `cargo run --release -p nrpm-downstream`

use nrpm::attacks::{evaluate_attacks, Attack, EvalOptions, PgdSettings};
use nrpm::data::{Dataset, Split};
use nrpm::models::Model;
use nrpm::nn::{Layer, Linear, Sequential};
use nrpm::progress::Silent;
use nrpm::train::{train, Checkpoints, SgdConfig, TrainConfig};
use nrpm_downstream::ClippedLinear;

fn main() -> nrpm::Result<()> {
    let train_set = Dataset::mnist_subset(Split::Train)?.take(2000, "train images")?;
    let test = Dataset::mnist_subset(Split::Test)?.take(300, "test images")?;
    let net = Sequential::new()
        .push("", Layer::Flatten)
        .push(
            "robust",
            Layer::Custom(Box::new(ClippedLinear::new(784, 64, 0.05, 1)?)),
        )
        .push("", Layer::Relu)
        .push("head", Layer::Linear(Linear::new(64, 10, true)));
    let mut model = Model::custom(net, [1, 28, 28], 10)?;
    model.init(0); // the Linear head; the custom layer drew its own weights
    let cfg = TrainConfig {
        epochs: 2,
        sgd: SgdConfig {
            lr: 0.05,
            ..SgdConfig::default()
        },
        ..TrainConfig::default()
    };

    let report = train(
        &mut model,
        &train_set,
        &test,
        &cfg,
        &Checkpoints::default(),
        &mut Silent,
    )?;
    println!(
        "trained {} epochs on {} images: clean accuracy {:.1} % on {} test images",
        report.epochs,
        train_set.len(),
        report.after.clean,
        test.len()
    );
    let attacks = [
        Attack::fgsm(0.1)?,
        Attack::pgd_linf(0.1, PgdSettings::default())?,
    ];
    let results = evaluate_attacks(
        &model,
        &test,
        &attacks,
        &EvalOptions::default(),
        &mut Silent,
    )?;
    for r in &results {
        println!("{}: robust accuracy {:.1} %", r.attack, r.robust_accuracy);
    }
    Ok(())
}
