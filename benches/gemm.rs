//! The LPM matrix products (GEMM) side by side, in one run: ndarray's `dot` (matrixmultiply,
//! with `matrixmultiply-threading`), `nrpm::matmul::product` (the `gemm` crate; the fused path's
//! `W̄ = ȳᵀ·x`) on rayon's pool and on a one-thread pool, `nrpm::matmul::rowwise_product`
//! (matrixmultiply called directly, batch-invariant; the fused path's `z⁰ = x·Wᵀ`
//! and `x̄ = ȳ·W`) and, with the cargo feature `blas`, OpenBLAS through CBLAS (system package
//! `libopenblas-dev`).
//!
//! Products (f32 and f64, every backend allocates its output, as the fused path does):
//! - `z0_b{B}_{D}x{O}`: the forward `z⁰ = x·Wᵀ`, `x [B, D]`, `W [O, D]`, at the MLP's layers
//!   784 → 256 → 64 → 10 with B = 128 and 1000;
//! - `xbar_…`, `wbar_…`: the LPM backward `x̄ = ȳ·W` and `W̄ = ȳᵀ·x` at B 128, 784 → 256;
//! - `lenet_conv1_b128`, `lenet_conv2_b128`: LeNet's unfolded convolutions, patches
//!   `[B·576, 25]·Wᵀ [25, 10]` and `[B·64, 250]·Wᵀ [250, 20]`.
//!
//! Throughput counts multiply-adds (M·N·K). After the run a table gives each backend's
//! median time and its ratio to ndarray, and to PyTorch when `NRPM_TORCH_GEMM` names the JSON
//! file benches/gemm_torch.py wrote (same shapes, same machine).
//!
//! Run: `cargo bench --bench gemm [--features blas]` (`NRPM_BENCH_QUICK=1`: a smoke run).

mod common;

use std::hint::black_box;
use std::path::Path;

use common::{criterion, criterion_dir, estimate_ns, uniform};
use criterion::{Criterion, Throughput};
use ndarray::Array2;
use nrpm::real::Real;
use rand::rngs::StdRng;
use rand::SeedableRng;

#[cfg(feature = "blas")]
extern crate blas_src;

/// One product `A [M, K] · B [K, N]`.
struct Product {
    /// Group name without the dtype (`z0_b128_784x256`).
    label: String,
    /// `A`, and `B` stored as the fused path holds it (`Wᵀ` is a transposed view of W).
    a: Array2<f32>,
    b: Array2<f32>,
    /// Whether `b` is used transposed.
    b_transposed: bool,
}

impl Product {
    /// `x [rows, d] · Wᵀ`, `W [o, d]`.
    fn x_wt(label: String, rows: usize, d: usize, o: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let a = uniform((rows, d), 1.0, &mut rng);
        let b = uniform((o, d), (1.0 / d as f32).sqrt(), &mut rng);
        Self {
            label,
            a,
            b,
            b_transposed: true,
        }
    }

    /// Multiply-adds.
    fn elements(&self) -> u64 {
        let (m, k) = self.a.dim();
        let n = if self.b_transposed {
            self.b.nrows()
        } else {
            self.b.ncols()
        };
        (m * n * k) as u64
    }
}

/// The products of the module doc.
fn products() -> Vec<Product> {
    let mut out = Vec::new();
    for batch in [128, 1000] {
        for (d, o) in [(784, 256), (256, 64), (64, 10)] {
            out.push(Product::x_wt(
                format!("z0_b{batch}_{d}x{o}"),
                batch,
                d,
                o,
                42,
            ));
        }
    }
    let mut rng = StdRng::seed_from_u64(43);
    let (b, d, o) = (128, 784, 256);
    let x = uniform((b, d), 1.0, &mut rng);
    let w = uniform((o, d), (1.0 / d as f32).sqrt(), &mut rng);
    let gy = uniform((b, o), 1.0, &mut rng);
    let label = |what| format!("{what}_b{b}_{d}x{o}");
    out.push(Product {
        label: label("xbar"),
        a: gy.clone(),
        b: w,
        b_transposed: false,
    });
    out.push(Product {
        label: label("wbar"),
        a: gy.t().to_owned(),
        b: x,
        b_transposed: false,
    });
    out.push(Product::x_wt(
        "lenet_conv1_b128".into(),
        128 * 576,
        25,
        10,
        44,
    ));
    out.push(Product::x_wt(
        "lenet_conv2_b128".into(),
        128 * 64,
        250,
        20,
        45,
    ));
    out
}

