//! `nrpm::train`: the SGD update against a hand computation, the mean-loss gradients, what
//! each paradigm changes, plain LPM training of the MLP, seeding, and bit-exact resuming.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ndarray::{ArrayD, IxDyn};

use nrpm::attacks::Attack;
use nrpm::data::{Dataset, Split};
use nrpm::models::{LayerSelection, Model, ModelSpec};
use nrpm::nn::{Ctx, LambdaParam, ParamGrads, Role};
use nrpm::progress::Silent;
use nrpm::seeds::{stream, ImageRngs};
use nrpm::train::{
    batch_gradient, checkpoint, train, AdvLoss, Adversary, Checkpoints, Paradigm, Sgd, SgdConfig,
    TrainConfig, TrainReport,
};
use nrpm::{Error, Norm, NrpmConfig};

/// The first `n_train` training and `n_test` test images of the shipped subset.
fn mnist(n_train: usize, n_test: usize) -> (Dataset, Dataset) {
    let train = Dataset::mnist_subset(Split::Train).unwrap().first(n_train);
    let test = Dataset::mnist_subset(Split::Test).unwrap().first(n_test);
    (train, test)
}

/// A seeded model `name` for MNIST images.
fn model(name: &str, seed: u64) -> Model<f32> {
    let mut m = Model::new(ModelSpec::from_name(name, 1, 28).unwrap());
    m.init(seed);
    m
}

/// Reprograms the authors' layers with NRPM L1 (K = 1, ε = 5e-5), λ = sigmoid(θ) = `lambda`.
fn reprogram(m: &mut Model<f32>, lambda: f64) {
    let cfg = NrpmConfig::builder()
        .norm(Norm::L1)
        .k(1)
        .eps(5e-5)
        .lambda(lambda)
        .build()
        .unwrap();
    m.reprogram(
        &LayerSelection::Default,
        cfg.with_lambda(lambda).unwrap(),
        LambdaParam::Sigmoid,
    )
    .unwrap();
}

fn fgsm(eps: f64, loss: AdvLoss) -> Option<Adversary> {
    Some(Adversary {
        attack: Attack::Fgsm { eps },
        loss,
    })
}

fn config(paradigm: Paradigm, epochs: usize, lr: f64, adversary: Option<Adversary>) -> TrainConfig {
    TrainConfig {
        paradigm,
        epochs,
        batch_size: 32,
        sgd: SgdConfig {
            lr,
            momentum: 0.9,
            weight_decay: 0.0,
        },
        lr_steps: vec![],
        adversary,
        seed: 3,
        frozen_batchnorm: false,
        noise_sd: 0.0,
    }
}

fn run(
    m: &mut Model<f32>,
    data: (&Dataset, &Dataset),
    cfg: &TrainConfig,
    dirs: &Checkpoints,
) -> TrainReport {
    train(m, data.0, data.1, cfg, dirs, &mut Silent).unwrap()
}

/// Every tensor's bits by key, split by role: (λ slots, everything else).
type Bits = BTreeMap<String, Vec<u32>>;
fn bits(m: &mut Model<f32>) -> (Bits, Bits) {
    let (mut lambda, mut rest) = (Bits::new(), Bits::new());
    m.visit_mut(&mut |p| {
        let b = p.value.iter().map(|v| v.to_bits()).collect();
        match p.role {
            Role::Lambda => lambda.insert(p.key, b),
            _ => rest.insert(p.key, b),
        };
    });
    (lambda, rest)
}

