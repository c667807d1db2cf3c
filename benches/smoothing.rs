//! Randomized smoothing throughput (criterion), in noisy samples per second, for the MNIST MLP
//! (mlp3, 784 → … → 10, f32): the plain forward pass of a batch of 1000 images against
//! `smoothing::sample_counts` of 8000 noisy copies in batches of 1000 (noise drawn per copy
//! from its seeded generator, then the same forward pass; the batches run in parallel, as in
//! a CERTIFY of n = 100 000), LPM and NRPM (L1, K = 1, λ = 0.7, fused operator).
//! Weights: the authors' checkpoint when `../shared/models/mlp3_mnist.safetensors` exists,
//! else seeded initial weights (throughput does not depend on the values).
//!
//! Run: `cargo bench --bench smoothing` (`NRPM_BENCH_QUICK=1` for a short smoke run).

mod common;

use std::hint::black_box;

use common::{criterion, criterion_dir, estimate_ns, uniform};
use criterion::{BenchmarkId, Criterion, Throughput};
use ndarray::{Array3, Array4};
use nrpm::certify::smoothing::{sample_counts, Phase, SmoothingConfig};
use nrpm::models::{LayerSelection, Model, ModelSpec};
use nrpm::nn::LambdaParam;
use nrpm::NrpmConfig;
use rand::rngs::StdRng;
use rand::SeedableRng;

const BATCH: usize = 1000;
/// Noisy copies per `sample_counts` call: eight batches.
const COPIES: usize = 8 * BATCH;
const GROUP: &str = "smoothing_mlp3";

/// The MLP, LPM or reprogrammed.
fn model(nrpm: bool) -> Model<f32> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/models/mlp3_mnist.safetensors");
    let mut m = Model::<f32>::new(ModelSpec::from_name("mlp3", 1, 28).unwrap());
    m.init(0);
    if path.exists() {
        m.load_file(&path, false).unwrap();
    }
    if nrpm {
        let cfg = NrpmConfig::builder().k(1).lambda(0.7).build().unwrap();
        m.reprogram(&LayerSelection::Default, cfg, LambdaParam::Raw)
            .unwrap();
    }
    m
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let image: Array3<f32> = uniform((1, 28, 28), 0.5, &mut rng).mapv(|v| v + 0.5);
    let batch: Array4<f32> = uniform((BATCH, 1, 28, 28), 0.5, &mut rng).mapv(|v| v + 0.5);
    let cfg = SmoothingConfig {
        n: COPIES,
        batch: BATCH,
        ..SmoothingConfig::default()
    };
    let mut g = c.benchmark_group(GROUP);
    for (name, nrpm) in [("lpm", false), ("nrpm_l1_k1", true)] {
        let m = model(nrpm);
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| black_box(m.predict(batch.view()).unwrap()))
        });
        g.throughput(Throughput::Elements(COPIES as u64));
        g.bench_function(BenchmarkId::new("smoothing", name), |b| {
            b.iter(|| {
                black_box(
                    sample_counts(&m, image.view(), 0, Phase::Estimation, COPIES, &cfg).unwrap(),
                )
            })
        });
    }
    g.finish();
}

/// Samples per second from criterion's estimates, and smoothing / plain forward.
fn summary() {
    let dir = criterion_dir();
    println!("\n| model | plain forward (samples/s) | smoothing (noisy samples/s) | ratio |");
    println!("|---|---:|---:|---:|");
    for name in ["lpm", "nrpm_l1_k1"] {
        let per_s = |what: &str, samples: usize| {
            estimate_ns(&dir, GROUP, &format!("{what}/{name}"), "mean")
                .map(|ns| samples as f64 / (ns * 1e-9))
        };
        if let (Some(f), Some(s)) = (per_s("forward", BATCH), per_s("smoothing", COPIES)) {
            println!("| {name} | {f:.0} | {s:.0} | {:.2} |", s / f);
        }
    }
}

fn main() {
    let mut c = criterion();
    bench(&mut c);
    c.final_summary();
    summary();
}
