//! The `nrpm` command line: one file per subcommand, each with its clap `Args` struct (doc
//! comments are the help text) and a `run` function returning [`nrpm::Result`].

use clap::{Args, Parser, Subcommand};

use nrpm::error::Result;
use nrpm::NrpmConfig;

pub mod analyze;
pub mod apply;
pub mod bar;
pub mod certify;
pub mod common;
pub mod demo;
pub mod eval;
pub mod merge;
pub mod model_args;
pub mod reproduce;
pub mod sharded;
pub mod strong;
pub mod train;
pub mod worst_case;

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
    /// Certified robustness: randomized smoothing (L2 radii), or interval / CROWN / ℓ0 bounds
    /// beside the strongest attack (the robustness bracket).
    Certify(certify::CertifyArgs),
    /// Merge the records of a sharded run (Slurm array, Kubernetes Indexed Job, --shard) into
    /// the report of the unsharded run.
    Merge(merge::MergeArgs),
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
        Command::Certify(args) => certify::run(args),
        Command::Merge(args) => merge::run(args),
    }
}

/// The operator flags shared by the subcommands that configure one NRPM operator (`analyze`,
/// `apply`); names and defaults are those of the model flags of `eval` and `train`.
#[derive(Debug, Clone, Default, Args)]
pub struct OperatorArgs {
    /// Robust norm: lpm | l1 | huber | mcp | hm [default: l1].
    #[arg(long)]
    pub norm: Option<String>,
    /// IRLS steps K [default: 3].
    #[arg(long)]
    pub k: Option<usize>,
    /// ε of the IRLS weight 1/(r + ε) [default: 1e-3].
    #[arg(long)]
    pub eps_irls: Option<f64>,
    /// λ: the LPM share of the output (1 = plain layer, 0 = pure NRPM) [default: 0].
    #[arg(long)]
    pub lambda: Option<f64>,
    /// γ of the mcp and hm norms [default: 4].
    #[arg(long)]
    pub gamma: Option<f64>,
    /// δ of the huber and hm norms [default: 3].
    #[arg(long)]
    pub delta: Option<f64>,
    /// Split the D terms into this many equal groups (the authors' N) [default: 1].
    #[arg(long)]
    pub group: Option<usize>,
}

impl OperatorArgs {
    /// Whether any operator flag was given.
    pub fn any_given(&self) -> bool {
        self.norm.is_some()
            || self.k.is_some()
            || self.eps_irls.is_some()
            || self.lambda.is_some()
            || self.gamma.is_some()
            || self.delta.is_some()
            || self.group.is_some()
    }

    /// The validated operator configuration: the flags given, the rest from `base` (or
    /// [`NrpmConfig::default`]).
    ///
    /// # Errors
    /// [`nrpm::Error::UnknownName`] for an unknown norm, [`nrpm::Error::Config`] for values
    /// out of range, [`nrpm::Error::Flag`] for a γ or δ the norm does not use.
    pub fn config_over(&self, base: NrpmConfig) -> Result<NrpmConfig> {
        let name = self.norm.as_deref().unwrap_or(base.norm().name());
        let norm = common::norm_from_flags(name, self.gamma, self.delta, Some(base.norm()))?;
        NrpmConfig::builder()
            .norm(norm)
            .k(self.k.unwrap_or(base.k()))
            .eps(self.eps_irls.unwrap_or(base.eps()))
            .lambda(self.lambda.unwrap_or(base.lambda()))
            .groups(self.group.unwrap_or(base.groups()))
            .build()
    }

    /// [`OperatorArgs::config_over`] the defaults.
    ///
    /// # Errors
    /// As [`OperatorArgs::config_over`].
    pub fn config(&self) -> Result<NrpmConfig> {
        self.config_over(NrpmConfig::default())
    }
}

/// Writes `value` as pretty JSON to `path` (its folder must exist: commands check their
/// output paths before they start).
///
/// # Errors
/// [`nrpm::Error::Io`] if the file cannot be written.
pub fn write_json(path: &std::path::Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("JSON values always serialise");
    std::fs::write(path, text + "\n").map_err(|e| nrpm::Error::io(path, e))
}
