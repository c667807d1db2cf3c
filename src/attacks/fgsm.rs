//! FGSM (Goodfellow et al. 2015), as in the authors' `fgsm_attack` (`mnist_mlp.py`,
//! `mnist_lenet.py`): `x' = clip₀₁(x + ε·sign(g))`, with `sign(0) = 0`.

use ndarray::{Array4, ArrayView4};

use super::{add_clipped, sign, Gradient};
use crate::error::Result;
use crate::models::Classifier;
use crate::real::Real;

/// One signed-gradient step of size ε from `x [B, C, H, W]`, clipped to [0, 1].
pub(super) fn fgsm<T: Real, C: Classifier<T> + ?Sized>(
    grad: &Gradient<T, C>,
    x: ArrayView4<T>,
    eps: f64,
) -> Result<Array4<T>> {
    let step = sign_step(grad.at(x)?, T::of(eps));
    Ok(add_clipped(x, &step))
}

/// `size·sign(g)` entrywise, in place.
pub(super) fn sign_step<T: Real>(mut g: Array4<T>, size: T) -> Array4<T> {
    g.mapv_inplace(|v| size * sign(v));
    g
}
