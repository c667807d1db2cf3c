//! What a training run does ([`TrainConfig`], [`Adversary`], [`AdvLoss`]) and the authors'
//! per-dataset defaults ([`Recipe`]).

use std::str::FromStr;

use serde_json::{json, Value};

use crate::attacks::Attack;
use crate::error::{Error, Result};
use crate::train::{Paradigm, SgdConfig, StepSchedule};

/// Which loss an adversarial training step descends (both are means over the batch).
///
/// ```text
/// CleanPlusAdv:  L = mean_b CE(f(x_b), y_b) + mean_b CE(f(x̃_b), y_b)   (mnist_mlp.py adv_train)
/// Adv:           L = mean_b CE(f(x̃_b), y_b)                            (train_cifar10_resnet.py)
/// ```
///
/// `CleanPlusAdv` is what the authors' MNIST loop computes: it calls `backward()` on the clean
/// loss (to get the input gradient for FGSM) and again on the adversarial loss without zeroing
/// the parameter gradients in between, so `optimizer.step()` follows the sum of both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AdvLoss {
    /// Clean plus adversarial cross-entropy (the authors' MNIST training).
    CleanPlusAdv,
    /// Adversarial cross-entropy only (the authors' CIFAR-10 PGD training).
    Adv,
}

impl AdvLoss {
    /// `"clean+adv"` or `"adv"`.
    pub fn name(self) -> &'static str {
        match self {
            AdvLoss::CleanPlusAdv => "clean+adv",
            AdvLoss::Adv => "adv",
        }
    }
}

impl FromStr for AdvLoss {
    type Err = Error;

    /// `clean+adv` or `adv`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "clean+adv" => Ok(AdvLoss::CleanPlusAdv),
            "adv" => Ok(AdvLoss::Adv),
            _ => Err(Error::UnknownName {
                what: "adversarial loss",
                name: s.to_string(),
                expected: "clean+adv, adv".to_string(),
            }),
        }
    }
}

/// Adversarial training: examples `x̃ = attacks::perturb(model, x, y, attack)` are crafted on
/// the fly for every batch (eval-mode gradients at the current parameters, seeded random
/// starts), and the step descends `loss`.
#[derive(Clone, Debug, PartialEq)]
pub struct Adversary {
    /// How the examples are made (FGSM, PGD, …).
    pub attack: Attack,
    /// Which loss is descended.
    pub loss: AdvLoss,
}

/// Everything that fixes a training run's result (with the model and the data).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Which parameters are trained.
    pub paradigm: Paradigm,
    /// Total number of epochs (a resumed run continues up to this many).
    pub epochs: usize,
    /// Images per step B (the last batch of an epoch holds the rest).
    pub batch_size: usize,
    /// Base learning rate, momentum, weight decay.
    pub sgd: SgdConfig,
    /// Epochs at which the learning rate is divided by 10 (see [`StepSchedule`]).
    pub lr_steps: Vec<usize>,
    /// Adversarial training, or `None` for clean training (mean cross-entropy of the batch).
    pub adversary: Option<Adversary>,
    /// Seed of everything random: the epoch's shuffling, dropout masks, attack random starts.
    pub seed: u64,
    /// Run BatchNorm in eval mode while training (running statistics used, never updated).
    /// `false` is PyTorch's `net.train()`, which the authors use for every paradigm: their
    /// λ-only CIFAR training (`train_cifar10_resnet.py --paradigm 1`) freezes every parameter
    /// but still updates the BatchNorm running statistics.
    pub frozen_batchnorm: bool,
    /// Gaussian data augmentation: every training image becomes `x + N(0, σ²I)` with this σ
    /// (not clipped to [0, 1]; Cohen et al.'s training for randomized smoothing), drawn per
    /// (epoch, batch) from `seed`; 0 = none. Cannot be combined with an adversary.
    pub noise_sd: f64,
}

impl Default for TrainConfig {
    /// Training from scratch with the authors' MNIST optimiser settings: 10 epochs, batch 64,
    /// [`SgdConfig::default`], constant learning rate, clean loss, seed 0, BatchNorm trained,
    /// no noise.
    /// Change what differs: `TrainConfig { epochs: 2, ..TrainConfig::default() }`.
    fn default() -> Self {
        Self {
            paradigm: Paradigm::Scratch,
            epochs: 10,
            batch_size: 64,
            sgd: SgdConfig::default(),
            lr_steps: Vec::new(),
            adversary: None,
            seed: 0,
            frozen_batchnorm: false,
            noise_sd: 0.0,
        }
    }
}

