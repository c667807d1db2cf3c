//! `nrpm demo` end to end: the quick run writes every report file (JSON with the expected
//! fields, Markdown with the tables and images, well-formed SVGs), and bad input fails with
//! one line. (Same seed, same figures: the unit tests of `src/demo/mod.rs`.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Every file a demo report has.
const FILES: [&str; 9] = [
    "report.json",
    "report.md",
    "robust_fgsm.svg",
    "robust_pgd.svg",
    "robust_pgd_lpm_gradients.svg",
    "lambdas.svg",
    "influence.svg",
    "certified_smoothing.svg",
    "bracket.svg",
];

fn nrpm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nrpm"))
        .args(args)
        .output()
        .expect("the nrpm binary runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nrpm-demo-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    dir
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Checks that `svg` is one `<svg>` element whose tags nest properly, with entities escaped;
/// returns the element names in order.
fn svg_elements(svg: &str) -> Vec<String> {
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg:.80}"
    );
    assert!(svg.trim_end().ends_with("</svg>"));
    for (i, _) in svg.match_indices('&') {
        let rest = &svg[i..];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;"]
                .iter()
                .any(|e| rest.starts_with(e)),
            "unescaped & at {i}"
        );
    }
    let (mut stack, mut names) = (Vec::new(), Vec::new());
    for tag in svg
        .split('<')
        .skip(1)
        .map(|t| &t[..t.find('>').expect("tag closes")])
    {
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(!name.is_empty(), "empty tag <{tag}>");
        names.push(name.clone());
        if !tag.ends_with('/') {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed {stack:?}");
    names
}

#[test]
fn quick_demo_writes_a_readable_report() {
    let dir = temp_dir("quick");
    let out = nrpm(&[
        "demo",
        "--quick",
        "--seed",
        "3",
        "--out",
        dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("FGSM") && stdout.contains("PGD-3") && stdout.contains("P2 learned λ"));
    assert!(
        stdout
            .trim_end()
            .lines()
            .last()
            .unwrap()
            .contains("report.md"),
        "{stdout}"
    );
    for file in FILES {
        assert!(dir.join(file).is_file(), "{file} missing");
    }

    let json: Value = serde_json::from_str(&read(&dir, "report.json")).unwrap();
    assert_eq!(json["seed"], 3);
    assert_eq!(json["quick"], true);
    assert_eq!(
        json["command"],
        format!("nrpm demo --out {} --seed 3 --quick", dir.display())
    );
    assert_eq!(json["settings"]["nrpm"]["k"], 1);
    assert_eq!(json["settings"]["evaluation"]["pgd"]["steps"], 3);
    assert_eq!(json["data"]["test"]["n"], 50);
    let variants = json["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 3); // LPM, P1 λ=0.7, P2
    for v in variants {
        for attack in ["fgsm", "pgd", "bpda"] {
            let points = v[attack].as_array().unwrap();
            assert_eq!(points.len(), 3);
            for p in points {
                let a = &p["accuracy"];
                let (k, n) = (a["k"].as_u64().unwrap(), a["n"].as_u64().unwrap());
                assert_eq!(n, 50);
                assert!(k <= n && a["lo"].as_f64().unwrap() <= a["hi"].as_f64().unwrap());
            }
        }
    }
    // AutoAttack on the first 5 images at ε = 0.1: the clean pass on them, then the suite (an
    // image counts only when it is also classified correctly).
    for v in variants {
        let aa = v["autoattack"].as_array().unwrap();
        assert_eq!(aa.len(), 2, "{v}");
        assert_eq!(
            (aa[0]["eps"].as_f64(), aa[1]["eps"].as_f64()),
            (Some(0.0), Some(0.1))
        );
        let k = |p: &Value| p["accuracy"]["k"].as_u64().unwrap();
        assert_eq!(aa[0]["accuracy"]["n"], 5);
        assert!(k(&aa[1]) <= k(&aa[0]));
    }
    // Certification of LPM and P2: smoothing at each radius (fewer certified at larger r),
    // and the bracket (verified ≤ attacked at every ε: no contradiction got through).
    let cert = &json["certification"];
    let curves = cert["smoothing"].as_array().unwrap();
    assert_eq!(curves.len(), 2);
    for c in curves {
        let k: Vec<u64> = c["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["accuracy"]["k"].as_u64().unwrap())
            .collect();
        assert_eq!(k.len(), 5);
        assert!(k.windows(2).all(|w| w[1] <= w[0]), "{k:?}");
    }
    let brackets = cert["brackets"].as_array().unwrap();
    assert_eq!(brackets[0]["method"], "crown");
    assert_eq!(brackets[1]["method"], "ibp");
    for b in brackets {
        for p in b["points"].as_array().unwrap() {
            let k = |w: &str| p[w]["k"].as_u64().unwrap();
            assert!(k("verified") <= k("attacked"), "{p}");
        }
    }
    assert_eq!(json["lambdas"]["after"].as_array().unwrap().len(), 3);
    assert_eq!(json["influence"]["terms"], 784);
    assert_eq!(json["influence"]["curves"].as_array().unwrap().len(), 4);
    assert!(json["timings"]["total_seconds"].as_f64().unwrap() > 0.0);
    assert!(json["machine"]["description"].is_string());

    let md = read(&dir, "report.md");
    for needle in [
        "| variant | λ (fc1, fc2, fc3) |",
        "](robust_fgsm.svg)",
        "](influence.svg)",
        "## Accuracy under AutoAttack (L∞)",
        "## Certification: lower bounds beside attacks",
        "](certified_smoothing.svg)",
        "](bracket.svg)",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle}");
    }
    for (file, element, at_least) in [
        ("robust_fgsm.svg", "polyline", 3),
        ("robust_pgd.svg", "polygon", 3),
        ("robust_pgd_lpm_gradients.svg", "polyline", 3),
        ("lambdas.svg", "rect", 1 + 6 + 2),
        ("influence.svg", "polyline", 4),
        ("certified_smoothing.svg", "polyline", 2),
        ("bracket.svg", "polyline", 4),
    ] {
        let names = svg_elements(&read(&dir, file));
        let count = names.iter().filter(|n| *n == element).count();
        assert!(count >= at_least, "{file}: {count} <{element}>");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_input_fails_with_one_line() {
    let dir = temp_dir("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    let file = file.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["demo", "--out", file, "--quick"], "a-file"),
        (&["demo", "--epochs", "0", "--quick"], "invalid epochs = 0"),
        (&["demo", "--pgd-steps", "0"], "PGD steps"),
        (&["demo", "--seed", "x"], "--seed"),
        (&["demo", "--bogus"], "--bogus"),
    ];
    for (args, needle) in cases {
        let out = nrpm(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
