//! The `nrpm` command: see `nrpm --help`, or README.md for a tour.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = nrpm::cli::Cli::parse();
    match nrpm::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
