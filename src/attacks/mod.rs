//! White-box adversarial attacks on any [`Classifier`] (a [`Model`](crate::models::Model) or a
//! user's network), and robust accuracy as the authors measure it.
//!
//! Every attack takes a batch of images `x [B, C, H, W]` in [0, 1] and returns `x' [B, C, H, W]`
//! in [0, 1], one perturbation per image. The gradient `g = ∇ₓ L` is the input gradient of the
//! **summed** cross-entropy of the batch (so each image's gradient is its own, not scaled by
//! 1/B). Untargeted attacks ascend the loss of the true labels; targeted ones descend the loss
//! of the target labels, i.e. ascend `g = −∇ₓ L(x, target)`.
//!
//! ```text
//! fgsm      x' = clip₀₁(x + ε·sign(g))                           sign(0) = 0 (torch.sign)
//! pgd-linf  x⁰ = clip₀₁(x + U(−ε, ε)),  xᵗ⁺¹ = clip₀₁(Π∞(xᵗ + α·sign(g(xᵗ))))
//! pgd-l2    x⁰ = clip₀₁(x + ε·u·n/‖n‖₂),  n ~ N(0, I), u ~ U(0, 1)   (torchattacks PGDL2)
//!           xᵗ⁺¹ = clip₀₁(x + Π₂(xᵗ + α·g/(‖g‖₂ + 1e-10) − x))
//! l2, l1    δ = 0.3·g/(‖g‖_p + 1e-10),  δ ← ε·δ/‖δ‖_p,  x' = clip₀₁(x + δ)   (one step)
//! l0        M = the k largest signed entries of g,  x' = clip₀₁(x + 5·x·M)
//! ```
//!
//! `Π∞` clips each entry to `[x − ε, x + ε]`; `Π₂` scales δ by `min(1, ε/‖δ‖₂)`. Norms are per
//! image over its C·H·W entries. Clipping to [0, 1] moves each entry towards `x ∈ [0, 1]`, so it
//! never enlarges a perturbation: `‖x' − x‖ ≤ ε` in the attack's norm, and l0 changes at most k
//! entries (zero pixels stay zero). The l2/l1/l0 steps are those of the authors' `mnist_mlp.py`
//! (`lnorm_attack`, `l0_attack`); PGD-L∞ is their `LinfPGDAttack` (`train_cifar10_resnet.py`,
//! `test_cifar10_resnet.py`: ε = 8/255, α = 2/255, 7 steps to train, 20 to test), except that
//! the random start is clipped to [0, 1] before the first gradient.
//!
//! The strong attacks follow fra31/auto-attack (Croce & Hein, ICML 2020), the reference of
//! reliable robustness evaluation: APGD on the cross-entropy, DLR and targeted DLR losses
//! (`apgd.rs`), FAB-T (`fab.rs`), the score-based Square attack (`square.rs`), and the
//! standard AutoAttack suite APGD-CE → APGD-T → FAB-T → Square with per-image records
//! (`autoattack.rs`); `checks.rs` holds AutoAttack's gradient-masking checks and ours. Each
//! strong attack stops working on an image as soon as it misclassifies it within the ball
//! (the figures are those of running on; only the time differs).
//!
//! Files: `fgsm.rs`, `pgd.rs` (L∞ and L2), `one_step.rs` (the authors' L2, L1 and L0 steps),
//! `apgd.rs`, `fab.rs`, `square.rs`, `autoattack.rs`, `checks.rs`, `losses.rs` (the strong
//! attacks' losses of the logits), `strong.rs` (what the strong attacks share), `eval.rs`
//! (robust accuracy over a dataset, per image), `worst_case.rs` (the per-image worst case over
//! attacks run as separate evaluations).

mod apgd;
mod autoattack;
pub mod checks;
mod eval;
mod fab;
mod fgsm;
mod losses;
mod one_step;
mod pgd;
mod square;
mod strong;
mod worst_case;

use ndarray::{Array4, ArrayView4};
use serde::{Deserialize, Serialize};

pub use apgd::checkpoints as apgd_checkpoints;
pub use autoattack::{
    evaluate_autoattack, AutoAttackResult, ImageRecord, StageResult, SuiteAttack,
};
pub use eval::{
    correct_by_budget, evaluate, evaluate_attacks, evaluate_images, evaluate_transfer,
    results_from_outcomes, EvalOptions, EvalResult, ImageOutcome,
};
use strong::{image_batch, image_rows, targeted_schedule, Outcome};
pub use strong::{ApgdLoss, Ball, StrongSettings, SQUARE_P_INIT, STRONG_NAMES};
pub use worst_case::{worst_case, ImageWorstCase};

use crate::error::{Error, Result};
use crate::models::Classifier;
use crate::real::Real;
use crate::seeds::ImageRngs;

