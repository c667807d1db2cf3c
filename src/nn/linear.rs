//! Fully connected layer with a choice of matching (LPM or NRPM), and the per-layer λ.

use ndarray::{ArrayD, Ix1, Ix2};

use crate::error::{Error, Result};
use crate::nn::{join, Cache, Grads, ParamMut, Role};
use crate::nrpm::{self, Exec, Iterates, NrpmConfig};
use crate::real::Real;

/// How λ is stored: `λ = θ` (raw, the authors' fixed-λ and MLP λ-only paths) or
/// `λ = sigmoid(θ)` (their learnable paths; keeps λ in (0, 1) while training).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LambdaParam {
    /// `λ = θ`.
    Raw,
    /// `λ = 1/(1 + e^(−θ))`.
    Sigmoid,
}

/// An NRPM matching: the operator's configuration (norm, K, ε, groups) and the learnable θ of
/// its λ, stored as a `[1]` tensor under the state-dict key `<layer>.robust_sum.lmbd`
/// (`.beta` for convolutions, as in the authors' checkpoints).
#[derive(Clone, Debug)]
pub struct RobustMatch<T> {
    /// Operator configuration; its own λ is replaced by [`RobustMatch::lambda`] at each call.
    pub cfg: NrpmConfig,
    /// θ, `[1]`.
    pub theta: ArrayD<T>,
    /// How θ maps to λ.
    pub param: LambdaParam,
    /// Which path runs the operator (CPU, or CUDA: [`crate::models::Model::set_exec`]).
    pub exec: Exec,
}

impl<T: Real> RobustMatch<T> {
    /// A matching with λ taken from `cfg.lambda()` under the given parametrisation.
    ///
    /// # Errors
    /// [`Error::Config`] if `param` is `Sigmoid` and λ is not in (0, 1).
    pub fn new(cfg: NrpmConfig, param: LambdaParam) -> Result<Self> {
        let mut m = Self {
            cfg,
            theta: ArrayD::zeros(ndarray::IxDyn(&[1])),
            param,
            exec: Exec::Fused,
        };
        m.set_lambda(cfg.lambda())?;
        Ok(m)
    }

    /// The current λ.
    pub fn lambda(&self) -> f64 {
        let theta = self.theta[0].f64();
        match self.param {
            LambdaParam::Raw => theta,
            LambdaParam::Sigmoid => 1.0 / (1.0 + (-theta).exp()),
        }
    }

    /// Sets λ (θ = λ, or θ = logit λ).
    ///
    /// # Errors
    /// [`Error::Config`] for non-finite λ, or λ ∉ (0, 1) under `Sigmoid`.
    pub fn set_lambda(&mut self, lambda: f64) -> Result<()> {
        let theta = match self.param {
            LambdaParam::Raw if lambda.is_finite() => lambda,
            LambdaParam::Sigmoid if lambda > 0.0 && lambda < 1.0 => (lambda / (1.0 - lambda)).ln(),
            _ => {
                return Err(Error::config(
                    "lambda",
                    lambda,
                    "must be finite, and in (0, 1) when λ = sigmoid(θ) is learned",
                ))
            }
        };
        self.theta[0] = T::of(theta);
        Ok(())
    }

    /// The operator configuration with the current λ.
    ///
    /// # Errors
    /// [`Error::Config`] if θ became non-finite.
    pub fn op_config(&self) -> Result<NrpmConfig> {
        self.cfg.with_lambda(self.lambda())
    }

    /// `∂L/∂θ` from `∂L/∂λ`.
    pub fn theta_grad(&self, dlambda: T) -> T {
        match self.param {
            LambdaParam::Raw => dlambda,
            LambdaParam::Sigmoid => {
                let s = T::of(self.lambda());
                dlambda * s * (T::one() - s)
            }
        }
    }
}

/// LPM (plain sum) or NRPM (robust operator).
#[derive(Clone, Debug)]
pub enum Matching<T> {
    /// `y = x·Wᵀ + b`.
    Lpm,
    /// `y = λ·LPM + (1 − λ)·NRPM_K + b`.
    Nrpm(RobustMatch<T>),
}

impl<T: Real> Matching<T> {
    /// The operator configuration to run, and the path.
    pub(crate) fn op(&self) -> Result<(NrpmConfig, Exec)> {
        match self {
            Matching::Lpm => Ok((NrpmConfig::lpm(), Exec::Fused)),
            Matching::Nrpm(m) => Ok((m.op_config()?, m.exec)),
        }
    }

