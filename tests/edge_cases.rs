//! Edge cases of the operator: D = 1, K = 0, all-zero rows, non-contiguous inputs, empty
//! batches; and every bad input gets its typed error, never a panic: non-finite values
//! (`Error::NonFinite`), shape mismatches (`Error::Shape`), groups not dividing D and invalid
//! configurations (`Error::Config`), overflow (`Error::Overflow`).

mod common;

use common::all_norms;
use ndarray::{array, Array1, Array2, Array4};
use nrpm::{backward_with, forward_with, Conv2dGeometry, Error, Exec, Norm, NrpmConfig};
use nrpm::{conv, lad, MAX_K};

const EXECS: [Exec; 2] = [Exec::Reference, Exec::Fused];

fn cfg(norm: Norm, k: usize, lambda: f64) -> NrpmConfig {
    NrpmConfig::builder()
        .norm(norm)
        .k(k)
        .eps(1e-3)
        .lambda(lambda)
        .build()
        .unwrap()
}

/// D = 1: every IRLS step returns the single term, so y = x·w + b whatever the norm, K, λ,
/// and the gradients are those of the product (∂x = gy·w, ∂w = gy·x, ∂λ = 0).
#[test]
fn operator_single_term_is_the_product() {
    let x = array![[1.5_f64], [-2.0], [0.0]];
    let w = array![[0.5_f64], [-3.0]];
    let b = array![0.25, -1.0];
    let gy = array![[1.0, 2.0], [-0.5, 0.25], [3.0, -1.0]];
    for norm in all_norms() {
        for k in [0, 1, 4] {
            for exec in EXECS {
                let c = cfg(norm, k, 0.3);
                let (y, it) = forward_with(exec, x.view(), w.view(), Some(b.view()), &c).unwrap();
                let want = x.dot(&w.t()) + &b;
                assert!(
                    y.abs_diff_eq(&want, 1e-14),
                    "{norm:?} K={k} {exec:?}: {y} vs {want}"
                );
                let g = backward_with(exec, x.view(), w.view(), &it, gy.view()).unwrap();
                assert!(g.x.abs_diff_eq(&gy.dot(&w), 1e-14), "{norm:?} {exec:?} ∂x");
                assert!(
                    g.weight.abs_diff_eq(&gy.t().dot(&x), 1e-14),
                    "{norm:?} {exec:?} ∂W"
                );
                assert!(
                    g.lambda.abs() < 1e-14,
                    "{norm:?} {exec:?} ∂λ = {}",
                    g.lambda
                );
            }
        }
    }
}

/// D = 2 with L1: the two residuals from the mean are equal, so the weights are equal and
/// IRLS never leaves the mean (NRPM = LPM): proofs/05-finite-k-damping.md, remark.
#[test]
fn operator_two_terms_stay_at_the_mean_under_l1() {
    let x = array![[1.0_f64, 1000.0]];
    let w = array![[1.0_f64, 1.0]];
    let (y, _) = forward_with(
        Exec::Fused,
        x.view(),
        w.view(),
        None,
        &cfg(Norm::L1, 5, 0.0),
    )
    .unwrap();
    assert_eq!(y[[0, 0]], 1001.0);
}

/// K = 0: the output is x·Wᵀ + b for every norm and λ, the iterates hold only z⁰, and
/// ∂λ = 0.
#[test]
fn operator_zero_steps_is_lpm() {
    let x = array![[1.0_f64, -2.0, 0.5], [0.0, 3.0, 1.0]];
    let w = array![[0.5_f64, 1.0, -1.0]];
    let b = array![0.1];
    for norm in all_norms() {
        for exec in EXECS {
            let c = cfg(norm, 0, -0.7);
            let (y, it) = forward_with(exec, x.view(), w.view(), Some(b.view()), &c).unwrap();
            assert!(y.abs_diff_eq(&(x.dot(&w.t()) + &b), 1e-14));
            assert_eq!(it.z().dim(), (2, 1, 1, 1));
            let g =
                backward_with(exec, x.view(), w.view(), &it, array![[1.0], [2.0]].view()).unwrap();
            assert_eq!(g.lambda, 0.0);
            assert!(g
                .x
                .abs_diff_eq(&array![[0.5, 1.0, -1.0], [1.0, 2.0, -2.0]], 1e-14));
        }
    }
}

