//! 2-D convolution layer (NCHW) with a choice of matching (LPM or NRPM).

use ndarray::{ArrayD, Ix1, Ix4};

use crate::error::{Error, Result};
use crate::nn::linear::visit_matched;
use crate::nn::{join, Cache, Grads, Matching, ParamMut};
use crate::nrpm::conv::{self, Conv2dGeometry};
use crate::nrpm::Iterates;
use crate::real::Real;

/// `x [B, C, H, W] → y [B, O, Ho, Wo]` with `weight [O, C, kh, kw]` and optional `bias [O]`
/// (PyTorch `nn.Conv2d` keys). The authors' `RobustConv2d` never adds its bias: set
/// `apply_bias = false` to reproduce that while still loading and saving the `bias` tensor.
#[derive(Clone, Debug)]
pub struct Conv2d<T> {
    /// `[O, C, kh, kw]`.
    pub weight: ArrayD<T>,
    /// `[O]`.
    pub bias: Option<ArrayD<T>>,
    /// Whether the bias is added in the forward pass.
    pub apply_bias: bool,
    /// Stride, padding, dilation.
    pub geometry: Conv2dGeometry,
    /// LPM or NRPM.
    pub matching: Matching<T>,
}

impl<T: Real> Conv2d<T> {
    /// A zero-initialised LPM convolution with a square kernel.
    pub fn new(c: usize, o: usize, kernel: usize, geometry: Conv2dGeometry, bias: bool) -> Self {
        Self {
            weight: ArrayD::zeros(ndarray::IxDyn(&[o, c, kernel, kernel])),
            bias: bias.then(|| ArrayD::zeros(ndarray::IxDyn(&[o]))),
            apply_bias: bias,
            geometry,
            matching: Matching::Lpm,
        }
    }

    fn weight4(&self) -> ndarray::ArrayView4<'_, T> {
        self.weight
            .view()
            .into_dimensionality::<Ix4>()
            .expect("weight is [O, C, kh, kw]")
    }

    /// Forward pass.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` is not NCHW with the layer's channels; operator errors.
    pub fn forward(&self, x: ArrayD<T>) -> Result<(ArrayD<T>, Cache<T>)> {
        let w = self.weight4();
        let x4 = x.view().into_dimensionality::<Ix4>().map_err(|_| {
            Error::shape(
                "nn::Conv2d::forward (x must be [B, C, H, W])",
                &[0, w.dim().1, 0, 0],
                x.shape(),
            )
        })?;
        let bias = match (&self.bias, self.apply_bias) {
            (Some(b), true) => Some(b.view().into_dimensionality::<Ix1>().expect("bias is [O]")),
            _ => None,
        };
        let (cfg, exec) = self.matching.op()?;
        let (y, iterates) = conv::forward(exec, x4, w, bias, &self.geometry, &cfg)?;
        Ok((y.into_dyn(), Cache::Matching { x, iterates }))
    }

    /// Backward pass: returns `∂L/∂x`; adds `weight`, `bias` (when applied), `robust_sum.beta`.
    ///
    /// # Errors
    /// Shape mismatches between the cache and `dy`.
    pub fn backward(
        &self,
        key: &str,
        x: &ArrayD<T>,
        iterates: &Iterates<T>,
        dy: ArrayD<T>,
        grads: &mut Grads<T>,
    ) -> Result<ArrayD<T>> {
        let x4 = x
            .view()
            .into_dimensionality::<Ix4>()
            .expect("cached input is NCHW");
        let dy4 = dy.view().into_dimensionality::<Ix4>().map_err(|_| {
            Error::shape(
                "nn::Conv2d::backward (dy must be NCHW)",
                &[0, 0, 0, 0],
                dy.shape(),
            )
        })?;
        let (cfg, exec) = self.matching.op()?;
        let g = conv::backward(
            exec,
            x4,
            self.weight4(),
            iterates,
            dy4,
            &self.geometry,
            &cfg,
        )?;
        grads.add(join(key, "weight"), g.weight.into_dyn());
        if self.bias.is_some() && self.apply_bias {
            grads.add(join(key, "bias"), g.bias.into_dyn());
        }
        self.matching.add_theta_grad(key, "beta", g.lambda, grads);
        Ok(g.x.into_dyn())
    }

    /// Visits `weight`, `bias`, θ.
    pub fn visit_mut(&mut self, key: &str, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        visit_matched(
            key,
            &mut self.weight,
            self.bias.as_mut(),
            &mut self.matching,
            "beta",
            f,
        );
    }
}
