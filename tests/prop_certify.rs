//! Soundness of every bound (proofs/11 to proofs/14): sampled points of the threat set, and
//! points found by projected sign-gradient ascent maximising or minimising each output, never
//! leave the certified interval. The NRPM bounds are checked for every norm, K ∈ {0, 1, 3},
//! λ ∈ [0, 1], N ≥ 1 groups and the exact LAD limit; the network bounds on a net with every
//! layer type nrpm has (Conv2d, BatchNorm, ReLU, a residual block, max and average pooling,
//! Linear), LPM and reprogrammed. Exactness: back-substitution equals the closed-form
//! minimum margin of an activation-free network.
//!
//! Tolerance: bounds and forward passes are both f64 over at most a few hundred terms of
//! magnitude ≤ 10, so they differ by rounding of order 1e-13; TOL = 1e-9·(1 + |v|) leaves
//! four orders of margin and is far below any bound error the tests look for.

mod common;

use ndarray::{Array1, Array2, Array4, ArrayD, ArrayView1, IxDyn};
use nrpm::certify::{crown, interval, l0, nrpm_bounds, Bounds, Network};
use nrpm::models::{LayerSelection, Model};
use nrpm::nn::{
    BatchNorm2d, BlockKind, Conv2d, LambdaParam, Layer, Linear, Parameters, Residual, Role,
    Sequential,
};
use nrpm::{Conv2dGeometry, Norm, NrpmConfig};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Rounding allowance of an f64 bound against an f64 forward pass (see the module doc).
fn tol(v: f64) -> f64 {
    1e-9 * (1.0 + v.abs())
}

/// Points of the box `[lo, hi]`: its two corners, `samples` uniform points, and for each
/// output of `f` (`outputs` of them) the ends of projected sign-gradient ascent and descent
/// (central differences, 20 steps of shrinking size, from the box centre and a random point).
fn probe_points(
    lo: &Array1<f64>,
    hi: &Array1<f64>,
    outputs: usize,
    f: &dyn Fn(&Array1<f64>) -> Array1<f64>,
    rng: &mut StdRng,
    samples: usize,
) -> Vec<Array1<f64>> {
    let mut out = vec![lo.clone(), hi.clone()];
    let uniform = |rng: &mut StdRng| {
        Array1::from_shape_fn(lo.len(), |i| lo[i] + rng.random::<f64>() * (hi[i] - lo[i]))
    };
    for _ in 0..samples {
        out.push(uniform(rng));
    }
    for o in 0..outputs {
        for sign in [1.0, -1.0] {
            for start in [(lo + hi) / 2.0, uniform(rng)] {
                out.push(ascend(lo, hi, start, &|x| sign * f(x)[o]));
            }
        }
    }
    out
}

/// Projected sign-gradient ascent of `g` over `[lo, hi]` (gradient by central differences).
fn ascend(
    lo: &Array1<f64>,
    hi: &Array1<f64>,
    mut x: Array1<f64>,
    g: &dyn Fn(&Array1<f64>) -> f64,
) -> Array1<f64> {
    let h = 1e-6;
    for step in 0..20 {
        let size = (0.5f64).powi(step / 5 + 1);
        let mut grad = Array1::zeros(x.len());
        for i in 0..x.len() {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += h;
            down[i] -= h;
            grad[i] = g(&up) - g(&down);
        }
        for i in 0..x.len() {
            let moved = x[i] + size * (hi[i] - lo[i]) * grad[i].signum();
            x[i] = moved.clamp(lo[i], hi[i]);
        }
    }
    x
}

/// Fails unless `v` lies in `[lo, hi]` up to [`tol`].
fn check_inside(what: &str, v: ArrayView1<f64>, b: &Bounds) -> Result<(), TestCaseError> {
    for (i, &y) in v.iter().enumerate() {
        let (l, h) = (b.lo()[i], b.hi()[i]);
        prop_assert!(
            y >= l - tol(l) && y <= h + tol(h),
            "{what}: output {i} = {y} outside the certified [{l}, {h}]"
        );
    }
    Ok(())
}

