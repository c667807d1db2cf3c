//! `nrpm train` end to end: training from scratch with a JSON report, resuming to the same
//! bytes, paradigm 2 on the resulting checkpoint, and one-line errors for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn nrpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nrpm"))
        .arg("train")
        .args(args)
        .output()
        .expect("the nrpm binary runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nrpm-cli-train-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn ok(args: &[&str]) {
    let out = nrpm(args);
    assert!(
        out.status.success(),
        "nrpm train {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A small clean scratch run of the one-layer MLP: 256 images, batch 32.
const SCRATCH: [&str; 16] = [
    "--paradigm",
    "scratch",
    "--model",
    "mlp1",
    "--train-n",
    "256",
    "--eval-n",
    "100",
    "--batch-size",
    "32",
    "--lr",
    "0.05",
    "--seed",
    "4",
    "--lr-steps",
    "1",
];

/// [`SCRATCH`] followed by `extra`.
fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    [&SCRATCH[..], extra].concat()
}

#[test]
fn scratch_resume_and_paradigm_2_from_the_command_line() {
    let dir = temp_dir("flow");
    let (full, part, p2) = (dir.join("full"), dir.join("part"), dir.join("p2"));
    let report = dir.join("full.json");
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    ok(&with(&[
        "--epochs",
        "2",
        "--out",
        &s(&full),
        "--json",
        &s(&report),
    ]));
    let r = json(&report);
    assert_eq!(r["history"].as_array().unwrap().len(), 2);
    assert_eq!(r["settings"]["lr_steps"], serde_json::json!([1]));
    assert!(
        r["after"]["clean"].as_f64().unwrap() > 50.0,
        "{}",
        r["after"]
    );
    assert!(
        r["after"]["robust"].is_null(),
        "scratch trains clean by default"
    );

    ok(&with(&["--epochs", "1", "--out", &s(&part)]));
    ok(&with(&["--epochs", "2", "--resume", &s(&part)]));
    let bytes = |d: &PathBuf| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(bytes(&full), bytes(&part), "resumed ≠ uninterrupted");

    let weights = s(&full.join("model.safetensors"));
    let p2_json = dir.join("p2.json");
    #[rustfmt::skip]
    ok(&[
        "--paradigm", "2", "--model", "mlp1", "--weights", &weights, "--norm", "l1",
        "--k", "1", "--eps-irls", "5e-5", "--lambda", "0.6", "--adv", "fgsm",
        "--adv-eps", "0.2", "--train-n", "128", "--eval-n", "50", "--epochs", "1",
        "--lr", "0.1", "--out", &s(&p2), "--json", &s(&p2_json),
    ]);
    let r = json(&p2_json);
    let lambda = |when: &str| r[when]["lambdas"][0][1].as_f64().unwrap();
    assert!((lambda("before") - 0.6).abs() < 1e-6);
    assert!(
        (lambda("after") - lambda("before")).abs() > 1e-4,
        "λ did not move"
    );
    assert_eq!(r["settings"]["adv_loss"], "clean+adv", "the MNIST default");
    assert!(r["after"]["robust"].is_number());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_input_gives_one_line_errors() {
    let dir = temp_dir("bad");
    let ckpt = dir.join("m.safetensors");
    ok(&[
        &SCRATCH[..],
        &["--epochs", "1", "--out", dir.to_str().unwrap()],
    ]
    .concat());
    std::fs::rename(dir.join("model.safetensors"), &ckpt).unwrap();
    let w = ckpt.to_str().unwrap();
    let base = ["--model", "mlp1", "--train-n", "8", "--eval-n", "8"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--paradigm", "4"], "unknown paradigm"),
        (vec!["--paradigm", "2"], "give --weights"),
        (
            vec!["--paradigm", "scratch", "--weights", w],
            "--paradigm 3",
        ),
        (
            vec!["--paradigm", "scratch", "--adv-eps", "0.1"],
            "--adv-eps",
        ),
        (vec!["--paradigm", "scratch", "--lr=-1"], "invalid lr"),
        (vec!["--paradigm", "scratch", "--momentum", "1"], "momentum"),
        (
            vec!["--paradigm", "scratch", "--adv", "pgd-l1"],
            "unknown adversarial",
        ),
        (
            vec!["--paradigm", "scratch", "--lr-steps", "5,2"],
            "strictly increasing",
        ),
        (
            vec![
                "--paradigm",
                "scratch",
                "--adv-loss",
                "both",
                "--adv",
                "fgsm",
            ],
            "adversarial loss",
        ),
        (
            vec!["--paradigm", "3", "--resume", "/nonexistent-nrpm"],
            "nonexistent-nrpm",
        ),
        (
            vec![
                "--paradigm",
                "scratch",
                "--trace",
                "/nonexistent-nrpm/t.jsonl",
            ],
            "--trace",
        ),
        (
            vec!["--paradigm", "2", "--weights", w],
            "needs at least one layer",
        ),
        (
            vec![
                "--paradigm",
                "2",
                "--weights",
                w,
                "--norm",
                "l1",
                "--lambda",
                "1",
            ],
            "lambda",
        ),
    ];
    for (args, needle) in cases {
        let out = nrpm(&[&base[..], &args].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn trace_writes_a_line_per_step_up_to_the_divergence() {
    let dir = temp_dir("trace");
    let trace = dir.join("steps.jsonl");
    let t = trace.to_str().unwrap();
    ok(&with(&["--epochs", "2", "--trace", t]));
    let lines: Vec<Value> = std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 256 images in batches of 32: 8 steps per epoch.
    assert_eq!(lines.len(), 16);
    assert_eq!(
        (&lines[8]["epoch"], &lines[8]["step"]),
        (&2.into(), &1.into())
    );
    for line in &lines {
        assert!(line["loss"].as_f64().unwrap().is_finite(), "{line}");
        assert!(
            line["grad_norm"]["fc1.weight"].as_f64().unwrap() > 0.0,
            "{line}"
        );
        assert_eq!(line["images"].as_array().unwrap().len(), 32);
    }
    // A learning rate that blows up: the trace ends with the failing step and its error.
    let mut args = with(&["--epochs", "1", "--trace", t]);
    let lr = args.iter().position(|a| *a == "--lr").unwrap();
    args[lr + 1] = "1e38";
    let out = nrpm(&args);
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&trace).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("step {}/8", last["step"])),
        "{err} / {last}"
    );
    assert!(last["error"].as_str().is_some(), "{last}");
    std::fs::remove_dir_all(dir).ok();
}
