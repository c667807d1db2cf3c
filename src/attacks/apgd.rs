//! APGD (Croce & Hein, ICML 2020), with the semantics of fra31/auto-attack `autopgd_base.py`
//! (`APGDAttack`, `APGDAttack_targeted`), L∞ and L2.
//!
//! ```text
//! x⁰    = clip₀₁(x + ε·t/‖t‖)           t ~ U(−1, 1) per entry (L∞), N(0, I) (L2)
//! η⁰    = 2ε
//! zᵏ⁺¹  = P(xᵏ + ηᵏ·dir(∇L(xᵏ)))         dir = sign (L∞), g/(‖g‖₂ + 1e-12) (L2)
//! xᵏ⁺¹  = P(xᵏ + a·(zᵏ⁺¹ − xᵏ) + (1 − a)·(xᵏ − xᵏ⁻¹))   a = 1 at k = 0, then 0.75
//! P     = projection onto the ε-ball around x, then clip₀₁
//! ```
//! Checkpoints: after w₀ = ⌊0.22·N⌋ iterations, then after windows each ⌊0.03·N⌋ shorter,
//! never shorter than ⌊0.06·N⌋ (all at least 1): for N = 100, after iterations 22, 41, 57, 70,
//! 80, 87, 93 and 99. At a checkpoint, an image halves its step η and goes back to its best
//! point (the highest loss so far, with the gradient there) when
//!
//! ```text
//! (a)  #{k in the window : L(xᵏ⁺¹) > L(xᵏ)} ≤ ρ·(window length)          ρ = 0.75
//! (b)  its step did not change at the previous checkpoint and its best loss did not rise
//! ```
//! The loss is the cross-entropy, the DLR loss or the targeted DLR loss (`losses.rs`). An
//! image counts as broken as soon as an iterate (the start included) is misclassified; that
//! iterate is returned for it, and its run stops there (the reference runs on and returns
//! its last misclassified iterate: the same images are broken). Robust images return their
//! best point. Restarts run again from fresh random starts on the images still robust.
//!
//! One deviation: the first window's count (a) compares the first iterate's loss with the
//! start's, as the paper's Algorithm 1 does; the reference compares it with an unfilled slot
//! of its loss history (0).

use ndarray::ArrayView4;
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

use super::losses::Loss;
use super::{image_batch, image_rows, targeted_schedule, Ball, Outcome};
use crate::error::Result;
use crate::models::Classifier;
use crate::real::Real;
use crate::seeds::ImageRngs;

/// The fraction ρ of a window's steps that must raise the loss to keep the step size.
pub const RHO: f64 = 0.75;

/// The momentum weight a of the new step (1 − a goes to the previous move).
const MOMENTUM: f64 = 0.75;

/// The added denominators of the reference's normalisations.
const NORM_FLOOR: f64 = 1e-12;

/// The iteration counts (1-based) after which an N-iteration APGD run checks its step size:
/// the first window is `max(⌊0.22·N⌋, 1)` long, each later one `max(⌊0.03·N⌋, 1)` shorter but
/// at least `max(⌊0.06·N⌋, 1)`; checkpoints past N are not reached.
///
/// ```
/// assert_eq!(nrpm::attacks::apgd_checkpoints(100), [22, 41, 57, 70, 80, 87, 93, 99]);
/// assert_eq!(nrpm::attacks::apgd_checkpoints(10), [2, 3, 4, 5, 6, 7, 8, 9, 10]);
/// ```
pub fn checkpoints(n: usize) -> Vec<usize> {
    let frac = |f: f64| ((f * n as f64) as usize).max(1);
    let (first, shrink, shortest) = (frac(0.22), frac(0.03), frac(0.06));
    let mut out = Vec::new();
    let (mut at, mut window) = (first, first);
    while at <= n {
        out.push(at);
        window = window.saturating_sub(shrink).max(shortest);
        at += window;
    }
    out
}

/// APGD's parameters (see [`super::Attack::Apgd`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Apgd {
    pub ball: Ball,
    pub eps: f64,
    pub steps: usize,
    pub restarts: usize,
}

/// The loss of an APGD run, with the targets it needs.
#[derive(Clone, Copy, Debug)]
pub(super) enum Objective<'a> {
    Ce,
    Dlr,
    /// The targeted DLR loss towards `targets [B]` (one per image of the attack's input).
    DlrTargeted(&'a [usize]),
}

