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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nrpm::Norm;
    use ndarray::ArrayD;

    fn file<T: Real>(x: ArrayD<T>, w: ArrayD<T>) -> TensorFile {
        let mut f = TensorFile::new("input.safetensors");
        f.insert("x", x);
        f.insert("weight", w);
        f
    }

    /// f32 files are computed and written in f32, f64 files in f64: the outputs keep the
    /// input's type, and the values agree to f32 precision.
    #[test]
    fn outputs_keep_the_input_float_type() {
        let cfg = NrpmConfig::builder().norm(Norm::L1).k(3).lambda(0.2);
        let cfg = cfg.build().unwrap();
        let x = ArrayD::from_shape_fn(vec![2, 5], |i| (i[0] * 5 + i[1]) as f64 * 0.3 - 1.0);
        let w = ArrayD::from_shape_fn(vec![3, 5], |i| ((i[0] * 5 + i[1]) as f64).sin());
        let (out64, is64) = apply_file(&file(x.clone(), w.clone()), &cfg, Exec::Fused).unwrap();
        let narrow = |a: &ArrayD<f64>| a.mapv(|v| v as f32);
        let (out32, is32) = apply_file(&file(narrow(&x), narrow(&w)), &cfg, Exec::Fused).unwrap();
        assert!(is64 && !is32);
        let (z64, z32) = (&out64.tensors["z"], &out32.tensors["z"]);
        assert_eq!((z64.dtype_name(), z32.dtype_name()), ("F64", "F32"));
        let (z64, z32) = (
            out64.array::<f64>("z", None).unwrap(),
            out32.array::<f64>("z", None),
        );
        for (a, b) in z64.iter().zip(z32.unwrap().iter()) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }
}
