//! The paper's models with PyTorch state-dict names, so the authors' checkpoints load by name:
//! MLPs (`fc1`, `fc2`, `fc3`), LeNet (`conv1`, `conv2`, `fc1`, `fc2`), ResNets (`conv1`, `bn1`,
//! `layer1.0.conv1`, `layer2.0.shortcut.0`, …, `linear`), and their reprogramming: which
//! Linear/Conv2d layers run NRPM, with which K, ε, norm and per-layer λ.
//!
//! Every model maps images `[B, C, H, W]` in [0, 1] to logits `[B, classes]`.
//! `checkpoint.rs` loads and saves safetensors files.

mod checkpoint;
mod record;
mod select;

use ndarray::{Array2, Array4, ArrayD, ArrayView2, ArrayView4, Axis, Ix2, Ix4};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

pub use record::{ModelRecord, NrpmLayer};
pub use select::LayerSelection;

use crate::error::{Error, Result};
use crate::nn::{
    loss, BatchNorm2d, BlockKind, Cache, Conv2d, Ctx, Layer, Linear, Matching, Param, ParamGrads,
    ParamMut, Parameters, Residual, Role, Sequential,
};
use crate::nrpm::conv::Conv2dGeometry;
use crate::real::Real;

/// An architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Arch {
    /// Fully connected layers `sizes[0] → sizes[1] → … → classes`; the authors' MLP has no
    /// activation between layers (`relu = false`).
    Mlp {
        /// Layer widths, input first, classes last.
        sizes: Vec<usize>,
        /// ReLU between layers.
        relu: bool,
    },
    /// The PyTorch FGSM-tutorial LeNet (1×28×28 input).
    LeNet,
    /// A user's own layers ([`Model::custom`]); a spec of this kind cannot be rebuilt from its
    /// name or from a checkpoint.
    Custom,
    /// CIFAR-style ResNet: 3×3 stem, four stages, 4×4 average pool, `linear` head.
    ResNet {
        /// Basic or bottleneck blocks.
        block: BlockKind,
        /// Blocks per stage.
        blocks: [usize; 4],
        /// Stage widths (tiny: 8-16-32-64; standard: 64-128-256-512).
        widths: [usize; 4],
    },
}

/// A model's architecture, input and head. Deserialising checks it as [`ModelSpec::validate`]
/// does, so a spec read from a file cannot build a network that breaks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ModelSpecFields")]
pub struct ModelSpec {
    /// Name as given on the CLI (`mlp3`, `lenet`, `resnet18-tiny`, …).
    pub name: String,
    /// Architecture.
    pub arch: Arch,
    /// Input `[C, H, W]`.
    pub input: [usize; 3],
    /// Number of classes.
    pub classes: usize,
    /// Whether convolutions add their bias (the authors' robust conv never does: LeNet
    /// reproduces their numbers only with `false`).
    pub conv_bias: bool,
}

impl ModelSpec {
    /// Every model name [`ModelSpec::from_name`] accepts.
    pub const NAMES: &'static str = "mlp1, mlp2, mlp3, lenet, resnet10-tiny, resnet18-tiny, \
        resnet34-tiny, resnet50-tiny, resnet10, resnet18, resnet34, resnet50";

    /// The spec of a named model for `in_channels`-channel images of side `side` (MNIST: 1,
    /// 28; CIFAR: 3, 32).
    ///
    /// # Errors
    /// [`Error::UnknownName`] for other names; [`Error::Config`] when the model cannot take
    /// that input (LeNet needs 1×28×28; ResNets need a side divisible by 32… at least 32).
    pub fn from_name(name: &str, in_channels: usize, side: usize) -> Result<Self> {
        let lower = name.to_ascii_lowercase();
        let (base, tiny) = match lower.strip_suffix("-tiny") {
            Some(b) => (b.to_string(), true),
            None => (lower.clone(), false),
        };
        let pixels = in_channels * side * side;
        let arch = match (base.as_str(), tiny) {
            ("mlp1", false) => Arch::Mlp {
                sizes: vec![pixels, 10],
                relu: false,
            },
            ("mlp2", false) => Arch::Mlp {
                sizes: vec![pixels, 64, 10],
                relu: false,
            },
            ("mlp3", false) => Arch::Mlp {
                sizes: vec![pixels, 256, 64, 10],
                relu: false,
            },
            ("lenet", false) => Arch::LeNet,
            (r, _) if r.starts_with("resnet") => {
                let (block, blocks) = match &r[6..] {
                    "10" => (BlockKind::Basic, [1, 1, 1, 1]),
                    "18" => (BlockKind::Basic, [2, 2, 2, 2]),
                    "34" => (BlockKind::Basic, [3, 4, 6, 3]),
                    "50" => (BlockKind::Bottleneck, [3, 4, 6, 3]),
                    _ => return Err(unknown_model(name)),
                };
                let widths = if tiny {
                    [8, 16, 32, 64]
                } else {
                    [64, 128, 256, 512]
                };
                Arch::ResNet {
                    block,
                    blocks,
                    widths,
                }
            }
            _ => return Err(unknown_model(name)),
        };
        let spec = Self {
            name: lower,
            arch,
            input: [in_channels, side, side],
            classes: 10,
            conv_bias: false,
        };
        spec.check_input()?;
        Ok(spec)
    }

