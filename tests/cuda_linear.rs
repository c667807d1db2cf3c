//! CUDA ≡ CPU reference: the linear and conv NRPM on the GPU against `reference` (f64 oracle),
//! forward and every gradient, f32 with the tolerance of tests/kernel_math/cases.rs
//! (`check_f32`, justified there) and f64; and GPU ≡ host harness bit for bit (the kernels'
//! arithmetic compiled for the CPU, tests/kernel_math/harness.cpp), which separates a wrong
//! thread mapping or race from a wrong formula.
//!
//! Every test prints why and returns when no CUDA device can be used (no `cuda` feature, no
//! libcuda, no libnvrtc, no GPU).
#![cfg(feature = "cuda")]

#[path = "kernel_math/cases.rs"]
mod cases;
#[path = "kernel_math/harness.rs"]
mod harness;

use std::sync::Arc;

use cases::{check_f32, check_f64, f64s, linear_case, make_case, norm, Case};
use ndarray::{Array1, Array2, Array4};
use nrpm::conv::{self, Conv2dGeometry};
use nrpm::cuda::CudaNrpm;
use nrpm::{Device, Error, Exec, NrpmConfig};
use proptest::prelude::*;

const CUDA: Exec = Exec::Cuda(0);

/// The device, or `None` after printing (once per test) why the test is skipped.
fn device_or_skip(test: &str) -> Option<Arc<CudaNrpm>> {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    match CudaNrpm::shared(0) {
        Ok(dev) => Some(dev),
        Err(e) => {
            let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
            if !said.iter().any(|t| t == test) {
                nrpm::testing::skip("gpu", test, &e.to_string());
                said.push(test.to_string());
            }
            None
        }
    }
}

fn bits32(a: &[f32]) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

fn bits64(a: &[f64]) -> Vec<u64> {
    a.iter().map(|v| v.to_bits()).collect()
}

