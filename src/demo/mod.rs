//! The demo (`nrpm demo`, and `cargo run --release` with no arguments): train a plain MLP on
//! the MNIST subset shipped in the repository, reprogram it with NRPM (Paradigms 1 and 2),
//! attack every variant, and write a report a person can read.
//!
//! ```text
//! 1 load     first train_n of data/mnist-subset/train (5 000), first test_n of …/test (1 000)
//! 2 LPM      784-256-64-10 MLP, no activation (mlp3), trained from scratch, clean loss
//! 3 P1       y = λ·z⁰ + (1 − λ)·zᴷ + b in fc1, fc2, fc3, λ fixed  (L1: w = 1/(r + ε), K steps)
//! 4 P2       λ_l = sigmoid(θ_l) per layer, θ trained on mean CE(x) + mean CE(FGSM(x)), weights frozen
//! 5 attack   every variant: FGSM and PGD-L∞ at each ε, and PGD-L∞ whose gradients come from
//!            the same weights with every layer LPM (BPDA-style check for gradient masking);
//!            accuracy = #{correct before and after}/n with its 95 % Clopper–Pearson interval
//! 6 certify  LPM and P2: randomized smoothing (certified accuracy vs L2 radius) and the bracket
//!            (verified beside attacked accuracy at each L∞ ε; `certification.rs`)
//! 7 curve    one fc1 neuron o on one test image: terms t_d = x_d·W[o, d], d = 1..784; term j
//!            moved over a grid; output of LPM, NRPM (λ = 0), the learned hybrid, and LAD
//! ```
//!
//! Files: [`config`](mod@config) ([`DemoConfig`]: the full run, `--quick`), `run.rs`
//! ([`run`]: the stages), `influence.rs` (stage 6), `tables.rs` (the printed and Markdown
//! tables), `charts.rs` (the SVG plots), `page.rs` (`report.md`), `files.rs`
//! ([`write_report`]: `report.json`, `report.md`, the SVGs). Library code never prints; [`run`] reports through a
//! [`Progress`](nrpm::progress::Progress).
//!
//! ```no_run
//! # fn main() -> nrpm::Result<()> {
//! use nrpm::demo::{run, write_report, DemoConfig};
//! let report = run(&DemoConfig::quick(0), &mut nrpm::progress::Silent)?;
//! print!("{}", report.text_table());
//! write_report(std::path::Path::new("report"), &report, "nrpm demo --quick")?;
//! # Ok(()) }
//! ```

pub mod certification;
mod charts;
pub mod config;
mod files;
mod influence;
mod page;
mod run;
mod tables;

use serde::{Deserialize, Serialize};

pub use certification::Certification;
pub use config::{DemoConfig, SgdRun};
pub use files::{check_writable, write_report, FILES};
pub use influence::InfluenceCurve;
pub use run::run;

use nrpm::report::stats::Proportion;
use nrpm::train::TrainReport;

/// Accuracy under one attack at one budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The L∞ budget ε (0: no attack, the clean accuracy).
    pub eps: f64,
    /// Images correct before and after the attack, of n, with the 95 % interval.
    pub accuracy: Proportion,
    /// Wall time of the attack and of classifying its images (ε = 0: the clean pass).
    pub seconds: f64,
}

/// One model of the comparison and its figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// Display name (`LPM`, `P1 λ=0.7`, `P2 learned λ`).
    pub name: String,
    /// The paper's paradigm number, `None` for the plain LPM model.
    pub paradigm: Option<u8>,
    /// `(layer, λ)` of every layer (1 = LPM).
    pub lambdas: Vec<(String, f64)>,
    /// Clean accuracy on the test images.
    pub clean: Proportion,
    /// FGSM at each budget of the configuration.
    pub fgsm: Vec<Point>,
    /// PGD-L∞ at each budget of the configuration (white box: the variant's own gradients).
    pub pgd: Vec<Point>,
    /// The same PGD-L∞, its gradients taken from the same weights with every layer LPM (a
    /// BPDA-style check: robustness that comes only from hard-to-follow NRPM gradients, i.e.
    /// gradient masking, disappears here). Equal to `pgd` for the LPM model.
    pub bpda: Vec<Point>,
    /// AutoAttack (standard suite) on the first `autoattack_n` test images: the clean pass on
    /// those images at ε = 0, then each of `autoattack_budgets`.
    pub autoattack: Vec<Point>,
}

