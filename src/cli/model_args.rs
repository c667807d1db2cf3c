//! `--model`, `--weights` and the reprogramming flags, shared by `eval`, `train` (and every
//! command that loads a model), and how they combine with what a checkpoint records.
//!
//! ```text
//! checkpoint written by nrpm (it records its spec and NRPM layers)
//!     the model is rebuilt as saved: architecture flags, reprogrammed layers, their operators,
//!     λ parametrisation and λ (θ from the file); a flag that is given wins over the record,
//!     with one "note:" line per flag that changes something
//! the authors' checkpoints, and runs without --weights (no record)
//!     the flags decide; --norm lpm (the default) reprograms nothing, and then any other
//!     reprogramming flag is refused, since it would have no effect
//! ```
//!
//! Flags that would have no effect are refused rather than ignored: γ with a norm that has no
//! γ, `--init-seed` with `--weights`, `--mlp-relu` on a model that is not an MLP, … .

use std::path::PathBuf;

use clap::Args;
use serde_json::{json, Value};

use crate::cli::common::{norm_from_flags, parse_list};
use nrpm::error::{Error, Result};
use nrpm::models::{Arch, LayerSelection, Model, ModelRecord, ModelSpec, NrpmLayer};
use nrpm::nn::LambdaParam;
use nrpm::tensor_file::{Tensor, TensorFile};
use nrpm::{Device, Norm, NrpmConfig};

/// Which model, which checkpoint, and how it is reprogrammed.
#[derive(Debug, Clone, Default, Args)]
pub struct ModelArgs {
    /// Architecture: mlp1 | mlp2 | mlp3 | lenet | resnet{10,18,34,50}[-tiny]
    /// [default: the checkpoint's when nrpm wrote it, else mlp3].
    #[arg(long)]
    pub model: Option<String>,
    /// Checkpoint (safetensors, PyTorch key names). One written by nrpm rebuilds the model it
    /// holds (architecture flags, reprogrammed layers, λ); without --weights the weights are
    /// initialised from --init-seed.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Seed of the initial weights when no checkpoint is given [default: 0].
    #[arg(long)]
    pub init_seed: Option<u64>,
    /// Add ReLU between MLP layers (the authors' MLP has none) [default: the checkpoint's,
    /// else off].
    #[arg(long)]
    pub mlp_relu: bool,
    /// Add the convolution bias (the authors' robust convolution never does) [default: the
    /// checkpoint's, else off].
    #[arg(long)]
    pub conv_bias: bool,
    /// Take λ from the checkpoint's robust_sum slots (the authors' checkpoints; checkpoints
    /// written by nrpm always do unless --lambda is given).
    #[arg(long, conflicts_with = "lambda")]
    pub lambda_from_weights: bool,
    /// Matching of the selected layers: lpm | l1 | huber | mcp | hm [default: the checkpoint's,
    /// else lpm = no reprogramming].
    #[arg(long)]
    pub norm: Option<String>,
    /// IRLS steps K [default: the checkpoint's, else 3].
    #[arg(long)]
    pub k: Option<usize>,
    /// ε of the IRLS weight 1/(r + ε) [default: the checkpoint's, else 1e-3].
    #[arg(long)]
    pub eps_irls: Option<f64>,
    /// λ (the LPM share: 1 = plain layer, 0 = pure NRPM) for every reprogrammed layer, or one
    /// per layer in the order of --layers: 0.7 or 0.5,0.3,0.1 [default: the checkpoint's, else
    /// 0].
    #[arg(long)]
    pub lambda: Option<String>,
    /// γ of mcp and hm [default: the checkpoint's, else 4].
    #[arg(long)]
    pub gamma: Option<f64>,
    /// δ of huber and hm [default: the checkpoint's, else 3].
    #[arg(long)]
    pub delta: Option<f64>,
    /// Split each operator's D terms into N groups [default: the checkpoint's, else 1].
    #[arg(long)]
    pub group: Option<usize>,
    /// Run the exact LAD limit Dg·median of each group instead of K IRLS steps (l1 only;
    /// --k and --eps-irls then have no effect) [default: the checkpoint's, else off].
    #[arg(long)]
    pub exact_lad: bool,
    /// Layers to reprogram: default | all | convs | linears | from:I | key1,key2 (λ values
    /// pair with the keys in the order typed) [default: the checkpoint's NRPM layers, else
    /// default = the authors' choice].
    #[arg(long)]
    pub layers: Option<String>,
    /// λ parametrisation: raw (λ = θ) or sigmoid (λ = sigmoid(θ), how paradigms 2 and 3 learn
    /// λ) [default: the checkpoint's; else raw, and sigmoid when training].
    #[arg(long)]
    pub lambda_param: Option<String>,
    /// Where the NRPM operators run: cpu | cuda | cuda:N (the other layers stay on the CPU).
    /// CUDA needs nrpm built with `--features cuda`, an NVIDIA driver, NVRTC and a GPU.
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// A model built from the flags (and the checkpoint), with the notes to print.
pub struct Built {
    /// The model, weights loaded, operators on the device.
    pub model: Model<f32>,
    /// One line per flag that overrode what the checkpoint recorded.
    pub notices: Vec<String>,
    /// Whether the checkpoint carried nrpm's record of the model.
    pub from_record: bool,
}

/// The λ parametrisation named `name`.
///
/// # Errors
/// [`Error::UnknownName`] for anything but raw or sigmoid.
pub fn lambda_param(name: &str) -> Result<LambdaParam> {
    match name {
        "raw" => Ok(LambdaParam::Raw),
        "sigmoid" => Ok(LambdaParam::Sigmoid),
        other => Err(Error::UnknownName {
            what: "lambda parametrisation",
            name: other.into(),
            expected: "raw, sigmoid".into(),
        }),
    }
}

/// `raw` or `sigmoid`.
pub fn lambda_param_name(p: LambdaParam) -> &'static str {
    match p {
        LambdaParam::Raw => "raw",
        LambdaParam::Sigmoid => "sigmoid",
    }
}