/// Keys whose bits differ between two [`bits`] results (or exist in only one).
fn differing(a: &(Bits, Bits), b: &(Bits, Bits)) -> Vec<String> {
    let (all_a, all_b): (Bits, Bits) = (
        a.0.clone().into_iter().chain(a.1.clone()).collect(),
        b.0.clone().into_iter().chain(b.1.clone()).collect(),
    );
    let keys: std::collections::BTreeSet<&String> = all_a.keys().chain(all_b.keys()).collect();
    keys.into_iter()
        .filter(|k| all_a.get(*k) != all_b.get(*k))
        .cloned()
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nrpm-train-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

#[test]
fn sgd_step_matches_hand_computation() {
    // θ₀ = 1, g = 0.5, η = 0.1, μ = 0.9, wd = 0.01:
    // d₁ = 0.5 + 0.01·1 = 0.51, buf₁ = 0.51, θ₁ = 1 − 0.051 = 0.949
    // d₂ = 0.5 + 0.01·0.949 = 0.50949, buf₂ = 0.9·0.51 + 0.50949 = 0.96849,
    // θ₂ = 0.949 − 0.1·0.96849 = 0.852151
    let mut m = Model::<f64>::new(ModelSpec::from_name("mlp1", 1, 2).unwrap()); // 4 → 10
    m.visit_mut(&mut |mut p| p.value.fill(1.0));
    let mut grads = ParamGrads::default();
    grads.add("fc1.weight".into(), ArrayD::from_elem(IxDyn(&[10, 4]), 0.5));
    let cfg = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.01,
    };
    let mut sgd = Sgd::new(cfg).unwrap();
    for _ in 0..2 {
        assert_eq!(
            sgd.step(&mut m, &grads, 0.1, Paradigm::FineTune).unwrap(),
            1
        );
    }
    m.visit_mut(&mut |p| {
        // fc1.bias has no gradient: skipped entirely (no decay), as PyTorch does.
        let want = if p.key == "fc1.weight" { 0.852151 } else { 1.0 };
        assert!(
            p.value.iter().all(|&v| (v - want).abs() < 1e-12),
            "{}: {}",
            p.key,
            p.value
        );
    });
    let buf = &sgd.buffers()["fc1.weight"];
    assert!(buf.iter().all(|&v| (v - 0.96849).abs() < 1e-12));
    // Paradigm 2 trains only λ: this model has none, so nothing moves.
    assert_eq!(
        sgd.step(&mut m, &grads, 0.1, Paradigm::LearnLambda)
            .unwrap(),
        0
    );
    let mut wrong = ParamGrads::default();
    wrong.add("fc1.bias".into(), ArrayD::from_elem(IxDyn(&[10]), 0.5));
    wrong.add("fc1.weight".into(), ArrayD::from_elem(IxDyn(&[4, 10]), 0.5));
    assert!(matches!(
        sgd.step(&mut m, &wrong, 0.1, Paradigm::FineTune),
        Err(Error::Shape { .. })
    ));
    m.visit_mut(&mut |p| {
        if p.key == "fc1.bias" {
            assert!(
                p.value.iter().all(|&v| v == 1.0),
                "a failed step changed the bias"
            );
        }
    });
    let bad = SgdConfig {
        momentum: 1.0,
        ..cfg
    };
    assert!(matches!(Sgd::<f64>::new(bad), Err(Error::Config { .. })));
}

#[test]
fn batch_gradient_is_the_mean_and_clean_plus_adv_is_the_sum() {
    let (data, _) = mnist(4, 1);
    let mut m = model("mlp2", 1);
    reprogram(&mut m, 0.6);
    let x = data.images().to_owned();
    let labels: Vec<usize> = data.labels().to_vec();
    let grad = |x: ndarray::ArrayView4<f32>, y: &[usize], adv: Option<Adversary>| {
        let mut rng = ImageRngs::for_images(0, stream::ATTACK, 0..y.len());
        batch_gradient(&m, x, y, adv.as_ref(), &mut Ctx::train(0), &mut rng).unwrap()
    };
    let key = "fc1.robust_sum.lmbd";
    let whole = grad(x.view(), &labels, None);
    let halves: Vec<f32> = [0..2, 2..4]
        .into_iter()
        .map(|r| {
            grad(
                x.slice(ndarray::s![r.clone(), .., .., ..]),
                &labels[r],
                None,
            )
            .grads
            .get(key)
            .unwrap()[0]
        })
        .collect();
    let mean = 0.5 * (halves[0] + halves[1]);
    let got = whole.grads.get(key).unwrap()[0];
    assert!(
        (got - mean).abs() <= 1e-5 * mean.abs().max(1e-3),
        "{got} vs {mean}"
    );

    let adv_only = grad(x.view(), &labels, fgsm(0.3, AdvLoss::Adv));
    let both = grad(x.view(), &labels, fgsm(0.3, AdvLoss::CleanPlusAdv));
    for (k, g) in &both.grads.map {
        let sum = &whole.grads.map[k] + &adv_only.grads.map[k];
        let err = (g - &sum).iter().fold(0.0_f32, |a, v| a.max(v.abs()));
        assert!(
            err <= 1e-5 * sum.iter().fold(1e-3_f32, |a, v| a.max(v.abs())),
            "{k}: {err}"
        );
    }
    assert!((both.loss_sum - whole.loss_sum - adv_only.loss_sum).abs() < 1e-3);
    assert!(adv_only.loss_sum > whole.loss_sum, "FGSM raises the loss");
}

