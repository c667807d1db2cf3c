//! NRPM conv2d (NCHW) through unfold: every output pixel is one NRPM output over the
//! `D = C·kh·kw` terms of its receptive field.
//!
//! ```text
//! x [B, C, H, W] --unfold--> patches [B·L, D]     L = Ho·Wo, d = (c·kh + i)·kw + j (PyTorch order)
//! weight [O, C, kh, kw] ---> [O, D]
//! patches, weight --linear NRPM--> [B·L, O] --> y [B, O, Ho, Wo]
//! Ho = ⌊(H + 2·pad_h − dil_h·(kh − 1) − 1) / stride_h⌋ + 1   (same for W)
//! ```
//!
//! The backward runs the linear backward and folds the patch gradient back (`fold`, the adjoint
//! of `unfold`: overlapping patches add). The patch matrix is `B·L·D`, never `B·L·D·O`. On
//! [`Exec::Cuda`] the image is copied to the device and unfolded and folded there
//! (cuda/nrpm_conv.cu), then the linear kernels run on the patches. The
//! authors' `RobustConv2d` adds no bias; pass `bias = None` to match them.

use ndarray::{Array1, Array2, Array4, ArrayView1, ArrayView2, ArrayView4};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nrpm::{
    backward_unchecked, cuda, forward_with as linear_forward_with, Exec, Iterates, NrpmConfig,
};
use crate::real::Real;

/// Stride, zero padding and dilation of a convolution, `[height, width]` each. Deserialising
/// refuses a zero stride or dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "GeometryFields")]
pub struct Conv2dGeometry {
    /// Step between receptive fields, ≥ 1.
    pub stride: [usize; 2],
    /// Zeros added on each side.
    pub padding: [usize; 2],
    /// Spacing between kernel taps, ≥ 1.
    pub dilation: [usize; 2],
}

/// The serialised fields of [`Conv2dGeometry`], checked on the way in.
#[derive(Deserialize)]
struct GeometryFields {
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl TryFrom<GeometryFields> for Conv2dGeometry {
    type Error = Error;

    fn try_from(f: GeometryFields) -> Result<Self> {
        let g = Conv2dGeometry {
            stride: f.stride,
            padding: f.padding,
            dilation: f.dilation,
        };
        if g.stride.contains(&0) || g.dilation.contains(&0) {
            return Err(Error::config("stride/dilation", 0, "must be at least 1"));
        }
        Ok(g)
    }
}

impl Default for Conv2dGeometry {
    fn default() -> Self {
        Self {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
        }
    }
}

impl Conv2dGeometry {
    /// Square stride and padding, dilation 1.
    pub fn new(stride: usize, padding: usize) -> Self {
        Self {
            stride: [stride, stride],
            padding: [padding, padding],
            dilation: [1, 1],
        }
    }

    /// The output size `(Ho, Wo)` for an `h × w` input and a `kh × kw` kernel.
    ///
    /// # Errors
    /// [`Error::Config`] for zero stride/dilation, a kernel larger than the padded input, or
    /// sizes whose arithmetic overflows.
    pub fn output_size(&self, h: usize, w: usize, kh: usize, kw: usize) -> Result<(usize, usize)> {
        if self.stride.contains(&0) || self.dilation.contains(&0) {
            return Err(Error::config("stride/dilation", 0, "must be at least 1"));
        }
        let one = |size: usize, k: usize, axis: usize| -> Result<usize> {
            let too_large = || {
                Error::config(
                    "conv geometry",
                    format!("input {size}, kernel {k}, {self:?}"),
                    "its sizes overflow the machine's integers",
                )
            };
            let span = self.dilation[axis]
                .checked_mul(k.max(1) - 1)
                .and_then(|s| s.checked_add(1))
                .ok_or_else(too_large)?;
            let padded = self.padding[axis]
                .checked_mul(2)
                .and_then(|p| p.checked_add(size))
                .ok_or_else(too_large)?;
            if k == 0 || padded < span {
                return Err(Error::Config {
                    name: "kernel",
                    value: format!("{k} (dilated span {span})"),
                    rule: "must fit in the padded input",
                });
            }
            Ok((padded - span) / self.stride[axis] + 1)
        };
        Ok((one(h, kh, 0)?, one(w, kw, 1)?))
    }

