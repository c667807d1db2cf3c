//! CPU benchmarks of the NRPM operator (criterion): the plain matmul (LPM) baseline, the
//! materialised `reference` and the `fused` path, forward and forward+backward, f32.
//!
//! Shapes (issue "NRPM core"): linear (B, D, O) = (128, 784, 256) and (128, 256, 64); conv
//! B = 32, C = 16, 16×16, O = 32, 3×3 (padding 1); K ∈ {1, 3}. Throughput is counted in
//! term-iterations, `B·O·D·K` (`B·L·O·D·K` for conv, L = output pixels), for every entry of a
//! group, so throughput ratios are time ratios. After the run, a table with term-iterations/s
//! and the ratios fused/reference and NRPM/LPM is printed from criterion's estimates.
//!
//! Run: `cargo bench --bench nrpm_cpu` (set `NRPM_BENCH_QUICK=1` for a short smoke run).

mod common;

use std::hint::black_box;

use common::{criterion, criterion_dir, estimate_ns, uniform};
use criterion::{BenchmarkId, Criterion, Throughput};
use ndarray::{Array1, Array2};
use nrpm::conv::{self, Conv2dGeometry};
use nrpm::{Exec, Norm, NrpmConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;

const EPS: f64 = 1e-3;
const LAMBDA: f64 = 0.5;

struct Linear {
    x: Array2<f32>,
    w: Array2<f32>,
    b: Array1<f32>,
    gy: Array2<f32>,
}

impl Linear {
    fn new(b: usize, d: usize, o: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(42);
        Self {
            x: uniform((b, d), 1.0, &mut rng),
            w: uniform((o, d), (1.0 / d as f32).sqrt(), &mut rng),
            b: uniform(o, 0.1, &mut rng),
            gy: uniform((b, o), 1.0, &mut rng),
        }
    }

    fn forward(&self, exec: Exec, cfg: &NrpmConfig) -> nrpm::Iterates<f32> {
        let (y, it) =
            nrpm::forward_with(exec, self.x.view(), self.w.view(), Some(self.b.view()), cfg)
                .unwrap();
        black_box(y);
        it
    }

    fn forward_backward(&self, exec: Exec, cfg: &NrpmConfig) {
        let it = self.forward(exec, cfg);
        let g =
            nrpm::backward_with(exec, self.x.view(), self.w.view(), &it, self.gy.view()).unwrap();
        black_box(g);
    }

    /// LPM as one would write it: `y = x·Wᵀ + b`, and its gradients by two more GEMMs.
    fn lpm_forward(&self) -> Array2<f32> {
        self.x.dot(&self.w.t()) + &self.b
    }

    fn lpm_forward_backward(&self) {
        black_box(self.lpm_forward());
        black_box(self.gy.dot(&self.w));
        black_box(self.gy.t().dot(&self.x));
        black_box(self.gy.sum_axis(ndarray::Axis(0)));
    }
}

fn bench_linear(c: &mut Criterion, (b, d, o): (usize, usize, usize), k: usize) {
    let data = Linear::new(b, d, o);
    let cfg = NrpmConfig::builder()
        .norm(Norm::L1)
        .k(k)
        .eps(EPS)
        .lambda(LAMBDA)
        .build()
        .unwrap();
    let mut g = c.benchmark_group(format!("linear_b{b}_d{d}_o{o}_k{k}"));
    g.throughput(Throughput::Elements((b * o * d * k) as u64));
    g.bench_function("lpm_fwd", |bch| bch.iter(|| data.lpm_forward()));
    g.bench_function("lpm_fwd_bwd", |bch| {
        bch.iter(|| data.lpm_forward_backward())
    });
    for (name, exec) in [("reference", Exec::Reference), ("fused", Exec::Fused)] {
        g.bench_function(BenchmarkId::new(name, "fwd"), |bch| {
            bch.iter(|| data.forward(exec, &cfg))
        });
        g.bench_function(BenchmarkId::new(name, "fwd_bwd"), |bch| {
            bch.iter(|| data.forward_backward(exec, &cfg))
        });
    }
    g.finish();
}

fn bench_conv(c: &mut Criterion, k: usize) {
    let (b, ch, hw, o, ks) = (32, 16, 16, 32, 3);
    let geom = Conv2dGeometry::new(1, 1);
    let mut rng = StdRng::seed_from_u64(7);
    let x = uniform((b, ch, hw, hw), 1.0, &mut rng);
    let w = uniform((o, ch, ks, ks), 0.1, &mut rng);
    let gy = uniform((b, o, hw, hw), 1.0, &mut rng);
    let cfg = NrpmConfig::builder()
        .norm(Norm::L1)
        .k(k)
        .eps(EPS)
        .lambda(LAMBDA)
        .build()
        .unwrap();
    let d = ch * ks * ks;
    let mut g = c.benchmark_group(format!("conv_b{b}_c{ch}_hw{hw}_o{o}_k3x3_k{k}"));
    g.throughput(Throughput::Elements((b * hw * hw * o * d * k) as u64));
    let lpm = NrpmConfig::lpm();
    let fwd = |exec, cfg: &NrpmConfig| {
        conv::forward_with(exec, x.view(), w.view(), None, &geom, cfg).unwrap()
    };
    let fwd_bwd = |exec, cfg: &NrpmConfig| {
        let (_, it) = fwd(exec, cfg);
        conv::backward_with(exec, x.view(), w.view(), &it, gy.view(), &geom).unwrap()
    };
    g.bench_function("lpm_fwd", |bch| bch.iter(|| fwd(Exec::Fused, &lpm)));
    g.bench_function("lpm_fwd_bwd", |bch| bch.iter(|| fwd_bwd(Exec::Fused, &lpm)));
    for (name, exec) in [("reference", Exec::Reference), ("fused", Exec::Fused)] {
        g.bench_function(BenchmarkId::new(name, "fwd"), |bch| {
            bch.iter(|| fwd(exec, &cfg))
        });
        g.bench_function(BenchmarkId::new(name, "fwd_bwd"), |bch| {
            bch.iter(|| fwd_bwd(exec, &cfg))
        });
    }
    g.finish();
}

/// Criterion's mean estimate (ns per iteration) of one benchmark, if it ran.
fn mean_ns(dir: &std::path::Path, group: &str, id: &str) -> Option<f64> {
    estimate_ns(dir, group, id, "mean")
}

/// Prints term-iterations/s and the ratios the issue asks for, from criterion's estimates.
fn summary(groups: &[(String, u64)]) {
    let dir = criterion_dir();
    let paths = [
        ("lpm", "lpm_fwd", "lpm_fwd_bwd"),
        ("reference", "reference/fwd", "reference/fwd_bwd"),
        ("fused", "fused/fwd", "fused/fwd_bwd"),
    ];
    let mut times = Vec::new();
    println!("\n| group | path | fwd (ms) | fwd term-it/s | fwd+bwd (ms) | (fwd+bwd)/fwd |");
    println!("|---|---|---:|---:|---:|---:|");
    for (group, elements) in groups {
        let t: Vec<Option<(f64, f64)>> = paths
            .iter()
            .map(|(_, f, fb)| Some((mean_ns(&dir, group, f)?, mean_ns(&dir, group, fb)?)))
            .collect();
        for ((path, _, _), t) in paths.iter().zip(&t) {
            if let Some((f, fb)) = t {
                let rate = *elements as f64 / f;
                println!(
                    "| {group} | {path} | {:.3} | {rate:.3e} | {:.3} | {:.2} |",
                    f / 1e6,
                    fb / 1e6,
                    fb / f
                );
            }
        }
        if let [Some(lpm), Some(refr), Some(fused)] = t[..] {
            times.push((group, lpm, refr, fused));
        }
    }
    println!("\n| group | reference/fused fwd | reference/fused fwd+bwd | fused/LPM fwd | fused/LPM fwd+bwd |");
    println!("|---|---:|---:|---:|---:|");
    for (group, lpm, refr, fused) in times {
        println!(
            "| {group} | {:.1}× | {:.1}× | {:.1}× | {:.1}× |",
            refr.0 / fused.0,
            refr.1 / fused.1,
            fused.0 / lpm.0,
            fused.1 / lpm.1
        );
    }
}

fn main() {
    let mut c = criterion();
    let mut groups = Vec::new();
    for k in [1, 3] {
        for shape in [(128, 784, 256), (128, 256, 64)] {
            bench_linear(&mut c, shape, k);
            let (b, d, o) = shape;
            groups.push((
                format!("linear_b{b}_d{d}_o{o}_k{k}"),
                (b * o * d * k) as u64,
            ));
        }
        bench_conv(&mut c, k);
        groups.push((
            format!("conv_b32_c16_hw16_o32_k3x3_k{k}"),
            (32 * 16 * 16 * 32 * 144 * k) as u64,
        ));
    }
    c.final_summary();
    summary(&groups);
}
