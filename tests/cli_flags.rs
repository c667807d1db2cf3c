//! The commands do what was typed, record what they did, and refuse what they cannot do
//! (issue 15): λ lists pair with the layers as typed; checkpoints written by nrpm rebuild their
//! model; flags that would have no effect are refused; headers and JSON show the λ, K, ε and
//! layers actually used; output paths are checked before any work; a diverged training run
//! says where and keeps its history; `apply` refuses unknown tensors, mixed types and writing
//! over its input; one meaning and one default per flag name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn nrpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nrpm"))
        .args(args)
        .output()
        .expect("the nrpm binary runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nrpm-cli-flags-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs and checks success; returns (stdout, stderr).
fn ok(args: &[&str]) -> (String, String) {
    let out = nrpm(args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "nrpm {args:?}: {stderr}");
    (stdout, stderr)
}

/// Runs, expects failure with one `error:` line mentioning `needle`; returns that line.
fn fails(args: &[&str], needle: &str) -> String {
    let out = nrpm(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "nrpm {args:?} succeeded");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "nrpm {args:?}: {stderr}");
    assert!(
        lines[0].contains(needle),
        "nrpm {args:?} should mention '{needle}': {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_string()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `(layer, λ)` of the `reprogrammed` list of a report's `model`.
fn lambdas(report: &Value) -> Vec<(String, f64)> {
    report["model"]["reprogrammed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["layer"].as_str().unwrap().to_string(),
                l["lambda"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// A plain LPM mlp2 trained briefly from scratch, saved in `dir/lpm`; returns the weights.
fn lpm_checkpoint(dir: &Path) -> PathBuf {
    let out = dir.join("lpm");
    ok(&[
        "train",
        "--paradigm",
        "scratch",
        "--model",
        "mlp2",
        "--train-n",
        "512",
        "--eval-n",
        "100",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--epochs",
        "1",
        "--out",
        s(&out),
    ]);
    out.join("model.safetensors")
}

#[test]
fn lambda_values_pair_with_layers_in_the_order_typed() {
    let dir = temp_dir("pairing");
    let report = dir.join("r.json");
    ok(&[
        "eval",
        "--model",
        "mlp3",
        "--norm",
        "l1",
        "--layers",
        "fc3,fc1",
        "--lambda",
        "0.9,0.1",
        "--n",
        "5",
        "--eps",
        "0",
        "--json",
        s(&report),
    ]);
    let got = lambdas(&json(&report));
    let lambda = |k: &str| got.iter().find(|(l, _)| l == k).unwrap().1;
    assert!(
        (lambda("fc3") - 0.9).abs() < 1e-6 && (lambda("fc1") - 0.1).abs() < 1e-6,
        "{got:?}"
    );
    // LeNet's convolutions and train (paradigm 1 saves the reprogrammed model) pair the same way.
    let lpm = lpm_checkpoint(&dir);
    let p1 = dir.join("p1");
    ok(&[
        "train",
        "--paradigm",
        "1",
        "--model",
        "mlp2",
        "--weights",
        s(&lpm),
        "--norm",
        "l1",
        "--layers",
        "fc2,fc1",
        "--lambda",
        "0.8,0.3",
        "--eval-n",
        "20",
        "--adv",
        "none",
        "--out",
        s(&p1),
    ]);
    let r2 = dir.join("r2.json");
    ok(&[
        "eval",
        "--weights",
        s(&p1.join("model.safetensors")),
        "--n",
        "5",
        "--eps",
        "0",
        "--json",
        s(&r2),
    ]);
    let got = lambdas(&json(&r2));
    assert_eq!(got.len(), 2);
    for (layer, want) in [("fc1", 0.3), ("fc2", 0.8)] {
        let l = got.iter().find(|(k, _)| k == layer).unwrap().1;
        assert!((l - want).abs() < 1e-6, "{layer}: {got:?}");
    }
    let r3 = dir.join("r3.json");
    ok(&[
        "eval",
        "--model",
        "lenet",
        "--norm",
        "l1",
        "--layers",
        "conv2,conv1",
        "--lambda",
        "0.2,0.6",
        "--n",
        "3",
        "--eps",
        "0",
        "--json",
        s(&r3),
    ]);
    let got = lambdas(&json(&r3));
    assert!(
        got.contains(&("conv1".into(), 0.6f32 as f64))
            && got.contains(&("conv2".into(), 0.2f32 as f64)),
        "{got:?}"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Train paradigm 2, then evaluate its checkpoint with no other flag: the model is rebuilt as
/// trained (NRPM layers, λ = sigmoid(θ)), and the figures equal the ones training reported.
/// A flag that disagrees with the record wins, with a note.
#[test]
fn a_trained_checkpoint_evaluates_as_trained_without_flags() {
    let dir = temp_dir("rebuild");
    let lpm = lpm_checkpoint(&dir);
    let (p2, p2_json) = (dir.join("p2"), dir.join("p2.json"));
    ok(&[
        "train",
        "--paradigm",
        "2",
        "--model",
        "mlp2",
        "--weights",
        s(&lpm),
        "--norm",
        "l1",
        "--k",
        "1",
        "--eps-irls",
        "5e-5",
        "--lambda",
        "0.6",
        "--adv-eps",
        "0.2",
        "--train-n",
        "256",
        "--eval-n",
        "200",
        "--epochs",
        "1",
        "--lr",
        "0.5",
        "--out",
        s(&p2),
        "--json",
        s(&p2_json),
    ]);
    let trained = json(&p2_json);
    let weights = p2.join("model.safetensors");
    let r = dir.join("eval.json");
    let (stdout, _) = ok(&[
        "eval",
        "--weights",
        s(&weights),
        "--n",
        "200",
        "--eps",
        "0,0.2",
        "--json",
        s(&r),
    ]);
    let eval = json(&r);
    assert_eq!(
        eval["clean"]["accuracy"], trained["after"]["clean"],
        "{stdout}"
    );
    assert_eq!(
        eval["results"][1]["robust_accuracy"],
        trained["after"]["robust"]
    );
    let learned: Vec<f64> = trained["after"]["lambdas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].as_f64().unwrap())
        .collect();
    let used: Vec<f64> = lambdas(&eval).iter().map(|p| p.1).collect();
    assert_eq!(used, learned);
    assert!(
        stdout.contains("(sigmoid θ)") && stdout.contains("K = 1"),
        "{stdout}"
    );
    // --lambda-from-weights adds nothing for such a checkpoint (it used to read θ as λ).
    let r2 = dir.join("eval2.json");
    ok(&[
        "eval",
        "--weights",
        s(&weights),
        "--lambda-from-weights",
        "--n",
        "200",
        "--eps",
        "0",
        "--json",
        s(&r2),
    ]);
    assert_eq!(json(&r2)["clean"]["accuracy"], trained["after"]["clean"]);
    // An explicit flag that disagrees wins, with one note.
    let (_, stderr) = ok(&[
        "eval",
        "--weights",
        s(&weights),
        "--k",
        "2",
        "--n",
        "5",
        "--eps",
        "0",
    ]);
    assert!(
        stderr.contains("note: --k replaces the checkpoint's value in fc1 (1 → 2)"),
        "{stderr}"
    );
    // A ReLU MLP trained from scratch keeps its ReLU.
    let relu = dir.join("relu");
    let relu_json = dir.join("relu.json");
    ok(&[
        "train",
        "--paradigm",
        "scratch",
        "--model",
        "mlp2",
        "--mlp-relu",
        "--train-n",
        "256",
        "--eval-n",
        "200",
        "--epochs",
        "1",
        "--lr",
        "0.05",
        "--out",
        s(&relu),
        "--json",
        s(&relu_json),
    ]);
    let r3 = dir.join("eval3.json");
    ok(&[
        "eval",
        "--weights",
        s(&relu.join("model.safetensors")),
        "--n",
        "200",
        "--eps",
        "0",
        "--json",
        s(&r3),
    ]);
    assert_eq!(
        json(&r3)["clean"]["accuracy"],
        json(&relu_json)["after"]["clean"]
    );
    assert_eq!(json(&r3)["model"]["spec"]["arch"]["Mlp"]["relu"], true);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn flags_that_would_have_no_effect_are_refused() {
    let dir = temp_dir("no-effect");
    let lpm = lpm_checkpoint(&dir);
    let w = s(&lpm);
    let base = ["eval", "--model", "mlp2", "--n", "5", "--eps", "0"];
    fn cat<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<&'a str> {
        [a, b].concat()
    }
    let with = |extra: &[&'static str]| cat(&base, extra);
    // λ without a robust norm used to evaluate plain LPM silently.
    fails(&with(&["--lambda", "0.3"]), "--lambda has no effect");
    fails(&with(&["--k", "2"]), "--k has no effect");
    fails(
        &with(&["--norm", "l1", "--gamma", "5"]),
        "--gamma has no effect",
    );
    fails(
        &with(&["--norm", "huber", "--gamma", "5"]),
        "--gamma has no effect",
    );
    fails(
        &with(&["--norm", "mcp", "--delta", "2"]),
        "--delta has no effect",
    );
    fails(
        &cat(&base, &["--weights", w, "--init-seed", "3"]),
        "--init-seed has no effect",
    );
    fails(
        &[
            "eval",
            "--model",
            "lenet",
            "--n",
            "2",
            "--eps",
            "0",
            "--mlp-relu",
        ],
        "--mlp-relu has no effect",
    );
    fails(&with(&["--conv-bias"]), "--conv-bias has no effect");
    fails(
        &with(&["--lambda-from-weights", "--norm", "l1"]),
        "--lambda-from-weights has no effect",
    );
    // λ from the file and --lambda at once: one of them would be ignored.
    fails(
        &cat(
            &base,
            &[
                "--weights",
                w,
                "--norm",
                "l1",
                "--lambda",
                "0.5",
                "--lambda-from-weights",
            ],
        ),
        "cannot be used with",
    );
    // A checkpoint without λ slots cannot give λ.
    fails(
        &cat(
            &base,
            &["--weights", w, "--norm", "l1", "--lambda-from-weights"],
        ),
        "no λ slot",
    );
    // PGD-only flags with FGSM, PGD-only adversarial flags with --adv fgsm.
    fails(
        &with(&["--attack", "fgsm", "--steps", "5"]),
        "--steps has no effect",
    );
    fails(
        &with(&["--attack", "l2", "--alpha", "0.1"]),
        "--alpha has no effect",
    );
    fails(
        &[
            "train",
            "--paradigm",
            "2",
            "--weights",
            w,
            "--norm",
            "l1",
            "--lambda",
            "0.5",
            "--adv",
            "fgsm",
            "--adv-steps",
            "3",
            "--train-n",
            "8",
            "--eval-n",
            "8",
        ],
        "--adv-steps has no effect",
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn headers_and_reports_show_what_was_used() {
    let dir = temp_dir("header");
    let report = dir.join("e.json");
    let (white, _) = ok(&[
        "eval",
        "--model",
        "mlp2",
        "--norm",
        "l1",
        "--k",
        "1",
        "--eps-irls",
        "5e-5",
        "--lambda",
        "0.7",
        "--n",
        "5",
        "--attack",
        "pgd-linf",
        "--steps",
        "2",
        "--eps",
        "0,0.1",
        "--json",
        s(&report),
    ]);
    for needle in [
        "fc1 l1 K = 1 ε = 5e-5 λ = 0.7000",
        "fc2 l1",
        "gradients from the model (white box)",
        "pgd-linf (2 steps, α = madry",
    ] {
        assert!(white.contains(needle), "'{needle}' missing:\n{white}");
    }
    let (bpda, _) = ok(&[
        "eval",
        "--model",
        "mlp2",
        "--norm",
        "l1",
        "--lambda",
        "0.7",
        "--n",
        "5",
        "--gradients-from",
        "lpm",
        "--eps",
        "0",
    ]);
    assert!(bpda.contains("gradients from the LPM twin"), "{bpda}");
    // The JSON records every setting that changes a number, eval and train alike.
    let r = json(&report);
    assert_eq!(r["model"]["init_seed"], 0);
    assert_eq!(r["attack"]["alpha_rule"], "madry");
    let train_json = dir.join("t.json");
    ok(&[
        "train",
        "--paradigm",
        "scratch",
        "--model",
        "mlp2",
        "--mlp-relu",
        "--norm",
        "hm",
        "--gamma",
        "5",
        "--delta",
        "2",
        "--group",
        "2",
        "--lambda",
        "0.5",
        "--init-seed",
        "7",
        "--train-n",
        "64",
        "--eval-n",
        "20",
        "--epochs",
        "1",
        "--json",
        s(&train_json),
    ]);
    let t = json(&train_json);
    let layer = &t["model"]["reprogrammed"][0];
    assert_eq!(
        layer["norm"],
        serde_json::json!({"kind": "hm", "gamma": 5.0, "delta": 2.0})
    );
    assert_eq!(layer["groups"], 2);
    assert_eq!(layer["lambda_param"], "sigmoid");
    assert_eq!(t["model"]["init_seed"], 7);
    assert_eq!(t["model"]["spec"]["arch"]["Mlp"]["relu"], true);
    assert_eq!(t["model"]["spec"]["conv_bias"], false);
    assert_eq!(t["settings"]["frozen_batchnorm"], false);
    assert_eq!(t["data"]["train"]["n"], 64);
    std::fs::remove_dir_all(dir).ok();
}

/// One meaning and one default per flag: --eps is only ever an attack budget (the IRLS ε is
/// --eps-irls everywhere), λ defaults to 0 everywhere, an oversized count is an error
/// everywhere, and `train --help` shows the defaults it applies.
#[test]
fn one_meaning_and_one_default_per_flag() {
    let dir = temp_dir("meaning");
    for cmd in ["analyze", "apply"] {
        let out = nrpm(&[cmd, "--eps", "1e-3"]);
        assert!(!out.status.success(), "{cmd} --eps");
    }
    let a = dir.join("a.json");
    ok(&["analyze", "--d", "8", "--eps-irls", "1e-3", "--json", s(&a)]);
    assert_eq!(json(&a)["settings"]["lambda"], 0.0);
    let e = dir.join("e.json");
    ok(&[
        "eval",
        "--model",
        "mlp2",
        "--norm",
        "l1",
        "--n",
        "3",
        "--eps",
        "0",
        "--json",
        s(&e),
    ]);
    assert_eq!(lambdas(&json(&e))[0].1, 0.0);
    fails(
        &[
            "train",
            "--paradigm",
            "scratch",
            "--model",
            "mlp1",
            "--train-n",
            "100000",
        ],
        "train-n",
    );
    fails(&["eval", "--model", "mlp1", "--n", "5000"], "n");
    let help = String::from_utf8(nrpm(&["train", "--help"]).stdout).unwrap();
    for needle in [
        "0.001 for MNIST",
        "10 for MNIST",
        "64 for MNIST",
        "fgsm for MNIST",
        "running statistics",
    ] {
        assert!(help.contains(needle), "train --help lacks '{needle}'");
    }
    let help = String::from_utf8(nrpm(&["eval", "--help"]).stdout).unwrap();
    assert!(
        help.contains("2.5·ε/steps")
            && help.contains("Steps of PGD [default: 20] or of APGD and FAB [default: 100]"),
        "{help}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn output_paths_are_checked_before_any_work() {
    let dir = temp_dir("outputs");
    let out = dir.join("ckpt");
    let missing = dir.join("no/such/folder/r.json");
    // The run would take a while: the error must come first, and nothing be trained or written.
    let clock = std::time::Instant::now();
    fails(
        &[
            "train",
            "--paradigm",
            "scratch",
            "--model",
            "mlp3",
            "--epochs",
            "50",
            "--out",
            s(&out),
            "--json",
            s(&missing),
        ],
        "does not exist",
    );
    assert!(clock.elapsed().as_secs_f64() < 10.0);
    assert!(!out.join("model.safetensors").exists());
    fails(
        &["eval", "--model", "mlp1", "--n", "5", "--json", s(&dir)],
        "is a folder",
    );
    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    fails(
        &[
            "train",
            "--paradigm",
            "scratch",
            "--model",
            "mlp1",
            "--out",
            s(&file),
        ],
        "is a file",
    );
    fails(
        &[
            "reproduce",
            "--experiments",
            "mlp-p1",
            "--json",
            s(&missing),
        ],
        "does not exist",
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_diverged_run_says_where_and_keeps_its_history() {
    let dir = temp_dir("diverge");
    let (out, report) = (dir.join("run"), dir.join("run.json"));
    let line = fails(
        &[
            "train",
            "--paradigm",
            "scratch",
            "--model",
            "mlp2",
            "--norm",
            "l1",
            "--lambda",
            "0.5",
            "--k",
            "1",
            "--eps-irls",
            "1e-6",
            "--train-n",
            "256",
            "--eval-n",
            "50",
            "--batch-size",
            "32",
            "--lr",
            "1e6",
            "--epochs",
            "3",
            "--out",
            s(&out),
            "--json",
            s(&report),
        ],
        "training diverged in epoch",
    );
    for needle in [
        "step ",
        "layer fc",
        "overflowed",
        "lower the learning rate (--lr, now 1000000)",
        "--eps-irls",
    ] {
        assert!(line.contains(needle), "'{needle}' missing: {line}");
    }
    assert!(
        !line.contains("nrpm::") && !line.contains("{ "),
        "internal names: {line}"
    );
    let r = json(&report);
    assert!(r["diverged"].as_str().unwrap().contains("diverged"));
    assert!(r["history"].is_array());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn messages_use_words() {
    let (stdout, _) = ok(&[
        "train",
        "--paradigm",
        "scratch",
        "--model",
        "mlp1",
        "--adv",
        "fgsm",
        "--adv-eps",
        "0.1",
        "--train-n",
        "64",
        "--eval-n",
        "20",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
    ]);
    assert!(
        stdout.contains("FGSM L∞ ε = 0.1") && !stdout.contains("Fgsm {"),
        "{stdout}"
    );
}

#[test]
fn apply_refuses_unknown_tensors_mixed_types_and_its_own_input() {
    use ndarray::{ArrayD, IxDyn};
    use nrpm::tensor_file::TensorFile;
    let dir = temp_dir("apply");
    let write = |name: &str, grad_key: &str, f64_weight: bool| {
        let path = dir.join(name);
        let mut f = TensorFile::new(&path);
        f.insert("x", ArrayD::from_elem(IxDyn(&[2, 4]), 0.5f32));
        if f64_weight {
            f.insert("weight", ArrayD::from_elem(IxDyn(&[3, 4]), 0.5f64));
        } else {
            f.insert("weight", ArrayD::from_elem(IxDyn(&[3, 4]), 0.5f32));
        }
        f.insert(grad_key, ArrayD::from_elem(IxDyn(&[2, 3]), 1.0f32));
        f.write(&path).unwrap();
        path
    };
    let out = dir.join("out.safetensors");
    let typo = write("typo.safetensors", "grad_y", false);
    fails(
        &["apply", "--input", s(&typo), "--output", s(&out)],
        "unknown tensor 'grad_y'",
    );
    let mixed = write("mixed.safetensors", "grad_output", true);
    fails(
        &["apply", "--input", s(&mixed), "--output", s(&out)],
        "mixed types",
    );
    let good = write("good.safetensors", "grad_output", false);
    let before = std::fs::read(&good).unwrap();
    let same = dir.join(".").join("good.safetensors");
    fails(
        &["apply", "--input", s(&good), "--output", s(&same)],
        "is the input file",
    );
    assert_eq!(std::fs::read(&good).unwrap(), before);
    ok(&["apply", "--input", s(&good), "--output", s(&out)]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn analyze_prints_the_extremes_of_the_sensitivity_curve() {
    let dir = temp_dir("analyze");
    let a = dir.join("a.json");
    let (stdout, _) = ok(&[
        "analyze",
        "--d",
        "16",
        "--grid-points",
        "41",
        "--json",
        s(&a),
    ]);
    let report = json(&a);
    let lad = report["estimators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["label"] == "lad")
        .unwrap();
    let sc: Vec<f64> = lad["influence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sc"].as_f64().unwrap())
        .collect();
    let (lo, hi) = sc
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let row = stdout.lines().find(|l| l.starts_with("lad ")).unwrap();
    let cols: Vec<f64> = row
        .split_whitespace()
        .skip(1)
        .take(3)
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        (cols[1] - lo).abs() <= 1e-4 * lo.abs().max(1.0),
        "{row} vs min {lo}"
    );
    assert!(
        (cols[2] - hi).abs() <= 1e-4 * hi.abs().max(1.0),
        "{row} vs max {hi}"
    );
    assert!(stdout.contains("min SC") && stdout.contains("max SC"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn eval_warns_when_pgd_cannot_reach_the_sphere() {
    let (_, stderr) = ok(&[
        "eval", "--model", "mlp1", "--n", "5", "--attack", "pgd-linf", "--steps", "2", "--alpha",
        "eps/4", "--eps", "0.1",
    ]);
    assert!(
        stderr.contains("warning:") && stderr.contains("cannot reach the ε-sphere"),
        "{stderr}"
    );
}
