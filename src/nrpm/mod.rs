//! The NRPM operator: a robust, median-like replacement for the sum `z = Σ_d a_d·x_d`.
//!
//! ```text
//! t_d   = a_d·x_d                    d = 1..D  (a: a row of weight, x: an input row)
//! z⁰    = Σ_d t_d                              (LPM, the least-squares estimate)
//! r_d   = | t_d − zᵏ/D |
//! w_d   = norm.weight(r_d)                     (L1: 1 / (r_d + ε))
//! zᵏ⁺¹  = D · Σ_d w_d·t_d / Σ_d w_d            (Algorithm 1 / Eq. (3), K steps)
//! y     = λ·z⁰ + (1 − λ)·zᴷ + bias
//! ```
//!
//! With `groups = N > 1` the D terms are split into N equal contiguous chunks (the authors'
//! "localized" variant); each chunk runs the iteration above with its own `D/N`, and the chunk
//! outputs are added: `y = Σ_g (λ·z⁰_g + (1 − λ)·zᴷ_g) + bias`.
//!
//! Layouts are PyTorch's: `x [B, D]`, `weight [O, D]`, `bias [O]`, `y [B, O]`. Three paths
//! compute the same function ([`Exec`]):
//! - [`mod@reference`]: materialises the `[B, O, D]` terms; written for clarity; the oracle;
//! - [`fused`]: never materialises `[B, O, D]`; rayon over outputs, SIMD over d. The default;
//! - `cuda` (cargo feature `cuda`): the fused kernels of `cuda/*.cu` on an NVIDIA GPU, compiled
//!   at run time by NVRTC; [`Device::Cuda`] / [`Exec::Cuda`] select it, and without the
//!   feature (or without a usable GPU) they give [`Error::NoCuda`].
//!
//! All give the exact gradient of the unrolled K-step computation (what autograd gives on the
//! authors' code) for x, weight, bias and λ, saving only the iterates `[B, O, N, K + 1]`.
//! [`lad`] computes the exact `K → ∞, ε → 0` limit `D · median_d t_d`; [`conv`] runs conv2d
//! layers (NCHW) through unfold on the same paths; [`matmul`] holds the fused path's GEMMs
//! (the LPM sums and their backward).
//!
//! Maths and proofs: `proofs/README.md`.

pub mod apply;
pub mod conv;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "no_cuda.rs"]
mod cuda;
pub mod fused;
pub(crate) mod kernels;
pub mod lad;
pub mod matmul;
pub mod norm;
pub mod reference;
pub mod simd;

use std::fmt;
use std::str::FromStr;

