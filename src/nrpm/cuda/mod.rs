//! The CUDA path: the kernels of `cuda/*.cu`, compiled at run time by NVRTC and launched with
//! cudarc (feature `cuda`). Same inputs and outputs as [`crate::nrpm::reference`] and
//! [`crate::nrpm::fused`]; selected by [`crate::nrpm::Exec::Cuda`].
//!
//! ```text
//! forward   nrpm_linear_fwd_t{1,2,4}     one thread owns TM×TM outputs (b, o), loops over d
//!                                         in 32-column chunks staged in shared memory
//! backward  nrpm_linear_bwd_coef_t{1,2,4} the same tiling: Sᵏ, Qᵏ → records
//!                                         rec[b, o, g] = [zᵏ/Dg, cᵏ]ₖ (c^K slot: z̄⁰ total)
//!           nrpm_linear_bwd_x             x̄[b, d] = Σ_o t̄(b, o, d)·W[o, d]   (one thread per (b, d))
//!           nrpm_linear_bwd_w             W̄[o, d] = Σ_b t̄(b, o, d)·x[b, d]   (one thread per (o, d))
//! conv      nrpm_unfold / nrpm_fold       on the device, then the linear kernels on the patches
//! ```
//!
//! Memory: the inputs, `y`, the iterates `[B, O, N, K+1]`, and for the backward the sums
//! `[B, O, N, K, 2]` and records `[B, O, N, K+1, 2]`; never `[B, O, D]`. No float atomics: every
//! sum runs in one thread in a fixed order, so a result is the same bits on every run.
//!
//! The libraries are loaded at run time (cudarc `dynamic-loading`): a machine without the
//! driver or NVRTC gets [`Error::NoCuda`], never a panic or an abort. Kernels are compiled on
//! first use, once per process, device, dtype and norm, without fast-math or FMA contraction (IEEE division, exact
//! gradients; a term's value is the CPU's, bit for bit). The tile of the forward and
//! coefficient kernels is the largest that still gives every multiprocessor a block, or the
//! one forced by [`CudaNrpm::set_tile`]; it changes the speed only: every output is summed by
//! one thread in the same order whatever the tile, so results are the same bits.

mod build;
mod conv;
mod linear;

use build::load_build;
pub use build::{compile, compile_options, nvrtc_present, Build, SOURCES};
pub(crate) use conv::{conv_backward, conv_forward};
pub use linear::{backward, forward, DeviceLinear};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{
    sys, CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, DriverError, ValidAsZeroBits,
};

use crate::error::{Error, Result};
use crate::nrpm::norm::WeightKind;
use crate::nrpm::{Dims, NrpmConfig};
use crate::real::Real;

/// Outputs per thread along each axis of the tiled kernels (`t1`, `t2`, `t4`).
const TILES: [u32; 3] = [1, 2, 4];
/// Threads per block of the tiled kernels along each axis (`NRPM_TX`, `NRPM_TY`).
const TILE_THREADS: u32 = 16;
/// Rows per thread of the gradient kernels (`NRPM_RB`).
const GRAD_ROWS: u32 = 4;
/// The largest blockDim.x of the gradient kernels (their `__launch_bounds__`).
const GRAD_THREADS: u32 = 128;

/// Twin of `struct NrpmParams` in cuda/nrpm_math.cuh: same fields, order and types.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct NrpmParams {
    /// B (B·L for a convolution).
    pub batch: u32,
    /// O.
    pub outputs: u32,
    /// D.
    pub terms: u32,
    /// N.
    pub groups: u32,
    /// D/N.
    pub group_terms: u32,
    /// K actually run ([`NrpmConfig::steps`]).
    pub steps: u32,
    /// `NRPM_NORM_*`: 0 lpm, 1 l1, 2 huber, 3 mcp, 4 hm.
    pub norm: u32,
    /// 1 when a bias is added.
    pub has_bias: u32,
    /// ε.
    pub eps: f64,
    /// `WeightFn::p` in f64.
    pub p: f64,
    /// `WeightFn::q` in f64.
    pub q: f64,
    /// λ.
    pub lambda: f64,
}

// SAFETY: plain old data, repr(C), mirrored field by field by the C struct (checked below and
// against the C compiler's layout in tests/kernel_math.rs).
unsafe impl DeviceRepr for NrpmParams {}