    /// Input coordinate of tap `i` at output position `p` along `axis`, or `None` in padding.
    #[inline]
    fn source(&self, axis: usize, p: usize, i: usize, size: usize) -> Option<usize> {
        let pos = (p * self.stride[axis] + i * self.dilation[axis]) as isize
            - self.padding[axis] as isize;
        (pos >= 0 && (pos as usize) < size).then_some(pos as usize)
    }
}

/// Marks a patch entry that falls in the zero padding.
const PADDING: usize = usize::MAX;

/// For every patch row `l` and term `d` of one image, the flat index `(c·H + y)·W + x` of its
/// source pixel, or [`PADDING`]: `[L·D]`, shared by [`unfold`] and [`fold`].
fn source_table(
    shape: [usize; 3],
    kh: usize,
    kw: usize,
    geom: &Conv2dGeometry,
    out: (usize, usize),
) -> Vec<usize> {
    let [c, h, w] = shape;
    let (ho, wo) = out;
    let mut table = Vec::with_capacity(ho * wo * c * kh * kw);
    for l in 0..ho * wo {
        let (py, px) = (l / wo, l % wo);
        for ci in 0..c {
            for i in 0..kh {
                let sy = geom.source(0, py, i, h);
                for j in 0..kw {
                    table.push(match (sy, geom.source(1, px, j, w)) {
                        (Some(sy), Some(sx)) => (ci * h + sy) * w + sx,
                        _ => PADDING,
                    });
                }
            }
        }
    }
    table
}

/// `x [B, C, H, W]` → patches `[B·Ho·Wo, C·kh·kw]`, PyTorch `F.unfold` order (transposed).
///
/// # Errors
/// As [`Conv2dGeometry::output_size`].
pub fn unfold<T: Real>(
    x: ArrayView4<T>,
    kh: usize,
    kw: usize,
    geom: &Conv2dGeometry,
) -> Result<Array2<T>> {
    let (b, c, h, w) = x.dim();
    let (ho, wo) = geom.output_size(h, w, kh, kw)?;
    let table = source_table([c, h, w], kh, kw, geom, (ho, wo));
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let per_image = (ho * wo * c * kh * kw).max(1);
    let mut cols = Array2::zeros((b * ho * wo, c * kh * kw));
    cols.as_slice_mut()
        .expect("fresh array")
        .par_chunks_mut(per_image)
        .enumerate()
        .for_each(|(bi, out)| {
            let img = &xs[bi * c * h * w..][..c * h * w];
            for (o, &src) in out.iter_mut().zip(&table) {
                if src != PADDING {
                    *o = img[src];
                }
            }
        });
    Ok(cols)
}

/// The adjoint of [`unfold`]: patch values `[B·Ho·Wo, C·kh·kw]` added back into an image
/// `[B, C, H, W]` (`shape`).
///
/// # Errors
/// [`Error::Shape`] if `cols` does not match `shape`, the kernel and the geometry.
pub fn fold<T: Real>(
    cols: ArrayView2<T>,
    shape: [usize; 4],
    kh: usize,
    kw: usize,
    geom: &Conv2dGeometry,
) -> Result<Array4<T>> {
    let [b, c, h, w] = shape;
    let (ho, wo) = geom.output_size(h, w, kh, kw)?;
    let want = [b * ho * wo, c * kh * kw];
    if cols.shape() != want {
        return Err(Error::shape(
            "nrpm::conv::fold",
            "cols",
            &want,
            cols.shape(),
        ));
    }
    let table = source_table([c, h, w], kh, kw, geom, (ho, wo));
    let cols = cols.as_standard_layout();
    let cs = cols.as_slice().expect("standard layout");
    let per_image = ho * wo * c * kh * kw;
    let mut x = Array4::zeros((b, c, h, w));
    x.as_slice_mut()
        .expect("fresh array")
        .par_chunks_mut((c * h * w).max(1))
        .enumerate()
        .for_each(|(bi, img)| {
            let patch = &cs[bi * per_image..][..per_image];
            for (&v, &src) in patch.iter().zip(&table) {
                if src != PADDING {
                    img[src] += v;
                }
            }
        });
    Ok(x)
}

/// Gradients of an NRPM conv2d.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvGrads<T> {
    /// `[B, C, H, W]`.
    pub x: Array4<T>,
    /// `[O, C, kh, kw]`.
    pub weight: Array4<T>,
    /// `[O]`.
    pub bias: Array1<T>,
    /// Scalar ∂/∂λ.
    pub lambda: T,
}

