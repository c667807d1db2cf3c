//! Operator norms of weight matrices: the Lipschitz constants of LPM (plain linear) layers.
//!
//! ```text
//! y = W·x + b,  W [O, D]:   ‖y − y'‖₂ ≤ ‖W‖₂·‖x − x'‖₂,   ‖y − y'‖∞ ≤ ‖W‖∞·‖x − x'‖∞
//! ‖W‖₂ = σ_max(W) = √(λ_max(WᵀW))           largest singular value
//! ‖W‖∞ = max_o Σ_d |W[o, d]|                 largest absolute row sum
//! ```
//!
//! A conv weight `[O, C, kh, kw]` is read as the unfolded matrix `[O, C·kh·kw]` (PyTorch's
//! `weight.view(O, -1)`, the layout `F.unfold` patches use): its norms are those of the
//! per-patch map `patch ↦ W·patch`, not of the convolution over a whole image, which also
//! depends on stride and padding (overlapping patches can raise ‖·‖₂ by up to
//! `⌈kh/stride⌉·⌈kw/stride⌉` in the square root).
//!
//! ‖W‖₂ comes from LAPACK's SVD (exact to rounding) when nrpm is built with the `linalg`
//! feature, and otherwise from a deterministic power iteration on `WᵀW` stopped when two
//! successive estimates agree to a relative [`POWER_TOL`]; [`SpectralNorm::method`] says which.

use ndarray::{Array1, ArrayView2, Ix2};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::nrpm;
use crate::tensor_file::{Tensor, TensorFile};

/// Relative tolerance of the power iteration: it stops when `|σ_k − σ_{k−1}| ≤ tol·σ_k`.
pub const POWER_TOL: f64 = 1e-12;
/// Iteration cap of the power iteration.
pub const POWER_MAX_ITER: usize = 100_000;
/// Seed of the power iteration's start vector (fixed: same matrix → same bits).
pub const POWER_SEED: u64 = 0x6e72_706d;

/// How a spectral norm was computed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SpectralMethod {
    /// LAPACK singular values through `ndarray-linalg` (feature `linalg`).
    Svd,
    /// Power iteration on `WᵀW`.
    PowerIteration {
        /// The relative stopping tolerance.
        tol: f64,
        /// Iterations run.
        iterations: usize,
        /// `false` if it stopped at the iteration cap instead of the tolerance.
        converged: bool,
    },
}

/// `‖W‖₂` and how it was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SpectralNorm {
    /// The largest singular value.
    pub value: f64,
    /// SVD or power iteration.
    pub method: SpectralMethod,
}

/// `‖W‖₂`: by SVD with the `linalg` feature, else by [`spectral_norm_power`] with
/// [`POWER_TOL`] and [`POWER_MAX_ITER`]. 0 for an empty matrix.
///
/// # Errors
/// [`Error::NonFinite`] on NaN or ±Inf; [`Error::Config`] if LAPACK fails.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// let w = ndarray::array![[3.0, 0.0], [0.0, -4.0]];
/// assert!((nrpm::robust::spectral_norm(w.view())?.value - 4.0).abs() < 1e-9);
/// # Ok(()) }
/// ```
pub fn spectral_norm(w: ArrayView2<f64>) -> Result<SpectralNorm> {
    if cfg!(feature = "linalg") {
        Ok(SpectralNorm {
            value: spectral_norm_svd(w)?,
            method: SpectralMethod::Svd,
        })
    } else {
        spectral_norm_power(w, POWER_TOL, POWER_MAX_ITER)
    }
}

/// `‖W‖₂` as the largest singular value from LAPACK (`ndarray-linalg`'s SVD). 0 for an empty
/// matrix.
///
/// # Errors
/// [`Error::FeatureMissing`] without the `linalg` feature; [`Error::NonFinite`] on NaN or ±Inf;
/// [`Error::Config`] if LAPACK fails.
///
/// # Example
/// ```
/// let w = ndarray::array![[0.0, 2.0], [-5.0, 0.0]];
/// match nrpm::robust::spectral_norm_svd(w.view()) {
///     Ok(sigma) => assert!((sigma - 5.0).abs() < 1e-12),
///     Err(e) => assert!(matches!(e, nrpm::Error::FeatureMissing { .. })),
/// }
/// ```
pub fn spectral_norm_svd(w: ArrayView2<f64>) -> Result<f64> {
    nrpm::check_finite("weight matrix", &w)?;
    if w.is_empty() {
        return Ok(0.0);
    }
    #[cfg(feature = "linalg")]
    let value = super::svd::largest_singular_value(w);
    #[cfg(not(feature = "linalg"))]
    let value = Err(Error::FeatureMissing {
        what: "the exact spectral norm (SVD)",
        feature: "linalg",
    });
    value
}

