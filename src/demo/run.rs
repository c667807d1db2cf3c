//! The demo's stages, in order: load, train LPM, Paradigm 2, attack every variant (FGSM, PGD,
//! PGD with LPM gradients), influence curve. Each stage is timed; each reports progress and ends with one summary line.

use std::time::Instant;

use ndarray::Array2;

use crate::demo::certification;
use crate::demo::influence::{influence_curve, InfluenceCurve, Probe};
use crate::demo::{DemoConfig, DemoReport, Machine, Point, StageTime, Variant};
use nrpm::attacks::{
    correct_by_budget, evaluate_attacks, evaluate_transfer, Attack, EvalOptions, EvalResult,
    StrongSettings,
};
use nrpm::data::{Dataset, Split};
use nrpm::error::{Error, Result};
use nrpm::models::{LayerSelection, Model, ModelSpec};
use nrpm::nn::{LambdaParam, Layer};
use nrpm::progress::Progress;
use nrpm::report::{self, stats::Proportion};
use nrpm::train::{self, Checkpoints, TrainConfig, TrainReport};

/// Runs the demo `cfg` describes (module doc of [`crate::demo`]) and returns every figure.
/// Nothing is written; see [`crate::demo::write_report`].
///
/// # Errors
/// [`Error::Config`] for invalid settings (checked before any work); data, training and
/// attack errors.
pub fn run(cfg: &DemoConfig, progress: &mut dyn Progress) -> Result<DemoReport> {
    cfg.validate()?;
    let load_before = report::load_average();
    let mut clock = Stages::new();
    let (train_set, test) = clock.stage("load the MNIST subset", progress, |_| load(cfg))?;
    let (lpm, lpm_training) = clock.stage("train LPM from scratch", progress, |p| {
        train_lpm(cfg, &train_set, &test, p)
    })?;
    let (p2, paradigm2_training) = clock.stage("paradigm 2: learn λ", progress, |p| {
        paradigm2(cfg, &lpm, &train_set, &test, p)
    })?;
    let certification = clock.stage("certify LPM and P2", progress, |p| {
        certification::certify(cfg, &lpm, &p2, &test, p)
    })?;
    let mut variants = Vec::new();
    for candidate in candidates(cfg, &lpm, p2)? {
        let stage = format!("attack {}", candidate.name);
        let v = clock.stage(&stage, progress, |p| {
            evaluate_variant(cfg, candidate, &test, p)
        })?;
        variants.push(v);
    }
    let hybrid = paradigm2_training
        .after
        .lambdas
        .first()
        .map_or(cfg.paradigm2_lambda0, |l| l.1);
    let influence = clock.stage("influence curve", progress, |_| {
        neuron_curve(cfg, &lpm, &test, hybrid)
    })?;
    Ok(DemoReport {
        config: cfg.clone(),
        train_data: (train_set.name().to_string(), train_set.len()),
        test_data: (test.name().to_string(), test.len()),
        lpm_training,
        paradigm2_training,
        variants,
        influence,
        certification,
        seconds: clock.total(),
        timings: clock.stages,
        machine: Machine {
            description: report::machine(),
            threads: rayon::current_num_threads(),
            load_before,
            load_after: report::load_average(),
        },
    })
}

/// Stage timer.
struct Stages {
    started: Instant,
    stages: Vec<StageTime>,
}

impl Stages {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            stages: Vec::new(),
        }
    }

    /// Runs `f`, records its wall time under `name`, and reports `name: … s`.
    fn stage<R>(
        &mut self,
        name: &str,
        progress: &mut dyn Progress,
        f: impl FnOnce(&mut dyn Progress) -> Result<R>,
    ) -> Result<R> {
        let clock = Instant::now();
        let out = f(&mut Prefixed {
            prefix: name,
            inner: progress,
        })?;
        let seconds = clock.elapsed().as_secs_f64();
        progress.finish(&format!("[{:>6.1} s] {name}: {seconds:.1} s", self.total()));
        self.stages.push(StageTime {
            stage: name.to_string(),
            seconds,
        });
        Ok(out)
    }

    fn total(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// A [`Progress`] that puts `prefix: ` before every stage name and summary.
struct Prefixed<'a> {
    prefix: &'a str,
    inner: &'a mut dyn Progress,
}

impl Progress for Prefixed<'_> {
    fn start(&mut self, stage: &str, total: u64) {
        self.inner
            .start(&format!("{}: {stage}", self.prefix), total);
    }
    fn advance(&mut self, n: u64) {
        self.inner.advance(n);
    }
    fn finish(&mut self, summary: &str) {
        match summary.is_empty() {
            true => self.inner.finish(""),
            false => self.inner.finish(&format!("  {}: {summary}", self.prefix)),
        }
    }
}

