//! The CUDA kernels' maths without a GPU: cuda/nrpm_math.cuh and the kernels' decomposition
//! (tests/kernel_math/harness.cpp) compiled with the system C++ compiler, against
//! src/nrpm/reference.rs. What this leaves to a GPU: the thread mapping, shared-memory staging
//! and launches (tests/cuda_linear.rs, which also checks GPU ≡ this harness bit for bit).
//!
//! Skips with a printed reason when no C++ compiler is found.

#[path = "kernel_math/cases.rs"]
mod cases;
#[path = "kernel_math/harness.rs"]
mod harness;

use cases::{check_f32, check_f64, f64s, linear_case, make_case, norm, Case};
use ndarray::{Array2, Array4};
use nrpm::conv::{fold, unfold};
use nrpm::{Conv2dGeometry, Exec, NrpmConfig};
use proptest::prelude::*;

fn compiler_or_skip(test: &str) -> bool {
    match harness::harness() {
        Ok(_) => true,
        Err(why) => {
            nrpm::testing::skip("cxx", test, &why.to_string());
            false
        }
    }
}

/// Harness (f64 and f32) against the reference (f64), forward and every gradient.
fn check_case(case: &Case) -> Result<(), String> {
    let cfg = &case.cfg;
    let bias = case.bias.as_ref().map(|b| b.view());
    let (y, it) = nrpm::forward_with(Exec::Reference, case.x.view(), case.w.view(), bias, cfg)
        .map_err(|e| e.to_string())?;
    let g = nrpm::backward_with(
        Exec::Reference,
        case.x.view(),
        case.w.view(),
        &it,
        case.gy.view(),
    )
    .map_err(|e| e.to_string())?;
    let (yf, itf) = nrpm::forward(case.x.view(), case.w.view(), bias, cfg).unwrap();
    let gf = nrpm::backward(case.x.view(), case.w.view(), &itf, case.gy.view()).unwrap();

    let h = harness::linear(&case.x, &case.w, case.bias.as_ref(), &case.gy, cfg);
    let pairs64 = [
        ("y", &h.y, &yf, &y),
        ("grad x", &h.gx, &gf.x, &g.x),
        ("grad weight", &h.gw, &gf.weight, &g.weight),
    ];
    for (what, got, cpu, want) in pairs64 {
        check_f64(
            &format!("f64 {what}"),
            got.as_slice().unwrap(),
            cpu.as_slice().unwrap(),
            want.as_slice().unwrap(),
        )?;
    }
    check_f64(
        "f64 iterates",
        h.z.as_slice().unwrap(),
        itf.z().as_slice().unwrap(),
        it.z().as_slice().unwrap(),
    )?;

    let (x32, w32, b32, gy32) = (case.x32(), case.w32(), case.bias32(), case.gy32());
    let (yf32, itf32) = nrpm::forward(x32.view(), w32.view(), b32.as_ref().map(|b| b.view()), cfg)
        .map_err(|e| e.to_string())?;
    let gf32 = nrpm::backward(x32.view(), w32.view(), &itf32, gy32.view()).unwrap();
    let b32v = b32.as_ref().map(|b| b.view());
    let (yr32, itr32) =
        nrpm::forward_with(Exec::Reference, x32.view(), w32.view(), b32v, cfg).unwrap();
    let gr32 =
        nrpm::backward_with(Exec::Reference, x32.view(), w32.view(), &itr32, gy32.view()).unwrap();
    let h32 = harness::linear(&x32, &w32, b32.as_ref(), &gy32, cfg);
    let pairs32 = [
        ("y", &h32.y, &yf32, &yr32, &y),
        ("grad x", &h32.gx, &gf32.x, &gr32.x, &g.x),
        (
            "grad weight",
            &h32.gw,
            &gf32.weight,
            &gr32.weight,
            &g.weight,
        ),
    ];
    for (what, got, fused, refr, want) in pairs32 {
        check_f32(
            &format!("f32 {what}"),
            &f64s(got),
            &[&f64s(fused), &f64s(refr)],
            want.as_slice().unwrap(),
        )?;
    }
    check_f32(
        "f32 iterates",
        &f64s(&h32.z),
        &[&f64s(itf32.z()), &f64s(itr32.z())],
        it.z().as_slice().unwrap(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The kernels' arithmetic computes the reference's function: forward, iterates, x̄, W̄, in
    /// f64 and f32, every norm, K = 0…4, groups, D = 1 and ragged chunks.
    #[test]
    fn harness_matches_reference(case in linear_case(5, 5)) {
        if compiler_or_skip("harness_matches_reference") {
            prop_assert!(check_case(&case).is_ok(), "{}", check_case(&case).unwrap_err());
        }
    }
}

#[test]
fn harness_handles_large_rows_and_every_norm() {
    if !compiler_or_skip("harness_handles_large_rows_and_every_norm") {
        return;
    }
    // D = 4608 (a 3×3 convolution over 512 channels): 144 chunks of 32.
    for ni in 0..5 {
        let cfg = NrpmConfig::builder()
            .norm(norm(ni, 4.0, 3.0))
            .k(3)
            .eps(1e-3)
            .lambda(0.25)
            .build()
            .unwrap();
        let case = make_case(3, 4608, 4, cfg, ni % 2 == 0, 7 + ni as u64);
        check_case(&case).unwrap();
    }
}

#[test]
fn harness_edge_cases() {
    if !compiler_or_skip("harness_edge_cases") {
        return;
    }
    let l1 = |k, lambda| {
        NrpmConfig::builder()
            .norm(nrpm::Norm::L1)
            .k(k)
            .eps(1e-3)
            .lambda(lambda)
            .build()
            .unwrap()
    };
    // K = 0: the LPM sum, grad = ȳ·W and ȳᵀ·x.
    check_case(&make_case(3, 5, 2, l1(0, 0.0), true, 1)).unwrap();
    // D = 1: every step returns t itself.
    check_case(&make_case(2, 1, 3, l1(4, 0.0), false, 2)).unwrap();
    // All-zero rows and weights: zero outputs, finite gradients (sign(0) = 0).
    let zeros = Case {
        x: Array2::zeros((2, 7)),
        w: Array2::zeros((3, 7)),
        bias: None,
        gy: Array2::ones((2, 3)),
        cfg: l1(3, 0.3),
    };
    check_case(&zeros).unwrap();
    let h = harness::linear(&zeros.x, &zeros.w, None, &zeros.gy, &zeros.cfg);
    assert!(h.y.iter().all(|&v| v == 0.0));
    assert!(h.gx.iter().chain(h.gw.iter()).all(|v| v.is_finite()));
    // Equal terms: residuals exactly 0 at the fixed point.
    let equal = Case {
        x: Array2::from_elem((1, 6), 0.5),
        w: Array2::ones((2, 6)),
        gy: Array2::ones((1, 2)),
        ..zeros.clone()
    };
    check_case(&equal).unwrap();
    // Groups that do not line up with the chunks: N = 3, Dg = 35.
    let cfg = l1(2, 0.1).with_groups(3).unwrap();
    check_case(&make_case(2, 105, 3, cfg, true, 3)).unwrap();
}

/// The C structs the kernels take have the layout of their `#[repr(C)]` twins in
/// src/nrpm/cuda/mod.rs (which asserts the same numbers at compile time).
#[test]
fn harness_param_layout_matches_the_rust_twins() {
    if !compiler_or_skip("harness_param_layout_matches_the_rust_twins") {
        return;
    }
    let (nrpm_params, conv_params) = harness::layout();
    assert_eq!(
        nrpm_params,
        vec![64, 0, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56]
    );
    assert_eq!(conv_params, vec![64, 24, 52]);
}

/// The device unfold and fold (gather form) give the CPU's patches and folded image.
#[test]
fn harness_unfold_and_fold_match_the_cpu() {
    if !compiler_or_skip("harness_unfold_and_fold_match_the_cpu") {
        return;
    }
    let geoms = [
        (3, 3, Conv2dGeometry::new(1, 1)),
        (5, 5, Conv2dGeometry::new(1, 0)),
        (
            3,
            2,
            Conv2dGeometry {
                stride: [2, 1],
                padding: [1, 2],
                dilation: [1, 2],
            },
        ),
        (1, 1, Conv2dGeometry::new(2, 0)),
    ];
    for (kh, kw, geom) in geoms {
        // Small integers: every sum is exact, so the orders of summation cannot differ.
        let x = Array4::from_shape_fn((2, 3, 7, 6), |(a, b, c, d)| {
            ((a * 31 + b * 17 + c * 5 + d * 3) % 13) as f64 - 6.0
        });
        let cols = unfold(x.view(), kh, kw, &geom).unwrap();
        let g = Array2::from_shape_fn(cols.raw_dim(), |(i, j)| ((i * 7 + j * 3) % 11) as f64 - 5.0);
        let (cols_h, x_h) = harness::conv(&x, &g, kh, kw, &geom);
        assert_eq!(cols_h, cols, "unfold {kh}×{kw} {geom:?}");
        assert_eq!(
            x_h,
            fold(g.view(), [2, 3, 7, 6], kh, kw, &geom).unwrap(),
            "fold {kh}×{kw} {geom:?}"
        );
    }
}