/// An NRPM configuration: any norm (LPM included), K ∈ {0, 1, 3}, λ ∈ [0, 1], ε, or the
/// exact LAD limit (L1), with `groups` groups.
fn nrpm_config(groups: usize) -> BoxedStrategy<NrpmConfig> {
    (
        common::norm_any(),
        proptest::sample::select(vec![0usize, 1, 3]),
        0.0f64..=1.0,
        common::log_uniform(-4.0, -1.0),
        any::<bool>(),
    )
        .prop_map(move |(norm, k, lambda, eps, lad)| {
            let exact = lad && norm == Norm::L1;
            NrpmConfig::builder()
                .norm(norm)
                .k(k)
                .lambda(lambda)
                .eps(eps)
                .groups(groups)
                .exact_lad(exact)
                .build()
                .expect("valid by construction")
        })
        .boxed()
}

/// The exact LAD limit at any λ ∈ [0, 1].
fn exact_lad_config() -> BoxedStrategy<NrpmConfig> {
    (0.0f64..=1.0)
        .prop_map(|lambda| {
            NrpmConfig::builder()
                .exact_lad(true)
                .lambda(lambda)
                .build()
                .expect("valid")
        })
        .boxed()
}

/// One NRPM operator case: x ∈ [0, 1]^D, ε, weight [O, D], optional bias, configuration.
#[derive(Clone, Debug)]
struct OperatorCase {
    x: Array1<f64>,
    eps: f64,
    weight: Array2<f64>,
    bias: Option<Array1<f64>>,
    cfg: NrpmConfig,
    seed: u64,
}

fn operator_case() -> BoxedStrategy<OperatorCase> {
    (1usize..=3, 1usize..=3, 1usize..=3, 1usize..=5)
        .prop_flat_map(|(o, n, dg, _)| {
            let d = n * dg;
            (
                proptest::collection::vec(0.0f64..=1.0, d),
                prop_oneof![Just(0.0), 0.0f64..0.3],
                common::matrix(o, d, common::Values::WithTies),
                proptest::option::of(common::vector(o, common::Values::Continuous)),
                nrpm_config(n),
                any::<u64>(),
            )
        })
        .prop_map(|(x, eps, weight, bias, cfg, seed)| OperatorCase {
            x: Array1::from_vec(x),
            eps,
            weight,
            bias,
            cfg,
            seed,
        })
        .boxed()
}

/// The operator's output `[O]` at one input `[D]`, in f64.
fn operator_at(c: &OperatorCase, x: &Array1<f64>) -> Array1<f64> {
    let row = x.view().insert_axis(ndarray::Axis(0));
    let (y, _) = nrpm::forward(
        row,
        c.weight.view(),
        c.bias.as_ref().map(|b| b.view()),
        &c.cfg,
    )
    .expect("valid case");
    y.row(0).to_owned()
}