impl Apgd {
    /// `restarts` runs on `x [B, C, H, W]` (true `labels`), each on the images the earlier
    /// ones left robust; image b draws from `rngs.get_mut(at[b])`.
    ///
    /// # Errors
    /// Model errors; too few classes for the loss.
    pub(super) fn run<T: Real, C: Classifier<T> + ?Sized>(
        &self,
        model: &C,
        x: ArrayView4<T>,
        labels: &[usize],
        objective: Objective<'_>,
        rngs: &mut ImageRngs,
        at: &[usize],
    ) -> Result<Outcome<T>> {
        let mut outcome = Outcome::unbroken(x);
        for _ in 0..self.restarts {
            let members = outcome.robust();
            if members.is_empty() {
                break;
            }
            for (b, adv) in self.single_run(model, x, labels, objective, &members, rngs, at)? {
                outcome.set(b, adv, true);
            }
        }
        Ok(outcome)
    }

    /// APGD-T: for rank r = 2 … targets + 1, `restarts` targeted runs towards the class of the
    /// r-th largest clean logit, each on the images still robust.
    ///
    /// # Errors
    /// Model errors; fewer than 4 classes.
    pub(super) fn run_targeted<T: Real, C: Classifier<T> + ?Sized>(
        &self,
        model: &C,
        x: ArrayView4<T>,
        labels: &[usize],
        targets: usize,
        rngs: &mut ImageRngs,
        at: &[usize],
    ) -> Result<Outcome<T>> {
        targeted_schedule(model, x, targets, self.restarts, |target, _, members| {
            let objective = Objective::DlrTargeted(target);
            self.single_run(model, x, labels, objective, members, rngs, at)
        })
    }

    /// One run on the images `members` of `x`; returns the broken ones with their adversarial
    /// images.
    #[allow(clippy::too_many_arguments)]
    fn single_run<T: Real, C: Classifier<T> + ?Sized>(
        &self,
        model: &C,
        x: ArrayView4<T>,
        labels: &[usize],
        objective: Objective<'_>,
        members: &[usize],
        rngs: &mut ImageRngs,
        at: &[usize],
    ) -> Result<Vec<(usize, Vec<T>)>> {
        let clean = image_rows(x);
        let mut walkers: Vec<Walker<T>> = members
            .iter()
            .map(|&b| Walker::start(b, &clean[b], self, rngs.get_mut(at[b])))
            .collect();
        let mut broken = Vec::new();
        self.evaluate(model, x, labels, objective, &mut walkers, &mut broken, true)?;
        let checks = checkpoints(self.steps);
        let mut window = checks.first().copied().unwrap_or(usize::MAX);
        for i in 0..self.steps {
            if walkers.is_empty() {
                break;
            }
            let a = if i == 0 { 1.0 } else { MOMENTUM };
            walkers.iter_mut().for_each(|w| w.step(self, a));
            self.evaluate(
                model,
                x,
                labels,
                objective,
                &mut walkers,
                &mut broken,
                false,
            )?;
            if let Some(pos) = checks.iter().position(|&c| c == i + 1) {
                walkers.iter_mut().for_each(|w| w.checkpoint(window));
                window = checks.get(pos + 1).map_or(usize::MAX, |next| next - i - 1);
            }
        }
        Ok(broken)
    }

    /// Loss, gradient and prediction at every walker's iterate: broken walkers leave (with
    /// their iterate), the others record the loss (as the start's when `start`).
    #[allow(clippy::too_many_arguments)]
    fn evaluate<T: Real, C: Classifier<T> + ?Sized>(
        &self,
        model: &C,
        x: ArrayView4<T>,
        labels: &[usize],
        objective: Objective<'_>,
        walkers: &mut Vec<Walker<T>>,
        broken: &mut Vec<(usize, Vec<T>)>,
        start: bool,
    ) -> Result<()> {
        if walkers.is_empty() {
            return Ok(());
        }
        let (_, c, h, w) = x.dim();
        let batch = image_batch(walkers.iter().map(|w| w.adv.as_slice()), [c, h, w]);
        let y: Vec<usize> = walkers.iter().map(|w| labels[w.image]).collect();
        let targets: Vec<usize>;
        let loss = match objective {
            Objective::Ce => Loss::Ce,
            Objective::Dlr => Loss::Dlr,
            Objective::DlrTargeted(t) => {
                targets = walkers.iter().map(|w| t[w.image]).collect();
                Loss::DlrTargeted(&targets)
            }
        };
        let out = loss.at(model, batch.view(), &y)?;
        let grads = image_rows(out.grad.view());
        let mut kept = Vec::with_capacity(walkers.len());
        for (k, (mut walker, grad)) in walkers.drain(..).zip(grads).enumerate() {
            if out.pred[k] != y[k] {
                broken.push((walker.image, walker.adv));
                continue;
            }
            walker.record(out.loss[k], grad, start);
            kept.push(walker);
        }
        *walkers = kept;
        Ok(())
    }
}

