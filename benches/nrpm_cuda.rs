//! GPU benchmarks of the NRPM operator (criterion, feature `cuda`): per shape, the cuBLAS
//! sgemm of the same shape (the LPM baseline: 1 GEMM forward, 3 forward+backward), the fused
//! kernels on device-resident data (`nrpm_cuda`, kernels only), the same through the host API
//! (`nrpm_cuda_host`: copies in and out included), and a materialised `[B, O, D]` forward
//! (`materialised`, cuda/nrpm_materialised.cu) where it fits in memory. L1, ε = 1e-3, λ = 0.5.
//!
//! Shapes: the core issue's linear (B, D, O) = (128, 784, 256), (128, 256, 64) and conv
//! B = 32, C = 16, 16×16, O = 32, 3×3, padding 1 (as the linear problem on its patches,
//! [B·256, 144] × [32, 144], and end to end through `conv::forward`), K ∈ {1, 3}; plus the
//! large (B, D, O, K) = (1024, 4608, 512, 3). Throughput: term-iterations `B·O·D·K`, so
//! throughput ratios are time ratios. A table with term-iterations/s and the ratios to sgemm
//! and to the materialised forward is printed at the end (from criterion's estimates).
//!
//! Run: `cargo bench --features cuda --bench nrpm_cuda` (`NRPM_BENCH_QUICK=1`: short run;
//! `NRPM_BENCH_TILE=1|2|4`: force the tile of the tiled kernels). Without a usable device it
//! prints why and exits 0.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{criterion, criterion_dir, estimate_ns, uniform};
use criterion::{Criterion, Throughput};
use cudarc::cublas::{sys::cublasOperation_t, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaFunction, CudaSlice, LaunchConfig, PushKernelArg};
use ndarray::{Array2, Array4};
use nrpm::conv::{self, Conv2dGeometry};
use nrpm::cuda::{compile, Build, CudaNrpm, DeviceLinear};
use nrpm::{Exec, Norm, NrpmConfig};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const EPS: f64 = 1e-3;
const LAMBDA: f64 = 0.5;

/// Times `iters` runs of `f` on the device: queue them all, synchronise, read the clock.
fn gpu_time(dev: &CudaNrpm, iters: u64, mut f: impl FnMut()) -> Duration {
    dev.synchronize().unwrap();
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    dev.synchronize().unwrap();
    start.elapsed()
}

/// y[B, O] = x[B, D]·W[O, D]ᵀ (and the two GEMMs of its backward) through cuBLAS, f32
/// (cuBLAS's default math mode: no TF32).
struct Sgemm {
    blas: CudaBlas,
    x: CudaSlice<f32>,
    w: CudaSlice<f32>,
    gy: CudaSlice<f32>,
    y: CudaSlice<f32>,
    gx: CudaSlice<f32>,
    gw: CudaSlice<f32>,
    dims: (i32, i32, i32),
}

impl Sgemm {
    fn new(dev: &CudaNrpm, x: &Array2<f32>, w: &Array2<f32>, gy: &Array2<f32>) -> Option<Self> {
        // SAFETY: only tries to dlopen the library.
        if !unsafe { cudarc::cublas::sys::is_culib_present() } {
            println!("nrpm_cuda: libcublas not found: no sgemm baseline");
            return None;
        }
        let s = dev.stream();
        let (b, d) = x.dim();
        let o = w.nrows();
        Some(Self {
            blas: CudaBlas::new(s.clone()).ok()?,
            x: s.clone_htod(x.as_slice()?).ok()?,
            w: s.clone_htod(w.as_slice()?).ok()?,
            gy: s.clone_htod(gy.as_slice()?).ok()?,
            y: s.alloc_zeros(b * o).ok()?,
            gx: s.alloc_zeros(b * d).ok()?,
            gw: s.alloc_zeros(o * d).ok()?,
            dims: (b as i32, d as i32, o as i32),
        })
    }

    fn forward(&mut self) {
        let (b, d, o) = self.dims;
        let (t, n) = (
            cublasOperation_t::CUBLAS_OP_T,
            cublasOperation_t::CUBLAS_OP_N,
        );
        let cfg = |transa, transb, m, n, k, lda, ldb, ldc| GemmConfig {
            transa,
            transb,
            m,
            n,
            k,
            alpha: 1.0f32,
            lda,
            ldb,
            beta: 0.0f32,
            ldc,
        };
        // Column-major: yᵀ (O×B) = Wᵀ-as-stored(T) · xᵀ.
        // SAFETY: buffers hold B·D, O·D and B·O floats, as the dimensions say.
        unsafe {
            self.blas
                .gemm(cfg(t, n, o, b, d, d, d, o), &self.w, &self.x, &mut self.y)
        }
        .unwrap();
    }