use ndarray::{
    Array1, Array2, Array4, ArrayView1, ArrayView2, ArrayView4, AsArray, Axis, Dimension,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::real::Real;
pub use norm::Norm;

/// The largest K accepted (a guard against typos such as `--k 30000000`).
pub const MAX_K: usize = 10_000;

/// Hyper-parameters of one NRPM operator, validated once by [`NrpmConfig::builder`].
///
/// - `norm`: the robust weight ([`Norm`]); `Norm::Lpm` makes the operator the plain sum;
/// - `k`: IRLS steps K (the authors' scripts use 1, their layer default is 3);
/// - `eps`: ε > 0 in `1/(r + ε)` (authors: 5e-5 MLP, 1e-3 LeNet);
/// - `lambda`: λ, the LPM share of the output (1 = vanilla model, 0 = pure NRPM); any finite
///   value is accepted, as in the authors' raw-λ training path;
/// - `groups`: N ≥ 1 equal chunks of the D terms (must divide D at call time).
///
/// Deserialising (e.g. from a checkpoint's metadata) runs the same checks as
/// [`NrpmConfigBuilder::build`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NrpmConfigFields")]
pub struct NrpmConfig {
    norm: Norm,
    k: usize,
    eps: f64,
    lambda: f64,
    groups: usize,
    /// Solve the L1 objective exactly (`D·median`, [`lad`]) instead of K IRLS steps.
    #[serde(default, skip_serializing_if = "is_false")]
    exact_lad: bool,
}

/// `!b` (serde skips a `false` exact_lad, so records without it read back unchanged).
fn is_false(b: &bool) -> bool {
    !*b
}

/// The serialised fields of [`NrpmConfig`], checked on the way in.
#[derive(Deserialize)]
struct NrpmConfigFields {
    norm: Norm,
    k: usize,
    eps: f64,
    lambda: f64,
    groups: usize,
    #[serde(default)]
    exact_lad: bool,
}

impl TryFrom<NrpmConfigFields> for NrpmConfig {
    type Error = Error;

    fn try_from(f: NrpmConfigFields) -> Result<Self> {
        NrpmConfig {
            norm: f.norm,
            k: f.k,
            eps: f.eps,
            lambda: f.lambda,
            groups: f.groups,
            exact_lad: f.exact_lad,
        }
        .validated()
    }
}

/// Named construction of an [`NrpmConfig`]: start from [`NrpmConfig::builder`], set what
/// differs from the defaults, then [`NrpmConfigBuilder::build`].
#[derive(Clone, Copy, Debug, PartialEq)]
#[must_use = "call .build() to get the configuration"]
pub struct NrpmConfigBuilder {
    cfg: NrpmConfig,
}

impl NrpmConfigBuilder {
    /// The robust norm (default [`Norm::L1`]; [`Norm::Lpm`] makes the operator the plain sum).
    pub fn norm(mut self, norm: Norm) -> Self {
        self.cfg.norm = norm;
        self
    }
    /// IRLS steps K (default 3; the authors' scripts use 1).
    pub fn k(mut self, k: usize) -> Self {
        self.cfg.k = k;
        self
    }
    /// ε > 0 of the weight 1/(r + ε) (default 1e-3; the authors' MLP: 5e-5).
    pub fn eps(mut self, eps: f64) -> Self {
        self.cfg.eps = eps;
        self
    }
    /// λ, the LPM share of the output (default 0: pure NRPM; 1: the plain layer).
    pub fn lambda(mut self, lambda: f64) -> Self {
        self.cfg.lambda = lambda;
        self
    }
    /// N ≥ 1 equal chunks of the D terms (default 1; must divide D at call time).
    pub fn groups(mut self, groups: usize) -> Self {
        self.cfg.groups = groups;
        self
    }
    /// Replace the K IRLS steps by their exact `K → ∞, ε → 0` limit `Dg·median` of each
    /// group ([`lad`]; L1 only; K and ε are then unused). Default `false`.
    pub fn exact_lad(mut self, exact: bool) -> Self {
        self.cfg.exact_lad = exact;
        self
    }
    /// The validated configuration.
    ///
    /// # Errors
    /// [`Error::Config`] if ε is not finite and > 0 (or ≥ 1 for `Hm`, whose weights lie in
    /// [ε, 1]), λ is not finite, K > [`MAX_K`], groups = 0, γ, δ are out of range, or
    /// `exact_lad` is asked of another norm than L1.
    pub fn build(self) -> Result<NrpmConfig> {
        self.cfg.validated()
    }
}

impl Default for NrpmConfig {
    /// The CLI's defaults: L1, K = 3, ε = 1e-3, λ = 0 (pure NRPM), one group.
    fn default() -> Self {
        Self {
            norm: Norm::L1,
            k: DEFAULT_K,
            eps: DEFAULT_EPS,
            lambda: 0.0,
            groups: 1,
            exact_lad: false,
        }
    }
}

/// The default number of IRLS steps K (the authors' `RobustSum` default; their scripts pass 1).
pub const DEFAULT_K: usize = 3;
/// The default ε of the IRLS weight 1/(r + ε) (the authors' LeNet and CIFAR training value).
pub const DEFAULT_EPS: f64 = 1e-3;

impl NrpmConfig {
    /// A builder starting from the defaults ([`NrpmConfig::default`]: L1, K = 3, ε = 1e-3,
    /// λ = 0, one group); every value is named, and [`NrpmConfigBuilder::build`] checks them
    /// all.
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// let x = ndarray::array![[1.0_f64, 1.0, 1.0, 100.0]]; // one gross outlier, D = 4
    /// let w = ndarray::array![[1.0_f64, 1.0, 1.0, 1.0]];
    /// let cfg = nrpm::NrpmConfig::builder().k(20).eps(1e-6).lambda(0.0).build()?; // L1
    /// let (y, _saved) = nrpm::forward(x.view(), w.view(), None, &cfg)?;
    /// assert!((y[[0, 0]] - 4.0).abs() < 1e-2); // D·median = 4; LPM gives 103
    /// assert!(nrpm::NrpmConfig::builder().eps(-1.0).build().is_err());
    /// # Ok(()) }
    /// ```
    pub fn builder() -> NrpmConfigBuilder {
        NrpmConfigBuilder {
            cfg: NrpmConfig::default(),
        }
    }

    /// Checks every field (what [`NrpmConfigBuilder::build`] and deserialising run).
    fn validated(self) -> Result<Self> {
        self.norm.validate()?;
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(Error::config("eps", self.eps, "must be finite and > 0"));
        }
        if matches!(self.norm, Norm::Hm { .. }) && self.eps >= 1.0 {
            return Err(Error::config("eps", self.eps, "hm needs eps < 1"));
        }
        if !self.lambda.is_finite() {
            return Err(Error::config("lambda", self.lambda, "must be finite"));
        }
        if self.k > MAX_K {
            return Err(Error::config("k", self.k, "must be at most 10000"));
        }
        if self.groups == 0 {
            return Err(Error::config("groups", 0, "must be at least 1"));
        }
        if self.exact_lad && self.norm != Norm::L1 {
            return Err(Error::config(
                "exact_lad",
                self.norm,
                "the exact LAD limit D·median is the limit of the l1 norm only",
            ));
        }
        Ok(self)
    }

    /// The plain linear pattern match (`Norm::Lpm`, λ = 1).
    pub fn lpm() -> Self {
        Self {
            norm: Norm::Lpm,
            k: 0,
            eps: 1e-3,
            lambda: 1.0,
            groups: 1,
            exact_lad: false,
        }
    }

    /// The same configuration with `groups` chunks.
    ///
    /// # Errors
    /// [`Error::Config`] if `groups == 0`.
    pub fn with_groups(mut self, groups: usize) -> Result<Self> {
        self.groups = groups;
        self.validated()
    }

    /// The same configuration with another λ.
    ///
    /// # Errors
    /// [`Error::Config`] if λ is not finite.
    pub fn with_lambda(mut self, lambda: f64) -> Result<Self> {
        if !lambda.is_finite() {
            return Err(Error::config("lambda", lambda, "must be finite"));
        }
        self.lambda = lambda;
        Ok(self)
    }

    /// The norm.
    pub fn norm(&self) -> Norm {
        self.norm
    }
    /// IRLS steps K.
    pub fn k(&self) -> usize {
        self.k
    }
    /// ε.
    pub fn eps(&self) -> f64 {
        self.eps
    }
    /// λ.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }
    /// Number of term groups N.
    pub fn groups(&self) -> usize {
        self.groups
    }
    /// Whether the robust part is the exact LAD limit `Dg·median` (no IRLS steps).
    pub fn exact_lad(&self) -> bool {
        self.exact_lad
    }

    /// `true` when the output is exactly the LPM sum (norm `Lpm`, or K = 0 without the exact
    /// LAD limit): no IRLS is run and the λ gradient is 0.
    pub fn is_lpm(&self) -> bool {
        self.norm.is_lpm() || (self.k == 0 && !self.exact_lad)
    }

    /// Robust iterates saved after z⁰: K (IRLS), 1 (the exact LAD limit), 0 (LPM).
    pub(crate) fn saved_steps(&self) -> usize {
        if self.exact_lad {
            1
        } else {
            self.steps()
        }
    }

    /// IRLS steps actually run (0 when [`NrpmConfig::is_lpm`]).
    pub fn steps(&self) -> usize {
        if self.is_lpm() {
            0
        } else {
            self.k
        }
    }
}