/// One image's APGD state.
struct Walker<T> {
    /// Its position in the attack's input.
    image: usize,
    clean: Vec<T>,
    adv: Vec<T>,
    /// The previous iterate (for the momentum term).
    prev: Vec<T>,
    grad: Vec<T>,
    best: Vec<T>,
    grad_best: Vec<T>,
    loss_best: f64,
    /// The loss of the latest iterate.
    loss_last: f64,
    /// Iterations of the current window whose loss rose.
    increases: usize,
    /// The best loss at the previous checkpoint.
    best_at_check: f64,
    /// Whether the step was halved at the previous checkpoint (true before the first, as
    /// in the reference, so that condition (b) cannot hold there).
    reduced_at_check: bool,
    /// The step size η.
    step: f64,
}

impl<T: Real> Walker<T> {
    /// The random start `clip₀₁(x + ε·t/‖t‖)` of image `image`.
    fn start(image: usize, clean: &[T], apgd: &Apgd, rng: &mut rand::rngs::StdRng) -> Self {
        let t: Vec<f64> = match apgd.ball {
            Ball::Linf => (0..clean.len())
                .map(|_| 2.0 * rng.random::<f64>() - 1.0)
                .collect(),
            Ball::L2 => (0..clean.len())
                .map(|_| StandardNormal.sample(&mut *rng))
                .collect(),
        };
        let scale = apgd.eps / (apgd.ball.norm(&t) + NORM_FLOOR);
        let adv: Vec<T> = clean
            .iter()
            .zip(&t)
            .map(|(&c, &t)| T::of((c.f64() + scale * t).clamp(0.0, 1.0)))
            .collect();
        Self {
            image,
            clean: clean.to_vec(),
            prev: adv.clone(),
            best: adv.clone(),
            adv,
            grad: Vec::new(),
            grad_best: Vec::new(),
            loss_best: f64::NEG_INFINITY,
            loss_last: f64::NEG_INFINITY,
            increases: 0,
            best_at_check: f64::NEG_INFINITY,
            reduced_at_check: true,
            step: 2.0 * apgd.eps,
        }
    }

    /// Takes the loss and gradient at the current iterate.
    fn record(&mut self, loss: f64, grad: Vec<T>, start: bool) {
        if start {
            self.grad_best = grad.clone();
            self.loss_best = loss;
            self.best_at_check = loss;
        } else {
            if loss > self.loss_last {
                self.increases += 1;
            }
            if loss > self.loss_best {
                self.best.clone_from(&self.adv);
                self.grad_best.clone_from(&grad);
                self.loss_best = loss;
            }
        }
        self.loss_last = loss;
        self.grad = grad;
    }

    /// One momentum step of weight `a`.
    fn step(&mut self, apgd: &Apgd, a: f64) {
        let dir = direction(apgd.ball, &self.grad, self.step);
        let z: Vec<f64> = self
            .adv
            .iter()
            .zip(&dir)
            .map(|(x, d)| x.f64() + d)
            .collect();
        let z = project(apgd.ball, apgd.eps, &self.clean, z);
        let moved: Vec<f64> = (0..z.len())
            .map(|i| {
                let (x, prev) = (self.adv[i].f64(), self.prev[i].f64());
                x + a * (z[i] - x) + (1.0 - a) * (x - prev)
            })
            .collect();
        let next = project(apgd.ball, apgd.eps, &self.clean, moved);
        self.prev = std::mem::replace(&mut self.adv, next.into_iter().map(T::of).collect());
    }

