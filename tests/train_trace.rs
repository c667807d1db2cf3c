//! `nrpm::train::train_observed` and `StepTrace`: the observer sees every step once, with its
//! images, the parameters before the update and the gradient the update uses; watching does
//! not change training; the trace file holds each step's numbers; a diverging step reaches the
//! observer with its error.

use approx::assert_relative_eq;
use ndarray::Axis;

use nrpm::data::{Dataset, Split};
use nrpm::models::{Model, ModelSpec};
use nrpm::nn::Ctx;
use nrpm::progress::Silent;
use nrpm::seeds::{stream, ImageRngs};
use nrpm::train::{
    batch_gradient, train, train_observed, Checkpoints, Paradigm, Sgd, SgdConfig, StepObserver,
    StepTrace, StepView, TrainConfig,
};
use nrpm::Error;

fn setup(lr: f64) -> (Model<f32>, Dataset, Dataset, TrainConfig) {
    let data = Dataset::mnist_subset(Split::Train).unwrap().first(100);
    let eval = Dataset::mnist_subset(Split::Test).unwrap().first(20);
    let mut model = Model::new(ModelSpec::from_name("mlp3", 1, 28).unwrap());
    model.init(5);
    let cfg = TrainConfig {
        paradigm: Paradigm::Scratch,
        epochs: 2,
        batch_size: 32,
        sgd: SgdConfig {
            lr,
            ..SgdConfig::default()
        },
        seed: 11,
        ..TrainConfig::default()
    };
    (model, data, eval, cfg)
}

/// `train_observed` without checkpoints or progress.
fn observed(
    model: &mut Model<f32>,
    (data, eval): (&Dataset, &Dataset),
    cfg: &TrainConfig,
    observer: &mut dyn StepObserver<f32>,
) -> nrpm::Result<nrpm::train::TrainReport> {
    train_observed(
        model,
        data,
        eval,
        cfg,
        &Checkpoints::default(),
        &mut Silent,
        observer,
    )
}

/// Every parameter's bits, in visiting order.
fn bits(m: &Model<f32>) -> Vec<(String, Vec<u32>)> {
    let mut out = Vec::new();
    m.visit(&mut |p| out.push((p.key.clone(), p.value.iter().map(|v| v.to_bits()).collect())));
    out
}

/// Checks each step against the data and a recomputed gradient, and keeps what it saw.
struct Checker<'a> {
    data: &'a Dataset,
    seen: Vec<(usize, usize, Vec<usize>)>,
    /// The model and optimiser replayed from the observed gradients.
    replay: Option<(Model<f32>, Sgd<f32>)>,
    lines: Vec<serde_json::Value>,
    failed: Option<String>,
}

impl<'a> Checker<'a> {
    fn new(data: &'a Dataset, replay: Option<(Model<f32>, Sgd<f32>)>) -> Self {
        Self {
            data,
            seen: Vec::new(),
            replay,
            lines: Vec::new(),
            failed: None,
        }
    }
}

impl StepObserver<f32> for Checker<'_> {
    fn observe(&mut self, s: &StepView<'_, f32>) -> nrpm::Result<()> {
        // The images are the dataset's images at the reported indices, in that order.
        let expected = self.data.images().select(Axis(0), s.indices);
        assert_eq!(s.x, expected, "epoch {} step {}", s.epoch, s.step);
        let labels: Vec<usize> = s.indices.iter().map(|&i| self.data.labels()[i]).collect();
        assert_eq!(s.labels, &labels[..]);
        // The model is what the observed gradients of the earlier steps make of the start.
        if let Some((m, _)) = &self.replay {
            assert_eq!(bits(s.model), bits(m), "epoch {} step {}", s.epoch, s.step);
        }
        self.lines.push(StepTrace::line(s));
        match s.gradient {
            Ok(g) => {
                let mut rngs = ImageRngs::for_images(0, stream::ATTACK, 0..labels.len());
                let again =
                    batch_gradient(s.model, s.x, s.labels, None, &mut Ctx::train(0), &mut rngs)?;
                assert_eq!(g.grads.map, again.grads.map);
                assert_eq!(g.loss_sum, again.loss_sum);
                if let Some((m, sgd)) = &mut self.replay {
                    sgd.step(m, &g.grads, s.lr, Paradigm::Scratch)?;
                }
            }
            Err(e) => self.failed = Some(e.to_string()),
        }
        self.seen.push((s.epoch, s.step, s.indices.to_vec()));
        Ok(())
    }
}

