//! Projected gradient descent (Madry et al. 2018) in the L∞ and L2 balls.
//!
//! ```text
//! x⁰   = clip₀₁(x + start)                       (x⁰ = x without a random start)
//! xᵗ⁺¹ = clip₀₁(x + Π(xᵗ + α·dir(g(xᵗ)) − x))    t = 0 .. steps−1
//!
//! L∞ (the authors' LinfPGDAttack):
//!   start = U(−ε, ε) per entry,  dir(g) = sign(g),  Π(δ) = clamp(δ, −ε, ε) per entry
//! L2 (torchattacks PGDL2, as the authors' test script uses it):
//!   start = ε·u·n/‖n‖₂ with n ~ N(0, I), u ~ U(0, 1) per image
//!   dir(g) = g/(‖g‖₂ + 1e-10),  Π(δ) = δ·min(1, ε/‖δ‖₂)
//! ```
//! Norms are per image. Clipping to [0, 1] never enlarges |xᵗ − x| entrywise, so each iterate
//! stays in the ε-ball.

use ndarray::{Array4, ArrayView4, Ix4};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

use super::fgsm::sign_step;
use super::{add_clipped, scale_images, Ball, Gradient, Lp};
use crate::error::Result;
use crate::models::Classifier;
use crate::real::Real;
use crate::seeds::ImageRngs;

/// The 1e-10 the authors (and torchattacks) add to gradient norms before dividing.
pub(super) const NORM_FLOOR: f64 = 1e-10;

/// PGD's parameters (see [`super::Attack::PgdLinf`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Pgd {
    pub ball: Ball,
    pub eps: f64,
    pub alpha: f64,
    pub steps: usize,
    pub random_start: bool,
}

impl Pgd {
    /// `steps` projected steps from `x [B, C, H, W]` (or from a random point of the ball).
    pub(super) fn run<T: Real, C: Classifier<T> + ?Sized>(
        &self,
        grad: &Gradient<T, C>,
        x: ArrayView4<T>,
        rngs: &mut ImageRngs,
    ) -> Result<Array4<T>> {
        let mut adv = match self.random_start {
            true => add_clipped(x, &self.random_start(x.raw_dim(), rngs)),
            false => x.to_owned(),
        };
        for _ in 0..self.steps {
            let step = self.direction(grad.at(adv.view())?);
            let mut delta = adv + step - x;
            self.project(&mut delta);
            adv = add_clipped(x, &delta);
        }
        Ok(adv)
    }

    /// A random point of the ball for each image, `[B, C, H, W]`; image b draws from its own
    /// generator.
    fn random_start<T: Real>(&self, shape: Ix4, rngs: &mut ImageRngs) -> Array4<T> {
        let eps = self.eps;
        let mut start = Array4::zeros(shape);
        for (image, rng) in start.outer_iter_mut().zip(rngs.iter_mut()) {
            let mut image = image;
            match self.ball {
                Ball::Linf => {
                    image.mapv_inplace(|_| T::of(eps * (2.0 * rng.random::<f64>() - 1.0)))
                }
                Ball::L2 => {
                    image.mapv_inplace(|_| T::of(StandardNormal.sample(&mut *rng)));
                    let norm = image.iter().map(|v| v.f64() * v.f64()).sum::<f64>().sqrt();
                    let radius = eps * rng.random::<f64>();
                    let scale = T::of(if norm > 0.0 { radius / norm } else { 0.0 });
                    image.mapv_inplace(|v| v * scale);
                }
            }
        }
        start
    }

    /// The step `α·dir(g)`.
    fn direction<T: Real>(&self, mut g: Array4<T>) -> Array4<T> {
        match self.ball {
            Ball::Linf => sign_step(g, T::of(self.alpha)),
            Ball::L2 => {
                scale_images(&mut g, Lp::L2, |n| self.alpha / (n + NORM_FLOOR));
                g
            }
        }
    }

    /// `δ ← Π(δ)`: the nearest point of the ball.
    fn project<T: Real>(&self, delta: &mut Array4<T>) {
        let eps = self.eps;
        match self.ball {
            Ball::Linf => {
                let e = T::of(eps);
                delta.mapv_inplace(|d| d.max(-e).min(e));
            }
            Ball::L2 => scale_images(delta, Lp::L2, |n| if n > eps { eps / n } else { 1.0 }),
        }
    }
}