/// An attack and its budget. Budgets are absolute: ε in pixel units of [0, 1] images (L∞:
/// per entry; L2, L1: per image), `pixels` a count of entries of C·H·W.
///
/// Deserialising checks the parameters as [`Attack::validate`] does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AttackFields")]
pub enum Attack {
    /// Fast gradient sign method: one step of size ε along sign(g), no random start.
    Fgsm {
        /// L∞ budget.
        eps: f64,
    },
    /// Projected gradient descent in the L∞ ball.
    PgdLinf {
        /// L∞ budget.
        eps: f64,
        /// Step size.
        alpha: f64,
        /// Number of gradient steps.
        steps: usize,
        /// Start at a uniform random point of the ε-ball.
        random_start: bool,
    },
    /// Projected gradient descent in the L2 ball, steps along g/‖g‖₂.
    PgdL2 {
        /// L2 budget per image.
        eps: f64,
        /// Step size (L2 length of each step).
        alpha: f64,
        /// Number of gradient steps.
        steps: usize,
        /// Start at a random point of the ε-ball (random direction, uniform radius).
        random_start: bool,
    },
    /// The authors' single normalised-gradient step with ‖δ‖₂ = ε.
    L2Step {
        /// L2 budget per image.
        eps: f64,
    },
    /// The authors' single normalised-gradient step with ‖δ‖₁ = ε.
    L1Step {
        /// L1 budget per image.
        eps: f64,
    },
    /// The authors' L0 attack: scale the `pixels` entries with the largest gradient by 6.
    L0 {
        /// How many entries of each image may change.
        pixels: usize,
    },
    /// APGD (Croce & Hein 2020): momentum steps whose size adapts at checkpoints, from a random
    /// start, ascending the cross-entropy (APGD-CE) or the DLR loss (APGD-DLR); see `apgd.rs`.
    Apgd {
        /// Budget (L∞: per entry; L2: per image).
        eps: f64,
        /// The ball.
        ball: Ball,
        /// The loss ascended.
        loss: ApgdLoss,
        /// Iterations N of each run.
        steps: usize,
        /// Runs, each from a fresh random start on the images still robust.
        restarts: usize,
    },
    /// APGD-T: APGD on the targeted DLR loss, towards the class of the 2nd, 3rd, …,
    /// (`targets` + 1)-th largest clean logit in turn, each run on the images still robust.
    ApgdT {
        /// Budget.
        eps: f64,
        /// The ball.
        ball: Ball,
        /// Iterations of each run.
        steps: usize,
        /// Runs per target class.
        restarts: usize,
        /// Target classes tried (at most the number of classes − 1).
        targets: usize,
    },
    /// FAB-T (Croce & Hein 2020), targeted as in AutoAttack's standard version: the smallest
    /// perturbation that reaches each target's decision boundary, kept when it is within ε.
    FabT {
        /// Budget.
        eps: f64,
        /// The ball.
        ball: Ball,
        /// Iterations of each run.
        steps: usize,
        /// Runs per target class (the first from the clean image, later ones from random
        /// points of the ε/2-ball).
        restarts: usize,
        /// Target classes tried.
        targets: usize,
    },
    /// The Square attack (Andriushchenko et al. 2020): random square updates at the vertices of
    /// the ball, kept when they lower the margin; logits only, never a gradient.
    Square {
        /// Budget.
        eps: f64,
        /// The ball.
        ball: Ball,
        /// Queries (iterations) of each run.
        queries: usize,
        /// Runs, each from a fresh random start on the images still robust.
        restarts: usize,
    },
    /// AutoAttack's standard suite: APGD-CE, APGD-T, FAB-T, Square, each run only on the
    /// images all the earlier ones left robust.
    AutoAttack {
        /// Budget.
        eps: f64,
        /// The ball.
        ball: Ball,
        /// Iterations of APGD-CE, APGD-T and FAB-T.
        steps: usize,
        /// Runs of each attack (per target class for APGD-T and FAB-T).
        restarts: usize,
        /// Queries of Square.
        queries: usize,
        /// Target classes of APGD-T and FAB-T.
        targets: usize,
    },
}

/// The names [`Attack::from_name`] accepts.
pub const ATTACK_NAMES: &str = "fgsm, pgd-linf (or pgd), pgd-l2, l2, l1, l0, apgd-ce, \
    apgd-dlr, apgd-t, fab-t, square, autoattack";

/// The authors' CIFAR-10 PGD step ratio: α = ε/4 (2/255 for 8/255), used where their settings
/// are reproduced.
pub const AUTHORS_ALPHA_RATIO: f64 = 0.25;

/// Madry et al.'s step size factor: α = 2.5·ε/steps, the default of every PGD.
pub const MADRY_ALPHA_FACTOR: f64 = 2.5;

/// PGD's default step size `α = 2.5·ε/steps` (Madry et al. 2018): with any number of steps
/// the iterates can travel 2.5·ε, so PGD-1 reaches the ε-sphere as FGSM does, and longer runs
/// can move along it.
///
/// ```
/// assert_eq!(nrpm::attacks::default_alpha(0.1, 1), 0.25);
/// assert!((nrpm::attacks::default_alpha(0.1, 20) - 0.0125).abs() < 1e-15);
/// ```
pub fn default_alpha(eps: f64, steps: usize) -> f64 {
    MADRY_ALPHA_FACTOR * eps / steps.max(1) as f64
}

