//! `sre runbook crd|validate|run --dry-run`: the `Runbook` custom resource, offline.
//! Everything here is pure `sre-remediation` (serde + schemars, no kube client), so the
//! subcommand is part of the default build: `crd` renders the CRD from the spec's schema,
//! `validate` reports every problem with its path, and `run --dry-run` plans the Runbook
//! with the real engine against a synthetic alert and prints the steps without calling
//! anything. Preconditions are shown with their queries ("not evaluated: offline");
//! with `--prometheus URL` (feature `prometheus`) they are asked of that server, read
//! only, and the dry run says whether the Runbook would act.

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
        /// Evaluate the preconditions against this Prometheus (read-only queries);
        /// needs the `prometheus` feature.
        #[arg(long, value_name = "URL")]
        prometheus: Option<String>,
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
            prometheus,
        } => {
            let (rb, builtin) = match load(file) {
                Ok(x) => x,
                Err(code) => return code,
            };
            let labels: Labels = labels.iter().cloned().collect();
            let mut steps = rb.dry_run(&builtin, &labels);
            if let Some(url) = prometheus
                && let Err(code) = evaluate(url, &mut steps)
            {
                return code;
            }
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

/// Asks `url` for every precondition step and rewrites its detail with the answer;
/// adds a `gate` step saying whether the Runbook would act. Exit 69 when the server
/// cannot be reached at all, 64 for a bad URL or a build without the feature.
#[cfg(feature = "prometheus")]
fn evaluate(url: &str, steps: &mut Vec<runbook::DryRunStep>) -> Result<(), ExitCode> {
    use sre_remediation::checks;
    use sre_remediation::ports::MetricsQuery;
    let client =
        sre_adapter_prometheus::PrometheusClient::new(url, std::time::Duration::from_secs(10))
            .map_err(|e| {
                eprintln!("sre runbook run: --prometheus {url}: {e}");
                ExitCode::from(64)
            })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("sre runbook run: {e}");
            ExitCode::from(70)
        })?;
    let mut blocked = None;
    let mut out = Vec::with_capacity(steps.len() + 1);
    for mut s in steps.drain(..) {
        if let Some(c) = &s.check {
            let verdict = match &c.query {
                Err(e) => Err(e.clone()),
                Ok(q) => rt.block_on(async {
                    let answer = client.instant(q).await;
                    if let Err(e) = &answer
                        && e.is_retryable()
                    {
                        eprintln!("sre runbook run: {url}: {e}");
                    }
                    checks::judge(c.check.spec.expect, &answer)
                }),
            };
            s.detail = match (&c.query, &verdict) {
                (Ok(q), Ok(())) => format!("{}: {q}: holds", c.check.name),
                (Ok(q), Err(why)) => format!("{}: {q}: FAILS: {why}", c.check.name),
                (Err(_), Err(why)) => format!("{}: FAILS: {why}", c.check.name),
                (Err(why), Ok(())) => format!("{}: {why}", c.check.name),
            };
            if let (Err(why), None) = (&verdict, &blocked) {
                blocked = Some(format!("blocked by {}: {why}", c.check.name));
            }
        }
        if s.step == "match" && !out.is_empty() {
            // The previous trigger's gate ends where the next trigger starts.
            out.push(gate_step(blocked.take()));
        }
        out.push(s);
    }
    out.push(gate_step(blocked));
    *steps = out;
    Ok(())
}

#[cfg(feature = "prometheus")]
fn gate_step(blocked: Option<String>) -> runbook::DryRunStep {
    runbook::DryRunStep {
        step: "gate",
        detail: blocked.map_or_else(
            || "preconditions hold: the webhook would act".to_owned(),
            |b| format!("{b}: the webhook would NOT act and would escalate"),
        ),
        check: None,
    }
}

#[cfg(not(feature = "prometheus"))]
fn evaluate(_url: &str, _steps: &mut Vec<runbook::DryRunStep>) -> Result<(), ExitCode> {
    eprintln!(
        "sre runbook run --prometheus: this build has no Prometheus client; \
         rebuild with `--features prometheus` (without the flag the dry run stays offline)"
    );
    Err(ExitCode::from(64))
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
    fn offline_dry_run_shows_each_check_with_its_query() {
        let ok = file("offline.yaml", SEED);
        let (rb, builtin) = load(&ok).unwrap_or_else(|_| panic!("seed must validate"));
        let steps = rb.dry_run(&builtin, &Labels::new());
        let pre: Vec<&str> = steps
            .iter()
            .filter(|s| s.step == "precondition")
            .map(|s| s.detail.as_str())
            .collect();
        assert_eq!(
            pre,
            [
                r#"spire.server.healthy: up{job="spire-server"} == 1 expect NonEmpty (not evaluated: offline)"#
            ]
        );
        let _ = std::fs::remove_file(ok);
    }

    /// Against the REAL Prometheus of the test servers: `vector(1)` holds, a selector
    /// that matches nothing blocks.
    #[cfg(feature = "prometheus")]
    #[test]
    fn prometheus_evaluates_preconditions() {
        use sre_remediation::checks::{CheckSpec, NamedCheck};
        use sre_remediation::rules::{Expect, Template};
        let url = sre_core::testing::test_env("SRE_TEST_PROMETHEUS_URL");
        let step = |name: &str, q: &str| runbook::DryRunStep {
            step: "precondition",
            detail: String::new(),
            check: Some(runbook::DryRunCheck {
                check: NamedCheck {
                    name: name.into(),
                    spec: CheckSpec {
                        query: Some(Template::new(q)),
                        expect: Expect::NonEmpty,
                    },
                },
                query: Ok(q.into()),
            }),
        };
        let mut steps = vec![step("a", "vector(1)")];
        evaluate(&url, &mut steps).unwrap_or_else(|_| panic!("evaluated"));
        assert_eq!(steps[0].detail, "a: vector(1): holds");
        assert_eq!(steps[1].detail, "preconditions hold: the webhook would act");
        let mut steps = vec![
            step("a", "vector(1)"),
            step("b", r#"up{job="nonexistent"}"#),
        ];
        evaluate(&url, &mut steps).unwrap_or_else(|_| panic!("evaluated"));
        assert!(steps[1].detail.contains("FAILS"), "{steps:#?}");
        assert!(
            steps[2]
                .detail
                .starts_with("blocked by b: expected at least one series"),
            "{steps:#?}"
        );
    }

    #[test]
    fn parses_labels() {
        assert_eq!(parse_label("pod=a=b"), Ok(("pod".into(), "a=b".into())));
        assert!(parse_label("pod").is_err());
    }
}
