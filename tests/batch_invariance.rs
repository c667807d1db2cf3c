//! Batch invariance: what the library computes for one image does not depend on the other
//! images of its batch, bit for bit. Evaluations and sharded runs rest on it: an image's
//! attack, certificate and verdict must be the same in a batch of 1, 17 or 100 and in any
//! shard (tests/attacks.rs, tests/sharding.rs check the figures; this file checks the layers
//! under them, where a difference starts).
//!
//! Row `b` of a batched result is compared with the result of the batch `x[b..b+1]` alone, and
//! with the row of a batch of another size, for:
//! - the GEMM of the fused path (`matmul::product`), at the model shapes and their tails;
//! - the fused NRPM linear forward and its input gradient x̄, on both sides of B = O (the
//!   backward changes its parallel split there) and with O not a multiple of four (the
//!   forward's runs of four outputs);
//! - the fused conv forward and backward;
//! - the authors' MNIST MLP reprogrammed with NRPM (L1, K = 3, λ = 0.7 in every layer):
//!   logits and input gradients (needs
//!   ../shared; skips with a printed reason, or fails under `NRPM_REQUIRE=shared`).
//!
//! On a CPU with AVX-512 the forward's runs of four outputs go through another summation
//! than single outputs; which outputs form a run depends only on the output index and O
//! (unit test `runs_depend_on_the_output_index_only` in src/nrpm/fused.rs), so this file
//! holds on either CPU.

mod common;

use ndarray::{s, Array2, Array4};
use nrpm::conv::{self, Conv2dGeometry};
use nrpm::{fused, matmul, Norm, NrpmConfig};
use rand::{RngExt, SeedableRng};

/// Uniform entries in (−1, 1), from `seed`.
fn uniform<D: ndarray::Dimension, Sh: ndarray::ShapeBuilder<Dim = D>>(
    shape: Sh,
    seed: u64,
) -> ndarray::Array<f32, D> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    ndarray::Array::from_shape_simple_fn(shape, || rng.random_range(-1.0_f32..1.0))
}

/// Batch sizes around GEMM tiles, the backward's switch at B = O and a typical evaluation
/// batch.
const BATCHES: [usize; 8] = [1, 2, 7, 15, 17, 50, 65, 100];

/// Asserts that `f(rows)` (a `[rows, ·]` result for the first `rows` rows of the input) has,
/// in each row, the bits of the one-row result of that row, for every batch size.
fn assert_rows_invariant(what: &str, max_rows: usize, f: impl Fn(usize, usize) -> Array2<f32>) {
    let alone: Vec<Array2<f32>> = (0..max_rows).map(|b| f(b, 1)).collect();
    for rows in BATCHES.into_iter().filter(|&r| r <= max_rows) {
        let batch = f(0, rows);
        for (b, row) in batch.outer_iter().enumerate() {
            let single = alone[b].row(0);
            let same = row
                .iter()
                .zip(single.iter())
                .all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(
                same,
                "{what}: row {b} of a batch of {rows} differs from the same row alone"
            );
        }
    }
}

#[test]
fn rowwise_product_rows_do_not_depend_on_the_batch() {
    // The LPM sums x·Wᵀ of the MNIST MLP's layers and LeNet's unfolded convolutions, and the
    // LPM backward ȳ·W.
    for (d, o) in [
        (784, 256),
        (256, 64),
        (64, 10),
        (25, 6),
        (150, 16),
        (10, 64),
    ] {
        let x = uniform((100, d), 1);
        let w = uniform((o, d), 2);
        assert_rows_invariant(&format!("x·Wᵀ, D {d}, O {o}"), 100, |b, rows| {
            matmul::rowwise_product(&x.slice(s![b..b + rows, ..]), &w.t()).unwrap()
        });
    }
}

fn config(norm: Norm, groups: usize) -> NrpmConfig {
    NrpmConfig::builder()
        .norm(norm)
        .k(3)
        .eps(1e-3)
        .lambda(0.3)
        .groups(groups)
        .build()
        .unwrap()
}

/// Forward output and input gradient (of Σ y·G for a fixed G) of the rows `b..b + rows`.
fn linear_rows(
    x: &Array2<f32>,
    w: &Array2<f32>,
    g: &Array2<f32>,
    cfg: &NrpmConfig,
    b: usize,
    rows: usize,
) -> (Array2<f32>, Array2<f32>) {
    let (x, g) = (x.slice(s![b..b + rows, ..]), g.slice(s![b..b + rows, ..]));
    let (y, saved) = fused::forward(x, w.view(), None, cfg).unwrap();
    let grads = fused::backward(x, w.view(), &saved, g).unwrap();
    (y, grads.x)
}

#[test]
fn fused_linear_rows_do_not_depend_on_the_batch() {
    for (d, o) in [(64, 10), (96, 64), (48, 13)] {
        for cfg in [config(Norm::L1, 1), config(Norm::Huber { delta: 0.2 }, 2)] {
            let x = uniform((100, d), 3);
            let w = uniform((o, d), 4);
            let g = uniform((100, o), 5);
            let what = format!("D {d}, O {o}, {cfg:?}");
            assert_rows_invariant(&format!("forward, {what}"), 100, |b, rows| {
                linear_rows(&x, &w, &g, &cfg, b, rows).0
            });
            assert_rows_invariant(&format!("x̄, {what}"), 100, |b, rows| {
                linear_rows(&x, &w, &g, &cfg, b, rows).1
            });
        }
    }
}

/// The output and the input gradient of images `b..b + n`, one flattened row per image.
fn conv_rows(
    x: &Array4<f32>,
    w: &Array4<f32>,
    cfg: &NrpmConfig,
    b: usize,
    n: usize,
) -> (Array2<f32>, Array2<f32>) {
    let geom = Conv2dGeometry::new(1, 1);
    let x = x.slice(s![b..b + n, .., .., ..]);
    let (y, saved) = conv::forward(x, w.view(), None, &geom, cfg).unwrap();
    let g = y.mapv(f32::sin);
    let grads = conv::backward(x, w.view(), &saved, g.view(), &geom).unwrap();
    let flat = |a: Array4<f32>| {
        let per = a.len() / n;
        a.into_shape_with_order((n, per)).unwrap()
    };
    (flat(y), flat(grads.x))
}

#[test]
fn fused_conv_rows_do_not_depend_on_the_batch() {
    let x = uniform((17, 3, 6, 6), 6);
    let w = uniform((5, 3, 3, 3), 7);
    let cfg = config(Norm::L1, 1);
    assert_rows_invariant("conv forward", 17, |b, n| conv_rows(&x, &w, &cfg, b, n).0);
    assert_rows_invariant("conv x̄", 17, |b, n| conv_rows(&x, &w, &cfg, b, n).1);
}

#[test]
fn model_logits_and_input_gradients_do_not_depend_on_the_batch() {
    let Some(model) = common::shared_mlp3(true) else {
        return;
    };
    let images = uniform((100, 1, 28, 28), 8).mapv(|v| 0.5 + 0.5 * v);
    let labels: Vec<usize> = (0..100).map(|i| i % 10).collect();
    let run = |b: usize, n: usize| {
        let x = images.slice(s![b..b + n, .., .., ..]);
        let (_, dx, logits) = model.loss_input_grad(x, &labels[b..b + n]).unwrap();
        let dx = dx.into_shape_with_order((n, 784)).unwrap();
        (logits, dx)
    };
    assert_rows_invariant("MLP logits", 100, |b, n| run(b, n).0);
    assert_rows_invariant("MLP input gradient", 100, |b, n| run(b, n).1);
}
