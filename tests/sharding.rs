//! Sharded, resumable per-image runs (`--out`, `--shard`, Slurm and Kubernetes variables,
//! `--resume`, `nrpm merge`) give exactly the unsharded run's per-image results and totals;
//! bad shard flags, foreign records, overlaps and gaps are refused with one error line and no
//! record lost or rewritten.
//!
//! Runs on the shipped MNIST subset with initialised weights, so it needs nothing from
//! ../shared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const NRPM: &str = env!("CARGO_BIN_EXE_nrpm");
/// Scheduler variables the runs must not inherit (the test may itself run inside Slurm).
const SCHEDULER_VARS: [&str; 5] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_STEP",
    "SLURM_ARRAY_TASK_COUNT",
    "JOB_COMPLETION_INDEX",
];

/// A one-layer MLP trained for 2 epochs on the shipped subset (a second), in `dir`.
fn trained(dir: &Path) -> PathBuf {
    let args = format!(
        "train --model mlp1 --paradigm scratch --epochs 2 --lr 0.05 --eval-n 50 --out {}",
        dir.display()
    );
    let args: Vec<String> = args.split_whitespace().map(String::from).collect();
    ok(run(&args, &[], &[]));
    dir.join("model.safetensors")
}

/// A PGD evaluation of the model at `weights` reprogrammed with NRPM (L1, K = 3, λ = 0.5):
/// slow enough per batch to be killed mid-run, small enough for CI.
fn eval_args(weights: &Path, n: usize) -> Vec<String> {
    let args = format!(
        "eval --weights {} --norm l1 --k 3 --lambda 0.5 --attack pgd-linf \
         --eps 0,0.05,0.1 --steps 100 --seed 11 --n {n}",
        weights.display()
    );
    args.split_whitespace().map(String::from).collect()
}

fn command(args: &[String], extra: &[&str], env: &[(&str, String)]) -> Command {
    let mut c = Command::new(NRPM);
    c.args(args).args(extra);
    for v in SCHEDULER_VARS {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run(args: &[String], extra: &[&str], env: &[(&str, String)]) -> Output {
    command(args, extra, env).output().expect("nrpm runs")
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "nrpm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The one `error:` line of a refused run, which must exit 1.
fn refused(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "stderr: {stderr}");
    errors[0].to_string()
}

/// Per-image records of a folder, by image index, without the timings.
fn records(dir: &Path) -> BTreeMap<u64, Value> {
    let mut all = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.to_string_lossy().ends_with(".jsonl") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines().skip(1) {
            let mut r: Value = serde_json::from_str(line).unwrap();
            strip_seconds(&mut r);
            let i = r["index"].as_u64().unwrap();
            assert!(all.insert(i, r).is_none(), "image {i} twice in {dir:?}");
        }
    }
    all
}

/// The report's figures without the timings.
fn totals(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("report.json")).unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    strip_seconds(&mut v);
    v
}

