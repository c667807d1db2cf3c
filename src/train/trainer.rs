//! The training loop: epochs of seeded shuffled batches, one SGD step per batch, a clean
//! evaluation and a checkpoint after every epoch, and resuming from a checkpoint.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::attacks;
use crate::data::{DataRecord, Dataset};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::nn::Ctx;
use crate::progress::Progress;
use crate::real::Real;
use crate::seeds::{stream, ImageRngs};
use crate::train::checkpoint::{self, seed_for, Stream, TrainState};
use crate::train::trace::{NoObserver, StepObserver, StepView};
use crate::train::{batch_gradient, BatchGradient, Paradigm, Sgd, TrainConfig};

/// Where checkpoints go and where a run resumes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkpoints {
    /// Folder to write a checkpoint to after every epoch (`None`: no checkpoints).
    pub out: Option<PathBuf>,
    /// Folder of a checkpoint to continue from (written by an earlier run with the same
    /// settings, apart from the epoch count, and the same model setup).
    pub resume: Option<PathBuf>,
}

/// Accuracy and λ of the model at one moment (before the first epoch or after the last).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Clean accuracy on the evaluation images (%).
    pub clean: f64,
    /// Accuracy under the training attack (%; `None` for clean training), counted as
    /// [`attacks::evaluate`] does (misclassified clean images count as broken).
    pub robust: Option<f64>,
    /// `(layer key, λ)` of every NRPM layer.
    pub lambdas: Vec<(String, f64)>,
}

/// One epoch's numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Mean per-image training objective over the epoch (clean + adversarial cross-entropy
    /// under `clean+adv`), at the parameters of each step.
    pub loss: f64,
    /// Accuracy (%) on the examples the steps descended (adversarial ones under adversarial
    /// training), at the parameters of each step.
    pub train_acc: f64,
    /// Clean accuracy (%) on the evaluation images after the epoch.
    pub test_acc: f64,
    /// `(layer key, λ)` after the epoch.
    pub lambdas: Vec<(String, f64)>,
    /// Wall time of the epoch, evaluation included.
    pub seconds: f64,
}

impl EpochReport {
    /// `epoch 3/10  lr 0.001  loss 0.4213  train 87.50%  test 88.10%  λ fc1=0.612 …  (3.1 s)`.
    pub fn line(&self, epochs: usize) -> String {
        let lambdas: Vec<String> = self
            .lambdas
            .iter()
            .map(|(k, l)| format!("{k}={l:.4}"))
            .collect();
        format!(
            "epoch {}/{epochs}  lr {}  loss {:.4}  train {:.2}%  test {:.2}%  λ [{}]  ({:.1} s)",
            self.epoch,
            self.lr,
            self.loss,
            self.train_acc,
            self.test_acc,
            lambdas.join(" "),
            self.seconds
        )
    }
}

/// The outcome of [`train`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// The paradigm.
    pub paradigm: Paradigm,
    /// Epochs completed in all (resumed ones included).
    pub epochs: usize,
    /// Epochs already done in the checkpoint this call resumed from.
    pub resumed_from: Option<usize>,
    /// One report per epoch, from the first (resumed epochs come from the checkpoint).
    pub history: Vec<EpochReport>,
    /// Before the first epoch.
    pub before: Snapshot,
    /// After the last epoch.
    pub after: Snapshot,
    /// Wall time of this call.
    pub seconds: f64,
}

