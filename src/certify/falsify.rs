//! The upper side of the bracket: attacks that look for an adversarial example inside the
//! threat set a certificate covers.
//!
//! A [`Falsifier`] returns one candidate per image; the bracket checks every candidate itself
//! (inside the ball, in [0, 1], misclassified) before it counts an image as broken, so a
//! falsifier can only make the upper bound tighter, never wrong. Another attack (AutoAttack,
//! APGD, …) joins the bracket by implementing the trait.
//!
//! ```text
//! PgdRestarts (L∞)   PGD (nrpm::attacks) from the clean image, then random restarts, with
//!                    gradients from the model and, for NRPM models, from its LPM twin
//!                    (BPDA-style); an image counts as broken by any of the runs
//! GreedyL0 (ℓ0)      k greedy steps: set the unchanged pixel with the largest first-order
//!                    gain g_d·(v_d − x_d), v_d = 1 if g_d > 0 else 0, to v_d; then the
//!                    authors' one-step L0 attack; also from the LPM twin's gradients
//! ```

use ndarray::{Array4, ArrayView4, Axis};

use crate::attacks::{perturb, Attack, PgdSettings, StepSize};
use crate::error::Result;
use crate::models::Model;
use crate::real::Real;
use crate::seeds::{derive, stream, ImageRngs};

/// An attack the bracket runs at each budget.
pub trait Falsifier<T: Real>: Sync {
    /// What it runs, in words (for reports).
    fn describe(&self) -> String;

    /// One candidate `x' [B, C, H, W]` per image of `x` (labels `[B]`, dataset indices
    /// `[B]` that name its random draws), within `budget` of `x` in the bracket's threat model.
    ///
    /// # Errors
    /// Attack and model errors.
    fn attack(
        &self,
        model: &Model<T>,
        x: ArrayView4<T>,
        labels: &[usize],
        indices: &[usize],
        budget: f64,
    ) -> Result<Array4<T>>;
}

/// The gradient sources of an attack: the model, and its LPM twin when it runs NRPM.
fn sources<T: Real>(model: &Model<T>, lpm_gradients: bool) -> Vec<Model<T>> {
    let mut out = vec![model.clone()];
    if lpm_gradients && !model.lambdas().is_empty() {
        out.push(model.lpm_twin());
    }
    out
}

/// Runs `attempt` on the images not broken yet and keeps, per image, the first candidate the
/// model misclassifies (the last attempt otherwise).
fn keep_first_break<T: Real>(
    model: &Model<T>,
    x: ArrayView4<T>,
    labels: &[usize],
    attempts: usize,
    mut attempt: impl FnMut(usize, &[usize]) -> Result<Array4<T>>,
) -> Result<Array4<T>> {
    let mut best = x.to_owned();
    let mut open: Vec<usize> = (0..labels.len()).collect();
    for a in 0..attempts {
        if open.is_empty() {
            break;
        }
        let adv = attempt(a, &open)?;
        let pred = model.predict(adv.view())?;
        let mut still = Vec::new();
        for (j, &i) in open.iter().enumerate() {
            best.index_axis_mut(Axis(0), i)
                .assign(&adv.index_axis(Axis(0), j));
            if pred[j] == labels[i] {
                still.push(i);
            }
        }
        open = still;
    }
    Ok(best)
}

/// PGD-L∞ with restarts (and the LPM twin's gradients for NRPM models).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PgdRestarts {
    /// Gradient steps per run (α = 2.5·ε/steps).
    pub steps: usize,
    /// Runs per gradient source: the first from the clean image, the others from random
    /// points of the ball.
    pub restarts: usize,
    /// Also attack with the gradients of the model's LPM twin.
    pub lpm_gradients: bool,
    /// Seed of the random starts (image i, run r, source s: `derive(seed, [r, s])`, i).
    pub seed: u64,
}

impl Default for PgdRestarts {
    /// 100 steps, 5 runs per source, LPM-twin gradients on, seed 0.
    fn default() -> Self {
        Self {
            steps: 100,
            restarts: 5,
            lpm_gradients: true,
            seed: 0,
        }
    }
}

impl<T: Real> Falsifier<T> for PgdRestarts {
    fn describe(&self) -> String {
        format!(
            "PGD-{} L∞ (α = 2.5·ε/steps), {} run(s) per gradient source (clean start, then random){}",
            self.steps,
            self.restarts,
            if self.lpm_gradients { "; sources: the model and its LPM twin" } else { "" }
        )
    }

