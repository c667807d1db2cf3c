//! The authors' single-step L2, L1 and L0 attacks (`lnorm_attack` and `l0_attack` in
//! `mnist_mlp.py`), batched with per-image norms.
//!
//! ```text
//! l2, l1: δ = 0.3·g/(‖g‖_p + 1e-10);  δ ← ε·δ/‖δ‖_p  (so ‖δ‖_p = ε; δ = 0 where g = 0)
//!         x' = clip₀₁(x + δ)                          (‖x' − x‖_p ≤ ε after the clip)
//! l0:     M = 1 on the k largest entries of g (signed, not |g|; ties: the lower index first)
//!         x' = clip₀₁(x + 5·x·M)                      (zero pixels stay zero)
//! ```
//! Where the authors divide 0/0 (a zero gradient) and get NaN, δ is 0 here.

use ndarray::{Array4, ArrayView4};

use super::pgd::NORM_FLOOR;
use super::{add_clipped, for_each_image, scale_images, Gradient, Lp};
use crate::error::Result;
use crate::models::Classifier;
use crate::real::Real;

/// The authors' step length before rescaling (it cancels, up to rounding).
const STEP: f64 = 0.3;

/// The factor of the L0 attack: a selected entry becomes `x + 5·x = 6·x`.
const L0_SCALE: f64 = 5.0;

/// One normalised-gradient step from `x [B, C, H, W]` rescaled to `‖δ‖_p = ε` per image.
pub(super) fn lp_step<T: Real, C: Classifier<T> + ?Sized>(
    grad: &Gradient<T, C>,
    x: ArrayView4<T>,
    eps: f64,
    p: Lp,
) -> Result<Array4<T>> {
    let mut delta = grad.at(x)?;
    scale_images(&mut delta, p, |n| STEP / (n + NORM_FLOOR));
    scale_images(&mut delta, p, |n| if n > 0.0 { eps / n } else { 0.0 });
    Ok(add_clipped(x, &delta))
}

/// Multiplies the `pixels` entries of each image with the largest gradient by 6, clipped to 1.
pub(super) fn l0<T: Real, C: Classifier<T> + ?Sized>(
    grad: &Gradient<T, C>,
    x: ArrayView4<T>,
    pixels: usize,
) -> Result<Array4<T>> {
    let mut delta = grad.at(x)?;
    let xs = x.as_slice().expect("perturb passes standard layout");
    for_each_image(&mut delta, |i, g| {
        let x_img = &xs[i * g.len()..(i + 1) * g.len()];
        let mask = top_k_mask(g, pixels);
        for ((d, m), &x0) in g.iter_mut().zip(mask).zip(x_img) {
            *d = if m { T::of(L0_SCALE) * x0 } else { T::zero() };
        }
    });
    Ok(add_clipped(x, &delta))
}

/// `true` at the `k` largest values of `g` (all of them if k ≥ len); ties go to the lower
/// index.
fn top_k_mask<T: Real>(g: &[T], k: usize) -> Vec<bool> {
    let mut order: Vec<usize> = (0..g.len()).collect();
    order.sort_by(|&i, &j| g[j].f64().total_cmp(&g[i].f64()));
    let mut mask = vec![false; g.len()];
    for &i in order.iter().take(k) {
        mask[i] = true;
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_takes_the_largest_signed_values() {
        let g = [0.5_f32, -3.0, 2.0, 0.5, 1.0];
        assert_eq!(top_k_mask(&g, 2), [false, false, true, false, true]);
        assert_eq!(top_k_mask(&g, 3), [true, false, true, false, true]);
        assert_eq!(top_k_mask(&g, 0), [false; 5]);
        assert_eq!(top_k_mask(&g, 9), [true; 5]);
    }
}
