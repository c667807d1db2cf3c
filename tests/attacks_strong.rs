//! The strong attacks (APGD-CE, APGD-DLR, APGD-T, FAB-T, Square, AutoAttack): every attack
//! stays in its ε-ball and in [0, 1]; the same seed gives the same figures, whatever the
//! batch size; Square never asks for a gradient; APGD's checkpoints are the reference's; the
//! provided `Classifier::logits_input_grad` equals `Model`'s; bad settings are refused; and on
//! the authors' MLP (784-256-64-10, no activation, so the logits are affine in the image and
//! the worst case of each margin over the box `[x − ε, x + ε] ∩ [0, 1]` is a vertex, computed
//! exactly here pixel by pixel) AutoAttack's robust accuracy equals the exact one within 2
//! images, and no attack breaks an image the exact computation proves robust (skipped with a
//! printed reason when `../shared/models` is absent).

use ndarray::{Array2, Array4, ArrayView2, ArrayView4};
use nrpm::attacks::{
    apgd_checkpoints, evaluate_attacks, evaluate_autoattack, perturb, Attack, Ball, EvalOptions,
    StrongSettings,
};
use nrpm::data::{Dataset, Split};
use nrpm::models::{Classifier, LayerSelection, Model, ModelSpec};
use nrpm::nn::LambdaParam;
use nrpm::progress::Silent;
use nrpm::seeds::{stream, ImageRngs};
use nrpm::{Norm, NrpmConfig, Result};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Slack of the ball checks: iterates are rounded to f32 entry by entry (relative error
/// ≤ 2⁻²⁴ each), so a norm may exceed ε by a few ulps.
const SLACK: f64 = 1e-5;

/// A seeded MLP for `[channels, side, side]` images with 10 classes, LPM or NRPM (L1, K = 2,
/// λ = 0.5) in every layer, ReLU or not.
fn random_mlp(channels: usize, side: usize, nrpm: bool, relu: bool, seed: u64) -> Model<f32> {
    let spec = ModelSpec::from_name("mlp2", channels, side)
        .unwrap()
        .with_mlp_relu(relu);
    let mut model = Model::<f32>::new(spec);
    if nrpm {
        let cfg = NrpmConfig::builder()
            .norm(Norm::L1)
            .k(2)
            .eps(1e-3)
            .lambda(0.5)
            .build()
            .unwrap();
        model
            .reprogram(&LayerSelection::All, cfg, LambdaParam::Raw)
            .unwrap();
    }
    model.init(seed);
    model
}

/// Images `[b, c, s, s]`: each entry 0, 1 or uniform in (0, 1), a third of the time each.
fn random_images(shape: (usize, usize, usize, usize), seed: u64) -> Array4<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array4::from_shape_simple_fn(shape, || match rng.random_range(0..3) {
        0 => 0.0,
        1 => 1.0,
        _ => rng.random::<f32>(),
    })
}

/// Small settings that keep the tests quick.
fn quick(ball: Ball) -> StrongSettings {
    StrongSettings {
        ball,
        steps: 12,
        restarts: 2,
        queries: 60,
        targets: 3,
    }
}

const STRONG: [&str; 6] = [
    "apgd-ce",
    "apgd-dlr",
    "apgd-t",
    "fab-t",
    "square",
    "autoattack",
];

fn rngs(seed: u64, n: usize) -> ImageRngs {
    ImageRngs::for_images(seed, stream::ATTACK, 0..n)
}

/// Asserts `adv` is in [0, 1] and `‖adv − x‖ ≤ ε` per image.
fn assert_in_ball(x: ArrayView4<f32>, adv: &Array4<f32>, ball: Ball, eps: f64, what: &str) {
    assert!(
        adv.iter().all(|v| (0.0..=1.0).contains(v)),
        "{what} left [0, 1]"
    );
    for (a, b) in x.outer_iter().zip(adv.outer_iter()) {
        let d: Vec<f64> = a.iter().zip(b).map(|(u, v)| f64::from(v - u)).collect();
        let norm = ball.norm(&d);
        assert!(
            norm <= eps * (1.0 + SLACK) + 1e-6,
            "{what}: ‖δ‖ = {norm} > {eps}"
        );
    }
}

