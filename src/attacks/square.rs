//! The Square attack (Andriushchenko, Croce, Flammarion, Hein, ECCV 2020), score-based: it
//! reads logits only and never asks the model for a gradient. Semantics of fra31/auto-attack
//! `square.py` with AutoAttack's settings (`loss = 'margin'`, `p_init = 0.8`, the schedule not
//! rescaled to the number of queries), L∞ and L2.
//!
//! ```text
//! margin m(x') = z_y − max_{i≠y} z_i          (the image is fooled when argmax z ≠ y)
//! p(i)  = p_init / 2^j: j = 0 for i ≤ 10, then 1, 2, … after i = 10, 50, 200, 500, 1000,
//!         2000, 4000, 6000, 8000                                  (i: the iteration)
//! side  s(i) = round(√(p(i)·C·H·W/C)), at least 1 (L∞) or 3 and odd (L2), at most min(H, W)
//!
//! L∞  start: x_best = clip₀₁(x + ε·σ)  with a random sign σ per channel and column
//!     step:  in one random s×s window, every channel c set to x + ε·σ_c (clipped to [0, 1])
//! L2  start: a 5×5 grid of "eta" tiles (centred squares of weight 1/(k + 1)², the lower half
//!            negated), random sign per tile and channel, scaled to ‖δ‖₂ = ε
//!     step:  the mass of two random windows moves into the first one as a new signed tile,
//!            the whole δ rescaled to ‖δ‖₂ = ε, then clipped to [0, 1]
//! accept the candidate when its margin is lower, or when it fools the model
//! ```
//! Each image draws its windows, signs and tile orientations from its own generator (the
//! reference draws one window per batch; the original attack, one per image), and stops as
//! soon as it is fooled. All candidates of an iteration go through the model as one batch.

use ndarray::{Array2, ArrayView4};
use rand::rngs::StdRng;
use rand::RngExt;

use super::losses;
use super::{image_batch, image_rows, Ball, Outcome, SQUARE_P_INIT};
use crate::error::Result;
use crate::models::Classifier;
use crate::nn::loss::argmax;
use crate::real::Real;
use crate::seeds::ImageRngs;

/// The added denominators of the reference's normalisations.
const NORM_FLOOR: f64 = 1e-12;

/// The Square attack's parameters (see [`super::Attack::Square`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Square {
    pub ball: Ball,
    pub eps: f64,
    pub queries: usize,
    pub restarts: usize,
}

/// The fraction of the image a square covers at iteration `i` (AutoAttack's schedule).
///
/// ```text
/// i ≤ 10: p_init;  then p_init/2 up to 50, /4 up to 200, /8 up to 500, /16 up to 1000,
/// /32 up to 2000, /64 up to 4000, /128 up to 6000, /256 up to 8000, /512 beyond
/// ```
pub(super) fn p_selection(i: usize) -> f64 {
    const ENDS: [usize; 9] = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000];
    let halvings = ENDS.iter().filter(|&&end| i > end).count();
    SQUARE_P_INIT / f64::from(1u32 << halvings)
}

/// One image's search state.
struct Searcher<T> {
    image: usize,
    clean: Vec<T>,
    best: Vec<T>,
    margin: f64,
}

impl Square {
    /// `restarts` runs on `x [B, C, H, W]`, each on the images still robust; image b draws
    /// from `rngs.get_mut(at[b])`.
    ///
    /// # Errors
    /// Model errors.
    pub(super) fn run<T: Real, C: Classifier<T> + ?Sized>(
        &self,
        model: &C,
        x: ArrayView4<T>,
        labels: &[usize],
        rngs: &mut ImageRngs,
        at: &[usize],
    ) -> Result<Outcome<T>> {
        let mut outcome = Outcome::unbroken(x);
        for _ in 0..self.restarts {
            let members = outcome.robust();
            if members.is_empty() {
                break;
            }
            for (b, adv) in self.single_run(model, x, labels, &members, rngs, at)? {
                outcome.set(b, adv, true);
            }
        }
        Ok(outcome)
    }