fn strip_seconds(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.contains("seconds") && k != "time");
            m.values_mut().for_each(strip_seconds);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_seconds),
        _ => {}
    }
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nrpm-sharding-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Runs shard `index` of 4 (with `extra` flags) and SIGKILLs it once its records file holds
/// at least 2 records (and fewer than all of them), then resumes it; returns how many records
/// survived the kill.
fn killed_and_resumed(args: &[String], out: &Path, index: usize, extra: &[&str]) -> usize {
    let shard = format!("{index}/4");
    let o = s(out);
    let extra = [&["--out", &o, "--shard", &shard], extra].concat();
    let mut child = command(args, &extra, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let file = out.join(format!("records-{index}-of-4.jsonl"));
    let lines = || {
        std::fs::read_to_string(&file)
            .map(|t| t.lines().count().saturating_sub(1))
            .unwrap_or(0)
    };
    let start = Instant::now();
    while lines() < 2 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the shard ended before it was killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no record in 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let survived = lines();
    assert!(
        survived < args_n(args) / 4,
        "killed too late to test anything"
    );
    // A record cut short by the kill, as a kill inside a write would leave it.
    let mut text = std::fs::read_to_string(&file).unwrap();
    text += "{\"index\": 999, \"lab";
    std::fs::write(&file, text).unwrap();
    ok(run(args, &[extra.as_slice(), &["--resume"]].concat(), &[]));
    survived
}

fn args_n(args: &[String]) -> usize {
    let at = args.iter().position(|a| a == "--n").unwrap();
    args[at + 1].parse().unwrap()
}

/// The unsharded run and the merge of `dir`'s shards agree image by image and in total.
fn assert_same_as_whole(whole: &Path, dir: &Path, n: usize) {
    let report = dir.join("report");
    ok(Command::new(NRPM)
        .args(["merge", &s(dir), "--report", &s(&report)])
        .output()
        .unwrap());
    let (a, b) = (records(whole), records(dir));
    assert_eq!(a.len(), n);
    assert_eq!(a, b, "per-image results differ from the unsharded run's");
    assert_eq!(totals(whole), totals(&report), "totals differ");
}

#[test]
fn sharded_eval_with_a_kill_equals_the_unsharded_run() {
    let n = 120;
    let root = temp("eval");
    let args = eval_args(&trained(&root.join("model")), n);
    let whole = root.join("whole");
    ok(run(&args, &["--out", &s(&whole)], &[]));
    // The unsharded run's report is its records' report.
    let r = totals(&whole);
    assert_eq!(r["results"].as_array().unwrap().len(), 3);
    let robust = r["results"][2]["robust_correct"].as_u64().unwrap();
    assert!(
        robust < r["clean"]["correct"].as_u64().unwrap(),
        "PGD broke nothing: {r}"
    );

    let flag = root.join("flag");
    for i in [0, 1, 3] {
        let shard = format!("{i}/4");
        ok(run(
            &args,
            &["--out", &s(&flag), "--shard", &shard, "--batch-size", "7"],
            &[],
        ));
    }
    let survived = killed_and_resumed(&args, &flag, 2, &["--batch-size", "1"]);
    eprintln!("shard 2/4 kept {survived} records through SIGKILL");
    assert_same_as_whole(&whole, &flag, n);

    // A Slurm array that starts above 0 and has a step: --array=10-16:2.
    let slurm = root.join("slurm");
    for id in [10, 12, 14, 16] {
        let env = [
            ("SLURM_ARRAY_TASK_ID", id.to_string()),
            ("SLURM_ARRAY_TASK_MIN", "10".into()),
            ("SLURM_ARRAY_TASK_STEP", "2".into()),
            ("SLURM_ARRAY_TASK_COUNT", "4".into()),
        ];
        let out = ok(run(&args, &["--out", &s(&slurm), "--resume"], &env));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Slurm"),
            "which source was used is printed: {stderr}"
        );
    }
    assert_same_as_whole(&whole, &slurm, n);

    // A Kubernetes Indexed Job: JOB_COMPLETION_INDEX with --shards.
    let k8s = root.join("k8s");
    for index in 0..4 {
        let env = [("JOB_COMPLETION_INDEX", index.to_string())];
        ok(run(&args, &["--out", &s(&k8s), "--shards", "4"], &env));
    }
    assert_same_as_whole(&whole, &k8s, n);
    let _ = std::fs::remove_dir_all(&root);
}

/// Randomized smoothing (small n) of the model at `weights`, at two σ.
fn certify_args(weights: &Path, n: usize) -> Vec<String> {
    let args = format!(
        "certify --method smoothing --weights {} --sigma 0.25,0.5 --n0 50 --samples 20000 \
         --alpha 0.01 --seed 4 --n {n}",
        weights.display()
    );
    args.split_whitespace().map(String::from).collect()
}