#[test]
fn observer_sees_every_step_once_and_does_not_change_training() {
    let (model, data, eval, cfg) = setup(0.05);
    let mut plain = model.clone();
    train(
        &mut plain,
        &data,
        &eval,
        &cfg,
        &Checkpoints::default(),
        &mut Silent,
    )
    .unwrap();
    let mut watched = model.clone();
    let mut checker = Checker::new(&data, Some((model.clone(), Sgd::new(cfg.sgd).unwrap())));
    let report = observed(&mut watched, (&data, &eval), &cfg, &mut checker).unwrap();
    assert_eq!(report.history.len(), 2);
    assert_eq!(
        bits(&watched),
        bits(&plain),
        "observing changed the trained weights"
    );
    // 100 images in batches of 32: 4 steps per epoch, 1-based; each epoch covers every image
    // once, in another order each epoch.
    let steps: Vec<(usize, usize)> = checker.seen.iter().map(|(e, s, _)| (*e, *s)).collect();
    assert_eq!(
        steps,
        [
            (1, 1),
            (1, 2),
            (1, 3),
            (1, 4),
            (2, 1),
            (2, 2),
            (2, 3),
            (2, 4)
        ]
    );
    let epoch = |e: usize| -> Vec<usize> {
        let ids = checker.seen.iter().filter(|(x, _, _)| *x == e);
        ids.flat_map(|(_, _, i)| i.clone()).collect()
    };
    for e in [1, 2] {
        let mut ids = epoch(e);
        assert_eq!(ids.len(), 100);
        ids.sort_unstable();
        assert_eq!(ids, (0..100).collect::<Vec<_>>(), "epoch {e}");
    }
    assert_ne!(epoch(1), epoch(2), "both epochs saw the same order");
    assert!(checker.failed.is_none());
}

#[test]
fn trace_lines_hold_the_steps_numbers() {
    let (model, data, eval, cfg) = setup(0.05);
    let mut checker = Checker::new(&data, None);
    // The numbers of one line, against the model and gradient of its step.
    let mut m = model.clone();
    observed(&mut m, (&data, &eval), &cfg, &mut checker).unwrap();
    let first = &checker.lines[0];
    let fresh = model.clone();
    let ids = &checker.seen[0].2;
    let x = data.images().select(Axis(0), ids);
    let labels: Vec<usize> = ids.iter().map(|&i| data.labels()[i]).collect();
    let mut rngs = ImageRngs::for_images(0, stream::ATTACK, 0..labels.len());
    let g = batch_gradient(
        &fresh,
        x.view(),
        &labels,
        None,
        &mut Ctx::train(0),
        &mut rngs,
    )
    .unwrap();
    for (key, grad) in &g.grads.map {
        let norm = grad
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt();
        let max = grad.iter().map(|v| f64::from(v.abs())).fold(0.0, f64::max);
        assert_relative_eq!(
            first["grad_norm"][key].as_f64().unwrap(),
            norm,
            max_relative = 1e-12
        );
        assert_relative_eq!(
            first["grad_max"][key].as_f64().unwrap(),
            max,
            max_relative = 1e-12
        );
    }
    fresh.visit(&mut |p| {
        let max = p
            .value
            .iter()
            .map(|v| f64::from(v.abs()))
            .fold(0.0, f64::max);
        assert_eq!(
            first["param_max"][&p.key].as_f64().unwrap(),
            max,
            "{}",
            p.key
        );
    });
    assert_relative_eq!(
        first["loss"].as_f64().unwrap(),
        g.loss_sum / labels.len() as f64,
        max_relative = 1e-12
    );
    assert_eq!(first["images"].as_array().unwrap().len(), 32);

    // The file: one line per step, the same numbers as StepTrace::line.
    let path = std::env::temp_dir().join(format!("nrpm-trace-{}.jsonl", std::process::id()));
    let mut trace = StepTrace::create(&path).unwrap();
    let mut m = model.clone();
    observed(&mut m, (&data, &eval), &cfg, &mut trace).unwrap();
    drop(trace);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, checker.lines);
    std::fs::remove_file(&path).ok();
}

#[test]
fn the_step_that_diverges_reaches_the_observer_with_its_error() {
    let (mut model, data, eval, cfg) = setup(1e30);
    let mut checker = Checker::new(&data, None);
    let err = observed(&mut model, (&data, &eval), &cfg, &mut checker).unwrap_err();
    let Error::Diverged(d) = err else {
        panic!("expected a divergence, got {err}")
    };
    let (epoch, step, _) = checker.seen.last().unwrap();
    assert_eq!((*epoch, *step), (d.epoch, d.step));
    assert!(d.step > 1, "lr 1e30 should take one finite step first");
    let message = checker.failed.expect("the failing step was not observed");
    assert_eq!(message, d.cause.to_string());
    let last = checker.lines.last().unwrap();
    assert_eq!(last["error"].as_str().unwrap(), message);
    assert!(last.get("grad_norm").is_none());
}
