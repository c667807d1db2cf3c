//! Every layer's backward (and whole models') against central finite differences in f64.
//!
//! Loss `L = Σ y ⊙ r` for a fixed random `r`; `∂L/∂x` and every parameter gradient from
//! `backward` must match `(L(θ + h) − L(θ − h)) / 2h` (h = 1e-6; the truncation error is
//! O(h²·L''') ≈ 1e-12 and the rounding error O(u·|L|/h) ≈ 1e-10 for |L| ~ 1, so a tolerance
//! of 1e-6·(1 + |g|) leaves a wide margin while catching any wrong term). Inputs are random,
//! so ReLU/max-pool kinks and NRPM clamp points are hit with probability 0.

use ndarray::{ArrayD, IxDyn};
use nrpm::conv::Conv2dGeometry;
use nrpm::models::{LayerSelection, Model, ModelSpec};
use nrpm::nn::{
    BatchNorm2d, BlockKind, Conv2d, Ctx, LambdaParam, Layer, Linear, Matching, Mode, ParamGrads,
    Residual, RobustMatch,
};
use nrpm::{Norm, NrpmConfig};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const H: f64 = 1e-6;

fn random(shape: &[usize], rng: &mut StdRng) -> ArrayD<f64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || rng.random_range(-1.0..1.0))
}

fn nrpm_matching(norm: Norm, k: usize, lambda: f64, param: LambdaParam) -> Matching<f64> {
    let cfg = NrpmConfig::builder()
        .norm(norm)
        .k(k)
        .eps(0.05)
        .lambda(lambda)
        .build()
        .unwrap();
    Matching::Nrpm(RobustMatch::new(cfg, param).unwrap())
}

/// `Σ y ⊙ r` with a fresh context (same dropout masks on every call).
fn loss(layer: &Layer<f64>, x: &ArrayD<f64>, r: &ArrayD<f64>, mode: Mode) -> f64 {
    let mut ctx = Ctx::train(99);
    ctx.mode = mode;
    let (y, _) = layer.forward(x.clone(), &mut ctx).unwrap();
    (&y * r).sum()
}

fn close(analytic: f64, numeric: f64) -> bool {
    (analytic - numeric).abs() <= 1e-6 * (1.0 + analytic.abs())
}

/// Checks ∂L/∂x and every parameter gradient of `layer` at a random point.
fn check_layer(name: &str, mut layer: Layer<f64>, in_shape: &[usize], mode: Mode) {
    let mut rng = StdRng::seed_from_u64(5);
    let x = random(in_shape, &mut rng);
    let mut ctx = Ctx::train(99);
    ctx.mode = mode;
    let (y, cache) = layer.forward(x.clone(), &mut ctx).unwrap();
    let r = random(y.shape(), &mut rng);
    let mut grads = ParamGrads::default();
    let dx = layer.backward("l", &cache, r.clone(), &mut grads).unwrap();
    for (i, &g) in dx.iter().enumerate() {
        let mut xp = x.clone();
        xp.as_slice_mut().unwrap()[i] += H;
        let mut xm = x.clone();
        xm.as_slice_mut().unwrap()[i] -= H;
        let fd = (loss(&layer, &xp, &r, mode) - loss(&layer, &xm, &r, mode)) / (2.0 * H);
        assert!(
            close(g, fd),
            "{name}: ∂x[{i}] = {g}, finite difference {fd}"
        );
    }
    let mut keys = Vec::new();
    layer.visit_mut("l", &mut |p| {
        if p.role != nrpm::nn::Role::Buffer {
            keys.push((p.key, p.value.len()));
        }
    });
    for (key, len) in keys {
        let analytic = grads.get(&key).cloned();
        for i in 0..len {
            let eval = |delta: f64| {
                let mut l = layer.clone();
                l.visit_mut("l", &mut |mut p| {
                    if p.key == key {
                        p.value.as_slice_mut().unwrap()[i] += delta;
                    }
                });
                loss(&l, &x, &r, mode)
            };
            let fd = (eval(H) - eval(-H)) / (2.0 * H);
            let g = analytic.as_ref().map_or(0.0, |a| a.as_slice().unwrap()[i]);
            assert!(
                close(g, fd),
                "{name}: ∂{key}[{i}] = {g}, finite difference {fd}"
            );
        }
    }
    // Train-mode BatchNorm updates running statistics in forward: exercised above without
    // affecting the loss (batch statistics are used).
    let _ = &mut layer;
}