    /// Checks the spec: a name, at least one class, a non-empty input the architecture takes,
    /// MLP widths that start at C·H·W, end at the classes and are all ≥ 1, ResNet blocks and
    /// widths ≥ 1.
    ///
    /// # Errors
    /// [`Error::Config`] naming what is wrong.
    pub fn validate(&self) -> Result<()> {
        let [c, h, w] = self.input;
        let bad = |rule: &'static str| {
            Err(Error::Config {
                name: "model spec",
                value: format!(
                    "{} ({:?}, input {c}×{h}×{w}, {} classes)",
                    self.name, self.arch, self.classes
                ),
                rule,
            })
        };
        if self.name.is_empty() || self.classes == 0 || c * h * w == 0 {
            return bad("needs a name, at least one class and a non-empty input");
        }
        match &self.arch {
            Arch::Mlp { sizes, .. } => {
                let ends =
                    sizes.first() == Some(&(c * h * w)) && sizes.last() == Some(&self.classes);
                if sizes.len() < 2 || sizes.contains(&0) || !ends {
                    return bad("MLP widths must run from C·H·W to the classes, each ≥ 1");
                }
            }
            Arch::ResNet { blocks, widths, .. } => {
                if blocks.contains(&0) || widths.contains(&0) {
                    return bad("ResNet blocks and widths must be ≥ 1");
                }
            }
            Arch::LeNet | Arch::Custom => {}
        }
        self.check_input()
    }

    /// The same spec with ReLU between the MLP layers.
    pub fn with_mlp_relu(mut self, relu: bool) -> Self {
        if let Arch::Mlp { relu: r, .. } = &mut self.arch {
            *r = relu;
        }
        self
    }

    fn check_input(&self) -> Result<()> {
        let [c, h, w] = self.input;
        let ok = match self.arch {
            Arch::LeNet => [c, h, w] == [1, 28, 28],
            Arch::ResNet { .. } => h == w && h >= 32 && h % 32 == 0,
            Arch::Mlp { .. } | Arch::Custom => c * h * w > 0,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Config {
                name: "input",
                value: format!("{c}×{h}×{w} for {}", self.name),
                rule: "lenet takes 1×28×28; resnets take square sides that are multiples of 32",
            })
        }
    }
}

/// The serialised fields of [`ModelSpec`], checked on the way in.
#[derive(Deserialize)]
struct ModelSpecFields {
    name: String,
    arch: Arch,
    input: [usize; 3],
    classes: usize,
    conv_bias: bool,
}

impl TryFrom<ModelSpecFields> for ModelSpec {
    type Error = Error;

    fn try_from(f: ModelSpecFields) -> Result<Self> {
        let spec = ModelSpec {
            name: f.name,
            arch: f.arch,
            input: f.input,
            classes: f.classes,
            conv_bias: f.conv_bias,
        };
        spec.validate()?;
        Ok(spec)
    }
}

fn unknown_model(name: &str) -> Error {
    Error::UnknownName {
        what: "model",
        name: name.to_string(),
        expected: ModelSpec::NAMES.to_string(),
    }
}

/// A network with its spec: images `[B, C, H, W]` in, logits `[B, classes]` out. Built from
/// a [`ModelSpec`] ([`Model::new`]) or from a user's own layers ([`Model::custom`]).
#[derive(Clone, Debug)]
pub struct Model<T: Real> {
    pub(crate) spec: ModelSpec,
    pub(crate) net: Sequential<T>,
}

