//! Fully connected layer with a choice of matching (LPM or NRPM), and the per-layer λ.

use ndarray::{Array1, Array2, ArrayD, Ix2};

use crate::error::{Error, Result};
use crate::nn::{join, Cache, Param, ParamGrads, ParamMut, Role};
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

impl LambdaParam {
    /// λ for the stored value θ.
    pub fn lambda(self, theta: f64) -> f64 {
        match self {
            LambdaParam::Raw => theta,
            LambdaParam::Sigmoid => 1.0 / (1.0 + (-theta).exp()),
        }
    }

    /// θ for λ.
    ///
    /// # Errors
    /// [`Error::Config`] for a non-finite λ, or λ ∉ (0, 1) under `Sigmoid`.
    pub fn theta(self, lambda: f64) -> Result<f64> {
        match self {
            LambdaParam::Raw if lambda.is_finite() => Ok(lambda),
            LambdaParam::Sigmoid if lambda > 0.0 && lambda < 1.0 => {
                Ok((lambda / (1.0 - lambda)).ln())
            }
            _ => Err(Error::config(
                "lambda",
                lambda,
                "must be finite, and in (0, 1) when λ = sigmoid(θ) is learned",
            )),
        }
    }
}

/// An NRPM matching: the operator's configuration (norm, K, ε, groups), the learnable θ of its
/// λ (a `[1]` tensor under the state-dict key `<layer>.robust_sum.lmbd`, `.beta` for
/// convolutions, as in the authors' checkpoints), how θ maps to λ, and where the operator runs.
#[derive(Clone, Debug)]
pub struct RobustMatch<T> {
    cfg: NrpmConfig,
    theta: Array1<T>,
    param: LambdaParam,
    exec: Exec,
}

impl<T: Real> RobustMatch<T> {
    /// A matching with λ taken from `cfg.lambda()` under the given parametrisation, on the
    /// fused CPU path.
    ///
    /// # Errors
    /// [`Error::Config`] if `param` is `Sigmoid` and λ is not in (0, 1).
    pub fn new(cfg: NrpmConfig, param: LambdaParam) -> Result<Self> {
        let theta = param.theta(cfg.lambda())?;
        Ok(Self {
            cfg,
            theta: Array1::from_elem(1, T::of(theta)),
            param,
            exec: Exec::Fused,
        })
    }

    /// The current λ.
    pub fn lambda(&self) -> f64 {
        self.param.lambda(self.theta[0].f64())
    }

    /// Sets λ (θ = λ, or θ = logit λ).
    ///
    /// # Errors
    /// [`Error::Config`] for non-finite λ, or λ ∉ (0, 1) under `Sigmoid`.
    pub fn set_lambda(&mut self, lambda: f64) -> Result<()> {
        self.theta[0] = T::of(self.param.theta(lambda)?);
        Ok(())
    }

    /// How θ maps to λ.
    pub fn param(&self) -> LambdaParam {
        self.param
    }

    /// The path the operator runs on.
    pub fn exec(&self) -> Exec {
        self.exec
    }

    /// Runs the operator on another path (e.g. [`Exec::Cuda`]).
    pub fn set_exec(&mut self, exec: Exec) {
        self.exec = exec;
    }

    /// The operator configuration with the current λ.
    ///
    /// # Errors
    /// [`Error::Config`] if θ became non-finite (a diverged training step).
    pub fn config(&self) -> Result<NrpmConfig> {
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
            Matching::Nrpm(m) => Ok((m.config()?, m.exec)),
        }
    }

    /// Adds `∂L/∂θ` under `key.robust_sum.<slot>` when this is an NRPM matching.
    pub(crate) fn add_theta_grad(
        &self,
        key: &str,
        slot: &str,
        dlambda: T,
        grads: &mut ParamGrads<T>,
    ) {
        if let Matching::Nrpm(m) = self {
            let g = ArrayD::from_elem(ndarray::IxDyn(&[1]), m.theta_grad(dlambda));
            grads.add(join(key, &format!("robust_sum.{slot}")), g);
        }
    }

    /// Visits θ under `key.robust_sum.<slot>`.
    pub(crate) fn visit(&self, key: &str, slot: &str, f: &mut dyn FnMut(Param<'_, T>)) {
        if let Matching::Nrpm(m) = self {
            f(Param {
                key: join(key, &format!("robust_sum.{slot}")),
                role: Role::Lambda,
                value: m.theta.view().into_dyn(),
            });
        }
    }

    /// Visits θ under `key.robust_sum.<slot>`, mutably.
    pub(crate) fn visit_mut(&mut self, key: &str, slot: &str, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        if let Matching::Nrpm(m) = self {
            f(ParamMut {
                key: join(key, &format!("robust_sum.{slot}")),
                role: Role::Lambda,
                value: m.theta.view_mut().into_dyn(),
            });
        }
    }
}