    fn forward_backward(&mut self) {
        self.forward();
        let (b, d, o) = self.dims;
        let (t, n) = (
            cublasOperation_t::CUBLAS_OP_T,
            cublasOperation_t::CUBLAS_OP_N,
        );
        let cfg = |transa, transb, m, n, k, lda, ldb, ldc| GemmConfig {
            transa,
            transb,
            m,
            n,
            k,
            alpha: 1.0f32,
            lda,
            ldb,
            beta: 0.0f32,
            ldc,
        };
        // gx[B, D] = gy[B, O]·W[O, D]: column-major gxᵀ (D×B) = Wᵀ (D×O) · gyᵀ (O×B).
        // SAFETY: as in forward.
        unsafe {
            self.blas
                .gemm(cfg(n, n, d, b, o, d, o, d), &self.w, &self.gy, &mut self.gx)
        }
        .unwrap();
        // gw[O, D] = gyᵀ·x: column-major gwᵀ (D×O) = xᵀ (D×B) · gy (B×O).
        // SAFETY: as in forward.
        unsafe {
            self.blas
                .gemm(cfg(n, t, d, o, b, d, o, d), &self.x, &self.gy, &mut self.gw)
        }
        .unwrap();
    }
}

/// The materialised forward of cuda/nrpm_materialised.cu: t and the weights as [B, O, D].
struct Materialised {
    kernels: Vec<CudaFunction>,
    p: nrpm::cuda::NrpmParams,
    x: CudaSlice<f32>,
    w: CudaSlice<f32>,
    t: CudaSlice<f32>,
    wt: CudaSlice<f32>,
    z: CudaSlice<f32>,
}

impl Materialised {
    fn new(dev: &CudaNrpm, lin: &DeviceLinear<f32>) -> Option<Self> {
        let p = *lin.params();
        let terms = p.batch as usize * p.outputs as usize * p.terms as usize;
        let (free, _) = dev.context().mem_get_info().ok()?;
        if 2 * terms * 4 + (1 << 30) > free {
            println!(
                "nrpm_cuda: materialised B·O·D = {terms} needs {} GB, {} GB free: skipped",
                2 * terms * 4 / 1_000_000_000,
                free / 1_000_000_000
            );
            return None;
        }
        let build = Build::materialised();
        let module = dev
            .context()
            .load_module(compile(&build, None).ok()?)
            .ok()?;
        let kernels = build
            .kernels
            .iter()
            .map(|k| module.load_function(k).unwrap())
            .collect();
        let s = dev.stream();
        let outs = p.batch as usize * p.outputs as usize;
        Some(Self {
            kernels,
            p,
            x: s.clone_dtod(&lin.x).ok()?,
            w: s.clone_dtod(&lin.w).ok()?,
            t: s.alloc_zeros(terms).ok()?,
            wt: s.alloc_zeros(terms).ok()?,
            z: s.alloc_zeros(outs * (p.steps as usize + 1)).ok()?,
        })
    }

