//! The `nrpm` command line: one file per subcommand, each with its clap `Args` struct (doc
//! comments are the help text) and a `run` function returning [`crate::Result`].

use clap::{Args, Parser, Subcommand};

use crate::error::Result;
use crate::nrpm::{Norm, NrpmConfig};

pub mod analyze;
pub mod apply;
pub mod common;
pub mod demo;
pub mod eval;
pub mod reproduce;
pub mod train;

/// Nonlinear robust pattern matching: robustness reprogramming of neural layers.
#[derive(Debug, Parser)]
#[command(name = "nrpm", version, about, long_about = None)]
pub struct Cli {
    /// What to do (none: `demo` with its defaults).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train an MNIST MLP, reprogram it (paradigms 1, 2), attack it, write a report (default).
    Demo(demo::DemoArgs),
    /// Run the NRPM operator (and its gradient) on tensors from a safetensors file.
    Apply(apply::ApplyArgs),
    /// Sensitivity curve, breakdown point and IRLS objective of one output (LPM, NRPM, LAD);
    /// ‖W‖₂ and ‖W‖∞ of a checkpoint's layers.
    Analyze(analyze::AnalyzeArgs),
    /// Robust accuracy of a (reprogrammed) model under an attack at a list of budgets.
    Eval(eval::EvalArgs),
    /// Reprogram a trained model (paradigms 1–3) or train one from scratch.
    Train(train::TrainArgs),
    /// The paper's experiments on the authors' checkpoints, our numbers beside the paper's.
    Reproduce(reproduce::ReproduceArgs),
}

/// Runs one parsed command line.
///
/// # Errors
/// Whatever the subcommand returns; `main` prints it as one line and exits with status 1.
pub fn run(cli: Cli) -> Result<()> {
    match cli
        .command
        .unwrap_or_else(|| Command::Demo(demo::DemoArgs::default()))
    {
        Command::Demo(args) => demo::run(args),
        Command::Apply(args) => apply::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Train(args) => train::run(args),
        Command::Reproduce(args) => reproduce::run(args),
    }
}

/// The operator flags shared by the subcommands that configure one NRPM operator.
#[derive(Debug, Clone, Args)]
pub struct OperatorArgs {
    /// Robust norm: lpm | l1 | huber | mcp | hm.
    #[arg(long, default_value = "l1")]
    pub norm: String,
    /// IRLS steps K.
    #[arg(long, default_value_t = 3)]
    pub k: usize,
    /// ε in the weight 1/(r + ε).
    #[arg(long, default_value_t = 1e-3)]
    pub eps: f64,
    /// λ: the LPM share of the output (1 = plain layer, 0 = pure NRPM).
    #[arg(long, default_value_t = 0.0)]
    pub lambda: f64,
    /// γ of the mcp and hm norms.
    #[arg(long, default_value_t = crate::nrpm::norm::DEFAULT_GAMMA)]
    pub gamma: f64,
    /// δ of the huber and hm norms.
    #[arg(long, default_value_t = crate::nrpm::norm::DEFAULT_DELTA)]
    pub delta: f64,
    /// Split the D terms into this many equal groups (the authors' N).
    #[arg(long, default_value_t = 1)]
    pub group: usize,
}

impl OperatorArgs {
    /// The validated operator configuration.
    ///
    /// # Errors
    /// [`crate::Error::UnknownName`] for an unknown norm, [`crate::Error::Config`] for values
    /// out of range.
    pub fn config(&self) -> Result<NrpmConfig> {
        let norm = Norm::from_name(&self.norm, self.gamma, self.delta)?;
        NrpmConfig::new(norm, self.k, self.eps, self.lambda)?.with_groups(self.group)
    }
}

/// Writes `value` as pretty JSON to `path` (creating its folder).
///
/// # Errors
/// [`crate::Error::Io`] if the file cannot be written.
pub fn write_json(path: &std::path::Path, value: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    }
    let text = serde_json::to_string_pretty(value).expect("JSON values always serialise");
    std::fs::write(path, text + "\n").map_err(|e| crate::Error::io(path, e))
}