#[test]
fn learn_lambda_moves_only_lambda() {
    let (data, test) = mnist(256, 100);
    let mut m = model("mlp2", 1);
    reprogram(&mut m, 0.6);
    let (lambda_before, weights_before) = bits(&mut m);
    let cfg = config(
        Paradigm::LearnLambda,
        1,
        0.05,
        fgsm(0.3, AdvLoss::CleanPlusAdv),
    );
    let report = run(&mut m, (&data, &test), &cfg, &Checkpoints::default());
    let (lambda_after, weights_after) = bits(&mut m);
    let moved = differing(
        &(Bits::new(), weights_before),
        &(Bits::new(), weights_after),
    );
    assert!(moved.is_empty(), "paradigm 2 changed {moved:?}");
    for (key, before) in &lambda_before {
        assert_ne!(before, &lambda_after[key], "{key}: θ did not move");
    }
    for ((key, b), (_, a)) in report.before.lambdas.iter().zip(&report.after.lambdas) {
        assert!((a - b).abs() > 1e-4, "{key}: λ {b} → {a}");
    }
    assert!(report.after.robust.is_some());
}

#[test]
fn fine_tune_moves_weights_and_lambda_but_fixed_moves_nothing() {
    let (data, test) = mnist(128, 50);
    let mut m = model("mlp2", 1);
    reprogram(&mut m, 0.6);
    let before = bits(&mut m);
    let mut fixed = m.clone();
    let cfg = config(
        Paradigm::FineTune,
        1,
        0.05,
        fgsm(0.3, AdvLoss::CleanPlusAdv),
    );
    run(&mut m, (&data, &test), &cfg, &Checkpoints::default());
    let after = bits(&mut m);
    for (key, b) in before.0.iter().chain(&before.1) {
        let a = after.0.get(key).or(after.1.get(key)).unwrap();
        assert!(b != a, "{key} did not move under paradigm 3");
    }
    let cfg = TrainConfig {
        paradigm: Paradigm::Fixed,
        ..cfg
    };
    let report = run(&mut fixed, (&data, &test), &cfg, &Checkpoints::default());
    assert!(differing(&bits(&mut fixed), &before).is_empty());
    assert!(report.history.is_empty());
    assert_eq!(report.before, report.after);
}

#[test]
fn plain_lpm_mlp_learns_the_subset() {
    // The authors' 784-256-64-10 MLP (no activations), LPM, from a seeded initialisation.
    let (data, test) = mnist(5000, 1000);
    let mut m = model("mlp3", 0);
    let mut cfg = config(Paradigm::Scratch, 2, 0.01, None);
    cfg.batch_size = 64;
    let started = std::time::Instant::now();
    let report = run(&mut m, (&data, &test), &cfg, &Checkpoints::default());
    eprintln!(
        "scratch mlp3: {:.1} s, {:?}",
        started.elapsed().as_secs_f64(),
        report.after
    );
    assert!(
        report.before.clean < 30.0,
        "untrained: {}",
        report.before.clean
    );
    assert!(report.after.clean > 80.0, "trained: {}", report.after.clean);
    assert!(report.history[1].loss < report.history[0].loss);
}

/// LeNet has dropout, so its run exercises every random stream: shuffling, dropout masks,
/// PGD random starts; with momentum, weight decay and an LR step.
fn resumable() -> (Model<f32>, TrainConfig) {
    let mut m = model("lenet", 2);
    let cfg = NrpmConfig::builder()
        .norm(Norm::L1)
        .k(1)
        .eps(1e-3)
        .lambda(0.7)
        .build()
        .unwrap();
    m.reprogram(
        &LayerSelection::Default,
        cfg.with_lambda(0.7).unwrap(),
        LambdaParam::Sigmoid,
    )
    .unwrap();
    let mut cfg = config(
        Paradigm::FineTune,
        3,
        0.02,
        Some(Adversary {
            attack: Attack::PgdLinf {
                eps: 0.2,
                alpha: 0.1,
                steps: 2,
                random_start: true,
            },
            loss: AdvLoss::Adv,
        }),
    );
    cfg.sgd.weight_decay = 1e-3;
    cfg.lr_steps = vec![2];
    (m, cfg)
}