/// GPU against the reference (f32 and f64), and against the host harness bit for bit.
fn check_case(dev: &CudaNrpm, case: &Case) -> Result<(), String> {
    let cfg = &case.cfg;
    let e = |e: Error| e.to_string();
    let bias = case.bias.as_ref().map(|b| b.view());
    let (x, w, gy) = (case.x.view(), case.w.view(), case.gy.view());
    let (y, it) = nrpm::forward_with(Exec::Reference, x, w, bias, cfg).map_err(e)?;
    let g = nrpm::backward_with(Exec::Reference, x, w, &it, gy).map_err(e)?;

    // f32: GPU, the two CPU f32 paths (the conditioning measure), and the harness.
    let (x32, w32, b32, gy32) = (case.x32(), case.w32(), case.bias32(), case.gy32());
    let b32v = b32.as_ref().map(|b| b.view());
    let before = dev.launches();
    let (yc, itc) = nrpm::forward_with(CUDA, x32.view(), w32.view(), b32v, cfg).map_err(e)?;
    let gc = nrpm::backward_with(CUDA, x32.view(), w32.view(), &itc, gy32.view()).map_err(e)?;
    if dev.launches() < before + 4 {
        return Err("the CUDA path did not launch its kernels".into());
    }
    let (yf, itf) = nrpm::forward(x32.view(), w32.view(), b32v, cfg).map_err(e)?;
    let gf = nrpm::backward(x32.view(), w32.view(), &itf, gy32.view()).map_err(e)?;
    let (yr, itr) =
        nrpm::forward_with(Exec::Reference, x32.view(), w32.view(), b32v, cfg).map_err(e)?;
    let gr = nrpm::backward_with(Exec::Reference, x32.view(), w32.view(), &itr, gy32.view())
        .map_err(e)?;
    let lam = |v: f32| vec![v as f64];
    // (what, GPU, fused f32, reference f32, reference f64)
    type Check = (&'static str, Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);
    let checks: [Check; 6] = [
        (
            "y",
            f64s(&yc),
            f64s(&yf),
            f64s(&yr),
            y.iter().copied().collect(),
        ),
        (
            "iterates",
            f64s(itc.z()),
            f64s(itf.z()),
            f64s(itr.z()),
            it.z().iter().copied().collect(),
        ),
        (
            "grad x",
            f64s(&gc.x),
            f64s(&gf.x),
            f64s(&gr.x),
            g.x.iter().copied().collect(),
        ),
        (
            "grad weight",
            f64s(&gc.weight),
            f64s(&gf.weight),
            f64s(&gr.weight),
            g.weight.iter().copied().collect(),
        ),
        (
            "grad bias",
            f64s(&gc.bias),
            f64s(&gf.bias),
            f64s(&gr.bias),
            g.bias.to_vec(),
        ),
        (
            "grad lambda",
            lam(gc.lambda),
            lam(gf.lambda),
            lam(gr.lambda),
            vec![g.lambda],
        ),
    ];
    for (what, got, fused, refr, want) in &checks {
        check_f32(&format!("f32 {what}"), got, &[fused, refr], want)?;
    }
    if harness::harness().is_ok() {
        let h = harness::linear(&x32, &w32, b32.as_ref(), &gy32, cfg);
        for (what, got, want) in [
            ("y", yc.as_slice().unwrap(), h.y.as_slice().unwrap()),
            (
                "iterates",
                itc.z().as_slice().unwrap(),
                h.z.as_slice().unwrap(),
            ),
            ("grad x", gc.x.as_slice().unwrap(), h.gx.as_slice().unwrap()),
            (
                "grad weight",
                gc.weight.as_slice().unwrap(),
                h.gw.as_slice().unwrap(),
            ),
        ] {
            if bits32(got) != bits32(want) {
                let diff = got.iter().zip(want).filter(|(a, b)| a != b).count();
                return Err(format!(
                    "f32 {what}: {diff} of {} values differ from the host harness (same \
                     arithmetic, same order: expected the same bits)",
                    got.len()
                ));
            }
        }
    }

    // f64: GPU against the reference, and the harness's f64 bits.
    let (yc, itc) = nrpm::forward_with(CUDA, x, w, bias, cfg).map_err(e)?;
    let gc = nrpm::backward_with(CUDA, x, w, &itc, gy).map_err(e)?;
    let (yf, itf) = nrpm::forward(x, w, bias, cfg).map_err(e)?;
    let gf = nrpm::backward(x, w, &itf, gy).map_err(e)?;
    for (what, got, cpu, want) in [
        ("y", &yc, &yf, &y),
        ("grad x", &gc.x, &gf.x, &g.x),
        ("grad weight", &gc.weight, &gf.weight, &g.weight),
    ] {
        check_f64(
            &format!("f64 {what}"),
            got.as_slice().unwrap(),
            cpu.as_slice().unwrap(),
            want.as_slice().unwrap(),
        )?;
    }
    if harness::harness().is_ok() {
        let h = harness::linear(&case.x, &case.w, case.bias.as_ref(), &case.gy, cfg);
        if bits64(yc.as_slice().unwrap()) != bits64(h.y.as_slice().unwrap())
            || bits64(gc.x.as_slice().unwrap()) != bits64(h.gx.as_slice().unwrap())
            || bits64(gc.weight.as_slice().unwrap()) != bits64(h.gw.as_slice().unwrap())
        {
            return Err("f64: the GPU differs from the host harness".into());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random shapes (B, O ≤ 40: several blocks, ragged tiles), D = 1 … 300 (ragged chunks),
    /// groups, K = 0…4, every norm, ε, λ, bias; zero rows, equal terms, outliers.
    #[test]
    fn cuda_matches_reference(case in linear_case(40, 40)) {
        if let Some(dev) = device_or_skip("cuda_matches_reference") {
            let r = check_case(&dev, &case);
            prop_assert!(r.is_ok(), "{}", r.unwrap_err());
        }
    }
}

#[test]
fn cuda_large_rows_every_norm() {
    let Some(dev) = device_or_skip("cuda_large_rows_every_norm") else {
        return;
    };
    // D = 4608 (a 3×3 convolution over 512 channels), 144 chunks of 32.
    for ni in 0..5 {
        let cfg = NrpmConfig::builder()
            .norm(norm(ni, 4.0, 3.0))
            .k(3)
            .eps(1e-3)
            .lambda(0.25)
            .build()
            .unwrap();
        check_case(&dev, &make_case(24, 4608, 20, cfg, ni % 2 == 1, ni as u64)).unwrap();
    }
}

#[test]
fn cuda_edge_cases() {
    let Some(dev) = device_or_skip("cuda_edge_cases") else {
        return;
    };
    let l1 = |k, lambda| {
        NrpmConfig::builder()
            .norm(nrpm::Norm::L1)
            .k(k)
            .eps(1e-3)
            .lambda(lambda)
            .build()
            .unwrap()
    };
    check_case(&dev, &make_case(3, 5, 2, l1(0, 0.0), true, 1)).unwrap(); // K = 0
    check_case(&dev, &make_case(33, 1, 17, l1(4, 0.0), false, 2)).unwrap(); // D = 1
    let zeros = Case {
        x: Array2::zeros((5, 37)),
        w: Array2::zeros((3, 37)),
        bias: None,
        gy: Array2::ones((5, 3)),
        cfg: l1(3, 0.3),
    };
    check_case(&dev, &zeros).unwrap(); // all-zero rows: y = 0, finite gradients
    let (y, _) =
        nrpm::forward_with(CUDA, zeros.x.view(), zeros.w.view(), None, &zeros.cfg).unwrap();
    assert!(y.iter().all(|&v| v == 0.0));
    // B = 0: empty outputs, no launch.
    let empty = Array2::<f32>::zeros((0, 4));
    let (y, it) = nrpm::forward_with(
        CUDA,
        empty.view(),
        Array2::ones((2, 4)).view(),
        None,
        &zeros.cfg,
    )
    .unwrap();
    assert_eq!((y.dim(), it.z().dim()), ((0, 2), (0, 2, 1, 4)));
}

/// The tile changes the thread mapping, not the arithmetic: the same bits for t1, t2, t4.
#[test]
fn cuda_tiles_give_the_same_bits() {
    let Some(dev) = device_or_skip("cuda_tiles_give_the_same_bits") else {
        return;
    };
    let cfg = NrpmConfig::builder()
        .norm(nrpm::Norm::Huber { delta: 0.5 })
        .k(3)
        .eps(1e-2)
        .lambda(0.1)
        .build()
        .unwrap();
    let case = make_case(150, 200, 130, cfg, true, 9);
    let (x, w, b, gy) = (case.x32(), case.w32(), case.bias32().unwrap(), case.gy32());
    let mut outs = Vec::new();
    for tile in [1, 2, 4] {
        dev.set_tile(Some(tile)).unwrap();
        let (y, it) = nrpm::forward_with(CUDA, x.view(), w.view(), Some(b.view()), &cfg).unwrap();
        let g = nrpm::backward_with(CUDA, x.view(), w.view(), &it, gy.view()).unwrap();
        outs.push((
            bits32(y.as_slice().unwrap()),
            bits32(g.x.as_slice().unwrap()),
            bits32(g.weight.as_slice().unwrap()),
        ));
    }
    dev.set_tile(None).unwrap();
    assert!(outs[0] == outs[1] && outs[1] == outs[2], "tiles differ");
    check_case(&dev, &case).unwrap();
}

/// No atomics: the same inputs give the same bits on every run.
#[test]
fn cuda_is_deterministic() {
    let Some(_dev) = device_or_skip("cuda_is_deterministic") else {
        return;
    };
    let cfg = NrpmConfig::builder()
        .norm(nrpm::Norm::L1)
        .k(3)
        .eps(1e-3)
        .lambda(0.0)
        .build()
        .unwrap();
    let case = make_case(300, 512, 100, cfg, false, 11);
    let (x, w, gy) = (case.x32(), case.w32(), case.gy32());
    let run = || {
        let (y, it) = nrpm::forward_with(CUDA, x.view(), w.view(), None, &cfg).unwrap();
        let g = nrpm::backward_with(CUDA, x.view(), w.view(), &it, gy.view()).unwrap();
        (
            bits32(y.as_slice().unwrap()),
            bits32(g.x.as_slice().unwrap()),
            bits32(g.weight.as_slice().unwrap()),
        )
    };
    let first = run();
    for _ in 0..3 {
        assert!(run() == first, "two runs differ");
    }
}

/// Conv2d with the image unfolded and the gradient folded on the device.
#[test]
fn cuda_conv_matches_reference() {
    let Some(_dev) = device_or_skip("cuda_conv_matches_reference") else {
        return;
    };
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
    ];
    for (i, (kh, kw, geom)) in geoms.into_iter().enumerate() {
        let cfg = NrpmConfig::builder()
            .norm(norm(i + 1, 4.0, 3.0))
            .k(2)
            .eps(1e-2)
            .lambda(0.2)
            .build()
            .unwrap();
        let case = make_case(2 * 3 * 9 * 8, 1, 1, cfg, false, 20 + i as u64);
        let x = Array4::from_shape_vec((2, 3, 9, 8), case.x.iter().copied().collect()).unwrap();
        let w = Array4::from_shape_fn((4, 3, kh, kw), |(a, b, c, d)| {
            ((a * 7 + b * 5 + c * 3 + d) % 9) as f64 / 9.0 - 0.4
        });
        let bias = Array1::from_vec(vec![0.1, -0.2, 0.3, 0.0]);
        let (y, it) = conv::forward_with(
            Exec::Reference,
            x.view(),
            w.view(),
            Some(bias.view()),
            &geom,
            &cfg,
        )
        .unwrap();
        let gy = y.mapv(|v| (v * 3.0).sin());
        let g = conv::backward_with(Exec::Reference, x.view(), w.view(), &it, gy.view(), &geom)
            .unwrap();

        let (x32, w32, b32, gy32) = (
            x.mapv(|v| v as f32),
            w.mapv(|v| v as f32),
            bias.mapv(|v| v as f32),
            gy.mapv(|v| v as f32),
        );
        let run = |exec| {
            let (y, it) =
                conv::forward_with(exec, x32.view(), w32.view(), Some(b32.view()), &geom, &cfg)
                    .unwrap();
            let g =
                conv::backward_with(exec, x32.view(), w32.view(), &it, gy32.view(), &geom).unwrap();
            (y, g)
        };
        let (yc, gc) = run(CUDA);
        let (yf, gf) = run(Exec::Fused);
        let (yr, gr) = run(Exec::Reference);
        for (what, got, fused, refr, want) in [
            (
                "y",
                f64s(&yc),
                f64s(&yf),
                f64s(&yr),
                y.iter().copied().collect::<Vec<_>>(),
            ),
            (
                "grad x",
                f64s(&gc.x),
                f64s(&gf.x),
                f64s(&gr.x),
                g.x.iter().copied().collect(),
            ),
            (
                "grad weight",
                f64s(&gc.weight),
                f64s(&gf.weight),
                f64s(&gr.weight),
                g.weight.iter().copied().collect(),
            ),
            (
                "grad bias",
                f64s(&gc.bias),
                f64s(&gf.bias),
                f64s(&gr.bias),
                g.bias.to_vec(),
            ),
        ] {
            check_f32(
                &format!("conv {kh}×{kw} {what}"),
                &got,
                &[&fused, &refr],
                &want,
            )
            .unwrap();
        }
    }
}

/// A whole model with its NRPM layers on the GPU gives the CPU's logits.
#[test]
fn cuda_model_logits_match_cpu() {
    let Some(_dev) = device_or_skip("cuda_model_logits_match_cpu") else {
        return;
    };
    use nrpm::models::{LayerSelection, Model, ModelSpec};
    let mut model = Model::<f32>::new(ModelSpec::from_name("lenet", 1, 28).unwrap());
    model.init(3);
    let cfg = NrpmConfig::builder()
        .norm(nrpm::Norm::L1)
        .k(3)
        .eps(1e-3)
        .lambda(0.5)
        .build()
        .unwrap();
    model
        .reprogram(
            &LayerSelection::All,
            cfg.with_lambda(0.5).unwrap(),
            nrpm::nn::LambdaParam::Raw,
        )
        .unwrap();
    let x = Array4::from_shape_fn((8, 1, 28, 28), |(a, _, c, d)| {
        ((a * 13 + c * 7 + d * 3) % 17) as f32 / 17.0
    });
    let cpu = model.logits(x.view()).unwrap();
    let name = model.set_device(Device::Cuda(0)).unwrap();
    let gpu = model.logits(x.view()).unwrap();
    let err = cases::rel_err(&f64s(&gpu), &f64s(&cpu));
    assert!(err < 1e-4, "{name}: logits differ by {err:.3e}");
    assert_eq!(
        model.set_exec(Exec::Fused),
        5,
        "LeNet has 5 Linear/Conv2d layers"
    );
}

/// Errors, not panics: a missing device, and bad inputs caught before any launch.
#[test]
fn cuda_errors_are_values() {
    match Device::Cuda(99).open() {
        Err(Error::NoCuda(msg)) => assert!(!msg.contains('\n'), "{msg}"),
        other => panic!("expected NoCuda for device 99, got {other:?}"),
    }
    let Some(_dev) = device_or_skip("cuda_errors_are_values") else {
        return;
    };
    let cfg = NrpmConfig::builder()
        .norm(nrpm::Norm::L1)
        .k(3)
        .eps(1e-3)
        .lambda(0.0)
        .build()
        .unwrap();
    let mut x = Array2::<f32>::ones((2, 3));
    x[[1, 2]] = f32::NAN;
    let r = nrpm::forward_with(CUDA, x.view(), Array2::ones((2, 3)).view(), None, &cfg);
    assert!(matches!(r, Err(Error::NonFinite { .. })), "{r:?}");
}
