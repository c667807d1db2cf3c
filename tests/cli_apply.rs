//! `nrpm apply` against golden values from the authors' code, and its errors.
//!
//! tests/fixtures/authors_robust_sum.safetensors was written by
//! tests/fixtures/authors_robust_sum.py, a line-by-line NumPy (float64) transcription of the
//! authors' `RobustSum` (models/conv2d.py at commit 2f247bf). The CLI computes f64 inputs in
//! f64; the two computations differ only in summation order, so they agree to ~1e-13 of the
//! terms' scale Σ|t| (a tolerance of 1e-10 of it leaves room for the IRLS conditioning).

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::{Array2, Ix2};
use nrpm::tensor_file::TensorFile;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/authors_robust_sum.safetensors"
);

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nrpm-cli-apply-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn nrpm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nrpm"))
        .args(args)
        .output()
        .unwrap()
}

fn matrix(f: &TensorFile, key: &str) -> Array2<f64> {
    f.array::<f64>(key, None)
        .unwrap()
        .into_dimensionality::<Ix2>()
        .unwrap()
}

fn write_input(path: &Path, tensors: &[(&str, Array2<f64>)]) {
    let mut f = TensorFile::new(path);
    for (k, v) in tensors {
        f.insert(*k, v.clone().into_dyn());
    }
    f.write(path).unwrap();
}