impl fmt::Display for NrpmConfig {
    /// `l1, k=3, eps=0.001, lambda=0.7` (and `, groups=2` with groups, `, exact_lad` with the
    /// exact LAD limit): what [`NrpmConfig::from_str`](FromStr) reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}, k={}, eps={}, lambda={}",
            self.norm, self.k, self.eps, self.lambda
        )?;
        if self.groups > 1 {
            write!(f, ", groups={}", self.groups)?;
        }
        if self.exact_lad {
            write!(f, ", exact_lad")?;
        }
        Ok(())
    }
}

impl FromStr for NrpmConfig {
    type Err = Error;

    /// A norm (as [`Norm`] parses it) followed by any of `k=`, `eps=`, `lambda=`, `groups=`
    /// and the bare word `exact_lad`, comma-separated; the rest are the defaults.
    ///
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// let cfg: nrpm::NrpmConfig = "huber(delta=2), k=1, eps=5e-5, lambda=0.7".parse()?;
    /// assert_eq!((cfg.k(), cfg.eps(), cfg.lambda()), (1, 5e-5, 0.7));
    /// assert_eq!(cfg.to_string().parse::<nrpm::NrpmConfig>()?, cfg);
    /// assert!("l1, k=3, eps=-1".parse::<nrpm::NrpmConfig>().is_err());
    /// let lad: nrpm::NrpmConfig = "l1, lambda=0.5, exact_lad".parse()?;
    /// assert!(lad.exact_lad() && lad.to_string().parse::<nrpm::NrpmConfig>()? == lad);
    /// # Ok(()) }
    /// ```
    fn from_str(s: &str) -> Result<Self> {
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0usize, 0);
        for (i, c) in s.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        let mut b = NrpmConfig::builder().norm(parts[0].trim().parse()?);
        for part in &parts[1..] {
            let bad = || {
                Error::config(
                    "nrpm config",
                    part.trim(),
                    "expected k=, eps=, lambda=, groups= or exact_lad",
                )
            };
            if part.trim() == "exact_lad" {
                b = b.exact_lad(true);
                continue;
            }
            let (key, value) = part.split_once('=').ok_or_else(bad)?;
            let value = value.trim();
            b = match key.trim() {
                "k" => b.k(value.parse().map_err(|_| bad())?),
                "eps" => b.eps(value.parse().map_err(|_| bad())?),
                "lambda" => b.lambda(value.parse().map_err(|_| bad())?),
                "groups" => b.groups(value.parse().map_err(|_| bad())?),
                _ => return Err(bad()),
            };
        }
        b.build()
    }
}

/// Which implementation computes the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exec {
    /// The materialised `[B, O, D]` oracle ([`mod@reference`]).
    Reference,
    /// The fused, parallel, SIMD CPU path ([`fused`]). The default.
    Fused,
    /// The fused CUDA kernels on the GPU with this ordinal (feature `cuda`; without it every
    /// call gives [`Error::NoCuda`]). Inputs and outputs stay host arrays: each call copies
    /// them to the device and back.
    Cuda(usize),
}

/// Where the NRPM operators of a model run: the CPU (the [`fused`] path) or a CUDA device.
///
/// Parsed from `cpu`, `cuda` (device 0) or `cuda:N`. Exists in every build; without the
/// cargo feature `cuda`, [`Device::open`] on `Cuda` gives [`Error::NoCuda`].
///
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::{Device, Exec};
/// let dev: Device = "cuda:1".parse()?;
/// assert_eq!(dev, Device::Cuda(1));
/// assert_eq!(dev.exec(), Exec::Cuda(1));
/// assert_eq!("cpu".parse::<Device>()?.exec(), Exec::Fused);
/// assert!(Device::Cpu.open().is_ok());
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Device {
    /// The CPU ([`Exec::Fused`]).
    #[default]
    Cpu,
    /// The CUDA device with this ordinal ([`Exec::Cuda`]).
    Cuda(usize),
}

impl Device {
    /// The execution path for this device.
    pub fn exec(self) -> Exec {
        match self {
            Device::Cpu => Exec::Fused,
            Device::Cuda(ordinal) => Exec::Cuda(ordinal),
        }
    }

