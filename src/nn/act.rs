//! Parameter-free element-wise layers: ReLU, dropout (element and channel), flatten.

use ndarray::{ArrayD, IxDyn};
use rand::RngExt;

use crate::error::{Error, Result};
use crate::nn::{Cache, Ctx, Mode};
use crate::real::Real;

/// `y = max(x, 0)`; the cache is the 0/1 mask (`∂ max(x,0)/∂x = 1[x > 0]`, as PyTorch).
pub(crate) fn relu_forward<T: Real>(x: ArrayD<T>) -> (ArrayD<T>, Cache<T>) {
    let mask = x.mapv(|v| if v > T::zero() { T::one() } else { T::zero() });
    let y = x.mapv(|v| if v > T::zero() { v } else { T::zero() });
    (y, Cache::Mask(mask))
}

/// `∂x = mask ⊙ ∂y`.
pub(crate) fn mask_backward<T: Real>(mask: &ArrayD<T>, dy: ArrayD<T>) -> Result<ArrayD<T>> {
    if mask.shape() != dy.shape() {
        return Err(Error::shape(
            "nn::mask_backward",
            "dy",
            mask.shape(),
            dy.shape(),
        ));
    }
    Ok(dy * mask)
}

/// Dropout: in train mode zero each element (or each `[b, c]` channel map when `channels`)
/// with probability p and scale the rest by 1/(1 − p); identity in eval mode.
pub fn dropout_forward<T: Real>(
    x: ArrayD<T>,
    p: f64,
    channels: bool,
    ctx: &mut Ctx,
) -> (ArrayD<T>, Cache<T>) {
    if ctx.mode == Mode::Eval || p <= 0.0 {
        let mask = ArrayD::ones(x.raw_dim());
        return (x, Cache::Mask(mask));
    }
    let keep = T::of(1.0 / (1.0 - p));
    let mut draw = || {
        if ctx.rng.random_range(0.0..1.0) < p {
            T::zero()
        } else {
            keep
        }
    };
    let mask = if channels && x.ndim() == 4 {
        let (b, c) = (x.shape()[0], x.shape()[1]);
        let per_map = ArrayD::from_shape_simple_fn(IxDyn(&[b, c, 1, 1]), &mut draw);
        per_map
            .broadcast(x.raw_dim())
            .expect("[B, C, 1, 1] broadcasts")
            .to_owned()
    } else {
        ArrayD::from_shape_simple_fn(x.raw_dim(), &mut draw)
    };
    (x * &mask, Cache::Mask(mask))
}

/// The backward of [`dropout_forward`]: `∂x = mask ⊙ ∂y`.
///
/// # Errors
/// [`Error::Shape`] if `dy` differs from the mask.
pub fn dropout_backward<T: Real>(cache: &Cache<T>, dy: ArrayD<T>) -> Result<ArrayD<T>> {
    match cache {
        Cache::Mask(m) => mask_backward(m, dy),
        _ => Err(Error::WrongCache {
            layer: "nn::dropout",
        }),
    }
}

/// `[B, …] → [B, ∏…]` (row-major, as `x.view(B, -1)`).
pub(crate) fn flatten_forward<T: Real>(x: ArrayD<T>) -> Result<(ArrayD<T>, Cache<T>)> {
    if x.ndim() < 2 {
        return Err(Error::shape(
            "nn::Flatten::forward",
            "x ([B, …])",
            &[0, 0],
            x.shape(),
        ));
    }
    let shape = x.shape().to_vec();
    let b = shape[0];
    let rest = x.len() / b.max(1);
    let y = standard(x)
        .into_shape_with_order(IxDyn(&[b, rest]))
        .expect("contiguous");
    Ok((y, Cache::Shape(shape)))
}

/// `x` in standard layout: itself when it is already (no copy), else a standard copy.
fn standard<T: Real>(x: ArrayD<T>) -> ArrayD<T> {
    if x.is_standard_layout() {
        x
    } else {
        x.as_standard_layout().into_owned()
    }
}

/// Inverse reshape of [`flatten_forward`].
pub(crate) fn flatten_backward<T: Real>(shape: &[usize], dy: ArrayD<T>) -> Result<ArrayD<T>> {
    let n: usize = shape.iter().product();
    if dy.len() != n {
        return Err(Error::shape(
            "nn::Flatten::backward",
            "dy",
            &[n],
            &[dy.len()],
        ));
    }
    Ok(standard(dy)
        .into_shape_with_order(IxDyn(shape))
        .expect("same length"))
}
