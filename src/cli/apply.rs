//! `nrpm apply`: the operator on tensors from a file, so anyone can check nrpm against the
//! authors' PyTorch code (same inputs in, compare `z` and the gradients).

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::common::check_output_file;
use crate::cli::OperatorArgs;
use nrpm::apply::apply_file;
use nrpm::error::{Error, Result};
use nrpm::tensor_file::TensorFile;
use nrpm::Exec;

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
    let (out, f64_input) = apply_file(&input, &cfg, exec)?;
    out.write(&args.output)?;
    eprintln!(
        "wrote {} ({}: {})",
        args.output.display(),
        if f64_input { "f64" } else { "f32" },
        out.tensors.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

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
