//! `sre`: the umbrella CLI. Wiring only: parse arguments, call into the libraries, map
//! errors to exit codes (64 usage/config, 65 bad data, 69 unavailable, 75 retry later).

mod drill;
mod failover;
#[cfg(feature = "rotation")]
mod rotation;
mod runbook;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Day-2 operations for a multi-region Kubernetes platform.
#[derive(Debug, Parser)]
#[command(name = "sre", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the state of each capability in this build (which are working, which planned).
    Doctor,
    /// Failover game day on the simulator: scenarios, timelines and a verdict.
    Drill(drill::DrillArgs),
    /// Talk to a failover-controller: status, approve a promotion, promote, demote.
    Failover(failover::FailoverArgs),
    /// Secret rotation: status table, rotate one secret now, approve a request.
    #[cfg(feature = "rotation")]
    Rotation(rotation::RotationArgs),
    /// Runbook CRDs offline: print the CRD, validate a Runbook, plan one (`--dry-run`).
    Runbook(runbook::RunbookArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Drill(args) => drill::run(&args),
        Command::Failover(args) => failover::run(&args),
        #[cfg(feature = "rotation")]
        Command::Rotation(args) => rotation::run(&args),
        Command::Runbook(args) => runbook::run(&args),
        Command::Doctor => {
            println!("failover      {}", sre_failover::STATUS);
            ExitCode::SUCCESS
        }
    }
}
