//! `nrpm analyze` end to end: the JSON report on a synthetic input, operator norms of the
//! shipped checkpoints (skipped with a printed reason when ../shared/models is absent), and
//! one-line errors for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn nrpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nrpm"))
        .arg("analyze")
        .args(args)
        .output()
        .expect("the nrpm binary runs")
}

/// A fresh temporary folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nrpm-cli-analyze-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `nrpm analyze ARGS --json F`, checks success, and returns the parsed JSON.
fn analyze_json(name: &str, args: &[&str]) -> Value {
    let dir = temp_dir(name);
    let json = dir.join("out.json");
    let mut all = args.to_vec();
    all.extend(["--json", json.to_str().unwrap()]);
    let out = nrpm(&all);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_dir_all(dir).ok();
    value
}

/// A checkpoint in ../shared/models, or `None` (with the reason printed) when it is absent.
fn shared_model(file: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/models")
        .join(file);
    if path.exists() {
        Some(path)
    } else {
        nrpm::testing::skip("shared", file, &format!("{} not found", path.display()));
        None
    }
}

fn estimator<'a>(report: &'a Value, label_prefix: &str) -> &'a Value {
    report["estimators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["label"].as_str().unwrap().starts_with(label_prefix))
        .unwrap_or_else(|| panic!("no estimator {label_prefix}"))
}

