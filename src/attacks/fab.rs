//! FAB-T, the targeted Fast Adaptive Boundary attack (Croce & Hein, ICML 2020) as AutoAttack's
//! standard version runs it (fra31/auto-attack `fab_base.py`, `fab_pt.py`,
//! `fab_projections.py`), L∞ and L2. FAB looks for the smallest perturbation that crosses the
//! decision boundary towards a target class t; an image is broken when it finds one of norm
//! at most ε.
//!
//! ```text
//! f(x')  = z_t(x') − z_y(x'),  g = ∇f(x')           (one vector-Jacobian product)
//! H      = { u : f(x') + ⟨g, u − x'⟩ = 0 }           the linearised boundary
//! d(p)   = argmin ‖d‖ over p + d ∈ H ∩ [0, 1]ⁿ       (or the box corner nearest H if none)
//! α      = clip(‖d(x')‖/(‖d(x')‖ + ‖d(x)‖), 0, 0.1)
//! x'    ← clip₀₁((1 − α)·(x' + 1.05·d(x')) + α·(x + 1.05·d(x)))
//! when argmax z(x') ≠ y: keep x' if ‖x' − x‖ is the smallest so far, then x' ← x + 0.9·(x' − x)
//! ```
//! For rank r = 2 … targets + 1, t is the class of the r-th largest clean logit; each target
//! runs `restarts` times (the first from x, later ones from `clip₀₁(x + (ε/2)·u/‖u‖)`, u
//! uniform in [−1, 1]ⁿ (L∞) or normal (L2)) on the images still robust, `steps` iterations.
//!
//! The projection minimises over one scalar τ ≥ 0: with s the side of H that p is on, each
//! entry moves towards the box edge that brings ⟨s·g, ·⟩ down, by `min(τ, room)` (L∞) or
//! `min(τ·|g_i|, room)` (L2, the KKT form), and ⟨s·g, d(τ)⟩ is piecewise linear and
//! monotone in τ, so sorting the breakpoints gives the exact τ (the reference bisects over the
//! same sorted breakpoints). An image stops as soon as it has a point within ε (its robustness
//! is then settled; the reference goes on shrinking the perturbation).

use ndarray::{Array2, ArrayView2, ArrayView4};
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use super::{image_batch, image_rows, targeted_schedule, Ball, Outcome};
use crate::error::Result;
use crate::models::Classifier;
use crate::real::Real;
use crate::seeds::ImageRngs;

/// The largest weight α of the step from the clean image.
const ALPHA_MAX: f64 = 0.1;

/// The overshoot η of each projection step.
const OVERSHOOT: f64 = 1.05;

/// The backward step β towards the clean image after a success.
const BACKWARD: f64 = 0.9;

/// The floor of the projection distances in α.
const DISTANCE_FLOOR: f64 = 1e-8;

/// FAB-T's parameters (see [`super::Attack::FabT`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Fab {
    pub ball: Ball,
    pub eps: f64,
    pub steps: usize,
    pub restarts: usize,
}

/// One image's search state.
struct Seeker<T> {
    image: usize,
    target: usize,
    clean: Vec<f64>,
    point: Vec<f64>,
    /// The smallest ‖x' − x‖ of a misclassified x' so far, with x'.
    found: Option<(f64, Vec<T>)>,
}

impl Fab {
    /// FAB-T on `x [B, C, H, W]`: `targets` target classes, `restarts` runs each, every run on
    /// the images still robust; image b draws from `rngs.get_mut(at[b])`.
    ///
    /// # Errors
    /// Model errors.
    pub(super) fn run_targeted<T: Real, C: Classifier<T> + ?Sized>(
        &self,
        model: &C,
        x: ArrayView4<T>,
        labels: &[usize],
        targets: usize,
        rngs: &mut ImageRngs,
        at: &[usize],
    ) -> Result<Outcome<T>> {
        targeted_schedule(
            model,
            x,
            targets,
            self.restarts,
            |target, restart, members| {
                let run = Run {
                    fab: self,
                    labels,
                    target,
                    random_start: restart > 0,
                };
                run.single(model, x, members, rngs, at)
            },
        )
    }
}

