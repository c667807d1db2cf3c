//! The reprogramming paradigms of §4 (Fig. 2) and plain training from scratch: which
//! parameters each one trains.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nn::Role;

/// What a run trains, by parameter [`Role`].
///
/// ```text
///                 weights, biases (a_d)   λ (θ of each NRPM layer)   BN running statistics
/// Fixed           frozen                  fixed hyper-parameter      untouched (no training)  (Paradigm 1)
/// LearnLambda     frozen                  learned                    updated*                 (Paradigm 2)
/// FineTune        learned                 learned                    updated*                 (Paradigm 3)
/// Scratch         learned                 learned (if any)           updated*                 (not in the paper)
/// ```
///
/// `*` The optimiser never touches BatchNorm running statistics (they are buffers, not
/// parameters), but every train-mode forward pass updates them, as in PyTorch. The authors'
/// CIFAR script does exactly that in its λ-only paradigm (`net.train()` with every parameter's
/// `requires_grad` off), so Paradigm 2 here moves them too; set
/// [`TrainConfig::frozen_batchnorm`](crate::train::TrainConfig::frozen_batchnorm) (CLI
/// `--frozen-batchnorm`) to run BatchNorm in eval mode and keep them as loaded.
/// `LearnLambda` and `FineTune` learn λ through whatever parametrisation the model's NRPM
/// layers carry; the CLI builds them with λ = sigmoid(θ), the authors' learnable path, unless
/// `--lambda-param raw` is given. `Scratch` trains the same parameters as `FineTune` but starts
/// from the seeded initialisation instead of a trained checkpoint (the CLI enforces that
/// distinction); it is how plain LPM models (e.g. the 784-256-64-10 MLP) are trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Paradigm {
    /// Paradigm 1: no training; λ is a fixed hyper-parameter (same for every layer).
    Fixed,
    /// Paradigm 2: model parameters frozen, the per-layer λ learned.
    LearnLambda,
    /// Paradigm 3: model parameters and λ learned together.
    FineTune,
    /// Plain training of every parameter from a fresh initialisation.
    Scratch,
}

impl Paradigm {
    /// The names [`Paradigm::from_str`] accepts.
    pub const NAMES: &'static str = "1 (fixed), 2 (learn-lambda), 3 (fine-tune), scratch";

    /// Whether parameters of `role` are updated by the optimiser.
    ///
    /// # Example
    /// ```
    /// use nrpm::nn::Role;
    /// use nrpm::train::Paradigm;
    /// assert!(Paradigm::LearnLambda.trains(Role::Lambda));
    /// assert!(!Paradigm::LearnLambda.trains(Role::Weight));
    /// assert!(Paradigm::FineTune.trains(Role::Bias));
    /// assert!(!Paradigm::Scratch.trains(Role::Buffer));
    /// ```
    pub fn trains(self, role: Role) -> bool {
        match (self, role) {
            (_, Role::Buffer) | (Paradigm::Fixed, _) => false,
            (Paradigm::LearnLambda, r) => r == Role::Lambda,
            (Paradigm::FineTune | Paradigm::Scratch, _) => true,
        }
    }

    /// Whether the run has anything to train (every paradigm but `Fixed`).
    pub fn is_trained(self) -> bool {
        self != Paradigm::Fixed
    }

    /// The paper's number (1, 2, 3), or `None` for `Scratch`.
    pub fn number(self) -> Option<u8> {
        match self {
            Paradigm::Fixed => Some(1),
            Paradigm::LearnLambda => Some(2),
            Paradigm::FineTune => Some(3),
            Paradigm::Scratch => None,
        }
    }

    /// `"1"`, `"2"`, `"3"` or `"scratch"`.
    pub fn name(self) -> &'static str {
        match self {
            Paradigm::Fixed => "1",
            Paradigm::LearnLambda => "2",
            Paradigm::FineTune => "3",
            Paradigm::Scratch => "scratch",
        }
    }
}

impl FromStr for Paradigm {
    type Err = Error;

    /// `1 | fixed`, `2 | learn-lambda`, `3 | fine-tune`, `scratch`.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "1" | "fixed" => Ok(Paradigm::Fixed),
            "2" | "learn-lambda" => Ok(Paradigm::LearnLambda),
            "3" | "fine-tune" => Ok(Paradigm::FineTune),
            "scratch" => Ok(Paradigm::Scratch),
            _ => Err(Error::UnknownName {
                what: "paradigm",
                name: s.to_string(),
                expected: Paradigm::NAMES.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_figure_2() {
        let roles = [Role::Weight, Role::Bias, Role::Buffer, Role::Lambda];
        let trained = |p: Paradigm| roles.map(|r| p.trains(r));
        assert_eq!(trained(Paradigm::Fixed), [false; 4]);
        assert_eq!(trained(Paradigm::LearnLambda), [false, false, false, true]);
        assert_eq!(trained(Paradigm::FineTune), [true, true, false, true]);
        assert_eq!(trained(Paradigm::Scratch), [true, true, false, true]);
    }

    #[test]
    fn names_round_trip_and_unknown_is_an_error() {
        for p in [
            Paradigm::Fixed,
            Paradigm::LearnLambda,
            Paradigm::FineTune,
            Paradigm::Scratch,
        ] {
            assert_eq!(p.name().parse::<Paradigm>().unwrap(), p);
        }
        assert_eq!("fine-tune".parse::<Paradigm>().unwrap(), Paradigm::FineTune);
        assert!(matches!(
            "4".parse::<Paradigm>(),
            Err(Error::UnknownName { .. })
        ));
    }
}
