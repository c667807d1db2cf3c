//! The step learning-rate schedule of the authors' CIFAR script (`adjust_learning_rate`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Learning rate divided by 10 at each milestone epoch:
///
/// ```text
/// η(e) = η₀ · 0.1^#{m ∈ milestones : m ≤ e}        (e = 0-based epoch)
/// ```
///
/// The authors' ResNet18/34 training uses milestones 50 and 75 (ResNet10: 100 and 150).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSchedule {
    base: f64,
    milestones: Vec<usize>,
}

impl StepSchedule {
    /// A schedule from η₀ and strictly increasing milestone epochs (may be empty).
    ///
    /// # Errors
    /// [`Error::Config`] if η₀ is not a finite number > 0 or the milestones are not strictly
    /// increasing.
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// let s = nrpm::train::StepSchedule::new(0.1, vec![50, 75])?;
    /// assert_eq!(s.lr(49), 0.1);
    /// assert!((s.lr(50) - 0.01).abs() < 1e-15);
    /// assert!((s.lr(99) - 0.001).abs() < 1e-15);
    /// assert!(nrpm::train::StepSchedule::new(0.1, vec![75, 50]).is_err());
    /// # Ok(()) }
    /// ```
    pub fn new(base: f64, milestones: Vec<usize>) -> Result<Self> {
        if !(base.is_finite() && base > 0.0) {
            return Err(Error::config("lr", base, "must be a finite number > 0"));
        }
        if milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::config(
                "lr steps",
                format!("{milestones:?}"),
                "must be strictly increasing epochs",
            ));
        }
        Ok(Self { base, milestones })
    }

    /// η₀.
    pub fn base(&self) -> f64 {
        self.base
    }

    /// The milestone epochs.
    pub fn milestones(&self) -> &[usize] {
        &self.milestones
    }

    /// The learning rate of 0-based `epoch` (divided the way PyTorch's code does: once per
    /// milestone passed, so 0.1 → 0.01 → 0.001 rounds like `lr /= 10` twice).
    pub fn lr(&self, epoch: usize) -> f64 {
        self.milestones
            .iter()
            .filter(|&&m| m <= epoch)
            .fold(self.base, |lr, _| lr / 10.0)
    }
}
