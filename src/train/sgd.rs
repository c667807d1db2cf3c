//! Stochastic gradient descent with momentum and weight decay, PyTorch's `optim.SGD`
//! (dampening 0, no Nesterov), on the parameters a [`Paradigm`] selects.

use std::collections::BTreeMap;

use ndarray::{ArrayD, ArrayViewMutD};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nn::{ParamGrads, Parameters};
use crate::real::Real;
use crate::tensor_file::TensorFile;
use crate::train::Paradigm;

/// Prefix of the momentum buffers in an optimiser state file (`momentum.fc1.weight`, …).
pub const MOMENTUM_PREFIX: &str = "momentum.";

/// The optimiser's hyper-parameters (the learning rate itself comes from the schedule).
/// Deserialising checks them as [`SgdConfig::validate`] does.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SgdFields")]
pub struct SgdConfig {
    /// Base learning rate η₀ > 0.
    pub lr: f64,
    /// Momentum μ ∈ [0, 1).
    pub momentum: f64,
    /// Weight decay (L2 penalty) ≥ 0, applied to every trained tensor, λ's θ included, as
    /// `optim.SGD(model.parameters(), weight_decay=…)` does.
    pub weight_decay: f64,
}

impl Default for SgdConfig {
    /// The authors' MNIST settings (`mnist_mlp.py`): lr 0.001, momentum 0.9, no weight decay.
    fn default() -> Self {
        Self {
            lr: 0.001,
            momentum: 0.9,
            weight_decay: 0.0,
        }
    }
}

impl SgdConfig {
    /// Checks the domains.
    ///
    /// # Errors
    /// [`Error::Config`] for η₀ ≤ 0, μ ∉ [0, 1), weight decay < 0, or a non-finite value.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config("lr", self.lr, "must be a finite number > 0"));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::config(
                "momentum",
                self.momentum,
                "must lie in [0, 1)",
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::config(
                "weight decay",
                self.weight_decay,
                "must be a finite number ≥ 0",
            ));
        }
        Ok(())
    }
}

/// The serialised fields of [`SgdConfig`], checked on the way in.
#[derive(Deserialize)]
struct SgdFields {
    lr: f64,
    momentum: f64,
    weight_decay: f64,
}

impl TryFrom<SgdFields> for SgdConfig {
    type Error = Error;

    fn try_from(f: SgdFields) -> Result<Self> {
        let c = SgdConfig {
            lr: f.lr,
            momentum: f.momentum,
            weight_decay: f.weight_decay,
        };
        c.validate().map(|_| c)
    }
}

/// SGD with momentum buffers kept by parameter key.
///
/// One [`Sgd::step`] with learning rate η, for every trained tensor θ with a gradient g:
///
/// ```text
/// d   = g + wd·θ
/// buf = d                 (first step of θ)
/// buf = μ·buf + d         (later steps)
/// θ   = θ − η·buf
/// ```
///
/// Tensors without a gradient in `grads` are skipped (no decay, no momentum), as PyTorch skips
/// parameters whose `.grad` is `None`. Arithmetic is in `T`, element by element, in the order
/// above, so an f32 model follows PyTorch's f32 update.
#[derive(Clone, Debug)]
pub struct Sgd<T> {
    cfg: SgdConfig,
    buffers: BTreeMap<String, ArrayD<T>>,
}