/// The serialised form of [`Attack`], checked on the way in.
#[derive(Deserialize)]
enum AttackFields {
    Fgsm {
        eps: f64,
    },
    PgdLinf {
        eps: f64,
        alpha: f64,
        steps: usize,
        random_start: bool,
    },
    PgdL2 {
        eps: f64,
        alpha: f64,
        steps: usize,
        random_start: bool,
    },
    L2Step {
        eps: f64,
    },
    L1Step {
        eps: f64,
    },
    L0 {
        pixels: usize,
    },
    Apgd {
        eps: f64,
        ball: Ball,
        loss: ApgdLoss,
        steps: usize,
        restarts: usize,
    },
    ApgdT {
        eps: f64,
        ball: Ball,
        steps: usize,
        restarts: usize,
        targets: usize,
    },
    FabT {
        eps: f64,
        ball: Ball,
        steps: usize,
        restarts: usize,
        targets: usize,
    },
    Square {
        eps: f64,
        ball: Ball,
        queries: usize,
        restarts: usize,
    },
    AutoAttack {
        eps: f64,
        ball: Ball,
        steps: usize,
        restarts: usize,
        queries: usize,
        targets: usize,
    },
}

impl TryFrom<AttackFields> for Attack {
    type Error = Error;

    fn try_from(f: AttackFields) -> Result<Self> {
        let a = match f {
            AttackFields::Fgsm { eps } => Attack::Fgsm { eps },
            AttackFields::PgdLinf {
                eps,
                alpha,
                steps,
                random_start,
            } => Attack::PgdLinf {
                eps,
                alpha,
                steps,
                random_start,
            },
            AttackFields::PgdL2 {
                eps,
                alpha,
                steps,
                random_start,
            } => Attack::PgdL2 {
                eps,
                alpha,
                steps,
                random_start,
            },
            AttackFields::L2Step { eps } => Attack::L2Step { eps },
            AttackFields::L1Step { eps } => Attack::L1Step { eps },
            AttackFields::L0 { pixels } => Attack::L0 { pixels },
            AttackFields::Apgd {
                eps,
                ball,
                loss,
                steps,
                restarts,
            } => Attack::Apgd {
                eps,
                ball,
                loss,
                steps,
                restarts,
            },
            AttackFields::ApgdT {
                eps,
                ball,
                steps,
                restarts,
                targets,
            } => Attack::ApgdT {
                eps,
                ball,
                steps,
                restarts,
                targets,
            },
            AttackFields::FabT {
                eps,
                ball,
                steps,
                restarts,
                targets,
            } => Attack::FabT {
                eps,
                ball,
                steps,
                restarts,
                targets,
            },
            AttackFields::Square {
                eps,
                ball,
                queries,
                restarts,
            } => Attack::Square {
                eps,
                ball,
                queries,
                restarts,
            },
            AttackFields::AutoAttack {
                eps,
                ball,
                steps,
                restarts,
                queries,
                targets,
            } => Attack::AutoAttack {
                eps,
                ball,
                steps,
                restarts,
                queries,
                targets,
            },
        };
        a.validate().map(|_| a)
    }
}

/// PGD's settings, named: steps, step-size rule, random start. The default is 20 steps of
/// α = 2.5·ε/steps from a random start.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PgdSettings {
    /// Number of gradient steps (≥ 1).
    pub steps: usize,
    /// How α follows from the budget ε.
    pub step_size: StepSize,
    /// Start at a random point of the ε-ball.
    pub random_start: bool,
}

impl Default for PgdSettings {
    fn default() -> Self {
        Self {
            steps: 20,
            step_size: StepSize::Madry,
            random_start: true,
        }
    }
}

impl PgdSettings {
    fn linf(self, eps: f64) -> Attack {
        Attack::PgdLinf {
            eps,
            alpha: self.step_size.alpha(eps, self.steps),
            steps: self.steps,
            random_start: self.random_start,
        }
    }

    fn l2(self, eps: f64) -> Attack {
        Attack::PgdL2 {
            eps,
            alpha: self.step_size.alpha(eps, self.steps),
            steps: self.steps,
            random_start: self.random_start,
        }
    }
}

/// How a PGD step size is chosen for each budget ε.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum StepSize {
    /// `α = 2.5·ε/steps` ([`default_alpha`]).
    Madry,
    /// `α = r·ε` (the authors' CIFAR setting is r = 1/4).
    Relative(f64),
    /// The same α at every budget.
    Absolute(f64),
}

impl StepSize {
    /// α for budget `eps` and `steps` steps.
    pub fn alpha(self, eps: f64, steps: usize) -> f64 {
        match self {
            StepSize::Madry => default_alpha(eps, steps),
            StepSize::Relative(r) => r * eps,
            StepSize::Absolute(a) => a,
        }
    }
}