#[test]
fn sharded_smoothing_with_a_kill_equals_the_unsharded_run() {
    let n = 48;
    let root = temp("certify");
    let args = certify_args(&trained(&root.join("model")), n);
    let whole = root.join("whole");
    ok(run(&args, &["--out", &s(&whole)], &[]));
    let r = totals(&whole);
    assert_eq!(
        r["results"].as_array().unwrap().len(),
        10,
        "2 σ × 5 radii: {r}"
    );

    let flag = root.join("flag");
    for i in [0, 2, 3] {
        let shard = format!("{i}/4");
        ok(run(
            &args,
            &["--out", &s(&flag), "--shard", &shard, "--batch", "777"],
            &[],
        ));
    }
    let survived = killed_and_resumed(&args, &flag, 1, &[]);
    eprintln!("shard 1/4 kept {survived} records through SIGKILL");
    assert_same_as_whole(&whole, &flag, n);

    let slurm = root.join("slurm");
    for id in [3, 4, 5, 6] {
        let env = [
            ("SLURM_ARRAY_TASK_ID", id.to_string()),
            ("SLURM_ARRAY_TASK_MIN", "3".into()),
            ("SLURM_ARRAY_TASK_STEP", "1".into()),
            ("SLURM_ARRAY_TASK_COUNT", "4".into()),
        ];
        ok(run(&args, &["--out", &s(&slurm), "--resume"], &env));
    }
    assert_same_as_whole(&whole, &slurm, n);

    let k8s = root.join("k8s");
    for index in 0..4 {
        let env = [("JOB_COMPLETION_INDEX", index.to_string())];
        let out = ok(run(&args, &["--out", &s(&k8s), "--shards", "4"], &env));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Kubernetes"),
            "which source was used is printed: {stderr}"
        );
    }
    assert_same_as_whole(&whole, &k8s, n);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bad_shards_and_foreign_records_are_refused_and_nothing_is_lost() {
    let root = temp("bad");
    let args = eval_args(&trained(&root.join("model")), 16);
    let out = root.join("out");
    let o = s(&out);
    for (shard, says) in [
        ("4/4", "below the count"),
        ("0/0", "at least 1"),
        ("two/4", "shard"),
        ("1-4", "shard"),
    ] {
        let line = refused(run(&args, &["--out", &o, "--shard", shard], &[]));
        assert!(line.contains(says), "--shard {shard}: {line}");
    }
    let line = refused(run(&args, &["--shard", "0/2"], &[]));
    assert!(line.contains("--out"), "{line}");
    let env = [("JOB_COMPLETION_INDEX", "7".to_string())];
    let line = refused(run(&args, &["--out", &o, "--shards", "4"], &env));
    assert!(line.contains("7/4") || line.contains("below"), "{line}");
    let env = [
        ("SLURM_ARRAY_TASK_ID", "9".to_string()),
        ("SLURM_ARRAY_TASK_MIN", "0".into()),
        ("SLURM_ARRAY_TASK_STEP", "1".into()),
        ("SLURM_ARRAY_TASK_COUNT", "4".into()),
    ];
    refused(run(&args, &["--out", &o], &env));

    // Two shards of 2; then a resume with other settings leaves the records as they were.
    for i in 0..2 {
        ok(run(
            &args,
            &["--out", &o, "--shard", &format!("{i}/2")],
            &[],
        ));
    }
    let file = out.join("records-0-of-2.jsonl");
    let before = std::fs::read(&file).unwrap();
    let mut other = args.clone();
    let eps = other.iter().position(|a| a == "--eps").unwrap();
    other[eps + 1] = "0,0.2".into();
    let line = refused(run(
        &other,
        &["--out", &o, "--shard", "0/2", "--resume"],
        &[],
    ));
    assert!(line.contains("settings"), "{line}");
    let line = refused(run(&args, &["--out", &o, "--shard", "0/2"], &[]));
    assert!(line.contains("--resume"), "{line}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "a refused run changed the records"
    );

    // Merge: a gap (one shard missing) is listed; an overlap (the same shard twice) refused.
    let gap = root.join("gap");
    std::fs::create_dir_all(&gap).unwrap();
    std::fs::copy(&file, gap.join("records-0-of-2.jsonl")).unwrap();
    let merge = |dirs: &[&Path]| {
        let mut c = Command::new(NRPM);
        c.arg("merge");
        for d in dirs {
            c.arg(d);
        }
        c.arg("--report").arg(root.join("report"));
        c.output().unwrap()
    };
    let line = refused(merge(&[&gap]));
    assert!(line.contains("missing") && line.contains('1'), "{line}");
    let line = refused(merge(&[&out, &gap]));
    assert!(line.contains("both") || line.contains("overlap"), "{line}");
    ok(merge(&[&out]));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn worst_case_over_separate_attack_runs_is_per_image() {
    let root = temp("worst");
    let weights = trained(&root.join("model"));
    let mut dirs = Vec::new();
    for (name, attack) in [("fgsm", "fgsm"), ("pgd", "pgd-linf")] {
        let mut args = eval_args(&weights, 60);
        let at = args.iter().position(|a| a == "--attack").unwrap();
        args[at + 1] = attack.into();
        if attack == "fgsm" {
            let steps = args.iter().position(|a| a == "--steps").unwrap();
            args.drain(steps..steps + 2);
        }
        let dir = root.join(name);
        // The PGD run is sharded, the FGSM run is not: both are whole runs.
        match attack {
            "fgsm" => ok(run(&args, &["--out", &s(&dir)], &[])),
            _ => {
                for i in 0..2 {
                    ok(run(
                        &args,
                        &["--out", &s(&dir), "--shard", &format!("{i}/2")],
                        &[],
                    ));
                }
                ok(run(&args, &["--out", &s(&root.join("pgd-whole"))], &[]))
            }
        };
        dirs.push(dir);
    }
    let report = root.join("worst");
    ok(Command::new(NRPM)
        .args([
            "merge",
            "--worst-case",
            &s(&dirs[0]),
            &s(&dirs[1]),
            "--report",
            &s(&report),
        ])
        .output()
        .unwrap());
    let text = std::fs::read_to_string(report.join("report.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let (fgsm, pgd) = (records(&dirs[0]), records(&root.join("pgd-whole")));
    for b in 0..3 {
        let both = fgsm
            .iter()
            .filter(|(i, r)| r["robust_correct"][b] == true && pgd[i]["robust_correct"][b] == true)
            .count() as u64;
        assert_eq!(v["worst_case"]["robust_correct"][b], both, "budget {b}");
        let broken: u64 = v["worst_case"]["broken_by"][b]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum();
        assert_eq!(broken, v["clean_correct"].as_u64().unwrap() - both);
    }
    // Runs of different budgets are not one model's worst case.
    let mut other = eval_args(&weights, 60);
    let eps = other.iter().position(|a| a == "--eps").unwrap();
    other[eps + 1] = "0,0.2".into();
    ok(run(&other, &["--out", &s(&root.join("other"))], &[]));
    let out = Command::new(NRPM)
        .args([
            "merge",
            "--worst-case",
            &s(&dirs[0]),
            &s(&root.join("other")),
        ])
        .output()
        .unwrap();
    assert!(refused(out).contains("budgets"));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn records_give_the_figures_of_the_run_without_them() {
    let root = temp("same");
    let weights = trained(&root.join("model"));
    for attack in ["apgd-ce", "pgd-linf"] {
        let mut args = eval_args(&weights, 24);
        let at = args.iter().position(|a| a == "--attack").unwrap();
        args[at + 1] = attack.into();
        let steps = args.iter().position(|a| a == "--steps").unwrap();
        args[steps + 1] = "10".into();
        args.extend(["--gradients-from".into(), "lpm".into()]);
        let json = root.join(format!("{attack}.json"));
        let out = root.join(attack);
        ok(run(&args, &["--json", &s(&json)], &[]));
        ok(run(&args, &["--out", &s(&out)], &[]));
        let plain: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let recorded = totals(&out);
        for b in 0..3 {
            assert_eq!(
                plain["results"][b]["robust_correct"], recorded["results"][b]["robust_correct"],
                "{attack}, budget {b}: --out changed the figures"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}
