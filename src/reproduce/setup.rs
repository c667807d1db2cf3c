//! The models and data of the reproduction: the authors' checkpoints, their operator
//! settings, and the images (loaded once per run).

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::reproduce::paper::PaperData;
use crate::reproduce::table::{measure, Plan, Row, Sheet};
use crate::reproduce::{Experiment, Options};
use nrpm::attacks::EvalOptions;
use nrpm::data::{self, Dataset, Split};
use nrpm::error::Result;
use nrpm::models::{LayerSelection, Model, ModelSpec};
use nrpm::nn::LambdaParam;
use nrpm::progress::Progress;
use nrpm::{Norm, NrpmConfig};

/// A checkpoint of the authors, converted to safetensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// `mlp3_mnist_model.pth`: the 784-256-64-10 MLP without activations.
    Mlp3,
    /// `lenet_mnist_model.pth`: the PyTorch FGSM-tutorial LeNet.
    Lenet,
    /// `tinyresnet18_cifar10_model.t7`: the narrow ResNet18, PGD-7 adversarially trained.
    TinyResnet18,
}

impl Checkpoint {
    /// Every checkpoint the experiments use.
    pub const ALL: [Checkpoint; 3] = [
        Checkpoint::Mlp3,
        Checkpoint::Lenet,
        Checkpoint::TinyResnet18,
    ];

    /// File name in the models folder.
    pub fn file(self) -> &'static str {
        match self {
            Checkpoint::Mlp3 => "mlp3_mnist.safetensors",
            Checkpoint::Lenet => "lenet_mnist.safetensors",
            Checkpoint::TinyResnet18 => "tinyresnet18_cifar10.safetensors",
        }
    }

    /// Model name as `nrpm` spells it.
    pub fn model(self) -> &'static str {
        match self {
            Checkpoint::Mlp3 => "mlp3",
            Checkpoint::Lenet => "lenet",
            Checkpoint::TinyResnet18 => "resnet18-tiny",
        }
    }

    /// Input images `[C, H, W]`.
    pub fn image(self) -> [usize; 3] {
        match self {
            Checkpoint::TinyResnet18 => [3, 32, 32],
            _ => [1, 28, 28],
        }
    }

    /// The authors' operator defaults for this model (PAPER.md §2.5).
    pub fn operator(self) -> Operator {
        match self {
            Checkpoint::Mlp3 => Operator { k: 1, eps: 5e-5 },
            Checkpoint::Lenet => Operator { k: 1, eps: 1e-3 },
            Checkpoint::TinyResnet18 => Operator { k: 1, eps: 5e-4 },
        }
    }
}

/// The L1 operator's K and ε (w = 1/(r + ε)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Operator {
    /// IRLS steps.
    pub k: usize,
    /// ε of the weight.
    pub eps: f64,
}

/// One model: a checkpoint (or a seeded initialisation), and λ of its reprogrammed layers
/// (the authors' default layers: every MLP layer, LeNet's convs, a ResNet's block convs).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSetup {
    /// Which model.
    pub checkpoint: Checkpoint,
    /// Load the checkpoint (`false`: initialise from `seed`).
    pub pretrained: bool,
    /// The operator, or `None` for plain LPM.
    pub operator: Option<Operator>,
    /// λ of every reprogrammed layer.
    pub lambda: f64,
    /// λ = θ (fixed) or λ = sigmoid(θ) (learned).
    pub param: LambdaParam,
    /// Seed of the initialisation when not pretrained.
    pub seed: u64,
}

impl Subject {
    /// A row of `setup` labelled `label`, compared with paper row `paper_key` if given.
    pub fn new(setup: ModelSetup, label: impl Into<String>, paper_key: Option<String>) -> Self {
        Self {
            setup,
            label: label.into(),
            paper_key,
        }
    }
}

impl ModelSetup {
    /// The pretrained model, plain LPM.
    pub fn lpm(checkpoint: Checkpoint) -> Self {
        Self {
            checkpoint,
            pretrained: true,
            operator: None,
            lambda: 1.0,
            param: LambdaParam::Raw,
            seed: 0,
        }
    }

