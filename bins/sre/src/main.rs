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
            for line in doctor_lines() {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
    }
}

/// `sre doctor`'s report: one line per domain crate linked into this build, with the
/// crate's own `STATUS`, so that what the binary says it can do is what the code it
/// carries says, not a list kept by hand. Crates `sre` does not depend on (gdpr,
/// airgap, gpu, vector-ops: placeholders today) are not listed, since this build has
/// none of their code; rotation is behind the `rotation` feature, and a build without
/// it says how to get it rather than leaving the reader to guess.
fn doctor_lines() -> Vec<String> {
    let mut rows = vec![
        ("failover", sre_failover::STATUS),
        ("remediation", sre_remediation::STATUS),
    ];
    #[cfg(feature = "rotation")]
    rows.push(("rotation", sre_rotation::STATUS));
    #[cfg(not(feature = "rotation"))]
    rows.push((
        "rotation",
        "not in this build (build sre with --features rotation)",
    ));
    rows.into_iter()
        .map(|(name, status)| format!("{name:<13} {status}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::doctor_lines;

    #[test]
    fn doctor_prints_one_line_per_linked_domain_crate_with_its_status() {
        let lines = doctor_lines();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert_eq!(lines[0], format!("failover      {}", sre_failover::STATUS));
        assert_eq!(
            lines[1],
            format!("remediation   {}", sre_remediation::STATUS)
        );
        #[cfg(feature = "rotation")]
        assert_eq!(lines[2], format!("rotation      {}", sre_rotation::STATUS));
        #[cfg(not(feature = "rotation"))]
        assert_eq!(
            lines[2],
            "rotation      not in this build (build sre with --features rotation)"
        );
        for line in &lines {
            assert!(!line.contains('\n'), "one line each: {line:?}");
        }
    }
}
