//! `nrpm demo` (also what `nrpm` and `cargo run --release` do without a subcommand): train the
//! authors' MLP on the shipped MNIST subset, reprogram it with NRPM (Paradigms 1 and 2), attack
//! every variant with FGSM and PGD, print the table and write a report folder. The work is in
//! [`crate::demo`]; this file maps flags to a [`DemoConfig`].

use std::path::PathBuf;

use clap::Args;

use crate::cli::bar::Bar;
use crate::demo::{self, check_writable, write_report, DemoConfig};
use nrpm::error::Result;

/// The report folder when `--out` is not given.
pub const DEFAULT_OUT: &str = "report";

/// Train, reprogram and attack an MNIST MLP; write report.md, report.json and SVG plots.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DemoArgs {
    /// Folder of the report (created if needed; files in it are replaced).
    #[arg(long, default_value = DEFAULT_OUT)]
    pub out: PathBuf,
    /// Seed of the initial weights, the shuffling and the attacks' random starts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Epochs of the plain LPM training [default: 10; with --quick: 3].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Epochs of Paradigm 2 (learning λ) [default: 2; with --quick: 1].
    #[arg(long)]
    pub p2_epochs: Option<usize>,
    /// PGD steps [default: 20; with --quick: 3].
    #[arg(long)]
    pub pgd_steps: Option<usize>,
    /// A smoke run of every stage on few images (1 000 training, 100 for Paradigm 2, 50 test)
    /// with fewer epochs, budgets and PGD steps: under a second, figures too noisy to read.
    #[arg(long)]
    pub quick: bool,
}

impl Default for DemoArgs {
    /// The flags' defaults: what `nrpm` with no subcommand runs.
    fn default() -> Self {
        Self {
            out: DEFAULT_OUT.into(),
            seed: 0,
            epochs: None,
            p2_epochs: None,
            pgd_steps: None,
            quick: false,
        }
    }
}

impl DemoArgs {
    /// The demo's settings: [`DemoConfig::full`] or [`DemoConfig::quick`], with the flags
    /// that were given.
    pub fn config(&self) -> DemoConfig {
        let mut cfg = match self.quick {
            true => DemoConfig::quick(self.seed),
            false => DemoConfig::full(self.seed),
        };
        cfg.scratch.epochs = self.epochs.unwrap_or(cfg.scratch.epochs);
        cfg.paradigm2.epochs = self.p2_epochs.unwrap_or(cfg.paradigm2.epochs);
        cfg.pgd_steps = self.pgd_steps.unwrap_or(cfg.pgd_steps);
        cfg
    }

    /// The command line that reproduces the run (every flag that changes a figure).
    pub fn command(&self) -> String {
        let mut cmd = format!(
            "nrpm demo --out {} --seed {}",
            self.out.display(),
            self.seed
        );
        let optional = [
            ("--epochs", self.epochs),
            ("--p2-epochs", self.p2_epochs),
            ("--pgd-steps", self.pgd_steps),
        ];
        for (flag, value) in optional {
            if let Some(v) = value {
                cmd += &format!(" {flag} {v}");
            }
        }
        if self.quick {
            cmd += " --quick";
        }
        cmd
    }
}

/// Runs `nrpm demo`: checks the settings and the report folder first, then runs the stages
/// (progress on stderr), prints the table and writes the report.
///
/// # Errors
/// Invalid settings (e.g. `--epochs 0`), a report folder that cannot be written, and the
/// errors of [`demo::run`].
pub fn run(args: DemoArgs) -> Result<()> {
    let cfg = args.config();
    cfg.validate()?;
    check_writable(&args.out)?;
    let report = demo::run(&cfg, &mut Bar::default())?;
    print!("{}", report.text_table());
    write_report(&args.out, &report, &args.command())?;
    println!(
        "demo done in {:.1} s; report written to {} (with report.json and {} SVG plots)",
        report.seconds,
        args.out.join("report.md").display(),
        demo::FILES.len() - 2
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_chosen_configuration() {
        let args = DemoArgs {
            quick: true,
            epochs: Some(4),
            pgd_steps: Some(2),
            seed: 9,
            ..DemoArgs::default()
        };
        let cfg = args.config();
        assert_eq!((cfg.seed, cfg.scratch.epochs, cfg.pgd_steps), (9, 4, 2));
        assert_eq!(cfg.paradigm2.epochs, DemoConfig::quick(9).paradigm2.epochs);
        assert_eq!(
            args.command(),
            "nrpm demo --out report --seed 9 --epochs 4 --pgd-steps 2 --quick"
        );
        assert_eq!(DemoArgs::default().config(), DemoConfig::full(0));
    }
}