proptest! {
    #![proptest_config(common::config(96, "proptest-regressions/prop_certify.txt"))]

    /// Sound NRPM interval bounds: every norm, K ∈ {0, 1, 3}, λ ∈ [0, 1], N groups, exact LAD.
    #[test]
    fn nrpm_operator_bounds_contain_every_probe(c in operator_case()) {
        let ball = Bounds::linf_ball(c.x.view().into_dyn(), c.eps).unwrap();
        let y = nrpm_bounds::linear(&ball, c.weight.view(), c.bias.as_ref().map(|b| b.view()), &c.cfg).unwrap();
        let (lo, hi) = flat(&ball);
        let mut rng = StdRng::seed_from_u64(c.seed);
        let f = |x: &Array1<f64>| operator_at(&c, x);
        for p in probe_points(&lo, &hi, c.weight.nrows(), &f, &mut rng, 32) {
            check_inside(&format!("{} at {p}", c.cfg), f(&p).view(), &y)?;
        }
    }

    /// The exact LAD limit's bound is exact: attained at the box's lower and upper corners
    /// when every weight is ≥ 0 (the median is non-decreasing in each term).
    #[test]
    fn lad_bound_is_attained(x in proptest::collection::vec(0.0f64..=1.0, 1..7), eps in 0.0f64..0.3,
                             w in proptest::collection::vec(0.0f64..2.0, 7)) {
        let d = x.len();
        let weight = Array2::from_shape_vec((1, d), w[..d].to_vec()).unwrap();
        let cfg = NrpmConfig::builder().exact_lad(true).lambda(0.0).build().unwrap();
        let ball = Bounds::linf_ball(Array1::from_vec(x).view().into_dyn(), eps).unwrap();
        let y = nrpm_bounds::linear(&ball, weight.view(), None, &cfg).unwrap();
        let (lo, hi) = flat(&ball);
        let at = |p: &Array1<f64>| nrpm::forward(p.view().insert_axis(ndarray::Axis(0)), weight.view(), None, &cfg).unwrap().0[[0, 0]];
        prop_assert!((at(&lo) - y.lo()[0]).abs() <= tol(y.lo()[0]));
        prop_assert!((at(&hi) - y.hi()[0]).abs() <= tol(y.hi()[0]));
    }
}

/// The ends of a box as flat vectors.
fn flat(b: &Bounds) -> (Array1<f64>, Array1<f64>) {
    let f = |a: &ArrayD<f64>| Array1::from_iter(a.iter().copied());
    (f(b.lo()), f(b.hi()))
}

/// A 1×6×6 → 3 network with every layer type: conv (pad 1) → BatchNorm → ReLU → residual
/// BasicBlock → max pool 2 → conv 2×2 → avg pool 2 → flatten → linear; random weights and
/// BatchNorm statistics; `cfg` (if any) reprograms every matching layer.
fn every_layer_model(seed: u64, cfg: Option<NrpmConfig>) -> Model<f64> {
    let net = Sequential::<f64>::new()
        .push(
            "conv1",
            Layer::Conv2d(Conv2d::new(1, 3, 3, Conv2dGeometry::new(1, 1), true)),
        )
        .push("bn1", Layer::BatchNorm2d(BatchNorm2d::new(3)))
        .push("", Layer::Relu)
        .push(
            "block",
            Layer::Residual(Box::new(Residual::new(BlockKind::Basic, 3, 3, 1))),
        )
        .push(
            "",
            Layer::MaxPool2d {
                kernel: 2,
                stride: 2,
            },
        )
        .push(
            "conv2",
            Layer::Conv2d(Conv2d::new(3, 2, 2, Conv2dGeometry::new(1, 0), false)),
        )
        .push(
            "",
            Layer::AvgPool2d {
                kernel: 2,
                stride: 2,
            },
        )
        .push("", Layer::Flatten)
        .push("fc", Layer::Linear(Linear::new(2, 3, true)));
    let mut model = Model::custom(net, [1, 6, 6], 3).unwrap();
    randomise(&mut model, seed);
    if let Some(cfg) = cfg {
        model
            .reprogram(&LayerSelection::All, cfg, LambdaParam::Raw)
            .unwrap();
    }
    model
}

/// Every weight, bias and BatchNorm buffer uniform (variances in [0.5, 1.5]).
fn randomise(model: &mut Model<f64>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    model.visit_params_mut(&mut |mut p| {
        let range = match p.role {
            Role::Buffer if p.key.ends_with("running_var") => 0.5..1.5,
            Role::Buffer if p.key.ends_with("running_mean") => -0.5..0.5,
            Role::Weight | Role::Bias => -0.8..0.8,
            _ => return,
        };
        p.value.mapv_inplace(|_| rng.random_range(range.clone()));
    });
}

/// The logits `[classes]` of one flat image.
fn logits_at(model: &Model<f64>, x: &Array1<f64>) -> Array1<f64> {
    let [c, h, w] = model.spec().input;
    let img = Array4::from_shape_vec((1, c, h, w), x.to_vec()).unwrap();
    model.logits(img.view()).unwrap().row(0).to_owned()
}

