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
//! Module map:
//! - [`error`]: [`Error`], the one error enum, and [`Result`];
//! - [`real`]: [`Real`], the f32/f64 scalar trait;
//! - [`nrpm`](mod@nrpm): the operator — config, norms, reference (oracle), fused (production),
//!   exact LAD limit, conv2d through unfold;
//! - [`nn`]: layers with explicit backward (Linear/Conv2d with LPM or NRPM matching,
//!   BatchNorm2d, pooling, dropout, residual blocks, cross-entropy);
//! - [`models`]: MLP, LeNet, ResNets with PyTorch key names; checkpoints; reprogramming;
//! - [`data`]: MNIST-like IDX and CIFAR-10 readers, the shipped MNIST subset, seeded batches;
//! - [`attacks`]: FGSM, PGD (L∞, L2), the authors' one-step L2/L1/L0 attacks, robust accuracy;
//! - [`robust`]: influence curves, breakdown points, the IRLS objective `L_ε`, layer
//!   operator norms (Lipschitz constants);
//! - [`train`]: the paradigms (fixed λ, learn λ, fine-tune) and training from scratch: SGD,
//!   adversarial losses, checkpoints, bit-exact resume;
//! - [`report`]: confidence intervals, Markdown tables, SVG charts;
//! - [`demo`]: `nrpm demo` (and `cargo run --release`): train an MLP on the shipped MNIST
//!   subset, reprogram it (Paradigms 1, 2), attack it, write a readable report;
//! - [`reproduce`]: the paper's experiments on the authors' checkpoints, beside the paper's
//!   numbers (`data/paper/tables.json`);
//! - [`progress`], [`tensor_file`]: progress callbacks; safetensors files;
//! - [`cli`]: the `nrpm` command.
//!
//! ```
//! # fn main() -> nrpm::Result<()> {
//! use ndarray::array;
//! let x = array![[0.2_f32, 0.4, 0.1, 9.0]];           // one corrupted input, D = 4
//! let w = array![[1.0_f32, 1.0, 1.0, 1.0]];
//! let cfg = nrpm::NrpmConfig::builder().norm(nrpm::Norm::L1).k(3).eps(1e-3).lambda(0.0).build()?;
//! let (y, iterates) = nrpm::forward(x.view(), w.view(), None, &cfg)?;
//! assert!(y[[0, 0]] < 2.0); // LPM gives 9.7
//! let grads = nrpm::backward(x.view(), w.view(), &iterates, array![[1.0_f32]].view(), &cfg)?;
//! assert_eq!(grads.x.dim(), (1, 4));
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![doc(test(attr(deny(warnings))))]

pub mod attacks;
pub mod data;
pub mod error;
pub mod models;
pub mod nn;
pub mod nrpm;
pub mod progress;
pub mod real;
pub mod report;
pub mod robust;
pub mod tensor_file;
pub mod train;

pub use crate::error::{Error, Result};
pub use crate::nrpm::conv::Conv2dGeometry;
pub use crate::nrpm::{
    backward, backward_with, forward, forward_with, Device, Exec, Grads, Iterates, Norm, NrpmConfig,
};
pub use crate::real::Real;
