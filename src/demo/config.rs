//! What the demo runs: [`DemoConfig`] (the full run and the `--quick` one) and [`SgdRun`].

use serde::{Deserialize, Serialize};

use nrpm::attacks::{default_alpha, Attack};
use nrpm::certify::smoothing::SmoothingConfig;
use nrpm::error::{Error, Result};
use nrpm::train::{AdvLoss, Adversary, Paradigm, SgdConfig, TrainConfig};
use nrpm::{Norm, NrpmConfig};

/// One SGD training run: epochs, batch size, learning rate and momentum (no weight decay, no
/// learning-rate steps).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SgdRun {
    /// Epochs over the training images.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Learning rate η.
    pub lr: f64,
    /// Momentum μ.
    pub momentum: f64,
}

impl SgdRun {
    /// The [`TrainConfig`] of this run for `paradigm`, with `adversary` and `seed`.
    pub fn train_config(
        &self,
        paradigm: Paradigm,
        adversary: Option<Adversary>,
        seed: u64,
    ) -> TrainConfig {
        TrainConfig {
            paradigm,
            epochs: self.epochs,
            batch_size: self.batch_size,
            sgd: SgdConfig {
                lr: self.lr,
                momentum: self.momentum,
                weight_decay: 0.0,
            },
            lr_steps: Vec::new(),
            adversary,
            seed,
            frozen_batchnorm: false,
            noise_sd: 0.0,
        }
    }
}

/// Every setting of a demo run. The same configuration gives the same figures, bit for bit
/// (training, attacks and the influence curve are all seeded from `seed`).
///
/// ```text
/// model     784-256-64-10 MLP, no activation (the authors' mlp3), PyTorch init from `seed`
/// LPM       Paradigm::Scratch, clean cross-entropy, `scratch` SGD, on train_n images
/// NRPM      L1 weights 1/(r + nrpm_eps), K = nrpm_k IRLS steps, in fc1, fc2, fc3
/// P1        λ fixed, one value for all layers, for each of paradigm1_lambdas
/// P2        λ = sigmoid(θ) per layer from paradigm2_lambda0, FGSM(paradigm2_fgsm_eps)
///           adversarial training (clean + adversarial loss), `paradigm2` SGD, on the first
///           paradigm2_train_n training images
/// attacks   FGSM and PGD-L∞ (pgd_steps, α = 2.5·ε/steps, random start) at each budget,
///           on test_n images; ε = 0 is the clean accuracy; AutoAttack (standard suite) at
///           autoattack_budgets on the first autoattack_n of them
/// certify   LPM and P2: randomized smoothing (`smoothing`, radii smoothing_radii) on the first
///           smoothing_n test images; the bracket (verified beside attacked, L∞, budgets
///           bracket_budgets) on the first bracket_n: CROWN for LPM (exact here: no
///           activation), intervals through the NRPM layers for P2
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DemoConfig {
    /// Seed of the initial weights, shuffling and attack random starts.
    pub seed: u64,
    /// Whether this is the reduced `--quick` configuration.
    pub quick: bool,
    /// Training images: the first `train_n` of the shipped subset (at most 5 000).
    pub train_n: usize,
    /// Test images: the first `test_n` of the shipped subset (at most 1 000).
    pub test_n: usize,
    /// Plain LPM training from scratch.
    pub scratch: SgdRun,
    /// IRLS steps K of every NRPM layer.
    pub nrpm_k: usize,
    /// ε of the IRLS weight 1/(r + ε).
    pub nrpm_eps: f64,
    /// Paradigm 1: the fixed λ values (one model per value, same λ in every layer).
    pub paradigm1_lambdas: Vec<f64>,
    /// Paradigm 2: the initial λ of every layer, in (0, 1).
    pub paradigm2_lambda0: f64,
    /// Paradigm 2: the λ-only training run.
    pub paradigm2: SgdRun,
    /// Paradigm 2 trains on the first `paradigm2_train_n` training images (≤ `train_n`).
    pub paradigm2_train_n: usize,
    /// Paradigm 2: the FGSM budget of adversarial training.
    pub paradigm2_fgsm_eps: f64,
    /// L∞ budgets of the evaluation (0 = clean accuracy; at least one must be > 0).
    pub budgets: Vec<f64>,
    /// PGD steps (step size α = 2.5·ε/steps, uniform random start in the ε-ball).
    pub pgd_steps: usize,
    /// Images per evaluation batch (figures do not depend on it).
    pub eval_batch: usize,
    /// Test image whose fc1 terms the influence curve moves.
    pub influence_image: usize,
    /// Points of the influence curve's grid.
    pub influence_points: usize,
    /// AutoAttack runs on the first `autoattack_n` test images (≤ `test_n`).
    pub autoattack_n: usize,
    /// AutoAttack's L∞ budgets (each > 0).
    pub autoattack_budgets: Vec<f64>,
    /// Randomized smoothing (σ, n0, n, α, batch, seed) of LPM and Paradigm 2.
    pub smoothing: SmoothingConfig,
    /// Smoothing certifies the first `smoothing_n` test images (≤ `test_n`).
    pub smoothing_n: usize,
    /// L2 radii of the certified-accuracy curve (≥ 0).
    pub smoothing_radii: Vec<f64>,
    /// The bracket runs on the first `bracket_n` test images (≤ `test_n`).
    pub bracket_n: usize,
    /// The bracket's L∞ budgets (each > 0).
    pub bracket_budgets: Vec<f64>,
}