/// A `ModelSpec`'s layers.
fn build<T: Real>(spec: &ModelSpec) -> Sequential<T> {
    let [c, side, _] = spec.input;
    match &spec.arch {
        Arch::Custom => Sequential::new(),
        Arch::Mlp { sizes, relu } => {
            let mut s = Sequential::new().push("", Layer::Flatten);
            for (i, w) in sizes.windows(2).enumerate() {
                if i > 0 && *relu {
                    s = s.push("", Layer::Relu);
                }
                s = s.push(
                    &format!("fc{}", i + 1),
                    Layer::Linear(Linear::new(w[0], w[1], true)),
                );
            }
            s
        }
        Arch::LeNet => {
            let conv = |ci, co| {
                let mut l = Conv2d::new(ci, co, 5, Conv2dGeometry::default(), true);
                l.apply_bias = spec.conv_bias;
                Layer::Conv2d(l)
            };
            Sequential::new()
                .push("conv1", conv(1, 10))
                .push(
                    "",
                    Layer::MaxPool2d {
                        kernel: 2,
                        stride: 2,
                    },
                )
                .push("", Layer::Relu)
                .push("conv2", conv(10, 20))
                .push("conv2_drop", Layer::Dropout2d { p: 0.5 })
                .push(
                    "",
                    Layer::MaxPool2d {
                        kernel: 2,
                        stride: 2,
                    },
                )
                .push("", Layer::Relu)
                .push("", Layer::Flatten)
                .push("fc1", Layer::Linear(Linear::new(320, 50, true)))
                .push("", Layer::Relu)
                .push("", Layer::Dropout { p: 0.5 })
                .push("fc2", Layer::Linear(Linear::new(50, spec.classes, true)))
        }
        Arch::ResNet {
            block,
            blocks,
            widths,
        } => {
            let mut stem = Conv2d::new(c, widths[0], 3, Conv2dGeometry::new(1, 1), false);
            stem.apply_bias = false;
            let mut s = Sequential::new()
                .push("conv1", Layer::Conv2d(stem))
                .push("bn1", Layer::BatchNorm2d(BatchNorm2d::new(widths[0])))
                .push("", Layer::Relu);
            let mut in_planes = widths[0];
            for (stage, (&n, &planes)) in blocks.iter().zip(widths).enumerate() {
                let mut layer = Sequential::new();
                for i in 0..n {
                    let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                    let b = Residual::new(*block, in_planes, planes, stride);
                    in_planes = planes * block.expansion();
                    layer = layer.push(&i.to_string(), Layer::Residual(Box::new(b)));
                }
                s = s.push(&format!("layer{}", stage + 1), Layer::Sequential(layer));
            }
            // After three stride-2 stages the map is side/8; the authors pool 4×4 (32 → 1).
            let pool = side / 8;
            s.push(
                "",
                Layer::AvgPool2d {
                    kernel: pool,
                    stride: pool,
                },
            )
            .push("", Layer::Flatten)
            .push(
                "linear",
                Layer::Linear(Linear::new(in_planes, spec.classes, true)),
            )
        }
    }
}

impl<T: Real> Model<T> {
    /// A model with zero weights (load a checkpoint or call [`Model::init`]).
    pub fn new(spec: ModelSpec) -> Self {
        let net = build(&spec);
        Self { spec, net }
    }

    /// A model of a user's own layers (any [`Layer`], [`Layer::Custom`] included) for
    /// `input = [C, H, W]` images and `classes` outputs: nrpm's training, attacks and reports
    /// then work on it as on the built-in models.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty input or no class; [`Error::Shape`] (or the layer's
    /// error) if one zero image does not come out as `[1, classes]` logits.
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// use nrpm::models::Model;
    /// use nrpm::nn::{Layer, Linear, Sequential};
    /// let net = Sequential::<f32>::new()
    ///     .push("", Layer::Flatten)
    ///     .push("head", Layer::Linear(Linear::new(16, 3, true)));
    /// let model = Model::custom(net, [1, 4, 4], 3)?;
    /// assert_eq!(model.spec().name, "custom");
    /// assert!(Model::custom(Sequential::<f32>::new(), [1, 4, 4], 3).is_err()); // no logits
    /// # Ok(()) }
    /// ```
    pub fn custom(net: Sequential<T>, input: [usize; 3], classes: usize) -> Result<Self> {
        if input.contains(&0) || classes == 0 {
            return Err(Error::config(
                "custom model",
                format!("input {input:?}, {classes} classes"),
                "needs a non-empty input and at least one class",
            ));
        }
        let model = Self {
            spec: ModelSpec {
                name: "custom".into(),
                arch: Arch::Custom,
                input,
                classes,
                conv_bias: false,
            },
            net,
        };
        let [c, h, w] = input;
        let logits = model.logits(Array4::zeros((1, c, h, w)).view())?;
        if logits.dim() != (1, classes) {
            return Err(Error::shape(
                "models::Model::custom",
                "logits of one image",
                &[1, classes],
                logits.shape(),
            ));
        }
        Ok(model)
    }

