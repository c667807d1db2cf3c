//! Independent golden gradients: nrpm's forward and backward (reference and fused, f64)
//! against tests/fixtures/golden_gradients.json, written by tests/fixtures/golden_gradients.py
//! — the authors' `RobustSum` and robust conv (through unfold) transcribed operation by
//! operation and differentiated by a generic reverse-mode autodiff with PyTorch's rules, not by
//! nrpm's hand-derived backward. Cases: every norm, ties (t_d = z/D exactly), ε = 1e-7,
//! N > 1, λ ≠ 0, and two convolutions (padding, stride 2, N = C).
//!
//! Tolerance: [`Tolerance::F64`] element-wise on the first-order rounding bounds of
//! proofs/08 (two f64 computations with different summation orders), capped at 1e-6 of each
//! element's scale.

mod common;

use common::{assert_within, rounding_bounds, Tolerance, ToleranceUse, U64};
use ndarray::{Array1, Array2, Array4};
use nrpm::conv::{self, Conv2dGeometry};
use nrpm::{backward_with, forward_with, Exec, Norm, NrpmConfig};
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/golden_gradients.json"
);

fn floats(case: &Value, key: &str) -> Vec<f64> {
    case[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture: `{key}` is not an array"))
        .iter()
        .map(|v| f64::from_bits(v.as_u64().expect("fixture: bit patterns are u64")))
        .collect()
}

fn usize_of(case: &Value, key: &str) -> usize {
    case["shape"][key].as_u64().expect("fixture: shape") as usize
}

fn config(case: &Value) -> NrpmConfig {
    let c = &case["config"];
    let f = |k: &str| c[k].as_f64().expect("fixture: config number");
    let norm = match c["norm"].as_str().expect("fixture: norm") {
        "lpm" => Norm::Lpm,
        "l1" => Norm::L1,
        "huber" => Norm::Huber { delta: f("delta") },
        "mcp" => Norm::Mcp { gamma: f("gamma") },
        "hm" => Norm::Hm {
            gamma: f("gamma"),
            delta: f("delta"),
        },
        other => panic!("fixture: unknown norm {other}"),
    };
    NrpmConfig::builder()
        .norm(norm)
        .k(c["k"].as_u64().expect("fixture: k") as usize)
        .eps(f("eps"))
        .lambda(f("lambda"))
        .build()
        .and_then(|cfg| cfg.with_groups(c["groups"].as_u64().expect("fixture: groups") as usize))
        .expect("fixture: valid configuration")
}

fn cases(kind: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(FIXTURE).expect("the fixture is committed");
    let all: Vec<Value> = serde_json::from_str(&text).expect("fixture: JSON");
    all.into_iter().filter(|c| c["kind"] == kind).collect()
}

/// The λ comparison, element-wise like the rest.
fn assert_lambda(what: &str, got: f64, want: f64, bound: f64, scale: f64, use_: &ToleranceUse) {
    let tol = Tolerance::F64
        .apply(
            &Array1::from_elem(1, bound),
            &Array1::from_elem(1, scale),
            use_,
        )
        .0;
    assert_within(
        what,
        &Array1::from_elem(1, got),
        &Array1::from_elem(1, want),
        &tol,
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn linear_forward_and_gradients_match_the_authors_autograd() {
    let use_ = ToleranceUse::new();
    let linear = cases("linear");
    assert_eq!(linear.len(), 8, "the fixture's linear cases");
    for case in &linear {
        let name = case["name"].as_str().unwrap();
        let (b, o, d) = (
            usize_of(case, "b"),
            usize_of(case, "o"),
            usize_of(case, "d"),
        );
        let x = Array2::from_shape_vec((b, d), floats(case, "x")).unwrap();
        let w = Array2::from_shape_vec((o, d), floats(case, "w")).unwrap();
        let bias = Array1::from_vec(floats(case, "bias"));
        let gy = Array2::from_shape_vec((b, o), floats(case, "gy")).unwrap();
        let want_y = Array2::from_shape_vec((b, o), floats(case, "y")).unwrap();
        let want_gx = Array2::from_shape_vec((b, d), floats(case, "gx")).unwrap();
        let want_gw = Array2::from_shape_vec((o, d), floats(case, "gw")).unwrap();
        let want_gb = Array1::from_vec(floats(case, "gb"));
        let want_gl = floats(case, "glambda")[0];
        let cfg = config(case);
        let bd = rounding_bounds(&x.view(), &w.view(), Some(&bias), &gy.view(), &cfg, U64);
        let tol = |bound, scale| Tolerance::F64.apply(bound, scale, &use_).0;
        for exec in [Exec::Reference, Exec::Fused] {
            let what = format!("{name} ({exec:?})");
            let (y, it) = forward_with(exec, x.view(), w.view(), Some(bias.view()), &cfg).unwrap();
            let g = backward_with(exec, x.view(), w.view(), &it, gy.view()).unwrap();
            let check = |q: &str, got: &Array2<f64>, want: &Array2<f64>, t: Array2<f64>| {
                assert_within(&format!("{what}: {q}"), got, want, &t)
                    .unwrap_or_else(|e| panic!("{e}"))
            };
            check("y", &y, &want_y, tol(&bd.y, &bd.y_scale));
            check("∂x", &g.x, &want_gx, tol(&bd.gx, &bd.gx_scale));
            check("∂W", &g.weight, &want_gw, tol(&bd.gw, &bd.gw_scale));
            assert_within(
                &format!("{what}: ∂b"),
                &g.bias,
                &want_gb,
                &Tolerance::F64.apply(&bd.gb, &bd.gb_scale, &use_).0,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            assert_lambda(
                &format!("{what}: ∂λ"),
                g.lambda,
                want_gl,
                bd.gl,
                bd.gl_scale,
                &use_,
            );
        }
    }
    let (draws, _, elements, fell, capped) = use_.counts();
    eprintln!("golden linear: {elements} elements ({draws} draws), {fell} fell back to the rounding bound, {capped} capped");
}

#[test]
fn conv_through_unfold_matches_the_authors_autograd() {
    let use_ = ToleranceUse::new();
    let convs = cases("conv");
    assert_eq!(convs.len(), 2, "the fixture's conv cases");
    for case in &convs {
        let name = case["name"].as_str().unwrap();
        let s = |k| usize_of(case, k);
        let (b, c, h, wd, o, kh, kw) = (s("b"), s("c"), s("h"), s("w"), s("o"), s("kh"), s("kw"));
        let (ho, wo) = (s("ho"), s("wo"));
        let geom = Conv2dGeometry {
            stride: [s("stride"); 2],
            padding: [s("pad"); 2],
            dilation: [1, 1],
        };
        let x = Array4::from_shape_vec((b, c, h, wd), floats(case, "x")).unwrap();
        let w = Array4::from_shape_vec((o, c, kh, kw), floats(case, "w")).unwrap();
        let gy = Array4::from_shape_vec((b, o, ho, wo), floats(case, "gy")).unwrap();
        let want_y = Array4::from_shape_vec((b, o, ho, wo), floats(case, "y")).unwrap();
        let want_gx = Array4::from_shape_vec((b, c, h, wd), floats(case, "gx")).unwrap();
        let want_gw = Array4::from_shape_vec((o, c, kh, kw), floats(case, "gw")).unwrap();
        let want_gl = floats(case, "glambda")[0];
        let cfg = config(case);
        // Rounding bounds in patch space, mapped back as in tests/prop_operator.rs.
        let patches = conv::unfold(x.view(), kh, kw, &geom).unwrap();
        let wflat = w.clone().into_shape_with_order((o, c * kh * kw)).unwrap();
        let gy_rows = Array2::from_shape_fn((b * ho * wo, o), |(r, oi)| {
            gy[[r / (ho * wo), oi, (r % (ho * wo)) / wo, r % wo]]
        });
        let bd = rounding_bounds(
            &patches.view(),
            &wflat.view(),
            None,
            &gy_rows.view(),
            &cfg,
            U64,
        );
        let tol = |bound, scale| Tolerance::F64.apply(bound, scale, &use_).0;
        let to4 = |a: Array2<f64>| {
            a.into_shape_with_order((b, ho, wo, o))
                .unwrap()
                .permuted_axes([0, 3, 1, 2])
                .to_owned()
        };
        let fold = |a: Array2<f64>| conv::fold(a.view(), [b, c, h, wd], kh, kw, &geom).unwrap();
        for exec in [Exec::Reference, Exec::Fused] {
            let what = format!("{name} ({exec:?})");
            let (y, it) = conv::forward_with(exec, x.view(), w.view(), None, &geom, &cfg).unwrap();
            let g = conv::backward_with(exec, x.view(), w.view(), &it, gy.view(), &geom).unwrap();
            let fail = |e: proptest::test_runner::TestCaseError| panic!("{e}");
            assert_within(
                &format!("{what}: y"),
                &y,
                &want_y,
                &to4(tol(&bd.y, &bd.y_scale)),
            )
            .unwrap_or_else(fail);
            assert_within(
                &format!("{what}: ∂x"),
                &g.x,
                &want_gx,
                &fold(tol(&bd.gx, &bd.gx_scale)),
            )
            .unwrap_or_else(fail);
            let tw = tol(&bd.gw, &bd.gw_scale)
                .into_shape_with_order((o, c, kh, kw))
                .unwrap();
            assert_within(&format!("{what}: ∂W"), &g.weight, &want_gw, &tw).unwrap_or_else(fail);
            assert_lambda(
                &format!("{what}: ∂λ"),
                g.lambda,
                want_gl,
                bd.gl,
                bd.gl_scale,
                &use_,
            );
        }
    }
}
