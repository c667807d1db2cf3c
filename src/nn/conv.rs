//! 2-D convolution layer (NCHW) with a choice of matching (LPM or NRPM).

use ndarray::{Array1, Array4, ArrayD, Ix4};

use crate::error::{Error, Result};
use crate::nn::{join, Cache, Matching, Param, ParamGrads, ParamMut, Role};
use crate::nrpm::conv::{self, Conv2dGeometry};
use crate::nrpm::Iterates;
use crate::real::Real;

/// `x [B, C, H, W] → y [B, O, Ho, Wo]` with `weight [O, C, kh, kw]` and optional `bias [O]`
/// (PyTorch `nn.Conv2d` keys). The authors' `RobustConv2d` never adds its bias: set
/// `apply_bias = false` to reproduce that while still loading and saving the `bias` tensor.
/// The tensors' shapes are fixed at construction.
#[derive(Clone, Debug)]
pub struct Conv2d<T> {
    weight: Array4<T>,
    bias: Option<Array1<T>>,
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
            weight: Array4::zeros((o, c, kernel, kernel)),
            bias: bias.then(|| Array1::zeros(o)),
            apply_bias: bias,
            geometry,
            matching: Matching::Lpm,
        }
    }

    /// `weight [O, C, kh, kw]`.
    pub fn weight(&self) -> ndarray::ArrayView4<'_, T> {
        self.weight.view()
    }

    /// `bias [O]`, if the layer has one (added only with `apply_bias`).
    pub fn bias(&self) -> Option<ndarray::ArrayView1<'_, T>> {
        self.bias.as_ref().map(|b| b.view())
    }

    /// Replaces the weight values.
    ///
    /// # Errors
    /// [`Error::Shape`] unless `weight` has the layer's shape.
    pub fn set_weight(&mut self, weight: Array4<T>) -> Result<()> {
        if weight.dim() != self.weight.dim() {
            return Err(Error::shape(
                "nn::Conv2d::set_weight",
                "weight",
                self.weight.shape(),
                weight.shape(),
            ));
        }
        self.weight = weight;
        Ok(())
    }

    fn applied_bias(&self) -> Option<ndarray::ArrayView1<'_, T>> {
        match (&self.bias, self.apply_bias) {
            (Some(b), true) => Some(b.view()),
            _ => None,
        }
    }

    /// Forward pass.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` is not NCHW with the layer's channels; operator errors.
    pub fn forward(&self, x: ArrayD<T>) -> Result<(ArrayD<T>, Cache<T>)> {
        let x4 = x.view().into_dimensionality::<Ix4>().map_err(|_| {
            Error::shape(
                "nn::Conv2d::forward",
                "x ([B, C, H, W])",
                &[0, self.weight.dim().1, 0, 0],
                x.shape(),
            )
        })?;
        let (cfg, exec) = self.matching.op()?;
        let (y, iterates) = conv::forward_with(
            exec,
            x4,
            self.weight.view(),
            self.applied_bias(),
            &self.geometry,
            &cfg,
        )?;
        Ok((
            y.into_dyn(),
            Cache::Matching {
                x,
                iterates: Box::new(iterates),
            },
        ))
    }

    /// Backward pass: returns `∂L/∂x`; adds `weight`, `bias` (when applied), `robust_sum.beta`.
    ///
    /// # Errors
    /// [`Error::Stale`] for a cache of another input; shape mismatches of `dy`.
    pub fn backward(
        &self,
        key: &str,
        x: &ArrayD<T>,
        iterates: &Iterates<T>,
        dy: ArrayD<T>,
        grads: &mut ParamGrads<T>,
    ) -> Result<ArrayD<T>> {
        let op = "nn::Conv2d::backward";
        let x4 = x
            .view()
            .into_dimensionality::<Ix4>()
            .map_err(|_| Error::shape(op, "cached x", &[0, 0, 0, 0], x.shape()))?;
        let dy4 = dy
            .view()
            .into_dimensionality::<Ix4>()
            .map_err(|_| Error::shape(op, "dy ([B, O, Ho, Wo])", &[0, 0, 0, 0], dy.shape()))?;
        let exec = self.matching.op()?.1;
        let g = conv::backward_with(exec, x4, self.weight.view(), iterates, dy4, &self.geometry)?;
        grads.add(join(key, "weight"), g.weight.into_dyn());
        if self.bias.is_some() && self.apply_bias {
            grads.add(join(key, "bias"), g.bias.into_dyn());
        }
        self.matching.add_theta_grad(key, "beta", g.lambda, grads);
        Ok(g.x.into_dyn())
    }

    /// Visits `weight`, `bias`, θ.
    pub fn visit(&self, key: &str, f: &mut dyn FnMut(Param<'_, T>)) {
        f(Param::new(
            join(key, "weight"),
            Role::Weight,
            self.weight.view().into_dyn(),
        ));
        if let Some(b) = &self.bias {
            f(Param::new(
                join(key, "bias"),
                Role::Bias,
                b.view().into_dyn(),
            ));
        }
        self.matching.visit(key, "beta", f);
    }

    /// Visits `weight`, `bias`, θ, mutably (values only: shapes cannot change).
    pub fn visit_mut(&mut self, key: &str, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        f(ParamMut::new(
            join(key, "weight"),
            Role::Weight,
            self.weight.view_mut().into_dyn(),
        ));
        if let Some(b) = &mut self.bias {
            f(ParamMut::new(
                join(key, "bias"),
                Role::Bias,
                b.view_mut().into_dyn(),
            ));
        }
        self.matching.visit_mut(key, "beta", f);
    }
}
