//! The operator on the tensors of a safetensors file (`nrpm apply`): `x [B, D]`,
//! `weight [O, D]`, optional `bias [O]` and `grad_output [B, O]` in; `z [B, O]` and, with
//! `grad_output`, `grad_x`, `grad_weight`, `grad_bias`, `grad_lambda` out. All tensors must
//! have one type (f64 inputs are computed in f64, f32 in f32), and any other tensor name is
//! refused. Everything here is checked against the file, so a corrupt or hostile file gets an
//! error, never a panic (fuzzed: `fuzz/fuzz_targets/apply.rs` in the repository).

use std::path::PathBuf;

use ndarray::{Array2, Ix1, Ix2};

use crate::error::{Error, Result};
use crate::nrpm::{backward_with, forward_with, Exec, NrpmConfig};
use crate::real::Real;
use crate::tensor_file::{Tensor, TensorFile};

/// The operator (and, when the file has `grad_output`, its gradients) on the tensors of
/// `input`, in the file's float type. Returns the output tensors and whether they are f64.
///
/// # Errors
/// [`Error::Format`] for an unknown tensor name, mixed float types, or a tensor of the wrong
/// rank; shape, NaN/Inf and overflow errors of the operator.
pub fn apply_file(input: &TensorFile, cfg: &NrpmConfig, exec: Exec) -> Result<(TensorFile, bool)> {
    let f64_input = check_tensors(input)?;
    let out = match f64_input {
        true => apply::<f64>(input, cfg, exec)?,
        false => apply::<f32>(input, cfg, exec)?,
    };
    Ok((out, f64_input))
}

/// The tensor names `apply` reads.
const KNOWN: [&str; 4] = ["x", "weight", "bias", "grad_output"];

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

/// Tensor `key` as a matrix.
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