#[test]
fn analyze_reports_breakdown_points_and_influence() {
    let report = analyze_json(
        "ok",
        &[
            "--d",
            "16",
            "--k",
            "3",
            "--eps-irls",
            "1e-3",
            "--grid-min",
            "-20",
            "--grid-points",
            "21",
        ],
    );
    assert_eq!(report["command"], "analyze");
    let settings = &report["settings"];
    assert_eq!(settings["d"], 16);
    assert_eq!(settings["norm"], "l1");
    assert_eq!(settings["k"], 3);
    assert_eq!(settings["grid_min"], -20.0);
    assert_eq!(report["terms"].as_array().unwrap().len(), 16);
    // (label, expected m*): LPM and finite-K NRPM break at 1/D, exact LAD at ⌊(D+1)/2⌋/D.
    for (label, m) in [("lpm", 1), ("nrpm(l1, K=3", 1), ("lad", 8)] {
        let e = estimator(&report, label);
        assert_eq!(e["breakdown"]["m"], m, "{label}");
        assert_eq!(e["breakdown"]["fraction"], m as f64 / 16.0, "{label}");
        assert_eq!(e["breakdown"]["rows"].as_array().unwrap().len(), 16);
        assert_eq!(e["influence"].as_array().unwrap().len(), 21);
    }
    // LPM's SC is the line v − t_0; LAD's is bounded well below it at the grid's ends.
    let t0 = report["terms"][0].as_f64().unwrap();
    let lpm_end = &estimator(&report, "lpm")["influence"][20];
    assert!((lpm_end["sc"].as_f64().unwrap() - (50.0 - t0)).abs() < 1e-9);
    let lad_gross = estimator(&report, "lad")["gross_error_sensitivity"]
        .as_f64()
        .unwrap();
    assert!(lad_gross < 0.5 * (50.0 - t0), "{lad_gross}");
    // The objective trace has K + 1 entries and never increases.
    let trace: Vec<f64> = report["objective_trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["objective"].as_f64().unwrap())
        .collect();
    assert_eq!(trace.len(), 4);
    assert!(trace.windows(2).all(|w| w[1] <= w[0]), "{trace:?}");
    assert!(report["layers"].is_null());
}

#[test]
fn analyze_is_deterministic_for_a_seed() {
    let args = ["--d", "8", "--seed", "5", "--grid-points", "5"];
    let (a, b) = (analyze_json("seed-a", &args), analyze_json("seed-b", &args));
    assert_eq!(a["terms"], b["terms"]);
    assert_eq!(a["estimators"], b["estimators"]);
    let c = analyze_json("seed-c", &["--d", "8", "--seed", "6", "--grid-points", "5"]);
    assert_ne!(a["terms"], c["terms"]);
}

#[test]
fn analyze_prints_a_table() {
    let out = nrpm(&["--d", "12", "--grid-points", "3"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["estimator", "lpm", "nrpm(l1, K=3", "lad", "IRLS objective"] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
}

#[test]
fn analyze_reports_operator_norms_of_the_mlp() {
    let Some(path) = shared_model("mlp3_mnist.safetensors") else {
        return;
    };
    let report = analyze_json("mlp", &["--d", "8", "--weights", path.to_str().unwrap()]);
    let layers = &report["layers"];
    let method = if cfg!(feature = "linalg") {
        "svd"
    } else {
        "power_iteration"
    };
    assert_eq!(layers["spectral_method"], method);
    let entries = layers["entries"].as_array().unwrap();
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fc1.weight", "fc2.weight", "fc3.weight"]);
    assert_eq!(entries[0]["matrix"], serde_json::json!([256, 784]));
    // Check against the weights themselves: ‖W‖∞ exactly; max row ℓ2 ≤ ‖W‖₂ ≤ Frobenius.
    let file = nrpm::tensor_file::TensorFile::read(&path).unwrap();
    for e in entries {
        let w = file
            .array::<f64>(e["name"].as_str().unwrap(), None)
            .unwrap();
        let w = w.into_dimensionality::<ndarray::Ix2>().unwrap();
        let inf = w
            .rows()
            .into_iter()
            .map(|r| r.iter().map(|v| v.abs()).sum::<f64>())
            .fold(0.0, f64::max);
        let row2 = w
            .rows()
            .into_iter()
            .map(|r| r.dot(&r).sqrt())
            .fold(0.0, f64::max);
        let frob = w.iter().map(|v| v * v).sum::<f64>().sqrt();
        let two = e["spectral"]["value"].as_f64().unwrap();
        // With `linalg` the report holds LAPACK's SVD: the power iteration must agree with it.
        let power = nrpm::robust::spectral_norm_power(w.view(), 1e-12, 100_000).unwrap();
        assert!(
            (power.value - two).abs() <= 1e-8 * two,
            "{}: {power:?} vs {two}",
            e["name"]
        );
        assert!((e["inf"].as_f64().unwrap() - inf).abs() <= 1e-9 * inf);
        assert!(
            row2 <= two * (1.0 + 1e-9) && two <= frob,
            "{}: {row2} ≤ {two} ≤ {frob}",
            e["name"]
        );
    }
}

#[test]
fn analyze_unfolds_lenet_conv_weights() {
    let Some(path) = shared_model("lenet_mnist.safetensors") else {
        return;
    };
    let report = analyze_json("lenet", &["--d", "8", "--weights", path.to_str().unwrap()]);
    let entries = report["layers"]["entries"].as_array().unwrap();
    let conv1 = entries
        .iter()
        .find(|e| e["name"] == "conv1.weight")
        .unwrap();
    assert_eq!(conv1["shape"], serde_json::json!([10, 1, 5, 5]));
    assert_eq!(conv1["matrix"], serde_json::json!([10, 25]));
    let conv2 = entries
        .iter()
        .find(|e| e["name"] == "conv2.weight")
        .unwrap();
    assert_eq!(conv2["matrix"], serde_json::json!([20, 250]));
    assert_eq!(entries.len(), 4); // conv1, conv2, fc1, fc2; biases skipped
}

/// Runs a failing command line and checks: non-zero exit, one line on stderr naming
/// `needle`, no panic.
fn assert_one_line_error(args: &[&str], needle: &str) {
    let out = nrpm(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
}

#[test]
fn analyze_rejects_bad_input_with_one_line() {
    assert_one_line_error(&["--norm", "l3"], "unknown norm 'l3'");
    assert_one_line_error(
        &["--weights", "/nonexistent/w.safetensors"],
        "/nonexistent/w.safetensors",
    );
    assert_one_line_error(&["--d", "0"], "invalid d = 0");
    assert_one_line_error(&["--d", "20000"], "invalid d = 20000");
    assert_one_line_error(&["--grid-points", "99999999999"], "grid points");
    assert_one_line_error(&["--d", "4", "--outlier-index", "4"], "outlier index");
    assert_one_line_error(&["--grid-points", "0"], "grid points");
    assert_one_line_error(&["--grid-min", "nan"], "grid");
    assert_one_line_error(&["--d", "10", "--group", "3"], "groups");
    assert_one_line_error(&["--escalation-steps", "1"], "escalation");
    assert_one_line_error(&["--eps-irls", "0"], "eps");
}

#[test]
fn analyze_rejects_a_file_without_weights() {
    let dir = temp_dir("noweights");
    let path = dir.join("bias.safetensors");
    let mut f = nrpm::tensor_file::TensorFile::new(&path);
    f.insert(
        "fc.bias",
        ndarray::ArrayD::from_elem(ndarray::IxDyn(&[3]), 1.0f32),
    );
    f.write(&path).unwrap();
    assert_one_line_error(&["--weights", path.to_str().unwrap()], "no 2-D");
    std::fs::write(&path, b"garbage").unwrap();
    assert_one_line_error(
        &["--weights", path.to_str().unwrap()],
        "not a valid safetensors",
    );
    std::fs::remove_dir_all(dir).ok();
}