/// Twin of `struct ConvParams` in cuda/nrpm_math.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)] // the names of Conv2dGeometry and the shapes
pub struct ConvParams {
    pub batch: u32,
    pub channels: u32,
    pub height: u32,
    pub width: u32,
    pub kh: u32,
    pub kw: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub stride_h: u32,
    pub stride_w: u32,
    pub pad_h: u32,
    pub pad_w: u32,
    pub dil_h: u32,
    pub dil_w: u32,
    pub reserved0: u32,
    pub reserved1: u32,
}

// SAFETY: as NrpmParams.
unsafe impl DeviceRepr for ConvParams {}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<NrpmParams>() == 64);
    assert!(offset_of!(NrpmParams, has_bias) == 28);
    assert!(offset_of!(NrpmParams, eps) == 32);
    assert!(offset_of!(NrpmParams, lambda) == 56);
    assert!(size_of::<ConvParams>() == 64);
    assert!(offset_of!(ConvParams, out_h) == 24);
    assert!(offset_of!(ConvParams, dil_w) == 52);
};

/// f32 and f64, the dtypes the kernels exist for.
pub trait DeviceReal: Real + DeviceRepr + ValidAsZeroBits {}
impl DeviceReal for f32 {}
impl DeviceReal for f64 {}

fn driver(op: &'static str) -> impl FnOnce(DriverError) -> Error {
    move |e| Error::Cuda {
        op,
        msg: e.to_string(),
    }
}

/// The linear kernels of one dtype and norm, by tile (`t1`, `t2`[, `t4`]).
struct LinearKernels {
    fwd: Vec<CudaFunction>,
    coef: Vec<CudaFunction>,
    bwd_x: CudaFunction,
    bwd_w: CudaFunction,
}

/// unfold and fold of one dtype.
struct ConvKernels {
    unfold: CudaFunction,
    fold: CudaFunction,
}

/// One CUDA device with the NRPM kernels. Shared per process and ordinal
/// ([`CudaNrpm::shared`]); calls are serialised on its stream. The linear kernels are
/// compiled per (dtype, norm) on first use: about 5 s of NVRTC and driver JIT each.
pub struct CudaNrpm {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    multiprocessors: u32,
    /// `compute_XY` of the device.
    arch: String,
    conv_f32: ConvKernels,
    conv_f64: ConvKernels,
    /// By (f64, norm).
    linear: Mutex<BTreeMap<(bool, u32), Arc<LinearKernels>>>,
    /// 0: choose the tile per call; 1, 2, 4: that tile.
    forced_tile: AtomicU32,
    /// Kernels launched so far.
    launches: AtomicU64,
    lock: Mutex<()>,
}

impl std::fmt::Debug for CudaNrpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaNrpm")
            .field("ordinal", &self.ctx.ordinal())
            .field("name", &self.name)
            .finish()
    }
}

