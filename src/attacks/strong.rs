//! What the strong attacks share: their ball, APGD's loss, their settings, and the per-image
//! plumbing (images as rows, batches of chosen images, the outcome of a run).

use ndarray::{Array4, ArrayView4};
use serde::{Deserialize, Serialize};

use super::{losses, Lp};
use crate::error::{Error, Result};
use crate::models::Classifier;
use crate::real::Real;

/// The strong attacks' names ([`Attack::strong`](super::Attack::strong)).
pub const STRONG_NAMES: &str = "apgd-ce, apgd-dlr, apgd-t, fab-t, square, autoattack";

/// Square's initial fraction of the image a square covers (AutoAttack's `p_init`).
pub const SQUARE_P_INIT: f64 = 0.8;

/// The ball a strong attack stays in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ball {
    /// `‖δ‖∞ ≤ ε`: every entry moves by at most ε.
    Linf,
    /// `‖δ‖₂ ≤ ε` per image.
    L2,
}

impl Ball {
    /// `"linf"` or `"l2"`.
    pub fn name(self) -> &'static str {
        match self {
            Ball::Linf => "linf",
            Ball::L2 => "l2",
        }
    }

    /// `"L∞"` or `"L2"`.
    pub fn symbol(self) -> &'static str {
        match self {
            Ball::Linf => "L∞",
            Ball::L2 => "L2",
        }
    }

    /// `‖v‖` in this ball's norm, accumulated in f64.
    pub fn norm<T: Real>(self, v: &[T]) -> f64 {
        match self {
            Ball::Linf => v.iter().map(|a| a.f64().abs()).fold(0.0, f64::max),
            Ball::L2 => Lp::L2.norm(v),
        }
    }
}

impl std::str::FromStr for Ball {
    type Err = Error;

    /// `linf` or `l2`.
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "linf" => Ok(Ball::Linf),
            "l2" => Ok(Ball::L2),
            _ => Err(Error::UnknownName {
                what: "norm ball",
                name: s.to_string(),
                expected: "linf, l2".into(),
            }),
        }
    }
}

/// The loss APGD ascends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApgdLoss {
    /// Cross-entropy of the true class.
    Ce,
    /// The difference of logits ratio `−(z_y − max_{i≠y} z_i)/(z_π1 − z_π3)`.
    Dlr,
}

/// The strong attacks' settings, named; each attack uses those it has. The default is
/// AutoAttack's standard version: L∞, 100 iterations, 1 restart, 5000 Square queries,
/// 9 target classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrongSettings {
    /// The ball.
    pub ball: Ball,
    /// Iterations of APGD and FAB (≥ 1).
    pub steps: usize,
    /// Runs of each attack (≥ 1).
    pub restarts: usize,
    /// Queries of Square (≥ 1).
    pub queries: usize,
    /// Target classes of APGD-T and FAB-T (≥ 1, at most the classes − 1).
    pub targets: usize,
}

impl Default for StrongSettings {
    fn default() -> Self {
        Self {
            ball: Ball::Linf,
            steps: 100,
            restarts: 1,
            queries: 5000,
            targets: 9,
        }
    }
}

/// The images of `x [B, C, H, W]`, one row of C·H·W entries each (row-major).
pub(super) fn image_rows<T: Real>(x: ArrayView4<T>) -> Vec<Vec<T>> {
    x.outer_iter()
        .map(|image| image.iter().copied().collect())
        .collect()
}

/// A batch `[m, C, H, W]` of the m given images of C·H·W entries each (row-major).
pub(super) fn image_batch<'a, T: Real>(
    images: impl ExactSizeIterator<Item = &'a [T]>,
    [c, h, w]: [usize; 3],
) -> Array4<T> {
    let m = images.len();
    let mut flat = Vec::with_capacity(m * c * h * w);
    images.for_each(|image| flat.extend_from_slice(image));
    Array4::from_shape_vec((m, c, h, w), flat).expect("every image has C·H·W entries")
}

/// What a strong attack found on the images of its input `[B, C, H, W]`: image b's
/// adversarial image (its clean image while it is not broken) and whether it is broken.
pub(super) struct Outcome<T> {
    pub adv: Array4<T>,
    pub broken: Vec<bool>,
}

impl<T: Real> Outcome<T> {
    /// Nothing broken yet: every image is its clean one.
    pub(super) fn unbroken(x: ArrayView4<T>) -> Self {
        Self {
            adv: x.to_owned(),
            broken: vec![false; x.dim().0],
        }
    }

    /// The positions of the images not broken.
    pub(super) fn robust(&self) -> Vec<usize> {
        (0..self.broken.len())
            .filter(|&b| !self.broken[b])
            .collect()
    }

    /// Image b becomes `adv` (C·H·W entries, row-major).
    pub(super) fn set(&mut self, b: usize, adv: Vec<T>, broken: bool) {
        let mut image = self.adv.index_axis_mut(ndarray::Axis(0), b);
        image.iter_mut().zip(adv).for_each(|(slot, v)| *slot = v);
        self.broken[b] = broken;
    }
}

/// The schedule of the targeted attacks (APGD-T, FAB-T): for each target rank 2 … targets + 1
/// (the class that many places down the clean logits of each image of `x`), `restarts` runs,
/// each only on the images that are still robust; it stops as soon as none is left.
/// `run(target, restart, members)` attacks the images at positions `members` towards
/// `target[b]` (one class per image of `x`) and returns those it broke with their adversarial
/// images (C·H·W entries each).
///
/// # Errors
/// Model errors, and those of `run`.
pub(super) fn targeted_schedule<T: Real, C: Classifier<T> + ?Sized>(
    model: &C,
    x: ArrayView4<T>,
    targets: usize,
    restarts: usize,
    mut run: impl FnMut(&[usize], usize, &[usize]) -> Result<Vec<(usize, Vec<T>)>>,
) -> Result<Outcome<T>> {
    let logits = model.logits(x)?;
    let mut outcome = Outcome::unbroken(x);
    for rank in 2..=targets + 1 {
        let target = losses::ranked_class(logits.view(), rank);
        for restart in 0..restarts {
            let members = outcome.robust();
            if members.is_empty() {
                return Ok(outcome);
            }
            for (b, adv) in run(&target, restart, &members)? {
                outcome.set(b, adv, true);
            }
        }
    }
    Ok(outcome)
}
