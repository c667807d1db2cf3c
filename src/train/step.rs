//! One batch's gradient of the mean training loss: clean, clean + adversarial, or
//! adversarial only.

use ndarray::{Array4, ArrayView4};

use crate::attacks;
use crate::error::Result;
use crate::models::Model;
use crate::nn::{loss, Ctx, ParamGrads};
use crate::real::Real;
use crate::seeds::ImageRngs;
use crate::train::{AdvLoss, Adversary};

/// What one batch contributes: its training loss, how many of the examples the step was
/// taken on were classified right, and the parameter gradients of the mean loss.
#[derive(Clone, Debug)]
pub struct BatchGradient<T> {
    /// Σ_b of the per-image objective (clean + adversarial cross-entropy for
    /// [`AdvLoss::CleanPlusAdv`]); divide by B for the batch mean.
    pub loss_sum: f64,
    /// Correct predictions on the examples the step descends (the adversarial ones under
    /// adversarial training), from the same forward pass.
    pub correct: usize,
    /// `∂L/∂θ` of the mean loss L by parameter key.
    pub grads: ParamGrads<T>,
}

/// One train-mode forward and backward pass on `x [B, C, H, W]`: the summed cross-entropy,
/// the correct count, and the gradients of the MEAN cross-entropy (PyTorch's
/// `F.cross_entropy` / `F.nll_loss` default) with respect to the parameters.
fn mean_loss_pass<T: Real>(
    model: &Model<T>,
    x: ArrayView4<T>,
    labels: &[usize],
    ctx: &mut Ctx,
) -> Result<(f64, usize, ParamGrads<T>)> {
    let (logits, caches) = model.forward(x, ctx)?;
    let (loss_sum, dlogits) = loss::cross_entropy(logits.view(), labels)?;
    let correct = loss::argmax(logits.view())
        .iter()
        .zip(labels)
        .filter(|(p, y)| p == y)
        .count();
    let inv_b = T::of(1.0 / labels.len().max(1) as f64);
    let (_, grads) = model.backward(&caches, dlogits * inv_b)?;
    Ok((loss_sum.f64(), correct, grads))
}

/// The gradient of one batch's mean training loss at the model's current parameters.
///
/// ```text
/// clean:         L = (1/B) Σ_b CE(f(x_b), y_b)
/// clean+adv:     L = (1/B) Σ_b CE(f(x_b), y_b) + (1/B) Σ_b CE(f(x̃_b), y_b)
/// adv:           L = (1/B) Σ_b CE(f(x̃_b), y_b)
/// x̃ = attacks::perturb(model, x, y, attack, rngs)     (crafted before any update)
/// ```
///
/// The forward passes run in train mode with `ctx` (dropout masks, BatchNorm batch statistics
/// and running-statistics updates), clean pass first, as in the authors' loops; the attack
/// draws image b's random start from `rngs` (one generator per image). `x̃` is treated as a constant (no gradient flows through
/// its construction), as in PyTorch where the perturbed batch is a new leaf.
///
/// # Errors
/// Shape errors, bad labels, attack and operator errors.
pub fn batch_gradient<T: Real>(
    model: &Model<T>,
    x: ArrayView4<T>,
    labels: &[usize],
    adversary: Option<&Adversary>,
    ctx: &mut Ctx,
    rngs: &mut ImageRngs,
) -> Result<BatchGradient<T>> {
    let Some(adv) = adversary else {
        let (loss_sum, correct, grads) = mean_loss_pass(model, x, labels, ctx)?;
        return Ok(BatchGradient {
            loss_sum,
            correct,
            grads,
        });
    };
    let clean = match adv.loss {
        AdvLoss::CleanPlusAdv => Some(mean_loss_pass(model, x, labels, ctx)?),
        AdvLoss::Adv => None,
    };
    let x_adv: Array4<T> = attacks::perturb(model, x, labels, &adv.attack, None, rngs)?;
    let (mut loss_sum, correct, mut grads) = mean_loss_pass(model, x_adv.view(), labels, ctx)?;
    if let Some((clean_sum, _, clean_grads)) = clean {
        loss_sum += clean_sum;
        for (key, g) in clean_grads.map {
            grads.add(key, g);
        }
    }
    Ok(BatchGradient {
        loss_sum,
        correct,
        grads,
    })
}