/// One FAB-T run towards `target` (one class per image of the attack's input).
struct Run<'a> {
    fab: &'a Fab,
    labels: &'a [usize],
    target: &'a [usize],
    random_start: bool,
}

impl Run<'_> {
    /// The images of `members` it breaks, with a misclassified image within ε each.
    fn single<T: Real, C: Classifier<T> + ?Sized>(
        &self,
        model: &C,
        x: ArrayView4<T>,
        members: &[usize],
        rngs: &mut ImageRngs,
        at: &[usize],
    ) -> Result<Vec<(usize, Vec<T>)>> {
        let (_, c, h, w) = x.dim();
        let clean = image_rows(x);
        let mut seekers: Vec<Seeker<T>> = members
            .iter()
            .map(|&b| {
                let clean: Vec<f64> = clean[b].iter().map(|v| v.f64()).collect();
                let point = match self.random_start {
                    true => self.start(&clean, rngs.get_mut(at[b])),
                    false => clean.clone(),
                };
                Seeker {
                    image: b,
                    target: self.target[b],
                    clean,
                    point,
                    found: None,
                }
            })
            .collect();
        let mut broken = Vec::new();
        for _ in 0..self.fab.steps {
            if seekers.is_empty() {
                break;
            }
            let points: Vec<Vec<T>> = seekers
                .iter()
                .map(|s| s.point.iter().map(|&v| T::of(v)).collect())
                .collect();
            let batch = image_batch(points.iter().map(Vec::as_slice), [c, h, w]);
            let (logits, grads) = model.logits_input_grad(batch.view(), &mut |z| {
                Ok(self.difference_weights(z, &seekers))
            })?;
            let grads = image_rows(grads.view());
            seekers
                .par_iter_mut()
                .zip(grads.par_iter().zip(logits.outer_iter().into_par_iter()))
                .for_each(|(s, (g, z))| {
                    let f = z[s.target].f64() - z[self.labels[s.image]].f64();
                    self.step(s, f, g);
                });
            self.keep_successes(model, [c, h, w], &mut seekers, &mut broken)?;
        }
        Ok(broken)
    }

    /// The random start `clip₀₁(x + (ε/2)·u/‖u‖)`.
    fn start(&self, clean: &[f64], rng: &mut rand::rngs::StdRng) -> Vec<f64> {
        let u: Vec<f64> = match self.fab.ball {
            Ball::Linf => (0..clean.len())
                .map(|_| 2.0 * rng.random::<f64>() - 1.0)
                .collect(),
            Ball::L2 => (0..clean.len())
                .map(|_| StandardNormal.sample(&mut *rng))
                .collect(),
        };
        let scale = 0.5 * self.fab.eps / self.fab.ball.norm(&u).max(f64::MIN_POSITIVE);
        clean
            .iter()
            .zip(&u)
            .map(|(x, u)| (x + scale * u).clamp(0.0, 1.0))
            .collect()
    }

    /// The weights `v [m, K]` with `Σ_k v_k·z_k = z_t − z_y` per seeker.
    fn difference_weights<T: Real>(&self, z: ArrayView2<T>, seekers: &[Seeker<T>]) -> Array2<T> {
        let mut v = Array2::zeros(z.raw_dim());
        for (k, s) in seekers.iter().enumerate() {
            v[[k, s.target]] = T::one();
            v[[k, self.labels[s.image]]] = -T::one();
        }
        v
    }

    /// One FAB step of `s` from `f = z_t − z_y` and its gradient `g` at `s.point`.
    fn step<T: Real>(&self, s: &mut Seeker<T>, f: f64, g: &[T]) {
        let ball = self.fab.ball;
        let g: Vec<f64> = g.iter().map(|v| v.f64()).collect();
        let b = -f + dot(&g, &s.point);
        let d_point = boundary_step(ball, &s.point, &g, b);
        let d_clean = boundary_step(ball, &s.clean, &g, b);
        let a1 = ball.norm(&d_point).max(DISTANCE_FLOOR);
        let a2 = ball.norm(&d_clean).max(DISTANCE_FLOOR);
        let alpha = (a1 / (a1 + a2)).clamp(0.0, ALPHA_MAX);
        for i in 0..s.point.len() {
            let from_point = s.point[i] + OVERSHOOT * d_point[i];
            let from_clean = s.clean[i] + OVERSHOOT * d_clean[i];
            s.point[i] = ((1.0 - alpha) * from_point + alpha * from_clean).clamp(0.0, 1.0);
        }
    }

    /// Classifies every seeker's point: a misclassified one is kept when it is the closest
    /// so far, and the point steps back towards the clean image; a seeker with a point within
    /// ε leaves, broken.
    fn keep_successes<T: Real, C: Classifier<T> + ?Sized>(
        &self,
        model: &C,
        shape: [usize; 3],
        seekers: &mut Vec<Seeker<T>>,
        broken: &mut Vec<(usize, Vec<T>)>,
    ) -> Result<()> {
        let points: Vec<Vec<T>> = seekers
            .iter()
            .map(|s| s.point.iter().map(|&v| T::of(v)).collect())
            .collect();
        let pred = model.predict(image_batch(points.iter().map(Vec::as_slice), shape).view())?;
        let mut kept = Vec::with_capacity(seekers.len());
        for ((mut s, point), p) in seekers.drain(..).zip(points).zip(pred) {
            if p != self.labels[s.image] {
                let dist = distance(self.fab.ball, &s.clean, &point);
                if s.found.as_ref().is_none_or(|(best, _)| dist < *best) {
                    s.found = Some((dist, point));
                }
                for (p, x) in s.point.iter_mut().zip(&s.clean) {
                    *p = x + BACKWARD * (*p - x);
                }
            }
            match s.found.take() {
                Some((dist, adv)) if dist <= self.fab.eps => broken.push((s.image, adv)),
                found => {
                    s.found = found;
                    kept.push(s);
                }
            }
        }
        *seekers = kept;
        Ok(())
    }
}