    fn forward(&mut self, dev: &CudaNrpm) {
        let s = dev.stream();
        let outs = self.p.batch as usize * self.p.outputs as usize;
        let terms = outs * self.p.terms as usize;
        let flat = LaunchConfig {
            grid_dim: (terms.div_ceil(256).min(132 * 64) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let per_warp = LaunchConfig {
            grid_dim: ((outs * 32).div_ceil(256) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut l = s.launch_builder(&self.kernels[0]);
        l.arg(&self.x).arg(&self.w).arg(&mut self.t).arg(&self.p);
        // SAFETY: nrpm_mat_terms_f32(const float* x, const float* w, float* t, NrpmParams);
        // t holds B·O·D floats; the grid-stride loop stops there.
        unsafe { l.launch(flat) }.unwrap();
        let mut z0 = self.z.slice_mut(0..outs);
        let mut l = s.launch_builder(&self.kernels[1]);
        l.arg(&self.t).arg(&mut z0).arg(&self.p);
        // SAFETY: nrpm_mat_sum_f32(const float* t, float* z, NrpmParams); one warp per
        // output, warps past B·O return.
        unsafe { l.launch(per_warp) }.unwrap();
        for k in 0..self.p.steps as usize {
            let (done, mut rest) = self.z.split_at_mut((k + 1) * outs);
            let zk = done.slice(k * outs..);
            let mut l = s.launch_builder(&self.kernels[2]);
            l.arg(&self.t).arg(&zk).arg(&mut self.wt).arg(&self.p);
            // SAFETY: nrpm_mat_weights_f32(const float* t, const float* z, float* wt,
            // NrpmParams); wt holds B·O·D floats.
            unsafe { l.launch(flat) }.unwrap();
            let mut zn = rest.slice_mut(0..outs);
            let mut l = s.launch_builder(&self.kernels[3]);
            l.arg(&self.t).arg(&self.wt).arg(&mut zn).arg(&self.p);
            // SAFETY: nrpm_mat_wsum_f32(const float* t, const float* wt, float* z,
            // NrpmParams); z holds B·O floats at this offset.
            unsafe { l.launch(per_warp) }.unwrap();
        }
    }
}

/// One linear shape: sgemm, fused kernels, host API, materialised.
fn bench_linear(
    c: &mut Criterion,
    dev: &Arc<CudaNrpm>,
    group: &str,
    (x, w, gy): (&Array2<f32>, &Array2<f32>, &Array2<f32>),
    k: usize,
) {
    let (b, d) = x.dim();
    let o = w.nrows();
    let cfg = NrpmConfig::builder()
        .norm(Norm::L1)
        .k(k)
        .eps(EPS)
        .lambda(LAMBDA)
        .build()
        .unwrap();
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements((b * o * d * k) as u64));
    if let Some(mut gemm) = Sgemm::new(dev, x, w, gy) {
        g.bench_function("sgemm_fwd", |bch| {
            bch.iter_custom(|n| gpu_time(dev, n, || gemm.forward()))
        });
        g.bench_function("sgemm_fwd_bwd", |bch| {
            bch.iter_custom(|n| gpu_time(dev, n, || gemm.forward_backward()))
        });
    }
    let mut lin = dev
        .upload_linear(x.view(), w.view(), None, Some(gy.view()), &cfg)
        .unwrap();
    g.bench_function("nrpm_cuda_fwd", |bch| {
        bch.iter_custom(|n| gpu_time(dev, n, || dev.launch_forward(&mut lin).unwrap()))
    });
    g.bench_function("nrpm_cuda_fwd_bwd", |bch| {
        bch.iter_custom(|n| {
            gpu_time(dev, n, || {
                dev.launch_forward(&mut lin).unwrap();
                dev.launch_backward(&mut lin).unwrap();
            })
        })
    });
    let cuda = Exec::Cuda(dev.context().ordinal());
    g.bench_function("nrpm_cuda_host_fwd", |bch| {
        bch.iter(|| black_box(nrpm::forward_with(cuda, x.view(), w.view(), None, &cfg).unwrap()))
    });
    g.bench_function("nrpm_cuda_host_fwd_bwd", |bch| {
        bch.iter(|| {
            let (_, it) = nrpm::forward_with(cuda, x.view(), w.view(), None, &cfg).unwrap();
            black_box(nrpm::backward_with(cuda, x.view(), w.view(), &it, gy.view()).unwrap())
        })
    });
    if let Some(mut mat) = Materialised::new(dev, &lin) {
        g.bench_function("materialised_fwd", |bch| {
            bch.iter_custom(|n| gpu_time(dev, n, || mat.forward(dev)))
        });
    }
    g.finish();
}

fn conv_end_to_end(c: &mut Criterion, dev: &Arc<CudaNrpm>, group: &str, k: usize) {
    let (b, ch, hw, o, ks) = (32, 16, 16, 32, 3);
    let geom = Conv2dGeometry::new(1, 1);
    let mut rng = StdRng::seed_from_u64(7);
    let x = Array4::from_shape_fn((b, ch, hw, hw), |_| rng.random_range(-1.0f32..1.0));
    let w = Array4::from_shape_fn((o, ch, ks, ks), |_| rng.random_range(-0.1f32..0.1));
    let gy = Array4::from_shape_fn((b, o, hw, hw), |_| rng.random_range(-1.0f32..1.0));
    let cfg = NrpmConfig::builder()
        .norm(Norm::L1)
        .k(k)
        .eps(EPS)
        .lambda(LAMBDA)
        .build()
        .unwrap();
    let cuda = Exec::Cuda(dev.context().ordinal());
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(
        (b * hw * hw * o * ch * ks * ks * k) as u64,
    ));
    g.bench_function("nrpm_cuda_host_fwd", |bch| {
        bch.iter(|| {
            black_box(conv::forward_with(cuda, x.view(), w.view(), None, &geom, &cfg).unwrap())
        })
    });
    g.bench_function("nrpm_cuda_host_fwd_bwd", |bch| {
        bch.iter(|| {
            let (_, it) = conv::forward_with(cuda, x.view(), w.view(), None, &geom, &cfg).unwrap();
            black_box(conv::backward_with(cuda, x.view(), w.view(), &it, gy.view(), &geom).unwrap())
        })
    });
    g.finish();
}

/// The table for docs/PERFORMANCE.md: times, term-iterations/s, ratios to sgemm and to the
/// materialised forward.
fn summary(device: &str, groups: &[(String, u64)]) {
    let dir = criterion_dir();
    let ms = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.3}", v / 1e6));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.1}×", a / b),
        _ => "–".into(),
    };
    println!("\nDevice: {device}. Medians; term-it/s = B·O·D·K / time (kernels only).");
    println!(
        "\n| group | sgemm fwd (ms) | NRPM fwd (ms) | fwd term-it/s | fwd / sgemm | \
         materialised / NRPM fwd | sgemm fwd+bwd (ms) | NRPM fwd+bwd (ms) | \
         fwd+bwd / sgemm | host API fwd (ms) | host API fwd+bwd (ms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (group, elements) in groups {
        let e = |id: &str| estimate_ns(&dir, group, id, "median");
        let (sf, sfb) = (e("sgemm_fwd"), e("sgemm_fwd_bwd"));
        let (nf, nfb) = (e("nrpm_cuda_fwd"), e("nrpm_cuda_fwd_bwd"));
        let rate = nf.map_or("–".into(), |t| {
            format!("{:.3e}", *elements as f64 / (t * 1e-9))
        });
        println!(
            "| {group} | {} | {} | {rate} | {} | {} | {} | {} | {} | {} | {} |",
            ms(sf),
            ms(nf),
            ratio(nf, sf),
            ratio(e("materialised_fwd"), nf),
            ms(sfb),
            ms(nfb),
            ratio(nfb, sfb),
            ms(e("nrpm_cuda_host_fwd")),
            ms(e("nrpm_cuda_host_fwd_bwd")),
        );
    }
}

