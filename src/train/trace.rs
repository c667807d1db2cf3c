//! Watching training step by step: the [`StepObserver`] that [`crate::train::train_observed`]
//! calls before every SGD update, and [`StepTrace`], the observer that writes one JSON line of
//! numbers per step (what a divergence is diagnosed from).
//!
//! Per step and per parameter tensor θ with gradient g (the gradient of the step's mean loss,
//! before momentum and weight decay):
//!
//! ```text
//! param_max[key] = max |θ|        (before the update)
//! grad_norm[key] = sqrt(Σ g²)
//! grad_max[key]  = max |g|
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use ndarray::ArrayView4;
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::models::Model;
use crate::real::Real;
use crate::train::BatchGradient;

/// What an observer sees of one SGD step, before the update.
pub struct StepView<'a, T: Real> {
    /// 1-based epoch.
    pub epoch: usize,
    /// 1-based step within the epoch.
    pub step: usize,
    /// Steps in the epoch.
    pub steps: usize,
    /// Learning rate of the step.
    pub lr: f64,
    /// The batch `[B, C, H, W]` the step trains on (noise added, if any; clean images under
    /// adversarial training).
    pub x: ArrayView4<'a, T>,
    /// The indices of its images in the training dataset.
    pub indices: &'a [usize],
    /// Its labels.
    pub labels: &'a [usize],
    /// The model, with the parameters before the update.
    pub model: &'a Model<T>,
    /// The batch's gradient, or the error that stopped it (a divergence: an overflow in the
    /// forward or backward pass, or a non-finite loss); training stops after such a step.
    pub gradient: std::result::Result<&'a BatchGradient<T>, &'a Error>,
}

/// Called by [`crate::train::train_observed`] once per step, before the update.
pub trait StepObserver<T: Real> {
    /// Looks at one step. An error stops training and is returned by `train_observed`.
    ///
    /// # Errors
    /// Whatever the observer fails with (e.g. a trace file that cannot be written).
    fn observe(&mut self, step: &StepView<'_, T>) -> Result<()>;
}

/// The observer that looks at nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserver;

impl<T: Real> StepObserver<T> for NoObserver {
    fn observe(&mut self, _: &StepView<'_, T>) -> Result<()> {
        Ok(())
    }
}

/// Writes one JSON object per step to a file (JSON lines):
/// `{"epoch", "step", "lr", "images": [index in the training data], "loss", "param_max": {key: max|θ|}, "grad_norm": {key: ‖g‖₂},
/// "grad_max": {key: max|g|}, "lambda": {layer: λ}}`, where `loss` is the step's objective per
/// image (clean + adversarial cross-entropy under `clean+adv`). A step that failed has
/// `"error"` (the message) instead of the loss and gradient fields.
pub struct StepTrace {
    out: BufWriter<File>,
    path: std::path::PathBuf,
}

impl StepTrace {
    /// Creates (or truncates) the trace file.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be created.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(Self {
            out: BufWriter::new(file),
            path: path.to_path_buf(),
        })
    }

    /// The line of one step.
    pub fn line<T: Real>(step: &StepView<'_, T>) -> Value {
        let mut param_max = Map::new();
        step.model.visit(&mut |p| {
            param_max.insert(p.key.clone(), json!(max_abs(p.value.iter())));
        });
        let lambda: Map<String, Value> = step
            .model
            .lambdas()
            .into_iter()
            .map(|(k, l)| (k, json!(l)))
            .collect();
        let mut line = json!({
            "epoch": step.epoch, "step": step.step, "lr": step.lr, "images": step.indices,
            "param_max": param_max, "lambda": lambda,
        });
        match step.gradient {
            Ok(g) => {
                let b = step.labels.len().max(1) as f64;
                line["loss"] = json!(g.loss_sum / b);
                let (norm, max): (Map<_, _>, Map<_, _>) = g
                    .grads
                    .map
                    .iter()
                    .map(|(k, g)| {
                        let ss: f64 = g.iter().map(|v| v.f64() * v.f64()).sum();
                        (
                            (k.clone(), json!(ss.sqrt())),
                            (k.clone(), json!(max_abs(g.iter()))),
                        )
                    })
                    .unzip();
                line["grad_norm"] = Value::Object(norm);
                line["grad_max"] = Value::Object(max);
            }
            Err(e) => line["error"] = json!(e.to_string()),
        }
        line
    }
}

/// max |v| over the values (NaN propagates as NaN; JSON writes it as null).
fn max_abs<'a, T: Real + 'a>(values: impl Iterator<Item = &'a T>) -> f64 {
    values.fold(0.0, |m: f64, v| {
        let a = v.f64().abs();
        if a.is_nan() || m.is_nan() {
            f64::NAN
        } else {
            m.max(a)
        }
    })
}

impl<T: Real> StepObserver<T> for StepTrace {
    fn observe(&mut self, step: &StepView<'_, T>) -> Result<()> {
        let line = Self::line(step).to_string();
        writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}