    /// What the model is.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The layers (keys as in PyTorch), read-only.
    pub fn net(&self) -> &Sequential<T> {
        &self.net
    }

    /// The layers, to change a layer's matching or values. A change that breaks the output
    /// shape is reported by the next forward pass, as an error.
    pub fn net_mut(&mut self) -> &mut Sequential<T> {
        &mut self.net
    }

    /// PyTorch's default initialisation, seeded: weights and biases of Linear/Conv2d drawn
    /// from U(−1/√fan_in, 1/√fan_in) (kaiming_uniform with a = √5), BatchNorm γ = 1, β = 0.
    pub fn init(&mut self, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        self.net.visit_layers_mut("", &mut |key, layer| {
            if !matches!(layer, Layer::Linear(_) | Layer::Conv2d(_)) {
                return;
            }
            let mut fan_in = 1;
            layer.visit_mut(key, &mut |mut p| {
                if p.role == Role::Weight {
                    fan_in = p.value.shape()[1..].iter().product::<usize>().max(1);
                }
                if matches!(p.role, Role::Weight | Role::Bias) {
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    p.value
                        .mapv_inplace(|_| T::of(rng.random_range(-bound..bound)));
                }
            });
        });
    }

    fn check_batch(&self, x: &ArrayView4<T>) -> Result<()> {
        let [c, h, w] = self.spec.input;
        let (_, xc, xh, xw) = x.dim();
        if [xc, xh, xw] != [c, h, w] {
            return Err(Error::shape(
                "models::Model::forward",
                "images [B, C, H, W]",
                &[x.dim().0, c, h, w],
                x.shape(),
            ));
        }
        Ok(())
    }

    /// Logits `[B, classes]` for images `[B, C, H, W]`, with the caches for [`Model::backward`].
    ///
    /// # Errors
    /// [`Error::Shape`] if the images do not match the model's input; layer errors.
    pub fn forward(&self, x: ArrayView4<T>, ctx: &mut Ctx) -> Result<(Array2<T>, Vec<Cache<T>>)> {
        self.check_batch(&x)?;
        let (y, caches) = self.net.forward(x.to_owned().into_dyn(), ctx)?;
        let shape = y.shape().to_vec();
        let y = y.into_dimensionality::<Ix2>().map_err(|_| {
            Error::shape(
                "models::Model::forward",
                "network output (logits [B, classes])",
                &[x.dim().0, self.spec.classes],
                &shape,
            )
        })?;
        Ok((y, caches))
    }

    /// `∂L/∂x [B, C, H, W]` and the parameter gradients for upstream `∂L/∂logits`.
    ///
    /// # Errors
    /// Caches from another model, or shape mismatches.
    pub fn backward(
        &self,
        caches: &[Cache<T>],
        dlogits: Array2<T>,
    ) -> Result<(Array4<T>, ParamGrads<T>)> {
        let mut grads = ParamGrads::default();
        let dx = self
            .net
            .backward("", caches, dlogits.into_dyn(), &mut grads)?;
        if dx.ndim() != 4 {
            return Err(Error::shape(
                "models::Model::backward",
                "input gradient",
                &[0, 0, 0, 0],
                dx.shape(),
            ));
        }
        let shape = dx.shape().to_vec();
        let dx = dx.into_dimensionality::<Ix4>().map_err(|_| {
            Error::shape(
                "models::Model::backward",
                "input gradient",
                &[0, 0, 0, 0],
                &shape,
            )
        })?;
        Ok((dx, grads))
    }

    /// Eval-mode logits.
    ///
    /// # Errors
    /// As [`Model::forward`].
    pub fn logits(&self, x: ArrayView4<T>) -> Result<Array2<T>> {
        Ok(self.forward(x, &mut Ctx::eval())?.0)
    }

    /// Eval-mode predicted classes.
    ///
    /// # Errors
    /// As [`Model::forward`].
    pub fn predict(&self, x: ArrayView4<T>) -> Result<Vec<usize>> {
        Ok(loss::argmax(self.logits(x)?.view()))
    }

