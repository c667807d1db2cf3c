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
    /// Two shapes that must agree do not: `arg` (the caller's argument: `weight`, `bias`,
    /// `grad_output`, …) of the public function `op`.
    #[error("{op}: {arg} must have shape {expected:?}, got {got:?}")]
    Shape {
        op: &'static str,
        arg: &'static str,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A backward pass was given inputs other than those its forward pass saw (another `x`,
    /// `weight` or geometry), which would give wrong gradients.
    #[error("{op}: {what}; backward needs the inputs of the forward pass that made the iterates")]
    Stale { op: &'static str, what: String },
    /// An input or parameter holds NaN or ±Inf; `index` has one entry per axis.
    #[error("{what} holds a non-finite value ({value}){}", at_index(.index))]
    NonFinite {
        what: &'static str,
        index: Vec<usize>,
        value: String,
    },
    /// A computation on finite inputs overflowed the floating-point range; `index` (one entry
    /// per axis) locates the first bad value of the result.
    #[error("{op}: {}", overflow_message(.index))]
    Overflow { op: &'static str, index: Vec<usize> },
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
    /// A command-line flag that cannot be used as given (it would have no effect, or it
    /// contradicts another).
    #[error("{flag} {problem}")]
    Flag { flag: String, problem: String },
    /// Records of a sharded or resumed run that do not fit together (another run's settings,
    /// duplicate or missing images, an existing file without `--resume`).
    #[error("{what}: {problem}")]
    Records { what: String, problem: String },
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
    /// An error inside one layer of a network, with the layer's state-dict key
    /// (`fc2`, `layer2.0.conv1`).
    #[error("layer {layer}: {}", source.message_in_layer())]
    InLayer {
        layer: String,
        #[source]
        source: Box<Error>,
    },
    /// A training run stopped because its numbers left the floating-point range; the
    /// [`Divergence`] says where, what to change, and what was kept.
    #[error("{0}")]
    Diverged(Box<Divergence>),
}

/// Where and how a training run diverged, and what it kept: the per-epoch history up to the
/// last finished epoch, and the folder holding that epoch's checkpoint.
#[derive(Debug)]
pub struct Divergence {
    /// 1-based epoch in which it happened.
    pub epoch: usize,
    /// Epochs planned in all.
    pub epochs: usize,
    /// 1-based step (batch) of that epoch.
    pub step: usize,
    /// Steps per epoch.
    pub steps: usize,
    /// The layer whose output left the range, when known.
    pub layer: Option<String>,
    /// The underlying error (overflow, non-finite loss).
    pub cause: Box<Error>,
    /// What to change, in words (e.g. "lower --lr (now 0.001) or raise --eps-irls").
    pub hint: String,
    /// The reports of the finished epochs (resumed ones included), as JSON.
    pub history: serde_json::Value,
    /// The checkpoint folder holding the last finished epoch, if checkpoints were written.
    pub last_checkpoint: Option<PathBuf>,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "training diverged in epoch {}/{}, step {}/{}",
            self.epoch, self.epochs, self.step, self.steps
        )?;
        let cause = match (&self.layer, self.cause.as_ref()) {
            (Some(_), Error::InLayer { .. }) => self.cause.to_string(),
            (Some(layer), other) => format!("layer {layer}: {other}"),
            (None, other) => other.to_string(),
        };
        write!(f, " ({cause}); {}", self.hint)?;
        match (&self.last_checkpoint, self.epoch > 1) {
            (Some(dir), true) => write!(
                f,
                "; the checkpoint of epoch {} is kept in {}",
                self.epoch - 1,
                dir.display()
            ),
            (Some(_), false) => write!(f, "; no epoch finished, so no checkpoint was written"),
            (None, _) => write!(f, "; no checkpoint folder was given (--out)"),
        }
    }
}

/// `[3, 17]`.
fn show_index(index: &[usize]) -> String {
    let parts: Vec<String> = index.iter().map(usize::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// ` at [3, 17]`, or nothing for a scalar.
fn at_index(index: &[usize]) -> String {
    match index.is_empty() {
        true => String::new(),
        false => format!(" at {}", show_index(index)),
    }
}

/// What an overflow means, in words.
fn overflow_message(index: &[usize]) -> String {
    format!(
        "the result overflowed to ±Inf or NaN{}: the inputs or weights are too large for this \
         precision",
        at_index(index)
    )
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

    /// This error as raised inside the layer `name` of a network (nested names are joined
    /// with dots: `layer2` + `0.conv1` → `layer2.0.conv1`); an empty name changes nothing.
    pub fn in_layer(self, name: &str) -> Self {
        match (name.is_empty(), self) {
            (true, e) => e,
            (false, Error::InLayer { layer, source }) => Error::InLayer {
                layer: format!("{name}.{layer}"),
                source,
            },
            (false, e) => Error::InLayer {
                layer: name.to_string(),
                source: Box::new(e),
            },
        }
    }

    /// The message as shown under a layer's name: an overflow is the layer's output, whatever
    /// internal function found it.
    fn message_in_layer(&self) -> String {
        match self {
            Error::Overflow { index, .. } => format!(
                "the output {}",
                overflow_message(index).trim_start_matches("the result ")
            ),
            other => other.to_string(),
        }
    }

    /// The innermost error under any [`Error::InLayer`] wrappers, and the full layer key.
    pub fn layer_root(&self) -> (Option<&str>, &Error) {
        match self {
            Error::InLayer { layer, source } => (Some(layer.as_str()), source.layer_root().1),
            other => (None, other),
        }
    }

    /// Whether the error means numbers left the floating-point range (an overflow or a
    /// non-finite value), also inside a layer.
    pub fn is_numeric_blowup(&self) -> bool {
        matches!(
            self.layer_root().1,
            Error::NonFinite { .. } | Error::Overflow { .. } | Error::Diverged(_)
        )
    }

    /// A shape mismatch of argument `arg` of `op`.
    pub fn shape(op: &'static str, arg: &'static str, expected: &[usize], got: &[usize]) -> Self {
        Error::Shape {
            op,
            arg,
            expected: expected.to_vec(),
            got: got.to_vec(),
        }
    }
}