/// `a·b` by OpenBLAS (`cblas_?gemm`, row-major; `b` may be a transposed standard array).
#[cfg(feature = "blas")]
#[rustfmt::skip] // one CBLAS call per line: the two calls differ only in the function
fn blas_product<T: Real>(a: &ndarray::ArrayView2<T>, b: &ndarray::ArrayView2<T>) -> Array2<T> {
    use cblas_sys::{CBLAS_LAYOUT::CblasRowMajor, CBLAS_TRANSPOSE};
    use std::any::TypeId;
    let ((m, k), n) = (a.dim(), b.ncols());
    let mut c = Array2::<T>::zeros((m, n));
    let a_std = a.as_standard_layout();
    // Wᵀ (a transposed standard array) goes in as W with CblasTrans; anything else standard.
    let bt = b.t();
    let (trans_b, b_std, ldb) = if bt.is_standard_layout() {
        (CBLAS_TRANSPOSE::CblasTrans, bt.as_standard_layout(), k)
    } else {
        (CBLAS_TRANSPOSE::CblasNoTrans, b.as_standard_layout(), n)
    };
    let no = CBLAS_TRANSPOSE::CblasNoTrans;
    let (m, n, k, ldb) = (m as i32, n as i32, k as i32, ldb as i32);
    // SAFETY: row-major a (m×k, lda = k), b or bᵀ contiguous with leading dimension ldb, c
    // fresh m×n (ldc = n); the TypeId check makes the pointer casts exact.
    unsafe {
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            let (pa, pb, pc) = (a_std.as_ptr().cast(), b_std.as_ptr().cast(), c.as_mut_ptr());
            cblas_sys::cblas_sgemm(CblasRowMajor, no, trans_b, m, n, k, 1.0, pa, k, pb, ldb, 0.0, pc.cast(), n);
        } else {
            let (pa, pb, pc) = (a_std.as_ptr().cast(), b_std.as_ptr().cast(), c.as_mut_ptr());
            cblas_sys::cblas_dgemm(CblasRowMajor, no, trans_b, m, n, k, 1.0, pa, k, pb, ldb, 0.0, pc.cast(), n);
        }
    }
    c
}

/// The backends of one run, in table order.
fn backends() -> Vec<&'static str> {
    let mut names = vec!["ndarray", "gemm", "gemm_1thread", "rowwise"];
    if cfg!(feature = "blas") {
        names.push("openblas");
    }
    names
}

fn bench_product<T: Real>(c: &mut Criterion, p: &Product, cast: fn(f32) -> T) -> String {
    let a = p.a.mapv(cast);
    let b_stored = p.b.mapv(cast);
    let b = if p.b_transposed {
        b_stored.t()
    } else {
        b_stored.view()
    };
    let group = format!("gemm_{}_{}", T::DTYPE, p.label);
    let mut g = c.benchmark_group(&group);
    g.throughput(Throughput::Elements(p.elements()));
    g.bench_function("ndarray", |bch| bch.iter(|| black_box(a.dot(&b))));
    let product = || nrpm::matmul::product(&a.view(), &b).unwrap();
    g.bench_function("gemm", |bch| bch.iter(product));
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("thread pool");
    g.bench_function("gemm_1thread", |bch| {
        bch.iter(|| one_thread.install(product))
    });
    g.bench_function("rowwise", |bch| {
        bch.iter(|| nrpm::matmul::rowwise_product(&a.view(), &b).unwrap())
    });
    #[cfg(feature = "blas")]
    g.bench_function("openblas", |bch| bch.iter(|| blas_product(&a.view(), &b)));
    g.finish();
    group
}

/// PyTorch's median times (ns) from benches/gemm_torch.py's JSON, keyed by group name.
fn torch_times() -> Option<serde_json::Map<String, serde_json::Value>> {
    let path = std::env::var_os("NRPM_TORCH_GEMM")?;
    let text = std::fs::read_to_string(Path::new(&path)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median_ns"].as_object().cloned()
}

/// Prints each backend's median time, GFLOP/s (2·M·N·K per product) and the ratios
/// ndarray/backend and PyTorch/backend (> 1: the backend is faster).
fn summary(groups: &[(String, u64)]) {
    let dir = criterion_dir();
    let torch = torch_times();
    println!("\n| group | backend | median (ms) | GFLOP/s | ndarray / it | PyTorch / it |");
    println!("|---|---|---:|---:|---:|---:|");
    for (group, elements) in groups {
        let median = |id| estimate_ns(&dir, group, id, "median");
        let base = median("ndarray");
        let pt = torch.as_ref().and_then(|t| t.get(group)?.as_f64());
        let ratio = |r: Option<f64>, t: f64| r.map_or("–".into(), |r| format!("{:.2}", r / t));
        for name in backends() {
            if let Some(t) = median(name) {
                let gflops = 2.0 * *elements as f64 / t;
                let (vs_nd, vs_pt) = (ratio(base, t), ratio(pt, t));
                println!(
                    "| {group} | {name} | {:.4} | {gflops:.1} | {vs_nd} | {vs_pt} |",
                    t / 1e6
                );
            }
        }
        if let Some(t) = pt {
            let gflops = 2.0 * *elements as f64 / t;
            let vs_nd = ratio(base, t);
            println!(
                "| {group} | pytorch | {:.4} | {gflops:.1} | {vs_nd} | 1.00 |",
                t / 1e6
            );
        }
    }
}

fn main() {
    let mut c = criterion();
    let mut groups = Vec::new();
    for p in products() {
        let group = bench_product::<f32>(&mut c, &p, |v| v);
        groups.push((group, p.elements()));
        let group = bench_product::<f64>(&mut c, &p, f64::from);
        groups.push((group, p.elements()));
    }
    c.final_summary();
    summary(&groups);
}
