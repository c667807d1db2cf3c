//! BatchNorm2d over the channels of NCHW maps (PyTorch `nn.BatchNorm2d`: eps 1e-5,
//! momentum 0.1, keys `weight`, `bias`, `running_mean`, `running_var`, `num_batches_tracked`).
//!
//! ```text
//! train: μ_c, σ²_c = mean, biased variance of x[:, c] over (B, H, W)
//!        x̂ = (x − μ_c)/√(σ²_c + eps);  y = γ_c·x̂ + β_c
//!        running ← (1 − m)·running + m·(μ_c, σ²_c·n/(n − 1))
//! eval:  x̂ = (x − running_mean)/√(running_var + eps)
//! backward (train): ∂x = (γ/(n·σ))·(n·∂x̂ − Σ∂x̂ − x̂·Σ(∂x̂·x̂)),  ∂x̂ = γ·∂y
//! ```

use std::sync::Mutex;

use ndarray::{Array1, ArrayD, Axis};

use crate::error::{Error, Result};
use crate::nn::{join, Cache, Mode, Param, ParamGrads, ParamMut, Role};
use crate::real::Real;

/// Running statistics (updated in train mode through `&self`, hence the mutex).
#[derive(Clone, Debug)]
struct Running<T> {
    /// `[C]`.
    mean: Array1<T>,
    /// `[C]`.
    var: Array1<T>,
    /// `num_batches_tracked`.
    batches: i64,
}

/// Batch normalisation of `[B, C, H, W]` maps; every tensor has C entries, fixed at
/// construction.
#[derive(Debug)]
pub struct BatchNorm2d<T> {
    weight: Array1<T>,
    bias: Array1<T>,
    running: Mutex<Running<T>>,
    /// Added to the variance.
    pub eps: f64,
    /// Running-average factor.
    pub momentum: f64,
}

impl<T: Real> Clone for BatchNorm2d<T> {
    fn clone(&self) -> Self {
        Self {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            running: Mutex::new(self.lock().clone()),
            eps: self.eps,
            momentum: self.momentum,
        }
    }
}

impl<T: Real> BatchNorm2d<T> {
    /// PyTorch's initial state: γ = 1, β = 0, running mean 0, variance 1.
    pub fn new(c: usize) -> Self {
        Self {
            weight: Array1::ones(c),
            bias: Array1::zeros(c),
            running: Mutex::new(Running {
                mean: Array1::zeros(c),
                var: Array1::ones(c),
                batches: 0,
            }),
            eps: 1e-5,
            momentum: 0.1,
        }
    }

    /// The running statistics, even after a panic elsewhere held the lock.
    fn lock(&self) -> std::sync::MutexGuard<'_, Running<T>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `(running mean [C], running variance [C], num_batches_tracked)`.
    pub fn running_stats(&self) -> (Array1<T>, Array1<T>, i64) {
        let r = self.lock();
        (r.mean.clone(), r.var.clone(), r.batches)
    }