/// `‖W‖₂` by power iteration: `v ← WᵀW·v / ‖WᵀW·v‖`, `σ_k = ‖W·v_k‖` (a lower bound that
/// increases to σ_max), from a fixed pseudo-random start (seed [`POWER_SEED`]), until
/// `|σ_k − σ_{k−1}| ≤ tol·σ_k` or `max_iter` iterations. The error after stopping is about
/// `tol / (1 − (σ₂/σ₁)²)` relative. 0 for an empty or all-zero matrix.
///
/// # Errors
/// [`Error::NonFinite`] on NaN or ±Inf; [`Error::Config`] if `tol` is not finite and > 0 or
/// `max_iter = 0`.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// let w = ndarray::array![[1.0, -1.0]]; // ‖W‖₂ = √2
/// let s = nrpm::robust::spectral_norm_power(w.view(), 1e-12, 1000)?;
/// assert!((s.value - 2f64.sqrt()).abs() < 1e-12);
/// # Ok(()) }
/// ```
pub fn spectral_norm_power(w: ArrayView2<f64>, tol: f64, max_iter: usize) -> Result<SpectralNorm> {
    nrpm::check_finite("weight matrix", &w)?;
    if !(tol.is_finite() && tol > 0.0) {
        return Err(Error::config(
            "power tolerance",
            tol,
            "must be finite and > 0",
        ));
    }
    if max_iter == 0 {
        return Err(Error::config(
            "power iterations",
            max_iter,
            "must be at least 1",
        ));
    }
    let mut rng = StdRng::seed_from_u64(POWER_SEED);
    let mut v: Array1<f64> = Array1::from_shape_fn(w.ncols(), |_| StandardNormal.sample(&mut rng));
    let mut sigma = 0.0;
    for iteration in 1..=max_iter {
        let norm_v = v.dot(&v).sqrt();
        if norm_v == 0.0 {
            break; // all-zero matrix (or an empty one): ‖W‖₂ = 0
        }
        v /= norm_v;
        let wv = w.dot(&v);
        let next = wv.dot(&wv).sqrt();
        let done = (next - sigma).abs() <= tol * next;
        sigma = next;
        if done {
            return Ok(power_result(sigma, tol, iteration, true));
        }
        v = w.t().dot(&wv);
    }
    let converged = sigma == 0.0;
    Ok(power_result(sigma, tol, max_iter, converged))
}

fn power_result(value: f64, tol: f64, iterations: usize, converged: bool) -> SpectralNorm {
    SpectralNorm {
        value,
        method: SpectralMethod::PowerIteration {
            tol,
            iterations,
            converged,
        },
    }
}

/// `‖W‖∞ = max_o Σ_d |W[o, d]|`, the ℓ∞ → ℓ∞ operator norm (0 for an empty matrix).
///
/// # Errors
/// [`Error::NonFinite`] on NaN or ±Inf.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// let w = ndarray::array![[1.0, -2.0], [3.0, 0.5]];
/// assert_eq!(nrpm::robust::inf_norm(w.view())?, 3.5);
/// # Ok(()) }
/// ```
pub fn inf_norm(w: ArrayView2<f64>) -> Result<f64> {
    nrpm::check_finite("weight matrix", &w)?;
    Ok(w.rows()
        .into_iter()
        .map(|row| row.iter().map(|v| v.abs()).sum::<f64>())
        .fold(0.0, f64::max))
}

/// The operator norms of one weight tensor of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerNorms {
    /// The tensor's key (e.g. `fc1.weight`).
    pub name: String,
    /// Its stored shape (`[O, D]` or `[O, C, kh, kw]`).
    pub shape: Vec<usize>,
    /// The matrix the norms are of: `[O, D]`, or `[O, C·kh·kw]` for a conv weight.
    pub matrix: [usize; 2],
    /// `‖W‖₂`, with its method.
    pub spectral: SpectralNorm,
    /// `‖W‖∞`.
    pub inf: f64,
}