    /// One run on the images `members` of `x`: the fooled ones with their images.
    fn single_run<T: Real, C: Classifier<T> + ?Sized>(
        &self,
        model: &C,
        x: ArrayView4<T>,
        labels: &[usize],
        members: &[usize],
        rngs: &mut ImageRngs,
        at: &[usize],
    ) -> Result<Vec<(usize, Vec<T>)>> {
        let (_, c, h, w) = x.dim();
        let shape = [c, h, w];
        let clean = image_rows(x);
        let mut searchers: Vec<Searcher<T>> = members
            .iter()
            .map(|&b| {
                let best = self.start(&clean[b], shape, rngs.get_mut(at[b]));
                Searcher {
                    image: b,
                    clean: clean[b].clone(),
                    best,
                    margin: f64::INFINITY,
                }
            })
            .collect();
        let mut fooled = Vec::new();
        let starts: Vec<Vec<T>> = searchers.iter().map(|s| s.best.clone()).collect();
        self.accept(model, labels, shape, &mut searchers, starts, &mut fooled)?;
        for i in 0..self.queries {
            if searchers.is_empty() {
                break;
            }
            let p = p_selection(i);
            let candidates: Vec<Vec<T>> = searchers
                .iter()
                .map(|s| {
                    let rng = rngs.get_mut(at[s.image]);
                    self.candidate(s, p, shape, rng)
                })
                .collect();
            self.accept(
                model,
                labels,
                shape,
                &mut searchers,
                candidates,
                &mut fooled,
            )?;
        }
        Ok(fooled)
    }

    /// Queries the model on one candidate per searcher: a fooled searcher leaves with it, the
    /// others keep it if its margin is lower.
    fn accept<T: Real, C: Classifier<T> + ?Sized>(
        &self,
        model: &C,
        labels: &[usize],
        shape: [usize; 3],
        searchers: &mut Vec<Searcher<T>>,
        candidates: Vec<Vec<T>>,
        fooled: &mut Vec<(usize, Vec<T>)>,
    ) -> Result<()> {
        let batch = image_batch(candidates.iter().map(Vec::as_slice), shape);
        let logits: Array2<T> = model.logits(batch.view())?;
        let pred = argmax(logits.view());
        let mut kept = Vec::with_capacity(searchers.len());
        for ((mut s, cand), (z, p)) in searchers
            .drain(..)
            .zip(candidates)
            .zip(logits.outer_iter().zip(pred))
        {
            let y = labels[s.image];
            if p != y {
                fooled.push((s.image, cand));
                continue;
            }
            let (m, _) = losses::margin(z, y);
            if m < s.margin {
                s.margin = m;
                s.best = cand;
            }
            kept.push(s);
        }
        *searchers = kept;
        Ok(())
    }

    /// The start of one image.
    fn start<T: Real>(&self, clean: &[T], [c, h, w]: [usize; 3], rng: &mut StdRng) -> Vec<T> {
        let delta: Vec<f64> = match self.ball {
            Ball::Linf => {
                let signs: Vec<f64> = (0..c * w).map(|_| random_sign(rng)).collect();
                (0..c * h * w)
                    .map(|i| self.eps * signs[(i / (h * w)) * w + i % w])
                    .collect()
            }
            Ball::L2 => {
                let tiles = tile_grid(c, h, w, rng);
                let n = Ball::L2.norm(&tiles);
                tiles
                    .iter()
                    .map(|v| self.eps * v / (n + NORM_FLOOR))
                    .collect()
            }
        };
        clean
            .iter()
            .zip(&delta)
            .map(|(x, d)| T::of((x.f64() + d).clamp(0.0, 1.0)))
            .collect()
    }

    /// One candidate for `s` at square fraction `p`.
    fn candidate<T: Real>(
        &self,
        s: &Searcher<T>,
        p: f64,
        shape: [usize; 3],
        rng: &mut StdRng,
    ) -> Vec<T> {
        match self.ball {
            Ball::Linf => self.candidate_linf(s, p, shape, rng),
            Ball::L2 => self.candidate_l2(s, p, shape, rng),
        }
    }

