//! What a checkpoint written by nrpm says about the model it holds, so that loading it rebuilds
//! that model: the [`ModelSpec`] (architecture, ReLU, conv bias, input, classes) and, for every
//! reprogrammed layer, its operator (norm with γ and δ, K, ε, groups, λ) and λ parametrisation.
//!
//! ```text
//! safetensors metadata   "nrpm_model" = { "spec": ModelSpec,
//!                                         "nrpm_layers": [{ "key": "fc1", "operator": NrpmConfig,
//!                                                           "lambda_param": "Sigmoid" }, …] }
//! tensors                <key>.robust_sum.lmbd / .beta = θ, with λ = θ (Raw) or σ(θ) (Sigmoid)
//! ```
//!
//! One metadata key holds it all: safetensors keeps metadata in a hash map whose order varies
//! from run to run, and a checkpoint must be the same bytes for the same model. (nrpm 0.1 wrote
//! the bare spec under the same key; such files rebuild their spec but not their layers.)
//!
//! The authors' checkpoints carry none of this: [`ModelRecord::from_file`] gives `None` for
//! them, and the caller decides the model and its reprogramming.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::{Model, ModelSpec};
use crate::nn::{LambdaParam, Matching, RobustMatch};
use crate::nrpm::NrpmConfig;
use crate::real::Real;
use crate::tensor_file::TensorFile;

/// Metadata key of the record.
pub const RECORD_KEY: &str = "nrpm_model";

/// One reprogrammed (NRPM) layer: its state-dict key, its operator and how θ maps to λ.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NrpmLayer {
    /// State-dict key of the Linear/Conv2d layer (`fc1`, `layer2.0.conv1`).
    pub key: String,
    /// The operator: norm (γ, δ), K, ε, groups, and λ as it was when recorded.
    pub operator: NrpmConfig,
    /// λ = θ or λ = sigmoid(θ).
    pub lambda_param: LambdaParam,
}

/// A model's setup apart from its tensors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Architecture, input, classes, architecture flags.
    pub spec: ModelSpec,
    /// The NRPM layers in execution order (empty: every layer is LPM); `None` when the file
    /// records the spec but not the layers (checkpoints of nrpm before 0.2).
    pub nrpm_layers: Option<Vec<NrpmLayer>>,
}

impl ModelRecord {
    /// The record stored in `file`'s metadata, or `None` when the file has none (the authors'
    /// checkpoints, files from other tools).
    ///
    /// # Errors
    /// [`Error::Format`] if the metadata is there but is not a valid spec or layer list (a
    /// configuration out of its domain included).
    pub fn from_file(file: &TensorFile) -> Result<Option<Self>> {
        let Some(text) = file.metadata.get(RECORD_KEY) else {
            return Ok(None);
        };
        let record_error = match serde_json::from_str::<ModelRecord>(text) {
            Ok(record) => return Ok(Some(record)),
            Err(e) => e,
        };
        match serde_json::from_str::<ModelSpec>(text) {
            Ok(spec) => Ok(Some(Self {
                spec,
                nrpm_layers: None,
            })),
            Err(_) => Err(Error::format(
                &file.path,
                format!("metadata '{RECORD_KEY}' is not a valid model record: {record_error}"),
            )),
        }
    }

    /// Writes the record into `file`'s metadata.
    pub fn store(&self, file: &mut TensorFile) {
        let text = serde_json::to_string(self).expect("a record serialises");
        file.metadata.insert(RECORD_KEY.into(), text);
    }

    /// The model this record describes, with zero weights: built from the spec and
    /// reprogrammed layer by layer (λ as recorded; loading the checkpoint's θ replaces it).
    ///
    /// # Errors
    /// [`Error::Config`] for a custom network (its layers are not in the record);
    /// [`Error::UnknownName`] if a recorded key is not a Linear/Conv2d layer of the spec;
    /// [`Error::Config`] for a λ its parametrisation cannot take.
    pub fn build<T: Real>(&self) -> Result<Model<T>> {
        if self.spec.arch == crate::models::Arch::Custom {
            return Err(Error::config(
                "model",
                "custom",
                "a network of custom layers cannot be rebuilt from its record: build it, then \
                 Model::load the checkpoint",
            ));
        }
        let mut model = Model::new(self.spec.clone());
        model.reprogram_layers(self.nrpm_layers.as_deref().unwrap_or(&[]))?;
        Ok(model)
    }
}

impl<T: Real> Model<T> {
    /// The same model in precision `U` (e.g. f64 for certificates, which hold for the
    /// real-valued network): the same spec, NRPM layers, λ and parameters, converted.
    ///
    /// # Errors
    /// A network of custom layers (it cannot be rebuilt from its record); load errors.
    pub fn to_precision<U: Real>(&self) -> Result<Model<U>> {
        let mut out = self.record().build::<U>()?;
        out.load(&self.state_dict(), true)?;
        Ok(out)
    }

    /// The model's setup as a checkpoint records it: spec and NRPM layers with their current λ.
    pub fn record(&self) -> ModelRecord {
        let mut layers = Vec::new();
        self.net.visit_layers("", &mut |key, layer| {
            if let Some(Matching::Nrpm(m)) = layer.matching() {
                if let Ok(operator) = m.config() {
                    layers.push(NrpmLayer {
                        key: key.to_string(),
                        operator,
                        lambda_param: m.param(),
                    });
                }
            }
        });
        ModelRecord {
            spec: self.spec.clone(),
            nrpm_layers: Some(layers),
        }
    }

    /// Reprograms exactly the listed layers (each with its own operator, λ and
    /// parametrisation) and sets every other Linear/Conv2d layer to LPM.
    ///
    /// # Errors
    /// [`Error::UnknownName`] for a key that is not a Linear/Conv2d layer of this model, or a
    /// key listed twice; [`Error::Config`] for a λ its parametrisation cannot take. The model
    /// is unchanged on error.
    pub fn reprogram_layers(&mut self, layers: &[NrpmLayer]) -> Result<()> {
        let known: Vec<String> = self.matching_layers().into_iter().map(|(k, _)| k).collect();
        let mut matches = Vec::with_capacity(layers.len());
        for (i, l) in layers.iter().enumerate() {
            if !known.contains(&l.key) || layers[..i].iter().any(|p| p.key == l.key) {
                return Err(Error::UnknownName {
                    what: "layer (or a layer given twice)",
                    name: l.key.clone(),
                    expected: known.join(", "),
                });
            }
            matches.push((
                l.key.as_str(),
                RobustMatch::<T>::new(l.operator, l.lambda_param)?,
            ));
        }
        self.net.visit_layers_mut("", &mut |key, layer| {
            if let Some(slot) = layer.matching_mut() {
                *slot = match matches.iter().position(|(k, _)| *k == key) {
                    Some(i) => Matching::Nrpm(matches[i].1.clone()),
                    None => Matching::Lpm,
                };
            }
        });
        Ok(())
    }
}