/// [`spectral_norm`] and [`inf_norm`] of every floating-point tensor of rank 2 (linear weights)
/// or rank 4 (conv weights, unfolded to `[O, C·kh·kw]`) in `file`, in key order. Tensors of
/// other ranks (biases, BatchNorm parameters, λ) are skipped.
///
/// # Errors
/// [`Error::Format`] if the file has no such tensor or one holds NaN/±Inf; LAPACK failures as
/// [`spectral_norm`].
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use ndarray::{ArrayD, IxDyn};
/// let mut file = nrpm::tensor_file::TensorFile::new("in-memory.safetensors");
/// let w = ArrayD::from_shape_vec(IxDyn(&[2, 1, 1, 2]), vec![1.0f32, 2.0, -3.0, 0.0]).unwrap();
/// file.insert("conv.weight", w); // unfolded to [[1, 2], [−3, 0]]
/// file.insert("conv.bias", ArrayD::from_elem(IxDyn(&[2]), 0.0f32)); // skipped
/// let norms = nrpm::robust::layer_norms(&file)?;
/// assert_eq!((norms.len(), norms[0].matrix, norms[0].inf), (1, [2, 2], 3.0));
/// # Ok(()) }
/// ```
pub fn layer_norms(file: &TensorFile) -> Result<Vec<LayerNorms>> {
    let out = file
        .tensors
        .iter()
        .filter(|(_, t)| is_weight_matrix(t))
        .map(|(name, t)| layer_entry(file, name, t.shape()))
        .collect::<Result<Vec<_>>>()?;
    if out.is_empty() {
        return Err(Error::format(
            &file.path,
            "no 2-D (linear) or 4-D (conv) floating-point weight tensor to analyse",
        ));
    }
    Ok(out)
}

fn is_weight_matrix(t: &Tensor) -> bool {
    !matches!(t, Tensor::I64(_)) && matches!(t.shape().len(), 2 | 4)
}