#[test]
fn every_strong_attack_stays_in_its_ball_and_the_unit_box() {
    for (case, ball) in [Ball::Linf, Ball::L2, Ball::Linf, Ball::L2]
        .into_iter()
        .enumerate()
    {
        let seed = case as u64;
        let (channels, side) = [(1, 5), (2, 4), (3, 3), (1, 7)][case];
        let model = random_mlp(channels, side, case % 2 == 0, case < 2, seed);
        let x = random_images((6, channels, side, side), seed + 10);
        let labels: Vec<usize> = model.predict(x.view()).unwrap();
        let eps = match ball {
            Ball::Linf => 0.2,
            Ball::L2 => 1.0,
        };
        for name in STRONG {
            let attack = Attack::strong(name, eps, quick(ball)).unwrap();
            let adv =
                perturb(&model, x.view(), &labels, &attack, None, &mut rngs(seed, 6)).unwrap();
            assert_in_ball(x.view(), &adv, ball, eps, &attack.to_string());
        }
    }
}

/// `(robust_correct, every adversarial image's bits)` of `attack` on the first 40 test
/// images of the shipped subset, batch size `batch`.
fn figures(model: &Model<f32>, attack: &Attack, batch: usize, seed: u64) -> (usize, Vec<u32>) {
    let data = Dataset::mnist_subset(Split::Test).unwrap().first(40);
    let options = EvalOptions {
        batch_size: batch,
        seed,
        targeted: false,
    };
    let r = evaluate_attacks(
        model,
        &data,
        std::slice::from_ref(attack),
        &options,
        &mut Silent,
    )
    .unwrap();
    let (images, labels) = data.into_parts();
    let mut all_rngs = rngs(seed, labels.len());
    let adv = perturb(model, images.view(), &labels, attack, None, &mut all_rngs).unwrap();
    (
        r[0].robust_correct,
        adv.iter().map(|v| v.to_bits()).collect(),
    )
}

#[test]
fn same_seed_same_figures_whatever_the_batch_size() {
    let mut model = Model::<f32>::new(ModelSpec::from_name("mlp2", 1, 28).unwrap());
    model.init(4);
    for ball in [Ball::Linf, Ball::L2] {
        let eps = if ball == Ball::Linf { 0.05 } else { 0.8 };
        for name in STRONG {
            let attack = Attack::strong(name, eps, quick(ball)).unwrap();
            let a = figures(&model, &attack, 40, 7);
            let b = figures(&model, &attack, 40, 7);
            assert_eq!(a, b, "{attack}: same seed");
            let c = figures(&model, &attack, 7, 7);
            assert_eq!(a.0, c.0, "{attack}: batch size");
        }
    }
    // Another seed moves the random starts.
    let apgd = Attack::strong("apgd-ce", 0.05, quick(Ball::Linf)).unwrap();
    assert_ne!(
        figures(&model, &apgd, 40, 7).1,
        figures(&model, &apgd, 40, 8).1
    );
}

#[test]
fn apgd_checkpoints_are_the_references_for_100_steps() {
    assert_eq!(apgd_checkpoints(100), [22, 41, 57, 70, 80, 87, 93, 99]);
}

/// A classifier that answers logits only and panics when asked for a gradient.
struct LogitsOnly<'a>(&'a Model<f32>);