impl DemoConfig {
    /// The full demo: 5 000 training and 1 000 test images; LPM 10 epochs (lr 0.01, momentum
    /// 0.9, batch 64); NRPM L1, K = 1, ε = 5e-5 (the authors' `mnist_mlp.py`); Paradigm 1 at
    /// λ ∈ {0.9, 0.7, 0.6, 0.5}; Paradigm 2 from λ = 0.6 for 2 epochs of FGSM (ε = 0.3)
    /// adversarial training with lr 0.05, momentum 0.9, batch 64; FGSM and PGD-20 at
    /// ε ∈ {0, 0.05, 0.1, 0.15, 0.2, 0.3}.
    pub fn full(seed: u64) -> Self {
        Self {
            seed,
            quick: false,
            train_n: 5000,
            test_n: 1000,
            scratch: SgdRun {
                epochs: 10,
                batch_size: 64,
                lr: 0.01,
                momentum: 0.9,
            },
            nrpm_k: 1,
            nrpm_eps: 5e-5,
            paradigm1_lambdas: vec![0.9, 0.7, 0.6, 0.5],
            paradigm2_lambda0: 0.6,
            paradigm2: SgdRun {
                epochs: 2,
                batch_size: 64,
                lr: 0.05,
                momentum: 0.9,
            },
            paradigm2_train_n: 5000,
            paradigm2_fgsm_eps: 0.3,
            budgets: vec![0.0, 0.05, 0.1, 0.15, 0.2, 0.3],
            pgd_steps: 20,
            eval_batch: 100,
            influence_image: 0,
            influence_points: 81,
            autoattack_n: 50,
            autoattack_budgets: vec![0.1],
            smoothing: SmoothingConfig {
                n: 1000,
                seed,
                ..SmoothingConfig::default()
            },
            smoothing_n: 50,
            smoothing_radii: vec![0.0, 0.25, 0.5, 0.75, 1.0],
            bracket_n: 50,
            bracket_budgets: vec![0.005, 0.01, 0.02, 0.05],
        }
    }

    /// A smoke run that exercises every stage in well under a second in a release build (the
    /// tests use it; its figures are too noisy to read): LPM 3 epochs on 1 000 training
    /// images, Paradigm 1 at λ = 0.7 only, Paradigm 2 for 1 epoch on 100 images, 50 test
    /// images, ε ∈ {0, 0.1, 0.2}, PGD-3, a 21-point influence grid.
    pub fn quick(seed: u64) -> Self {
        let full = Self::full(seed);
        Self {
            quick: true,
            train_n: 1000,
            test_n: 50,
            scratch: SgdRun {
                epochs: 3,
                ..full.scratch
            },
            paradigm1_lambdas: vec![0.7],
            paradigm2: SgdRun {
                epochs: 1,
                ..full.paradigm2
            },
            paradigm2_train_n: 100,
            budgets: vec![0.0, 0.1, 0.2],
            pgd_steps: 3,
            influence_points: 21,
            autoattack_n: 5,
            autoattack_budgets: vec![0.1],
            smoothing: SmoothingConfig {
                n0: 10,
                n: 100,
                ..full.smoothing
            },
            smoothing_n: 5,
            bracket_n: 5,
            bracket_budgets: vec![0.01, 0.05],
            ..full
        }
    }