    /// Checks that the device can run the operator and returns its name. For CUDA this loads
    /// the driver and NVRTC, creates the context and compiles the kernels (once per process).
    ///
    /// # Errors
    /// [`Error::NoCuda`] when the build lacks the `cuda` feature, libcuda or libnvrtc is
    /// missing, or there is no such device; [`Error::Compile`] or [`Error::Cuda`] if the
    /// kernels cannot be built or loaded.
    pub fn open(self) -> Result<String> {
        match self {
            Device::Cpu => Ok("cpu".into()),
            Device::Cuda(ordinal) => cuda::open(ordinal),
        }
    }
}

impl FromStr for Device {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let unknown = || Error::UnknownName {
            what: "device",
            name: s.to_string(),
            expected: "cpu, cuda, cuda:N".into(),
        };
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(Device::Cuda).map_err(|_| unknown()),
                None => Err(unknown()),
            },
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// What a forward pass saves for its backward: the IRLS iterates `z[b, o, g, k] = zᵏ` of group
/// g (`[B, O, N, K + 1]`, O(B·O·N·K) memory, never O(B·O·D)), the configuration it ran with,
/// and a fingerprint of its inputs (their shapes, and 1 024 evenly spaced values of each).
///
/// Only a forward pass makes one, and [`backward`] checks it against its arguments: another
/// `x` or `weight` (another shape, or other values at the fingerprinted positions) is an
/// [`Error::Stale`], never wrong gradients. λ and every other setting come from here, so a
/// backward pass cannot be run with another configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Iterates<T> {
    pub(crate) z: Array4<T>,
    pub(crate) cfg: NrpmConfig,
    seen: Seen,
}

/// The inputs a forward pass saw.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    /// `x [B, D]`, `weight [O, D]`.
    Linear { x: Fingerprint, weight: Fingerprint },
    /// `x [B, C, H, W]`, `weight [O, C, kh, kw]` and the geometry.
    Conv {
        x: Fingerprint,
        weight: Fingerprint,
        geometry: conv::Conv2dGeometry,
    },
}

/// A cheap identity of an array: its shape and a hash of up to [`FINGERPRINT_SAMPLES`] evenly
/// spaced values (all of them for small arrays), in logical order.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fingerprint {
    shape: Vec<usize>,
    sample: u64,
}

/// How many values of an input the fingerprint hashes.
pub const FINGERPRINT_SAMPLES: usize = 1024;

impl Fingerprint {
    fn of<T: Real, D: Dimension>(a: &ndarray::ArrayView<T, D>) -> Self {
        let n = a.len();
        let step = n.div_ceil(FINGERPRINT_SAMPLES).max(1);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for v in a.iter().step_by(step) {
            h = (h ^ v.f64().to_bits()).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self {
            shape: a.shape().to_vec(),
            sample: h,
        }
    }
}

impl<T: Real> Iterates<T> {
    /// The iterates of a linear forward pass over `x [B, D]` and `weight [O, D]`.
    pub(crate) fn new(z: Array4<T>, cfg: NrpmConfig, x: &ArrayView2<T>, w: &ArrayView2<T>) -> Self {
        Self {
            z,
            cfg,
            seen: Seen::Linear {
                x: Fingerprint::of(x),
                weight: Fingerprint::of(w),
            },
        }
    }

    /// Iterates whose inputs are recorded later ([`Iterates::into_conv`], or `new` once the
    /// caller has them): the CUDA paths build the iterates before they know which view of the
    /// inputs the caller will check against.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn pending(z: Array4<T>, cfg: NrpmConfig) -> Self {
        let none = Fingerprint {
            shape: Vec::new(),
            sample: 0,
        };
        Self {
            z,
            cfg,
            seen: Seen::Linear {
                x: none.clone(),
                weight: none,
            },
        }
    }

    /// The same iterates, saved as those of a linear pass over `x` and `w`.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn into_linear(self, x: &ArrayView2<T>, w: &ArrayView2<T>) -> Self {
        Self::new(self.z, self.cfg, x, w)
    }

    /// The same iterates, saved as those of a convolution over `x [B, C, H, W]`.
    pub(crate) fn into_conv(
        mut self,
        x: &ArrayView4<T>,
        w: &ndarray::ArrayView4<T>,
        geometry: conv::Conv2dGeometry,
    ) -> Self {
        self.seen = Seen::Conv {
            x: Fingerprint::of(x),
            weight: Fingerprint::of(w),
            geometry,
        };
        self
    }

    /// [`Error::Stale`] unless `x` and `weight` are the inputs of the linear forward pass.
    pub(crate) fn check_linear(
        &self,
        op: &'static str,
        x: &ArrayView2<T>,
        weight: &ArrayView2<T>,
    ) -> Result<()> {
        match &self.seen {
            Seen::Linear { x: fx, weight: fw } => {
                check_same(op, "x", fx, x).and_then(|_| check_same(op, "weight", fw, weight))
            }
            Seen::Conv { .. } => Err(Error::Stale {
                op,
                what: "these iterates come from a convolution (use nrpm::conv::backward)".into(),
            }),
        }
    }

    /// [`Error::Stale`] unless `x`, `weight` and `geometry` are those of the conv forward pass.
    pub(crate) fn check_conv(
        &self,
        op: &'static str,
        x: &ArrayView4<T>,
        weight: &ndarray::ArrayView4<T>,
        geometry: &conv::Conv2dGeometry,
    ) -> Result<()> {
        match &self.seen {
            Seen::Conv {
                x: fx,
                weight: fw,
                geometry: g,
            } => {
                check_same(op, "x", fx, x)?;
                check_same(op, "weight", fw, weight)?;
                if g != geometry {
                    return Err(Error::Stale {
                        op,
                        what: format!("the geometry differs from the forward pass's ({g:?})"),
                    });
                }
                Ok(())
            }
            Seen::Linear { .. } => Err(Error::Stale {
                op,
                what: "these iterates come from a linear layer (use nrpm::backward)".into(),
            }),
        }
    }

    /// The iterates `[B, O, N, K + 1]` (rows B·L of the unfolded patches for a convolution).
    pub fn z(&self) -> ndarray::ArrayView4<'_, T> {
        self.z.view()
    }

    /// The configuration of the forward pass (λ included), which the backward pass uses.
    pub fn config(&self) -> &NrpmConfig {
        &self.cfg
    }

    /// `Σ_g z⁰_g` (the LPM output without bias), `[B, O]`.
    pub fn lpm(&self) -> Array2<T> {
        self.sum_groups(0)
    }

    /// `Σ_g zᴷ_g` (the pure NRPM output without bias), `[B, O]`.
    pub fn last(&self) -> Array2<T> {
        self.sum_groups(self.z.dim().3 - 1)
    }

    /// `Σ_g zᵏ_g`, `[B, O]` (groups summed in order).
    fn sum_groups(&self, k: usize) -> Array2<T> {
        let (b, o, n, steps) = self.z.dim();
        let z = self.z.as_standard_layout();
        let zs = z.as_slice().expect("standard layout");
        let out: Vec<T> = zs
            .chunks_exact((n * steps).max(1))
            .take(b * o)
            .map(|per_output| group_sum(per_output, n, k))
            .collect();
        Array2::from_shape_vec((b, o), out).expect("B·O values")
    }
}

