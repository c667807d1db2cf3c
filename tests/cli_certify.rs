//! `nrpm certify`: bad input gets one `error:` line and exit 1 (σ ≤ 0, n0 or n = 0, α outside
//! (0, 1), negative radii, ε or pixel counts, flags of another method, a model the method
//! cannot bound); smoothing and the bracket write the JSON the issue specifies.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn nrpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nrpm"))
        .args(args)
        .output()
        .expect("the nrpm binary runs")
}

/// Expects exit code 1 with exactly one `error:` line mentioning `needle`, and no panic.
fn fails(args: &[&str], needle: &str) {
    let out = nrpm(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "nrpm {args:?}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "nrpm {args:?}: {stderr}");
    assert!(
        lines[0].contains(needle),
        "nrpm {args:?} should mention '{needle}': {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("nrpm-cli-certify-{name}-{}", std::process::id()))
}

#[test]
fn bad_input_is_one_error_line() {
    let s = ["certify", "--method", "smoothing", "--n", "2"];
    let with = |extra: &[&'static str]| [&s[..], extra].concat();
    fails(&with(&["--sigma", "0"]), "sigma");
    fails(&with(&["--sigma=-0.5"]), "sigma");
    fails(&with(&["--n0", "0"]), "n0");
    fails(&with(&["--samples", "0"]), "samples");
    fails(&with(&["--alpha", "0"]), "alpha");
    fails(&with(&["--alpha", "1.5"]), "alpha");
    fails(&with(&["--radii", "0,-1"]), "radii");
    fails(&with(&["--eps", "0.1"]), "--eps");
    fails(&with(&["--skip", "0"]), "skip");
    let b = ["certify", "--method", "ibp", "--n", "2"];
    fails(&[&b[..], &["--eps=-0.1"]].concat(), "eps");
    fails(&[&b[..], &["--sigma", "0.25"]].concat(), "--sigma");
    fails(
        &["certify", "--method", "l0", "--n", "2", "--pixels=-1"],
        "pixels",
    );
    fails(
        &["certify", "--method", "l0", "--n", "2", "--pixels", "1.5"],
        "pixels",
    );
    fails(&["certify", "--method", "magic", "--n", "2"], "magic");
    // K IRLS steps have no ℓ0 certificate (their robust part is not a median).
    fails(
        &[
            "certify", "--method", "l0", "--n", "2", "--norm", "l1", "--k", "3",
        ],
        "cannot certify",
    );
}

#[test]
fn smoothing_writes_json_tsv_markdown_and_svg() {
    let (json, tsv, md, svg) = (temp("s.json"), temp("s.tsv"), temp("s.md"), temp("s.svg"));
    let args = [
        "certify",
        "--method",
        "smoothing",
        "--n",
        "4",
        "--samples",
        "200",
        "--n0",
        "20",
        "--sigma",
        "0.25,0.5",
        "--radii",
        "0,0.5",
        "--batch",
        "64",
    ];
    let paths = [
        "--json",
        json.to_str().unwrap(),
        "--tsv",
        tsv.to_str().unwrap(),
        "--markdown",
        md.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ];
    let out = nrpm(&[&args[..], &paths[..]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4); // 2 σ × 2 radii
    for r in results {
        let (pct, count) = (
            r["certified_accuracy"].as_f64().unwrap(),
            r["certified"].as_u64().unwrap(),
        );
        assert!((pct - 100.0 * count as f64 / 4.0).abs() < 1e-9 && r["budget"].is_number());
    }
    assert!(std::fs::read_to_string(&tsv)
        .unwrap()
        .contains("idx\tlabel\tpredict\tradius\tcorrect\ttime"));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    assert!(std::fs::read_to_string(&md)
        .unwrap()
        .contains("certified %"));
    for p in [json, tsv, md, svg] {
        std::fs::remove_file(p).ok();
    }
}

#[test]
fn bracket_json_has_results_per_budget() {
    let json = temp("b.json");
    let out = nrpm(&[
        "certify",
        "--method",
        "crown",
        "--n",
        "3",
        "--eps",
        "0,0.01",
        "--attack-steps",
        "5",
        "--restarts",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        assert!(
            r["budget"].is_number()
                && r["certified_accuracy"].is_number()
                && r["certified"].is_number()
        );
    }
    std::fs::remove_file(json).ok();
}