fn check_channels<T>(op: &'static str, x: &ArrayView4<T>, weight: &ArrayView4<T>) -> Result<()> {
    let (c, cw) = (x.dim().1, weight.dim().1);
    if c != cw {
        let (o, _, kh, kw) = weight.dim();
        return Err(Error::shape(
            op,
            "weight (its channels C must be x's)",
            &[o, c, kh, kw],
            weight.shape(),
        ));
    }
    Ok(())
}

fn flat_weight<T: Real>(weight: &ArrayView4<T>) -> Array2<T> {
    let (o, c, kh, kw) = weight.dim();
    weight
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((o, c * kh * kw))
        .expect("contiguous")
}

/// NRPM conv2d forward on the default (fused) path: `x [B, C, H, W]`, `weight [O, C, kh, kw]`,
/// `bias [O]` → `y [B, O, Ho, Wo]`, plus what [`backward`] needs (the iterates of the
/// unfolded rows, `[B·L, O, N, K + 1]`, the configuration and a fingerprint of `x`, `weight`
/// and `geom`).
///
/// # Errors
/// [`Error::Shape`] if the channels differ; otherwise as [`crate::forward`] and
/// [`Conv2dGeometry::output_size`].
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use ndarray::Array4;
/// use nrpm::conv::{self, Conv2dGeometry};
/// let x = Array4::<f32>::from_shape_fn((2, 3, 8, 8), |(b, c, h, w)| ((b + c + h * w) % 5) as f32 / 5.0);
/// let w = Array4::<f32>::from_elem((4, 3, 3, 3), 0.1);
/// let geom = Conv2dGeometry::new(1, 1); // stride 1, padding 1
/// let cfg = nrpm::NrpmConfig::builder().k(1).lambda(0.5).build()?;
/// let (y, saved) = conv::forward(x.view(), w.view(), None, &geom, &cfg)?;
/// assert_eq!(y.dim(), (2, 4, 8, 8));
/// let g = conv::backward(x.view(), w.view(), &saved, Array4::ones(y.raw_dim()).view(), &geom)?;
/// assert_eq!(g.weight.dim(), (4, 3, 3, 3));
/// # Ok(()) }
/// ```
pub fn forward<T: Real>(
    x: ArrayView4<T>,
    weight: ArrayView4<T>,
    bias: Option<ArrayView1<T>>,
    geom: &Conv2dGeometry,
    cfg: &NrpmConfig,
) -> Result<(Array4<T>, Iterates<T>)> {
    forward_with(Exec::Fused, x, weight, bias, geom, cfg)
}