/// `Σ_g zᵏ_g` of one output from its iterates `per_output [N, S]` (S saved steps, row-major),
/// the groups added in order from 0: the one summation behind [`Iterates::lpm`],
/// [`Iterates::last`] and the fused forward's mix, so that both give the same bits.
#[inline]
pub(crate) fn group_sum<T: Real>(per_output: &[T], groups: usize, k: usize) -> T {
    let saved = per_output.len() / groups.max(1);
    (0..groups).fold(T::zero(), |acc, g| acc + per_output[g * saved + k])
}

/// [`Error::Stale`] unless `a` has the fingerprint `seen`.
fn check_same<T: Real, D: Dimension>(
    op: &'static str,
    arg: &'static str,
    seen: &Fingerprint,
    a: &ndarray::ArrayView<T, D>,
) -> Result<()> {
    let now = Fingerprint::of(a);
    if now.shape != seen.shape {
        return Err(Error::Stale {
            op,
            what: format!(
                "{arg} has shape {:?}, the forward pass had {:?}",
                now.shape, seen.shape
            ),
        });
    }
    if now.sample != seen.sample {
        return Err(Error::Stale {
            op,
            what: format!("{arg} holds other values than in the forward pass"),
        });
    }
    Ok(())
}

/// Gradients of `Σ grad_output ⊙ y` with respect to each input of the linear operator.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearGrads<T> {
    /// `[B, D]`.
    pub x: Array2<T>,
    /// `[O, D]`.
    pub weight: Array2<T>,
    /// `[O]` (column sums of `grad_output`; meaningful when the layer has a bias).
    pub bias: Array1<T>,
    /// Scalar `∂/∂λ = Σ_{b,o} grad_output·(z⁰ − zᴷ)`.
    pub lambda: T,
}

/// Forward pass on the default (fused) path: `x [B, D]`, `weight [O, D]`, `bias [O]` →
/// `y [B, O]`, plus what [`backward`] needs (the iterates, the configuration, a fingerprint of
/// `x` and `weight`).
///
/// # Errors
/// [`Error::Shape`] if the D's or O's differ; [`Error::Config`] if D = 0 or N does not divide
/// D; [`Error::NonFinite`] on NaN or ±Inf in `x`, `weight` or `bias`; [`Error::Overflow`] if a
/// finite input overflows the precision.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use ndarray::array;
/// let x = array![[0.2_f64, 0.4, 0.1, 9.0]];           // one corrupted input, D = 4
/// let w = array![[1.0_f64, 1.0, 1.0, 1.0]];
/// let cfg = nrpm::NrpmConfig::builder().k(3).lambda(0.0).build()?;
/// let (y, saved) = nrpm::forward(x.view(), w.view(), None, &cfg)?;
/// assert!(y[[0, 0]] < 2.0); // LPM gives 9.7
/// let g = nrpm::backward(x.view(), w.view(), &saved, array![[1.0]].view())?;
/// assert_eq!(g.x.dim(), (1, 4));
/// let other = array![[0.3_f64, 0.4, 0.1, 9.0]];
/// assert!(nrpm::backward(other.view(), w.view(), &saved, array![[1.0]].view()).is_err());
/// # Ok(()) }
/// ```
pub fn forward<T: Real>(
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    bias: Option<ArrayView1<T>>,
    cfg: &NrpmConfig,
) -> Result<(Array2<T>, Iterates<T>)> {
    forward_with(Exec::Fused, x, weight, bias, cfg)
}

/// Backward pass on the default (fused) path: the gradients of `Σ grad_output ⊙ y` for the
/// forward pass that produced `iterates`, which must have seen this `x` and `weight` (its
/// configuration, λ included, is the one used).
///
/// # Errors
/// [`Error::Stale`] if `x` or `weight` is not what the forward pass saw; [`Error::Shape`] if
/// `grad_output` is not `[B, O]`; [`Error::NonFinite`] on NaN or ±Inf in `grad_output`.
pub fn backward<T: Real>(
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    iterates: &Iterates<T>,
    grad_output: ArrayView2<T>,
) -> Result<LinearGrads<T>> {
    backward_with(Exec::Fused, x, weight, iterates, grad_output)
}

