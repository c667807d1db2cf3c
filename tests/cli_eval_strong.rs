//! `nrpm eval` with the strong attacks: AutoAttack's table, per-image "broken by" records and
//! gradient-masking checks in the printout, the JSON and the Markdown report; a single strong
//! attack through the LPM twin's gradients; and one `error: …` line with exit status 1 for
//! bad strong-attack input.

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
    let dir = std::env::temp_dir().join(format!("nrpm-cli-strong-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A seeded NRPM MLP with small AutoAttack settings on 20 images.
const QUICK: [&str; 18] = [
    "--model",
    "mlp2",
    "--norm",
    "l1",
    "--k",
    "1",
    "--lambda",
    "0.6",
    "--n",
    "20",
    "--steps",
    "6",
    "--queries",
    "40",
    "--targets",
    "2",
    "--seed",
    "3",
];

#[test]
fn autoattack_reports_stages_broken_by_and_masking_checks() {
    let dir = temp_dir("aa");
    let (json, md) = (dir.join("aa.json"), dir.join("aa.md"));
    let mut args = QUICK.to_vec();
    args.extend([
        "--attack",
        "autoattack",
        "--eps",
        "0.05,0.3",
        "--masking-checks",
        "--json",
        json.to_str().unwrap(),
        "--markdown",
        md.to_str().unwrap(),
    ]);
    let out = nrpm_eval(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("apgd-ce") && stdout.contains("square"),
        "{stdout}"
    );
    assert!(stdout.contains("check randomness"), "{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        let robust = r["robust_correct"].as_u64().unwrap();
        let stages = r["stages"].as_array().unwrap();
        let names: Vec<&str> = stages
            .iter()
            .map(|s| s["attack"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["apgd-ce", "apgd-t", "fab-t", "square"]);
        assert_eq!(stages[3]["robust_correct"].as_u64().unwrap(), robust);
        let images = r["images"].as_array().unwrap();
        assert_eq!(images.len(), 20);
        let unbroken = images
            .iter()
            .filter(|i| i["clean_correct"] == true && i["broken_by"].is_null())
            .count();
        assert_eq!(
            unbroken as u64, robust,
            "the records count the robust images"
        );
        let checks = r["masking_checks"].as_array().unwrap();
        assert_eq!(checks.len(), 7);
        for c in checks {
            assert!(c["verdict"] == "pass" || c["verdict"] == "warn", "{c}");
            assert!(!c["figure"].as_str().unwrap().is_empty());
        }
    }
    // ε = 0.3 on a random MLP breaks something, so "broken by" is exercised.
    let broken = results[1]["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| !i["broken_by"].is_null())
        .count();
    assert!(broken > 0);
    let markdown = std::fs::read_to_string(&md).unwrap();
    assert!(
        markdown.contains("Gradient-masking checks at ε = 0.3"),
        "{markdown}"
    );
    assert!(markdown.contains("| randomness | pass |"), "{markdown}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_single_strong_attack_runs_white_box_and_through_lpm_gradients() {
    for from in ["model", "lpm"] {
        let mut args = QUICK.to_vec();
        args.extend([
            "--attack",
            "apgd-dlr",
            "--eps",
            "0.1",
            "--gradients-from",
            from,
        ]);
        args.extend(["--norm-ball", "l2", "--restarts", "2"]);
        let out = nrpm_eval(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("clean accuracy"), "{stdout}");
    }
}

#[test]
fn bad_strong_attack_input_gives_one_error_line_and_status_1() {
    let cases: [(&[&str], &str); 10] = [
        (&["--attack", "apgd-x"], "unknown attack"),
        (&["--attack", "apgd-ce", "--steps", "0"], "steps"),
        (&["--attack", "square", "--queries", "0"], "queries"),
        (&["--attack", "autoattack", "--restarts", "0"], "restarts"),
        (&["--attack", "apgd-t", "--targets", "0"], "targets"),
        (&["--attack", "apgd-t", "--targets", "10"], "targets"),
        (&["--attack", "autoattack", "--norm-ball", "l3"], "l3"),
        (&["--attack", "fgsm", "--queries", "10"], "--queries"),
        (
            &["--attack", "apgd-ce", "--masking-checks"],
            "--masking-checks",
        ),
        (&["--attack", "autoattack", "--alpha", "0.01"], "--alpha"),
    ];
    for (args, mention) in cases {
        let mut all = vec!["--n", "5", "--eps", "0.1"];
        all.extend_from_slice(args);
        let out = nrpm_eval(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].starts_with("error: "), "{args:?}: {stderr}");
        assert!(
            lines[0].contains(mention),
            "{args:?} should mention {mention}: {stderr}"
        );
    }
}
