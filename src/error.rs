//! The crate's one error type, [`Error`], and its [`Result`] alias.
//!
//! Every fallible library function returns `Result<T, Error>`; variants say what went wrong and
//! where (operation, shapes, path, key, value). Messages are lower-case and fit on one line, so
//! the CLI can print them as they are and exit with status 1.

use std::path::PathBuf;

/// Everything that can go wrong in nrpm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are named for what they hold
pub enum Error {
    /// Two shapes that must agree do not.
    #[error("{op}: expected shape {expected:?}, got {got:?}")]
    Shape {
        op: &'static str,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// An input or parameter holds NaN or ±Inf.
    #[error("{what} holds a non-finite value ({value}) at flat index {index}")]
    NonFinite {
        what: &'static str,
        index: usize,
        value: String,
    },
    /// A computation on finite inputs overflowed the floating-point range.
    #[error("{op}: result overflowed to a non-finite value at flat index {index}; inputs are too large for this precision")]
    Overflow { op: &'static str, index: usize },
    /// A backward pass was given the cache of another layer (a caller's mistake).
    #[error("{layer}: the cache passed to backward belongs to another kind of layer")]
    WrongCache { layer: &'static str },
    /// A hyper-parameter is outside its domain.
    #[error("invalid {name} = {value}: {rule}")]
    Config {
        name: &'static str,
        value: String,
        rule: &'static str,
    },
    /// A name (norm, model, attack, experiment, …) that nrpm does not know.
    #[error("unknown {what} '{name}' (expected one of: {expected})")]
    UnknownName {
        what: &'static str,
        name: String,
        expected: String,
    },
    /// A data or checkpoint file is malformed (bad magic, truncated, missing key, …).
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// An I/O error, with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// CUDA cannot be used here (no driver, no NVRTC, no device, or built without `cuda`).
    #[error("CUDA unavailable: {0}")]
    NoCuda(String),
    /// NVRTC rejected a kernel; `log` is the compiler's message.
    #[error("NVRTC could not compile {kernel}: {log}")]
    Compile { kernel: &'static str, log: String },
    /// A CUDA driver call failed.
    #[error("CUDA {op}: {msg}")]
    Cuda { op: &'static str, msg: String },
    /// The build lacks a cargo feature this call needs.
    #[error("{what} needs nrpm built with the cargo feature '{feature}'")]
    FeatureMissing {
        what: &'static str,
        feature: &'static str,
    },
}

/// `Result` with nrpm's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A malformed-file error for `path`.
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// A hyper-parameter error.
    pub fn config(name: &'static str, value: impl std::fmt::Display, rule: &'static str) -> Self {
        Error::Config {
            name,
            value: value.to_string(),
            rule,
        }
    }

    /// A shape mismatch in `op`.
    pub fn shape(op: &'static str, expected: &[usize], got: &[usize]) -> Self {
        Error::Shape {
            op,
            expected: expected.to_vec(),
            got: got.to_vec(),
        }
    }
}
