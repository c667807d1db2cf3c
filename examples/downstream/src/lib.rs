//! A downstream crate's own robust layer, written against nrpm's public API only.
//!
//! [`ClippedLinear`] is a fully connected layer whose terms are clipped before they are summed,
//! a Huber-like pattern match with a bounded influence of every input:
//!
//! ```text
//! t_od = W_od·x_d,   y_o = Σ_d clip(t_od, −c, c) + b_o          x [B, D], W [O, D], b [O]
//! ∂y_o/∂x_d = W_od·1[|t_od| < c],   ∂y_o/∂W_od = x_d·1[|t_od| < c],   ∂y_o/∂b_o = 1
//! ```
//!
//! Moving one input x_d arbitrarily far changes each output by at most 2c. The layer plugs into
//! an [`nrpm::nn::Sequential`] as [`nrpm::nn::Layer::Custom`], so nrpm's optimiser, training
//! loop, attacks and checkpoints work on a network that uses it.

use nrpm::ndarray::{Array1, Array2, ArrayD, Ix2};
use nrpm::nn::{Cache, Ctx, Module, Param, ParamGrads, ParamMut, Role};
use nrpm::{Error, Result};

/// `y = Σ_d clip(W_od·x_d, −c, c) + b`, with `weight [O, D]`, `bias [O]` and the clip `c > 0`.
#[derive(Clone, Debug)]
pub struct ClippedLinear {
    weight: Array2<f32>,
    bias: Array1<f32>,
    clip: f32,
}

impl ClippedLinear {
    /// A layer `d → o` with the given clip, weights uniform in ±1/√d from a simple seeded
    /// generator (no dependency beyond nrpm).
    ///
    /// # Errors
    /// [`Error::Config`] unless the clip is finite and > 0.
    pub fn new(d: usize, o: usize, clip: f32, seed: u64) -> Result<Self> {
        if !(clip.is_finite() && clip > 0.0) {
            return Err(Error::config("clip", clip, "must be finite and > 0"));
        }
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let bound = 1.0 / (d.max(1) as f32).sqrt();
        let weight = Array2::from_shape_simple_fn((o, d), || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bound * (2.0 * ((state >> 40) as f32 / (1u64 << 24) as f32) - 1.0)
        });
        Ok(Self {
            weight,
            bias: Array1::zeros(o),
            clip,
        })
    }

    /// `y [B, O]` for `x [B, D]`.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` is not `[B, D]`.
    pub fn apply(&self, x: &Array2<f32>) -> Result<Array2<f32>> {
        let (o, d) = self.weight.dim();
        if x.ncols() != d {
            return Err(Error::shape(
                "ClippedLinear::apply",
                "x",
                &[x.nrows(), d],
                x.shape(),
            ));
        }
        let c = self.clip;
        Ok(Array2::from_shape_fn((x.nrows(), o), |(b, j)| {
            let row = self.weight.row(j);
            let sum: f32 = row
                .iter()
                .zip(x.row(b))
                .map(|(w, v)| (w * v).clamp(-c, c))
                .sum();
            sum + self.bias[j]
        }))
    }

    /// The clip c.
    pub fn clip(&self) -> f32 {
        self.clip
    }
}

impl Module<f32> for ClippedLinear {
    fn forward(&self, x: ArrayD<f32>, _ctx: &mut Ctx) -> Result<(ArrayD<f32>, Cache<f32>)> {
        let d = self.weight.ncols();
        let x2 = x
            .clone()
            .into_dimensionality::<Ix2>()
            .map_err(|_| Error::shape("ClippedLinear::forward", "x", &[0, d], x.shape()))?;
        let y = self.apply(&x2)?;
        Ok((y.into_dyn(), Cache::Custom(std::sync::Arc::new(x2))))
    }

    fn backward(
        &self,
        key: &str,
        cache: &Cache<f32>,
        dy: ArrayD<f32>,
        grads: &mut ParamGrads<f32>,
    ) -> Result<ArrayD<f32>> {
        let op = "ClippedLinear::backward";
        let Cache::Custom(saved) = cache else {
            return Err(Error::WrongCache {
                layer: "ClippedLinear",
            });
        };
        let x = saved
            .downcast_ref::<Array2<f32>>()
            .ok_or(Error::WrongCache {
                layer: "ClippedLinear",
            })?;
        let (o, d) = self.weight.dim();
        let dy = dy
            .into_dimensionality::<Ix2>()
            .map_err(|e| Error::config("dy", e, "must be [B, O]"))?;
        if dy.dim() != (x.nrows(), o) {
            return Err(Error::shape(op, "dy", &[x.nrows(), o], dy.shape()));
        }
        let (mut gx, mut gw) = (
            Array2::<f32>::zeros(x.raw_dim()),
            Array2::<f32>::zeros((o, d)),
        );
        for b in 0..x.nrows() {
            for j in 0..o {
                let g = dy[[b, j]];
                for k in 0..d {
                    let t = self.weight[[j, k]] * x[[b, k]];
                    if t.abs() < self.clip {
                        gx[[b, k]] += g * self.weight[[j, k]];
                        gw[[j, k]] += g * x[[b, k]];
                    }
                }
            }
        }
        grads.add(format!("{key}.weight"), gw.into_dyn());
        grads.add(
            format!("{key}.bias"),
            dy.sum_axis(nrpm::ndarray::Axis(0)).into_dyn(),
        );
        Ok(gx.into_dyn())
    }

    fn visit(&self, key: &str, f: &mut dyn FnMut(Param<'_, f32>)) {
        f(Param::new(
            format!("{key}.weight"),
            Role::Weight,
            self.weight.view().into_dyn(),
        ));
        f(Param::new(
            format!("{key}.bias"),
            Role::Bias,
            self.bias.view().into_dyn(),
        ));
    }

    fn visit_mut(&mut self, key: &str, f: &mut dyn FnMut(ParamMut<'_, f32>)) {
        f(ParamMut::new(
            format!("{key}.weight"),
            Role::Weight,
            self.weight.view_mut().into_dyn(),
        ));
        f(ParamMut::new(
            format!("{key}.bias"),
            Role::Bias,
            self.bias.view_mut().into_dyn(),
        ));
    }

    fn box_clone(&self) -> Box<dyn Module<f32>> {
        Box::new(self.clone())
    }
}