impl ModelArgs {
    /// The device of `--device`, checked to work (for CUDA: driver, NVRTC, a GPU, the kernels
    /// compiled).
    ///
    /// # Errors
    /// [`Error::UnknownName`] for a bad name; [`Error::NoCuda`] (one line saying why) when
    /// CUDA is unusable.
    pub fn device(&self) -> Result<Device> {
        let device: Device = self.device.parse()?;
        device.open()?;
        Ok(device)
    }

    /// The reprogramming flags that were given, by name (for "no effect" errors).
    fn reprogramming_flags(&self) -> Vec<&'static str> {
        [
            ("--k", self.k.is_some()),
            ("--eps-irls", self.eps_irls.is_some()),
            ("--lambda", self.lambda.is_some()),
            ("--gamma", self.gamma.is_some()),
            ("--delta", self.delta.is_some()),
            ("--group", self.group.is_some()),
            ("--exact-lad", self.exact_lad),
            ("--layers", self.layers.is_some()),
            ("--lambda-param", self.lambda_param.is_some()),
            ("--lambda-from-weights", self.lambda_from_weights),
        ]
        .into_iter()
        .filter(|(_, given)| *given)
        .map(|(flag, _)| flag)
        .collect()
    }

    /// Builds the model for images `[C, H, W]`: reads the checkpoint, combines its record (if
    /// any) with the flags, reprograms, loads every tensor and puts the NRPM operators on
    /// `--device`. `training` makes λ = sigmoid(θ) the default parametrisation.
    ///
    /// # Errors
    /// Unknown names; flags that would have no effect; bad checkpoints (every missing or
    /// mis-shaped key); a checkpoint for other images; an unusable `--device`.
    pub fn build(&self, image: [usize; 3], training: bool) -> Result<Built> {
        let device = self.device()?;
        let file = self.weights.as_ref().map(TensorFile::read).transpose()?;
        let stored = match &file {
            Some(f) => ModelRecord::from_file(f)?,
            None => None,
        };
        let mut notices = Vec::new();
        let spec = self.spec(image, stored.as_ref(), &mut notices)?;
        let stored_layers = stored.as_ref().and_then(|r| r.nrpm_layers.clone());
        let plan = match stored_layers.filter(|l| !l.is_empty()) {
            Some(layers) => self.override_record(&spec, &layers, training, &mut notices)?,
            None => self.plan_from_flags(&spec, file.as_ref(), training)?,
        };
        let mut model = Model::<f32>::new(spec);
        model.reprogram_layers(&plan.layers)?;
        match (&file, self.init_seed) {
            (Some(f), None) => model.load(f, plan.theta_from_file)?,
            (Some(_), Some(_)) => {
                return Err(no_effect(
                    "--init-seed",
                    "the weights come from the checkpoint (--weights)",
                ))
            }
            (None, seed) => model.init(seed.unwrap_or(0)),
        }
        if let (Some(f), false) = (&file, plan.theta_from_file) {
            set_lambdas_from_file(&mut model, f, &plan.decode_from_file)?;
        }
        model.set_exec(device.exec());
        Ok(Built {
            model,
            notices,
            from_record: stored.is_some(),
        })
    }

    /// The spec: `--model` or the record's, with the architecture flags.
    fn spec(
        &self,
        image: [usize; 3],
        stored: Option<&ModelRecord>,
        notices: &mut Vec<String>,
    ) -> Result<ModelSpec> {
        let [c, h, w] = image;
        if h != w {
            return Err(Error::config(
                "image",
                format!("{h}×{w}"),
                "models take square images",
            ));
        }
        let stored_spec = stored.map(|r| &r.spec);
        let name = match (&self.model, stored_spec) {
            (Some(name), Some(s)) if !name.eq_ignore_ascii_case(&s.name) => {
                notices.push(format!(
                    "--model {name} replaces the checkpoint's model {}",
                    s.name
                ));
                name.clone()
            }
            (Some(name), _) => name.clone(),
            (None, Some(s)) => s.name.clone(),
            (None, None) => "mlp3".into(),
        };
        let mut spec = match stored_spec.filter(|s| s.name.eq_ignore_ascii_case(&name)) {
            Some(s) => s.clone(),
            None => ModelSpec::from_name(&name, c, h)?,
        };
        if spec.input != image {
            let [sc, sh, sw] = spec.input;
            return Err(Error::config(
                "data",
                format!("{c}×{h}×{w} images for a model of {sc}×{sh}×{sw} inputs"),
                "the checkpoint's model takes other images (check --data)",
            ));
        }
        let mlp = matches!(spec.arch, Arch::Mlp { .. });
        let convs = !mlp;
        if self.mlp_relu && !mlp {
            return Err(no_effect(
                "--mlp-relu",
                &format!("{} is not an MLP", spec.name),
            ));
        }
        if self.conv_bias && !convs {
            return Err(no_effect(
                "--conv-bias",
                &format!("{} has no convolution", spec.name),
            ));
        }
        if let Arch::Mlp { relu, .. } = &mut spec.arch {
            if self.mlp_relu && !*relu && stored.is_some() {
                notices.push("--mlp-relu adds ReLU the checkpoint's MLP did not have".into());
            }
            *relu |= self.mlp_relu;
        }
        if self.conv_bias && !spec.conv_bias && stored.is_some() {
            notices
                .push("--conv-bias adds the conv bias the checkpoint's model did not use".into());
        }
        spec.conv_bias |= self.conv_bias;
        Ok(spec)
    }

    /// Refuses --k and --eps-irls beside --exact-lad (the limit has neither).
    fn check_exact_lad(&self) -> Result<()> {
        let unused = [
            ("--k", self.k.is_some()),
            ("--eps-irls", self.eps_irls.is_some()),
        ];
        match unused.iter().find(|(_, given)| *given && self.exact_lad) {
            Some((flag, _)) => Err(no_effect(flag, "--exact-lad runs the K → ∞, ε → 0 limit")),
            None => Ok(()),
        }
    }

    /// The norm of `--norm` with γ, δ from the flags or `base` (or the defaults), refusing a
    /// γ or δ that the norm does not use.
    fn norm_with(&self, name: &str, base: Option<Norm>) -> Result<Norm> {
        norm_from_flags(name, self.gamma, self.delta, base)
    }

    /// No record: the flags decide (the behaviour for the authors' checkpoints).
    fn plan_from_flags(
        &self,
        spec: &ModelSpec,
        file: Option<&TensorFile>,
        training: bool,
    ) -> Result<Plan> {
        let norm_name = self.norm.as_deref().unwrap_or("lpm");
        let norm = self.norm_with(norm_name, None)?;
        if norm.is_lpm() {
            if let Some(flag) = self.reprogramming_flags().first() {
                return Err(no_effect(
                    flag,
                    "every layer is LPM (give --norm l1, huber, mcp or hm to reprogram)",
                ));
            }
            return Ok(Plan::default());
        }
        if self.lambda_from_weights && file.is_none() {
            return Err(no_effect("--lambda-from-weights", "no --weights given"));
        }
        self.check_exact_lad()?;
        let base = NrpmConfig::default();
        let cfg = NrpmConfig::builder()
            .norm(norm)
            .k(self.k.unwrap_or(base.k()))
            .eps(self.eps_irls.unwrap_or(base.eps()))
            .lambda(base.lambda())
            .exact_lad(self.exact_lad)
            .build()?
            .with_groups(self.group.unwrap_or(1))?;
        let param = match &self.lambda_param {
            Some(p) => lambda_param(p)?,
            None if training => LambdaParam::Sigmoid,
            None => LambdaParam::Raw,
        };
        let selection: LayerSelection = self.layers.as_deref().unwrap_or("default").parse()?;
        let probe = Model::<f32>::new(spec.clone());
        let keys = probe.select_layers(&selection)?;
        let lambdas = match (&self.lambda, self.lambda_from_weights) {
            (Some(list), _) => pair_lambdas(&keys, &parse_list::<f64>("lambda", list)?)?,
            (None, true) => keys
                .iter()
                .map(|k| file_theta(file.expect("checked"), k, spec).map(|t| decode(param, t)))
                .collect::<Result<Vec<_>>>()?,
            (None, false) => vec![base.lambda(); keys.len()],
        };
        let layers = keys
            .iter()
            .zip(&lambdas)
            .map(|(key, &lambda)| layer(key, cfg, lambda, param))
            .collect::<Result<Vec<_>>>()?;
        Ok(Plan {
            layers,
            theta_from_file: self.lambda_from_weights,
            decode_from_file: Vec::new(),
        })
    }

    /// A record: rebuild it, with the given flags replacing its values.
    fn override_record(
        &self,
        spec: &ModelSpec,
        stored: &[NrpmLayer],
        training: bool,
        notices: &mut Vec<String>,
    ) -> Result<Plan> {
        let stored_keys: Vec<&str> = stored.iter().map(|l| l.key.as_str()).collect();
        if self
            .norm
            .as_deref()
            .is_some_and(|n| Norm::from_name(n).is_ok_and(|n| n.is_lpm()))
        {
            if let Some(flag) = self.reprogramming_flags().first() {
                return Err(no_effect(flag, "--norm lpm makes every layer LPM"));
            }
            notices.push(format!(
                "--norm lpm: every layer runs LPM; the checkpoint's NRPM layers ({}) are not used",
                stored_keys.join(", ")
            ));
            return Ok(Plan::default());
        }
        let keys = match &self.layers {
            Some(s) => Model::<f32>::new(spec.clone()).select_layers(&s.parse()?)?,
            None => stored_keys.iter().map(|k| k.to_string()).collect(),
        };
        if self.layers.is_some() && keys != stored_keys {
            notices.push(format!(
                "--layers {} replaces the checkpoint's NRPM layers ({})",
                keys.join(","),
                stored_keys.join(", ")
            ));
        }
        let given_lambdas = match &self.lambda {
            Some(list) => Some(pair_lambdas(&keys, &parse_list::<f64>("lambda", list)?)?),
            None => None,
        };
        let mut layers = Vec::with_capacity(keys.len());
        let mut decode_from_file = Vec::new();
        let mut changed: Vec<(&'static str, String, String)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let own = stored.iter().find(|l| &l.key == key);
            let base = own.unwrap_or(&stored[0]);
            let b = base.operator;
            let norm = match &self.norm {
                Some(name) => self.norm_with(name, Some(b.norm()))?,
                None => self.norm_with(b.norm().name(), Some(b.norm()))?,
            };
            let param = match &self.lambda_param {
                Some(p) => lambda_param(p)?,
                None if training => LambdaParam::Sigmoid,
                None => base.lambda_param,
            };
            let lambda = match (&given_lambdas, own) {
                (Some(values), _) => values[i],
                (None, Some(l)) => l.operator.lambda(),
                (None, None) => return Err(Error::config(
                    "lambda",
                    format!("missing for layer {key}"),
                    "that layer is LPM in the checkpoint: give --lambda for the layers of --layers",
                )),
            };
            self.check_exact_lad()?;
            let cfg = NrpmConfig::builder()
                .norm(norm)
                .k(self.k.unwrap_or(b.k()))
                .eps(self.eps_irls.unwrap_or(b.eps()))
                .lambda(lambda)
                .exact_lad(self.exact_lad || b.exact_lad())
                .build()?
                .with_groups(self.group.unwrap_or(b.groups()))?;
            if let Some(own) = own {
                changed.extend(differences(
                    key,
                    &own.operator,
                    own.lambda_param,
                    &cfg,
                    param,
                ));
                if given_lambdas.is_none() {
                    decode_from_file.push((key.clone(), own.lambda_param));
                }
            }
            layers.push(layer(key, cfg, lambda, param)?);
        }
        notices.extend(summarise(changed));
        // θ loads as it is when nothing about λ changed; otherwise λ is decoded from the file.
        let same_param = layers.iter().all(|l| {
            stored
                .iter()
                .any(|s| s.key == l.key && s.lambda_param == l.lambda_param)
        });
        let theta_from_file = given_lambdas.is_none() && same_param;
        Ok(Plan {
            layers,
            theta_from_file,
            decode_from_file: if theta_from_file {
                Vec::new()
            } else {
                decode_from_file
            },
        })
    }

    /// Every setting of the model as JSON: the flags as given, and what was built (spec, λ
    /// and operator of every NRPM layer as used).
    pub fn report_json(&self, built: &Built) -> Value {
        let record = built.model.record();
        let layers: Vec<Value> = record
            .nrpm_layers
            .unwrap_or_default()
            .iter()
            .map(|l| {
                let op = l.operator;
                json!({
                    "layer": l.key, "norm": op.norm(), "k": op.k(), "eps_irls": op.eps(),
                    "groups": op.groups(), "lambda": op.lambda(), "exact_lad": op.exact_lad(),
                    "lambda_param": lambda_param_name(l.lambda_param),
                })
            })
            .collect();
        json!({
            "name": record.spec.name,
            "spec": record.spec,
            "weights": self.weights,
            "checkpoint_record": built.from_record,
            "init_seed": self.weights.is_none().then_some(self.init_seed.unwrap_or(0)),
            "device": self.device,
            "reprogrammed": layers,
            "flags": {
                "model": self.model, "norm": self.norm, "k": self.k, "eps_irls": self.eps_irls,
                "lambda": self.lambda, "gamma": self.gamma, "delta": self.delta,
                "group": self.group, "layers": self.layers, "lambda_param": self.lambda_param,
                "exact_lad": self.exact_lad,
                "lambda_from_weights": self.lambda_from_weights, "mlp_relu": self.mlp_relu,
                "conv_bias": self.conv_bias, "init_seed": self.init_seed,
            },
        })
    }
}

