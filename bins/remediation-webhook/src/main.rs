//! `remediation-webhook`: receives Alertmanager webhooks, plans remediation actions and
//! verifies executed ones against Prometheus.
//! Wiring only: arguments -> config -> token and rules -> telemetry -> ports (kube
//! executors, Prometheus, HTTP notifier, evidence file) -> server; errors map to exit
//! codes (64 usage/config, 69 cannot listen or no cluster for `executors: kube` or
//! `runbooks.from_cluster`, 1 other).

use clap::Parser;
use remediation_webhook::config::{BearerToken, Config, ENV_PREFIX, RawConfig};
use remediation_webhook::server::{AppState, start};
use remediation_webhook::wiring::{self, ClusterUnavailable, read_rule_book, read_token};
use sre_core::config::{EnvOverrides, Source, load};
use sre_core::telemetry::{self, LogFormat};
use sre_remediation::runbook::RuleBook;
use std::path::PathBuf;
use std::process::ExitCode;

/// Alertmanager webhook receiver that plans remediation actions.
#[derive(Debug, Parser)]
#[command(name = "remediation-webhook", version, about, long_about = None)]
struct Args {
    /// Config file (.yaml, .yml or .toml); `SRE_REMEDIATION__...` variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Plan and report only; execute nothing (also the config default).
    #[arg(long)]
    dry_run: bool,
    /// Log as human-readable text instead of JSON lines.
    #[arg(long)]
    text_logs: bool,
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let source = args.config.clone().map_or(Source::Empty, Source::File);
    let mut cfg: Config = match load::<RawConfig>(
        &source,
        &EnvOverrides::with_prefix(ENV_PREFIX),
        std::env::vars(),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    cfg.dry_run |= args.dry_run;
    let (token, rules) = match (read_token(&cfg), read_rule_book(&cfg)) {
        (Ok(t), Ok(r)) => (t, r),
        (t, r) => {
            for e in [t.err(), r.err()].into_iter().flatten() {
                eprintln!("{e:#}");
            }
            return ExitCode::from(64);
        }
    };
    let format = if args.text_logs {
        LogFormat::Text
    } else {
        LogFormat::Json
    };
    let _telemetry = match telemetry::init("remediation-webhook", format) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("telemetry: {e}");
            return ExitCode::from(64);
        }
    };
    match serve(&cfg, token, rules) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "webhook stopped");
            let unavailable = e.downcast_ref::<std::io::Error>().is_some()
                || e.downcast_ref::<ClusterUnavailable>().is_some();
            ExitCode::from(if unavailable { 69 } else { 1 })
        }
    }
}

#[tokio::main]
async fn serve(cfg: &Config, token: BearerToken, book: RuleBook) -> anyhow::Result<()> {
    let ports = wiring::ports(cfg).await?;
    let lister = wiring::runbook_lister(cfg).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    tracing::info!(listen = %cfg.listen, dry_run = cfg.dry_run, rules = book.rules().rules().len(),
        cluster_runbooks = cfg.cluster_runbooks.is_some(), budget = cfg.budget.is_some(),
        executors = ?cfg.executors, evidence = cfg.evidence_file.is_some(),
        notify = cfg.notify.is_some(),
        prometheus = cfg.verify.prometheus_url.as_deref().unwrap_or("none"), "remediation webhook up");
    let settings = wiring::settings(cfg, token);
    let state = AppState::new(
        settings,
        book.rules().clone(),
        telemetry::metrics_registry(),
        ports,
    )
    .with_rule_book(book.clone())
    .with_spend(wiring::spend_source(cfg));
    let _poller = if let (Some(lister), Some(rc)) = (lister, &cfg.cluster_runbooks) {
        Some(wiring::spawn_runbook_poller(
            lister,
            rc,
            book,
            cfg.checks.clone(),
            state.rule_book_handle(),
        ))
    } else {
        None
    };
    axum::serve(listener, start(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