/// [`forward`] on a chosen path.
///
/// # Errors
/// As [`forward`]; with [`Exec::Cuda`] also [`Error::NoCuda`] (no `cuda` feature, no driver,
/// NVRTC or device), [`Error::Compile`] and [`Error::Cuda`].
pub fn forward_with<T: Real>(
    exec: Exec,
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    bias: Option<ArrayView1<T>>,
    cfg: &NrpmConfig,
) -> Result<(Array2<T>, Iterates<T>)> {
    if cfg.exact_lad() {
        return lad::forward_saved(x, weight, bias, cfg);
    }
    match exec {
        Exec::Reference => reference::forward(x, weight, bias, cfg),
        Exec::Fused => fused::forward(x, weight, bias, cfg),
        Exec::Cuda(ordinal) => cuda::forward(ordinal, x, weight, bias, cfg),
    }
}

/// [`backward`] on a chosen path.
///
/// # Errors
/// As [`backward`]; with [`Exec::Cuda`] also the CUDA errors of [`forward_with`].
pub fn backward_with<T: Real>(
    exec: Exec,
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    iterates: &Iterates<T>,
    grad_output: ArrayView2<T>,
) -> Result<LinearGrads<T>> {
    iterates.check_linear("nrpm::backward", &x, &weight)?;
    backward_unchecked(exec, x, weight, iterates, grad_output)
}

/// [`backward_with`] without the check of the inputs against the forward pass (the conv path
/// checks its own, image-level inputs).
pub(crate) fn backward_unchecked<T: Real>(
    exec: Exec,
    x: ArrayView2<T>,
    weight: ArrayView2<T>,
    iterates: &Iterates<T>,
    grad_output: ArrayView2<T>,
) -> Result<LinearGrads<T>> {
    if iterates.cfg.exact_lad() {
        return lad::backward_unchecked(x, weight, iterates, grad_output);
    }
    match exec {
        Exec::Reference => reference::backward_unchecked(x, weight, iterates, grad_output),
        Exec::Fused => fused::backward_unchecked(x, weight, iterates, grad_output),
        Exec::Cuda(ordinal) => {
            let cfg = iterates.cfg;
            cuda::backward(ordinal, x, weight, iterates, grad_output, &cfg)
        }
    }
}

/// The dimensions `(B, D, O)` of a linear NRPM call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dims {
    pub b: usize,
    pub d: usize,
    pub o: usize,
    /// Groups N.
    pub n: usize,
    /// Terms per group D/N.
    pub dg: usize,
}

/// Checks that a value array holds only finite numbers.
///
/// # Errors
/// [`Error::NonFinite`] naming `what` and the index (one entry per axis) of the first bad value.
pub fn check_finite<'a, T: Real + 'a, D: Dimension>(
    what: &'static str,
    values: impl AsArray<'a, T, D>,
) -> Result<()> {
    let view = values.into();
    match first_non_finite(&view) {
        None => Ok(()),
        Some(flat) => {
            let bad = view.iter().nth(flat).copied().unwrap_or_else(T::zero);
            Err(Error::NonFinite {
                what,
                index: unravel(flat, view.shape()),
                value: format!("{bad}"),
            })
        }
    }
}

/// The row-major position of the first value that is not finite. A contiguous array is
/// scanned in blocks with a branch-free test per block (which vectorises), and only a block
/// that fails is searched value by value; other layouts go value by value.
pub(crate) fn first_non_finite<T: Real, D: Dimension>(
    view: &ndarray::ArrayView<T, D>,
) -> Option<usize> {
    const BLOCK: usize = 512;
    let Some(values) = view.as_slice() else {
        return view.iter().position(|v| !v.is_finite());
    };
    values
        .chunks(BLOCK)
        .position(|block| !block.iter().fold(true, |ok, v| ok & v.is_finite()))
        .map(|i| {
            let block = &values[i * BLOCK..];
            i * BLOCK + block.iter().position(|v| !v.is_finite()).unwrap_or(0)
        })
}

/// The index (one entry per axis) of the `flat`-th element in row-major order of `shape`.
pub(crate) fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            index[i] = flat % d;
            flat /= d;
        }
    }
    index
}

/// Validates the inputs of a forward pass and returns its dimensions.
pub(crate) fn check_forward<T: Real>(
    op: &'static str,
    x: &ArrayView2<T>,
    weight: &ArrayView2<T>,
    bias: Option<&ArrayView1<T>>,
    cfg: &NrpmConfig,
) -> Result<Dims> {
    let (b, d) = x.dim();
    let (o, dw) = weight.dim();
    if dw != d {
        return Err(Error::shape(op, "weight", &[o, d], &[o, dw]));
    }
    if d == 0 {
        return Err(Error::Config {
            name: "D",
            value: "0".into(),
            rule: "an operator needs at least one term",
        });
    }
    let n = cfg.groups();
    if d % n != 0 {
        return Err(Error::Config {
            name: "groups",
            value: n.to_string(),
            rule: "must divide the number of terms D",
        });
    }
    if let Some(bias) = bias {
        if bias.len() != o {
            return Err(Error::shape(op, "bias", &[o], &[bias.len()]));
        }
        check_finite("bias", bias)?;
    }
    check_finite("input x", x)?;
    check_finite("weight", weight)?;
    Ok(Dims {
        b,
        d,
        o,
        n,
        dg: d / n,
    })
}