impl std::str::FromStr for StepSize {
    type Err = Error;

    /// `0.01` (absolute), `eps/4`, `0.25*eps` or `0.25eps` (relative to each budget), or
    /// `madry` (2.5·ε/steps).
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase().replace(' ', "");
        let number = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    Error::config(
                        "alpha",
                        s,
                        "must be a number ≥ 0, eps/N, R*eps, or madry (2.5·eps/steps)",
                    )
                })
        };
        if t == "madry" {
            return Ok(StepSize::Madry);
        }
        if let Some(div) = t.strip_prefix("eps/") {
            let d = number(div)?;
            return match d > 0.0 {
                true => Ok(StepSize::Relative(1.0 / d)),
                false => Err(Error::config("alpha", s, "eps/N needs N > 0")),
            };
        }
        if let Some(r) = t.strip_suffix("*eps").or_else(|| t.strip_suffix("eps")) {
            return Ok(StepSize::Relative(number(r)?));
        }
        Ok(StepSize::Absolute(number(&t)?))
    }
}

impl std::fmt::Display for StepSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepSize::Madry => f.write_str("2.5·ε/steps"),
            StepSize::Relative(r) if *r > 0.0 && (1.0 / r).fract() == 0.0 => {
                write!(f, "ε/{}", 1.0 / r)
            }
            StepSize::Relative(r) => write!(f, "{r}·ε"),
            StepSize::Absolute(a) => write!(f, "{a}"),
        }
    }
}

impl Attack {
    /// The attack called `name` (`fgsm | pgd-linf | pgd | pgd-l2 | l2 | l1 | l0`) with budget
    /// `budget` (ε, or for `l0` a whole number of entries); `pgd` is used by the PGD attacks
    /// only.
    ///
    /// # Errors
    /// [`Error::UnknownName`] for another name; [`Error::Config`] for a negative or non-finite
    /// budget or step, a fractional l0 budget, or PGD with zero steps.
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// use nrpm::attacks::{Attack, PgdSettings, StepSize};
    /// let pgd = Attack::from_name("pgd-linf", 8.0 / 255.0, PgdSettings::default())?;
    /// assert!(matches!(pgd, Attack::PgdLinf { steps: 20, alpha, .. } if (alpha - 1.0 / 255.0).abs() < 1e-12));
    /// let authors = PgdSettings { step_size: StepSize::Relative(0.25), ..PgdSettings::default() };
    /// let pgd = Attack::pgd_linf(8.0 / 255.0, authors)?;
    /// assert!(matches!(pgd, Attack::PgdLinf { alpha, .. } if (alpha - 2.0 / 255.0).abs() < 1e-12));
    /// assert_eq!(Attack::from_name("l0", 128.0, PgdSettings::default())?, Attack::L0 { pixels: 128 });
    /// assert!(Attack::from_name("cw", 0.1, PgdSettings::default()).is_err());
    /// # Ok(()) }
    /// ```
    pub fn from_name(name: &str, budget: f64, pgd: PgdSettings) -> Result<Self> {
        let attack = match name.to_ascii_lowercase().as_str() {
            "fgsm" => Self::Fgsm { eps: budget },
            "pgd-linf" | "pgd" => pgd.linf(budget),
            "pgd-l2" => pgd.l2(budget),
            "l2" => Self::L2Step { eps: budget },
            "l1" => Self::L1Step { eps: budget },
            "l0" => Self::L0 {
                pixels: whole_number(budget)?,
            },
            strong if Self::is_strong(strong) => {
                return Self::strong(strong, budget, StrongSettings::default())
            }
            _ => {
                return Err(Error::UnknownName {
                    what: "attack",
                    name: name.to_string(),
                    expected: ATTACK_NAMES.to_string(),
                })
            }
        };
        attack.validate()?;
        Ok(attack)
    }

    /// Whether `name` is one of the strong attacks ([`STRONG_NAMES`]).
    pub fn is_strong(name: &str) -> bool {
        STRONG_NAMES
            .split(", ")
            .any(|n| n.eq_ignore_ascii_case(name))
    }