impl Classifier<f32> for LogitsOnly<'_> {
    fn input_shape(&self) -> [usize; 3] {
        self.0.input_shape()
    }
    fn classes(&self) -> usize {
        Classifier::classes(self.0)
    }
    fn logits(&self, x: ArrayView4<f32>) -> Result<Array2<f32>> {
        self.0.logits(x)
    }
    fn loss_input_grad(
        &self,
        _: ArrayView4<f32>,
        _: &[usize],
    ) -> Result<(f32, Array4<f32>, Array2<f32>)> {
        panic!("Square asked for a gradient")
    }
    fn logits_input_grad(
        &self,
        _: ArrayView4<f32>,
        _: &mut dyn FnMut(ArrayView2<f32>) -> Result<Array2<f32>>,
    ) -> Result<(Array2<f32>, Array4<f32>)> {
        panic!("Square asked for a gradient")
    }
}

#[test]
fn square_never_calls_a_gradient_and_still_breaks_images() {
    let mut model = Model::<f32>::new(ModelSpec::from_name("mlp2", 1, 28).unwrap());
    model.init(1);
    let data = Dataset::mnist_subset(Split::Test).unwrap().first(30);
    let (x, _) = data.into_parts();
    let labels = model.predict(x.view()).unwrap();
    for (ball, eps) in [(Ball::Linf, 0.1), (Ball::L2, 2.0)] {
        let settings = StrongSettings {
            ball,
            queries: 300,
            ..StrongSettings::default()
        };
        let square = Attack::strong("square", eps, settings).unwrap();
        let adv = perturb(
            &LogitsOnly(&model),
            x.view(),
            &labels,
            &square,
            None,
            &mut rngs(0, 30),
        )
        .unwrap();
        let after = model.predict(adv.view()).unwrap();
        let broken = after.iter().zip(&labels).filter(|(a, b)| a != b).count();
        assert!(
            broken > 0,
            "{square} broke nothing: the test would prove nothing"
        );
    }
    // The gradient attacks do ask, through the same wrapper.
    let apgd = Attack::strong("apgd-ce", 0.1, StrongSettings::default()).unwrap();
    let asked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        perturb(
            &LogitsOnly(&model),
            x.view(),
            &labels,
            &apgd,
            None,
            &mut rngs(0, 30),
        )
    }));
    assert!(asked.is_err());
}

/// A classifier with only the required methods: `logits_input_grad` is the provided one.
struct CrossEntropyOnly<'a>(&'a Model<f64>);

impl Classifier<f64> for CrossEntropyOnly<'_> {
    fn input_shape(&self) -> [usize; 3] {
        self.0.input_shape()
    }
    fn classes(&self) -> usize {
        Classifier::classes(self.0)
    }
    fn logits(&self, x: ArrayView4<f64>) -> Result<Array2<f64>> {
        self.0.logits(x)
    }
    fn loss_input_grad(
        &self,
        x: ArrayView4<f64>,
        labels: &[usize],
    ) -> Result<(f64, Array4<f64>, Array2<f64>)> {
        self.0.loss_input_grad(x, labels)
    }
}

#[test]
fn provided_logits_input_grad_equals_the_models_backward() {
    let spec = ModelSpec::from_name("mlp2", 1, 4)
        .unwrap()
        .with_mlp_relu(true);
    let mut model = Model::<f64>::new(spec);
    model.init(2);
    let x = random_images((3, 1, 4, 4), 5).mapv(f64::from);
    // Weights that sum to 0 per image (a logit difference and a DLR-like combination).
    let weights = |z: ArrayView2<f64>| -> Result<Array2<f64>> {
        let mut v = Array2::zeros(z.raw_dim());
        for b in 0..z.nrows() {
            v[[b, b]] = 1.0;
            v[[b, 9]] = -0.25;
            v[[b, 5]] = -0.75 + z[[b, 0]] * 0.0;
        }
        Ok(v)
    };
    let (z1, g1) = model.logits_input_grad(x.view(), &mut { weights }).unwrap();
    let (z2, g2) = CrossEntropyOnly(&model)
        .logits_input_grad(x.view(), &mut { weights })
        .unwrap();
    assert_eq!(z1, z2);
    for (a, b) in g1.iter().zip(&g2) {
        assert!((a - b).abs() <= 1e-12 * (1.0 + a.abs()), "{a} vs {b}");
    }
    assert!(g1.iter().any(|v| v.abs() > 1e-3));
    // Weights that do not sum to 0 are refused by the provided version.
    let mut shifted = |z: ArrayView2<f64>| Ok(Array2::ones(z.raw_dim()));
    assert!(CrossEntropyOnly(&model)
        .logits_input_grad(x.view(), &mut shifted)
        .is_err());
}

