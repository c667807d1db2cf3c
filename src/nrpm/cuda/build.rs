//! Compiling the kernels: the embedded sources, one NVRTC compilation per (file, defines), and
//! the options (no fast-math, no FMA contraction, IEEE division).

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

use super::{driver, TILES};
use crate::error::{Error, Result};

/// The kernel sources as NVRTC compiles them: `(path, nrpm_math.cuh + file)`.
pub const SOURCES: [(&str, &str); 3] = [
    (
        "cuda/nrpm.cu",
        concat!(
            include_str!("../../../cuda/nrpm_math.cuh"),
            include_str!("../../../cuda/nrpm.cu")
        ),
    ),
    (
        "cuda/nrpm_conv.cu",
        concat!(
            include_str!("../../../cuda/nrpm_math.cuh"),
            include_str!("../../../cuda/nrpm_conv.cu")
        ),
    ),
    (
        "cuda/nrpm_materialised.cu",
        concat!(
            include_str!("../../../cuda/nrpm_math.cuh"),
            include_str!("../../../cuda/nrpm_materialised.cu")
        ),
    ),
];

/// One NVRTC compilation: a source of [`SOURCES`], its `-D` options, and its kernels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Build {
    /// `(path, text)`, one of [`SOURCES`].
    pub source: (&'static str, &'static str),
    /// `-D…` options.
    pub defines: Vec<String>,
    /// The `extern "C"` kernels the PTX defines.
    pub kernels: Vec<String>,
}

impl Build {
    /// cuda/nrpm.cu for one dtype and one norm (`NRPM_NORM_*`, 0 lpm … 4 hm). f64 has no
    /// `t4` tile (it spills registers).
    pub fn linear(f64: bool, norm: u32) -> Self {
        let ty = if f64 { "f64" } else { "f32" };
        let tiles: &[u32] = if f64 { &TILES[..2] } else { &TILES };
        let mut kernels = Vec::new();
        for pass in ["fwd", "bwd_coef"] {
            for t in tiles {
                kernels.push(format!("nrpm_linear_{pass}_t{t}_{ty}"));
            }
        }
        kernels.push(format!("nrpm_linear_bwd_x_{ty}"));
        kernels.push(format!("nrpm_linear_bwd_w_{ty}"));
        let mut defines = vec![format!("-DNRPM_NORM={norm}")];
        if f64 {
            defines.push("-DNRPM_F64".into());
        }
        Self {
            source: SOURCES[0],
            defines,
            kernels,
        }
    }

    /// cuda/nrpm_conv.cu (unfold and fold, both dtypes).
    pub fn conv() -> Self {
        let kernels = [
            "nrpm_unfold_f32",
            "nrpm_fold_f32",
            "nrpm_unfold_f64",
            "nrpm_fold_f64",
        ];
        Self {
            source: SOURCES[1],
            defines: Vec::new(),
            kernels: kernels.map(String::from).to_vec(),
        }
    }

    /// cuda/nrpm_materialised.cu (the benchmark's baseline).
    pub fn materialised() -> Self {
        let kernels = [
            "nrpm_mat_terms_f32",
            "nrpm_mat_sum_f32",
            "nrpm_mat_weights_f32",
            "nrpm_mat_wsum_f32",
        ];
        Self {
            source: SOURCES[2],
            defines: Vec::new(),
            kernels: kernels.map(String::from).to_vec(),
        }
    }

    /// Every compilation the crate can make: cuda/nrpm.cu for 2 dtypes × 5 norms, then the
    /// other files.
    pub fn all() -> Vec<Self> {
        let mut all = Vec::new();
        for f64 in [false, true] {
            for norm in 0..5 {
                all.push(Self::linear(f64, norm));
            }
        }
        all.push(Self::conv());
        all.push(Self::materialised());
        all
    }
}

/// The NVRTC options of every kernel: IEEE division and square root, no flush to zero, no FMA
/// contraction, no fast-math; `arch` such as `"compute_90"` (None: NVRTC's default).
pub fn compile_options(arch: Option<&'static str>) -> CompileOptions {
    CompileOptions {
        prec_div: Some(true),
        prec_sqrt: Some(true),
        ftz: Some(false),
        fmad: Some(false),
        use_fast_math: Some(false),
        arch,
        ..Default::default()
    }
}

/// `true` when libnvrtc can be loaded (then [`compile`] works, with or without a GPU).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles one build to PTX; `arch` such as `"compute_90"` (None: NVRTC's default).
///
/// # Errors
/// [`Error::NoCuda`] without libnvrtc; [`Error::Compile`] with NVRTC's log.
pub fn compile(build: &Build, arch: Option<&'static str>) -> Result<Ptx> {
    if !nvrtc_present() {
        return Err(Error::NoCuda("libnvrtc not found".into()));
    }
    let mut opts = compile_options(arch);
    opts.options.extend(build.defines.iter().cloned());
    compile_ptx_with_opts(build.source.1, opts).map_err(|e| Error::Compile {
        kernel: build.source.0,
        log: e.to_string(),
    })
}

/// Compiles a build for `arch`, loads it, and returns its kernels in the build's order.
pub(super) fn load_build(
    ctx: &Arc<CudaContext>,
    arch: &str,
    build: &Build,
) -> Result<Vec<CudaFunction>> {
    let mut opts = compile_options(None);
    opts.options.push(format!("--gpu-architecture={arch}"));
    opts.options.extend(build.defines.iter().cloned());
    let ptx = compile_ptx_with_opts(build.source.1, opts).map_err(|e| Error::Compile {
        kernel: build.source.0,
        log: e.to_string(),
    })?;
    let module = ctx.load_module(ptx).map_err(driver("load module"))?;
    build
        .kernels
        .iter()
        .map(|k| module.load_function(k).map_err(driver("load kernel")))
        .collect()
}
