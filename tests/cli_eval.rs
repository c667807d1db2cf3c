//! `nrpm eval` end to end: the table and the JSON report on the shipped MNIST subset, and one
//! `error: …` line with a non-zero exit for bad input (never a panic).

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn nrpm_eval(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nrpm"))
        .arg("eval")
        .args(args)
        .output()
        .expect("the nrpm binary runs")
}

/// A fresh temporary folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nrpm-cli-eval-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `nrpm eval ARGS --json F`, checks success, returns stdout and the parsed JSON.
fn eval_json(name: &str, args: &[&str]) -> (String, Value) {
    let dir = temp_dir(name);
    let json = dir.join("out.json");
    let mut all = args.to_vec();
    all.extend(["--json", json.to_str().unwrap()]);
    let out = nrpm_eval(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    let value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_dir_all(dir).ok();
    (String::from_utf8(out.stdout).unwrap(), value)
}

#[test]
fn eval_prints_the_table_and_writes_every_setting_and_figure() {
    let (stdout, report) = eval_json(
        "ok",
        &[
            "--model",
            "mlp2",
            "--norm",
            "l1",
            "--k",
            "2",
            "--lambda",
            "0.6,0.8",
            "--data",
            "mnist-subset",
            "--n",
            "40",
            "--attack",
            "pgd-linf",
            "--eps",
            "0,0.1,0.3",
            "--steps",
            "3",
            "--seed",
            "5",
            "--batch-size",
            "16",
        ],
    );
    assert!(stdout.contains("clean accuracy:"), "{stdout}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(['0']))
        .collect();
    assert_eq!(rows.len(), 3, "one row per budget:\n{stdout}");
    assert_eq!(report["model"]["name"], "mlp2");
    assert_eq!(report["model"]["flags"]["norm"], "l1");
    assert_eq!(report["model"]["flags"]["lambda"], "0.6,0.8");
    let layers = report["model"]["reprogrammed"].as_array().unwrap();
    let lambdas: Vec<f64> = layers
        .iter()
        .map(|l| l["lambda"].as_f64().unwrap())
        .collect();
    assert!(
        lambdas.len() == 2 && (lambdas[0] - 0.6).abs() < 1e-6 && (lambdas[1] - 0.8).abs() < 1e-6
    );
    for l in layers {
        assert_eq!(l["norm"]["kind"], "l1");
        assert_eq!(l["k"], 2);
        assert_eq!(l["eps_irls"], 1e-3);
        assert_eq!(l["groups"], 1);
        assert_eq!(l["lambda_param"], "raw");
    }
    assert_eq!(report["data"]["record"]["n"], 40);
    assert_eq!(
        report["data"]["record"]["sha256"].as_str().unwrap().len(),
        64
    );
    assert_eq!(report["attack"]["name"], "pgd-linf");
    assert_eq!(
        report["attack"]["budgets"],
        serde_json::json!([0.0, 0.1, 0.3])
    );
    assert_eq!(report["options"]["seed"], 5);
    assert!(report["machine"]["available_parallelism"].as_u64().unwrap() >= 1);
    assert!(report["timings"]["total_seconds"].as_f64().unwrap() > 0.0);
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let clean = report["clean"]["accuracy"].as_f64().unwrap();
    for r in results {
        assert_eq!(r["n"], 40);
        assert!(r["robust_accuracy"].as_f64().unwrap() <= clean);
        assert!(r["seconds"].as_f64().unwrap() >= 0.0);
    }
    assert_eq!(
        results[0]["robust_accuracy"].as_f64().unwrap(),
        clean,
        "ε = 0"
    );
}

/// A folder holding one valid CIFAR-10 test record (3×32×32), for a model that needs 1×28×28.
fn cifar_folder() -> PathBuf {
    let dir = temp_dir("cifar");
    let mut record = vec![3u8];
    record.extend(std::iter::repeat_n(128u8, 3 * 32 * 32));
    std::fs::write(dir.join("test_batch.bin"), record).unwrap();
    dir
}

/// An MNIST-like folder whose test images file has a bad magic number.
fn corrupt_idx_folder() -> PathBuf {
    let dir = temp_dir("idx");
    let bad = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bad/idx3-bad-magic");
    std::fs::copy(bad, dir.join("t10k-images-idx3-ubyte")).unwrap();
    let labels = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/mnist-subset/t10k-labels-idx1-ubyte.gz"
    );
    std::fs::copy(labels, dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    dir
}

#[test]
fn bad_input_gives_one_error_line_and_a_failure_status() {
    let (cifar, idx) = (cifar_folder(), corrupt_idx_folder());
    let no_keys = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/authors_robust_sum.safetensors"
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--model", "lenet", "--data", cifar.to_str().unwrap()],
            "input",
        ),
        (
            vec!["--model", "mlp1", "--weights", no_keys, "--n", "5"],
            "fc1",
        ),
        (vec!["--data", idx.to_str().unwrap()], "t10k-images"),
        (vec!["--attack", "cw", "--n", "5"], "unknown attack"),
        (
            vec!["--gradients-from", "other", "--n", "5"],
            "unknown gradient source",
        ),
        (vec!["--eps", "0,abc", "--n", "5"], "eps"),
        (vec!["--attack", "l0", "--eps", "1.5", "--n", "5"], "l0"),
        (
            vec!["--attack", "pgd-l2", "--steps", "0", "--n", "5"],
            "steps",
        ),
        (vec!["--n", "0"], "n"),
        (vec!["--n", "1001"], "n"),
        (
            vec!["--model", "mlp3", "--weights", "/no/such/file.safetensors"],
            "/no/such/file",
        ),
        (vec!["--data", "/no/such/folder"], "/no/such/folder"),
        (vec!["--norm", "l3", "--n", "5"], "l3"),
    ];
    for (args, mention) in cases {
        let out = nrpm_eval(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].starts_with("error: "), "{args:?}: {stderr}");
        assert!(
            lines[0].contains(mention),
            "{args:?} should mention '{mention}': {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
    }
    std::fs::remove_dir_all(cifar).ok();
    std::fs::remove_dir_all(idx).ok();
}
