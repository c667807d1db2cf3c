//! Builds and runs `tests/kernel_math/harness.cpp`: the kernels' arithmetic (cuda/nrpm_math.cuh
//! and the decomposition of cuda/nrpm.cu, cuda/nrpm_conv.cu) compiled for the host with the
//! system C++ compiler. Shared by tests/kernel_math.rs (harness ≡ reference, no GPU) and
//! tests/cuda_linear.rs (GPU ≡ harness, bit for bit).
#![allow(dead_code)] // each test file uses a part

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use ndarray::{Array2, Array4};
use nrpm::norm::WeightKind;
use nrpm::{Conv2dGeometry, NrpmConfig, Real};

/// The compiled harness, or why there is none.
pub fn harness() -> Result<&'static Path, String> {
    static EXE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    EXE.get_or_init(build).as_deref().map_err(Clone::clone)
}

/// The repository root holding `cuda/` and `tests/kernel_math/`: the build's, or the current
/// folder (a test binary carried to another machine runs from the repository's copy there).
pub fn source_root() -> Result<PathBuf, String> {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [built, PathBuf::from(".")]
        .into_iter()
        .find(|r| r.join("tests/kernel_math/harness.cpp").is_file())
        .ok_or_else(|| {
            "tests/kernel_math/harness.cpp not found (run from the repository root)".into()
        })
}

fn build() -> Result<PathBuf, String> {
    let root = source_root()?;
    let dir = std::env::temp_dir().join(format!("nrpm-kernel-harness-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let exe = dir.join("harness");
    let candidates: Vec<String> = std::env::var("CXX")
        .ok()
        .into_iter()
        .chain(["g++", "c++", "clang++"].map(String::from))
        .collect();
    let mut tried = Vec::new();
    for cxx in candidates {
        let out = Command::new(&cxx)
            .args([
                "-std=c++17",
                "-O2",
                "-ffp-contract=off",
                "-fno-fast-math",
                "-Wall",
            ])
            .arg("-I")
            .arg(root.join("cuda"))
            .arg(root.join("tests/kernel_math/harness.cpp"))
            .arg("-o")
            .arg(&exe)
            .output();
        match out {
            Ok(o) if o.status.success() => return Ok(exe),
            // A compiler that ran and failed is a real error in the header or the harness.
            Ok(o) => {
                panic!(
                    "{cxx} could not compile the kernel-math harness:\n{}",
                    String::from_utf8_lossy(&o.stderr)
                )
            }
            Err(e) => tried.push(format!("{cxx}: {e}")),
        }
    }
    Err(format!("no C++ compiler found ({})", tried.join("; ")))
}

/// Runs the harness on `input`; returns its named result lines.
pub fn run(input: &str) -> Vec<(String, Vec<f64>)> {
    let exe = harness().expect("harness built");
    let mut child = Command::new(exe)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("harness starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "harness failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut it = line.split_whitespace();
            let name = it.next().unwrap_or_default().to_string();
            let values = it.map(|v| v.parse::<f64>().unwrap()).collect();
            (name, values)
        })
        .collect()
}

fn find<'a>(lines: &'a [(String, Vec<f64>)], name: &str) -> &'a [f64] {
    &lines.iter().find(|(n, _)| n == name).unwrap().1
}

/// The kernels' norm code (`NRPM_NORM_*`).
pub fn norm_code(kind: WeightKind) -> u32 {
    match kind {
        WeightKind::Lpm => 0,
        WeightKind::L1 => 1,
        WeightKind::Huber => 2,
        WeightKind::Mcp => 3,
        WeightKind::Hm => 4,
    }
}

/// The harness's results of a linear forward and backward, in `T` (`y [B, O]`,
/// `z [B, O, N, K+1]`, `gx [B, D]`, `gw [O, D]`).
pub struct LinearOut<T> {
    pub y: Array2<T>,
    pub z: Array4<T>,
    pub gx: Array2<T>,
    pub gw: Array2<T>,
}

fn values<T: Real>(a: impl IntoIterator<Item = T>) -> String {
    // f64 Display is the shortest string that parses back to the same value.
    a.into_iter()
        .map(|v| v.f64().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The kernels' forward and backward of a linear NRPM on the host, in `T` (f32 or f64).
pub fn linear<T: Real>(
    x: &Array2<T>,
    w: &Array2<T>,
    bias: Option<&ndarray::Array1<T>>,
    gy: &Array2<T>,
    cfg: &NrpmConfig,
) -> LinearOut<T> {
    let (b, d) = x.dim();
    let o = w.nrows();
    let n = cfg.groups();
    let k = cfg.steps();
    let wf = cfg.norm().weight_fn::<f64>(cfg.eps());
    let prec = if T::DTYPE == "f32" { 32 } else { 64 };
    let zeros = ndarray::Array1::<T>::zeros(o);
    let input = format!(
        "linear {prec} {b} {d} {o} {n} {k} {} {} {} {} {} {}\n{}\n{}\n{}\n{}\n",
        norm_code(wf.kind),
        wf.eps,
        wf.p,
        wf.q,
        cfg.lambda(),
        u32::from(bias.is_some()),
        values(x.iter().copied()),
        values(w.iter().copied()),
        values(bias.unwrap_or(&zeros).iter().copied()),
        values(gy.iter().copied()),
    );
    let lines = run(&input);
    let arr = |name: &str| -> Vec<T> { find(&lines, name).iter().map(|&v| T::of(v)).collect() };
    LinearOut {
        y: Array2::from_shape_vec((b, o), arr("y")).unwrap(),
        z: Array4::from_shape_vec((b, o, n, k + 1), arr("z")).unwrap(),
        gx: Array2::from_shape_vec((b, d), arr("gx")).unwrap(),
        gw: Array2::from_shape_vec((o, d), arr("gw")).unwrap(),
    }
}

/// The kernels' unfold of `x` and fold of `cols` on the host, in f64.
pub fn conv(
    x: &Array4<f64>,
    cols: &Array2<f64>,
    kh: usize,
    kw: usize,
    geom: &Conv2dGeometry,
) -> (Array2<f64>, Array4<f64>) {
    let (b, c, h, w) = x.dim();
    let (ho, wo) = geom.output_size(h, w, kh, kw).unwrap();
    let input = format!(
        "conv 64 {b} {c} {h} {w} {kh} {kw} {ho} {wo} {} {} {} {} {} {}\n{}\n{}\n",
        geom.stride[0],
        geom.stride[1],
        geom.padding[0],
        geom.padding[1],
        geom.dilation[0],
        geom.dilation[1],
        values(x.iter().copied()),
        values(cols.iter().copied()),
    );
    let lines = run(&input);
    (
        Array2::from_shape_vec(cols.raw_dim(), find(&lines, "cols").to_vec()).unwrap(),
        Array4::from_shape_vec(x.raw_dim(), find(&lines, "x").to_vec()).unwrap(),
    )
}

/// `sizeof` and `offsetof` of the C parameter structs, as the harness's compiler lays them out:
/// `(NrpmParams: size, 12 field offsets), (ConvParams: size, offset of out_h, of dil_w)`.
pub fn layout() -> (Vec<usize>, Vec<usize>) {
    let lines = run("layout\n");
    let get = |name| find(&lines, name).iter().map(|&v| v as usize).collect();
    (get("NrpmParams"), get("ConvParams"))
}