/// `⟨a, b⟩`.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `‖adv − x‖` in the ball's norm, from the stored (rounded) entries of `adv`.
fn distance<T: Real>(ball: Ball, x: &[f64], adv: &[T]) -> f64 {
    let d: Vec<f64> = adv.iter().zip(x).map(|(a, x)| a.f64() - x).collect();
    ball.norm(&d)
}

/// The smallest step d (L∞ or L2 norm) with `⟨w, p + d⟩ = b` and `p + d ∈ [0, 1]ⁿ`; when no
/// point of the box is on the hyperplane, the step to the box corner closest to it.
///
/// ```text
/// s = sign(⟨w, p⟩ − b),  c = |⟨w, p⟩ − b|     (the decrease of ⟨s·w, ·⟩ needed)
/// entry i moves by −sign(s·w_i)·m_i(τ), with room r_i to the box edge in that direction:
///   L∞: m_i(τ) = min(τ, r_i),        decrease Σ |w_i|·min(τ, r_i)
///   L2: m_i(τ) = min(τ·|w_i|, r_i),  decrease Σ w_i²·min(τ, r_i/|w_i|)
/// ```
pub(super) fn boundary_step(ball: Ball, p: &[f64], w: &[f64], b: f64) -> Vec<f64> {
    let excess = dot(w, p) - b;
    let side = if excess >= 0.0 { 1.0 } else { -1.0 };
    let need = excess.abs();
    // For each moving entry: (breakpoint, slope, room, direction).
    let mut moves: Vec<(f64, f64, f64, f64, usize)> = Vec::with_capacity(p.len());
    for (i, (&pi, &wi)) in p.iter().zip(w).enumerate() {
        let sw = side * wi;
        if sw == 0.0 {
            continue;
        }
        let (room, dir) = if sw > 0.0 {
            (pi, -1.0)
        } else {
            (1.0 - pi, 1.0)
        };
        let (breakpoint, slope) = match ball {
            Ball::Linf => (room, sw.abs()),
            Ball::L2 => (room / sw.abs(), sw * sw),
        };
        moves.push((breakpoint, slope, room, dir, i));
    }
    let tau = crossing(&mut moves, need);
    let mut d = vec![0.0; p.len()];
    for &(_, _, room, dir, i) in &moves {
        let scale = match ball {
            Ball::Linf => 1.0,
            Ball::L2 => w[i].abs(),
        };
        d[i] = dir * (tau * scale).min(room);
    }
    d
}