/// One line describing a model's matching: `every layer LPM`, or each NRPM layer with its
/// operator and the λ it uses.
pub fn describe(model: &Model<f32>) -> String {
    let layers = model.record().nrpm_layers.unwrap_or_default();
    if layers.is_empty() {
        return "every layer LPM".into();
    }
    let parts: Vec<String> = layers
        .iter()
        .map(|l| {
            let op = l.operator;
            let groups = match op.groups() {
                1 => String::new(),
                n => format!(", N = {n}"),
            };
            let steps = match op.exact_lad() {
                true => "exact LAD limit".to_string(),
                false => format!("K = {} ε = {:e}", op.k(), op.eps()),
            };
            format!(
                "{} {} {steps}{groups} λ = {:.4}{}",
                l.key,
                op.norm(),
                op.lambda(),
                match l.lambda_param {
                    LambdaParam::Raw => "",
                    LambdaParam::Sigmoid => " (sigmoid θ)",
                }
            )
        })
        .collect();
    format!("NRPM in {}", parts.join("; "))
}

/// What the model gets: its NRPM layers, and where their λ comes from.
#[derive(Default)]
struct Plan {
    layers: Vec<NrpmLayer>,
    /// Load θ from the file as it is (same parametrisation as stored).
    theta_from_file: bool,
    /// Layers whose λ is decoded from the file's θ under the stored parametrisation.
    decode_from_file: Vec<(String, LambdaParam)>,
}

