//! `nrpm apply`: the operator on tensors from a file, so anyone can check nrpm against the
//! authors' PyTorch code (same inputs in, compare `z` and the gradients).

use std::path::{Path, PathBuf};

use clap::Args;
use ndarray::{Array2, Ix1, Ix2};

use crate::cli::common::check_output_file;
use crate::cli::OperatorArgs;
use nrpm::error::{Error, Result};
use nrpm::real::Real;
use nrpm::tensor_file::{Tensor, TensorFile};
use nrpm::{backward_with, forward_with, Exec, NrpmConfig};

/// Reads `x` [B, D], `weight` [O, D], optional `bias` [O] and `grad_output` [B, O]; writes `z`
/// [B, O] and, when `grad_output` is given, `grad_x`, `grad_weight`, `grad_bias`, `grad_lambda`.
/// All tensors must have one type: f64 inputs are computed in f64, f32 inputs in f32; any other
/// tensor name is refused.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Input safetensors file.
    #[arg(long)]
    pub input: PathBuf,
    /// Output safetensors file.
    #[arg(long)]
    pub output: PathBuf,
    /// The operator.
    #[command(flatten)]
    pub op: OperatorArgs,
    /// Implementation: fused (default) or reference (the materialised oracle).
    #[arg(long, default_value = "fused")]
    pub exec: String,
}

/// Runs `nrpm apply`.
///
/// # Errors
/// Bad files, missing or mis-shaped tensors, NaN/Inf, invalid flags.
pub fn run(args: ApplyArgs) -> Result<()> {
    let cfg = args.op.config()?;
    let exec = match args.exec.as_str() {
        "fused" => Exec::Fused,
        "reference" => Exec::Reference,
        other => {
            return Err(Error::UnknownName {
                what: "exec",
                name: other.into(),
                expected: "fused, reference".into(),
            })
        }
    };
    check_paths(&args.input, &args.output)?;
    let input = TensorFile::read(&args.input)?;
    let f64_input = check_tensors(&input)?;
    let out = if f64_input {
        apply::<f64>(&input, &cfg, exec)?
    } else {
        apply::<f32>(&input, &cfg, exec)?
    };
    out.write(&args.output)?;
    eprintln!(
        "wrote {} ({}: {})",
        args.output.display(),
        if f64_input { "f64" } else { "f32" },
        out.tensors.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// The tensor names `apply` reads.
const KNOWN: [&str; 4] = ["x", "weight", "bias", "grad_output"];

/// `--output` must be writable and must not be `--input` (checked before any work).
fn check_paths(input: &Path, output: &Path) -> Result<()> {
    check_output_file("--output", output)?;
    let same = match (input.canonicalize(), output.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(Error::Flag {
            flag: format!("--output {}", output.display()),
            problem: "is the input file; give another path (the input would be overwritten)".into(),
        });
    }
    Ok(())
}

/// Every tensor is one `apply` reads, and all are of one float type; returns `true` for f64.
fn check_tensors(input: &TensorFile) -> Result<bool> {
    if let Some(key) = input.tensors.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(Error::format(
            &input.path,
            format!(
                "unknown tensor '{key}' (apply reads {}; a misspelt name would silently drop \
                 its part of the computation)",
                KNOWN.join(", ")
            ),
        ));
    }
    let dtypes: Vec<(&String, &'static str)> = input
        .tensors
        .iter()
        .map(|(k, t)| (k, t.dtype_name()))
        .collect();
    if let Some((key, dtype)) = dtypes.iter().find(|(_, d)| *d != dtypes[0].1) {
        return Err(Error::format(
            &input.path,
            format!(
                "tensors of mixed types: '{}' is {} but '{key}' is {dtype}; give every \
                 tensor one type (f32 or f64)",
                dtypes[0].0, dtypes[0].1
            ),
        ));
    }
    Ok(matches!(input.tensors.get("x"), Some(Tensor::F64(_))))
}

fn matrix<T: Real>(file: &TensorFile, key: &str) -> Result<Array2<T>> {
    let a = file.array::<T>(key, None)?;
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix2>().map_err(|_| {
        Error::format(
            &file.path,
            format!("tensor '{key}' must be 2-D, has shape {shape:?}"),
        )
    })
}

/// The operator (and its gradient when `grad_output` is present) on the tensors of `input`.
fn apply<T: Real>(input: &TensorFile, cfg: &NrpmConfig, exec: Exec) -> Result<TensorFile> {
    let x = matrix::<T>(input, "x")?;
    let w = matrix::<T>(input, "weight")?;
    let bias = if input.contains("bias") {
        let b = input.array::<T>("bias", Some(&[w.nrows()]))?;
        Some(b.into_dimensionality::<Ix1>().expect("shape checked"))
    } else {
        None
    };
    let (z, iterates) = forward_with(
        exec,
        x.view(),
        w.view(),
        bias.as_ref().map(|b| b.view()),
        cfg,
    )?;
    let mut out = TensorFile::new(PathBuf::new());
    out.metadata.insert(
        "nrpm_config".into(),
        serde_json::to_string(cfg).expect("config serialises"),
    );
    out.insert("z", z.into_dyn());
    if input.contains("grad_output") {
        let gy = input.array::<T>("grad_output", Some(&[x.nrows(), w.nrows()]))?;
        let gy = gy.into_dimensionality::<Ix2>().expect("shape checked");
        let g = backward_with(exec, x.view(), w.view(), &iterates, gy.view())?;
        out.insert("grad_x", g.x.into_dyn());
        out.insert("grad_weight", g.weight.into_dyn());
        out.insert("grad_lambda", ndarray::arr1(&[g.lambda]).into_dyn());
        if bias.is_some() {
            out.insert("grad_bias", g.bias.into_dyn());
        }
    }
    Ok(out)
}
