//! The `nrpm` command: see `nrpm --help`, or README.md for a tour. With no subcommand it runs
//! `nrpm demo` (what `cargo run --release` does).

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod demo;
mod reproduce;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            let _ = e.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.render().to_string();
            eprintln!("{} (see --help)", text.lines().next().unwrap_or("error"));
            return ExitCode::from(2);
        }
    };
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