/// [`forward`] on a chosen path.
///
/// # Errors
/// As [`forward`]; with [`Exec::Cuda`] also the CUDA errors of [`crate::forward_with`].
pub fn forward_with<T: Real>(
    exec: Exec,
    x: ArrayView4<T>,
    weight: ArrayView4<T>,
    bias: Option<ArrayView1<T>>,
    geom: &Conv2dGeometry,
    cfg: &NrpmConfig,
) -> Result<(Array4<T>, Iterates<T>)> {
    check_channels("nrpm::conv::forward", &x, &weight)?;
    let (b, _, h, w) = x.dim();
    let (o, _, kh, kw) = weight.dim();
    let (ho, wo) = geom.output_size(h, w, kh, kw)?;
    let (y, iterates) = if let (Exec::Cuda(ordinal), false) = (exec, cfg.exact_lad()) {
        // Patches are unfolded on the device: the image travels, not [B·L, D].
        let w_flat = flat_weight(&weight);
        cuda::conv_forward(ordinal, x, w_flat.view(), bias, kh, kw, geom, cfg)?
    } else {
        let cols = unfold(x, kh, kw, geom)?;
        linear_forward_with(exec, cols.view(), flat_weight(&weight).view(), bias, cfg)?
    };
    let iterates = iterates.into_conv(&x, &weight, *geom);
    Ok((rows_to_nchw(y, b, o, ho, wo), iterates))
}

/// NRPM conv2d backward on the default (fused) path, for the forward pass that produced
/// `iterates` (same `x`, `weight` and `geom`; its configuration is used).
///
/// # Errors
/// [`Error::Stale`] if `x`, `weight` or `geom` is not what the forward pass saw;
/// [`Error::Shape`] if `grad_output` is not `[B, O, Ho, Wo]`; otherwise as
/// [`crate::backward`].
pub fn backward<T: Real>(
    x: ArrayView4<T>,
    weight: ArrayView4<T>,
    iterates: &Iterates<T>,
    grad_output: ArrayView4<T>,
    geom: &Conv2dGeometry,
) -> Result<ConvGrads<T>> {
    backward_with(Exec::Fused, x, weight, iterates, grad_output, geom)
}

/// [`backward`] on a chosen path.
///
/// # Errors
/// As [`backward`]; with [`Exec::Cuda`] also the CUDA errors of [`crate::forward_with`].
pub fn backward_with<T: Real>(
    exec: Exec,
    x: ArrayView4<T>,
    weight: ArrayView4<T>,
    iterates: &Iterates<T>,
    grad_output: ArrayView4<T>,
    geom: &Conv2dGeometry,
) -> Result<ConvGrads<T>> {
    let op = "nrpm::conv::backward";
    check_channels(op, &x, &weight)?;
    iterates.check_conv(op, &x, &weight, geom)?;
    let (b, c, h, w) = x.dim();
    let (o, _, kh, kw) = weight.dim();
    let (ho, wo) = geom.output_size(h, w, kh, kw)?;
    if grad_output.dim() != (b, o, ho, wo) {
        return Err(Error::shape(
            op,
            "grad_output",
            &[b, o, ho, wo],
            grad_output.shape(),
        ));
    }
    let gy_rows = grad_output
        .permuted_axes([0, 2, 3, 1])
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((b * ho * wo, o))
        .expect("contiguous");
    if let (Exec::Cuda(ordinal), false) = (exec, iterates.cfg.exact_lad()) {
        let w_flat = flat_weight(&weight);
        let cfg = iterates.cfg;
        return cuda::conv_backward(
            ordinal,
            x,
            w_flat.view(),
            iterates,
            gy_rows.view(),
            kh,
            kw,
            geom,
            &cfg,
        );
    }
    let cols = unfold(x, kh, kw, geom)?;
    let g = backward_unchecked(
        exec,
        cols.view(),
        flat_weight(&weight).view(),
        iterates,
        gy_rows.view(),
    )?;
    Ok(ConvGrads {
        x: fold(g.x.view(), [b, c, h, w], kh, kw, geom)?,
        weight: g
            .weight
            .into_shape_with_order((o, c, kh, kw))
            .expect("contiguous"),
        bias: g.bias,
        lambda: g.lambda,
    })
}