#[test]
fn bad_settings_are_refused() {
    let mut model = Model::<f32>::new(ModelSpec::from_name("mlp1", 1, 4).unwrap());
    model.init(0);
    let x = random_images((2, 1, 4, 4), 0);
    let labels = [1, 2];
    for settings in [
        StrongSettings {
            steps: 0,
            ..StrongSettings::default()
        },
        StrongSettings {
            queries: 0,
            ..StrongSettings::default()
        },
        StrongSettings {
            restarts: 0,
            ..StrongSettings::default()
        },
        StrongSettings {
            targets: 0,
            ..StrongSettings::default()
        },
    ] {
        assert!(Attack::strong("autoattack", 0.1, settings).is_err());
    }
    assert!(Attack::strong("cw", 0.1, StrongSettings::default()).is_err());
    assert!(Attack::strong("apgd-ce", -0.1, StrongSettings::default()).is_err());
    // 10 targets for 10 classes; a target for an untargeted attack.
    let ten = StrongSettings {
        targets: 10,
        ..StrongSettings::default()
    };
    for name in ["apgd-t", "fab-t", "autoattack"] {
        let a = Attack::strong(name, 0.1, ten).unwrap();
        let err = perturb(&model, x.view(), &labels, &a, None, &mut rngs(0, 2)).unwrap_err();
        assert!(err.to_string().contains("targets"), "{err}");
    }
    let apgd = Attack::strong("apgd-ce", 0.1, StrongSettings::default()).unwrap();
    assert!(perturb(
        &model,
        x.view(),
        &labels,
        &apgd,
        Some(&[3, 4]),
        &mut rngs(0, 2)
    )
    .is_err());
    // Serde refuses what validate refuses.
    let json = r#"{"Square":{"eps":0.1,"ball":"Linf","queries":0,"restarts":1}}"#;
    assert!(serde_json::from_str::<Attack>(json).is_err());
    let ok = serde_json::to_string(&apgd).unwrap();
    assert_eq!(serde_json::from_str::<Attack>(&ok).unwrap(), apgd);
}

// ---- the authors' MLP: affine logits, exact worst case ----

/// The authors' MLP (784-256-64-10, no activation) in f32 and f64, or `None` with a printed
/// reason when the checkpoint is absent.
fn authors_mlp() -> Option<(Model<f32>, Model<f64>)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/models/mlp3_mnist.safetensors"
    );
    if !std::path::Path::new(path).exists() {
        eprintln!("skipped: {path} not found");
        return None;
    }
    let spec = ModelSpec::from_name("mlp3", 1, 28).unwrap();
    let mut f32_model = Model::<f32>::new(spec.clone());
    f32_model.load_file(path, false).unwrap();
    let mut f64_model = Model::<f64>::new(spec);
    f64_model.load_file(path, false).unwrap();
    Some((f32_model, f64_model))
}

/// The affine map of a model with no activation: `logits(x) = A·x + c`, `A [K, D]`, `c [K]`,
/// read off the f64 model at 0 and at the D unit images.
fn affine_map(model: &Model<f64>) -> (Array2<f64>, Vec<f64>) {
    let [ch, h, w] = model.input_shape();
    let d = ch * h * w;
    let mut probes = Array4::<f64>::zeros((d + 1, ch, h, w));
    for i in 0..d {
        probes.as_slice_mut().unwrap()[(i + 1) * d + i] = 1.0;
    }
    let z = model.logits(probes.view()).unwrap();
    let c = z.row(0).to_vec();
    let mut a = Array2::zeros((z.ncols(), d));
    for i in 0..d {
        for k in 0..z.ncols() {
            a[[k, i]] = z[[i + 1, k]] - c[k];
        }
    }
    (a, c)
}