/// All-zero input rows and all-zero weight rows (every term 0, every residual 0): finite
/// output equal to the bias, finite gradients, for every norm, both paths, f32 and f64.
#[test]
fn operator_zero_rows_give_bias_and_finite_gradients() {
    let x = array![[0.0_f64, 0.0, 0.0, 0.0], [1.0, -2.0, 0.5, 3.0]];
    let w = array![[0.0_f64, 0.0, 0.0, 0.0], [0.5, 0.5, -1.0, 2.0]];
    let b = array![0.5, -0.25];
    let gy = array![[1.0, -1.0], [0.5, 2.0]];
    for norm in all_norms() {
        for k in [1, 3] {
            for exec in EXECS {
                let c = cfg(norm, k, 0.2).with_groups(2).unwrap();
                let (y, it) = forward_with(exec, x.view(), w.view(), Some(b.view()), &c).unwrap();
                assert_eq!(y[[0, 0]], 0.5, "{norm:?} {exec:?}");
                assert_eq!(y[[0, 1]], -0.25);
                assert_eq!(y[[1, 0]], 0.5);
                assert!(y.iter().all(|v| v.is_finite()));
                let g = backward_with(exec, x.view(), w.view(), &it, gy.view()).unwrap();
                for v in g.x.iter().chain(&g.weight).chain(&g.bias) {
                    assert!(
                        v.is_finite(),
                        "{norm:?} K={k} {exec:?}: non-finite gradient"
                    );
                }
                assert!(g.lambda.is_finite());
                let (x32, w32) = (x.mapv(|v| v as f32), w.mapv(|v| v as f32));
                let (y32, it32) = forward_with(exec, x32.view(), w32.view(), None, &c).unwrap();
                assert_eq!(y32[[0, 0]], 0.0);
                let g32 = backward_with(
                    exec,
                    x32.view(),
                    w32.view(),
                    &it32,
                    gy.mapv(|v| v as f32).view(),
                )
                .unwrap();
                assert!(g32.x.iter().chain(&g32.weight).all(|v| v.is_finite()));
            }
        }
    }
}

/// Transposed (non-contiguous) views give the same result as contiguous arrays.
#[test]
fn operator_accepts_non_contiguous_views() {
    let xt = array![[1.0_f64, 0.0], [-2.0, 3.0], [0.5, 1.0]]; // [D, B]
    let wt = array![[0.5_f64], [1.0], [-1.0]]; // [D, O]
    let c = cfg(Norm::L1, 2, 0.5);
    for exec in EXECS {
        let (a, _) = forward_with(exec, xt.t(), wt.t(), None, &c).unwrap();
        let (b, _) = forward_with(
            exec,
            xt.t().to_owned().view(),
            wt.t().to_owned().view(),
            None,
            &c,
        )
        .unwrap();
        assert_eq!(a, b);
    }
}

/// Empty batch or no outputs: empty results, no panic; on the IRLS path and on the LPM path
/// (whose backward is the two GEMMs `ȳ·W`, `ȳᵀ·x`: with B = 0, ∂W is zeros).
#[test]
fn operator_handles_empty_batch_and_outputs() {
    for (c, exec) in [cfg(Norm::L1, 2, 0.5), NrpmConfig::lpm()]
        .into_iter()
        .flat_map(|c| EXECS.map(|e| (c, e)))
    {
        for (b, o) in [(0, 3), (3, 0), (0, 0)] {
            let x = Array2::<f64>::zeros((b, 4));
            let w = Array2::<f64>::ones((o, 4));
            let (y, it) = forward_with(exec, x.view(), w.view(), None, &c).unwrap();
            assert_eq!(y.dim(), (b, o));
            let g =
                backward_with(exec, x.view(), w.view(), &it, Array2::zeros((b, o)).view()).unwrap();
            assert_eq!(g.x.dim(), (b, 4));
            assert_eq!(g.weight, Array2::<f64>::zeros((o, 4)));
        }
    }
}