    /// The pretrained model with the authors' operator and a fixed λ (Paradigm 1).
    pub fn fixed(checkpoint: Checkpoint, lambda: f64) -> Self {
        Self {
            operator: Some(checkpoint.operator()),
            lambda,
            ..Self::lpm(checkpoint)
        }
    }

    /// The same with another operator.
    pub fn with_operator(mut self, operator: Operator) -> Self {
        self.operator = Some(operator);
        self
    }

    /// Builds the model, reprograms it and loads the checkpoint from `dir` (or initialises).
    ///
    /// # Errors
    /// Bad checkpoint files, invalid operator settings.
    pub fn build(&self, dir: &std::path::Path) -> Result<Model<f32>> {
        let [c, side, _] = self.checkpoint.image();
        let mut model = Model::<f32>::new(ModelSpec::from_name(self.checkpoint.model(), c, side)?);
        if let Some(op) = self.operator {
            let cfg = NrpmConfig::builder()
                .norm(Norm::L1)
                .k(op.k)
                .eps(op.eps)
                .lambda(1.0)
                .build()?;
            model.reprogram(
                &LayerSelection::Default,
                cfg.with_lambda(self.lambda)?,
                self.param,
            )?;
        }
        match self.pretrained {
            true => model.load_file(dir.join(self.checkpoint.file()), false)?,
            false => model.init(self.seed),
        }
        Ok(model)
    }

    /// The setting as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "model": self.checkpoint.model(),
            "weights": if self.pretrained { json!(self.checkpoint.file()) } else { json!({ "init_seed": self.seed }) },
            "matching": self.operator.map_or(json!("lpm"), |op| json!({
                "norm": "l1", "k": op.k, "eps_irls": op.eps, "layers": "default",
                "lambda": self.lambda, "lambda_param": format!("{:?}", self.param).to_lowercase(),
            })),
        })
    }
}

/// One row's model: its setup, its label, and the paper row it is compared with.
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    /// How the model is built.
    pub setup: ModelSetup,
    /// The row's label.
    pub label: String,
    /// Key of the paper row (e.g. `p1-0.7`), if it has one.
    pub paper_key: Option<String>,
}

/// What the experiments share: options, the paper's numbers, the images (loaded once).
pub struct Context<'a> {
    /// The run's options.
    pub options: &'a Options,
    /// The paper's numbers.
    pub paper: &'a PaperData,
    mnist_test: Option<Arc<Dataset>>,
    mnist_train: Option<Arc<Dataset>>,
}

impl<'a> Context<'a> {
    /// A context with no image loaded yet.
    pub fn new(options: &'a Options, paper: &'a PaperData) -> Self {
        Self {
            options,
            paper,
            mnist_test: None,
            mnist_train: None,
        }
    }

    /// Why `exp` cannot run (a checkpoint or the data is missing), or `None`.
    pub fn missing(&self, exp: Experiment) -> Option<String> {
        let absent: Vec<&str> = exp
            .checkpoints()
            .iter()
            .map(|c| c.file())
            .filter(|f| !self.options.models.join(f).is_file())
            .collect();
        if !absent.is_empty() {
            let dir = self.options.models.display();
            return Some(format!("{dir} lacks {}", absent.join(", ")));
        }
        match (exp, &self.options.mnist, &self.options.cifar) {
            (Experiment::Cifar, _, None) => Some(
                "no CIFAR-10 folder given (--data DIR holding test_batch.bin); CIFAR-10 cannot \
                 be downloaded on this machine"
                    .into(),
            ),
            (Experiment::Cifar, _, Some(_)) | (_, Some(_), _) => None,
            (_, None, _) => Some("no MNIST data given (--data DIR of IDX files)".into()),
        }
    }