/// `logit_label − logit_j` for every j.
fn margins_at(model: &Model<f64>, x: &Array1<f64>, label: usize) -> Array1<f64> {
    let z = logits_at(model, x);
    z.mapv(|v| z[label] - v)
}

/// An image of `len` pixels in [0, 1].
fn image(len: usize) -> BoxedStrategy<Array1<f64>> {
    proptest::collection::vec(0.0f64..=1.0, len)
        .prop_map(Array1::from_vec)
        .boxed()
}

proptest! {
    #![proptest_config(common::config(24, "proptest-regressions/prop_certify.txt"))]

    /// IBP and CROWN logits and margins through every layer type, LPM and NRPM, contain the
    /// network's value at every probe (the margin lower bounds are ≤ every probed margin).
    #[test]
    fn network_bounds_contain_every_probe(x in image(36), eps in prop_oneof![Just(0.0), 0.0f64..0.1],
                                          seed in any::<u64>(), label in 0usize..3,
                                          cfg in proptest::option::of(nrpm_config(1))) {
        let model = every_layer_model(seed, cfg);
        let net = Network::new(&model).unwrap();
        let ball = Bounds::linf_ball(x.view().into_shape_with_order(IxDyn(&[1, 6, 6])).unwrap(), eps).unwrap();
        let (lo, hi) = flat(&ball);
        let boxes = [("ibp", interval::logits(&net, &ball).unwrap()), ("crown", crown::logits(&net, &ball).unwrap())];
        let m_ibp = interval::margins(&net, &ball, label).unwrap();
        let m_crown = crown::margins(&net, &ball, label).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let f = |p: &Array1<f64>| margins_at(&model, p, label);
        for p in probe_points(&lo, &hi, 3, &f, &mut rng, 16) {
            let z = logits_at(&model, &p);
            for (name, b) in &boxes {
                check_inside(&format!("{name} logits at {p}"), z.view(), b)?;
            }
            let m = f(&p);
            for j in (0..3).filter(|&j| j != label) {
                prop_assert!(m_ibp[j] <= m[j] + tol(m[j]), "ibp margin {j}: bound {} > {} at {p}", m_ibp[j], m[j]);
                prop_assert!(m_crown[j] <= m[j] + tol(m[j]), "crown margin {j}: bound {} > {} at {p}", m_crown[j], m[j]);
            }
        }
    }

    /// Exactness: on an activation-free MLP (as the authors'), back-substitution gives the
    /// closed-form minimum margin min over the box of (c_j·x + b_j), c_j = (W₃W₂W₁)[y] − (…)[j];
    /// IBP is never tighter.
    #[test]
    fn crown_is_exact_without_activations(x in image(16), eps in 0.0f64..0.3, seed in any::<u64>(),
                                          label in 0usize..4) {
        let net = Sequential::<f64>::new()
            .push("", Layer::Flatten)
            .push("fc1", Layer::Linear(Linear::new(16, 6, true)))
            .push("fc2", Layer::Linear(Linear::new(6, 5, true)))
            .push("fc3", Layer::Linear(Linear::new(5, 4, true)));
        let mut model = Model::custom(net, [1, 4, 4], 4).unwrap();
        randomise(&mut model, seed);
        let ball = Bounds::linf_ball(x.view().into_shape_with_order(IxDyn(&[1, 4, 4])).unwrap(), eps).unwrap();
        let (lo, hi) = flat(&ball);
        // The network is affine: margins(x) = C·x + m(0); C by unit differences.
        let m0 = margins_at(&model, &Array1::zeros(16), label);
        let mut closed = m0.clone();
        for d in 0..16 {
            let mut e = Array1::zeros(16);
            e[d] = 1.0;
            let c = margins_at(&model, &e, label) - &m0;
            for j in 0..4 {
                closed[j] += (c[j] * lo[d]).min(c[j] * hi[d]);
            }
        }
        let net = Network::new(&model).unwrap();
        let exact = crown::margins(&net, &ball, label).unwrap();
        let ibp = interval::margins(&net, &ball, label).unwrap();
        for j in (0..4).filter(|&j| j != label) {
            prop_assert!((exact[j] - closed[j]).abs() <= tol(closed[j]), "margin {j}: crown {} closed form {}", exact[j], closed[j]);
            prop_assert!(ibp[j] <= exact[j] + tol(exact[j]), "margin {j}: ibp {} tighter than exact {}", ibp[j], exact[j]);
        }
    }

    /// ℓ0: changing any k pixels to any values in [0, 1] (random, and each changed pixel set to
    /// 0 or 1 greedily) never takes a margin below the certified lower bound.
    #[test]
    fn l0_bounds_contain_every_k_pixel_change(x in image(16), k in 0usize..4, seed in any::<u64>(),
                                              label in 0usize..3,
                                              cfg in proptest::option::of(prop_oneof![nrpm_config(1), exact_lad_config()])) {
        let net = Sequential::<f64>::new()
            .push("", Layer::Flatten)
            .push("fc1", Layer::Linear(Linear::new(16, 5, true)))
            .push("", Layer::Relu)
            .push("fc2", Layer::Linear(Linear::new(5, 3, true)));
        let mut model = Model::custom(net, [1, 4, 4], 3).unwrap();
        randomise(&mut model, seed);
        if let Some(cfg) = cfg {
            model.reprogram(&LayerSelection::All, cfg, LambdaParam::Raw).unwrap();
        }
        let netw = Network::new(&model).unwrap();
        let bound = match l0::margins(&netw, &x.clone().into_shape_with_order(IxDyn(&[1, 4, 4])).unwrap(), label, k) {
            Ok(b) => b,
            Err(nrpm::Error::CannotBound { .. }) => {
                // Only K IRLS steps have no ℓ0 bound (their robust part is not a median).
                prop_assert!(cfg.is_some_and(|c| !c.is_lpm() && !c.exact_lad()));
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        };
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..64 {
            let mut p = x.clone();
            for _ in 0..k {
                let d = rng.random_range(0..16);
                p[d] = if rng.random::<bool>() { rng.random::<f64>() } else { f64::from(u8::from(rng.random::<bool>())) };
            }
            let m = margins_at(&model, &p, label);
            for j in (0..3).filter(|&j| j != label) {
                prop_assert!(bound[j] <= m[j] + tol(m[j]), "l0 k={k} margin {j}: bound {} > {} at {p}", bound[j], m[j]);
            }
        }
    }
}

/// A custom layer cannot be bounded: a typed error, not a panic.
#[test]
fn custom_layers_are_refused() {
    #[derive(Debug, Clone)]
    struct Square;
    impl nrpm::nn::Module<f64> for Square {
        fn forward(
            &self,
            x: ArrayD<f64>,
            _: &mut nrpm::nn::Ctx,
        ) -> nrpm::Result<(ArrayD<f64>, nrpm::nn::Cache<f64>)> {
            Ok((
                x.mapv(|v| v * v),
                nrpm::nn::Cache::Custom(std::sync::Arc::new(())),
            ))
        }
        fn backward(
            &self,
            _: &str,
            _: &nrpm::nn::Cache<f64>,
            dy: ArrayD<f64>,
            _: &mut nrpm::nn::ParamGrads<f64>,
        ) -> nrpm::Result<ArrayD<f64>> {
            Ok(dy)
        }
        fn box_clone(&self) -> Box<dyn nrpm::nn::Module<f64>> {
            Box::new(Square)
        }
    }
    let net = Sequential::<f64>::new()
        .push("", Layer::Flatten)
        .push("sq", Layer::Custom(Box::new(Square)))
        .push("fc", Layer::Linear(Linear::new(4, 2, true)));
    let model = Model::custom(net, [1, 2, 2], 2).unwrap();
    match Network::new(&model) {
        Err(nrpm::Error::CannotBound { layer, .. }) => assert_eq!(layer, "sq"),
        other => panic!("expected CannotBound, got {other:?}"),
    }
}
