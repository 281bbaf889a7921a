//! `sre drill`: the failover game day on the simulator. Flags in, report out; the
//! scenarios, the simulator and the verdict live in `sre_failover::drill`.

use clap::{Args, ValueEnum};
use sre_failover::drill::{self, DrillOptions, Verdict};
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `sre drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Run this built-in scenario (repeatable; all of them when no scenario is named).
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// Run the scenario in this YAML file (repeatable).
    #[arg(long = "scenario-file", value_name = "PATH")]
    files: Vec<PathBuf>,
    /// Seed for witness delay and clock drift.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// How to print the report.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// A readable timeline per scenario and a verdict.
    Text,
    /// One JSON document (`verdict`, `scenarios[]`).
    Json,
}

/// Runs the drill: exit 0 when every scenario passes, 1 when one fails, 64 when a
/// scenario name or file is bad.
pub fn run(args: &DrillArgs) -> ExitCode {
    let opts = DrillOptions {
        scenarios: args.scenarios.clone(),
        files: args.files.clone(),
        seed: args.seed,
    };
    let report = match drill::run(&opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sre drill: {e}");
            return ExitCode::from(64);
        }
    };
    match args.format {
        Format::Text => print!("{}", drill::render_text(&report)),
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("sre drill: cannot encode the report: {e}");
                return ExitCode::FAILURE;
            }
        },
    }
    if report.verdict == Verdict::Pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