    /// L∞: one window set to the ball's vertex of a random sign per channel.
    fn candidate_linf<T: Real>(
        &self,
        s: &Searcher<T>,
        p: f64,
        [c, h, w]: [usize; 3],
        rng: &mut StdRng,
    ) -> Vec<T> {
        let side = square_side(p, h * w, 1).min(h.min(w));
        let (vh, vw) = (corner(rng, h, side), corner(rng, w, side));
        let mut cand = s.best.clone();
        for ch in 0..c {
            let step = 2.0 * self.eps * random_sign(rng);
            for r in vh..vh + side {
                for col in vw..vw + side {
                    let i = (ch * h + r) * w + col;
                    let x = s.clean[i].f64();
                    let v = (s.best[i].f64() + step).clamp(x - self.eps, x + self.eps);
                    cand[i] = T::of(v.clamp(0.0, 1.0));
                }
            }
        }
        cand
    }

    /// L2: the perturbation's mass in windows 1 and 2 moves into window 1 as a new tile.
    fn candidate_l2<T: Real>(
        &self,
        s: &Searcher<T>,
        p: f64,
        [c, h, w]: [usize; 3],
        rng: &mut StdRng,
    ) -> Vec<T> {
        let mut side = square_side(p, h * w, 3);
        if side.is_multiple_of(2) {
            side += 1;
        }
        let side = side.min(h.min(w));
        let mut delta: Vec<f64> = s
            .best
            .iter()
            .zip(&s.clean)
            .map(|(b, x)| b.f64() - x.f64())
            .collect();
        let (vh, vw) = (corner(rng, h, side), corner(rng, w, side));
        let (vh2, vw2) = (corner(rng, h, side), corner(rng, w, side));
        let in1 =
            |r: usize, col: usize| (vh..vh + side).contains(&r) && (vw..vw + side).contains(&col);
        let in2 = |r: usize, col: usize| {
            (vh2..vh2 + side).contains(&r) && (vw2..vw2 + side).contains(&col)
        };
        let image_norm2: f64 = delta.iter().map(|d| d * d).sum();
        let tile = eta(side, rng);
        for ch in 0..c {
            let at = |r: usize, col: usize| (ch * h + r) * w + col;
            let (mut window1, mut windows) = (0.0, 0.0);
            for r in 0..h {
                for col in 0..w {
                    let d2 = delta[at(r, col)].powi(2);
                    if in1(r, col) {
                        window1 += d2;
                    }
                    if in1(r, col) || in2(r, col) {
                        windows += d2;
                    }
                }
            }
            let sign = random_sign(rng);
            let mut new: Vec<f64> = (0..side * side)
                .map(|k| {
                    let old = delta[at(vh + k / side, vw + k % side)];
                    tile[k] * sign + old / (NORM_FLOOR + window1.sqrt())
                })
                .collect();
            let n = Ball::L2.norm(&new);
            let budget = ((self.eps * self.eps - image_norm2).max(0.0) / c as f64 + windows).sqrt();
            new.iter_mut().for_each(|v| *v *= budget / (NORM_FLOOR + n));
            for r in vh2..vh2 + side {
                for col in vw2..vw2 + side {
                    delta[at(r, col)] = 0.0;
                }
            }
            for (k, v) in new.into_iter().enumerate() {
                delta[at(vh + k / side, vw + k % side)] = v;
            }
        }
        let scale = self.eps / (Ball::L2.norm(&delta) + NORM_FLOOR);
        s.clean
            .iter()
            .zip(&delta)
            .map(|(x, d)| T::of((x.f64() + scale * d).clamp(0.0, 1.0)))
            .collect()
    }
}

/// `round(√(p·pixels))` (ties to even, as Python's `round`), at least `min`.
fn square_side(p: f64, pixels: usize, min: usize) -> usize {
    ((p * pixels as f64).sqrt().round_ties_even() as usize).max(min)
}

/// A window corner along an axis of length `len` for a window of `side`: uniform in
/// `0 .. len − side` (exclusive, as the reference's `random_int`; 0 when the window fills the
/// axis).
fn corner(rng: &mut StdRng, len: usize, side: usize) -> usize {
    rng.random_range(0..(len - side).max(1))
}

/// ±1 with equal probability.
fn random_sign(rng: &mut StdRng) -> f64 {
    if rng.random::<bool>() {
        1.0
    } else {
        -1.0
    }
}