/// The first `train_n` training and `test_n` test images of the shipped subset.
fn load(cfg: &DemoConfig) -> Result<(Dataset, Dataset)> {
    let (train, test) = (
        Dataset::mnist_subset(Split::Train)?,
        Dataset::mnist_subset(Split::Test)?,
    );
    for (what, n, data) in [
        ("training images", cfg.train_n, &train),
        ("test images", cfg.test_n, &test),
    ] {
        if n > data.len() {
            return Err(Error::config(
                what,
                n,
                "more than the shipped subset holds (5000, 1000)",
            ));
        }
    }
    Ok((train.first(cfg.train_n), test.first(cfg.test_n)))
}

/// The authors' MLP (784-256-64-10, no activation), initialised from the seed and trained
/// with plain LPM.
fn train_lpm(
    cfg: &DemoConfig,
    data: &Dataset,
    test: &Dataset,
    progress: &mut dyn Progress,
) -> Result<(Model<f32>, TrainReport)> {
    let [c, side, _] = data.image_shape();
    let mut model = Model::<f32>::new(ModelSpec::from_name("mlp3", c, side)?);
    model.init(cfg.seed);
    fit(model, data, test, &cfg.scratch_train(), progress)
}

/// Trains `model` as `settings` say (no checkpoints); returns it with the training report.
fn fit(
    mut model: Model<f32>,
    data: &Dataset,
    test: &Dataset,
    settings: &TrainConfig,
    progress: &mut dyn Progress,
) -> Result<(Model<f32>, TrainReport)> {
    let report = train::train(
        &mut model,
        data,
        test,
        settings,
        &Checkpoints::default(),
        progress,
    )?;
    Ok((model, report))
}

/// `lpm` with every layer reprogrammed at λ (`param`: fixed or learnable).
fn reprogrammed(
    cfg: &DemoConfig,
    lpm: &Model<f32>,
    lambda: f64,
    param: LambdaParam,
) -> Result<Model<f32>> {
    let mut model = lpm.clone();
    model.reprogram(&LayerSelection::Default, cfg.nrpm(lambda)?, param)?;
    Ok(model)
}

/// Paradigm 2: λ = sigmoid(θ) learned per layer, the weights frozen.
fn paradigm2(
    cfg: &DemoConfig,
    lpm: &Model<f32>,
    data: &Dataset,
    test: &Dataset,
    progress: &mut dyn Progress,
) -> Result<(Model<f32>, TrainReport)> {
    let model = reprogrammed(cfg, lpm, cfg.paradigm2_lambda0, LambdaParam::Sigmoid)?;
    let data = data.first(cfg.paradigm2_train_n);
    fit(model, &data, test, &cfg.paradigm2_train(), progress)
}

/// A model to compare, with its display name and the paper's paradigm number.
struct Candidate {
    name: String,
    paradigm: Option<u8>,
    model: Model<f32>,
}

/// The compared models: LPM, Paradigm 1 at each λ, Paradigm 2.
fn candidates(cfg: &DemoConfig, lpm: &Model<f32>, p2: Model<f32>) -> Result<Vec<Candidate>> {
    let candidate = |name: String, paradigm, model| Candidate {
        name,
        paradigm,
        model,
    };
    let mut out = vec![candidate("LPM".into(), None, lpm.clone())];
    for &lambda in &cfg.paradigm1_lambdas {
        let model = reprogrammed(cfg, lpm, lambda, LambdaParam::Raw)?;
        out.push(candidate(format!("P1 λ={lambda}"), Some(1), model));
    }
    out.push(candidate("P2 learned λ".into(), Some(2), p2));
    Ok(out)
}

/// FGSM, PGD, and PGD with gradients from the LPM layers (BPDA-style) at every budget.
fn evaluate_variant(
    cfg: &DemoConfig,
    candidate: Candidate,
    test: &Dataset,
    progress: &mut dyn Progress,
) -> Result<Variant> {
    let Candidate {
        name,
        paradigm,
        mut model,
    } = candidate;
    let budgets = cfg.attacked_budgets();
    let options = EvalOptions {
        batch_size: cfg.eval_batch,
        seed: cfg.seed,
        targeted: false,
    };
    let fgsm: Vec<Attack> = budgets.iter().map(|&eps| Attack::Fgsm { eps }).collect();
    let pgd: Vec<Attack> = budgets.iter().map(|&eps| cfg.pgd(eps)).collect();
    let fgsm = evaluate_attacks(&model, test, &fgsm, &options, progress)?;
    let white = evaluate_attacks(&model, test, &pgd, &options, progress)?;
    let autoattack = autoattack(cfg, &model, test, &options, progress)?;
    let lambdas = model.lambdas();
    let bpda = match lambdas.is_empty() {
        true => white.clone(), // an LPM model's own gradients are the LPM gradients
        false => {
            let source = model.lpm_twin();
            let mut p = Prefixed {
                prefix: "LPM gradients",
                inner: progress,
            };
            evaluate_transfer(&model, &source, test, &pgd, &options, &mut p)?
        }
    };
    Ok(Variant {
        name,
        paradigm,
        lambdas: layer_lambdas(&mut model, lambdas),
        clean: Proportion::new(fgsm[0].clean_correct, fgsm[0].n)?,
        fgsm: points(&cfg.budgets, &fgsm)?,
        pgd: points(&cfg.budgets, &white)?,
        bpda: points(&cfg.budgets, &bpda)?,
        autoattack,
    })
}