/// Trains `model` on `data` as `cfg` says, evaluating on `eval`; see the module docs of
/// [`crate::train`] for the maths.
///
/// `Paradigm::Fixed` trains nothing: it evaluates the (reprogrammed) model and, with
/// `dirs.out`, saves it. Otherwise each epoch e = done..cfg.epochs shuffles `data` with a seed
/// derived from `(cfg.seed, e)`, takes one [`Sgd`] step per batch on the mean loss of
/// [`batch_gradient`], evaluates clean accuracy on `eval`, reports one line through
/// `progress.finish`, and writes a checkpoint to `dirs.out`. `before` and `after` are measured
/// under the training attack (clean accuracy only for clean training). The module docs of
/// [`crate::train`] have a complete example.
///
/// # Errors
/// [`Error::Config`] for invalid settings or `LearnLambda` on a model with no NRPM layer;
/// checkpoint errors ([`checkpoint::load`], [`checkpoint::save`]; resuming with other data,
/// settings or model setup); [`Error::Diverged`] when the numbers leave the floating-point
/// range (it names the epoch, step and layer, and keeps the finished epochs' history and
/// checkpoint); model, data and attack errors.
pub fn train<T: Real>(
    model: &mut Model<T>,
    data: &Dataset,
    eval: &Dataset,
    cfg: &TrainConfig,
    dirs: &Checkpoints,
    progress: &mut dyn Progress,
) -> Result<TrainReport> {
    train_observed(model, data, eval, cfg, dirs, progress, &mut NoObserver)
}

