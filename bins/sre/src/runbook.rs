//! `sre runbook crd|validate|run --dry-run`: the `Runbook` custom resource, offline.
//! Everything here is pure `sre-remediation` (serde + schemars, no kube client), so the
//! subcommand is part of the default build: `crd` renders the CRD from the spec's schema,
//! `validate` reports every problem with its path, and `run --dry-run` plans the Runbook
//! with the real engine against a synthetic alert and prints the steps without calling
//! anything.

use clap::{Args, Subcommand};
use sre_remediation::payload::Labels;
use sre_remediation::rules::RuleSet;
use sre_remediation::runbook::{self, Runbook};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Flags of `sre runbook`.
#[derive(Debug, Args)]
pub struct RunbookArgs {
    #[command(subcommand)]
    command: RunbookCommand,
}

/// What to do with Runbooks.
#[derive(Debug, Subcommand)]
enum RunbookCommand {
    /// Print the `runbooks.catalyst.openova.io` CRD as YAML (`| kubectl apply -f -`).
    Crd,
    /// Check a Runbook file; every problem is listed with its path.
    Validate {
        /// The Runbook (YAML or JSON).
        file: PathBuf,
    },
    /// Plan a Runbook against a synthetic alert and print its steps.
    Run {
        /// The Runbook (YAML or JSON).
        file: PathBuf,
        /// Plan only; required, because executing needs the webhook's executors.
        #[arg(long, required = true)]
        dry_run: bool,
        /// Labels of the synthetic alert (`pod=openbao-0`); missing ones show as `<label>`.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Print the steps as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?}: expected label=value"))
}

/// Runs `sre runbook ...`; exit 65 for an invalid Runbook, 66 for an unreadable file.
pub fn run(args: &RunbookArgs) -> ExitCode {
    match &args.command {
        RunbookCommand::Crd => match runbook::crd_yaml() {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sre runbook crd: {e}");
                ExitCode::from(70)
            }
        },
        RunbookCommand::Validate { file } => match load(file) {
            Ok((rb, _)) => {
                println!(
                    "{}: valid Runbook {}: {} rule(s)",
                    file.display(),
                    rb.name,
                    rb.rules().rules().len()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        RunbookCommand::Run {
            file,
            dry_run: _,
            labels,
            json,
        } => {
            let (rb, builtin) = match load(file) {
                Ok(x) => x,
                Err(code) => return code,
            };
            let labels: Labels = labels.iter().cloned().collect();
            let steps = rb.dry_run(&builtin, &labels);
            if *json {
                match serde_json::to_string_pretty(&steps) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("sre runbook run: {e}");
                        return ExitCode::from(70);
                    }
                }
            } else {
                println!("dry run of Runbook {} (nothing is called):", rb.name);
                for (i, s) in steps.iter().enumerate() {
                    println!("{:>3}. {:<12} {}", i + 1, s.step, s.detail);
                }
            }
            ExitCode::SUCCESS
        }
    }
}

fn load(file: &Path) -> Result<(Runbook, RuleSet), ExitCode> {
    let builtin = RuleSet::builtin().map_err(|e| {
        eprintln!("sre runbook: built-in rules: {e}");
        ExitCode::from(70)
    })?;
    let text = std::fs::read_to_string(file).map_err(|e| {
        eprintln!("sre runbook: {}: {e}", file.display());
        ExitCode::from(66)
    })?;
    let rb = Runbook::parse(&file.display().to_string(), &text, &builtin).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(65)
    })?;
    Ok((rb, builtin))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "\
apiVersion: catalyst.openova.io/v1alpha1
kind: Runbook
metadata: {name: openbao-sealed, namespace: catalyst-system}
spec:
  triggers: [{alertName: OpenBaoSealed}]
  preconditions: [{check: spire.server.healthy}]
  steps:
    - run: openbao operator unseal --auto-shamir
    - verify: openbao.status.sealed == false
  rollback: page-oncall
";

    fn file(name: &str, text: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("sre-runbook-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{e}"));
        p
    }

    #[test]
    fn seed_loads_and_a_bad_runbook_is_exit_65() {
        let ok = file("seed.yaml", SEED);
        let (rb, builtin) = load(&ok).unwrap_or_else(|_| panic!("seed must validate"));
        let steps = rb.dry_run(&builtin, &Labels::new());
        assert!(
            steps
                .iter()
                .any(|s| s.step == "act" && s.detail.starts_with("unseal"))
        );
        let bad = file("bad.yaml", &SEED.replace("- run:", "- reboot:"));
        assert_eq!(load(&bad).err(), Some(ExitCode::from(65)));
        let missing = std::env::temp_dir().join("sre-runbook-does-not-exist.yaml");
        assert_eq!(load(&missing).err(), Some(ExitCode::from(66)));
        let _ = std::fs::remove_file(ok);
        let _ = std::fs::remove_file(bad);
    }

    #[test]
    fn parses_labels() {
        assert_eq!(parse_label("pod=a=b"), Ok(("pod".into(), "a=b".into())));
        assert!(parse_label("pod").is_err());
    }
}
