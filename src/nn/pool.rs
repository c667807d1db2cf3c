//! Max and average pooling over NCHW maps (no padding, floor mode, as PyTorch's defaults).
//!
//! ```text
//! Ho = ⌊(H − k)/s⌋ + 1,  Wo = ⌊(W − k)/s⌋ + 1
//! max: y = max of the k×k window (first maximum on ties); ∂x[argmax] += ∂y
//! avg: y = mean of the window;                              ∂x[window] += ∂y / k²
//! ```

use ndarray::{ArrayD, Ix4, IxDyn};

use crate::error::{Error, Result};
use crate::nn::Cache;
use crate::real::Real;

fn out_size(op: &'static str, shape: &[usize], k: usize, s: usize) -> Result<(usize, usize)> {
    if shape.len() != 4 {
        return Err(Error::shape(op, "x ([B, C, H, W])", &[0, 0, 0, 0], shape));
    }
    if k == 0 || s == 0 || shape[2] < k || shape[3] < k {
        return Err(Error::Config {
            name: "pool window",
            value: format!("kernel {k}, stride {s} on {}×{}", shape[2], shape[3]),
            rule: "kernel and stride must be ≥ 1 and the window must fit",
        });
    }
    Ok(((shape[2] - k) / s + 1, (shape[3] - k) / s + 1))
}

/// Max pooling forward.
pub(crate) fn max_forward<T: Real>(
    x: ArrayD<T>,
    k: usize,
    s: usize,
) -> Result<(ArrayD<T>, Cache<T>)> {
    let (ho, wo) = out_size("nn::MaxPool2d::forward", x.shape(), k, s)?;
    let x4 = x.view().into_dimensionality::<Ix4>().expect("checked");
    let (b, c, h, w) = x4.dim();
    let mut y = ArrayD::zeros(IxDyn(&[b, c, ho, wo]));
    let mut argmax = Vec::with_capacity(b * c * ho * wo);
    let mut yi = 0;
    let ys = y.as_slice_mut().expect("fresh");
    for bi in 0..b {
        for ci in 0..c {
            for oy in 0..ho {
                for ox in 0..wo {
                    let (mut best, mut at) = (T::neg_infinity(), 0);
                    for i in 0..k {
                        for j in 0..k {
                            let (yy, xx) = (oy * s + i, ox * s + j);
                            let v = x4[[bi, ci, yy, xx]];
                            if v > best {
                                best = v;
                                at = ((bi * c + ci) * h + yy) * w + xx;
                            }
                        }
                    }
                    ys[yi] = best;
                    argmax.push(at);
                    yi += 1;
                }
            }
        }
    }
    Ok((
        y,
        Cache::MaxPool {
            shape: x.shape().to_vec(),
            argmax,
        },
    ))
}

/// Max pooling backward.
pub(crate) fn max_backward<T: Real>(
    shape: &[usize],
    argmax: &[usize],
    dy: ArrayD<T>,
) -> Result<ArrayD<T>> {
    if dy.len() != argmax.len() {
        return Err(Error::shape(
            "nn::MaxPool2d::backward",
            "dy",
            &[argmax.len()],
            &[dy.len()],
        ));
    }
    let mut dx = ArrayD::zeros(IxDyn(shape));
    let dxs = dx.as_slice_mut().expect("fresh");
    for (&at, &g) in argmax.iter().zip(dy.iter()) {
        dxs[at] += g;
    }
    Ok(dx)
}

/// Average pooling forward.
pub(crate) fn avg_forward<T: Real>(
    x: ArrayD<T>,
    k: usize,
    s: usize,
) -> Result<(ArrayD<T>, Cache<T>)> {
    let (ho, wo) = out_size("nn::AvgPool2d::forward", x.shape(), k, s)?;
    let x4 = x.view().into_dimensionality::<Ix4>().expect("checked");
    let (b, c, _, _) = x4.dim();
    let scale = T::of(1.0 / (k * k) as f64);
    let y = ArrayD::from_shape_fn(IxDyn(&[b, c, ho, wo]), |ix| {
        let mut acc = T::zero();
        for i in 0..k {
            for j in 0..k {
                acc += x4[[ix[0], ix[1], ix[2] * s + i, ix[3] * s + j]];
            }
        }
        acc * scale
    });
    Ok((y, Cache::Shape(x.shape().to_vec())))
}

/// Average pooling backward.
pub(crate) fn avg_backward<T: Real>(
    shape: &[usize],
    k: usize,
    s: usize,
    dy: ArrayD<T>,
) -> Result<ArrayD<T>> {
    let (ho, wo) = out_size("nn::AvgPool2d::backward", shape, k, s)?;
    let want = [shape[0], shape[1], ho, wo];
    if dy.shape() != want {
        return Err(Error::shape(
            "nn::AvgPool2d::backward",
            "dy",
            &want,
            dy.shape(),
        ));
    }
    let scale = T::of(1.0 / (k * k) as f64);
    let mut dx = ArrayD::zeros(IxDyn(shape));
    for (ix, &g) in dy.indexed_iter() {
        for i in 0..k {
            for j in 0..k {
                dx[[ix[0], ix[1], ix[2] * s + i, ix[3] * s + j]] += g * scale;
            }
        }
    }
    Ok(dx)
}