fn layer_entry(file: &TensorFile, name: &str, shape: &[usize]) -> Result<LayerNorms> {
    let rows = shape[0];
    let cols = shape[1..].iter().product();
    let matrix = file
        .array::<f64>(name, None)?
        .into_shape_with_order((rows, cols))
        .map_err(|e| Error::format(&file.path, format!("tensor '{name}': {e}")))?
        .into_dimensionality::<Ix2>()
        .expect("reshaped to 2-D");
    Ok(LayerNorms {
        name: name.to_string(),
        shape: shape.to_vec(),
        matrix: [rows, cols],
        spectral: spectral_norm(matrix.view())?,
        inf: inf_norm(matrix.view())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2, ArrayD, IxDyn};

    /// The stopping rule is relative (|σₖ − σₖ₋₁| ≤ tol·σₖ): scaling W scales σ and leaves
    /// the iterations unchanged, for tiny and huge scales alike.
    #[test]
    fn power_iteration_is_scale_equivariant() {
        let w = array![[2.0, 0.5], [0.0, 1.0]];
        let run = |scale: f64| spectral_norm_power((&w * scale).view(), 1e-10, 1000).unwrap();
        let one = run(1.0);
        for scale in [1e-6, 1e6] {
            let s = run(scale);
            assert_eq!(s.method, one.method, "scale {scale}");
            assert!((s.value / scale - one.value).abs() <= 1e-12 * one.value);
        }
        assert!(matches!(
            one.method,
            SpectralMethod::PowerIteration { converged: true, iterations, .. } if iterations > 3
        ));
    }

    /// Stopped by the iteration cap, power iteration says it did not converge, except on the
    /// zero matrix, whose norm 0 is exact at once.
    #[test]
    fn power_iteration_reports_the_cap() {
        let w = array![[2.0, 0.5], [0.0, 1.0]];
        let capped = spectral_norm_power(w.view(), 1e-10, 1).unwrap();
        let want = SpectralMethod::PowerIteration {
            tol: 1e-10,
            iterations: 1,
            converged: false,
        };
        assert_eq!(capped.method, want);
        let zero = spectral_norm_power(Array2::zeros((2, 3)).view(), 1e-10, 1).unwrap();
        assert_eq!(zero.value, 0.0);
        assert!(matches!(
            zero.method,
            SpectralMethod::PowerIteration {
                converged: true,
                ..
            }
        ));
    }

    fn power(w: &Array2<f64>) -> f64 {
        let s = spectral_norm_power(w.view(), POWER_TOL, POWER_MAX_ITER).unwrap();
        assert!(matches!(
            s.method,
            SpectralMethod::PowerIteration {
                converged: true,
                ..
            }
        ));
        s.value
    }

    /// Matrices with known norms: (W, ‖W‖₂, ‖W‖∞).
    fn known() -> Vec<(Array2<f64>, f64, f64)> {
        vec![
            (array![[3.0, 0.0], [0.0, -2.0]], 3.0, 3.0),
            // WᵀW = [[10, 14], [14, 20]]: λ_max = (30 + √884)/2
            (
                array![[1.0, 2.0], [3.0, 4.0]],
                ((30.0 + 884f64.sqrt()) / 2.0).sqrt(),
                7.0,
            ),
            // rank one u·vᵀ: ‖u‖·‖v‖ = √(1 + 4)·√(9 + 16 + 0)
            (
                array![[3.0, 4.0, 0.0], [6.0, 8.0, 0.0]],
                5f64.sqrt() * 5.0,
                14.0,
            ),
            (array![[1.0, -1.0]], 2f64.sqrt(), 2.0),
            (Array2::zeros((3, 5)), 0.0, 0.0),
            (Array2::zeros((0, 4)), 0.0, 0.0),
        ]
    }

    #[test]
    fn power_iteration_finds_known_norms() {
        for (w, two, inf) in known() {
            assert!((power(&w) - two).abs() <= 1e-10 * two.max(1.0), "{w}");
            assert_eq!(inf_norm(w.view()).unwrap(), inf, "{w}");
        }
    }

    #[test]
    fn default_method_finds_known_norms() {
        for (w, two, _) in known() {
            let s = spectral_norm(w.view()).unwrap();
            assert!((s.value - two).abs() <= 1e-10 * two.max(1.0), "{w}");
            let svd = matches!(s.method, SpectralMethod::Svd);
            assert_eq!(svd, cfg!(feature = "linalg"), "{:?}", s.method);
        }
    }

    #[test]
    fn svd_needs_the_linalg_feature_or_agrees_with_power_iteration() {
        let mut rng = StdRng::seed_from_u64(11);
        for (rows, cols) in [(1, 1), (3, 9), (30, 50), (64, 20), (10, 250)] {
            let w = Array2::from_shape_fn((rows, cols), |_| StandardNormal.sample(&mut rng));
            match (spectral_norm_svd(w.view()), cfg!(feature = "linalg")) {
                (Ok(exact), true) => {
                    let p = power(&w);
                    // Stopping at a 1e−12 change leaves ≈ 1e−12/(1 − (σ₂/σ₁)²) relative error.
                    assert!(
                        (p - exact).abs() <= 1e-9 * exact,
                        "{rows}x{cols}: {p} vs {exact}"
                    );
                }
                (Err(e), false) => {
                    assert!(matches!(
                        e,
                        Error::FeatureMissing {
                            feature: "linalg",
                            ..
                        }
                    ));
                }
                (other, linalg) => panic!("linalg = {linalg}: {other:?}"),
            }
        }
    }

    #[test]
    fn power_iteration_is_deterministic() {
        let w = Array2::from_shape_fn((7, 5), |(i, j)| ((i * 5 + j) as f64).sin());
        let a = spectral_norm_power(w.view(), 1e-12, 10_000).unwrap();
        assert_eq!(a, spectral_norm_power(w.view(), 1e-12, 10_000).unwrap());
    }

    #[test]
    fn norms_reject_non_finite_and_bad_settings() {
        let w = array![[1.0, f64::NAN]];
        assert!(matches!(inf_norm(w.view()), Err(Error::NonFinite { .. })));
        assert!(matches!(
            spectral_norm(w.view()),
            Err(Error::NonFinite { .. })
        ));
        let ok = array![[1.0]];
        assert!(spectral_norm_power(ok.view(), 0.0, 10).is_err());
        assert!(spectral_norm_power(ok.view(), 1e-9, 0).is_err());
    }

    #[test]
    fn layer_norms_unfold_conv_weights_and_skip_vectors() {
        let mut f = TensorFile::new("mem.safetensors");
        // conv [O=2, C=1, 2, 2]: orthogonal rows (1, 1, 1, 1), (1, −1, 1, −1) of length 2
        // → ‖·‖₂ = 2, ‖·‖∞ = 4.
        let conv = vec![1.0f32, 1.0, 1.0, 1.0, 1.0, -1.0, 1.0, -1.0];
        f.insert(
            "conv.weight",
            ArrayD::from_shape_vec(IxDyn(&[2, 1, 2, 2]), conv).unwrap(),
        );
        f.insert("conv.bias", ArrayD::from_elem(IxDyn(&[2]), 5.0f32));
        f.insert(
            "fc.weight",
            ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![3.0f64, -4.0]).unwrap(),
        );
        let norms = layer_norms(&f).unwrap();
        let names: Vec<_> = norms.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["conv.weight", "fc.weight"]);
        assert_eq!(norms[0].matrix, [2, 4]);
        assert_eq!(norms[0].inf, 4.0);
        assert!((norms[0].spectral.value - 2.0).abs() < 1e-10);
        assert!((norms[1].spectral.value - 5.0).abs() < 1e-10);
        assert_eq!(norms[1].inf, 7.0);
        f.tensors.retain(|k, _| k == "conv.bias");
        assert!(matches!(layer_norms(&f), Err(Error::Format { .. })));
    }
}