/// Validates the inputs of a backward pass (against the iterates' configuration) and returns
/// its dimensions.
pub(crate) fn check_backward<T: Real>(
    op: &'static str,
    x: &ArrayView2<T>,
    weight: &ArrayView2<T>,
    iterates: &Iterates<T>,
    grad_output: &ArrayView2<T>,
) -> Result<Dims> {
    let cfg = &iterates.cfg;
    let dims = check_forward(op, x, weight, None, cfg)?;
    let want = [dims.b, dims.o, dims.n, cfg.saved_steps() + 1];
    let got = iterates.z.shape();
    if got != want {
        return Err(Error::shape(op, "iterates", &want, got));
    }
    if grad_output.dim() != (dims.b, dims.o) {
        return Err(Error::shape(
            op,
            "grad_output",
            &[dims.b, dims.o],
            grad_output.shape(),
        ));
    }
    check_finite("grad_output", grad_output)?;
    Ok(dims)
}

/// `y = λ·Σ_g z⁰_g + (1 − λ)·Σ_g zᴷ_g + bias`, checked for overflow.
pub(crate) fn mix_output<T: Real>(
    op: &'static str,
    iterates: &Iterates<T>,
    bias: Option<ArrayView1<T>>,
) -> Result<Array2<T>> {
    let mix = Mix::new(&iterates.cfg);
    let mut y = ndarray::Zip::from(&iterates.lpm())
        .and(&iterates.last())
        .map_collect(|&lpm, &last| mix.of(lpm, last));
    if let Some(bias) = bias {
        y += &bias;
    }
    check_overflow(op, &y)?;
    check_overflow(op, &iterates.z)?;
    Ok(y)
}

/// The λ mix of one output from its group sums `lpm = Σ_g z⁰_g` and `last = Σ_g zᴷ_g`:
/// `λ·lpm + (1 − λ)·last`, or `lpm` when the output is the LPM sum. The one definition
/// behind [`mix_output`] and the fused forward pass, which mixes inside its parallel tasks
/// (the bias is added after, as `y + bias`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mix<T> {
    lambda: Option<T>,
}

impl<T: Real> Mix<T> {
    pub(crate) fn new(cfg: &NrpmConfig) -> Self {
        Self {
            lambda: (!cfg.is_lpm()).then(|| T::of(cfg.lambda())),
        }
    }

    #[inline]
    pub(crate) fn of(&self, lpm: T, last: T) -> T {
        match self.lambda {
            None => lpm,
            Some(lambda) => lpm * lambda + last * (T::one() - lambda),
        }
    }
}

/// [`Error::Overflow`] if a computed value is not finite, with its index.
pub(crate) fn check_overflow<'a, T: Real + 'a, D: Dimension>(
    op: &'static str,
    values: impl AsArray<'a, T, D>,
) -> Result<()> {
    let view = values.into();
    match first_non_finite(&view) {
        None => Ok(()),
        Some(flat) => Err(Error::Overflow {
            op,
            index: unravel(flat, view.shape()),
        }),
    }
}