/// AutoAttack's standard suite at `autoattack_budgets` on the first `autoattack_n` images;
/// the first point (ε = 0) is the clean pass on those images.
fn autoattack(
    cfg: &DemoConfig,
    model: &Model<f32>,
    test: &Dataset,
    options: &EvalOptions,
    progress: &mut dyn Progress,
) -> Result<Vec<Point>> {
    let attacks = cfg
        .autoattack_budgets
        .iter()
        .map(|&eps| Attack::strong("autoattack", eps, StrongSettings::default()))
        .collect::<Result<Vec<_>>>()?;
    let data = test.first(cfg.autoattack_n);
    let results = evaluate_attacks(model, &data, &attacks, options, progress)?;
    let budgets: Vec<f64> = std::iter::once(0.0)
        .chain(cfg.autoattack_budgets.iter().copied())
        .collect();
    points(&budgets, &results)
}

/// `lambdas` of the NRPM layers, or every layer at λ = 1 for a plain LPM model.
fn layer_lambdas(model: &mut Model<f32>, lambdas: Vec<(String, f64)>) -> Vec<(String, f64)> {
    match lambdas.is_empty() {
        true => model
            .matching_layers()
            .into_iter()
            .map(|(key, _)| (key, 1.0))
            .collect(),
        false => lambdas,
    }
}

/// One point per budget: ε = 0 is the clean pass, the others come from `results` in order.
fn points(budgets: &[f64], results: &[EvalResult]) -> Result<Vec<Point>> {
    let n = results.first().map_or(0, |r| r.n);
    budgets
        .iter()
        .zip(correct_by_budget(budgets, results)?)
        .map(|(&eps, (k, seconds))| {
            Ok(Point {
                eps,
                accuracy: Proportion::new(k, n)?,
                seconds,
            })
        })
        .collect()
}

/// The influence curve of the trained model's fc1 on test image `cfg.influence_image`.
fn neuron_curve(
    cfg: &DemoConfig,
    lpm: &Model<f32>,
    test: &Dataset,
    hybrid: f64,
) -> Result<InfluenceCurve> {
    let weight = first_layer_weight(lpm)?;
    let i = cfg.influence_image;
    let x: Vec<f64> = test
        .images()
        .index_axis(ndarray::Axis(0), i)
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let probe = Probe {
        layer: "fc1",
        weight: weight.view(),
        image: i,
        label: test.labels()[i],
        x: &x,
    };
    influence_curve(&probe, cfg.nrpm(0.0)?, hybrid, cfg.influence_points)
}

/// fc1's weight `[O, D]` in f64.
fn first_layer_weight(model: &Model<f32>) -> Result<Array2<f64>> {
    let mut weight = None;
    model.net().visit_layers("", &mut |key, layer| {
        if let (Layer::Linear(l), "fc1") = (layer, key) {
            weight = Some(l.weight().mapv(f64::from));
        }
    });
    weight.ok_or_else(|| Error::config("layer", "fc1", "the demo model has no [O, D] fc1 weight"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(eps: f64, robust: usize) -> EvalResult {
        EvalResult {
            attack: Attack::Fgsm { eps },
            n: 10,
            clean_correct: 9,
            robust_correct: robust,
            clean_accuracy: 90.0,
            robust_accuracy: 10.0 * robust as f64,
            clean_seconds: 0.5,
            seconds: 1.0,
        }
    }

    #[test]
    fn points_put_the_clean_pass_at_eps_zero() {
        let p = points(&[0.0, 0.1, 0.3], &[result(0.1, 4), result(0.3, 1)]).unwrap();
        let ks: Vec<usize> = p.iter().map(|p| p.accuracy.k).collect();
        assert_eq!(ks, vec![9, 4, 1]);
        assert_eq!((p[0].seconds, p[2].eps), (0.5, 0.3));
    }

    #[test]
    fn prefixed_progress_names_the_stage() {
        #[derive(Default)]
        struct Log(Vec<String>);
        impl Progress for Log {
            fn start(&mut self, s: &str, _: u64) {
                self.0.push(s.into());
            }
            fn advance(&mut self, _: u64) {}
            fn finish(&mut self, s: &str) {
                self.0.push(s.into());
            }
        }
        let mut log = Log::default();
        let mut clock = Stages::new();
        let v = clock
            .stage("train", &mut log, |p| {
                p.start("epoch 1/1", 3);
                p.finish("done");
                Ok(7)
            })
            .unwrap();
        assert_eq!(v, 7);
        assert_eq!(log.0[0], "train: epoch 1/1");
        assert_eq!(log.0[1], "  train: done");
        assert!(log.0[2].ends_with("train: 0.0 s"), "{}", log.0[2]);
        assert_eq!(clock.stages.len(), 1);
    }

    #[test]
    fn too_many_images_is_a_config_error() {
        let mut cfg = DemoConfig::quick(0);
        cfg.test_n = 1001;
        assert!(matches!(load(&cfg), Err(Error::Config { .. })));
    }
}
