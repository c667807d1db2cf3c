//! Layers that own parameters, with explicit forward and backward passes.
//!
//! Activations are `ArrayD<T>` in PyTorch layouts (`[B, F]`, NCHW). Every layer's
//! `forward(x, ctx) -> (y, Cache)` returns what its `backward(&cache, dy, grads) -> dx` needs;
//! parameter gradients are accumulated into [`ParamGrads`] under the PyTorch state-dict key of the
//! parameter (`fc1.weight`, `layer2.0.conv1.weight`, `fc1.robust_sum.lmbd`, …), so the optimiser
//! and checkpoints speak the same names.
//!
//! Linear and Conv2d layers carry a [`Matching`]: `Lpm` (the plain weighted sum) or `Nrpm`
//! (the robust operator of `crate::nrpm` with its own K, ε, norm and a per-layer λ that can be
//! learned) — so any layer of a trained model can be reprogrammed without touching its weights.
//!
//! Layers: [`Linear`], [`Conv2d`], [`BatchNorm2d`], ReLU, max/average pooling, dropout
//! (element and channel), flatten, the residual blocks ([`Residual`]: BasicBlock, Bottleneck), nested
//! [`Sequential`]; `loss` has log-softmax + NLL (cross-entropy).

pub(crate) mod act;
mod batchnorm;
mod block;
mod conv;
mod linear;
pub mod loss;
pub(crate) mod pool;

use std::collections::BTreeMap;

use ndarray::ArrayD;
use rand::rngs::StdRng;
use rand::SeedableRng;

pub use act::{dropout_backward, dropout_forward};
pub use batchnorm::BatchNorm2d;
pub use block::{BlockKind, Residual};
pub use conv::Conv2d;
pub use linear::{LambdaParam, Linear, Matching, RobustMatch};

use crate::error::{Error, Result};
use crate::nrpm::Iterates;
use crate::real::Real;

/// Training or evaluation behaviour (BatchNorm statistics, dropout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, running-statistics updates, active dropout.
    Train,
    /// Running statistics, no dropout.
    Eval,
}

/// The per-pass context: mode, whether BatchNorm is frozen, and the seeded generator dropout
/// draws from.
#[derive(Debug)]
pub struct Ctx {
    /// Train or eval.
    pub mode: Mode,
    /// In `Mode::Train`, run BatchNorm as in eval mode (running statistics used and left
    /// unchanged) while dropout stays active: PyTorch's "frozen BatchNorm" fine-tuning.
    pub frozen_batchnorm: bool,
    /// Random source of dropout masks (only used in `Mode::Train`).
    pub rng: StdRng,
}

impl Ctx {
    /// Evaluation context (no randomness is used).
    pub fn eval() -> Self {
        Self {
            mode: Mode::Eval,
            frozen_batchnorm: false,
            rng: StdRng::seed_from_u64(0),
        }
    }

    /// Training context drawing dropout masks from `seed`; BatchNorm uses batch statistics
    /// and updates its running statistics.
    pub fn train(seed: u64) -> Self {
        Self {
            mode: Mode::Train,
            frozen_batchnorm: false,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The mode BatchNorm runs in: eval when frozen.
    pub fn batchnorm_mode(&self) -> Mode {
        match self.frozen_batchnorm {
            true => Mode::Eval,
            false => self.mode,
        }
    }
}

/// Parameter gradients by state-dict key.
#[derive(Clone, Debug, Default)]
pub struct ParamGrads<T> {
    /// `key → ∂L/∂parameter` (same shape as the parameter; λ slots are `[1]`).
    pub map: BTreeMap<String, ArrayD<T>>,
}

impl<T: Real> ParamGrads<T> {
    /// Adds `g` to the gradient of `key`.
    pub fn add(&mut self, key: String, g: ArrayD<T>) {
        match self.map.get_mut(&key) {
            Some(acc) if acc.shape() == g.shape() => *acc += &g,
            Some(acc) => *acc = g, // a caller's mistake; the optimiser reports the shape
            None => {
                self.map.insert(key, g);
            }
        }
    }

    /// The gradient of `key`, if any was accumulated.
    pub fn get(&self, key: &str) -> Option<&ArrayD<T>> {
        self.map.get(key)
    }
}

/// What a visited parameter is, for optimisers and checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A weight matrix / kernel.
    Weight,
    /// A bias or BatchNorm shift/scale (no weight decay in some schedules).
    Bias,
    /// A running statistic (saved, never trained).
    Buffer,
    /// The raw λ parameter θ of an NRPM layer (`[1]`).
    Lambda,
}

/// A read-only handle on one named parameter or buffer.
pub struct Param<'a, T> {
    /// State-dict key.
    pub key: String,
    /// Role.
    pub role: Role,
    /// Value (λ slots are `[1]`, holding θ).
    pub value: ndarray::ArrayViewD<'a, T>,
}