/// NaN or ±Inf in x, weight, bias or grad_output: `Error::NonFinite` naming the input and
/// the index (one entry per axis), on both paths, f32 and f64, linear, conv and LAD.
#[test]
fn operator_rejects_non_finite_inputs() {
    let x = array![[1.0_f64, 2.0, 3.0]];
    let w = array![[1.0_f64, 1.0, 1.0]];
    let b = array![0.0];
    let c = cfg(Norm::L1, 2, 0.5);
    let expect = |r: nrpm::Result<()>, what: &str, index: &[usize]| match r {
        Err(Error::NonFinite {
            what: got,
            index: i,
            ..
        }) => {
            assert!(got.contains(what), "named {got}, want {what}");
            assert_eq!(i, index);
        }
        other => panic!("want NonFinite for {what}, got {other:?}"),
    };
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        for exec in EXECS {
            let mut xb = x.clone();
            xb[[0, 2]] = bad;
            expect(
                forward_with(exec, xb.view(), w.view(), None, &c).map(|_| ()),
                "x",
                &[0, 2],
            );
            expect(
                forward_with(
                    exec,
                    xb.mapv(|v| v as f32).view(),
                    w.mapv(|v| v as f32).view(),
                    None,
                    &c,
                )
                .map(|_| ()),
                "x",
                &[0, 2],
            );
            let mut wb = w.clone();
            wb[[0, 1]] = bad;
            expect(
                forward_with(exec, x.view(), wb.view(), None, &c).map(|_| ()),
                "weight",
                &[0, 1],
            );
            let bb = array![bad];
            expect(
                forward_with(exec, x.view(), w.view(), Some(bb.view()), &c).map(|_| ()),
                "bias",
                &[0],
            );
            let (_, it) = forward_with(exec, x.view(), w.view(), Some(b.view()), &c).unwrap();
            expect(
                backward_with(exec, x.view(), w.view(), &it, array![[bad]].view()).map(|_| ()),
                "grad_output",
                &[0, 0],
            );
            // conv
            let xc = Array4::from_shape_fn(
                (1, 1, 3, 3),
                |(_, _, i, j)| if i == 1 && j == 1 { bad } else { 1.0 },
            );
            let wc = Array4::<f64>::ones((1, 1, 2, 2));
            let r = conv::forward_with(
                exec,
                xc.view(),
                wc.view(),
                None,
                &Conv2dGeometry::default(),
                &c,
            );
            assert!(matches!(r, Err(Error::NonFinite { .. })), "conv: {r:?}");
        }
        let mut xb = x.clone();
        xb[[0, 0]] = bad;
        let r = lad::forward(xb.view(), w.view(), None, &c);
        assert!(matches!(r, Err(Error::NonFinite { .. })), "lad: {r:?}");
    }
}