/// Wall time of one stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageTime {
    /// What ran.
    pub stage: String,
    /// Seconds.
    pub seconds: f64,
}

/// Where the run happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model, logical cores, OS and architecture ([`nrpm::report::machine`]).
    pub description: String,
    /// Threads of rayon's pool (the parallel loops).
    pub threads: usize,
    /// 1-, 5- and 15-minute load averages at the start (Linux `/proc/loadavg`).
    pub load_before: Option<[f64; 3]>,
    /// The same at the end.
    pub load_after: Option<[f64; 3]>,
}

/// Everything a demo run measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DemoReport {
    /// The settings.
    pub config: DemoConfig,
    /// `(name, images)` of the training data.
    pub train_data: (String, usize),
    /// `(name, images)` of the test data.
    pub test_data: (String, usize),
    /// The plain LPM training from scratch.
    pub lpm_training: TrainReport,
    /// Paradigm 2's λ training (its `before`/`after` λ are the λ chart).
    pub paradigm2_training: TrainReport,
    /// LPM, the Paradigm 1 grid and Paradigm 2, in that order.
    pub variants: Vec<Variant>,
    /// The influence curves of one fc1 neuron.
    pub influence: InfluenceCurve,
    /// Smoothing curves and brackets of LPM and Paradigm 2.
    pub certification: Certification,
    /// Wall time per stage.
    pub timings: Vec<StageTime>,
    /// Wall time of [`run`].
    pub seconds: f64,
    /// The machine.
    pub machine: Machine,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The quick configuration, smaller still (this runs three times in a debug build).
    fn tiny(seed: u64) -> DemoConfig {
        DemoConfig {
            test_n: 20,
            paradigm2_train_n: 40,
            budgets: vec![0.0, 0.2],
            pgd_steps: 2,
            ..DemoConfig::quick(seed)
        }
    }

    /// Every figure of a report, without its timings.
    fn figures(r: &DemoReport) -> Value {
        let mut v = serde_json::json!({
            "variants": r.variants,
            "lpm_losses": r.lpm_training.history.iter().map(|e| e.loss).collect::<Vec<_>>(),
            "lambdas": r.paradigm2_training.after.lambdas,
            "influence": r.influence,
            "certification": r.certification,
        });
        for variant in v["variants"].as_array_mut().unwrap() {
            for attack in ["fgsm", "pgd", "bpda", "autoattack"] {
                for p in variant[attack].as_array_mut().unwrap() {
                    p["seconds"] = Value::Null;
                }
            }
        }
        for part in ["smoothing", "brackets"] {
            for c in v["certification"][part].as_array_mut().unwrap() {
                c["seconds"] = Value::Null;
                c["samples_per_second"] = Value::Null;
            }
        }
        v
    }

    #[test]
    fn same_seed_gives_the_same_figures() {
        let run = |cfg: &DemoConfig| run(cfg, &mut nrpm::progress::Silent).unwrap();
        let (a, b) = (run(&tiny(5)), run(&tiny(5)));
        assert_eq!(figures(&a), figures(&b));
        // Another seed trains another LPM model (the cheapest stage to compare, so the rest of
        // this run is cut to the minimum).
        let c = run(&DemoConfig {
            paradigm1_lambdas: vec![],
            test_n: 2,
            paradigm2_train_n: 2,
            autoattack_n: 2,
            smoothing_n: 2,
            bracket_n: 2,
            ..tiny(6)
        });
        assert_ne!(figures(&a)["lpm_losses"], figures(&c)["lpm_losses"]);
    }
}
