//! Writing the demo's report folder: `report.json` (every setting, seed, figure, timing and
//! the machine), `report.md` (see `page.rs`) and the SVG plots (see `charts.rs`).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::demo::certification;
use crate::demo::charts::{accuracy_chart, influence_chart, lambda_chart};
use crate::demo::page::markdown;
use crate::demo::tables::AttackKind;
use crate::demo::DemoReport;
use nrpm::error::{Error, Result};
use nrpm::report::write_file;

/// The files [`write_report`] writes, in order.
pub const FILES: [&str; 9] = [
    "report.json",
    "report.md",
    "robust_fgsm.svg",
    "robust_pgd.svg",
    "robust_pgd_lpm_gradients.svg",
    "lambdas.svg",
    "influence.svg",
    certification::SMOOTHING_SVG,
    certification::BRACKET_SVG,
];

/// Creates `dir` if needed and checks that a file can be written in it (a probe file is
/// written and removed), so that a bad `--out` fails before minutes of work.
///
/// # Errors
/// [`Error::Io`] naming the folder or the probe file.
pub fn check_writable(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let probe = dir.join(".nrpm-demo-write-check");
    std::fs::write(&probe, b"").map_err(|e| Error::io(&probe, e))?;
    std::fs::remove_file(&probe).map_err(|e| Error::io(&probe, e))
}

/// Writes [`FILES`] into `dir` (created if needed); `command` is the command line that
/// reproduces the run, recorded in both reports. Returns the paths written.
///
/// # Errors
/// [`Error::Io`] naming the file that could not be written.
pub fn write_report(dir: &Path, report: &DemoReport, command: &str) -> Result<Vec<PathBuf>> {
    let json = serde_json::to_string_pretty(&report_json(report, command))
        .expect("JSON values always serialise");
    let contents = [
        json + "\n",
        markdown(report, command),
        accuracy_chart(report, AttackKind::Fgsm),
        accuracy_chart(report, AttackKind::Pgd),
        accuracy_chart(report, AttackKind::Bpda),
        lambda_chart(report),
        influence_chart(report),
        certification::smoothing_chart(&report.certification, &report.config),
        certification::bracket_chart(&report.certification),
    ];
    FILES
        .iter()
        .zip(contents)
        .map(|(name, text)| {
            let path = dir.join(name);
            write_file(&path, &text)?;
            Ok(path)
        })
        .collect()
}

/// `report.json`: settings (the demo's and the derived training and attack settings), data,
/// training histories, every variant's figures (k of n with intervals), λ, the influence
/// curves, timings and the machine.
fn report_json(report: &DemoReport, command: &str) -> Value {
    let cfg = &report.config;
    let p2 = &report.paradigm2_training;
    json!({
        "command": command,
        "nrpm_version": env!("CARGO_PKG_VERSION"),
        "seed": cfg.seed,
        "quick": cfg.quick,
        "settings": {
            "demo": cfg,
            "model": {
                "name": "mlp3", "sizes": [784, 256, 64, 10], "activation": "none",
                "init": "PyTorch default U(−1/√fan_in, 1/√fan_in), seeded", "init_seed": cfg.seed,
            },
            "lpm_training": cfg.scratch_train().to_json(true),
            "nrpm": { "norm": "l1", "k": cfg.nrpm_k, "eps": cfg.nrpm_eps, "layers": ["fc1", "fc2", "fc3"] },
            "paradigm1": { "lambdas": cfg.paradigm1_lambdas, "lambda_param": "raw" },
            "paradigm2": {
                "training": cfg.paradigm2_train().to_json(true),
                "lambda0": cfg.paradigm2_lambda0, "lambda_param": "sigmoid",
            },
            "evaluation": {
                "budgets": cfg.budgets, "norm": "linf",
                "fgsm": "x' = clip01(x + ε·sign(∇x CE))",
                "pgd": { "steps": cfg.pgd_steps, "alpha": "2.5*eps/steps", "random_start": true },
                "bpda": "the same PGD with gradients from the same weights with every layer LPM (attacks::evaluate_transfer)",
                "autoattack": { "images": cfg.autoattack_n, "budgets": cfg.autoattack_budgets,
                    "suite": "APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5000 queries); 100 steps, 1 restart" },
                "batch_size": cfg.eval_batch, "seed": cfg.seed,
                "counting": "correct before and after the attack, over all n images; ε = 0 is the clean pass",
                "interval": "95 % Clopper–Pearson",
            },
        },
        "data": {
            "train": { "name": report.train_data.0, "n": report.train_data.1 },
            "test": { "name": report.test_data.0, "n": report.test_data.1 },
        },
        "training": { "lpm": report.lpm_training, "paradigm2": p2 },
        "variants": report.variants,
        "lambdas": { "before": p2.before.lambdas, "after": p2.after.lambdas },
        "influence": report.influence,
        "certification": report.certification,
        "timings": { "stages": report.timings, "total_seconds": report.seconds },
        "machine": report.machine,
        "files": FILES,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::tables::tests::sample_report;

    #[test]
    fn json_holds_settings_figures_and_timings() {
        let v = report_json(&sample_report(), "nrpm demo --quick");
        assert_eq!(v["command"], "nrpm demo --quick");
        assert_eq!(v["settings"]["nrpm"]["k"], 1);
        assert_eq!(v["variants"][0]["fgsm"][1]["accuracy"]["k"], 5);
        assert!(
            v["variants"][1]["pgd"][2]["accuracy"]["hi"]
                .as_f64()
                .unwrap()
                > 0.0
        );
        assert_eq!(v["lambdas"]["after"][0][1], 0.5);
        assert!(v["timings"]["stages"].is_array() && v["machine"]["threads"].is_number());
    }

    #[test]
    fn writes_every_file_and_rejects_an_unwritable_folder() {
        let dir = std::env::temp_dir().join(format!("nrpm-demo-files-{}", std::process::id()));
        check_writable(&dir).unwrap();
        let written = write_report(&dir, &sample_report(), "nrpm demo").unwrap();
        assert_eq!(written.len(), FILES.len());
        assert!(written.iter().all(|p| p.is_file()));
        assert!(!dir.join(".nrpm-demo-write-check").exists());
        let file = dir.join("report.md");
        assert!(matches!(check_writable(&file), Err(Error::Io { .. })));
        std::fs::remove_dir_all(&dir).ok();
    }
}
