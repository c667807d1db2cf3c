//! `nrpm reproduce`: the hand-copied paper numbers against the digest, small end-to-end runs
//! (MLP Paradigm 1, a shortened Paradigm 2 with checkpoint reuse, CIFAR-10 on a generated
//! binary batch) that write reports with paper numbers and differences, and one `error: …`
//! line with a non-zero exit for bad input. Runs that need the authors' checkpoints are
//! skipped, with the reason printed, when ../shared/models is absent.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The markers of the hand-written block of the Markdown report (src/reproduce/render.rs).
const ANALYSIS_START: &str = "<!-- analysis:start (hand-written; kept when regenerated) -->";
const ANALYSIS_END: &str = "<!-- analysis:end -->";
use serde_json::Value;

fn nrpm_reproduce(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nrpm"))
        .arg("reproduce")
        .args(args)
        .output()
        .expect("the nrpm binary runs")
}

/// A fresh temporary folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nrpm-reproduce-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A file beside the repository (`../shared/…`), or `None` with the reason printed.
fn shared(path: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(path);
    if p.exists() {
        Some(p)
    } else {
        nrpm::testing::skip("shared", "reproduce", &format!("{} is absent", p.display()));
        None
    }
}

/// Runs `nrpm reproduce ARGS --out DIR`, checks success, returns the parsed report.json.
fn run_ok(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--out", dir.to_str().unwrap()]);
    let out = nrpm_reproduce(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

/// The experiment record called `name`.
fn experiment<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no experiment {name}"))
}

#[test]
fn mlp_p1_writes_reports_with_paper_numbers_differences_and_kept_analysis() {
    if shared("models/mlp3_mnist.safetensors").is_none() {
        return;
    }
    let dir = temp_dir("p1");
    let md = dir.join("REPRODUCTION.md");
    let md_args = ["--data", "mnist-subset", "--markdown", md.to_str().unwrap()];
    let mut args = vec![
        "--experiments",
        "mlp-p1,cifar",
        "--n",
        "20",
        "--pgd-steps",
        "1",
        "--autoattack-n",
        "3",
    ];
    args.extend(md_args);
    let report = run_ok(&dir, &args);
    let p1 = experiment(&report, "mlp-p1");
    assert_eq!(p1["status"], "ran");
    assert!(p1["seconds"].as_f64().unwrap() > 0.0);
    let fgsm = &p1["tables"][0];
    let vanilla = &fgsm["rows"][0];
    assert_eq!(fgsm["rows"].as_array().unwrap().len(), 11); // LPM, λ = 0.9 … 0.0
    assert_eq!(vanilla["cells"][1]["paper"], 31.8);
    let cell = &vanilla["cells"][1];
    let (pct, paper) = (cell["accuracy"]["percent"].as_f64().unwrap(), 31.8);
    assert!((cell["difference"].as_f64().unwrap() - (pct - paper)).abs() < 1e-9);
    assert_eq!(cell["accuracy"]["n"], 20);
    assert!(
        cell["accuracy"]["lo"].as_f64().unwrap() <= pct
            && pct <= cell["accuracy"]["hi"].as_f64().unwrap()
    );
    assert!(p1["tables"][1]["rows"][0]["cells"][1]["paper"].is_null()); // PGD: not in the paper
                                                                        // AutoAttack on the first 3 images (not the 20 of the other tables), every row with its
                                                                        // seven gradient-masking checks; an image counts only if it is also classified correctly.
    let aa = &p1["tables"][3];
    assert!(aa["title"].as_str().unwrap().contains("AutoAttack"), "{aa}");
    for row in aa["rows"].as_array().unwrap() {
        assert_eq!(row["cells"][0]["accuracy"]["n"], 3);
        assert_eq!(row["checks"].as_array().unwrap().len(), 7, "{row}");
        let k = |j: usize| row["cells"][j]["accuracy"]["k"].as_u64().unwrap();
        assert!(k(1) <= k(0) && k(2) <= k(0), "{row}");
    }
    assert!(!report["differences"].as_array().unwrap().is_empty());
    let cifar = experiment(&report, "cifar");
    assert_eq!(cifar["status"], "not_run");
    assert!(cifar["reason"].as_str().unwrap().contains("CIFAR-10"));
    assert!(report["command"]
        .as_str()
        .unwrap()
        .starts_with("nrpm reproduce --experiments"));
    assert!(!report["machine"].as_str().unwrap().is_empty());
    assert!(!report["not_compared"].as_array().unwrap().is_empty());
    // The Markdown report: paper rows, Δ, intervals; the hand-written analysis survives a rerun.
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(text.contains("↳ paper (table1: Vanilla (LPM))") && text.contains("↳ Δ ours − paper"));
    assert!(text.contains("Not run, and why") && text.contains(ANALYSIS_START));
    let edited = text.replace(
        &format!("{ANALYSIS_START}\n"),
        &format!("{ANALYSIS_START}\nMY ANALYSIS\n"),
    );
    std::fs::write(&md, edited).unwrap();
    // A rerun where nothing can run (no CIFAR-10) still writes the report, keeps the analysis,
    // and exits non-zero, saying why.
    let mut rerun = vec!["--experiments", "cifar", "--out", dir.to_str().unwrap()];
    rerun.extend(md_args);
    let out = nrpm_reproduce(&rerun);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("none of them could run"), "{stderr}");
    let again = std::fs::read_to_string(&md).unwrap();
    assert!(again.contains("MY ANALYSIS") && again.contains(ANALYSIS_END));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn shortened_paradigm_2_says_so_and_resumes_from_its_checkpoint() {
    if shared("models/mlp3_mnist.safetensors").is_none() {
        return;
    }
    let dir = temp_dir("p2");
    let args = [
        "--experiments",
        "mlp-p2",
        "--data",
        "mnist-subset",
        "--n",
        "20",
        "--pgd-steps",
        "1",
        "--epochs",
        "1",
        "--train-n",
        "128",
        "--autoattack-n",
        "0",
    ];
    let first = run_ok(&dir, &args);
    let p2 = experiment(&first, "mlp-p2");
    assert_eq!(p2["status"], "ran", "{p2}");
    assert!(p2["notes"].as_array().unwrap().iter().any(|n| n
        .as_str()
        .unwrap()
        .starts_with("Shortened: 1 epoch(s) on 128")));
    assert_eq!(p2["training"][0]["history"].as_array().unwrap().len(), 1);
    assert!(p2["tables"][0]["rows"][0]["paper_lambda"].is_array());
    assert!(dir.join("checkpoints/mlp-p2-eps5e-5/state.json").is_file());
    let mut reuse = args.to_vec();
    reuse.push("--reuse-checkpoints");
    let second = run_ok(&dir, &reuse);
    let p2b = experiment(&second, "mlp-p2");
    assert_eq!(p2b["training"][0]["resumed_from_checkpoint"], 1);
    assert_eq!(accuracies(p2b), accuracies(p2)); // the same model, evaluated again
                                                 // Reusing that checkpoint with other training images is refused (it used to be reused and
                                                 // labelled with the new settings); fewer epochs: tests/train.rs.
    let mut other = reuse.clone();
    let at = other.iter().position(|a| *a == "--train-n").unwrap();
    other[at + 1] = "96";
    other.extend(["--out", dir.to_str().unwrap()]);
    let out = nrpm_reproduce(&other);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let p2c = experiment(&report, "mlp-p2");
    assert_eq!(p2c["status"], "failed");
    assert!(
        p2c["error"]
            .as_str()
            .unwrap()
            .contains("same training images"),
        "{p2c}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn smoothing_certifies_lpm_and_paradigms_1_to_3_at_two_sigmas() {
    if shared("models/mlp3_mnist.safetensors").is_none() {
        return;
    }
    let dir = temp_dir("smoothing");
    let args = [
        "--experiments",
        "smoothing",
        "--data",
        "mnist-subset",
        "--n",
        "3",
        "--epochs",
        "1",
        "--train-n",
        "64",
    ];
    let report = run_ok(&dir, &args);
    let e = experiment(&report, "smoothing");
    assert_eq!(e["status"], "ran", "{e}");
    let tables = e["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2); // σ = 0.25, 0.5
    for t in tables {
        let rows = t["rows"].as_array().unwrap();
        let labels: Vec<&str> = rows.iter().map(|r| r["label"].as_str().unwrap()).collect();
        assert_eq!(labels.len(), 4, "{labels:?}");
        assert!(labels[0].starts_with("LPM") && labels[1].starts_with("Paradigm 1"));
        assert!(labels[2].starts_with("Paradigm 2") && labels[3].starts_with("Paradigm 3"));
        for r in rows {
            let k: Vec<u64> = r["cells"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["accuracy"]["k"].as_u64().unwrap())
                .collect();
            assert!(
                k.windows(2).all(|w| w[1] <= w[0]),
                "larger radii certify fewer: {k:?}"
            );
            assert_eq!(r["cells"][0]["accuracy"]["n"], 3);
        }
    }
    // Paradigms 2 and 3 were trained here (1 epoch): their checkpoints are where mlp-p2 and
    // mlp-p3 keep theirs, so a later run of those experiments can reuse them.
    assert!(dir.join("checkpoints/mlp-p2-eps5e-5/state.json").is_file());
    std::fs::remove_dir_all(dir).ok();
}

/// Every cell's accuracy in an experiment's tables.
fn accuracies(exp: &Value) -> Vec<Value> {
    let tables = exp["tables"].as_array().unwrap();
    let rows = tables.iter().flat_map(|t| t["rows"].as_array().unwrap());
    rows.flat_map(|r| r["cells"].as_array().unwrap())
        .map(|c| c["accuracy"].clone())
        .collect()
}

/// A CIFAR-10 test batch of `n` records with seeded pseudo-random pixels and labels.
fn write_cifar_batch(dir: &Path, n: usize) {
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u8
    };
    let mut bytes = Vec::with_capacity(n * 3073);
    for _ in 0..n {
        bytes.push(next() % 10);
        bytes.extend((0..3072).map(|_| next()));
    }
    std::fs::write(dir.join("test_batch.bin"), bytes).unwrap();
}

#[test]
fn cifar_runs_on_a_generated_binary_batch() {
    if shared("models/tinyresnet18_cifar10.safetensors").is_none() {
        return;
    }
    let dir = temp_dir("cifar");
    let data = dir.join("cifar");
    std::fs::create_dir_all(&data).unwrap();
    write_cifar_batch(&data, 4);
    let args = [
        "--experiments",
        "cifar",
        "--data",
        data.to_str().unwrap(),
        "--n",
        "4",
        "--pgd-steps",
        "1",
    ];
    let report = run_ok(&dir, &args);
    let cifar = experiment(&report, "cifar");
    assert_eq!(cifar["status"], "ran", "{cifar}");
    let main = &cifar["tables"][0];
    assert_eq!(main["rows"].as_array().unwrap().len(), 7); // LPM, λ = 0.9 … 0.4
    assert_eq!(main["rows"][0]["cells"][0]["paper"], 67.89);
    assert_eq!(main["rows"][0]["cells"][0]["accuracy"]["n"], 4);
    assert_eq!(cifar["tables"][1]["rows"][0]["cells"][7]["paper"], 0.0); // 512/255
    assert!(cifar["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains("smoke run")));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_input_gives_one_error_line_and_a_failure_status() {
    let dir = temp_dir("bad");
    let out = dir.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--experiments", "table9"],
            "unknown experiment 'table9'",
        ),
        (
            vec!["--models", "/nonexistent-nrpm-models"],
            "no such models folder",
        ),
        (
            vec!["--data", "/nonexistent-nrpm-data"],
            "no such data folder",
        ),
        (
            vec!["--data", "mnist-subset", "--data", "mnist-subset"],
            "second folder",
        ),
        (vec!["--n", "0", "--models", out], "invalid n"),
        (vec!["--device", "tpu"], "unknown device"),
    ];
    for (args, expected) in cases {
        let mut all = args.clone();
        all.extend(["--out", out]);
        let o = nrpm_reproduce(&all);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}