impl<'a, T> Param<'a, T> {
    /// A handle on `value` under `key`.
    pub fn new(key: String, role: Role, value: ndarray::ArrayViewD<'a, T>) -> Self {
        Self { key, role, value }
    }
}

/// A mutable handle on one named parameter or buffer: its values can change, its shape cannot.
pub struct ParamMut<'a, T> {
    /// State-dict key.
    pub key: String,
    /// Role.
    pub role: Role,
    /// Value (λ slots are `[1]`, holding θ).
    pub value: ndarray::ArrayViewMutD<'a, T>,
}

impl<'a, T> ParamMut<'a, T> {
    /// A handle on `value` under `key`.
    pub fn new(key: String, role: Role, value: ndarray::ArrayViewMutD<'a, T>) -> Self {
        Self { key, role, value }
    }
}

/// Anything that holds named parameters: a [`Model`](crate::models::Model), a
/// [`Sequential`], a [`Layer`], or a user's own network. Optimisers
/// ([`Sgd`](crate::train::Sgd)) and checkpoints work through it.
pub trait Parameters<T: Real> {
    /// Visits every parameter and buffer, read-only, with its key.
    fn visit_params(&self, f: &mut dyn FnMut(Param<'_, T>));
    /// Visits every parameter and buffer, mutably, with its key.
    fn visit_params_mut(&mut self, f: &mut dyn FnMut(ParamMut<'_, T>));
}

/// A layer written outside nrpm: give it to a [`Sequential`] as [`Layer::Custom`] and it trains,
/// is attacked and is saved like the built-in ones. `forward` returns what `backward` needs in
/// a [`Cache::Custom`] (or any other cache variant); parameter gradients go to `grads` under
/// `key.<name>`, with the keys the visitors use.
pub trait Module<T: Real>: std::fmt::Debug + Send + Sync {
    /// Forward pass of `x` (any layout the network agrees on).
    ///
    /// # Errors
    /// Whatever goes wrong, as a typed [`Error`].
    fn forward(&self, x: ArrayD<T>, ctx: &mut Ctx) -> Result<(ArrayD<T>, Cache<T>)>;

    /// Backward pass: `∂L/∂x` for upstream `dy`; parameter gradients added to `grads` under
    /// `key.<name>`.
    ///
    /// # Errors
    /// A cache of another layer, shape mismatches.
    fn backward(
        &self,
        key: &str,
        cache: &Cache<T>,
        dy: ArrayD<T>,
        grads: &mut ParamGrads<T>,
    ) -> Result<ArrayD<T>>;

    /// Visits the parameters under `key.<name>` (none by default).
    fn visit(&self, key: &str, f: &mut dyn FnMut(Param<'_, T>)) {
        let _ = (key, f);
    }

    /// Visits the parameters under `key.<name>`, mutably (none by default).
    fn visit_mut(&mut self, key: &str, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        let _ = (key, f);
    }

    /// A boxed copy (networks are cloned, e.g. for an LPM twin).
    fn box_clone(&self) -> Box<dyn Module<T>>;
}

impl<T: Real> Clone for Box<dyn Module<T>> {
    fn clone(&self) -> Self {
        self.box_clone()
    }
}

/// One layer of a network.
#[derive(Clone, Debug)]
pub enum Layer<T: Real> {
    /// Fully connected, LPM or NRPM.
    Linear(Linear<T>),
    /// 2-D convolution, LPM or NRPM.
    Conv2d(Conv2d<T>),
    /// Batch normalisation over channels.
    BatchNorm2d(BatchNorm2d<T>),
    /// `max(x, 0)`.
    Relu,
    /// Max pooling (no padding; ties go to the first maximum, as PyTorch).
    MaxPool2d {
        /// Window size.
        kernel: usize,
        /// Step.
        stride: usize,
    },
    /// Average pooling (no padding).
    AvgPool2d {
        /// Window size.
        kernel: usize,
        /// Step.
        stride: usize,
    },
    /// Element-wise dropout with drop probability `p` (train mode only).
    Dropout {
        /// Drop probability.
        p: f64,
    },
    /// Channel-wise dropout of NCHW maps (PyTorch `Dropout2d`).
    Dropout2d {
        /// Drop probability.
        p: f64,
    },
    /// `[B, …] → [B, ∏…]`.
    Flatten,
    /// Residual block (BasicBlock or Bottleneck): `relu(main(x) + shortcut(x))`.
    Residual(Box<Residual<T>>),
    /// Named children run in order.
    Sequential(Sequential<T>),
    /// A user's layer ([`Module`]).
    Custom(Box<dyn Module<T>>),
}

/// What a layer's backward needs from its forward.
#[derive(Clone, Debug)]
pub enum Cache<T> {
    /// Nothing.
    None,
    /// The input, and the NRPM iterates when the layer ran NRPM.
    Matching {
        /// Layer input.
        x: ArrayD<T>,
        /// Saved IRLS iterates.
        iterates: Box<Iterates<T>>,
    },
    /// BatchNorm: normalised input and `1/√(var + eps)` per channel (train) or the running
    /// factor (eval).
    BatchNorm {
        /// x̂.
        xhat: ArrayD<T>,
        /// Per-channel inverse standard deviation.
        inv_std: Vec<T>,
        /// Whether batch statistics were used.
        train: bool,
    },
    /// A 0/1 (or 0/scale) mask to multiply the upstream gradient by.
    Mask(ArrayD<T>),
    /// Max pooling: the input shape and the flat input index of each output's maximum.
    MaxPool {
        /// Input shape.
        shape: Vec<usize>,
        /// Argmax per output element.
        argmax: Vec<usize>,
    },
    /// The input shape (average pooling, flatten).
    Shape(Vec<usize>),
    /// Caches of a sequence of layers.
    Seq(Vec<Cache<T>>),
    /// Whatever a [`Module`] keeps for its backward pass.
    Custom(std::sync::Arc<dyn std::any::Any + Send + Sync>),
    /// Residual block: main path, shortcut path, and the output ReLU mask.
    Residual {
        /// Main path caches.
        main: Vec<Cache<T>>,
        /// Shortcut caches (empty for the identity).
        shortcut: Vec<Cache<T>>,
        /// Output ReLU mask.
        mask: ArrayD<T>,
    },
}

/// A sequence of named layers (names build the state-dict keys; parameter-free layers may
/// have empty names).
#[derive(Clone, Debug, Default)]
pub struct Sequential<T: Real> {
    /// `(name, layer)` in execution order.
    pub layers: Vec<(String, Layer<T>)>,
}

/// `prefix.name`, or `name` at the top.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}.{name}"),
    }
}

impl<T: Real> Sequential<T> {
    /// An empty sequence.
    pub fn new() -> Self {
        Self { layers: Vec::new() }
    }

    /// Appends a layer (builder style).
    pub fn push(mut self, name: &str, layer: Layer<T>) -> Self {
        self.layers.push((name.to_string(), layer));
        self
    }

    /// Runs the layers in order.
    ///
    /// # Errors
    /// The first layer error (shape, non-finite, overflow), inside [`Error::InLayer`] naming
    /// the layer's key when it has one.
    pub fn forward(&self, x: ArrayD<T>, ctx: &mut Ctx) -> Result<(ArrayD<T>, Vec<Cache<T>>)> {
        let mut caches = Vec::with_capacity(self.layers.len());
        let mut h = x;
        for (name, layer) in &self.layers {
            let (y, c) = layer.forward(h, ctx).map_err(|e| e.in_layer(name))?;
            caches.push(c);
            h = y;
        }
        Ok((h, caches))
    }

    /// Backward through the layers in reverse; parameter gradients go to `grads` under
    /// `prefix.name.*`.
    ///
    /// # Errors
    /// A cache that does not belong to this sequence ([`Error::Shape`]).
    pub fn backward(
        &self,
        prefix: &str,
        caches: &[Cache<T>],
        dy: ArrayD<T>,
        grads: &mut ParamGrads<T>,
    ) -> Result<ArrayD<T>> {
        if caches.len() != self.layers.len() {
            return Err(Error::shape(
                "nn::Sequential::backward",
                "caches (one per layer)",
                &[self.layers.len()],
                &[caches.len()],
            ));
        }
        let mut d = dy;
        for ((name, layer), cache) in self.layers.iter().zip(caches).rev() {
            d = layer
                .backward(&join(prefix, name), cache, d, grads)
                .map_err(|e| e.in_layer(name))?;
        }
        Ok(d)
    }

    /// Visits every parameter and buffer, read-only, with its state-dict key.
    pub fn visit(&self, prefix: &str, f: &mut dyn FnMut(Param<'_, T>)) {
        for (name, layer) in &self.layers {
            layer.visit(&join(prefix, name), f);
        }
    }

    /// Visits every parameter and buffer with its state-dict key.
    pub fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        for (name, layer) in &mut self.layers {
            layer.visit_mut(&join(prefix, name), f);
        }
    }

    /// Visits every leaf layer (not `Sequential` or `Residual`) read-only with its key, in
    /// execution order (a residual block's main path before its shortcut).
    pub fn visit_layers(&self, prefix: &str, f: &mut dyn FnMut(&str, &Layer<T>)) {
        for (name, layer) in &self.layers {
            layer.visit_layers(&join(prefix, name), f);
        }
    }

    /// Visits every leaf layer (not `Sequential` or `Residual`) with its key, in execution
    /// order (a residual block's main path before its shortcut).
    pub fn visit_layers_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Layer<T>)) {
        for (name, layer) in &mut self.layers {
            layer.visit_layers_mut(&join(prefix, name), f);
        }
    }
}

impl<T: Real> Layer<T> {
    /// Forward pass of one layer.
    ///
    /// # Errors
    /// Shape mismatches, non-finite values, overflow.
    pub fn forward(&self, x: ArrayD<T>, ctx: &mut Ctx) -> Result<(ArrayD<T>, Cache<T>)> {
        match self {
            Layer::Linear(l) => l.forward(x),
            Layer::Conv2d(c) => c.forward(x),
            Layer::BatchNorm2d(bn) => bn.forward(x, ctx.batchnorm_mode()),
            Layer::Relu => Ok(act::relu_forward(x)),
            Layer::MaxPool2d { kernel, stride } => pool::max_forward(x, *kernel, *stride),
            Layer::AvgPool2d { kernel, stride } => pool::avg_forward(x, *kernel, *stride),
            Layer::Dropout { p } => Ok(act::dropout_forward(x, *p, false, ctx)),
            Layer::Dropout2d { p } => Ok(act::dropout_forward(x, *p, true, ctx)),
            Layer::Flatten => act::flatten_forward(x),
            Layer::Residual(b) => b.forward(x, ctx),
            Layer::Sequential(s) => {
                let (y, c) = s.forward(x, ctx)?;
                Ok((y, Cache::Seq(c)))
            }
            Layer::Custom(m) => m.forward(x, ctx),
        }
    }