/// The reference's `eta_rectangles(rows, cols)`: centred nested rectangles, the k-th adding
/// 1/(k + 1)², normalised to ‖·‖₂ = 1; `[rows·cols]`, row-major.
fn eta_rectangles(rows: usize, cols: usize) -> Vec<f64> {
    let mut delta = vec![0.0; rows * cols];
    let (rc, cc) = (rows / 2 + 1, cols / 2 + 1);
    let (mut r0, mut c0) = (rc as isize - 1, cc as isize - 1);
    for k in 0..rc.max(cc) {
        let span = 2 * k as isize + 1;
        let (r_lo, r_hi) = (r0.max(0) as usize, ((r0 + span).max(0) as usize).min(rows));
        let (c_lo, c_hi) = (c0.max(0) as usize, ((c0 + span).max(0) as usize).min(cols));
        for r in r_lo..r_hi {
            for c in c_lo..c_hi {
                delta[r * cols + c] += 1.0 / ((k + 1) * (k + 1)) as f64;
            }
        }
        r0 -= 1;
        c0 -= 1;
    }
    normalised(delta)
}

/// The reference's `eta(s)`: the upper half a positive rectangle tile, the lower half a
/// negative one, normalised, transposed with probability 1/2; `[s·s]`, row-major.
fn eta(s: usize, rng: &mut StdRng) -> Vec<f64> {
    let top = eta_rectangles(s / 2, s);
    let bottom = eta_rectangles(s - s / 2, s);
    let mut tile: Vec<f64> = top.into_iter().chain(bottom.iter().map(|v| -v)).collect();
    tile = normalised(tile);
    if rng.random::<f64>() > 0.5 {
        tile = (0..s * s).map(|k| tile[(k % s) * s + k / s]).collect();
    }
    tile
}

/// `v/‖v‖₂` (0 stays 0).
fn normalised(mut v: Vec<f64>) -> Vec<f64> {
    let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|a| *a /= n);
    }
    v
}

/// The L2 start before scaling: tiles of side ⌊H/5⌋ (at least 1) on a grid from
/// `(H − 5·side)/2`, each an [`eta`] tile with a random sign per channel; `[C·H·W]`.
fn tile_grid(c: usize, h: usize, w: usize, rng: &mut StdRng) -> Vec<f64> {
    let side = (h / 5).max(1);
    let first = h.saturating_sub(5 * side) / 2;
    let mut delta = vec![0.0; c * h * w];
    for br in 0..h / side {
        for bc in 0..w / side {
            let (r0, c0) = (first + br * side, first + bc * side);
            let tile = eta(side, rng);
            for ch in 0..c {
                let sign = random_sign(rng);
                for (k, t) in tile.iter().enumerate() {
                    let (r, col) = (r0 + k / side, c0 + k % side);
                    if r < h && col < w {
                        delta[(ch * h + r) * w + col] += sign * t;
                    }
                }
            }
        }
    }
    delta
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn p_follows_autoattacks_schedule() {
        assert_eq!(p_selection(0), 0.8);
        assert_eq!(p_selection(10), 0.8);
        assert_eq!(p_selection(11), 0.4);
        assert_eq!(p_selection(50), 0.4);
        assert_eq!(p_selection(51), 0.2);
        assert_eq!(p_selection(4999), 0.8 / 128.0);
        assert_eq!(p_selection(9000), 0.8 / 512.0);
        // MNIST: s = round(√(0.8·784)) = 25 at the start, 1 near 5000 queries (√4.9 ≈ 2.2 → 2).
        assert_eq!(square_side(p_selection(0), 784, 1), 25);
        assert_eq!(square_side(p_selection(4999), 784, 1), 2);
    }

    #[test]
    fn eta_tiles_are_unit_and_antisymmetric() {
        let mut rng = StdRng::seed_from_u64(1);
        for s in [1, 3, 5, 6] {
            let t = eta(s, &mut rng);
            let n: f64 = t.iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-12, "s = {s}");
        }
        // s = 4: the top two rows positive, the bottom two negative (or the transpose).
        let t = eta_rectangles(2, 4);
        assert!(t.iter().all(|&v| v > 0.0));
        // The centre of a 3×3 rectangle tile weighs 1 + 1/4, the border 1/4.
        let r = eta_rectangles(3, 3);
        assert!((r[4] / r[0] - 5.0).abs() < 1e-12);
    }
}