/// The exact worst margin `min_{j≠y} min_{x' ∈ box} (z_y − z_j)(x')` of one image: each pixel
/// at the end of `[x − ε, x + ε] ∩ [0, 1]` that lowers `a_y − a_j`'s product.
fn worst_margin(a: &Array2<f64>, c: &[f64], x: &[f32], y: usize, eps: f64) -> f64 {
    (0..c.len())
        .filter(|&j| j != y)
        .map(|j| {
            let mut m = c[y] - c[j];
            for (i, &xi) in x.iter().enumerate() {
                let v = a[[y, i]] - a[[j, i]];
                let xi = f64::from(xi);
                let end = if v > 0.0 {
                    (xi - eps).max(0.0)
                } else {
                    (xi + eps).min(1.0)
                };
                m += v * end;
            }
            m
        })
        .fold(f64::INFINITY, f64::min)
}

/// Images of the AutoAttack check: the first 1000 of the shipped test subset (about 10 s for
/// AutoAttack and every single attack at both budgets, release build, 2 cores).
const EXACT_IMAGES: usize = 1000;

/// Margins within this of 0 are left to f32 rounding (neither side is asserted for them).
const MARGIN_TOLERANCE: f64 = 1e-4;

#[test]
fn autoattack_reaches_the_exact_worst_case_on_the_authors_mlp() {
    let Some((model, model64)) = authors_mlp() else {
        return;
    };
    let (a, c) = affine_map(&model64);
    let data = Dataset::mnist_subset(Split::Test)
        .unwrap()
        .first(EXACT_IMAGES);
    let options = EvalOptions::default();
    for eps in [0.05, 0.1] {
        let clean = model.predict(data.images()).unwrap();
        let worst: Vec<Option<f64>> = (0..data.len())
            .map(|i| {
                let x = data.images().index_axis(ndarray::Axis(0), i).to_owned();
                let y = data.labels()[i];
                (clean[i] == y).then(|| worst_margin(&a, &c, x.as_slice().unwrap(), y, eps))
            })
            .collect();
        let exact = worst.iter().flatten().filter(|&&m| m > 0.0).count();
        let provably_robust: Vec<usize> = (0..data.len())
            .filter(|&i| worst[i].is_some_and(|m| m > MARGIN_TOLERANCE))
            .collect();
        let aa = Attack::strong("autoattack", eps, StrongSettings::default()).unwrap();
        let r = evaluate_autoattack(&model, &data, &[aa], &options, &mut Silent).unwrap();
        let robust = r[0].result.robust_correct;
        eprintln!("ε = {eps}: exact {exact}, AutoAttack {robust} of {EXACT_IMAGES}");
        assert!(
            robust.abs_diff(exact) <= 2,
            "ε = {eps}: AutoAttack {robust}, exact {exact}"
        );
        let broken: Vec<usize> = r[0]
            .images
            .iter()
            .filter(|rec| rec.broken_by.is_some())
            .map(|rec| rec.index)
            .collect();
        assert!(
            broken.iter().all(|i| !provably_robust.contains(i)),
            "ε = {eps}: AutoAttack broke a provably robust image"
        );
        // No single attack goes below the exact worst case either.
        for name in ["apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square"] {
            let attack = Attack::strong(name, eps, StrongSettings::default()).unwrap();
            let (x, labels) = data.clone().into_parts();
            let adv = perturb(
                &model,
                x.view(),
                &labels,
                &attack,
                None,
                &mut rngs(0, labels.len()),
            )
            .unwrap();
            let pred = model.predict(adv.view()).unwrap();
            for &i in &provably_robust {
                assert_eq!(
                    pred[i], labels[i],
                    "{attack} broke provably robust image {i}"
                );
            }
        }
    }
}