    /// The strong attack called `name` (`apgd-ce | apgd-dlr | apgd-t | fab-t | square |
    /// autoattack`) at budget ε with `settings` (each attack takes the settings it has).
    ///
    /// # Errors
    /// [`Error::UnknownName`] for another name; [`Error::Config`] for a negative or non-finite
    /// ε, or zero steps, restarts, queries or targets.
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// use nrpm::attacks::{Attack, Ball, StrongSettings};
    /// let aa = Attack::strong("autoattack", 0.1, StrongSettings::default())?;
    /// assert_eq!(aa.to_string(), "AutoAttack standard L∞ ε = 0.1 (APGD-CE, APGD-T, FAB-T: \
    ///     100 steps, 9 targets; Square: 5000 queries; 1 restart each)");
    /// let l2 = StrongSettings { ball: Ball::L2, steps: 50, ..StrongSettings::default() };
    /// assert!(matches!(Attack::strong("apgd-ce", 1.5, l2)?, Attack::Apgd { steps: 50, .. }));
    /// let none = StrongSettings { queries: 0, ..StrongSettings::default() };
    /// assert!(Attack::strong("square", 0.1, none).is_err());
    /// # Ok(()) }
    /// ```
    pub fn strong(name: &str, eps: f64, settings: StrongSettings) -> Result<Self> {
        let StrongSettings {
            ball,
            steps,
            restarts,
            queries,
            targets,
        } = settings;
        let apgd = |loss| Self::Apgd {
            eps,
            ball,
            loss,
            steps,
            restarts,
        };
        let attack = match name.to_ascii_lowercase().as_str() {
            "apgd-ce" => apgd(ApgdLoss::Ce),
            "apgd-dlr" => apgd(ApgdLoss::Dlr),
            "apgd-t" => Self::ApgdT {
                eps,
                ball,
                steps,
                restarts,
                targets,
            },
            "fab-t" => Self::FabT {
                eps,
                ball,
                steps,
                restarts,
                targets,
            },
            "square" => Self::Square {
                eps,
                ball,
                queries,
                restarts,
            },
            "autoattack" => Self::AutoAttack {
                eps,
                ball,
                steps,
                restarts,
                queries,
                targets,
            },
            _ => {
                return Err(Error::UnknownName {
                    what: "strong attack",
                    name: name.to_string(),
                    expected: STRONG_NAMES.to_string(),
                })
            }
        };
        attack.validate()?;
        Ok(attack)
    }

    /// FGSM at ε.
    ///
    /// # Errors
    /// [`Error::Config`] for a negative or non-finite ε.
    pub fn fgsm(eps: f64) -> Result<Self> {
        let a = Self::Fgsm { eps };
        a.validate().map(|_| a)
    }

    /// PGD in the L∞ ball of radius ε.
    ///
    /// # Errors
    /// [`Error::Config`] for a negative or non-finite ε or step, or zero steps.
    pub fn pgd_linf(eps: f64, settings: PgdSettings) -> Result<Self> {
        let a = settings.linf(eps);
        a.validate().map(|_| a)
    }

    /// PGD in the L2 ball of radius ε (per image).
    ///
    /// # Errors
    /// [`Error::Config`] for a negative or non-finite ε or step, or zero steps.
    pub fn pgd_l2(eps: f64, settings: PgdSettings) -> Result<Self> {
        let a = settings.l2(eps);
        a.validate().map(|_| a)
    }

    /// Whether the steps can reach the ε-sphere from the clean image: `steps·α ≥ ε` for PGD
    /// (always `true` for the one-step attacks, which step to the sphere).
    pub fn reaches_sphere(&self) -> bool {
        match *self {
            Self::PgdLinf {
                eps, alpha, steps, ..
            }
            | Self::PgdL2 {
                eps, alpha, steps, ..
            } => steps as f64 * alpha >= eps * (1.0 - 1e-12),
            _ => true,
        }
    }

    /// `steps·α` for PGD (how far the steps can carry an iterate), `ε` for the one-step
    /// attacks.
    pub fn steps_times_alpha(&self) -> f64 {
        match *self {
            Self::PgdLinf { alpha, steps, .. } | Self::PgdL2 { alpha, steps, .. } => {
                steps as f64 * alpha
            }
            _ => self.budget(),
        }
    }

    /// The budget: ε, or the number of entries for [`Attack::L0`].
    pub fn budget(&self) -> f64 {
        match *self {
            Self::Fgsm { eps }
            | Self::PgdLinf { eps, .. }
            | Self::PgdL2 { eps, .. }
            | Self::L2Step { eps }
            | Self::L1Step { eps } => eps,
            Self::L0 { pixels } => pixels as f64,
            Self::Apgd { eps, .. }
            | Self::ApgdT { eps, .. }
            | Self::FabT { eps, .. }
            | Self::Square { eps, .. }
            | Self::AutoAttack { eps, .. } => eps,
        }
    }

    /// The ball of a strong attack (`None` for the others).
    pub fn ball(&self) -> Option<Ball> {
        match *self {
            Self::Apgd { ball, .. }
            | Self::ApgdT { ball, .. }
            | Self::FabT { ball, .. }
            | Self::Square { ball, .. }
            | Self::AutoAttack { ball, .. } => Some(ball),
            _ => None,
        }
    }