    /// Backward pass of one layer: returns `∂L/∂x`, accumulates parameter gradients under
    /// `key.*`.
    ///
    /// # Errors
    /// A cache of the wrong kind or shape.
    pub fn backward(
        &self,
        key: &str,
        cache: &Cache<T>,
        dy: ArrayD<T>,
        grads: &mut ParamGrads<T>,
    ) -> Result<ArrayD<T>> {
        let wrong = || Error::WrongCache { layer: "nn::Layer" };
        match (self, cache) {
            (Layer::Linear(l), Cache::Matching { x, iterates }) => {
                l.backward(key, x, iterates, dy, grads)
            }
            (Layer::Conv2d(c), Cache::Matching { x, iterates }) => {
                c.backward(key, x, iterates, dy, grads)
            }
            (Layer::BatchNorm2d(bn), c @ Cache::BatchNorm { .. }) => bn.backward(key, c, dy, grads),
            (Layer::Relu | Layer::Dropout { .. } | Layer::Dropout2d { .. }, Cache::Mask(m)) => {
                act::mask_backward(m, dy)
            }
            (Layer::MaxPool2d { .. }, Cache::MaxPool { shape, argmax }) => {
                pool::max_backward(shape, argmax, dy)
            }
            (Layer::AvgPool2d { kernel, stride }, Cache::Shape(shape)) => {
                pool::avg_backward(shape, *kernel, *stride, dy)
            }
            (Layer::Flatten, Cache::Shape(shape)) => act::flatten_backward(shape, dy),
            (Layer::Residual(b), c @ Cache::Residual { .. }) => b.backward(key, c, dy, grads),
            (Layer::Sequential(s), Cache::Seq(c)) => s.backward(key, c, dy, grads),
            (Layer::Custom(m), c) => m.backward(key, c, dy, grads),
            _ => Err(wrong()),
        }
    }

