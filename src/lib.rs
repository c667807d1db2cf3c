//! # nrpm — nonlinear robust pattern matching
//!
//! Robustness reprogramming (Hou, Torkamani, Krim, Liu, ICLR 2025, arXiv 2410.04577): replace
//! the linear pattern match `z = Σ_d a_d·x_d` of a trained layer by a robust, median-like
//! estimate computed with K IRLS steps, mixed with the linear one by λ:
//!
//! ```text
//! t_d = a_d·x_d,  z⁰ = Σ_d t_d,  zᵏ⁺¹ = D·Σ_d w(|t_d − zᵏ/D|)·t_d / Σ_d w(|t_d − zᵏ/D|)
//! y   = λ·z⁰ + (1 − λ)·zᴷ + bias                    (L1: w(r) = 1/(r + ε))
//! ```
//!
//! With `groups = N > 1` the D terms split into N equal contiguous chunks, each iterated on its
//! own with D/N, and the chunk outputs add up (the authors' "localized" variant). Layouts are
//! PyTorch's: `x [B, D]`, `weight [O, D]`, `bias [O]`, `y [B, O]`; NCHW images and
//! `[O, C, kh, kw]` kernels for convolutions. Maths and proofs: `proofs/README.md`.
//!
//! ## Module map
//!
//! ```text
//! the operator (src/nrpm/, re-exported here)
//!   forward, backward, *_with(Exec)   linear NRPM on the fused path (or a chosen one)
//!   NrpmConfig (+ builder), Norm       K, ε, λ, groups; the robust weights w(r)
//!   Iterates                           what forward saves for backward (checked there)
//!   conv                               conv2d through unfold, forward/backward(_with)
//!   reference, fused, cuda             the oracle, the production CPU path, the GPU path
//!   lad                                the exact K → ∞ limit D·median
//!   matmul                             the LPM GEMMs: deterministic, parallel, pure Rust
//! error      Error, the one error enum; Result
//! real       Real: f32 and f64
//! nn         layers with explicit backward (Linear, Conv2d with LPM or NRPM matching,
//!            BatchNorm2d, pooling, dropout, residual blocks, loss); Module for your own
//!            layers; Parameters for optimisers
//! models     MLPs, LeNet, ResNets with PyTorch key names; Model::custom for your layers;
//!            checkpoints that rebuild themselves; reprogramming; Classifier
//! data       MNIST-like IDX and CIFAR-10 readers, the shipped MNIST subset, seeded batches
//! attacks    FGSM, PGD (L∞, L2), the authors' one-step L2/L1/L0 attacks, APGD, Square,
//!            FAB-T, AutoAttack (per-image records), gradient-masking checks, robust accuracy
//! robust     influence curves, breakdown points, the IRLS objective L_ε, operator norms
//! train      paradigms (fixed λ, learn λ, fine-tune) and scratch training: SGD over any
//!            Parameters, adversarial losses, checkpoints with bit-exact resume
//! report     confidence intervals, Markdown tables, SVG charts
//! progress   progress callbacks (library loops never print)
//! seeds      seeds derived per stream, epoch, batch and image (shard-invariant draws)
//! records    per-image records of long runs: shards (Slurm, Kubernetes), resume, merge
//! tensor_file  safetensors files
//! testing    (feature `testing`) proptest strategies and robustness checkers
//! ```
//!
//! The `nrpm` command (demo, eval, train, reproduce, …) is the crate's binary, behind the
//! default feature `cli`; a library user who wants none of it depends on nrpm with
//! `default-features = false` (no clap, no indicatif). `ndarray` and `rand` are re-exported,
//! so a dependent crate uses exactly the versions nrpm's types come from.
//!
//! ```
//! # fn main() -> nrpm::Result<()> {
//! use nrpm::ndarray::array;
//! let x = array![[0.2_f32, 0.4, 0.1, 9.0]];           // one corrupted input, D = 4
//! let w = array![[1.0_f32, 1.0, 1.0, 1.0]];
//! let cfg = nrpm::NrpmConfig::builder().k(3).lambda(0.0).build()?; // L1, ε = 1e-3
//! let (y, saved) = nrpm::forward(x.view(), w.view(), None, &cfg)?;
//! assert!(y[[0, 0]] < 2.0); // LPM gives 9.7
//! let grads = nrpm::backward(x.view(), w.view(), &saved, array![[1.0_f32]].view())?;
//! assert_eq!(grads.x.dim(), (1, 4));
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod attacks;
pub mod certify;
pub mod data;
pub mod error;
pub mod models;
pub mod nn;
mod nrpm;
pub mod progress;
pub mod real;
pub mod records;
pub mod report;
pub mod robust;
pub mod seeds;
pub mod tensor_file;
#[cfg(feature = "testing")]
pub mod testing;
pub mod train;

pub use crate::error::{Divergence, Error, Result};
#[cfg(feature = "cuda")]
pub use crate::nrpm::cuda;
pub use crate::nrpm::{apply, conv, fused, lad, matmul, norm, reference, simd};
pub use crate::nrpm::{
    backward, backward_with, check_finite, forward, forward_with, Device, Exec, Iterates,
    LinearGrads, Norm, NrpmConfig, NrpmConfigBuilder, DEFAULT_EPS, DEFAULT_K, FINGERPRINT_SAMPLES,
    MAX_K,
};
pub use crate::real::Real;
pub use conv::{Conv2dGeometry, ConvGrads};
/// The `ndarray` this crate's arrays come from (use it to avoid a version mismatch).
pub use ndarray;
/// The `rand` this crate's generators come from (use it to avoid a version mismatch).
pub use rand;