    /// The CLI name (`fgsm`, `pgd-linf`, `pgd-l2`, `l2`, `l1`, `l0`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Fgsm { .. } => "fgsm",
            Self::PgdLinf { .. } => "pgd-linf",
            Self::PgdL2 { .. } => "pgd-l2",
            Self::L2Step { .. } => "l2",
            Self::L1Step { .. } => "l1",
            Self::L0 { .. } => "l0",
            Self::Apgd {
                loss: ApgdLoss::Ce, ..
            } => "apgd-ce",
            Self::Apgd {
                loss: ApgdLoss::Dlr,
                ..
            } => "apgd-dlr",
            Self::ApgdT { .. } => "apgd-t",
            Self::FabT { .. } => "fab-t",
            Self::Square { .. } => "square",
            Self::AutoAttack { .. } => "autoattack",
        }
    }

    /// The norm the budget is measured in: `"linf"`, `"l2"`, `"l1"` or `"l0"`.
    pub fn norm(&self) -> &'static str {
        if let Some(ball) = self.ball() {
            return ball.name();
        }
        match self {
            Self::Fgsm { .. } | Self::PgdLinf { .. } => "linf",
            Self::PgdL2 { .. } | Self::L2Step { .. } => "l2",
            Self::L1Step { .. } => "l1",
            _ => "l0",
        }
    }

    /// Checks the parameters (the fields are public, so [`perturb`] checks again).
    ///
    /// # Errors
    /// [`Error::Config`] for a negative or non-finite ε or α, PGD with zero steps, or a strong
    /// attack with zero steps, restarts, queries or targets.
    pub fn validate(&self) -> Result<()> {
        let finite_non_negative = |name: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(Error::config(name, v, "must be finite and ≥ 0"))
            }
        };
        finite_non_negative("attack eps", self.budget())?;
        if let Self::PgdLinf { alpha, steps, .. } | Self::PgdL2 { alpha, steps, .. } = *self {
            finite_non_negative("attack alpha", alpha)?;
            if steps == 0 {
                return Err(Error::config(
                    "attack steps",
                    0,
                    "PGD needs at least 1 step",
                ));
            }
        }
        self.validate_counts()
    }

    /// The strong attacks' counts are all ≥ 1.
    fn validate_counts(&self) -> Result<()> {
        let (steps, restarts, queries, targets) = match *self {
            Self::Apgd {
                steps, restarts, ..
            } => (Some(steps), restarts, None, None),
            Self::ApgdT {
                steps,
                restarts,
                targets,
                ..
            }
            | Self::FabT {
                steps,
                restarts,
                targets,
                ..
            } => (Some(steps), restarts, None, Some(targets)),
            Self::Square {
                queries, restarts, ..
            } => (None, restarts, Some(queries), None),
            Self::AutoAttack {
                steps,
                restarts,
                queries,
                targets,
                ..
            } => (Some(steps), restarts, Some(queries), Some(targets)),
            _ => return Ok(()),
        };
        let counts = [
            ("attack steps", steps),
            ("attack restarts", Some(restarts)),
            ("attack queries", queries),
            ("attack targets", targets),
        ];
        match counts.iter().find(|(_, v)| *v == Some(0)) {
            Some((name, _)) => Err(Error::config(name, 0, "must be at least 1")),
            None => Ok(()),
        }
    }
}

impl std::fmt::Display for Attack {
    /// In words: `FGSM L∞ ε = 0.3`, `PGD-20 L∞ ε = 0.1 (α = 0.0125, random start)`,
    /// `L0 128 pixels`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Fgsm { eps } => write!(f, "FGSM L∞ ε = {eps}"),
            Self::PgdLinf {
                eps,
                alpha,
                steps,
                random_start,
            }
            | Self::PgdL2 {
                eps,
                alpha,
                steps,
                random_start,
            } => {
                let ball = if self.norm() == "l2" { "L2" } else { "L∞" };
                let start = if random_start {
                    "random start"
                } else {
                    "clean start"
                };
                write!(f, "PGD-{steps} {ball} ε = {eps} (α = {alpha}, {start})")
            }
            Self::L2Step { eps } => write!(f, "one-step L2 ε = {eps}"),
            Self::L1Step { eps } => write!(f, "one-step L1 ε = {eps}"),
            Self::L0 { pixels } => write!(f, "L0 {pixels} pixels"),
            Self::Apgd {
                eps,
                ball,
                steps,
                restarts,
                ..
            } => write!(
                f,
                "{}-{steps} {} ε = {eps} ({})",
                self.name().to_ascii_uppercase(),
                ball.symbol(),
                plural(restarts, "restart")
            ),
            Self::ApgdT {
                eps,
                ball,
                steps,
                restarts,
                targets,
            }
            | Self::FabT {
                eps,
                ball,
                steps,
                restarts,
                targets,
            } => write!(
                f,
                "{}-{steps} {} ε = {eps} ({}, {} each)",
                self.name().to_ascii_uppercase(),
                ball.symbol(),
                plural(targets, "target"),
                plural(restarts, "restart")
            ),
            Self::Square {
                eps,
                ball,
                queries,
                restarts,
            } => write!(
                f,
                "Square-{queries} {} ε = {eps} (p_init = {SQUARE_P_INIT}, {})",
                ball.symbol(),
                plural(restarts, "restart")
            ),
            Self::AutoAttack {
                eps,
                ball,
                steps,
                restarts,
                queries,
                targets,
            } => write!(
                f,
                "AutoAttack standard {} ε = {eps} (APGD-CE, APGD-T, FAB-T: {steps} steps, {}; \
                 Square: {queries} queries; {} each)",
                ball.symbol(),
                plural(targets, "target"),
                plural(restarts, "restart")
            ),
        }
    }
}