    /// Adds `∂L/∂θ` under `key.robust_sum.<slot>` when this is an NRPM matching.
    pub(crate) fn add_theta_grad(&self, key: &str, slot: &str, dlambda: T, grads: &mut Grads<T>) {
        if let Matching::Nrpm(m) = self {
            let g = ArrayD::from_elem(ndarray::IxDyn(&[1]), m.theta_grad(dlambda));
            grads.add(join(key, &format!("robust_sum.{slot}")), g);
        }
    }

    /// Visits θ under `key.robust_sum.<slot>`.
    pub(crate) fn visit_mut(&mut self, key: &str, slot: &str, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        if let Matching::Nrpm(m) = self {
            f(ParamMut {
                key: join(key, &format!("robust_sum.{slot}")),
                role: Role::Lambda,
                value: &mut m.theta,
            });
        }
    }
}

/// `x [B, D] → y [B, O]`: `weight [O, D]`, optional `bias [O]` (PyTorch `nn.Linear` keys
/// `weight`, `bias`), matched by LPM or NRPM.
#[derive(Clone, Debug)]
pub struct Linear<T> {
    /// `[O, D]`.
    pub weight: ArrayD<T>,
    /// `[O]`.
    pub bias: Option<ArrayD<T>>,
    /// LPM or NRPM.
    pub matching: Matching<T>,
}

impl<T: Real> Linear<T> {
    /// A zero-initialised LPM layer `d → o` (load or initialise weights afterwards).
    pub fn new(d: usize, o: usize, bias: bool) -> Self {
        Self {
            weight: ArrayD::zeros(ndarray::IxDyn(&[o, d])),
            bias: bias.then(|| ArrayD::zeros(ndarray::IxDyn(&[o]))),
            matching: Matching::Lpm,
        }
    }

    fn views(
        &self,
    ) -> (
        ndarray::ArrayView2<'_, T>,
        Option<ndarray::ArrayView1<'_, T>>,
    ) {
        let w = self
            .weight
            .view()
            .into_dimensionality::<Ix2>()
            .expect("weight is [O, D]");
        let b = self
            .bias
            .as_ref()
            .map(|b| b.view().into_dimensionality::<Ix1>().expect("bias is [O]"));
        (w, b)
    }

    /// Forward pass.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` is not `[B, D]`; operator errors.
    pub fn forward(&self, x: ArrayD<T>) -> Result<(ArrayD<T>, Cache<T>)> {
        let (w, b) = self.views();
        let x2 = x.view().into_dimensionality::<Ix2>().map_err(|_| {
            Error::shape(
                "nn::Linear::forward (x must be [B, D])",
                &[0, w.ncols()],
                x.shape(),
            )
        })?;
        let (cfg, exec) = self.matching.op()?;
        let (y, iterates) = nrpm::forward_with(exec, x2, w, b, &cfg)?;
        Ok((y.into_dyn(), Cache::Matching { x, iterates }))
    }

    /// Backward pass: returns `∂L/∂x`, adds `weight`, `bias`, `robust_sum.lmbd` gradients.
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
        let (w, _) = self.views();
        let x2 = x
            .view()
            .into_dimensionality::<Ix2>()
            .expect("cached input is [B, D]");
        let dy2 = dy.view().into_dimensionality::<Ix2>().map_err(|_| {
            Error::shape(
                "nn::Linear::backward (dy must be [B, O])",
                &[x2.nrows(), w.nrows()],
                dy.shape(),
            )
        })?;
        let (cfg, exec) = self.matching.op()?;
        let g = nrpm::backward_with(exec, x2, w, iterates, dy2, &cfg)?;
        grads.add(join(key, "weight"), g.weight.into_dyn());
        if self.bias.is_some() {
            grads.add(join(key, "bias"), g.bias.into_dyn());
        }
        self.matching.add_theta_grad(key, "lmbd", g.lambda, grads);
        Ok(g.x.into_dyn())
    }

    /// Visits `weight`, `bias`, θ.
    pub fn visit_mut(&mut self, key: &str, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        visit_matched(
            key,
            &mut self.weight,
            self.bias.as_mut(),
            &mut self.matching,
            "lmbd",
            f,
        );
    }
}

/// Visits the parameters of a matched layer (Linear or Conv2d): `key.weight`, `key.bias` and
/// θ under `key.robust_sum.<slot>`.
pub(crate) fn visit_matched<T: Real>(
    key: &str,
    weight: &mut ArrayD<T>,
    bias: Option<&mut ArrayD<T>>,
    matching: &mut Matching<T>,
    slot: &str,
    f: &mut dyn FnMut(ParamMut<'_, T>),
) {
    f(ParamMut {
        key: join(key, "weight"),
        role: Role::Weight,
        value: weight,
    });
    if let Some(b) = bias {
        f(ParamMut {
            key: join(key, "bias"),
            role: Role::Bias,
            value: b,
        });
    }
    matching.visit_mut(key, slot, f);
}