/// [`train`], calling `observer` before every SGD update with the step's batch, the model and
/// the gradient (or, on the step that diverged, the error); e.g. [`StepTrace`](crate::train::StepTrace) writes each
/// step's gradient and parameter magnitudes.
///
/// # Errors
/// As [`train`]; and the observer's own errors, which stop training.
pub fn train_observed<T: Real>(
    model: &mut Model<T>,
    data: &Dataset,
    eval: &Dataset,
    cfg: &TrainConfig,
    dirs: &Checkpoints,
    progress: &mut dyn Progress,
    observer: &mut dyn StepObserver<T>,
) -> Result<TrainReport> {
    let started = Instant::now();
    let mut sgd = Sgd::new(cfg.sgd)?;
    let records = DataRecords {
        train: data.record(),
        eval: eval.record(),
    };
    let mut state = initial_state(model, &mut sgd, eval, cfg, dirs, &records, progress)?;
    let resumed_from = dirs.resume.as_ref().map(|_| state.epochs_done);
    let last = if cfg.paradigm.is_trained() {
        cfg.epochs
    } else {
        0
    };
    let first = state.epochs_done;
    for epoch in first..last {
        let report = run_epoch(
            model,
            &mut sgd,
            (data, eval),
            cfg,
            epoch,
            progress,
            observer,
        )
        .map_err(|e| with_history(e, &state, dirs))?;
        progress.finish(&report.line(cfg.epochs));
        state.history.push(report);
        state.epochs_done = epoch + 1;
        if let Some(dir) = &dirs.out {
            checkpoint::save(dir, model, &sgd, cfg, &records, &state)?;
        }
    }
    if let (Some(dir), true) = (&dirs.out, first >= last) {
        checkpoint::save(dir, model, &sgd, cfg, &records, &state)?; // nothing trained: save as it is
    }
    let after = snapshot(model, eval, cfg, progress)?;
    Ok(TrainReport {
        paradigm: cfg.paradigm,
        epochs: state.epochs_done,
        resumed_from,
        history: state.history,
        before: state.start,
        after,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A divergence error completed with the finished epochs' history and the folder of the last
/// checkpoint (other errors unchanged).
fn with_history(e: Error, state: &TrainState, dirs: &Checkpoints) -> Error {
    match e {
        Error::Diverged(mut d) => {
            d.history = serde_json::to_value(&state.history).unwrap_or_default();
            d.last_checkpoint = dirs.out.clone();
            Error::Diverged(d)
        }
        other => other,
    }
}

/// The training data and the evaluation images of a run, as its checkpoints record them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataRecords {
    /// The images the steps train on.
    pub train: DataRecord,
    /// The images each epoch is evaluated on.
    pub eval: DataRecord,
}

/// Checks the settings, then loads the checkpoint to resume from, or measures the start.
fn initial_state<T: Real>(
    model: &mut Model<T>,
    sgd: &mut Sgd<T>,
    eval: &Dataset,
    cfg: &TrainConfig,
    dirs: &Checkpoints,
    records: &DataRecords,
    progress: &mut dyn Progress,
) -> Result<TrainState> {
    cfg.validate()?;
    if cfg.paradigm == Paradigm::LearnLambda && model.lambdas().is_empty() {
        return Err(Error::config(
            "paradigm",
            "2 (learn λ)",
            "needs at least one layer reprogrammed with NRPM (a robust --norm)",
        ));
    }
    match &dirs.resume {
        Some(dir) => checkpoint::load(dir, model, sgd, cfg, records),
        None => Ok(TrainState {
            epochs_done: 0,
            history: Vec::new(),
            start: snapshot(model, eval, cfg, progress)?,
        }),
    }
}

/// One epoch: the SGD steps on `data`, then the clean evaluation on `eval`.
fn run_epoch<T: Real>(
    model: &mut Model<T>,
    sgd: &mut Sgd<T>,
    (data, eval): (&Dataset, &Dataset),
    cfg: &TrainConfig,
    epoch: usize,
    progress: &mut dyn Progress,
    observer: &mut dyn StepObserver<T>,
) -> Result<EpochReport> {
    let started = Instant::now();
    let lr = cfg.schedule()?.lr(epoch);
    let (loss_sum, correct) = sgd_steps(model, sgd, data, cfg, (lr, epoch), progress, observer)?;
    let n = data.len().max(1) as f64;
    Ok(EpochReport {
        epoch: epoch + 1,
        lr,
        loss: loss_sum / n,
        train_acc: 100.0 * correct as f64 / n,
        test_acc: clean_accuracy(model, eval, cfg.batch_size)?,
        lambdas: model.lambdas(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One SGD step per shuffled batch of epoch `epoch`; returns the summed training loss and the
/// correct count over the epoch. `observer` sees every step before its update.
fn sgd_steps<T: Real>(
    model: &mut Model<T>,
    sgd: &mut Sgd<T>,
    data: &Dataset,
    cfg: &TrainConfig,
    (lr, epoch): (f64, usize),
    progress: &mut dyn Progress,
    observer: &mut dyn StepObserver<T>,
) -> Result<(f64, usize)> {
    let order_seed = seed_for(cfg.seed, Stream::Shuffle, epoch, 0);
    let batches = data.shuffled_batches(cfg.batch_size, order_seed)?;
    let stage = format!("epoch {}/{}", epoch + 1, cfg.epochs);
    progress.start(&stage, batches.len() as u64);
    let (mut loss_sum, mut correct) = (0.0, 0);
    let steps = batches.len();
    for (i, batch) in batches.enumerate() {
        let mut x = batch.images.mapv(|v| T::of(f64::from(v)));
        if cfg.noise_sd > 0.0 {
            let seed = seed_for(cfg.seed, Stream::Noise, epoch, i);
            add_noise(&mut x, cfg.noise_sd, seed);
        }
        let labels: Vec<usize> = batch.labels.to_vec();
        let mut ctx = Ctx::train(seed_for(cfg.seed, Stream::Dropout, epoch, i));
        ctx.frozen_batchnorm = cfg.frozen_batchnorm;
        let attack_seed = seed_for(cfg.seed, Stream::Attack, epoch, i);
        let mut rngs = ImageRngs::for_images(attack_seed, stream::ATTACK, 0..labels.len());
        let adversary = cfg.adversary.as_ref();
        let at = (epoch, i, steps);
        let g = batch_gradient(model, x.view(), &labels, adversary, &mut ctx, &mut rngs)
            .and_then(finite_loss);
        let view = StepView {
            epoch: epoch + 1,
            step: i + 1,
            steps,
            lr,
            x: x.view(),
            indices: &batch.indices,
            labels: &labels,
            model,
            gradient: g.as_ref(),
        };
        observer.observe(&view)?;
        let g = match g {
            Ok(g) => g,
            Err(e) if e.is_numeric_blowup() => return Err(diverged(model, cfg, lr, at, e)),
            Err(e) => return Err(e),
        };
        sgd.step(model, &g.grads, lr, cfg.paradigm)?;
        loss_sum += g.loss_sum;
        correct += g.correct;
        progress.advance(1);
    }
    Ok((loss_sum, correct))
}

/// The batch's gradient, or [`Error::NonFinite`] when its loss is not finite.
fn finite_loss<T>(g: BatchGradient<T>) -> Result<BatchGradient<T>> {
    if g.loss_sum.is_finite() {
        return Ok(g);
    }
    Err(Error::NonFinite {
        what: "the training loss of the batch",
        index: vec![],
        value: g.loss_sum.to_string(),
    })
}

/// `x ← x + σ·n`, n ~ N(0, I) drawn in row-major order from a generator seeded with `seed`
/// (not clipped: Cohen et al.'s augmentation for randomized smoothing).
fn add_noise<T: Real>(x: &mut ndarray::Array4<T>, sigma: f64, seed: u64) {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    x.iter_mut().for_each(|v| {
        let e: f64 = rand_distr::StandardNormal.sample(&mut rng);
        *v += T::of(sigma * e);
    });
}

/// The divergence error of step `i` (of `steps`) in `epoch`, with what to change.
fn diverged<T: Real>(
    model: &Model<T>,
    cfg: &TrainConfig,
    lr: f64,
    (epoch, i, steps): (usize, usize, usize),
    cause: Error,
) -> Error {
    let layer = cause.layer_root().0.map(str::to_string);
    let eps: Vec<f64> = model
        .record()
        .nrpm_layers
        .unwrap_or_default()
        .iter()
        .map(|l| l.operator.eps())
        .collect();
    let mut hint = format!("lower the learning rate (--lr, now {lr})");
    if let Some(min) = eps.iter().copied().reduce(f64::min) {
        hint += &format!(
            " or raise the IRLS ε (--eps-irls, now {min:e}): the gradient through \
             w = 1/(r + ε) grows like 1/ε"
        );
    }
    Error::Diverged(Box::new(crate::error::Divergence {
        epoch: epoch + 1,
        epochs: cfg.epochs,
        step: i + 1,
        steps,
        layer,
        cause: Box::new(cause),
        hint,
        history: serde_json::Value::Null,
        last_checkpoint: None,
    }))
}

/// Clean (eval-mode) accuracy of `model` on `data` in % (0 for no images), in batches of
/// `batch_size` images `[B, C, H, W]`.
///
/// # Errors
/// [`Error::Config`] for a zero batch size; model errors (e.g. images of another shape than
/// the model takes).
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::models::{Model, ModelSpec};
/// let test = nrpm::data::Dataset::mnist_subset(nrpm::data::Split::Test)?.first(50);
/// let model = Model::<f32>::new(ModelSpec::from_name("mlp1", 1, 28)?); // all-zero weights
/// // Zero logits: argmax picks class 0 everywhere, right exactly for the zeros.
/// let zeros = test.labels().iter().filter(|&&l| l == 0).count();
/// let acc = nrpm::train::clean_accuracy(&model, &test, 16)?;
/// assert!((acc - 100.0 * zeros as f64 / 50.0).abs() < 1e-12);
/// # Ok(()) }
/// ```
pub fn clean_accuracy<T: Real>(model: &Model<T>, data: &Dataset, batch_size: usize) -> Result<f64> {
    let mut correct = 0;
    for batch in data.batches(batch_size)? {
        let x = batch.images.mapv(|v| T::of(f64::from(v)));
        let predicted = model.predict(x.view())?;
        correct += predicted
            .iter()
            .zip(batch.labels.iter())
            .filter(|(p, &y)| **p == y)
            .count();
    }
    Ok(100.0 * correct as f64 / data.len().max(1) as f64)
}

/// Accuracy (clean, and under the training attack if any) and λ of the model now.
fn snapshot<T: Real>(
    model: &mut Model<T>,
    eval: &Dataset,
    cfg: &TrainConfig,
    progress: &mut dyn Progress,
) -> Result<Snapshot> {
    let (clean, robust) = match &cfg.adversary {
        Some(adv) => {
            let seed = seed_for(cfg.seed, Stream::Eval, 0, 0);
            let r = attacks::evaluate(model, eval, &adv.attack, cfg.batch_size, seed, progress)?;
            (r.clean_accuracy, Some(r.robust_accuracy))
        }
        None => (clean_accuracy(model, eval, cfg.batch_size)?, None),
    };
    Ok(Snapshot {
        clean,
        robust,
        lambdas: model.lambdas(),
    })
}