#[test]
fn resume_gives_the_uninterrupted_weights() {
    let (data, test) = mnist(96, 20);
    let (full_dir, part_dir) = (temp_dir("full"), temp_dir("part"));
    let (mut full, cfg) = resumable();
    let whole = run(
        &mut full,
        (&data, &test),
        &cfg,
        &Checkpoints {
            out: Some(full_dir.clone()),
            resume: None,
        },
    );

    let (mut part, cfg) = resumable();
    let first = TrainConfig {
        epochs: 1,
        ..cfg.clone()
    };
    run(
        &mut part,
        (&data, &test),
        &first,
        &Checkpoints {
            out: Some(part_dir.clone()),
            resume: None,
        },
    );
    let (mut resumed, _) = resumable(); // a fresh process: only the checkpoint carries state
    let dirs = Checkpoints {
        out: Some(part_dir.clone()),
        resume: Some(part_dir.clone()),
    };
    let rest = run(&mut resumed, (&data, &test), &cfg, &dirs);

    let differ = differing(&bits(&mut resumed), &bits(&mut full));
    assert!(differ.is_empty(), "resumed ≠ uninterrupted in {differ:?}");
    assert_eq!(rest.resumed_from, Some(1));
    assert_eq!(rest.after, whole.after);
    let strip = |r: &TrainReport| {
        r.history
            .iter()
            .map(|e| (e.loss.to_bits(), e.lr, e.test_acc))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&rest), strip(&whole));
    assert_eq!(whole.history[2].lr, 0.02 / 10.0);
    // The last checkpoints agree too, file for file.
    for file in [checkpoint::MODEL_FILE, checkpoint::OPTIMIZER_FILE] {
        let a = std::fs::read(full_dir.join(file)).unwrap();
        assert_eq!(a, std::fs::read(part_dir.join(file)).unwrap(), "{file}");
    }
    // Other settings than the epoch count are refused, naming the difference.
    let (mut other, cfg) = resumable();
    let changed = TrainConfig {
        sgd: SgdConfig { lr: 0.5, ..cfg.sgd },
        ..cfg
    };
    let err = train(&mut other, &data, &test, &changed, &dirs, &mut Silent).unwrap_err();
    assert!(
        matches!(err, Error::Format { .. }) && err.to_string().contains("lr"),
        "{err}"
    );
    std::fs::remove_dir_all(full_dir).ok();
    std::fs::remove_dir_all(part_dir).ok();
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let (data, test) = mnist(64, 10);
    let weights = |seed: u64| {
        let (mut m, cfg) = resumable();
        let cfg = TrainConfig {
            epochs: 1,
            seed,
            ..cfg
        };
        run(&mut m, (&data, &test), &cfg, &Checkpoints::default());
        bits(&mut m)
    };
    let a = weights(5);
    assert!(differing(&a, &weights(5)).is_empty());
    assert!(!differing(&a, &weights(6)).is_empty());
}

/// Gaussian augmentation (`noise_sd`, Cohen et al.'s training for smoothing): the same seed
/// gives the same weights, the noise changes them, and noise with an adversary or a
/// negative σ is refused.
#[test]
fn noise_augmentation_is_seeded_and_changes_training() {
    let (data, test) = mnist(64, 10);
    let weights = |noise_sd: f64| {
        let (mut m, cfg) = resumable();
        let cfg = TrainConfig {
            epochs: 1,
            noise_sd,
            adversary: None,
            ..cfg
        };
        run(&mut m, (&data, &test), &cfg, &Checkpoints::default());
        bits(&mut m)
    };
    let noisy = weights(0.25);
    assert!(differing(&noisy, &weights(0.25)).is_empty());
    assert!(!differing(&noisy, &weights(0.0)).is_empty());
    let base = config(Paradigm::Scratch, 1, 0.01, None);
    assert!(TrainConfig {
        noise_sd: -0.1,
        ..base.clone()
    }
    .validate()
    .is_err());
    let adv = config(Paradigm::Scratch, 1, 0.01, fgsm(0.1, AdvLoss::Adv));
    assert!(TrainConfig {
        noise_sd: 0.25,
        ..adv
    }
    .validate()
    .is_err());
}