impl CudaNrpm {
    /// The device `ordinal`, started and compiled on first use, then cached for the process.
    ///
    /// # Errors
    /// [`Error::NoCuda`] when libcuda or libnvrtc cannot be loaded or there is no such device;
    /// [`Error::Compile`] if NVRTC rejects a kernel; [`Error::Cuda`] for a failing driver call.
    pub fn shared(ordinal: usize) -> Result<Arc<CudaNrpm>> {
        static CACHE: Mutex<BTreeMap<usize, Arc<CudaNrpm>>> = Mutex::new(BTreeMap::new());
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dev) = cache.get(&ordinal) {
            return Ok(dev.clone());
        }
        // cudarc panics when a library or symbol is missing; turn any such panic into an error.
        let dev = std::panic::catch_unwind(|| CudaNrpm::new(ordinal)).unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a CUDA library failed to load".into());
            Err(Error::NoCuda(
                msg.lines().next().unwrap_or_default().to_string(),
            ))
        })?;
        let dev = Arc::new(dev);
        cache.insert(ordinal, dev.clone());
        Ok(dev)
    }

    fn new(ordinal: usize) -> Result<Self> {
        // SAFETY: only tries to dlopen the libraries.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(Error::NoCuda(
                "libcuda not found (no NVIDIA driver on this machine)".into(),
            ));
        }
        if !nvrtc_present() {
            return Err(Error::NoCuda(
                "libnvrtc not found (put the lib folder of the CUDA toolkit or of the \
                 nvidia-cuda-nvrtc wheel on LD_LIBRARY_PATH)"
                    .into(),
            ));
        }
        let count = CudaContext::device_count()
            .map_err(|e| Error::NoCuda(format!("no CUDA device ({e})")))?;
        if count <= 0 {
            return Err(Error::NoCuda("no CUDA device".into()));
        }
        if ordinal >= count as usize {
            return Err(Error::NoCuda(format!(
                "no CUDA device {ordinal} (this machine has {count})"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(driver("create context"))?;
        let name = ctx.name().map_err(driver("device name"))?;
        let multiprocessors = ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(driver("device attribute"))?
            .max(1) as u32;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(driver("compute capability"))?;
        let arch = format!("compute_{major}{minor}");
        let conv = load_build(&ctx, &arch, &Build::conv())?;
        let mut conv = conv.into_iter();
        let mut next = || conv.next().expect("four conv kernels");
        let conv_f32 = ConvKernels {
            unfold: next(),
            fold: next(),
        };
        let conv_f64 = ConvKernels {
            unfold: next(),
            fold: next(),
        };
        Ok(Self {
            stream: ctx.default_stream(),
            name,
            multiprocessors,
            arch,
            conv_f32,
            conv_f64,
            linear: Mutex::new(BTreeMap::new()),
            forced_tile: AtomicU32::new(0),
            launches: AtomicU64::new(0),
            lock: Mutex::new(()),
            ctx,
        })
    }

    /// The device's name (e.g. "NVIDIA H100 80GB HBM3").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CUDA context (for benchmarks that launch their own baselines).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream every NRPM kernel runs on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    fn conv_kernels<U: DeviceReal>(&self) -> &ConvKernels {
        if U::DTYPE == "f32" {
            &self.conv_f32
        } else {
            &self.conv_f64
        }
    }

    /// The linear kernels of `U` and `norm`, compiled and loaded on first use.
    fn linear_kernels<U: DeviceReal>(&self, norm: u32) -> Result<Arc<LinearKernels>> {
        let f64 = U::DTYPE == "f64";
        let mut map = self.linear.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = map.get(&(f64, norm)) {
            return Ok(k.clone());
        }
        let build = Build::linear(f64, norm);
        let mut f = load_build(&self.ctx, &self.arch, &build)?.into_iter();
        let tiles = if f64 { 2 } else { 3 };
        let fwd: Vec<CudaFunction> = f.by_ref().take(tiles).collect();
        let coef: Vec<CudaFunction> = f.by_ref().take(tiles).collect();
        let k = Arc::new(LinearKernels {
            fwd,
            coef,
            bwd_x: f.next().expect("bwd_x"),
            bwd_w: f.next().expect("bwd_w"),
        });
        map.insert((f64, norm), k.clone());
        Ok(k)
    }

    /// Forces the outputs per thread along each axis of the forward and coefficient kernels:
    /// `Some(1 | 2 | 4)` (f64 uses at most 2), or `None` to choose per call (the default).
    /// For tuning and tests; results do not depend on it.
    ///
    /// # Errors
    /// [`Error::Config`] for any other value.
    pub fn set_tile(&self, tile: Option<u32>) -> Result<()> {
        let v = tile.unwrap_or(0);
        if v != 0 && !TILES.contains(&v) {
            return Err(Error::config("tile", v, "must be 1, 2 or 4"));
        }
        self.forced_tile.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// The number of kernels launched on this device so far (tests use it to check that the
    /// CUDA path ran).
    pub fn launches(&self) -> u64 {
        self.launches.load(Ordering::Relaxed)
    }

    fn count_launch(&self) {
        self.launches.fetch_add(1, Ordering::Relaxed);
    }

    /// The number of multiprocessors.
    pub fn multiprocessors(&self) -> u32 {
        self.multiprocessors
    }

    /// The tile index (into [`TILES`]) for B × O outputs: the forced one, else the largest
    /// that gives every multiprocessor a block (f64 at most `t2`: `t4` spills registers).
    fn tile<U: DeviceReal>(&self, b: usize, o: usize) -> usize {
        let largest = if U::DTYPE == "f32" { 2 } else { 1 };
        let forced = self.forced_tile.load(Ordering::Relaxed);
        if let Some(i) = TILES.iter().position(|&t| t == forced) {
            return i.min(largest);
        }
        (0..=largest)
            .rev()
            .find(|&i| {
                let t = (TILE_THREADS * TILES[i]) as usize;
                b.div_ceil(t) * o.div_ceil(t) >= self.multiprocessors as usize
            })
            .unwrap_or(0)
    }

    fn upload<U: DeviceReal>(&self, host: &[U], what: &'static str) -> Result<CudaSlice<U>> {
        if host.is_empty() {
            return self.stream.alloc_zeros(1).map_err(driver(what));
        }
        self.stream.clone_htod(host).map_err(driver(what))
    }

    fn zeros<U: DeviceReal>(&self, len: usize, what: &'static str) -> Result<CudaSlice<U>> {
        self.stream.alloc_zeros(len.max(1)).map_err(driver(what))
    }

    fn download<U: DeviceReal>(&self, dev: &CudaSlice<U>, len: usize) -> Result<Vec<U>> {
        let mut v = self.stream.clone_dtoh(dev).map_err(driver("copy back"))?;
        v.truncate(len);
        Ok(v)
    }

    /// Waits for the queued kernels; a failing kernel is reported here.
    ///
    /// # Errors
    /// [`Error::Cuda`] with the driver's error.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(driver("run kernels"))
    }
}

/// The kernels' parameters for a validated call.
fn params(dims: &Dims, cfg: &NrpmConfig, has_bias: bool) -> Result<NrpmParams> {
    let u = |name: &'static str, v: usize| {
        u32::try_from(v).map_err(|_| Error::config(name, v, "must be below 2³² on the CUDA path"))
    };
    let wf = cfg.norm().weight_fn::<f64>(cfg.eps());
    Ok(NrpmParams {
        batch: u("B", dims.b)?,
        outputs: u("O", dims.o)?,
        terms: u("D", dims.d)?,
        groups: u("groups", dims.n)?,
        group_terms: u("D/N", dims.dg)?,
        steps: u("k", cfg.steps())?,
        norm: match wf.kind {
            WeightKind::Lpm => 0,
            WeightKind::L1 => 1,
            WeightKind::Huber => 2,
            WeightKind::Mcp => 3,
            WeightKind::Hm => 4,
        },
        has_bias: u32::from(has_bias),
        eps: wf.eps,
        p: wf.p,
        q: wf.q,
        lambda: cfg.lambda(),
    })
}