    /// The first n MNIST test images.
    ///
    /// # Errors
    /// Missing or malformed files; n larger than the test set.
    pub fn mnist_test(&mut self) -> Result<Arc<Dataset>> {
        if self.mnist_test.is_none() {
            let all = self.load_mnist(Split::Test)?;
            self.mnist_test = Some(Arc::new(all.take(self.options.n, "n")?));
        }
        Ok(Arc::clone(self.mnist_test.as_ref().expect("loaded")))
    }

    /// The MNIST training images (the first `train_n` when given).
    ///
    /// # Errors
    /// Missing or malformed files.
    pub fn mnist_train(&mut self) -> Result<Arc<Dataset>> {
        if self.mnist_train.is_none() {
            let all = self.load_mnist(Split::Train)?;
            let n = self.options.train_n.unwrap_or(all.len());
            self.mnist_train = Some(Arc::new(all.take(n, "train-n")?));
        }
        Ok(Arc::clone(self.mnist_train.as_ref().expect("loaded")))
    }

    /// The first n CIFAR-10 test images.
    ///
    /// # Errors
    /// Missing or malformed files; n larger than the test set.
    pub fn cifar_test(&self) -> Result<Dataset> {
        let dir = self.options.cifar.as_ref().expect("checked by missing()");
        data::load_cifar10(dir, Split::Test)?.take(self.options.n, "n")
    }

    fn load_mnist(&self, split: Split) -> Result<Dataset> {
        data::load(
            self.options.mnist.as_deref().expect("checked by missing()"),
            split,
        )
    }

    /// Builds `setup`'s model from the models folder and puts its operators on the device.
    ///
    /// # Errors
    /// As [`ModelSetup::build`].
    pub fn build(&self, setup: &ModelSetup) -> Result<Model<f32>> {
        let mut model = setup.build(&self.options.models)?;
        model.set_exec(self.options.device.exec());
        Ok(model)
    }

    /// One row: `model` (built from `setup`) on `data` under `plan`.
    fn row(
        &self,
        model: &mut Model<f32>,
        setup: &ModelSetup,
        label: &str,
        data: &Dataset,
        plan: &Plan,
        progress: &mut dyn Progress,
    ) -> Result<Row> {
        let options = self.eval_options();
        let m = measure(model, data, plan, &options, progress)?;
        let mut row = Row::new(label, setup.to_json(), &plan.budgets, m.accuracy);
        row.lambdas = model.lambdas();
        row.seconds = m.seconds;
        row.checks = m.checks;
        Ok(row)
    }

    /// Measures `subject`'s model under every plan of `sheet`, adding one row to each table.
    ///
    /// # Errors
    /// Checkpoint, model and attack errors.
    pub fn fill(
        &self,
        sheet: &mut Sheet,
        subject: &Subject,
        data: &Dataset,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        let mut model = self.build(&subject.setup)?;
        self.fill_with(&mut model, sheet, subject, data, progress)
    }

    /// As [`Context::fill`], with the model already built (or trained) from `subject.setup`.
    /// Rows of tables that have a paper table are compared with row `subject.paper_key`.
    ///
    /// # Errors
    /// Model and attack errors.
    pub fn fill_with(
        &self,
        model: &mut Model<f32>,
        sheet: &mut Sheet,
        subject: &Subject,
        data: &Dataset,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        let (setup, label) = (&subject.setup, subject.label.as_str());
        for (table, (plan, paper)) in sheet.tables.iter_mut().zip(&sheet.plans) {
            let row = self.row(model, setup, label, data, plan, progress)?;
            table
                .rows
                .push(match (paper, subject.paper_key.as_deref()) {
                    (Some(p), Some(key)) => row.compare(p, key),
                    _ => row,
                });
        }
        Ok(())
    }

    /// Evaluation options: batch size and seed of the run.
    pub fn eval_options(&self) -> EvalOptions {
        EvalOptions {
            batch_size: self.options.batch_size,
            seed: self.options.seed,
            targeted: false,
        }
    }

    /// Where training experiment `name` keeps its checkpoints.
    pub fn checkpoint_dir(&self, name: &str) -> PathBuf {
        self.options.out.join("checkpoints").join(name)
    }
}
