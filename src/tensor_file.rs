//! Named-tensor files in the safetensors format (PyTorch key names kept): read, check, write.
//!
//! [`TensorFile`] holds f32, f64 and i64 tensors (i64 for BatchNorm's `num_batches_tracked`)
//! with their string metadata. Reading validates the whole file (header, offsets, sizes) and
//! converts every failure into [`Error::Format`] naming the file, and the key where there is one.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::real::Real;

/// One tensor of a file.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    /// float32.
    F32(ArrayD<f32>),
    /// float64.
    F64(ArrayD<f64>),
    /// int64 (counters such as `num_batches_tracked`).
    I64(ArrayD<i64>),
}

impl Tensor {
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::F64(a) => a.shape(),
            Tensor::I64(a) => a.shape(),
        }
    }

    /// `"F32"`, `"F64"` or `"I64"`.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            Tensor::F32(_) => "F32",
            Tensor::F64(_) => "F64",
            Tensor::I64(_) => "I64",
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        match self {
            Tensor::F32(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Tensor::F64(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Tensor::I64(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    fn dtype(&self) -> Dtype {
        match self {
            Tensor::F32(_) => Dtype::F32,
            Tensor::F64(_) => Dtype::F64,
            Tensor::I64(_) => Dtype::I64,
        }
    }
}

/// The tensors of one safetensors file, by name, and its metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TensorFile {
    /// Tensors by PyTorch key.
    pub tensors: BTreeMap<String, Tensor>,
    /// The file's `__metadata__` strings.
    pub metadata: BTreeMap<String, String>,
    /// Where it was read from (empty for a new file); used in error messages.
    pub path: PathBuf,
}

fn decode<const N: usize, V>(bytes: &[u8], from: fn([u8; N]) -> V) -> Vec<V> {
    bytes
        .chunks_exact(N)
        .map(|c| from(c.try_into().expect("chunks_exact")))
        .collect()
}

impl TensorFile {
    /// An empty file that errors will name `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            ..Self::default()
        }
    }

    /// Reads and validates a safetensors file.
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be read; [`Error::Format`] if it is not valid safetensors or
    /// holds a dtype other than F32, F64, I64.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::format(path, format!("not a valid safetensors file: {e}")))?;
        let (_, header) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::format(path, format!("not a valid safetensors file: {e}")))?;
        let mut file = Self::new(path);
        if let Some(meta) = header.metadata() {
            file.metadata = meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        for (name, view) in st.tensors() {
            let shape = IxDyn(view.shape());
            let data = view.data();
            let tensor = match view.dtype() {
                Dtype::F32 => Tensor::F32(
                    ArrayD::from_shape_vec(shape, decode(data, f32::from_le_bytes))
                        .expect("validated size"),
                ),
                Dtype::F64 => Tensor::F64(
                    ArrayD::from_shape_vec(shape, decode(data, f64::from_le_bytes))
                        .expect("validated size"),
                ),
                Dtype::I64 => Tensor::I64(
                    ArrayD::from_shape_vec(shape, decode(data, i64::from_le_bytes))
                        .expect("validated size"),
                ),
                other => {
                    return Err(Error::format(
                        path,
                        format!("tensor '{name}' has dtype {other:?}; nrpm reads F32, F64 and I64"),
                    ))
                }
            };
            file.tensors.insert(name, tensor);
        }
        Ok(file)
    }

    /// Writes the file (tensors sorted as safetensors requires, metadata kept), with the
    /// permissions of any new file (the umask); the folder must exist.
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Format`] if it cannot be written.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes: Vec<(&String, &Tensor, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(k, t)| (k, t, t.to_bytes()))
            .collect();
        let mut views = Vec::with_capacity(bytes.len());
        for (k, t, b) in &bytes {
            let view = TensorView::new(t.dtype(), t.shape().to_vec(), b)
                .map_err(|e| Error::format(path, format!("tensor '{k}': {e}")))?;
            views.push((k.as_str(), view));
        }
        let meta: Option<HashMap<String, String>> = (!self.metadata.is_empty()).then(|| {
            self.metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        });
        let bytes =
            safetensors::serialize(views, meta).map_err(|e| Error::format(path, e.to_string()))?;
        // std::fs::write creates the file with the process umask (as JSON reports are).
        std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
    }

    /// `true` if the file has a tensor called `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// The tensor `key`, converted to `T`, checked against `shape` (if given) and for NaN/Inf.
    ///
    /// # Errors
    /// [`Error::Format`] if the key is missing, is an integer tensor, has another shape, or holds
    /// a non-finite value.
    pub fn array<T: Real>(&self, key: &str, shape: Option<&[usize]>) -> Result<ArrayD<T>> {
        let tensor = self
            .tensors
            .get(key)
            .ok_or_else(|| Error::format(&self.path, format!("missing tensor '{key}'")))?;
        if let Some(want) = shape {
            if tensor.shape() != want {
                return Err(Error::format(
                    &self.path,
                    format!(
                        "tensor '{key}' has shape {:?}, expected {want:?}",
                        tensor.shape()
                    ),
                ));
            }
        }
        let out: ArrayD<T> = match tensor {
            Tensor::F32(a) => a.mapv(|v| T::of(v as f64)),
            Tensor::F64(a) => a.mapv(T::of),
            Tensor::I64(_) => {
                return Err(Error::format(
                    &self.path,
                    format!("tensor '{key}' is I64; a floating-point tensor is needed"),
                ))
            }
        };
        if let Some(i) = out.iter().position(|v| !v.is_finite()) {
            return Err(Error::format(
                &self.path,
                format!("tensor '{key}' holds NaN or ±Inf at flat index {i}"),
            ));
        }
        Ok(out)
    }

    /// Stores `value` under `key` in the dtype of `T`.
    pub fn insert<T: Real>(&mut self, key: impl Into<String>, value: ArrayD<T>) {
        let tensor = if T::DTYPE == "f64" {
            Tensor::F64(value.mapv(|v| v.f64()))
        } else {
            Tensor::F32(value.mapv(|v| v.f64() as f32))
        };
        self.tensors.insert(key.into(), tensor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_values_dtypes_and_metadata() {
        let dir = std::env::temp_dir().join(format!("nrpm-tf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.safetensors");
        let mut f = TensorFile::new(&path);
        f.insert(
            "a.weight",
            ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.0f32, -2.0, 3.5, 0.0]).unwrap(),
        );
        f.insert(
            "b",
            ArrayD::from_shape_vec(IxDyn(&[3]), vec![1e-300f64, 2.0, -3.0]).unwrap(),
        );
        f.tensors
            .insert("n".into(), Tensor::I64(ArrayD::from_elem(IxDyn(&[]), 7)));
        f.metadata.insert("source".into(), "test".into());
        f.write(&path).unwrap();
        #[cfg(unix)]
        {
            // Same permissions as any file the process creates (the umask), not 0600.
            use std::os::unix::fs::PermissionsExt;
            let plain = dir.join("plain.json");
            std::fs::write(&plain, "{}").unwrap();
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), mode(&plain));
        }
        let g = TensorFile::read(&path).unwrap();
        assert_eq!(g.tensors, f.tensors);
        assert_eq!(g.metadata, f.metadata);
        assert!(g.array::<f32>("a.weight", Some(&[2, 3])).is_err());
        assert!(g
            .array::<f32>("missing", None)
            .unwrap_err()
            .to_string()
            .contains("missing tensor 'missing'"));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn corrupt_and_truncated_files_are_format_errors() {
        let dir = std::env::temp_dir().join(format!("nrpm-tf-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.safetensors");
        let mut f = TensorFile::new(&good);
        f.insert("w", ArrayD::from_elem(IxDyn(&[4, 4]), 1.0f32));
        f.write(&good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        for (name, data) in [
            ("trunc", bytes[..bytes.len() - 5].to_vec()),
            ("garbage", b"not a tensor file at all".to_vec()),
            ("empty", vec![]),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, data).unwrap();
            assert!(
                matches!(TensorFile::read(&p), Err(Error::Format { .. })),
                "{name}"
            );
        }
        assert!(matches!(
            TensorFile::read(dir.join("absent")),
            Err(Error::Io { .. })
        ));
        std::fs::remove_dir_all(dir).ok();
    }
}