impl TrainConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::Config`] for zero epochs or batch size, bad SGD values, milestones that are
    /// not strictly increasing, a noise σ that is negative or not finite, or noise together
    /// with an adversary.
    pub fn validate(&self) -> Result<()> {
        if !(self.noise_sd.is_finite() && self.noise_sd >= 0.0) {
            return Err(Error::config(
                "noise sd",
                self.noise_sd,
                "must be finite and ≥ 0",
            ));
        }
        if self.noise_sd > 0.0 && self.adversary.is_some() {
            return Err(Error::config(
                "noise sd",
                self.noise_sd,
                "Gaussian augmentation trains on noisy images, which attacks clip back to [0, 1]: train with noise or with an adversary, not both",
            ));
        }
        if self.batch_size == 0 {
            return Err(Error::config("batch size", 0, "must be at least 1"));
        }
        if self.epochs == 0 && self.paradigm.is_trained() {
            return Err(Error::config("epochs", 0, "must be at least 1"));
        }
        self.sgd.validate()?;
        self.schedule().map(|_| ())
    }

    /// The learning-rate schedule.
    ///
    /// # Errors
    /// As [`StepSchedule::new`].
    pub fn schedule(&self) -> Result<StepSchedule> {
        StepSchedule::new(self.sgd.lr, self.lr_steps.clone())
    }

    /// The settings as JSON; `with_epochs` adds `epochs`.
    /// A resumed run must match the checkpoint's settings without the epoch count.
    pub fn to_json(&self, with_epochs: bool) -> Value {
        let mut v = json!({
            "paradigm": self.paradigm.name(),
            "batch_size": self.batch_size,
            "lr": self.sgd.lr,
            "momentum": self.sgd.momentum,
            "weight_decay": self.sgd.weight_decay,
            "lr_steps": self.lr_steps,
            "attack": self.adversary.as_ref().map(|a| &a.attack),
            "adv_loss": self.adversary.as_ref().map(|a| a.loss.name()),
            "seed": self.seed,
            "frozen_batchnorm": self.frozen_batchnorm,
            "noise_sd": self.noise_sd,
        });
        if with_epochs {
            v["epochs"] = json!(self.epochs);
        }
        v
    }
}

/// The authors' training defaults for a kind of data.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Learning rate, momentum, weight decay.
    pub sgd: SgdConfig,
    /// LR ÷ 10 at these epochs.
    pub lr_steps: Vec<usize>,
    /// The attack of adversarial training.
    pub attack: Attack,
    /// Its loss.
    pub adv_loss: AdvLoss,
}

impl Recipe {
    /// `mnist_mlp.py` `adv_train`: 10 epochs, batch 64, SGD lr 0.001, momentum 0.9, no weight
    /// decay, constant LR, FGSM ε = 0.3, clean + adversarial loss.
    pub fn mnist() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            sgd: SgdConfig {
                lr: 0.001,
                momentum: 0.9,
                weight_decay: 0.0,
            },
            lr_steps: Vec::new(),
            attack: Attack::Fgsm { eps: 0.3 },
            adv_loss: AdvLoss::CleanPlusAdv,
        }
    }

    /// `train_cifar10_resnet.py`: 100 epochs, batch 128, SGD lr 0.1, momentum 0.9, weight
    /// decay 2e-4, LR ÷ 10 at epochs 50 and 75, PGD-7 (ε = 8/255, step 2/255, random start),
    /// adversarial loss only.
    pub fn cifar10() -> Self {
        Self {
            epochs: 100,
            batch_size: 128,
            sgd: SgdConfig {
                lr: 0.1,
                momentum: 0.9,
                weight_decay: 2e-4,
            },
            lr_steps: vec![50, 75],
            attack: Attack::PgdLinf {
                eps: 8.0 / 255.0,
                alpha: 2.0 / 255.0,
                steps: 7,
                random_start: true,
            },
            adv_loss: AdvLoss::Adv,
        }
    }

    /// [`Recipe::cifar10`] for 3-channel images, [`Recipe::mnist`] otherwise.
    ///
    /// ```
    /// use nrpm::train::{AdvLoss, Recipe};
    /// assert_eq!(Recipe::for_images([1, 28, 28]).adv_loss, AdvLoss::CleanPlusAdv);
    /// assert_eq!(Recipe::for_images([3, 32, 32]).lr_steps, vec![50, 75]);
    /// ```
    pub fn for_images(image: [usize; 3]) -> Self {
        if image[0] == 3 {
            Self::cifar10()
        } else {
            Self::mnist()
        }
    }
}