    /// The scale γ `[C]`.
    pub fn weight(&self) -> ndarray::ArrayView1<'_, T> {
        self.weight.view()
    }

    /// The shift β `[C]`.
    pub fn bias(&self) -> ndarray::ArrayView1<'_, T> {
        self.bias.view()
    }

    /// Sets `num_batches_tracked` (what a checkpoint stores).
    pub fn set_batches_tracked(&mut self, n: i64) {
        self.running
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .batches = n;
    }

    fn channels(&self) -> usize {
        self.weight.len()
    }

    /// Forward pass.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` is not `[B, C, H, W]` with this layer's C; [`Error::Config`] for
    /// a train-mode batch of one value per channel (no variance).
    pub fn forward(&self, x: ArrayD<T>, mode: Mode) -> Result<(ArrayD<T>, Cache<T>)> {
        let c = self.channels();
        if x.ndim() != 4 || x.shape()[1] != c {
            return Err(Error::shape(
                "nn::BatchNorm2d::forward",
                "x ([B, C, H, W])",
                &[0, c, 0, 0],
                x.shape(),
            ));
        }
        let n = x.len() / c;
        let eps = T::of(self.eps);
        let (mean, var) = if mode == Mode::Train {
            if n < 2 {
                return Err(Error::config(
                    "batch",
                    n,
                    "train-mode BatchNorm needs more than one value per channel",
                ));
            }
            let (mean, var) = channel_stats(&x);
            let mut run = self.lock();
            let m = T::of(self.momentum);
            let unbias = T::of(n as f64 / (n as f64 - 1.0));
            for ch in 0..c {
                run.mean[ch] = (T::one() - m) * run.mean[ch] + m * mean[ch];
                run.var[ch] = (T::one() - m) * run.var[ch] + m * var[ch] * unbias;
            }
            run.batches += 1;
            (mean, var)
        } else {
            let run = self.lock();
            (
                run.mean.iter().copied().collect(),
                run.var.iter().copied().collect(),
            )
        };
        let inv_std: Vec<T> = var.iter().map(|&v| T::one() / (v + eps).sqrt()).collect();
        let mut xhat = x;
        let mut y = ArrayD::zeros(xhat.raw_dim());
        for ch in 0..c {
            let mut xc = xhat.index_axis_mut(Axis(1), ch);
            xc.mapv_inplace(|v| (v - mean[ch]) * inv_std[ch]);
            let (g, b) = (self.weight[ch], self.bias[ch]);
            y.index_axis_mut(Axis(1), ch)
                .zip_mut_with(&xc, |y, &xh| *y = g * xh + b);
        }
        let train = mode == Mode::Train;
        Ok((
            y,
            Cache::BatchNorm {
                xhat,
                inv_std,
                train,
            },
        ))
    }

    /// Backward pass: returns `∂L/∂x`, adds `weight` and `bias` gradients.
    ///
    /// # Errors
    /// A cache of another layer.
    pub fn backward(
        &self,
        key: &str,
        cache: &Cache<T>,
        dy: ArrayD<T>,
        grads: &mut ParamGrads<T>,
    ) -> Result<ArrayD<T>> {
        let Cache::BatchNorm {
            xhat,
            inv_std,
            train,
        } = cache
        else {
            return Err(Error::WrongCache {
                layer: "nn::BatchNorm2d",
            });
        };
        if dy.shape() != xhat.shape() {
            return Err(Error::shape(
                "nn::BatchNorm2d::backward",
                "dy",
                xhat.shape(),
                dy.shape(),
            ));
        }
        let c = self.channels();
        let n = T::of((xhat.len() / c) as f64);
        let mut dx = dy.clone();
        let mut dgamma = Array1::zeros(c);
        let mut dbeta = Array1::zeros(c);
        for ch in 0..c {
            let xh = xhat.index_axis(Axis(1), ch);
            let dyc = dy.index_axis(Axis(1), ch);
            let sum_dy: T = dyc.sum();
            let sum_dy_xh: T = dyc.iter().zip(xh.iter()).map(|(&a, &b)| a * b).sum();
            dgamma[ch] = sum_dy_xh;
            dbeta[ch] = sum_dy;
            let g = self.weight[ch];
            let s = inv_std[ch];
            let mut dxc = dx.index_axis_mut(Axis(1), ch);
            if *train {
                // ∂x = γ·s/n·(n·∂y − Σ∂y − x̂·Σ(∂y·x̂))
                dxc.zip_mut_with(&xh, |d, &xh| {
                    *d = g * s / n * (n * *d - sum_dy - xh * sum_dy_xh);
                });
            } else {
                dxc.mapv_inplace(|d| d * g * s);
            }
        }
        grads.add(join(key, "weight"), dgamma.into_dyn());
        grads.add(join(key, "bias"), dbeta.into_dyn());
        Ok(dx)
    }

    /// Visits `weight`, `bias` (trainable) and the running statistics (buffers), read-only.
    pub fn visit(&self, key: &str, f: &mut dyn FnMut(Param<'_, T>)) {
        f(Param::new(
            join(key, "weight"),
            Role::Bias,
            self.weight.view().into_dyn(),
        ));
        f(Param::new(
            join(key, "bias"),
            Role::Bias,
            self.bias.view().into_dyn(),
        ));
        let run = self.lock();
        f(Param::new(
            join(key, "running_mean"),
            Role::Buffer,
            run.mean.view().into_dyn(),
        ));
        f(Param::new(
            join(key, "running_var"),
            Role::Buffer,
            run.var.view().into_dyn(),
        ));
    }

    /// Visits `weight`, `bias` (trainable) and the running statistics (buffers).
    pub fn visit_mut(&mut self, key: &str, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        f(ParamMut::new(
            join(key, "weight"),
            Role::Bias,
            self.weight.view_mut().into_dyn(),
        ));
        f(ParamMut::new(
            join(key, "bias"),
            Role::Bias,
            self.bias.view_mut().into_dyn(),
        ));
        let run = self.running.get_mut().unwrap_or_else(|e| e.into_inner());
        f(ParamMut::new(
            join(key, "running_mean"),
            Role::Buffer,
            run.mean.view_mut().into_dyn(),
        ));
        f(ParamMut::new(
            join(key, "running_var"),
            Role::Buffer,
            run.var.view_mut().into_dyn(),
        ));
    }
}

/// Per-channel mean and biased variance of an NCHW array.
fn channel_stats<T: Real>(x: &ArrayD<T>) -> (Vec<T>, Vec<T>) {
    let c = x.shape()[1];
    let n = T::of((x.len() / c) as f64);
    (0..c)
        .map(|ch| {
            let xc = x.index_axis(Axis(1), ch);
            let mean = xc.sum() / n;
            let var = xc.iter().map(|&v| (v - mean) * (v - mean)).sum::<T>() / n;
            (mean, var)
        })
        .unzip()
}