    /// Checks every setting before any work starts.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad setting: no images, zero epochs or batch size,
    /// bad SGD values, an invalid NRPM configuration, a Paradigm 1 λ outside [0, 1], a
    /// Paradigm 2 λ₀ outside (0, 1), a negative or non-finite budget, no budget > 0, zero PGD
    /// steps, an influence image beyond `test_n`, or fewer than 2 influence points.
    pub fn validate(&self) -> Result<()> {
        positive("training images", self.train_n)?;
        positive("test images", self.test_n)?;
        positive("paradigm 2 training images", self.paradigm2_train_n)?;
        if self.paradigm2_train_n > self.train_n {
            return Err(Error::config(
                "paradigm 2 training images",
                self.paradigm2_train_n,
                "must not exceed the training images",
            ));
        }
        for run in [&self.scratch, &self.paradigm2] {
            positive("epochs", run.epochs)?;
            run.train_config(Paradigm::Scratch, None, 0).validate()?;
        }
        self.nrpm(1.0)?;
        if let Some(l) = self
            .paradigm1_lambdas
            .iter()
            .find(|l| !(0.0..=1.0).contains(*l))
        {
            return Err(Error::config("paradigm 1 lambda", l, "must lie in [0, 1]"));
        }
        let l0 = self.paradigm2_lambda0;
        if !(l0 > 0.0 && l0 < 1.0) {
            return Err(Error::config(
                "paradigm 2 lambda0",
                l0,
                "must lie in (0, 1)",
            ));
        }
        self.paradigm2_attack().validate()?;
        self.check_budgets()?;
        positive("PGD steps", self.pgd_steps)?;
        positive("evaluation batch", self.eval_batch)?;
        if self.influence_image >= self.test_n {
            return Err(Error::config(
                "influence image",
                self.influence_image,
                "must be one of the test images",
            ));
        }
        if self.influence_points < 2 {
            return Err(Error::config(
                "influence points",
                self.influence_points,
                "need at least 2",
            ));
        }
        self.check_certification()
    }

    /// The AutoAttack, smoothing and bracket settings.
    fn check_certification(&self) -> Result<()> {
        for (what, n) in [
            ("AutoAttack images", self.autoattack_n),
            ("smoothing images", self.smoothing_n),
            ("bracket images", self.bracket_n),
        ] {
            positive(what, n)?;
            if n > self.test_n {
                return Err(Error::config(what, n, "must not exceed the test images"));
            }
        }
        self.smoothing.validate()?;
        let lists = [
            ("AutoAttack budget", &self.autoattack_budgets, false),
            ("bracket budget", &self.bracket_budgets, false),
            ("smoothing radius", &self.smoothing_radii, true),
        ];
        for (what, list, zero_ok) in lists {
            if list.is_empty() {
                return Err(Error::config(what, "none", "give at least one"));
            }
            if let Some(v) = list
                .iter()
                .find(|v| !(v.is_finite() && (**v > 0.0 || (zero_ok && **v == 0.0))))
            {
                let rule = match zero_ok {
                    true => "must be finite and ≥ 0",
                    false => "must be finite and > 0",
                };
                return Err(Error::config(what, v, rule));
            }
        }
        Ok(())
    }

    fn check_budgets(&self) -> Result<()> {
        if let Some(e) = self.budgets.iter().find(|e| !(e.is_finite() && **e >= 0.0)) {
            return Err(Error::config("budget", e, "must be finite and ≥ 0"));
        }
        if !self.budgets.iter().any(|&e| e > 0.0) {
            return Err(Error::config(
                "budgets",
                format!("{:?}", self.budgets),
                "need at least one ε > 0",
            ));
        }
        Ok(())
    }