/// `[B·Ho·Wo, O]` rows → `[B, O, Ho, Wo]`.
fn rows_to_nchw<T: Real>(y: Array2<T>, b: usize, o: usize, ho: usize, wo: usize) -> Array4<T> {
    y.into_shape_with_order((b, ho, wo, o))
        .expect("contiguous")
        .permuted_axes([0, 3, 1, 2])
        .as_standard_layout()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A weight with other channels than x is refused by name on both passes, before the
    /// patches are unfolded.
    #[test]
    fn mismatched_channels_are_a_shape_error_of_the_weight() {
        let cfg = NrpmConfig::builder().k(2).lambda(0.5).build().unwrap();
        let geom = Conv2dGeometry::new(1, 0);
        let x = Array4::from_shape_fn((1, 2, 4, 4), |(_, c, i, j)| (c + i * j) as f64 * 0.1);
        let w = Array4::from_elem((3, 2, 2, 2), 0.25);
        let (y, saved) = forward(x.view(), w.view(), None, &geom, &cfg).unwrap();
        let other = Array4::from_elem((3, 1, 2, 2), 0.25);
        let channels = |r: Result<()>, want: &str| match r {
            Err(Error::Shape { op, arg, got, .. }) => {
                assert_eq!((op, got), (want, vec![3, 1, 2, 2]));
                assert!(arg.contains("channels"), "{arg}");
            }
            other => panic!("{other:?}"),
        };
        let fwd = forward(x.view(), other.view(), None, &geom, &cfg).map(|_| ());
        channels(fwd, "nrpm::conv::forward");
        let bwd = backward(x.view(), other.view(), &saved, y.view(), &geom).map(|_| ());
        channels(bwd, "nrpm::conv::backward");
    }

    /// A geometry round-trips through its record, and one with a zero stride or dilation is
    /// refused on the way in.
    #[test]
    fn serde_round_trips_and_checks_the_geometry() {
        let g = Conv2dGeometry {
            stride: [2, 1],
            padding: [1, 2],
            dilation: [2, 1],
        };
        let text = serde_json::to_string(&g).unwrap();
        assert_eq!(serde_json::from_str::<Conv2dGeometry>(&text).unwrap(), g);
        for bad in [
            r#"{"stride":[0,1],"padding":[0,0],"dilation":[1,1]}"#,
            r#"{"stride":[1,1],"padding":[0,0],"dilation":[1,0]}"#,
        ] {
            assert!(
                serde_json::from_str::<Conv2dGeometry>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn output_size_follows_pytorch() {
        let g = Conv2dGeometry::new(1, 0);
        assert_eq!(g.output_size(28, 28, 5, 5).unwrap(), (24, 24));
        let g = Conv2dGeometry {
            stride: [2, 1],
            padding: [1, 2],
            dilation: [2, 1],
        };
        // H: (7 + 2 − 2·2 − 1)/2 + 1 = 3 ; W: (6 + 4 − 2 − 1)/1 + 1 = 8
        assert_eq!(g.output_size(7, 6, 3, 3).unwrap(), (3, 8));
        assert!(Conv2dGeometry::new(1, 0).output_size(2, 2, 3, 3).is_err());
        assert!(Conv2dGeometry::new(0, 0).output_size(5, 5, 3, 3).is_err());
    }

    #[test]
    fn fold_is_the_adjoint_of_unfold() {
        // <unfold(x), c> = <x, fold(c)> for all x, c.
        let geom = Conv2dGeometry {
            stride: [2, 1],
            padding: [1, 1],
            dilation: [1, 2],
        };
        let x = Array4::from_shape_fn((2, 3, 5, 6), |(a, b, c, d)| {
            ((a * 7 + b * 5 + c * 3 + d) % 11) as f64 - 5.0
        });
        let cols = unfold(x.view(), 3, 2, &geom).unwrap();
        let c = Array2::from_shape_fn(cols.raw_dim(), |(i, j)| ((i * 3 + j) % 7) as f64 - 3.0);
        let lhs = (&cols * &c).sum();
        let rhs = (&x * &fold(c.view(), [2, 3, 5, 6], 3, 2, &geom).unwrap()).sum();
        assert_eq!(lhs, rhs);
    }
}