fn main() {
    let dev = match CudaNrpm::shared(0) {
        Ok(dev) => dev,
        Err(e) => {
            println!("nrpm_cuda: skipped: {e}");
            return;
        }
    };
    if let Some(t) = std::env::var("NRPM_BENCH_TILE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        dev.set_tile(Some(t)).unwrap();
    }
    println!(
        "nrpm_cuda: {} ({} multiprocessors)",
        dev.name(),
        dev.multiprocessors()
    );
    let mut c = criterion();
    let mut groups = Vec::new();
    let mut rng = StdRng::seed_from_u64(42);
    let mut shapes: Vec<(String, usize, usize, usize, usize)> = Vec::new();
    for k in [1, 3] {
        for (b, d, o) in [(128, 784, 256), (128, 256, 64)] {
            shapes.push((format!("cuda_linear_b{b}_d{d}_o{o}_k{k}"), b, d, o, k));
        }
        // The conv shape as the linear problem on its patches: [32·16·16, 16·3·3] × [32, 144].
        shapes.push((
            format!("cuda_conv_patches_b8192_d144_o32_k{k}"),
            8192,
            144,
            32,
            k,
        ));
    }
    shapes.push(("cuda_linear_b1024_d4608_o512_k3".into(), 1024, 4608, 512, 3));
    for (group, b, d, o, k) in shapes {
        let x = uniform((b, d), 1.0, &mut rng);
        let w = uniform((o, d), (1.0 / d as f32).sqrt(), &mut rng);
        let gy = uniform((b, o), 1.0, &mut rng);
        bench_linear(&mut c, &dev, &group, (&x, &w, &gy), k);
        groups.push((group, (b * o * d * k) as u64));
    }
    for k in [1, 3] {
        let group = format!("cuda_conv_b32_c16_hw16_o32_k3x3_k{k}");
        conv_end_to_end(&mut c, &dev, &group, k);
        groups.push((group, (32 * 16 * 16 * 32 * 144 * k) as u64));
    }
    c.final_summary();
    summary(dev.name(), &groups);
}