/// An NRPM layer record.
fn layer(key: &str, cfg: NrpmConfig, lambda: f64, param: LambdaParam) -> Result<NrpmLayer> {
    if param == LambdaParam::Sigmoid && !(lambda > 0.0 && lambda < 1.0) {
        return Err(Error::config(
            "lambda",
            format!("{lambda} for layer {key}"),
            "λ = sigmoid(θ) needs λ in (0, 1): give --lambda in (0, 1), or --lambda-param raw",
        ));
    }
    Ok(NrpmLayer {
        key: key.to_string(),
        operator: cfg.with_lambda(lambda)?,
        lambda_param: param,
    })
}

/// One λ per key: a single value for all, or one per key in order.
fn pair_lambdas(keys: &[String], values: &[f64]) -> Result<Vec<f64>> {
    match values.len() {
        1 => Ok(vec![values[0]; keys.len()]),
        n if n == keys.len() => Ok(values.to_vec()),
        n => Err(Error::Config {
            name: "lambda",
            value: format!("{n} values for {} layers ({})", keys.len(), keys.join(", ")),
            rule: "give one λ for all layers or one per reprogrammed layer",
        }),
    }
}

/// λ from θ under `param`.
fn decode(param: LambdaParam, theta: f64) -> f64 {
    match param {
        LambdaParam::Raw => theta,
        LambdaParam::Sigmoid => 1.0 / (1.0 + (-theta).exp()),
    }
}