/// `nrpm apply` reproduces the authors' RobustSum for every norm, K, ε, λ and group count.
#[test]
fn apply_matches_authors_robust_sum() {
    let golden = TensorFile::read(FIXTURE).unwrap();
    let cases: Vec<&String> = golden
        .metadata
        .keys()
        .filter(|k| k.starts_with("case"))
        .collect();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let cfg: serde_json::Value = serde_json::from_str(&golden.metadata[case]).unwrap();
        let (x, w) = (
            matrix(&golden, &format!("{case}.x")),
            matrix(&golden, &format!("{case}.weight")),
        );
        let want = matrix(&golden, &format!("{case}.z"));
        let (input, output) = (tmp(&format!("{case}.in")), tmp(&format!("{case}.out")));
        write_input(&input, &[("x", x.clone()), ("weight", w.clone())]);
        let s = |k: &str| cfg[k].to_string().trim_matches('"').to_string();
        let norm = s("norm");
        let mut args = vec![
            "apply".to_string(),
            "--input".into(),
            input.to_str().unwrap().into(),
            "--output".into(),
            output.to_str().unwrap().into(),
            "--norm".into(),
            norm.clone(),
            "--k".into(),
            s("k"),
            "--eps-irls".into(),
            s("eps"),
            "--lambda".into(),
            s("lambda"),
            "--group".into(),
            s("group"),
        ];
        // γ and δ only for the norms that have them (others refuse them as no-effect flags).
        if ["mcp", "hm"].contains(&norm.as_str()) {
            args.extend(["--gamma".into(), s("gamma")]);
        }
        if ["huber", "hm"].contains(&norm.as_str()) {
            args.extend(["--delta".into(), s("delta")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = nrpm(&args);
        assert!(
            out.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let z = matrix(&TensorFile::read(&output).unwrap(), "z");
        for b in 0..x.nrows() {
            for o in 0..w.nrows() {
                let scale: f64 = (0..x.ncols()).map(|d| (x[[b, d]] * w[[o, d]]).abs()).sum();
                let err = (z[[b, o]] - want[[b, o]]).abs();
                assert!(
                    err <= 1e-10 * scale,
                    "{case} ({cfg}) [{b},{o}]: {} vs authors' {}",
                    z[[b, o]],
                    want[[b, o]]
                );
            }
        }
    }
}

/// With `grad_output`, apply writes every gradient, and they match central differences of z.
#[test]
fn apply_writes_gradients_that_match_finite_differences() {
    let x = Array2::from_shape_fn((2, 5), |(i, j)| ((i * 5 + j) as f64 * 0.37).sin());
    let w = Array2::from_shape_fn((3, 5), |(i, j)| ((i * 7 + j) as f64 * 0.23).cos());
    let b = ndarray::arr1(&[0.1, -0.2, 0.3]).insert_axis(ndarray::Axis(0));
    let gy = Array2::from_shape_fn((2, 3), |(i, j)| 1.0 + i as f64 - 0.5 * j as f64);
    let (input, output) = (tmp("grad.in"), tmp("grad.out"));
    let mut f = TensorFile::new(&input);
    f.insert("x", x.clone().into_dyn());
    f.insert("weight", w.clone().into_dyn());
    f.insert("bias", b.row(0).to_owned().into_dyn());
    f.insert("grad_output", gy.clone().into_dyn());
    f.write(&input).unwrap();
    let args = [
        "apply",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--norm",
        "l1",
        "--k",
        "3",
        "--eps-irls",
        "0.05",
        "--lambda",
        "0.3",
    ];
    let out = nrpm(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = TensorFile::read(&output).unwrap();
    for key in ["z", "grad_x", "grad_weight", "grad_bias", "grad_lambda"] {
        assert!(res.contains(key), "missing {key}");
    }
    let cfg = nrpm::NrpmConfig::builder()
        .norm(nrpm::Norm::L1)
        .k(3)
        .eps(0.05)
        .lambda(0.3)
        .build()
        .unwrap();
    let loss = |x: &Array2<f64>| {
        let (z, _) = nrpm::forward(x.view(), w.view(), Some(b.row(0)), &cfg).unwrap();
        (&z * &gy).sum()
    };
    let gx = matrix(&res, "grad_x");
    for i in 0..2 {
        for j in 0..5 {
            let h = 1e-6;
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[[i, j]] += h;
            xm[[i, j]] -= h;
            let fd = (loss(&xp) - loss(&xm)) / (2.0 * h);
            assert!(
                (gx[[i, j]] - fd).abs() <= 1e-6 * (1.0 + fd.abs()),
                "[{i},{j}] {} vs {fd}",
                gx[[i, j]]
            );
        }
    }
}

/// Bad inputs: one `error:` line, non-zero exit, no panic.
#[test]
fn apply_rejects_bad_input_with_one_line() {
    let good = tmp("good.in");
    write_input(
        &good,
        &[
            ("x", Array2::ones((2, 3))),
            ("weight", Array2::ones((4, 3))),
        ],
    );
    let mis = tmp("mis.in");
    write_input(
        &mis,
        &[
            ("x", Array2::ones((2, 3))),
            ("weight", Array2::ones((4, 5))),
        ],
    );
    let nan = tmp("nan.in");
    write_input(
        &nan,
        &[
            ("x", Array2::from_elem((2, 3), f64::NAN)),
            ("weight", Array2::ones((4, 3))),
        ],
    );
    let nox = tmp("nox.in");
    write_input(&nox, &[("weight", Array2::ones((4, 3)))]);
    let garbage = tmp("garbage.in");
    std::fs::write(&garbage, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    let out = tmp("bad.out");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--input", mis.to_str().unwrap()],
            "weight must have shape",
        ),
        (vec!["--input", nan.to_str().unwrap()], "NaN or ±Inf"),
        (vec!["--input", nox.to_str().unwrap()], "missing tensor 'x'"),
        (
            vec!["--input", garbage.to_str().unwrap()],
            "not a valid safetensors",
        ),
        (
            vec!["--input", "/nonexistent/in.safetensors"],
            "No such file",
        ),
        (
            vec!["--input", good.to_str().unwrap(), "--norm", "l3"],
            "unknown norm",
        ),
        (
            vec!["--input", good.to_str().unwrap(), "--eps-irls", "0"],
            "invalid eps",
        ),
        (
            vec!["--input", good.to_str().unwrap(), "--group", "2"],
            "must divide",
        ),
    ];
    for (extra, want) in cases {
        let mut args = vec!["apply", "--output", o];
        args.extend(extra.iter().copied());
        let res = nrpm(&args);
        let err = String::from_utf8_lossy(&res.stderr);
        assert!(!res.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