/// `1 restart`, `3 restarts`.
fn plural(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        _ => format!("{n} {what}s"),
    }
}

/// `v` as a count, if it is a whole number ≥ 0.
fn whole_number(v: f64) -> Result<usize> {
    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= u32::MAX as f64 {
        Ok(v as usize)
    } else {
        Err(Error::config(
            "l0 budget",
            v,
            "must be a whole number of pixels ≥ 0",
        ))
    }
}

/// Adversarial images `x' [B, C, H, W]` for images `x [B, C, H, W]` with true `labels [B]`:
/// untargeted when `target` is `None` (ascend the loss of `labels`), targeted towards
/// `target [B]` otherwise (descend the loss of `target`). Every draw (PGD random starts) of image
/// b comes from its own generator in `rngs` ([`ImageRngs`], seeded from the run's seed and the
/// image's dataset index), so an image's adversarial example does not depend on its batch.
/// The model runs in eval mode.
///
/// Guarantees (see the module doc): every entry of `x'` is in [0, 1], and `x' − x` lies in the
/// attack's ε-ball (L0: at most `pixels` entries per image differ), when `x` is in [0, 1].
///
/// # Errors
/// [`Error::Config`] for invalid attack parameters or labels, a target for a strong attack
/// (they are untargeted), a model with too few classes for the attack's loss (APGD-DLR: 3;
/// APGD-T: 4), or more targets than classes − 1; [`Error::Shape`] if `labels`, `target` or
/// `rngs` do not have B entries or `x` does not fit the model; model errors.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::attacks::{perturb, Attack};
/// use nrpm::models::{Model, ModelSpec};
/// use nrpm::seeds::{stream, ImageRngs};
/// let mut model = Model::<f32>::new(ModelSpec::from_name("mlp1", 1, 4)?);
/// model.init(0);
/// let x = ndarray::Array4::<f32>::from_elem((2, 1, 4, 4), 0.5);
/// let mut rngs = ImageRngs::for_images(0, stream::ATTACK, [0, 1]); // images 0 and 1
/// let adv = perturb(&model, x.view(), &[3, 7], &Attack::Fgsm { eps: 0.1 }, None, &mut rngs)?;
/// assert!(adv.iter().zip(&x).all(|(a, b)| (a - b).abs() <= 0.1 + 1e-6));
/// # Ok(()) }
/// ```
pub fn perturb<T: Real, C: Classifier<T> + ?Sized>(
    model: &C,
    x: ArrayView4<T>,
    labels: &[usize],
    attack: &Attack,
    target: Option<&[usize]>,
    rngs: &mut ImageRngs,
) -> Result<Array4<T>> {
    attack.validate()?;
    let b = x.dim().0;
    if rngs.len() != b {
        return Err(Error::shape(
            "attacks::perturb",
            "rngs (one per image)",
            &[b],
            &[rngs.len()],
        ));
    }
    for (what, v) in [("attack labels", Some(labels)), ("attack target", target)] {
        if let Some(v) = v.filter(|v| v.len() != b) {
            return Err(Error::shape("attacks::perturb", what, &[b], &[v.len()]));
        }
    }
    let grad = Gradient {
        model,
        labels,
        target,
        _scalar: std::marker::PhantomData,
    };
    let x = x.as_standard_layout();
    match *attack {
        Attack::Fgsm { eps } => fgsm::fgsm(&grad, x.view(), eps),
        Attack::PgdLinf {
            eps,
            alpha,
            steps,
            random_start,
        }
        | Attack::PgdL2 {
            eps,
            alpha,
            steps,
            random_start,
        } => {
            let ball = match attack {
                Attack::PgdL2 { .. } => Ball::L2,
                _ => Ball::Linf,
            };
            let pgd = pgd::Pgd {
                ball,
                eps,
                alpha,
                steps,
                random_start,
            };
            pgd.run(&grad, x.view(), rngs)
        }
        Attack::L2Step { eps } => one_step::lp_step(&grad, x.view(), eps, Lp::L2),
        Attack::L1Step { eps } => one_step::lp_step(&grad, x.view(), eps, Lp::L1),
        Attack::L0 { pixels } => one_step::l0(&grad, x.view(), pixels),
        _ => match target {
            None => autoattack::perturb_strong(model, x.view(), labels, attack, rngs),
            Some(_) => Err(Error::config(
                "attack target",
                attack.name(),
                "the strong attacks are untargeted (APGD-T and FAB-T choose their own targets)",
            )),
        },
    }
}