#[test]
fn learn_lambda_without_nrpm_layers_is_an_error() {
    let (data, test) = mnist(8, 4);
    let mut m = model("mlp1", 0);
    let cfg = config(Paradigm::LearnLambda, 1, 0.1, None);
    let err = train(
        &mut m,
        &data,
        &test,
        &cfg,
        &Checkpoints::default(),
        &mut Silent,
    )
    .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    let bad = TrainConfig {
        batch_size: 0,
        ..config(Paradigm::Scratch, 1, 0.1, None)
    };
    assert!(train(
        &mut m,
        &data,
        &test,
        &bad,
        &Checkpoints::default(),
        &mut Silent
    )
    .is_err());
}

/// Logits of `m` on `images`, as bits.
fn logit_bits(m: &Model<f32>, images: &Dataset) -> Vec<u32> {
    m.logits(images.images())
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

/// Every paradigm and architecture flag: a model trained (or, for paradigm 1, reprogrammed)
/// and saved by `train` comes back from its checkpoint alone, with nothing else said, and
/// computes the same logits bit for bit (issue 15, item 2: a paradigm 2 checkpoint used to
/// load as plain LPM, a ReLU MLP without its ReLU).
#[test]
fn checkpoints_rebuild_the_model_they_hold_bit_for_bit() {
    let (data, test) = mnist(96, 40);
    let raw_p1 = |m: &mut Model<f32>| {
        let cfg = NrpmConfig::builder()
            .norm(Norm::Huber { delta: 2.0 })
            .k(2)
            .eps(1e-3)
            .lambda(0.7)
            .build()
            .unwrap();
        m.reprogram(
            &LayerSelection::All,
            cfg.with_groups(2).unwrap(),
            LambdaParam::Raw,
        )
        .unwrap();
        m.set_lambdas(&[("fc2".into(), 0.4), ("fc3".into(), 0.2)])
            .unwrap();
    };
    type Setup = fn(&mut Model<f32>);
    let cases: Vec<(&str, Paradigm, Setup, Option<Adversary>)> = vec![
        ("mlp3", Paradigm::Fixed, raw_p1, None),
        (
            "mlp3",
            Paradigm::LearnLambda,
            |m| reprogram(m, 0.6),
            fgsm(0.2, AdvLoss::CleanPlusAdv),
        ),
        ("mlp2", Paradigm::FineTune, |m| reprogram(m, 0.6), None),
        ("mlp2-relu", Paradigm::Scratch, |_| {}, None),
        ("lenet-bias", Paradigm::Scratch, |m| reprogram(m, 0.5), None),
    ];
    for (i, (name, paradigm, setup, adversary)) in cases.into_iter().enumerate() {
        let spec = match name {
            "mlp2-relu" => ModelSpec::from_name("mlp2", 1, 28)
                .unwrap()
                .with_mlp_relu(true),
            "lenet-bias" => ModelSpec {
                conv_bias: true,
                ..ModelSpec::from_name("lenet", 1, 28).unwrap()
            },
            other => ModelSpec::from_name(other, 1, 28).unwrap(),
        };
        let mut m = Model::<f32>::new(spec);
        m.init(i as u64);
        setup(&mut m);
        let dir = temp_dir(&format!("roundtrip-{i}"));
        let dirs = Checkpoints {
            out: Some(dir.clone()),
            resume: None,
        };
        let cfg = config(paradigm, 1, 0.05, adversary);
        run(&mut m, (&data, &test), &cfg, &dirs);
        let back = Model::<f32>::from_checkpoint(dir.join(checkpoint::MODEL_FILE)).unwrap();
        assert_eq!(back.spec(), m.spec(), "{name}");
        assert_eq!(back.record(), m.record(), "{name}");
        assert_eq!(logit_bits(&back, &test), logit_bits(&m, &test), "{name}");
        std::fs::remove_dir_all(dir).ok();
    }
}

/// A checkpoint without nrpm's record (the authors' files) is refused by `from_checkpoint`,
/// not loaded as a guess.
#[test]
fn from_checkpoint_refuses_files_without_a_record() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/authors_robust_sum.safetensors"
    );
    let err = Model::<f32>::from_checkpoint(fixture).unwrap_err();
    assert!(err.to_string().contains("no nrpm model record"), "{err}");
}