    /// The checkpoint at the end of a window of `window` iterations: conditions (a) and (b).
    fn checkpoint(&mut self, window: usize) {
        let oscillating = self.increases as f64 <= window as f64 * RHO;
        let stalled = !self.reduced_at_check && self.best_at_check >= self.loss_best;
        let reduce = oscillating || stalled;
        self.reduced_at_check = reduce;
        self.best_at_check = self.loss_best;
        self.increases = 0;
        if reduce {
            self.step /= 2.0;
            self.adv.clone_from(&self.best);
            self.grad.clone_from(&self.grad_best);
        }
    }
}

/// The step `η·dir(g)` in f64.
fn direction<T: Real>(ball: Ball, g: &[T], step: f64) -> Vec<f64> {
    match ball {
        Ball::Linf => g.iter().map(|v| step * super::sign(*v).f64()).collect(),
        Ball::L2 => {
            let scale = step / (ball.norm(g) + NORM_FLOOR);
            g.iter().map(|v| scale * v.f64()).collect()
        }
    }
}

/// `clip₀₁(x + Π(p − x))`, Π the projection onto the ε-ball as the reference computes it
/// (L2: `δ·min(ε, ‖δ‖₂)/(‖δ‖₂ + 1e-12)`).
pub(super) fn project<T: Real>(ball: Ball, eps: f64, x: &[T], p: Vec<f64>) -> Vec<f64> {
    let mut delta: Vec<f64> = p.iter().zip(x).map(|(p, x)| p - x.f64()).collect();
    match ball {
        Ball::Linf => delta.iter_mut().for_each(|d| *d = d.clamp(-eps, eps)),
        Ball::L2 => {
            let n = ball.norm(&delta);
            let s = n.min(eps) / (n + NORM_FLOOR);
            delta.iter_mut().for_each(|d| *d *= s);
        }
    }
    delta
        .iter()
        .zip(x)
        .map(|(d, x)| (x.f64() + d).clamp(0.0, 1.0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_match_the_reference_for_n_100() {
        assert_eq!(checkpoints(100), [22, 41, 57, 70, 80, 87, 93, 99]);
        // N = 1000: windows 220, 190, …, then 60 from 400 on.
        let c = checkpoints(1000);
        assert_eq!(&c[..3], [220, 410, 570]);
        assert!(c.windows(2).all(|w| w[1] - w[0] >= 60));
        assert_eq!(checkpoints(1), [1]);
    }

    #[test]
    fn checkpoint_halves_the_step_on_oscillation_or_stall() {
        let apgd = Apgd {
            ball: Ball::Linf,
            eps: 0.1,
            steps: 100,
            restarts: 1,
        };
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        let mut w = Walker::start(0, &[0.5_f32; 4], &apgd, &mut rng);
        w.record(1.0, vec![0.0; 4], true);
        // 17 increases in a window of 22 > 0.75·22 = 16.5: keep the step.
        w.increases = 17;
        w.loss_best = 2.0;
        w.checkpoint(22);
        assert_eq!((w.step, w.reduced_at_check), (0.2, false));
        // 16 ≤ 16.5: halve.
        w.increases = 16;
        w.loss_best = 3.0;
        w.checkpoint(22);
        assert_eq!((w.step, w.reduced_at_check), (0.1, true));
        // Many increases, but the step was halved last time and the best did not rise:
        // (b) needs an unchanged step, so keep it.
        w.increases = 22;
        w.checkpoint(22);
        assert_eq!(w.step, 0.1);
        // Now the step was kept and the best loss stayed at 3.0: (b) halves it.
        w.increases = 22;
        w.checkpoint(22);
        assert_eq!(w.step, 0.05);
    }

    #[test]
    fn projection_stays_in_the_ball_and_the_box() {
        let x = [0.0_f32, 0.5, 1.0];
        let p = project(Ball::Linf, 0.1, &x, vec![-0.5, 0.9, 1.05]);
        assert_eq!(p, vec![0.0, 0.6, 1.0]);
        let p = project(Ball::L2, 0.5, &x, vec![0.0, 1.5, 1.0]);
        assert!((p[1] - 1.0).abs() < 1e-9);
        let p = project(Ball::L2, 0.5, &x, vec![0.0, 0.6, 1.0]);
        assert!((p[1] - 0.6).abs() < 1e-9);
    }
}
