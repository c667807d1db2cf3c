//! Randomized smoothing (proofs/15-randomized-smoothing.md): the Clopper–Pearson bound against
//! closed forms, CERTIFY against the exact radius of a linear classifier (whose smoothed
//! classifier is itself), abstention at a 50/50 vote, and figures that depend neither on the
//! batch size nor on which images are certified together.

use ndarray::{Array1, Array2, Array4};
use nrpm::certify::smoothing::{
    self, certify_dataset, lower_confidence_bound, SmoothedRecord, SmoothingConfig,
};
use nrpm::data::Dataset;
use nrpm::models::Model;
use nrpm::nn::{Layer, Linear, Parameters, Role, Sequential};
use nrpm::progress::Silent;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Clopper–Pearson at n_ĉ = n: α^(1/n) (the known value 0.9999309248 at n = 100 000,
/// α = 0.001); at n_ĉ = 1: 1 − (1 − α)^(1/n); at n_ĉ = 0: 0.
#[test]
fn clopper_pearson_matches_closed_forms() {
    let p = lower_confidence_bound(100_000, 100_000, 0.001).unwrap();
    assert!((p - 0.9999309248).abs() < 5e-11, "{p}");
    for (n, alpha) in [(10, 0.05), (1000, 0.001), (100_000, 0.01)] {
        let all = lower_confidence_bound(n, n, alpha).unwrap();
        approx::assert_relative_eq!(all, alpha.powf(1.0 / n as f64), max_relative = 1e-10);
        let one = lower_confidence_bound(1, n, alpha).unwrap();
        let want = 1.0 - (1.0 - alpha).powf(1.0 / n as f64);
        approx::assert_relative_eq!(one, want, max_relative = 1e-8);
        assert_eq!(lower_confidence_bound(0, n, alpha).unwrap(), 0.0);
    }
    // Monotone in the count.
    let mut last = 0.0;
    for c in [1, 10, 500, 900, 999, 1000] {
        let p = lower_confidence_bound(c, 1000, 0.001).unwrap();
        assert!(p > last && p < c as f64 / 1000.0, "{c}: {p}");
        last = p;
    }
    assert!(lower_confidence_bound(11, 10, 0.01).is_err());
    assert!(lower_confidence_bound(1, 0, 0.01).is_err());
    assert!(lower_confidence_bound(1, 10, 0.0).is_err());
    assert!(lower_confidence_bound(1, 10, 1.0).is_err());
}

/// A 1×4×4 → 2 linear model with the given weight `[2, 16]` and bias.
fn linear_model(weight: &Array2<f64>, bias: &Array1<f64>) -> Model<f32> {
    let net = Sequential::<f32>::new()
        .push("", Layer::Flatten)
        .push("fc", Layer::Linear(Linear::new(16, 2, true)));
    let mut model = Model::custom(net, [1, 4, 4], 2).unwrap();
    model.visit_params_mut(&mut |mut p| match p.role {
        Role::Weight => p.value.assign(&weight.mapv(|v| v as f32).into_dyn()),
        Role::Bias => p.value.assign(&bias.mapv(|v| v as f32).into_dyn()),
        _ => {}
    });
    model
}

/// `n` random 1×4×4 images in [0, 1] with labels 0/1.
fn dataset(n: usize, seed: u64) -> Dataset {
    let mut rng = StdRng::seed_from_u64(seed);
    let images = Array4::from_shape_fn((n, 1, 4, 4), |_| rng.random::<f32>());
    let labels = (0..n).map(|i| i % 2).collect();
    Dataset::new("random", images, labels, 2).unwrap()
}

fn cfg(n: usize, batch: usize) -> SmoothingConfig {
    SmoothingConfig {
        sigma: 0.5,
        n0: 100,
        n,
        alpha: 0.001,
        batch,
        seed: 3,
    }
}

/// A linear classifier f(x) = argmax(Wx + b) with two classes is its own smoothed classifier,
/// and its exact L2 robustness radius at x is |u·x + c| / ‖u‖ (u = w₁ − w₀, c = b₁ − b₀).
/// CERTIFY must never claim more, and at n = 20 000 comes within a few tenths of it.
#[test]
fn certified_radius_never_exceeds_the_exact_radius_of_a_linear_classifier() {
    let mut rng = StdRng::seed_from_u64(11);
    let weight = Array2::from_shape_fn((2, 16), |_| rng.random_range(-0.3..0.3));
    let bias = Array1::from_vec(vec![0.0, 0.1]);
    let model = linear_model(&weight, &bias);
    let data = dataset(12, 5);
    let records = certify_dataset(
        &model,
        &data,
        &(0..12).collect::<Vec<_>>(),
        &cfg(20_000, 1000),
        &mut Silent,
    )
    .unwrap();
    let u = &weight.row(1) - &weight.row(0);
    let c = bias[1] - bias[0];
    for r in &records {
        let x = data
            .images()
            .index_axis(ndarray::Axis(0), r.idx)
            .mapv(f64::from);
        let score = u.iter().zip(x.iter()).map(|(a, b)| a * b).sum::<f64>() + c;
        let exact = score.abs() / u.dot(&u).sqrt();
        let class = usize::from(score > 0.0);
        if let Some(p) = r.predict {
            assert_eq!(p, class, "image {}: smoothed prediction", r.idx);
            assert!(
                r.radius <= exact + 1e-6,
                "image {}: radius {} > exact {exact}",
                r.idx,
                r.radius
            );
            assert!(
                r.radius >= exact.min(3.0 * 0.5) - 0.4,
                "image {}: radius {} far below {exact}",
                r.idx,
                r.radius
            );
        } else {
            assert!(
                exact < 0.1,
                "image {} abstained at exact radius {exact}",
                r.idx
            );
        }
    }
}

/// A classifier that always answers class 1 gets p̲ = α^(1/n) and R = σ·Φ⁻¹(α^(1/n));
/// one that is a fair coin (the vote on a pixel at its threshold) abstains.
#[test]
fn constant_classifier_gets_the_largest_radius_and_a_coin_abstains() {
    let constant = linear_model(&Array2::zeros((2, 16)), &Array1::from_vec(vec![0.0, 1.0]));
    let data = dataset(2, 1);
    let c = cfg(1000, 300);
    let (pred, radius) = smoothing::certify(
        &constant,
        data.images()
            .index_axis(ndarray::Axis(0), 0)
            .mapv(f32::from)
            .view(),
        0,
        &c,
    )
    .unwrap();
    assert_eq!(pred, Some(1));
    // Φ⁻¹(0.001^(1/1000)) = Φ⁻¹(0.9931160484…) = 2.46326261478081 (Python's
    // statistics.NormalDist().inv_cdf, independent of statrs).
    approx::assert_abs_diff_eq!(radius, 0.5 * 2.463_262_614_780_81, epsilon = 1e-10);
    let mut w = Array2::zeros((2, 16));
    w[[1, 0]] = 1.0;
    w[[0, 0]] = -1.0;
    let coin = linear_model(&w, &Array1::from_vec(vec![0.5, -0.5]));
    let mut half = Array4::<f32>::zeros((1, 1, 4, 4));
    half[[0, 0, 0, 0]] = 0.5;
    let data = Dataset::new("half", half, vec![1], 2).unwrap();
    let records = certify_dataset(&coin, &data, &[0], &c, &mut Silent).unwrap();
    assert_eq!(
        (records[0].predict, records[0].radius, records[0].correct),
        (None, 0.0, false)
    );
    let x = data
        .images()
        .index_axis(ndarray::Axis(0), 0)
        .mapv(f32::from);
    assert_eq!(smoothing::predict(&coin, x.view(), 0, &c).unwrap(), None);
    assert_eq!(
        smoothing::predict(&constant, x.view(), 0, &c).unwrap(),
        Some(1)
    );
}

fn without_time(records: Vec<SmoothedRecord>) -> Vec<SmoothedRecord> {
    records
        .into_iter()
        .map(|r| SmoothedRecord { time: 0.0, ..r })
        .collect()
}

/// The same seed gives the same records whatever the batch size and whichever images are
/// certified in the same call; another seed gives other draws.
#[test]
fn figures_do_not_depend_on_batches_or_sharding() {
    let mut rng = StdRng::seed_from_u64(2);
    let weight = Array2::from_shape_fn((2, 16), |_| rng.random_range(-2.0..2.0));
    let model = linear_model(&weight, &Array1::zeros(2));
    let data = dataset(6, 9);
    let all: Vec<usize> = (0..6).collect();
    let big =
        without_time(certify_dataset(&model, &data, &all, &cfg(500, 1000), &mut Silent).unwrap());
    let small =
        without_time(certify_dataset(&model, &data, &all, &cfg(500, 7), &mut Silent).unwrap());
    assert_eq!(big, small);
    let shard =
        without_time(certify_dataset(&model, &data, &[4, 1], &cfg(500, 64), &mut Silent).unwrap());
    assert_eq!(shard, vec![big[4].clone(), big[1].clone()]);
    let other = SmoothingConfig {
        seed: 4,
        ..cfg(500, 1000)
    };
    let radii = |r: &[SmoothedRecord]| r.iter().map(|r| r.radius).collect::<Vec<_>>();
    let moved = without_time(certify_dataset(&model, &data, &all, &other, &mut Silent).unwrap());
    assert_ne!(radii(&big), radii(&moved));
}

/// Cohen's TSV columns and the certified-accuracy rule (correct, not abstained, radius ≥ r).
#[test]
fn tsv_and_certified_accuracy() {
    let rec = |idx, predict: Option<usize>, radius, correct| SmoothedRecord {
        idx,
        label: 1,
        predict,
        radius,
        correct,
        time: 1.5,
    };
    let records = [
        rec(0, Some(1), 0.734_56, true),
        rec(7, None, 0.0, false),
        rec(9, Some(2), 2.0, false),
    ];
    let text = smoothing::tsv(&records);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "idx\tlabel\tpredict\tradius\tcorrect\ttime");
    assert_eq!(lines[1], "0\t1\t1\t0.735\t1\t0:00:01.500000");
    assert_eq!(lines[2], "7\t1\t-1\t0.0\t0\t0:00:01.500000");
    let rows = smoothing::certified_accuracy(&records, &[0.0, 0.5, 1.0]);
    assert_eq!(
        rows.iter().map(|r| r.certified).collect::<Vec<_>>(),
        [1, 1, 0]
    );
    approx::assert_abs_diff_eq!(rows[0].certified_accuracy, 100.0 / 3.0, epsilon = 1e-12);
}

/// Bad settings are typed errors.
#[test]
fn bad_settings_are_errors() {
    let model = linear_model(&Array2::zeros((2, 16)), &Array1::zeros(2));
    let data = dataset(2, 0);
    for bad in [
        SmoothingConfig {
            sigma: 0.0,
            ..cfg(10, 10)
        },
        SmoothingConfig {
            sigma: -1.0,
            ..cfg(10, 10)
        },
        SmoothingConfig {
            n0: 0,
            ..cfg(10, 10)
        },
        cfg(0, 10),
        SmoothingConfig {
            alpha: 1.0,
            ..cfg(10, 10)
        },
        SmoothingConfig {
            alpha: 0.0,
            ..cfg(10, 10)
        },
        cfg(10, 0),
    ] {
        let e = certify_dataset(&model, &data, &[0], &bad, &mut Silent).unwrap_err();
        assert!(matches!(e, nrpm::Error::Config { .. }), "{bad:?}: {e}");
    }
    assert!(certify_dataset(&model, &data, &[2], &cfg(10, 10), &mut Silent).is_err());
}
