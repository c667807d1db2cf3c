//! Loading and saving a model's state dict as safetensors, with PyTorch key names.
//!
//! Loading is strict: every parameter and buffer of the model must be in the file with the
//! same shape, and every tensor of the file must belong to the model — except the λ slots
//! `*.robust_sum.lmbd` / `*.robust_sum.beta` (the authors store them for every layer; they
//! are read only into layers that run NRPM, and only when asked) and BatchNorm's
//! `num_batches_tracked`. One error lists every problem.

use std::collections::BTreeSet;

use ndarray::ArrayD;

use crate::error::{Error, Result};
use crate::models::{Model, ModelRecord};
use crate::nn::{Layer, Role};
use crate::real::Real;
use crate::tensor_file::{Tensor, TensorFile};

/// Whether a key is optional in checkpoints.
fn optional(key: &str) -> bool {
    key.contains(".robust_sum.") || key.ends_with("num_batches_tracked")
}

impl<T: Real> Model<T> {
    /// Loads parameters and buffers from `file`. With `use_file_lambda`, NRPM layers take their
    /// θ from the file's `robust_sum` slot when present; otherwise λ stays as configured.
    ///
    /// # Errors
    /// [`Error::Format`] naming every missing, mis-shaped, non-finite or unexpected key.
    pub fn load(&mut self, file: &TensorFile, use_file_lambda: bool) -> Result<()> {
        let mut problems = Vec::new();
        let mut used = BTreeSet::new();
        self.visit_mut(&mut |mut p| {
            let lambda = p.role == Role::Lambda;
            if lambda && !use_file_lambda {
                return;
            }
            match file.tensors.get(&p.key) {
                None if lambda => {}
                None => problems.push(format!("missing '{}' {:?}", p.key, p.value.shape())),
                Some(_) => match file.array::<T>(&p.key, Some(p.value.shape())) {
                    Ok(v) => {
                        p.value.assign(&v);
                        used.insert(p.key);
                    }
                    Err(Error::Format { msg, .. }) => problems.push(msg),
                    Err(e) => problems.push(e.to_string()),
                },
            }
        });
        self.net.visit_layers_mut("", &mut |key, layer| {
            if let Layer::BatchNorm2d(bn) = layer {
                let k = format!("{key}.num_batches_tracked");
                if let Some(Tensor::I64(n)) = file.tensors.get(&k) {
                    bn.set_batches_tracked(n.iter().copied().next().unwrap_or(0));
                }
            }
        });
        let mut model_keys = BTreeSet::new();
        self.visit(&mut |p| {
            model_keys.insert(p.key);
        });
        for key in file.tensors.keys() {
            if !model_keys.contains(key) && !optional(key) {
                problems.push(format!(
                    "unexpected '{key}' (not a tensor of {})",
                    self.spec.name
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::format(
                &file.path,
                format!(
                    "does not fit model {}: {}",
                    self.spec.name,
                    problems.join("; ")
                ),
            ))
        }
    }

    /// Reads `path` and loads it (see [`Model::load`]).
    ///
    /// # Errors
    /// As [`TensorFile::read`] and [`Model::load`].
    pub fn load_file(
        &mut self,
        path: impl AsRef<std::path::Path>,
        use_file_lambda: bool,
    ) -> Result<()> {
        self.load(&TensorFile::read(path)?, use_file_lambda)
    }

    /// The state dict: every parameter, buffer, λ slot of NRPM layers, and BatchNorm counters,
    /// with the spec as JSON metadata under `nrpm_model`.
    pub fn state_dict(&self) -> TensorFile {
        let mut file = TensorFile::new(std::path::PathBuf::new());
        self.visit(&mut |p| file.insert(p.key, p.value.to_owned()));
        self.net.visit_layers("", &mut |key, layer| {
            if let Layer::BatchNorm2d(bn) = layer {
                let n = bn.running_stats().2;
                file.tensors.insert(
                    format!("{key}.num_batches_tracked"),
                    Tensor::I64(ArrayD::from_elem(ndarray::IxDyn(&[]), n)),
                );
            }
        });
        self.record().store(&mut file);
        file
    }

    /// The model a checkpoint written by nrpm holds, rebuilt from its record (architecture
    /// flags, reprogrammed layers with their operators and λ parametrisation) with every tensor
    /// loaded, θ included: it computes exactly what the saved model computed.
    ///
    /// # Errors
    /// [`Error::Format`] when the file carries no nrpm record (e.g. the authors' checkpoints:
    /// build the model with [`Model::new`], reprogram it, then [`Model::load`]), or does not
    /// fit its own record; I/O errors.
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// use nrpm::models::{LayerSelection, Model, ModelSpec};
    /// use nrpm::nn::LambdaParam;
    /// let mut model = Model::<f32>::new(ModelSpec::from_name("mlp2", 1, 28)?.with_mlp_relu(true));
    /// model.init(3);
    /// let cfg = nrpm::NrpmConfig::builder().k(1).eps(5e-5).lambda(0.6).build()?;
    /// model.reprogram(&LayerSelection::Default, cfg, LambdaParam::Sigmoid)?;
    /// let path = std::env::temp_dir().join(format!("nrpm-doc-{}.safetensors", std::process::id()));
    /// model.state_dict().write(&path)?;
    /// let back = Model::<f32>::from_checkpoint(&path)?; // nothing else said
    /// assert_eq!(back.record(), model.record()); // ReLU, NRPM layers, λ = σ(θ)
    /// let x = nrpm::ndarray::Array4::from_elem((1, 1, 28, 28), 0.5_f32);
    /// assert_eq!(back.logits(x.view())?, model.logits(x.view())?);
    /// # std::fs::remove_file(path).ok();
    /// # Ok(()) }
    /// ```
    pub fn from_checkpoint(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let file = TensorFile::read(path)?;
        let record = ModelRecord::from_file(&file)?
            .filter(|r| r.nrpm_layers.is_some())
            .ok_or_else(|| {
                Error::format(
                    &file.path,
                    "carries no nrpm model record (not written by nrpm ≥ 0.2): build the \
                     model with Model::new, reprogram it, then load it",
                )
            })?;
        let mut model = record.build::<T>()?;
        model.load(&file, true)?;
        Ok(model)
    }
}