/// `x [B, D] → y [B, O]`: `weight [O, D]`, optional `bias [O]` (PyTorch `nn.Linear` keys
/// `weight`, `bias`), matched by LPM or NRPM. The tensors' shapes are fixed at construction;
/// their values change through [`Linear::set_weight`], [`Linear::set_bias`] or the parameter
/// visitors.
#[derive(Clone, Debug)]
pub struct Linear<T> {
    weight: Array2<T>,
    bias: Option<Array1<T>>,
    /// LPM or NRPM.
    pub matching: Matching<T>,
}

impl<T: Real> Linear<T> {
    /// A zero-initialised LPM layer `d → o` (load or initialise weights afterwards).
    pub fn new(d: usize, o: usize, bias: bool) -> Self {
        Self {
            weight: Array2::zeros((o, d)),
            bias: bias.then(|| Array1::zeros(o)),
            matching: Matching::Lpm,
        }
    }

    /// An LPM layer with these tensors: `weight [O, D]`, `bias [O]`.
    ///
    /// # Errors
    /// [`Error::Shape`] if the bias has not O entries.
    pub fn from_parts(weight: Array2<T>, bias: Option<Array1<T>>) -> Result<Self> {
        if let Some(b) = &bias {
            if b.len() != weight.nrows() {
                return Err(Error::shape(
                    "nn::Linear::from_parts",
                    "bias",
                    &[weight.nrows()],
                    &[b.len()],
                ));
            }
        }
        Ok(Self {
            weight,
            bias,
            matching: Matching::Lpm,
        })
    }

    /// `weight [O, D]`.
    pub fn weight(&self) -> ndarray::ArrayView2<'_, T> {
        self.weight.view()
    }

    /// `bias [O]`, if the layer has one.
    pub fn bias(&self) -> Option<ndarray::ArrayView1<'_, T>> {
        self.bias.as_ref().map(|b| b.view())
    }

    /// Replaces the weight values.
    ///
    /// # Errors
    /// [`Error::Shape`] unless `weight` has the layer's shape `[O, D]`.
    pub fn set_weight(&mut self, weight: Array2<T>) -> Result<()> {
        if weight.dim() != self.weight.dim() {
            return Err(Error::shape(
                "nn::Linear::set_weight",
                "weight",
                self.weight.shape(),
                weight.shape(),
            ));
        }
        self.weight = weight;
        Ok(())
    }

    /// Replaces the bias values.
    ///
    /// # Errors
    /// [`Error::Shape`] unless the layer has a bias of this length.
    pub fn set_bias(&mut self, bias: Array1<T>) -> Result<()> {
        match &mut self.bias {
            Some(b) if b.len() == bias.len() => {
                *b = bias;
                Ok(())
            }
            Some(b) => Err(Error::shape(
                "nn::Linear::set_bias",
                "bias",
                &[b.len()],
                &[bias.len()],
            )),
            None => Err(Error::shape(
                "nn::Linear::set_bias",
                "bias (the layer has none)",
                &[],
                &[bias.len()],
            )),
        }
    }

    /// Forward pass.
    ///
    /// # Errors
    /// [`Error::Shape`] if `x` is not `[B, D]`; operator errors.
    pub fn forward(&self, x: ArrayD<T>) -> Result<(ArrayD<T>, Cache<T>)> {
        let op = "nn::Linear::forward";
        let x2 = x
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(|_| Error::shape(op, "x ([B, D])", &[0, self.weight.ncols()], x.shape()))?;
        let (cfg, exec) = self.matching.op()?;
        let bias = self.bias.as_ref().map(|b| b.view());
        let (y, iterates) = nrpm::forward_with(exec, x2, self.weight.view(), bias, &cfg)?;
        Ok((
            y.into_dyn(),
            Cache::Matching {
                x,
                iterates: Box::new(iterates),
            },
        ))
    }

    /// Backward pass: returns `∂L/∂x`, adds `weight`, `bias`, `robust_sum.lmbd` gradients.
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
        let op = "nn::Linear::backward";
        let x2 = x
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(|_| Error::shape(op, "cached x", &[0, self.weight.ncols()], x.shape()))?;
        let dy2 = dy
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(|_| Error::shape(op, "dy", &[x2.nrows(), self.weight.nrows()], dy.shape()))?;
        let exec = self.matching.op()?.1;
        let g = nrpm::backward_with(exec, x2, self.weight.view(), iterates, dy2)?;
        grads.add(join(key, "weight"), g.weight.into_dyn());
        if self.bias.is_some() {
            grads.add(join(key, "bias"), g.bias.into_dyn());
        }
        self.matching.add_theta_grad(key, "lmbd", g.lambda, grads);
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
        self.matching.visit(key, "lmbd", f);
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
        self.matching.visit_mut(key, "lmbd", f);
    }
}