impl<T: Real> Sgd<T> {
    /// An optimiser with empty momentum buffers.
    ///
    /// # Errors
    /// As [`SgdConfig::validate`].
    pub fn new(cfg: SgdConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            cfg,
            buffers: BTreeMap::new(),
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> SgdConfig {
        self.cfg
    }

    /// The momentum buffers by parameter key (empty before the first step or when μ = 0).
    pub fn buffers(&self) -> &BTreeMap<String, ArrayD<T>> {
        &self.buffers
    }

    /// Updates the tensors of `params` (a [`Model`](crate::models::Model), or any
    /// [`Parameters`]) that `paradigm` trains, with learning rate `lr`; returns how many
    /// tensors were updated.
    ///
    /// # Errors
    /// [`Error::Shape`] if the gradient of a trained tensor has another shape than the tensor
    /// (then nothing is changed).
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// use nrpm::models::{Model, ModelSpec};
    /// use nrpm::train::{Paradigm, Sgd, SgdConfig};
    /// let mut model = Model::<f64>::new(ModelSpec::from_name("mlp1", 1, 2)?); // 4 → 10
    /// let mut grads = nrpm::nn::ParamGrads::default();
    /// grads.add("fc1.bias".into(), ndarray::ArrayD::from_elem(ndarray::IxDyn(&[10]), 2.0));
    /// let cfg = SgdConfig { lr: 0.5, momentum: 0.9, weight_decay: 0.0 };
    /// let mut sgd = Sgd::new(cfg)?;
    /// assert_eq!(sgd.step(&mut model, &grads, 0.5, Paradigm::FineTune)?, 1);
    /// assert_eq!(sgd.step(&mut model, &grads, 0.5, Paradigm::FineTune)?, 1);
    /// // θ = 0 − 0.5·2 − 0.5·(0.9·2 + 2) = −2.9
    /// let mut bias = 0.0;
    /// model.visit_mut(&mut |p| if p.key == "fc1.bias" { bias = p.value[0] });
    /// assert!((bias + 2.9).abs() < 1e-12);
    /// # Ok(()) }
    /// ```
    pub fn step(
        &mut self,
        params: &mut dyn Parameters<T>,
        grads: &ParamGrads<T>,
        lr: f64,
        paradigm: Paradigm,
    ) -> Result<usize> {
        check_shapes(params, grads, paradigm)?;
        let mut updated = 0;
        params.visit_params_mut(&mut |mut p| {
            if let Some(g) = grads.get(&p.key).filter(|_| paradigm.trains(p.role)) {
                self.update(&p.key, &mut p.value, g, lr);
                updated += 1;
            }
        });
        Ok(updated)
    }

    /// The update of one tensor (shapes checked by the caller).
    fn update(&mut self, key: &str, theta: &mut ArrayViewMutD<'_, T>, g: &ArrayD<T>, lr: f64) {
        let (wd, mu, lr) = (
            T::of(self.cfg.weight_decay),
            T::of(self.cfg.momentum),
            T::of(lr),
        );
        let mut d = g.clone();
        if self.cfg.weight_decay != 0.0 {
            d.zip_mut_with(theta, |d, &t| *d += wd * t);
        }
        if self.cfg.momentum == 0.0 {
            theta.zip_mut_with(&d, |t, &d| *t -= lr * d);
            return;
        }
        match self.buffers.get_mut(key) {
            Some(buf) => buf.zip_mut_with(&d, |b, &d| *b = *b * mu + d),
            None => {
                self.buffers.insert(key.to_string(), d);
            }
        }
        theta.zip_mut_with(&self.buffers[key], |t, &b| *t -= lr * b);
    }

    /// The momentum buffers as a tensor file, keys prefixed with [`MOMENTUM_PREFIX`].
    pub fn state(&self) -> TensorFile {
        let mut file = TensorFile::new(std::path::PathBuf::new());
        for (key, buf) in &self.buffers {
            file.insert(format!("{MOMENTUM_PREFIX}{key}"), buf.clone());
        }
        file
    }

    /// Replaces the momentum buffers with those of `file` (written by [`Sgd::state`]); each
    /// must name a tensor of `model` that `paradigm` trains, with its shape.
    ///
    /// # Errors
    /// [`Error::Format`] naming every key that is not a momentum buffer of a trained tensor,
    /// or has the wrong shape or a non-finite value.
    pub fn load_state(
        &mut self,
        file: &TensorFile,
        params: &dyn Parameters<T>,
        paradigm: Paradigm,
    ) -> Result<()> {
        let mut shapes = BTreeMap::new();
        params.visit_params(&mut |p| {
            if paradigm.trains(p.role) {
                shapes.insert(p.key, p.value.shape().to_vec());
            }
        });
        let mut buffers = BTreeMap::new();
        let mut problems = Vec::new();
        for name in file.tensors.keys() {
            let shape = name
                .strip_prefix(MOMENTUM_PREFIX)
                .and_then(|k| shapes.get_key_value(k));
            match shape {
                None => problems.push(format!("'{name}' is not the momentum of a trained tensor")),
                Some((key, shape)) => match file.array::<T>(name, Some(shape)) {
                    Ok(buf) => {
                        buffers.insert(key.clone(), buf);
                    }
                    Err(e) => problems.push(e.to_string()),
                },
            }
        }
        if !problems.is_empty() {
            return Err(Error::format(&file.path, problems.join("; ")));
        }
        self.buffers = buffers;
        Ok(())
    }
}

/// [`Error::Shape`] for the first trained tensor of `params` whose gradient has another shape.
fn check_shapes<T: Real>(
    params: &dyn Parameters<T>,
    grads: &ParamGrads<T>,
    paradigm: Paradigm,
) -> Result<()> {
    let mut failure = Ok(());
    params.visit_params(&mut |p| {
        let wrong = grads
            .get(&p.key)
            .filter(|g| paradigm.trains(p.role) && g.shape() != p.value.shape());
        if let (Some(g), true) = (wrong, failure.is_ok()) {
            failure = Err(Error::shape(
                "train::Sgd::step",
                "gradient",
                p.value.shape(),
                g.shape(),
            ));
        }
    });
    failure
}