/// θ of layer `key` in the file (`.robust_sum.lmbd` for linear layers, `.beta` for convs).
fn file_theta(file: &TensorFile, key: &str, spec: &ModelSpec) -> Result<f64> {
    let probe = Model::<f32>::new(spec.clone());
    let conv = probe.matching_layers().iter().any(|(k, c)| k == key && *c);
    let slot = format!("{key}.robust_sum.{}", if conv { "beta" } else { "lmbd" });
    match file.tensors.get(&slot) {
        Some(Tensor::F32(a)) if a.len() == 1 => {
            Ok(f64::from(a.iter().copied().next().unwrap_or(0.0)))
        }
        Some(Tensor::F64(a)) if a.len() == 1 => Ok(a.iter().copied().next().unwrap_or(0.0)),
        Some(t) => Err(Error::format(
            &file.path,
            format!(
                "'{slot}' must hold one float, has shape {:?} ({})",
                t.shape(),
                t.dtype_name()
            ),
        )),
        None => Err(Error::format(
            &file.path,
            format!("--lambda-from-weights: no λ slot '{slot}' for layer {key}"),
        )),
    }
}

/// Sets λ of each listed layer from the file's θ decoded under its stored parametrisation.
fn set_lambdas_from_file(
    model: &mut Model<f32>,
    file: &TensorFile,
    layers: &[(String, LambdaParam)],
) -> Result<()> {
    let spec = model.spec().clone();
    let values = layers
        .iter()
        .map(|(key, param)| Ok((key.clone(), decode(*param, file_theta(file, key, &spec)?))))
        .collect::<Result<Vec<_>>>()?;
    model.set_lambdas(&values)
}