/// Shape mismatches: `Error::Shape` for D of x vs weight, bias length, grad_output shape,
/// conv channels and conv grad_output; `Error::Stale` for a backward pass given another x or
/// weight than its forward pass saw (linear and conv).
#[test]
fn operator_rejects_shape_mismatches() {
    let x = array![[1.0_f64, 2.0, 3.0]];
    let w = array![[1.0_f64, 1.0, 1.0], [0.5, 0.5, 0.5]];
    let c = cfg(Norm::L1, 2, 0.5);
    let is_shape = |r: nrpm::Result<()>| matches!(r, Err(Error::Shape { .. }));
    for exec in EXECS {
        let w_bad = array![[1.0_f64, 1.0]];
        assert!(is_shape(
            forward_with(exec, x.view(), w_bad.view(), None, &c).map(|_| ())
        ));
        let b_bad = array![0.0];
        assert!(is_shape(
            forward_with(exec, x.view(), w.view(), Some(b_bad.view()), &c).map(|_| ())
        ));
        let (_, it) = forward_with(exec, x.view(), w.view(), None, &c).unwrap();
        assert!(is_shape(
            backward_with(exec, x.view(), w.view(), &it, array![[1.0]].view()).map(|_| ())
        ));
        // Another x or weight than the forward pass saw: a stale-iterates error, never wrong
        // gradients (the configuration travels with the iterates, so it cannot differ).
        let is_stale = |r: nrpm::Result<()>| matches!(r, Err(Error::Stale { .. }));
        let gy = array![[1.0, 1.0]];
        let x2 = array![[1.0_f64, 2.0, 3.5]];
        assert!(is_stale(
            backward_with(exec, x2.view(), w.view(), &it, gy.view()).map(|_| ())
        ));
        let w2 = array![[1.0_f64, 1.0, 1.0], [0.5, 0.5, 0.25]];
        assert!(is_stale(
            backward_with(exec, x.view(), w2.view(), &it, gy.view()).map(|_| ())
        ));
        let x3 = array![[1.0_f64, 2.0, 3.0], [1.0, 2.0, 3.0]];
        assert!(is_stale(
            backward_with(
                exec,
                x3.view(),
                w.view(),
                &it,
                array![[1.0, 1.0], [1.0, 1.0]].view()
            )
            .map(|_| ())
        ));
        assert!(backward_with(exec, x.view(), w.view(), &it, gy.view()).is_ok());
        let xc = Array4::<f64>::ones((1, 2, 4, 4));
        let wc = Array4::<f64>::ones((1, 3, 2, 2));
        let g = Conv2dGeometry::default();
        assert!(matches!(
            conv::forward_with(exec, xc.view(), wc.view(), None, &g, &c),
            Err(Error::Shape { .. })
        ));
        let wc = Array4::<f64>::ones((1, 2, 2, 2));
        let (_, itc) = conv::forward_with(exec, xc.view(), wc.view(), None, &g, &c).unwrap();
        let gy_bad = Array4::<f64>::ones((1, 1, 2, 2));
        assert!(matches!(
            conv::backward_with(exec, xc.view(), wc.view(), &itc, gy_bad.view(), &g),
            Err(Error::Shape { .. })
        ));
        let gy = Array4::<f64>::ones((1, 1, 3, 3));
        let other_geometry = Conv2dGeometry::new(1, 1);
        assert!(matches!(
            conv::backward_with(exec, xc.view(), wc.view(), &itc, gy.view(), &other_geometry),
            Err(Error::Stale { .. })
        ));
        let xc2 = &xc * 0.5;
        assert!(matches!(
            conv::backward_with(exec, xc2.view(), wc.view(), &itc, gy.view(), &g),
            Err(Error::Stale { .. })
        ));
        // Linear iterates given to the conv path, and the other way round.
        assert!(matches!(
            conv::backward_with(exec, xc.view(), wc.view(), &it, gy.view(), &g),
            Err(Error::Stale { .. })
        ));
        assert!(matches!(
            backward_with(
                exec,
                x.view(),
                w.view(),
                &itc,
                gy_bad.view().into_shape_with_order((1, 4)).unwrap()
            ),
            Err(Error::Stale { .. })
        ));
    }
    assert!(matches!(
        conv::fold(
            Array2::<f64>::zeros((3, 3)).view(),
            [1, 1, 3, 3],
            2,
            2,
            &Conv2dGeometry::default()
        ),
        Err(Error::Shape { .. })
    ));
}