/// The ascent direction of an attack: `∇ₓ L(x, labels)` untargeted, `−∇ₓ L(x, target)` targeted
/// (L the summed cross-entropy, eval mode).
struct Gradient<'a, T: Real, C: Classifier<T> + ?Sized> {
    model: &'a C,
    labels: &'a [usize],
    target: Option<&'a [usize]>,
    _scalar: std::marker::PhantomData<T>,
}

impl<T: Real, C: Classifier<T> + ?Sized> Gradient<'_, T, C> {
    /// The ascent direction at `x [B, C, H, W]`, same shape.
    fn at(&self, x: ArrayView4<T>) -> Result<Array4<T>> {
        match self.target {
            None => Ok(self.model.loss_input_grad(x, self.labels)?.1),
            Some(t) => Ok(-self.model.loss_input_grad(x, t)?.1),
        }
    }
}

/// A per-image norm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lp {
    L1,
    L2,
}

impl Lp {
    /// `‖v‖_p`, accumulated in f64.
    fn norm<T: Real>(self, v: &[T]) -> f64 {
        match self {
            Lp::L1 => v.iter().map(|a| a.f64().abs()).sum(),
            Lp::L2 => v.iter().map(|a| a.f64() * a.f64()).sum::<f64>().sqrt(),
        }
    }
}

/// `sign(v)` with `sign(0) = 0`, as `torch.sign` (Rust's `signum` gives 1 for +0).
fn sign<T: Real>(v: T) -> T {
    if v > T::zero() {
        T::one()
    } else if v < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

/// Clips every entry of `a` to [0, 1].
fn clip_unit<T: Real>(a: &mut Array4<T>) {
    a.mapv_inplace(|v| v.max(T::zero()).min(T::one()));
}

/// `x + δ` clipped to [0, 1].
fn add_clipped<T: Real>(x: ArrayView4<T>, delta: &Array4<T>) -> Array4<T> {
    let mut out = &x + delta;
    clip_unit(&mut out);
    out
}

/// Calls `f(b, image b's entries)` for each image of `a [B, C, H, W]` (standard layout).
fn for_each_image<T: Real>(a: &mut Array4<T>, mut f: impl FnMut(usize, &mut [T])) {
    let per_image: usize = a.shape()[1..].iter().product();
    if per_image == 0 {
        return;
    }
    if !a.is_standard_layout() {
        *a = a.as_standard_layout().into_owned();
    }
    let flat = a.as_slice_mut().expect("standard layout");
    for (b, image) in flat.chunks_exact_mut(per_image).enumerate() {
        f(b, image);
    }
}

/// Scales each image of `a` by `factor(‖image‖_p)` (an f64 factor, cast once).
fn scale_images<T: Real>(a: &mut Array4<T>, p: Lp, mut factor: impl FnMut(f64) -> f64) {
    for_each_image(a, |_, img| {
        let s = T::of(factor(p.norm(img)));
        img.iter_mut().for_each(|v| *v *= s);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_of_zero_is_zero() {
        assert_eq!(sign(0.0_f32), 0.0);
        assert_eq!(sign(-0.0_f64), 0.0);
        assert_eq!(sign(-2.0_f64), -1.0);
        assert_eq!(sign(1e-30_f32), 1.0);
    }

    /// PGD settings with `steps`, an absolute α (or the default rule), a random start or not.
    fn pgd(steps: usize, alpha: Option<f64>, random_start: bool) -> PgdSettings {
        PgdSettings {
            steps,
            step_size: alpha.map_or(StepSize::Madry, StepSize::Absolute),
            random_start,
        }
    }

    #[test]
    fn from_name_rejects_bad_budgets() {
        assert!(Attack::from_name("fgsm", -0.1, pgd(0, None, false)).is_err());
        assert!(Attack::from_name("fgsm", f64::NAN, pgd(0, None, false)).is_err());
        assert!(Attack::from_name("l0", 1.5, pgd(0, None, false)).is_err());
        assert!(Attack::from_name("pgd-l2", 1.0, pgd(0, None, true)).is_err());
        assert!(Attack::from_name("pgd-l2", 1.0, pgd(5, Some(-1.0), true)).is_err());
        assert_eq!(
            Attack::from_name("PGD", 0.3, pgd(40, Some(0.01), false)).unwrap(),
            Attack::PgdLinf {
                eps: 0.3,
                alpha: 0.01,
                steps: 40,
                random_start: false
            }
        );
    }

    #[test]
    fn names_round_trip() {
        for name in ["fgsm", "pgd-linf", "pgd-l2", "l2", "l1", "l0"] {
            let a = Attack::from_name(name, 2.0, pgd(3, None, true)).unwrap();
            assert_eq!(a.name(), name);
            assert_eq!(a.budget(), 2.0);
        }
    }

    #[test]
    fn lp_norms() {
        let v = [3.0_f32, -4.0];
        assert_eq!(Lp::L2.norm(&v), 5.0);
        assert_eq!(Lp::L1.norm(&v), 7.0);
    }
}