/// A resumed run refuses other training images (another count, or other images of the same
/// count), other evaluation images, and an epoch count below what the checkpoint has done; the
/// same images elsewhere are fine (issue 15, item 4).
#[test]
fn resume_refuses_other_data_and_fewer_epochs() {
    let (data, test) = mnist(64, 20);
    let dir = temp_dir("resume-data");
    let dirs = Checkpoints {
        out: Some(dir.clone()),
        resume: None,
    };
    let cfg = config(Paradigm::Scratch, 2, 0.05, None);
    run(&mut model("mlp1", 0), (&data, &test), &cfg, &dirs);
    let resume = Checkpoints {
        out: Some(dir.clone()),
        resume: Some(dir.clone()),
    };
    let try_resume = |d: &Dataset, t: &Dataset, epochs: usize| {
        let cfg = config(Paradigm::Scratch, epochs, 0.05, None);
        train(&mut model("mlp1", 0), d, t, &cfg, &resume, &mut Silent)
    };
    let (fewer, _) = mnist(32, 20);
    let shifted = Dataset::mnist_subset(Split::Train)
        .unwrap()
        .subset(64..128)
        .unwrap();
    let renamed = Dataset::new(
        "elsewhere/train",
        data.images().to_owned(),
        data.labels().to_vec(),
        10,
    )
    .unwrap();
    for (d, t, epochs, needle) in [
        (&fewer, &test, 3, "same training images"),
        (&shifted, &test, 3, "same training images"),
        (&data, &fewer.first(10), 3, "same evaluation images"),
        (&data, &test, 1, "more than the 1 asked"),
    ] {
        let err = try_resume(d, t, epochs).unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    let report = try_resume(&renamed, &test, 3).unwrap();
    assert_eq!(report.epochs, 3);
    std::fs::remove_dir_all(dir).ok();
}

/// Paradigm 2 trains only λ; BatchNorm running statistics move as in the authors' scripts
/// (`net.train()`), and stay bit for bit with `frozen_batchnorm` (issue 15, item 6).
#[test]
fn paradigm_2_moves_batchnorm_statistics_unless_frozen() {
    let images = ndarray::Array4::from_shape_fn((8, 3, 32, 32), |(b, c, h, w)| {
        ((b * 7 + c * 5 + h * 3 + w) % 11) as f32 / 10.0
    });
    let data = Dataset::new("toy", images, (0..8).map(|i| i % 10).collect(), 10).unwrap();
    let buffers = |m: &mut Model<f32>| {
        let mut out = Bits::new();
        m.visit_mut(&mut |p| {
            if p.role == Role::Buffer {
                out.insert(p.key, p.value.iter().map(|v| v.to_bits()).collect());
            }
        });
        out
    };
    for frozen in [false, true] {
        let mut m = Model::<f32>::new(ModelSpec::from_name("resnet10-tiny", 3, 32).unwrap());
        m.init(1);
        reprogram(&mut m, 0.5);
        let before = buffers(&mut m);
        let cfg = TrainConfig {
            batch_size: 4,
            frozen_batchnorm: frozen,
            ..config(Paradigm::LearnLambda, 1, 0.1, None)
        };
        let (lambdas0, rest0) = bits(&mut m);
        run(&mut m, (&data, &data), &cfg, &Checkpoints::default());
        let (lambdas1, rest1) = bits(&mut m);
        assert_ne!(lambdas0, lambdas1, "λ is learned");
        let weights = |b: &Bits| {
            b.iter()
                .filter(|(k, _)| !before.contains_key(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Bits>()
        };
        assert_eq!(weights(&rest0), weights(&rest1), "weights stay frozen");
        let moved = buffers(&mut m) != before;
        assert_eq!(moved, !frozen, "frozen = {frozen}");
    }
}