/// Groups that do not divide D, D = 0, and every invalid configuration give `Error::Config`
/// naming the parameter: ε ≤ 0 or non-finite, λ non-finite, hm with γ ≤ δ or ε ≥ 1, Huber
/// δ ≤ 0, MCP γ ≤ 0, groups = 0, K > MAX_K; conv kernels that do not fit and zero strides.
#[test]
fn operator_rejects_invalid_configurations() {
    let name_of = |r: nrpm::Result<NrpmConfig>| match r {
        Err(Error::Config { name, .. }) => name,
        other => panic!("want Error::Config, got {other:?}"),
    };
    for eps in [0.0, -1e-3, f64::NAN, f64::INFINITY] {
        assert_eq!(
            name_of(
                NrpmConfig::builder()
                    .norm(Norm::L1)
                    .k(1)
                    .eps(eps)
                    .lambda(0.5)
                    .build()
            ),
            "eps"
        );
    }
    for lambda in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(
            name_of(
                NrpmConfig::builder()
                    .norm(Norm::L1)
                    .k(1)
                    .eps(1e-3)
                    .lambda(lambda)
                    .build()
            ),
            "lambda"
        );
        assert_eq!(name_of(NrpmConfig::lpm().with_lambda(lambda)), "lambda");
    }
    assert_eq!(
        name_of(
            NrpmConfig::builder()
                .norm(Norm::Hm {
                    gamma: 3.0,
                    delta: 3.0
                })
                .k(1)
                .eps(1e-3)
                .lambda(0.5)
                .build()
        ),
        "gamma"
    );
    assert_eq!(
        name_of(
            NrpmConfig::builder()
                .norm(Norm::Hm {
                    gamma: 2.0,
                    delta: 3.0
                })
                .k(1)
                .eps(1e-3)
                .lambda(0.5)
                .build()
        ),
        "gamma"
    );
    assert_eq!(
        name_of(
            NrpmConfig::builder()
                .norm(Norm::Hm {
                    gamma: 4.0,
                    delta: 3.0
                })
                .k(1)
                .eps(1.0)
                .lambda(0.5)
                .build()
        ),
        "eps"
    );
    assert_eq!(
        name_of(
            NrpmConfig::builder()
                .norm(Norm::Huber { delta: 0.0 })
                .k(1)
                .eps(1e-3)
                .lambda(0.5)
                .build()
        ),
        "delta"
    );
    assert_eq!(
        name_of(
            NrpmConfig::builder()
                .norm(Norm::Huber { delta: f64::NAN })
                .k(1)
                .eps(1e-3)
                .lambda(0.5)
                .build()
        ),
        "delta"
    );
    assert_eq!(
        name_of(
            NrpmConfig::builder()
                .norm(Norm::Mcp { gamma: -1.0 })
                .k(1)
                .eps(1e-3)
                .lambda(0.5)
                .build()
        ),
        "gamma"
    );
    assert_eq!(
        name_of(
            NrpmConfig::builder()
                .norm(Norm::L1)
                .k(MAX_K + 1)
                .eps(1e-3)
                .lambda(0.5)
                .build()
        ),
        "k"
    );
    assert!(NrpmConfig::builder()
        .norm(Norm::L1)
        .k(MAX_K)
        .eps(1e-3)
        .lambda(0.5)
        .build()
        .is_ok());
    assert_eq!(name_of(NrpmConfig::lpm().with_groups(0)), "groups");

    let x = Array2::<f64>::ones((2, 6));
    let w = Array2::<f64>::ones((1, 6));
    let c4 = cfg(Norm::L1, 1, 0.5).with_groups(4).unwrap();
    for exec in EXECS {
        match forward_with(exec, x.view(), w.view(), None, &c4) {
            Err(Error::Config { name: "groups", .. }) => {}
            other => panic!("groups 4 ∤ 6: {other:?}"),
        }
        let (x0, w0) = (Array2::<f64>::zeros((2, 0)), Array2::<f64>::zeros((1, 0)));
        assert!(matches!(
            forward_with(exec, x0.view(), w0.view(), None, &cfg(Norm::L1, 1, 0.5)),
            Err(Error::Config { .. })
        ));
    }
    assert!(matches!(
        lad::forward(x.view(), w.view(), None, &c4),
        Err(Error::Config { .. })
    ));
    let xc = Array4::<f64>::ones((1, 1, 2, 2));
    let wc = Array4::<f64>::ones((1, 1, 3, 3));
    let c = cfg(Norm::L1, 1, 0.5);
    assert!(matches!(
        conv::forward_with(
            Exec::Fused,
            xc.view(),
            wc.view(),
            None,
            &Conv2dGeometry::default(),
            &c
        ),
        Err(Error::Config { .. })
    ));
    let g0 = Conv2dGeometry {
        stride: [0, 1],
        ..Conv2dGeometry::default()
    };
    assert!(matches!(
        conv::forward_with(Exec::Fused, xc.view(), wc.view(), None, &g0, &c),
        Err(Error::Config { .. })
    ));
}

/// Finite inputs whose products overflow: `Error::Overflow`, not a silent ±Inf or NaN.
#[test]
fn operator_reports_overflow() {
    for exec in EXECS {
        let x = array![[1e300_f64, 1e300]];
        let w = array![[1e300_f64, 1e300]];
        assert!(matches!(
            forward_with(exec, x.view(), w.view(), None, &cfg(Norm::L1, 1, 0.5)),
            Err(Error::Overflow { .. })
        ));
        let x = array![[1e30_f32, 1e30]];
        let w = array![[1e30_f32, 1e30]];
        assert!(matches!(
            forward_with(exec, x.view(), w.view(), None, &NrpmConfig::lpm()),
            Err(Error::Overflow { .. })
        ));
    }
}

/// LAD of a single term and of equal terms is exact.
#[test]
fn lad_of_one_or_equal_terms_is_exact() {
    let c = cfg(Norm::L1, 1, 0.0);
    let y = lad::forward(
        array![[3.0_f64]].view(),
        array![[-2.0_f64]].view(),
        None,
        &c,
    )
    .unwrap();
    assert_eq!(y[[0, 0]], -6.0);
    let y = lad::forward(
        array![[0.5_f64, 0.5, 0.5, 0.5]].view(),
        Array2::ones((1, 4)).view(),
        Some(Array1::from_elem(1, 1.0).view()),
        &c,
    )
    .unwrap();
    assert_eq!(y[[0, 0]], 3.0);
}