fn linear(matching: Matching<f64>) -> Layer<f64> {
    let mut rng = StdRng::seed_from_u64(1);
    let mut l = Layer::Linear(Linear::new(6, 4, true));
    l.visit_mut("", &mut |mut p| {
        let r = random(p.value.shape(), &mut rng);
        p.value.assign(&r)
    });
    if let Layer::Linear(l) = &mut l {
        l.matching = matching;
    }
    l
}

fn conv(matching: Matching<f64>, apply_bias: bool, geometry: Conv2dGeometry) -> Layer<f64> {
    let mut rng = StdRng::seed_from_u64(2);
    let mut c = Layer::Conv2d(Conv2d::new(2, 3, 3, geometry, true));
    c.visit_mut("", &mut |mut p| {
        let r = random(p.value.shape(), &mut rng);
        p.value.assign(&r)
    });
    if let Layer::Conv2d(c) = &mut c {
        c.apply_bias = apply_bias;
        c.matching = matching;
    }
    c
}

#[test]
fn linear_backward_matches_finite_differences() {
    check_layer("linear lpm", linear(Matching::Lpm), &[3, 6], Mode::Eval);
    for (norm, param) in [
        (Norm::L1, LambdaParam::Raw),
        (Norm::Huber { delta: 0.3 }, LambdaParam::Sigmoid),
        (Norm::Mcp { gamma: 4.0 }, LambdaParam::Raw),
        (
            Norm::Hm {
                gamma: 0.6,
                delta: 0.2,
            },
            LambdaParam::Sigmoid,
        ),
    ] {
        check_layer(
            "linear nrpm",
            linear(nrpm_matching(norm, 3, 0.4, param)),
            &[3, 6],
            Mode::Eval,
        );
    }
}

#[test]
fn conv2d_backward_matches_finite_differences() {
    let strided = Conv2dGeometry {
        stride: [2, 1],
        padding: [1, 0],
        dilation: [1, 2],
    };
    check_layer(
        "conv lpm bias",
        conv(Matching::Lpm, true, Conv2dGeometry::new(1, 1)),
        &[2, 2, 5, 5],
        Mode::Eval,
    );
    check_layer(
        "conv lpm strided",
        conv(Matching::Lpm, false, strided),
        &[2, 2, 6, 7],
        Mode::Eval,
    );
    let m = nrpm_matching(Norm::L1, 2, 0.3, LambdaParam::Sigmoid);
    check_layer(
        "conv nrpm",
        conv(m, false, strided),
        &[2, 2, 6, 7],
        Mode::Eval,
    );
    let m = nrpm_matching(Norm::Huber { delta: 0.2 }, 1, 0.7, LambdaParam::Raw);
    check_layer(
        "conv nrpm bias",
        conv(m, true, Conv2dGeometry::new(1, 0)),
        &[1, 2, 4, 4],
        Mode::Eval,
    );
}

#[test]
fn batchnorm_backward_matches_finite_differences_in_both_modes() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut bn = BatchNorm2d::new(3);
    bn.visit_mut("", &mut |mut p| {
        let r = random(&[3], &mut rng);
        match p.key.as_str() {
            "running_var" => p.value.assign(&r.mapv(|v| v.abs() + 0.5)),
            _ => p.value.assign(&r),
        }
    });
    check_layer(
        "batchnorm train",
        Layer::BatchNorm2d(bn.clone()),
        &[4, 3, 2, 2],
        Mode::Train,
    );
    check_layer(
        "batchnorm eval",
        Layer::BatchNorm2d(bn),
        &[4, 3, 2, 2],
        Mode::Eval,
    );
}