/// Starts device `ordinal` (libraries, context, kernels) and returns its name.
///
/// # Errors
/// As [`CudaNrpm::shared`].
pub fn open(ordinal: usize) -> Result<String> {
    Ok(CudaNrpm::shared(ordinal)?.name().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_follow_the_config() {
        let cfg = NrpmConfig::builder()
            .norm(crate::Norm::Hm {
                gamma: 4.0,
                delta: 3.0,
            })
            .k(3)
            .eps(1e-3)
            .lambda(0.25)
            .build()
            .unwrap()
            .with_groups(2)
            .unwrap();
        let dims = Dims {
            b: 5,
            d: 8,
            o: 7,
            n: 2,
            dg: 4,
        };
        let p = params(&dims, &cfg, true).unwrap();
        assert_eq!((p.batch, p.outputs, p.terms, p.groups), (5, 7, 8, 2));
        assert_eq!((p.group_terms, p.steps, p.norm, p.has_bias), (4, 3, 4, 1));
        assert_eq!((p.p, p.q, p.lambda), (12.0, 3.0, 0.25));
        // K is 0 for the LPM norm whatever k says: no IRLS step runs.
        let lpm = NrpmConfig::builder()
            .norm(crate::Norm::Lpm)
            .k(3)
            .eps(1e-3)
            .lambda(0.5)
            .build()
            .unwrap();
        assert_eq!(params(&dims, &lpm, false).unwrap().steps, 0);
    }

    #[test]
    fn every_kernel_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".cu"))
            .map(|f| format!("cuda/{f}"))
            .collect();
        files.sort();
        let mut embedded: Vec<String> = SOURCES.iter().map(|s| s.0.to_string()).collect();
        embedded.sort();
        assert_eq!(files, embedded);
        let built: std::collections::BTreeSet<&str> =
            Build::all().iter().map(|b| b.source.0).collect();
        assert_eq!(built.len(), SOURCES.len());
    }
}