    /// The NRPM operator of every reprogrammed layer, with λ.
    ///
    /// # Errors
    /// [`Error::Config`] for K or ε out of range, or a non-finite λ.
    pub fn nrpm(&self, lambda: f64) -> Result<NrpmConfig> {
        NrpmConfig::builder()
            .norm(Norm::L1)
            .k(self.nrpm_k)
            .eps(self.nrpm_eps)
            .lambda(lambda)
            .build()
    }

    /// The attack of Paradigm 2's adversarial training: FGSM at `paradigm2_fgsm_eps`.
    pub fn paradigm2_attack(&self) -> Attack {
        Attack::Fgsm {
            eps: self.paradigm2_fgsm_eps,
        }
    }

    /// Paradigm 2's training settings: λ only, FGSM examples, clean + adversarial loss (the
    /// authors' MNIST `adv_train`).
    pub fn paradigm2_train(&self) -> TrainConfig {
        let adversary = Adversary {
            attack: self.paradigm2_attack(),
            loss: AdvLoss::CleanPlusAdv,
        };
        self.paradigm2
            .train_config(Paradigm::LearnLambda, Some(adversary), self.seed)
    }

    /// The plain LPM training settings (clean loss, every parameter).
    pub fn scratch_train(&self) -> TrainConfig {
        self.scratch
            .train_config(Paradigm::Scratch, None, self.seed)
    }

    /// The budgets that are attacked (ε > 0; ε = 0 is the clean accuracy).
    pub fn attacked_budgets(&self) -> Vec<f64> {
        self.budgets.iter().copied().filter(|&e| e > 0.0).collect()
    }

    /// PGD-L∞ at `eps`: `pgd_steps` steps of α = 2.5·ε/steps ([`default_alpha`]) from a
    /// uniform random start.
    pub fn pgd(&self, eps: f64) -> Attack {
        Attack::PgdLinf {
            eps,
            alpha: default_alpha(eps, self.pgd_steps),
            steps: self.pgd_steps,
            random_start: true,
        }
    }
}

/// `Ok` if `value ≥ 1`.
fn positive(name: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::config(name, 0, "must be at least 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_quick_are_valid() {
        DemoConfig::full(0).validate().unwrap();
        DemoConfig::quick(3).validate().unwrap();
        assert_eq!(DemoConfig::quick(3).seed, 3);
        assert!(DemoConfig::quick(0).quick && !DemoConfig::full(0).quick);
    }

    #[test]
    fn bad_settings_are_rejected() {
        let bad: [fn(&mut DemoConfig); 9] = [
            |c| c.train_n = 0,
            |c| c.paradigm2_train_n = 1001,
            |c| c.scratch.epochs = 0,
            |c| c.paradigm2.lr = -1.0,
            |c| c.paradigm1_lambdas = vec![1.5],
            |c| c.paradigm2_lambda0 = 1.0,
            |c| c.budgets = vec![0.0],
            |c| c.budgets = vec![f64::NAN, 0.1],
            |c| c.influence_image = 100,
        ];
        for (i, f) in bad.iter().enumerate() {
            let mut c = DemoConfig::quick(0);
            f(&mut c);
            assert!(
                matches!(c.validate(), Err(Error::Config { .. })),
                "case {i}"
            );
        }
    }

    #[test]
    fn attacks_follow_the_settings() {
        let c = DemoConfig::full(0);
        assert_eq!(c.attacked_budgets(), vec![0.05, 0.1, 0.15, 0.2, 0.3]);
        assert_eq!(
            c.pgd(0.2),
            Attack::PgdLinf {
                eps: 0.2,
                alpha: 2.5 * 0.2 / 20.0,
                steps: 20,
                random_start: true
            }
        );
        let p2 = c.paradigm2_train();
        assert_eq!(p2.paradigm, Paradigm::LearnLambda);
        assert_eq!(p2.adversary.unwrap().loss, AdvLoss::CleanPlusAdv);
        assert_eq!(c.scratch_train().adversary, None);
    }
}
