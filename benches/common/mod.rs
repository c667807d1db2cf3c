//! What both benchmarks share: criterion's settings, seeded inputs, and reading criterion's
//! estimates back for the summary tables they print.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::Criterion;
use ndarray::{Array, Dimension, ShapeBuilder};
use rand::rngs::StdRng;
use rand::RngExt;

/// 20 samples, 1 s warm-up, 4 s measurement; `NRPM_BENCH_QUICK=1`: 10, 0.2 s, 0.5 s (a smoke
/// run).
pub fn criterion() -> Criterion {
    let quick = std::env::var_os("NRPM_BENCH_QUICK").is_some();
    let c = Criterion::default().configure_from_args();
    if quick {
        c.sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(500))
    } else {
        c.sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4))
    }
}

/// An f32 array of `shape`, entries uniform in (−scale, scale), drawn in row-major order.
pub fn uniform<Sh, D>(shape: Sh, scale: f32, rng: &mut StdRng) -> Array<f32, D>
where
    Sh: ShapeBuilder<Dim = D>,
    D: Dimension,
{
    Array::from_shape_simple_fn(shape, || rng.random_range(-scale..scale))
}

/// Where criterion writes: `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the
/// crate's `target/criterion`.
pub fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("criterion"))
        })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/criterion"))
}

/// Criterion's point estimate (ns per iteration) of statistic `stat` (`"mean"`, `"median"`)
/// of one benchmark, if it ran.
pub fn estimate_ns(dir: &Path, group: &str, id: &str, stat: &str) -> Option<f64> {
    let path = dir.join(group).join(id).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v[stat]["point_estimate"].as_f64()
}