    /// The summed cross-entropy of a batch, its gradient with respect to the images, and the
    /// logits (eval mode): what white-box attacks need.
    ///
    /// # Errors
    /// As [`Model::forward`], and bad labels.
    pub fn loss_input_grad(
        &self,
        x: ArrayView4<T>,
        labels: &[usize],
    ) -> Result<(T, Array4<T>, Array2<T>)> {
        let (logits, caches) = self.forward(x, &mut Ctx::eval())?;
        let (l, dlogits) = loss::cross_entropy(logits.view(), labels)?;
        let (dx, _) = self.backward(&caches, dlogits)?;
        Ok((l, dx, logits))
    }

    /// Every parameter and buffer with its key, read-only.
    pub fn visit(&self, f: &mut dyn FnMut(Param<'_, T>)) {
        self.net.visit("", f);
    }

    /// Every parameter and buffer with its key (values can change, shapes cannot).
    pub fn visit_mut(&mut self, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        self.net.visit_mut("", f);
    }

    /// Keys and shapes of the tensors of the given roles.
    pub fn param_shapes(&self, roles: &[Role]) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        self.visit(&mut |p| {
            if roles.contains(&p.role) {
                out.push((p.key, p.value.shape().to_vec()));
            }
        });
        out
    }

    /// `(key, λ)` of every NRPM layer, in execution order: the λ the forward pass uses.
    pub fn lambdas(&self) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        self.net.visit_layers("", &mut |key, layer| {
            if let Some(Matching::Nrpm(m)) = layer.matching() {
                out.push((key.to_string(), m.lambda()));
            }
        });
        out
    }

    /// Keys of the Linear/Conv2d layers in execution order, with `true` for convolutions.
    pub fn matching_layers(&self) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        self.net.visit_layers("", &mut |key, layer| match layer {
            Layer::Linear(_) => out.push((key.to_string(), false)),
            Layer::Conv2d(_) => out.push((key.to_string(), true)),
            _ => {}
        });
        out
    }
}

/// Converts a batch `[B, …]` in any layout to NCHW `[B, C, H, W]` of this model.
///
/// # Errors
/// [`Error::Shape`] if the element count does not fit.
pub fn as_images<T: Real>(x: ArrayD<T>, input: [usize; 3]) -> Result<Array4<T>> {
    let b = x.shape().first().copied().unwrap_or(0);
    let [c, h, w] = input;
    let shape = x.shape().to_vec();
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order((b, c, h, w))
        .map_err(|_| Error::shape("models::as_images", "x", &[b, c, h, w], &shape))
}

