//! Which Linear/Conv2d layers of a model are reprogrammed with NRPM, and with which λ.

use std::str::FromStr;

use crate::error::{Error, Result};
use crate::models::{Arch, Model, NrpmLayer};
use crate::nn::{LambdaParam, Layer, Matching};
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

impl std::fmt::Display for LayerSelection {
    /// The CLI spelling: `default`, `all`, `convs`, `linears`, `from:I`, `key1,key2`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::All => f.write_str("all"),
            Self::Convs => f.write_str("convs"),
            Self::Linears => f.write_str("linears"),
            Self::From(i) => write!(f, "from:{i}"),
            Self::Names(keys) => f.write_str(&keys.join(",")),
        }
    }
}

impl LayerSelection {
    /// Whether the `index`-th matching layer `key` (a convolution when `conv`) is selected.
    fn picks(&self, arch: &Arch, index: usize, key: &str, conv: bool) -> bool {
        match self {
            Self::Default => match arch {
                Arch::Mlp { .. } | Arch::Custom => true,
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

    /// The keys `selection` picks among this model's Linear/Conv2d layers: in the order typed
    /// for [`LayerSelection::Names`], in execution order otherwise.
    ///
    /// # Errors
    /// [`Error::UnknownName`] for a named key that is not a Linear/Conv2d layer (or is named
    /// twice); [`Error::Config`] if nothing is selected.
    pub fn select_layers(&self, selection: &LayerSelection) -> Result<Vec<String>> {
        let layers = self.matching_layers();
        let known = || {
            layers
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let chosen: Vec<String> = match selection {
            LayerSelection::Names(keys) => {
                for (i, key) in keys.iter().enumerate() {
                    if !layers.iter().any(|(k, _)| k == key) || keys[..i].contains(key) {
                        return Err(Error::UnknownName {
                            what: "layer (or a layer named twice)",
                            name: key.clone(),
                            expected: known(),
                        });
                    }
                }
                keys.clone()
            }
            _ => layers
                .iter()
                .enumerate()
                .filter(|(i, (key, conv))| selection.picks(&self.spec.arch, *i, key, *conv))
                .map(|(_, (key, _))| key.clone())
                .collect(),
        };
        if chosen.is_empty() {
            return Err(Error::config(
                "layers",
                selection,
                "selects no layer of this model",
            ));
        }
        Ok(chosen)
    }

    /// Reprograms the selected layers with NRPM, every one with `cfg` (norm, K, ε, groups and
    /// λ: λ lives in the config only) and λ stored under `param`, and sets the others to LPM.
    /// Returns the selected keys (in the order named for [`LayerSelection::Names`], in
    /// execution order otherwise). For one λ per layer, follow with [`Model::set_lambdas`],
    /// or give each layer its own record with [`Model::reprogram_layers`].
    ///
    /// # Errors
    /// As [`Model::select_layers`]; [`Error::Config`] if λ is invalid for `param` (λ = σ(θ)
    /// needs λ in (0, 1)). The model is unchanged on error.
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// use nrpm::models::{LayerSelection, Model, ModelSpec};
    /// use nrpm::nn::LambdaParam;
    /// let mut model = Model::<f32>::new(ModelSpec::from_name("mlp3", 1, 28)?);
    /// let cfg = nrpm::NrpmConfig::builder().k(1).eps(5e-5).lambda(0.7).build()?;
    /// let keys = model.reprogram(&LayerSelection::Default, cfg, LambdaParam::Raw)?;
    /// assert_eq!(keys, ["fc1", "fc2", "fc3"]);
    /// model.set_lambdas(&[("fc3".into(), 0.9)])?;
    /// assert!((model.lambdas()[2].1 - 0.9).abs() < 1e-6); // stored as f32
    /// # Ok(()) }
    /// ```
    pub fn reprogram(
        &mut self,
        selection: &LayerSelection,
        cfg: NrpmConfig,
        param: LambdaParam,
    ) -> Result<Vec<String>> {
        let chosen = self.select_layers(selection)?;
        let layers: Vec<NrpmLayer> = chosen
            .iter()
            .map(|key| NrpmLayer {
                key: key.clone(),
                operator: cfg,
                lambda_param: param,
            })
            .collect();
        self.reprogram_layers(&layers)?;
        Ok(chosen)
    }

    /// Sets λ of the named NRPM layers (`(key, λ)` pairs).
    ///
    /// # Errors
    /// [`Error::UnknownName`] for a key that is not an NRPM layer; [`Error::Config`] for a λ
    /// its parametrisation cannot take. Layers before the bad one keep their new λ.
    pub fn set_lambdas(&mut self, values: &[(String, f64)]) -> Result<()> {
        let nrpm: Vec<String> = self.lambdas().into_iter().map(|(k, _)| k).collect();
        if let Some((key, _)) = values.iter().find(|(k, _)| !nrpm.contains(k)) {
            return Err(Error::UnknownName {
                what: "NRPM layer",
                name: key.clone(),
                expected: nrpm.join(", "),
            });
        }
        let mut result = Ok(());
        self.net.visit_layers_mut("", &mut |key, layer| {
            if let (Some(Matching::Nrpm(m)), Some((_, lambda))) =
                (layer.matching_mut(), values.iter().find(|(k, _)| k == key))
            {
                if result.is_ok() {
                    result = m.set_lambda(*lambda);
                }
            }
        });
        result
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
                m.set_exec(exec);
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