    /// Visits parameters and buffers, read-only.
    pub fn visit(&self, key: &str, f: &mut dyn FnMut(Param<'_, T>)) {
        match self {
            Layer::Linear(l) => l.visit(key, f),
            Layer::Conv2d(c) => c.visit(key, f),
            Layer::BatchNorm2d(bn) => bn.visit(key, f),
            Layer::Residual(b) => b.visit(key, f),
            Layer::Sequential(s) => s.visit(key, f),
            Layer::Custom(m) => m.visit(key, f),
            _ => {}
        }
    }

    /// Visits parameters and buffers.
    pub fn visit_mut(&mut self, key: &str, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        match self {
            Layer::Linear(l) => l.visit_mut(key, f),
            Layer::Conv2d(c) => c.visit_mut(key, f),
            Layer::BatchNorm2d(bn) => bn.visit_mut(key, f),
            Layer::Residual(b) => b.visit_mut(key, f),
            Layer::Sequential(s) => s.visit_mut(key, f),
            Layer::Custom(m) => m.visit_mut(key, f),
            _ => {}
        }
    }

    /// Visits this layer read-only, or the leaves inside a container.
    pub fn visit_layers(&self, key: &str, f: &mut dyn FnMut(&str, &Layer<T>)) {
        match self {
            Layer::Residual(b) => b.visit_layers(key, f),
            Layer::Sequential(s) => s.visit_layers(key, f),
            leaf => f(key, leaf),
        }
    }

    /// The matching of a Linear or Conv2d layer (`None` for other layers).
    pub fn matching(&self) -> Option<&Matching<T>> {
        match self {
            Layer::Linear(l) => Some(&l.matching),
            Layer::Conv2d(c) => Some(&c.matching),
            _ => None,
        }
    }

    /// The matching of a Linear or Conv2d layer, mutable (`None` for other layers).
    pub fn matching_mut(&mut self) -> Option<&mut Matching<T>> {
        match self {
            Layer::Linear(l) => Some(&mut l.matching),
            Layer::Conv2d(c) => Some(&mut c.matching),
            _ => None,
        }
    }

    /// Visits this layer, or the leaves inside a container.
    pub fn visit_layers_mut(&mut self, key: &str, f: &mut dyn FnMut(&str, &mut Layer<T>)) {
        match self {
            Layer::Residual(b) => b.visit_layers_mut(key, f),
            Layer::Sequential(s) => s.visit_layers_mut(key, f),
            leaf => f(key, leaf),
        }
    }
}

impl<T: Real> Parameters<T> for Sequential<T> {
    fn visit_params(&self, f: &mut dyn FnMut(Param<'_, T>)) {
        self.visit("", f);
    }
    fn visit_params_mut(&mut self, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        self.visit_mut("", f);
    }
}