/// The τ ≥ 0 at which `Σ slope·min(τ, breakpoint)` reaches `need` (∞ if it never does):
/// walk the breakpoints in increasing order.
fn crossing(moves: &mut [(f64, f64, f64, f64, usize)], need: f64) -> f64 {
    moves.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut slope: f64 = moves.iter().map(|m| m.1).sum();
    let mut saturated = 0.0;
    for &(breakpoint, s, ..) in moves.iter() {
        if saturated + slope * breakpoint >= need {
            return ((need - saturated) / slope).max(0.0);
        }
        saturated += s * breakpoint;
        slope -= s;
    }
    f64::INFINITY
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn linf_step_reaches_the_hyperplane_with_the_smallest_sup_norm() {
        // ⟨w, p + d⟩ = b with w = (1, 1), p = (0.5, 0.5), b = 0.6: each entry moves down 0.2.
        let d = boundary_step(Ball::Linf, &[0.5, 0.5], &[1.0, 1.0], 0.6);
        assert_relative_eq!(d[0], -0.2, epsilon = 1e-12);
        assert_relative_eq!(d[1], -0.2, epsilon = 1e-12);
        // The first entry has only 0.1 of room: it saturates, the second moves 0.3.
        let d = boundary_step(Ball::Linf, &[0.1, 0.5], &[1.0, 1.0], 0.2);
        assert_relative_eq!(d[0], -0.1, epsilon = 1e-12);
        assert_relative_eq!(d[1], -0.3, epsilon = 1e-12);
        // From the other side (⟨w, p⟩ < b) entries move up; w_i < 0 moves down.
        let d = boundary_step(Ball::Linf, &[0.5, 0.5], &[1.0, -1.0], 0.4);
        assert_relative_eq!(d[0], 0.2, epsilon = 1e-12);
        assert_relative_eq!(d[1], -0.2, epsilon = 1e-12);
        // Out of reach: the corner.
        let d = boundary_step(Ball::Linf, &[0.5, 0.5], &[1.0, 1.0], 5.0);
        assert_eq!(d, vec![0.5, 0.5]);
    }

    #[test]
    fn l2_step_is_the_euclidean_projection_inside_the_box() {
        // Unconstrained: d = −(⟨w, p⟩ − b)·w/‖w‖².
        let (p, w) = ([0.5, 0.5, 0.5], [1.0, 2.0, -2.0]);
        let d = boundary_step(Ball::L2, &p, &w, 0.9);
        let excess = 0.5 - 0.9;
        for i in 0..3 {
            assert_relative_eq!(d[i], -excess * w[i] / 9.0, epsilon = 1e-12);
        }
        // With the box binding, the hyperplane is still met exactly.
        let (p, w) = ([0.95, 0.2], [1.0, 0.5]);
        let d = boundary_step(Ball::L2, &p, &w, 1.4);
        assert_relative_eq!(dot(&w, &[p[0] + d[0], p[1] + d[1]]), 1.4, epsilon = 1e-12);
        assert_relative_eq!(p[0] + d[0], 1.0, epsilon = 1e-12);
    }

    #[test]
    fn zero_normal_gives_no_step() {
        assert_eq!(boundary_step(Ball::Linf, &[0.3], &[0.0], 1.0), vec![0.0]);
    }
}
