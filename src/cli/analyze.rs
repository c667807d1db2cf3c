//! `nrpm analyze` (being written).

use clap::Args;

use crate::error::Result;

/// Influence curve, breakdown point, operator norms.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {}

/// Runs `nrpm analyze`.
///
/// # Errors
/// None yet.
pub fn run(_args: AnalyzeArgs) -> Result<()> {
    Ok(())
}