/// The gradients shared by both paths: `∂/∂bias = Σ_b grad_output` and
/// `∂/∂λ = Σ grad_output ⊙ (z⁰ − zᴷ)` (0 when the output is the LPM sum).
pub(crate) fn bias_and_lambda_grads<T: Real>(
    iterates: &Iterates<T>,
    grad_output: &ArrayView2<T>,
) -> (Array1<T>, T) {
    let cfg = &iterates.cfg;
    let bias = grad_output.sum_axis(Axis(0));
    let lambda = if cfg.is_lpm() {
        T::zero()
    } else {
        (&iterates.lpm() - &iterates.last())
            .iter()
            .zip(grad_output.iter())
            .map(|(&dz, &g)| dz * g)
            .sum()
    };
    (bias, lambda)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    /// Records keep `exact_lad`: `true` round-trips, `false` is left out, so records written
    /// before the field existed read back unchanged.
    #[test]
    fn serde_keeps_exact_lad_and_leaves_out_false() {
        let lad = NrpmConfig::builder()
            .norm(Norm::L1)
            .lambda(0.5)
            .exact_lad(true)
            .build()
            .unwrap();
        let text = serde_json::to_string(&lad).unwrap();
        assert!(text.contains("\"exact_lad\":true"), "{text}");
        assert_eq!(serde_json::from_str::<NrpmConfig>(&text).unwrap(), lad);
        let plain = NrpmConfig::builder()
            .norm(Norm::L1)
            .lambda(0.5)
            .build()
            .unwrap();
        let text = serde_json::to_string(&plain).unwrap();
        assert!(!text.contains("exact_lad"), "{text}");
        assert_eq!(serde_json::from_str::<NrpmConfig>(&text).unwrap(), plain);
    }

    /// `is_lpm` holds exactly when no IRLS step runs: norm `Lpm` (whatever K), or K = 0
    /// without the exact LAD limit. Then the output is the LPM sum bit for bit whatever λ, no
    /// robust iterate is saved, and ∂λ is exactly 0.
    #[test]
    fn lpm_configurations_run_no_irls_and_ignore_lambda() {
        let cfg = |norm, k, exact_lad| {
            let b = NrpmConfig::builder().norm(norm).k(k).lambda(0.3);
            b.exact_lad(exact_lad).build().unwrap()
        };
        let x = Array2::from_shape_fn((3, 7), |(i, j)| ((i * 7 + j) as f64 * 0.37).sin());
        let w = Array2::from_shape_fn((2, 7), |(o, j)| ((o * 7 + j) as f64 * 1.3).cos());
        let g = Array2::from_elem((3, 2), 1.0);
        for (cfg, is_lpm) in [
            (cfg(Norm::Lpm, 3, false), true),
            (cfg(Norm::L1, 0, false), true),
            (cfg(Norm::L1, 0, true), false),
            (cfg(Norm::L1, 3, false), false),
        ] {
            assert_eq!(cfg.is_lpm(), is_lpm, "{cfg}");
            assert_eq!(cfg.steps(), if is_lpm { 0 } else { cfg.k() }, "{cfg}");
            for exec in [Exec::Reference, Exec::Fused] {
                let (y, saved) = forward_with(exec, x.view(), w.view(), None, &cfg).unwrap();
                assert_eq!(saved.config(), &cfg);
                let grads = backward_with(exec, x.view(), w.view(), &saved, g.view()).unwrap();
                let (lpm, _) =
                    forward_with(exec, x.view(), w.view(), None, &NrpmConfig::lpm()).unwrap();
                if is_lpm {
                    assert_eq!(y, lpm, "{cfg} {exec:?}");
                    assert_eq!(grads.lambda, 0.0, "{cfg} {exec:?}");
                } else {
                    assert_ne!(y, lpm, "{cfg} {exec:?}");
                }
            }
        }
    }

    /// The CPU opens as `cpu`; without the `cuda` feature every CUDA device is refused with
    /// [`Error::NoCuda`] (a build with it is tested in tests/cuda_linear.rs). Device names
    /// parse case-insensitively and print back as they parse.
    #[test]
    fn device_open_names_the_cpu_and_refuses_cuda_without_the_feature() {
        assert_eq!(Device::Cpu.open().unwrap(), "cpu");
        #[cfg(not(feature = "cuda"))]
        assert!(matches!(Device::Cuda(0).open(), Err(Error::NoCuda(_))));
        let names = [
            ("cpu", Device::Cpu),
            ("CUDA", Device::Cuda(0)),
            ("cuda:3", Device::Cuda(3)),
        ];
        for (name, device) in names {
            assert_eq!(name.parse::<Device>().unwrap(), device);
            assert_eq!(device.to_string().parse::<Device>().unwrap(), device);
        }
        assert_eq!(Device::Cuda(3).to_string(), "cuda:3");
        assert_eq!(Device::Cpu.to_string(), "cpu");
        for bad in ["gpu", "cuda:", "cuda:x", ""] {
            assert!(
                matches!(bad.parse::<Device>(), Err(Error::UnknownName { .. })),
                "{bad}"
            );
        }
    }

    /// The text form names every field that is not implied (groups only above 1, exact_lad
    /// only when set) and parses back to the same configuration.
    #[test]
    fn display_prints_what_from_str_reads_back() {
        let base = NrpmConfig::builder()
            .norm(Norm::Huber { delta: 0.5 })
            .k(3)
            .eps(0.01)
            .lambda(0.7);
        let one = base.build().unwrap();
        let grouped = base.groups(2).build().unwrap();
        let lad = NrpmConfig::builder().exact_lad(true).build().unwrap();
        let hm = Norm::Hm {
            gamma: 8.0,
            delta: 4.0,
        };
        let hm = NrpmConfig::builder().norm(hm).k(2).eps(0.5).lambda(0.0);
        let hm = hm.build().unwrap();
        let cases = [
            (&one, "huber(delta=0.5), k=3, eps=0.01, lambda=0.7"),
            (
                &grouped,
                "huber(delta=0.5), k=3, eps=0.01, lambda=0.7, groups=2",
            ),
            // The comma inside the norm's parentheses does not end the norm.
            (&hm, "hm(gamma=8,delta=4), k=2, eps=0.5, lambda=0"),
        ];
        for (cfg, text) in cases {
            assert_eq!(cfg.to_string(), text);
            assert_eq!(text.parse::<NrpmConfig>().unwrap(), *cfg);
        }
        assert!(lad.to_string().ends_with(", exact_lad"), "{lad}");
        assert_eq!(lad.to_string().parse::<NrpmConfig>().unwrap(), lad);
    }

    /// The blocked scan finds the first value that is not finite wherever it lies (first,
    /// last, at and across block edges, several of them), in contiguous and in transposed
    /// views, exactly where a value-by-value scan does.
    #[test]
    fn first_non_finite_matches_a_plain_scan() {
        let plain = |v: &ndarray::ArrayView3<f32>| v.iter().position(|x| !x.is_finite());
        let mut a = Array3::from_shape_fn((3, 7, 61), |(i, j, k)| (i + j * k) as f32 * 0.5);
        let len = a.len();
        assert_eq!(first_non_finite(&a.view()), None);
        for &(at, bad) in &[
            (0, f32::NAN),
            (511, f32::INFINITY),
            (512, f32::NEG_INFINITY),
            (513, f32::NAN),
            (len - 1, f32::INFINITY),
        ] {
            let mut b = a.clone();
            b.as_slice_mut().unwrap()[at] = bad;
            b.as_slice_mut().unwrap()[len - 1] = f32::NAN;
            assert_eq!(first_non_finite(&b.view()), Some(at));
            let t = b.view().reversed_axes();
            assert_eq!(first_non_finite(&t), plain(&t));
        }
        a[[2, 6, 60]] = f32::NAN;
        assert_eq!(first_non_finite(&a.view()), Some(len - 1));
    }
}