#[test]
fn parameter_free_layers_backward_matches_finite_differences() {
    check_layer("relu", Layer::Relu, &[2, 3, 4, 4], Mode::Eval);
    check_layer(
        "maxpool",
        Layer::MaxPool2d {
            kernel: 2,
            stride: 2,
        },
        &[2, 3, 5, 4],
        Mode::Eval,
    );
    check_layer(
        "maxpool overlapping",
        Layer::MaxPool2d {
            kernel: 3,
            stride: 1,
        },
        &[1, 2, 5, 5],
        Mode::Eval,
    );
    check_layer(
        "avgpool",
        Layer::AvgPool2d {
            kernel: 2,
            stride: 2,
        },
        &[2, 3, 4, 4],
        Mode::Eval,
    );
    check_layer("dropout", Layer::Dropout { p: 0.5 }, &[3, 8], Mode::Train);
    check_layer(
        "dropout2d",
        Layer::Dropout2d { p: 0.5 },
        &[3, 4, 2, 2],
        Mode::Train,
    );
    check_layer("flatten", Layer::Flatten, &[2, 3, 2, 2], Mode::Eval);
}

#[test]
fn residual_blocks_backward_matches_finite_differences() {
    for (kind, in_planes, planes, stride) in [
        (BlockKind::Basic, 2, 2, 1),
        (BlockKind::Basic, 2, 3, 2),
        (BlockKind::Bottleneck, 4, 1, 1),
        (BlockKind::Bottleneck, 2, 2, 2),
    ] {
        let mut block = Layer::Residual(Box::new(Residual::<f64>::new(
            kind, in_planes, planes, stride,
        )));
        let mut rng = StdRng::seed_from_u64(4);
        block.visit_mut("", &mut |mut p| {
            if p.role != nrpm::nn::Role::Buffer {
                {
                    let r = random(p.value.shape(), &mut rng);
                    p.value.assign(&r)
                };
            }
        });
        check_layer(
            &format!("{kind:?} s{stride}"),
            block.clone(),
            &[2, in_planes, 4, 4],
            Mode::Train,
        );
        check_layer(
            &format!("{kind:?} s{stride} eval"),
            block,
            &[2, in_planes, 4, 4],
            Mode::Eval,
        );
    }
}

/// Whole models: the input gradient of the summed cross-entropy, LPM and NRPM.
#[test]
fn model_input_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(6);
    for (name, c, side, nrpm_layers) in [
        ("mlp2", 1, 6, "default"),
        ("lenet", 1, 28, "all"),
        ("resnet10-tiny", 3, 32, "default"),
    ] {
        let mut model = Model::<f64>::new(ModelSpec::from_name(name, c, side).unwrap());
        model.init(3);
        let cfg = NrpmConfig::builder()
            .norm(Norm::L1)
            .k(2)
            .eps(0.05)
            .lambda(0.5)
            .build()
            .unwrap();
        model
            .reprogram(
                &nrpm_layers.parse::<LayerSelection>().unwrap(),
                cfg.with_lambda(0.5).unwrap(),
                LambdaParam::Raw,
            )
            .unwrap();
        let x = random(&[2, c, side, side], &mut rng).mapv(|v| (v + 1.0) / 2.0);
        let x = x.into_dimensionality::<ndarray::Ix4>().unwrap();
        let labels = [3, 7];
        let (_, dx, _) = model.loss_input_grad(x.view(), &labels).unwrap();
        let l = |x: &ndarray::Array4<f64>| {
            let z = model.logits(x.view()).unwrap();
            nrpm::nn::loss::cross_entropy(z.view(), &labels).unwrap().0
        };
        // A fixed sample of input coordinates (every coordinate of a 3×32×32 input is slow).
        for i in (0..x.len()).step_by(x.len() / 40 + 1) {
            let mut xp = x.clone();
            xp.as_slice_mut().unwrap()[i] += H;
            let mut xm = x.clone();
            xm.as_slice_mut().unwrap()[i] -= H;
            let fd = (l(&xp) - l(&xm)) / (2.0 * H);
            let g = dx.as_slice().unwrap()[i];
            assert!(
                close(g, fd),
                "{name}: ∂x[{i}] = {g}, finite difference {fd}"
            );
        }
    }
}