impl<T: Real> Parameters<T> for Model<T> {
    fn visit_params(&self, f: &mut dyn FnMut(Param<'_, T>)) {
        self.visit(f);
    }
    fn visit_params_mut(&mut self, f: &mut dyn FnMut(ParamMut<'_, T>)) {
        self.visit_mut(f);
    }
}

/// What attacks and evaluations need of a network: its input, its classes, eval-mode logits,
/// the input gradient of the summed cross-entropy, and (provided from it) that of any
/// shift-invariant loss of the logits. [`Model`] implements it; so can any
/// other network (a smoothed classifier, a wrapped foreign model).
pub trait Classifier<T: Real> {
    /// `[C, H, W]` of one image.
    fn input_shape(&self) -> [usize; 3];

    /// Number of classes K.
    fn classes(&self) -> usize;

    /// Eval-mode logits `[B, K]` of images `[B, C, H, W]`.
    ///
    /// # Errors
    /// Shape and numeric errors of the network.
    fn logits(&self, x: ArrayView4<T>) -> Result<Array2<T>>;

    /// The summed cross-entropy of a batch against `labels`, its gradient with respect to the
    /// images `[B, C, H, W]`, and the logits `[B, K]` (eval mode).
    ///
    /// # Errors
    /// Shape and numeric errors; bad labels.
    fn loss_input_grad(
        &self,
        x: ArrayView4<T>,
        labels: &[usize],
    ) -> Result<(T, Array4<T>, Array2<T>)>;

    /// Eval-mode predicted classes (first maximum on ties).
    ///
    /// # Errors
    /// As [`Classifier::logits`].
    fn predict(&self, x: ArrayView4<T>) -> Result<Vec<usize>> {
        Ok(loss::argmax(self.logits(x)?.view()))
    }

    /// Eval-mode logits `z [B, K]` of images `x [B, C, H, W]` and the input gradient
    /// `[B, C, H, W]` of `Σ_b Σ_k v_bk·z_bk`, with the weights `v = upstream(z) [B, K]` chosen
    /// from the logits (a vector-Jacobian product): the gradient of any loss of the logits,
    /// such as the DLR loss of APGD or a logit difference of FAB.
    ///
    /// [`Model`] does it with one backward pass. This provided version works for any
    /// classifier from [`Classifier::loss_input_grad`] alone, for weights that sum to 0 per
    /// image (losses invariant to a common shift of the logits: cross-entropy, DLR, logit
    /// differences): with `p = softmax(z)`, the cross-entropy gradient towards class k is
    /// `g_k = Jᵀ(p − e_k)`, so `Jᵀv = −Σ_k v_k·g_k` when `Σ_k v_k = 0`, one cross-entropy
    /// gradient per class that has a non-zero weight.
    ///
    /// # Errors
    /// As [`Classifier::loss_input_grad`] and `upstream`; [`Error::Shape`] if `upstream`
    /// returns other than `[B, K]`; in this provided version, [`Error::Config`] for weights
    /// whose sum over the classes is not 0.
    fn logits_input_grad(
        &self,
        x: ArrayView4<T>,
        upstream: &mut dyn FnMut(ArrayView2<T>) -> Result<Array2<T>>,
    ) -> Result<(Array2<T>, Array4<T>)> {
        let logits = self.logits(x)?;
        let v = checked_upstream(upstream, &logits)?;
        for (b, row) in v.outer_iter().enumerate() {
            let sum: f64 = row.iter().map(|w| w.f64()).sum();
            let size: f64 = row.iter().map(|w| w.f64().abs()).sum();
            if sum.abs() > SHIFT_FREE_TOLERANCE * size {
                return Err(Error::config(
                    "logit weights",
                    format!("{sum} (sum of image {b}'s weights)"),
                    "must sum to 0 per image for a classifier that gives only cross-entropy \
                     gradients (implement Classifier::logits_input_grad for other losses)",
                ));
            }
        }
        let mut dx = Array4::zeros(x.raw_dim());
        for (k, weights) in v.axis_iter(Axis(1)).enumerate() {
            if weights.iter().all(|w| *w == T::zero()) {
                continue;
            }
            let (_, g_k, _) = self.loss_input_grad(x, &vec![k; weights.len()])?;
            for ((mut d, g), &w) in dx.outer_iter_mut().zip(g_k.outer_iter()).zip(&weights) {
                d.scaled_add(-w, &g);
            }
        }
        Ok((logits, dx))
    }
}

/// Relative tolerance on `|Σ_k v_k| / Σ_k |v_k|` for logit weights that should sum to 0
/// (f32 rounding of weights computed in f64 stays far below it).
const SHIFT_FREE_TOLERANCE: f64 = 1e-4;

/// `upstream(logits)`, checked to be `[B, K]` like the logits.
fn checked_upstream<T: Real>(
    upstream: &mut dyn FnMut(ArrayView2<T>) -> Result<Array2<T>>,
    logits: &Array2<T>,
) -> Result<Array2<T>> {
    let v = upstream(logits.view())?;
    if v.dim() != logits.dim() {
        return Err(Error::shape(
            "models::Classifier::logits_input_grad",
            "upstream weights",
            logits.shape(),
            v.shape(),
        ));
    }
    Ok(v)
}

impl<T: Real> Classifier<T> for Model<T> {
    fn input_shape(&self) -> [usize; 3] {
        self.spec.input
    }
    fn classes(&self) -> usize {
        self.spec.classes
    }
    fn logits(&self, x: ArrayView4<T>) -> Result<Array2<T>> {
        Model::logits(self, x)
    }
    fn loss_input_grad(
        &self,
        x: ArrayView4<T>,
        labels: &[usize],
    ) -> Result<(T, Array4<T>, Array2<T>)> {
        Model::loss_input_grad(self, x, labels)
    }
    fn logits_input_grad(
        &self,
        x: ArrayView4<T>,
        upstream: &mut dyn FnMut(ArrayView2<T>) -> Result<Array2<T>>,
    ) -> Result<(Array2<T>, Array4<T>)> {
        let (logits, caches) = self.forward(x, &mut Ctx::eval())?;
        let v = checked_upstream(upstream, &logits)?;
        let (dx, _) = self.backward(&caches, v)?;
        Ok((logits, dx))
    }
}