    fn attack(
        &self,
        model: &Model<T>,
        x: ArrayView4<T>,
        labels: &[usize],
        indices: &[usize],
        eps: f64,
    ) -> Result<Array4<T>> {
        if eps == 0.0 {
            return Ok(x.to_owned());
        }
        let sources = sources(model, self.lpm_gradients);
        let runs = self.restarts.max(1);
        keep_first_break(model, x, labels, runs * sources.len(), |a, open| {
            let (source, run) = (a / runs, a % runs);
            let settings = PgdSettings {
                steps: self.steps.max(1),
                step_size: StepSize::Madry,
                random_start: run > 0,
            };
            let attack = Attack::pgd_linf(eps, settings)?;
            let seed = derive(self.seed, &[run as u64, source as u64]);
            let mut rngs =
                ImageRngs::for_images(seed, stream::ATTACK, open.iter().map(|&i| indices[i]));
            let xs = x.select(Axis(0), open);
            let ys: Vec<usize> = open.iter().map(|&i| labels[i]).collect();
            perturb(&sources[source], xs.view(), &ys, &attack, None, &mut rngs)
        })
    }
}

/// Greedy ℓ0 search, then the authors' one-step L0 attack, from the model's and the LPM
/// twin's gradients.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GreedyL0 {
    /// Also attack with the gradients of the model's LPM twin.
    pub lpm_gradients: bool,
}

impl GreedyL0 {
    /// k greedy pixel changes on images `x` from `source`'s loss gradient.
    fn greedy<T: Real>(
        source: &Model<T>,
        x: ArrayView4<T>,
        labels: &[usize],
        k: usize,
    ) -> Result<Array4<T>> {
        let mut adv = x.as_standard_layout().into_owned();
        let per: usize = x.shape()[1..].iter().product();
        let mut changed = vec![vec![false; per]; labels.len()];
        for _ in 0..k {
            let (_, g, _) = source.loss_input_grad(adv.view(), labels)?;
            for (b, (mut img, grad)) in adv.outer_iter_mut().zip(g.outer_iter()).enumerate() {
                let flat = img.as_slice_mut().expect("standard layout");
                let grad = grad.as_standard_layout();
                let gs = grad.as_slice().expect("standard layout");
                let pick = (0..per)
                    .filter(|&d| !changed[b][d])
                    .map(|d| {
                        let to = if gs[d] > T::zero() {
                            T::one()
                        } else {
                            T::zero()
                        };
                        (d, to, gs[d] * (to - flat[d]))
                    })
                    .max_by(|a, b| a.2.partial_cmp(&b.2).unwrap_or(std::cmp::Ordering::Equal));
                if let Some((d, to, gain)) = pick {
                    if gain > T::zero() {
                        flat[d] = to;
                        changed[b][d] = true;
                    }
                }
            }
        }
        Ok(adv)
    }
}

impl<T: Real> Falsifier<T> for GreedyL0 {
    fn describe(&self) -> String {
        format!(
            "greedy ℓ0 (k gradient steps), then the authors' one-step L0 attack{}",
            if self.lpm_gradients {
                "; sources: the model and its LPM twin"
            } else {
                ""
            }
        )
    }

    fn attack(
        &self,
        model: &Model<T>,
        x: ArrayView4<T>,
        labels: &[usize],
        _indices: &[usize],
        budget: f64,
    ) -> Result<Array4<T>> {
        let k = budget as usize;
        if k == 0 {
            return Ok(x.to_owned());
        }
        let sources = sources(model, self.lpm_gradients);
        keep_first_break(model, x, labels, 2 * sources.len(), |a, open| {
            let source = &sources[a / 2];
            let xs = x.select(Axis(0), open);
            let ys: Vec<usize> = open.iter().map(|&i| labels[i]).collect();
            match a % 2 {
                0 => Self::greedy(source, xs.view(), &ys, k),
                _ => {
                    let mut rngs = ImageRngs::for_images(0, stream::ATTACK, 0..ys.len());
                    perturb(
                        source,
                        xs.view(),
                        &ys,
                        &Attack::L0 { pixels: k },
                        None,
                        &mut rngs,
                    )
                }
            }
        })
    }
}
