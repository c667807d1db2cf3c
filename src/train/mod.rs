//! Training: the reprogramming paradigms of §4 (and plain training from scratch), SGD with
//! momentum and a step schedule, clean or adversarial losses, per-epoch checkpoints and
//! bit-exact resuming.
//!
//! - [`Paradigm`] (paradigm.rs): Paradigm 1 `Fixed` (no training), 2 `LearnLambda` (only the
//!   per-layer λ), 3 `FineTune` (weights and λ), and `Scratch` (every parameter from a seeded
//!   initialisation, e.g. the plain LPM MLP);
//! - [`Sgd`] (sgd.rs): PyTorch's SGD; [`StepSchedule`] (schedule.rs): LR ÷ 10 at milestones;
//! - [`TrainConfig`], [`Adversary`], [`AdvLoss`], [`Recipe`] (config.rs): the settings, and the
//!   authors' defaults per dataset;
//! - [`batch_gradient`] (step.rs): one batch's gradient of the mean loss;
//! - [`train`] (trainer.rs): the epoch loop; [`checkpoint`]: the checkpoint folder;
//! - [`train_observed`], [`StepObserver`], [`StepTrace`] (trace.rs): the loop with a look at
//!   every step (e.g. per-step gradient and parameter magnitudes as JSON lines).
//!
//! One step on a batch (x, y) of B images, with the parameters θ the paradigm selects:
//!
//! ```text
//! x̃       = attacks::perturb(f_θ, x, y, attack)                (adversarial training only)
//! L(θ)    = (1/B) Σ_b CE(f_θ(x_b), y_b)                         clean
//!         | (1/B) Σ_b CE(f_θ(x_b), y_b) + (1/B) Σ_b CE(f_θ(x̃_b), y_b)   clean+adv (MNIST)
//!         | (1/B) Σ_b CE(f_θ(x̃_b), y_b)                         adv       (CIFAR-10)
//! g       = ∂L/∂θ                        (exact backward through the K unrolled IRLS steps)
//! d       = g + wd·θ
//! buf     = μ·buf + d                    (buf = d on the first step)
//! θ       = θ − η(e)·buf,   η(e) = η₀ · 0.1^#{milestones ≤ e}
//! λ       = sigmoid(θ_λ)                 (the CLI's parametrisation for paradigms 2 and 3)
//! ```
//!
//! Faithfulness notes (PAPER.md §4, §8):
//! - The authors' MNIST `adv_train` back-propagates the clean loss (for the FGSM input
//!   gradient) and the adversarial loss without zeroing parameter gradients in between, so
//!   its step follows clean + adversarial NLL: [`AdvLoss::CleanPlusAdv`], the default for
//!   one-channel images. Their CIFAR-10 loop uses the PGD loss only: [`AdvLoss::Adv`].
//! - Adversarial examples are crafted by [`crate::attacks::perturb`] with eval-mode gradients
//!   at the current parameters. For the MLP (no dropout, no BatchNorm) the FGSM example is the
//!   one the authors build from the clean pass's input gradient. Their CIFAR script crafts PGD
//!   examples in train mode (BatchNorm batch statistics); here BatchNorm uses its running
//!   statistics while attacking.
//! - Losses are means over the batch (`F.nll_loss` / `F.cross_entropy` default), so the
//!   learning rates of the authors' scripts carry over.
//! - `TrainConfig::noise_sd = σ > 0` trains on `x + N(0, σ²I)` (Gaussian augmentation, not
//!   clipped), the training that makes smoothed classifiers worth certifying
//!   ([`crate::certify::smoothing`]).
//! - Everything random is seeded from `TrainConfig::seed` per (epoch, batch); see
//!   [`checkpoint::seed_for`]. The same seed gives the same weights, bit for bit, and a run
//!   resumed from any epoch's checkpoint ends with the same weights as an uninterrupted one.
//!
//! ```
//! # fn main() -> nrpm::Result<()> {
//! use nrpm::data::{Dataset, Split};
//! use nrpm::models::{Model, ModelSpec};
//! use nrpm::train::{train, Checkpoints, Paradigm, SgdConfig, TrainConfig};
//! let data = Dataset::mnist_subset(Split::Train)?.first(256);
//! let test = Dataset::mnist_subset(Split::Test)?.first(200);
//! let mut model = Model::<f32>::new(ModelSpec::from_name("mlp1", 1, 28)?);
//! model.init(0);
//! let cfg = TrainConfig {
//!     paradigm: Paradigm::Scratch,
//!     epochs: 2,
//!     batch_size: 32,
//!     sgd: SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 0.0 },
//!     lr_steps: vec![],
//!     adversary: None,
//!     seed: 7,
//!     frozen_batchnorm: false,
//!     noise_sd: 0.0,
//! };
//! let report = train(&mut model, &data, &test, &cfg, &Checkpoints::default(),
//!                    &mut nrpm::progress::Silent)?;
//! assert_eq!(report.history.len(), 2);
//! assert!(report.after.clean > 50.0); // %
//! # Ok(()) }
//! ```

pub mod checkpoint;
mod config;
mod paradigm;
mod schedule;
mod sgd;
mod step;
mod trace;
mod trainer;

pub use config::{AdvLoss, Adversary, Recipe, TrainConfig};
pub use paradigm::Paradigm;
pub use schedule::StepSchedule;
pub use sgd::{Sgd, SgdConfig, MOMENTUM_PREFIX};
pub use step::{batch_gradient, BatchGradient};
pub use trace::{NoObserver, StepObserver, StepTrace, StepView};
pub use trainer::{
    clean_accuracy, train, train_observed, Checkpoints, DataRecords, EpochReport, Snapshot,
    TrainReport,
};