/// `(flag, layer, "old → new")` for every value of `cfg` that differs from the stored one.
fn differences(
    key: &str,
    old: &NrpmConfig,
    old_param: LambdaParam,
    new: &NrpmConfig,
    new_param: LambdaParam,
) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    let mut check = |flag: &'static str, a: String, b: String| {
        if a != b {
            out.push((flag, key.to_string(), format!("{a} → {b}")));
        }
    };
    check("--norm", old.norm().to_string(), new.norm().to_string());
    check("--k", old.k().to_string(), new.k().to_string());
    check(
        "--eps-irls",
        format!("{:e}", old.eps()),
        format!("{:e}", new.eps()),
    );
    check(
        "--group",
        old.groups().to_string(),
        new.groups().to_string(),
    );
    check(
        "--exact-lad",
        old.exact_lad().to_string(),
        new.exact_lad().to_string(),
    );
    check(
        "--lambda",
        format!("{:.6}", old.lambda()),
        format!("{:.6}", new.lambda()),
    );
    check(
        "--lambda-param",
        lambda_param_name(old_param).into(),
        lambda_param_name(new_param).into(),
    );
    out
}

/// One note per flag: `note: --k 3 replaces the checkpoint's value in fc1 (1 → 3), fc2 (1 → 3)`.
fn summarise(changed: Vec<(&'static str, String, String)>) -> Vec<String> {
    let mut flags: Vec<&'static str> = Vec::new();
    for c in &changed {
        if !flags.contains(&c.0) {
            flags.push(c.0);
        }
    }
    flags
        .into_iter()
        .map(|flag| {
            let parts: Vec<String> = changed
                .iter()
                .filter(|c| c.0 == flag)
                .map(|(_, key, change)| format!("{key} ({change})"))
                .collect();
            format!(
                "{flag} replaces the checkpoint's value in {}",
                parts.join(", ")
            )
        })
        .collect()
}

/// A flag that would change nothing.
fn no_effect(flag: &str, why: &str) -> Error {
    Error::Flag {
        flag: flag.to_string(),
        problem: format!("has no effect here: {why}"),
    }
}
