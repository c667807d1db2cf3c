//! Which Linear/Conv2d layers of a model are reprogrammed with NRPM, and with which λ.

use std::str::FromStr;

use crate::error::{Error, Result};
use crate::models::{Arch, Model};
use crate::nn::{LambdaParam, Layer, Matching, RobustMatch};
use crate::nrpm::{Device, Exec, NrpmConfig};
use crate::real::Real;

/// A choice of layers, among a model's Linear/Conv2d layers in execution order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerSelection {
    /// The authors' choice: every MLP layer; LeNet's two convolutions; a ResNet's block
    /// convolutions (not the stem, the 1×1 shortcuts or the head).
    Default,
    /// Every Linear and Conv2d layer.
    All,
    /// Every convolution.
    Convs,
    /// Every linear layer.
    Linears,
    /// The i-th matching layer (0-based) and all after it.
    From(usize),
    /// These keys (e.g. `fc1`, `layer2.0.conv1`).
    Names(Vec<String>),
}

impl FromStr for LayerSelection {
    type Err = Error;

    /// `default | all | convs | linears | from:I | key1,key2,…`.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "default" => Self::Default,
            "all" => Self::All,
            "convs" => Self::Convs,
            "linears" => Self::Linears,
            _ => {
                match s.strip_prefix("from:") {
                    Some(i) => Self::From(i.parse().map_err(|_| {
                        Error::config("layers", s, "from:I needs a layer index I ≥ 0")
                    })?),
                    None => Self::Names(s.split(',').map(|k| k.trim().to_string()).collect()),
                }
            }
        })
    }
}

impl LayerSelection {
    /// Whether the `index`-th matching layer `key` (a convolution when `conv`) is selected.
    fn picks(&self, arch: &Arch, index: usize, key: &str, conv: bool) -> bool {
        match self {
            Self::Default => match arch {
                Arch::Mlp { .. } => true,
                Arch::LeNet => conv,
                Arch::ResNet { .. } => {
                    conv && key.starts_with("layer") && !key.contains("shortcut")
                }
            },
            Self::All => true,
            Self::Convs => conv,
            Self::Linears => !conv,
            Self::From(i) => index >= *i,
            Self::Names(keys) => keys.iter().any(|k| k == key),
        }
    }
}

impl<T: Real> Model<T> {
    /// Sets every matching layer back to LPM.
    pub fn set_lpm(&mut self) {
        self.net.visit_layers_mut("", &mut |_, layer| match layer {
            Layer::Linear(l) => l.matching = Matching::Lpm,
            Layer::Conv2d(c) => c.matching = Matching::Lpm,
            _ => {}
        });
    }

    /// A copy with the same weights and every matching layer LPM: the gradient source of a
    /// BPDA-style attack ([`crate::attacks::evaluate_transfer`]), which differentiates the
    /// linear layers instead of the IRLS steps.
    pub fn lpm_twin(&self) -> Self {
        let mut twin = self.clone();
        twin.set_lpm();
        twin
    }

    /// Reprograms the selected layers with NRPM (`cfg`: norm, K, ε, groups) and λ — one value
    /// for all layers, or one per selected layer in execution order — and sets the others to
    /// LPM. Returns the selected keys.
    ///
    /// # Errors
    /// [`Error::UnknownName`] for a named key that is not a Linear/Conv2d layer;
    /// [`Error::Config`] if nothing is selected, the number of λ
    /// values fits neither 1 nor the selection, or a λ is invalid for `param`.
    pub fn reprogram(
        &mut self,
        selection: &LayerSelection,
        cfg: NrpmConfig,
        lambdas: &[f64],
        param: LambdaParam,
    ) -> Result<Vec<String>> {
        let layers = self.matching_layers();
        let arch = self.spec.arch.clone();
        let chosen: Vec<String> = layers
            .iter()
            .enumerate()
            .filter(|(i, (key, conv))| selection.picks(&arch, *i, key, *conv))
            .map(|(_, (key, _))| key.clone())
            .collect();
        if let LayerSelection::Names(keys) = selection {
            if let Some(missing) = keys.iter().find(|k| !chosen.contains(k)) {
                let known: Vec<&str> = layers.iter().map(|(k, _)| k.as_str()).collect();
                return Err(Error::UnknownName {
                    what: "layer",
                    name: missing.clone(),
                    expected: known.join(", "),
                });
            }
        }
        if chosen.is_empty() {
            return Err(Error::config(
                "layers",
                format!("{selection:?}"),
                "selects no layer of this model",
            ));
        }
        if lambdas.len() != 1 && lambdas.len() != chosen.len() {
            return Err(Error::Config {
                name: "lambda",
                value: format!("{} values", lambdas.len()),
                rule: "give one λ for all layers or one per reprogrammed layer",
            });
        }
        let mut matches = Vec::with_capacity(chosen.len());
        for i in 0..chosen.len() {
            let lambda = lambdas[if lambdas.len() == 1 { 0 } else { i }];
            matches.push(RobustMatch::<T>::new(cfg.with_lambda(lambda)?, param)?);
        }
        let mut next = matches.into_iter();
        self.net.visit_layers_mut("", &mut |key, layer| {
            let slot = match layer {
                Layer::Linear(l) => &mut l.matching,
                Layer::Conv2d(c) => &mut c.matching,
                _ => return,
            };
            *slot = if chosen.iter().any(|k| k == key) {
                Matching::Nrpm(next.next().expect("one match per chosen layer"))
            } else {
                Matching::Lpm
            };
        });
        Ok(chosen)
    }

    /// Runs every NRPM layer's operator on `exec` (e.g. [`Exec::Cuda`]); LPM layers and the
    /// other layers stay on the CPU. Returns the number of NRPM layers changed. Layers
    /// reprogrammed later start on [`Exec::Fused`] again.
    pub fn set_exec(&mut self, exec: Exec) -> usize {
        let mut count = 0;
        self.net.visit_layers_mut("", &mut |_, layer| {
            let matching = match layer {
                Layer::Linear(l) => &mut l.matching,
                Layer::Conv2d(c) => &mut c.matching,
                _ => return,
            };
            if let Matching::Nrpm(m) = matching {
                m.exec = exec;
                count += 1;
            }
        });
        count
    }

    /// Puts the NRPM layers on `device` after checking that it works ([`Device::open`]);
    /// returns the device's name.
    ///
    /// # Errors
    /// [`crate::Error::NoCuda`] (and the other errors of [`Device::open`]) when the device
    /// cannot run the operator; the model is then unchanged.
    pub fn set_device(&mut self, device: Device) -> Result<String> {
        let name = device.open()?;
        self.set_exec(device.exec());
        Ok(name)
    }
}
