//! Flags shared by the subcommands that load a model and data (`eval`, `train`, …), and the
//! functions that turn them into a [`Model`] and a [`Dataset`].

use std::path::PathBuf;
use std::str::FromStr;

use clap::Args;

use crate::data::{self, Dataset, Split};
use crate::error::{Error, Result};
use crate::models::{LayerSelection, Model, ModelSpec};
use crate::nn::LambdaParam;
use crate::nrpm::{Device, Norm, NrpmConfig};

/// Which model, which checkpoint, and how it is reprogrammed.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Architecture: mlp1 | mlp2 | mlp3 | lenet | resnet{10,18,34,50}[-tiny].
    #[arg(long, default_value = "mlp3")]
    pub model: String,
    /// Checkpoint (safetensors, PyTorch key names); without it the weights are initialised
    /// from --init-seed.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Seed of the initial weights when no checkpoint is given.
    #[arg(long, default_value_t = 0)]
    pub init_seed: u64,
    /// Add ReLU between MLP layers (the authors' MLP has none).
    #[arg(long)]
    pub mlp_relu: bool,
    /// Add the convolution bias (the authors' robust convolution never does).
    #[arg(long)]
    pub conv_bias: bool,
    /// Take λ from the checkpoint's robust_sum slots where present.
    #[arg(long)]
    pub lambda_from_weights: bool,
    /// Matching of the selected layers: lpm | l1 | huber | mcp | hm.
    #[arg(long, default_value = "lpm")]
    pub norm: String,
    /// IRLS steps K.
    #[arg(long, default_value_t = 3)]
    pub k: usize,
    /// ε of the IRLS weight 1/(r + ε).
    #[arg(long, default_value_t = 1e-3)]
    pub eps_irls: f64,
    /// λ for every reprogrammed layer, or one per layer: 0.7 or 0.5,0.3,0.1.
    #[arg(long, default_value = "1.0")]
    pub lambda: String,
    /// γ of mcp and hm.
    #[arg(long, default_value_t = crate::nrpm::norm::DEFAULT_GAMMA)]
    pub gamma: f64,
    /// δ of huber and hm.
    #[arg(long, default_value_t = crate::nrpm::norm::DEFAULT_DELTA)]
    pub delta: f64,
    /// Split each operator's D terms into N groups.
    #[arg(long, default_value_t = 1)]
    pub group: usize,
    /// Layers to reprogram: default | all | convs | linears | from:I | key1,key2.
    #[arg(long, default_value = "default")]
    pub layers: String,
    /// λ parametrisation: raw (λ = θ) or sigmoid (λ = sigmoid(θ), for learning λ).
    #[arg(long, default_value = "raw")]
    pub lambda_param: String,
    /// Where the NRPM operators run: cpu | cuda | cuda:N (the other layers stay on the CPU).
    /// CUDA needs nrpm built with `--features cuda`, an NVIDIA driver, NVRTC and a GPU.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// Parses a comma-separated list of numbers (`0,0.05,0.1`).
///
/// # Errors
/// [`Error::Config`] naming `what` for an empty list or an entry that is not a finite number.
pub fn parse_list<T: FromStr>(what: &'static str, s: &str) -> Result<Vec<T>> {
    let items: Result<Vec<T>> = s
        .split(',')
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| Error::config(what, v, "not a number"))
        })
        .collect();
    let items = items?;
    if items.is_empty() {
        return Err(Error::config(what, s, "needs at least one value"));
    }
    Ok(items)
}

impl ModelArgs {
    /// The operator configuration of the reprogrammed layers (λ set per layer later).
    ///
    /// # Errors
    /// Unknown norm, values out of range.
    pub fn nrpm_config(&self) -> Result<NrpmConfig> {
        let norm = Norm::from_name(&self.norm, self.gamma, self.delta)?;
        NrpmConfig::new(norm, self.k, self.eps_irls, 1.0)?.with_groups(self.group)
    }

    /// The λ parametrisation.
    ///
    /// # Errors
    /// [`Error::UnknownName`] for anything but raw or sigmoid.
    pub fn lambda_param(&self) -> Result<LambdaParam> {
        match self.lambda_param.as_str() {
            "raw" => Ok(LambdaParam::Raw),
            "sigmoid" => Ok(LambdaParam::Sigmoid),
            other => Err(Error::UnknownName {
                what: "lambda parametrisation",
                name: other.into(),
                expected: "raw, sigmoid".into(),
            }),
        }
    }

    /// The device of `--device`, checked to work (for CUDA: driver, NVRTC, a GPU, the kernels
    /// compiled).
    ///
    /// # Errors
    /// [`Error::UnknownName`] for a bad name; [`Error::NoCuda`] (one line saying why: built
    /// without the cuda feature, libcuda not found, no CUDA device, …) when CUDA is unusable.
    pub fn device(&self) -> Result<Device> {
        let device: Device = self.device.parse()?;
        device.open()?;
        Ok(device)
    }

    /// Builds the model for images `[C, H, W]`, loads the checkpoint, reprograms the
    /// selected layers (nothing is reprogrammed for `--norm lpm`) and puts their operators on
    /// `--device`, which is checked first.
    ///
    /// # Errors
    /// Unknown names, bad checkpoints (every missing or mis-shaped key), bad flags, an
    /// unusable `--device`.
    pub fn build(&self, image: [usize; 3]) -> Result<Model<f32>> {
        let device = self.device()?;
        let [c, h, w] = image;
        if h != w {
            return Err(Error::config(
                "image",
                format!("{h}×{w}"),
                "models take square images",
            ));
        }
        let spec = ModelSpec::from_name(&self.model, c, h)?.with_mlp_relu(self.mlp_relu);
        let spec = ModelSpec {
            conv_bias: self.conv_bias,
            ..spec
        };
        let mut model = Model::<f32>::new(spec);
        let cfg = self.nrpm_config()?;
        let lambdas: Vec<f64> = parse_list("lambda", &self.lambda)?;
        if !cfg.norm().is_lpm() {
            let selection: LayerSelection = self.layers.parse()?;
            model.reprogram(&selection, cfg, &lambdas, self.lambda_param()?)?;
        }
        match &self.weights {
            Some(path) => model.load_file(path, self.lambda_from_weights)?,
            None => model.init(self.init_seed),
        }
        model.set_exec(device.exec());
        Ok(model)
    }
}

/// Which images.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// mnist-subset (shipped), or a folder of MNIST-like IDX files or CIFAR-10 binary batches.
    #[arg(long, default_value = "mnist-subset")]
    pub data: String,
}

impl DataArgs {
    /// Loads one split.
    ///
    /// # Errors
    /// Missing or malformed files.
    pub fn load(&self, split: Split) -> Result<Dataset> {
        data::load(&self.data, split)
    }
}
