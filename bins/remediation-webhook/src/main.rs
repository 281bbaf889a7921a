//! `remediation-webhook`: receives Alertmanager webhooks, plans remediation actions and
//! verifies executed ones against Prometheus.
//! Wiring only: arguments -> config -> token and rules -> telemetry -> ports (kube
//! executors, Prometheus, HTTP notifier, evidence file) -> server; errors map to exit
//! codes (64 usage/config, 69 cannot listen or no cluster for `executors: kube`, 1 other).

use anyhow::Context as _;
use clap::Parser;
use remediation_webhook::config::{
    BearerToken, Config, ENV_PREFIX, ExecutorKind, GITEA_TOKEN_ENV, RawConfig, TOKEN_ENV,
};
use remediation_webhook::gitea::GiteaDispatcher;
use remediation_webhook::notify::HttpNotifier;
use remediation_webhook::server::{AppState, Ports, Settings, TokioSleeper, Verifier, start};
use sre_adapter_kube::KubeWorkloads;
use sre_adapter_prometheus::PrometheusClient;
use sre_core::Clock;
use sre_core::SystemClock;
use sre_core::config::{EnvOverrides, Source, load};
use sre_core::evidence::{EvidenceSink, FileEvidenceLog};
use sre_core::telemetry::{self, LogFormat};
use sre_remediation::execute::Executors;
use sre_remediation::rules::RuleSet;
use sre_remediation::runbook::Runbook;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

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
    let (token, rules) = match (read_token(&cfg), read_rules(&cfg)) {
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

fn read_token(cfg: &Config) -> anyhow::Result<BearerToken> {
    let text = match &cfg.token_file {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("token_file {}", p.display()))?
        }
        None => std::env::var(TOKEN_ENV)
            .with_context(|| format!("no bearer token: set {TOKEN_ENV} or token_file"))?,
    };
    BearerToken::new(&text).context("the bearer token is empty")
}

fn read_rules(cfg: &Config) -> anyhow::Result<RuleSet> {
    let mut rules = match &cfg.rules_file {
        Some(p) => RuleSet::load(&Source::File(p.clone()))?,
        None => RuleSet::builtin()?,
    };
    // Later files go ahead of earlier ones, and every Runbook ahead of the rule set.
    for p in &cfg.runbook_files {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("runbook_files: {}", p.display()))?;
        let rb = Runbook::parse(&p.display().to_string(), &text, &rules)?;
        rules = rules.overridden_by(rb.rules());
    }
    Ok(rules)
}

#[tokio::main]
async fn serve(cfg: &Config, token: BearerToken, rules: RuleSet) -> anyhow::Result<()> {
    let verifier = match &cfg.verify.prometheus_url {
        Some(url) => Some(Verifier {
            query: Arc::new(PrometheusClient::new(url, cfg.verify.query_timeout)?),
            sleeper: Arc::new(TokioSleeper),
            interval: cfg.verify.interval,
        }),
        None => None,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let executors = executors(cfg, &clock).await?;
    let evidence: Option<Arc<dyn EvidenceSink>> = match &cfg.evidence_file {
        Some(p) => Some(Arc::new(
            FileEvidenceLog::open(p).with_context(|| format!("evidence_file {}", p.display()))?,
        )),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    tracing::info!(listen = %cfg.listen, dry_run = cfg.dry_run, rules = rules.rules().len(),
        executors = ?cfg.executors, evidence = cfg.evidence_file.is_some(),
        notify = cfg.notify.is_some(),
        prometheus = cfg.verify.prometheus_url.as_deref().unwrap_or("none"), "remediation webhook up");
    let settings = Settings {
        token,
        policy: cfg.policy,
        dry_run: cfg.dry_run,
        max_body_bytes: cfg.max_body_bytes,
        queue_capacity: cfg.queue_capacity,
        runs_kept: cfg.runs_kept,
    };
    let ports = Ports {
        clock,
        verifier,
        executors,
        evidence,
    };
    let state = AppState::new(settings, rules, telemetry::metrics_registry(), ports);
    axum::serve(listener, start(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// `executors: kube` without a reachable cluster configuration: exit 69 (unavailable).
#[derive(Debug)]
struct ClusterUnavailable(String);

impl std::fmt::Display for ClusterUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "executors: kube needs a Kubernetes API server: {} (in a pod: the service account; elsewhere: KUBECONFIG or ~/.kube/config)",
            self.0
        )
    }
}

impl std::error::Error for ClusterUnavailable {}

/// The executors the config names, plus the HTTP notifier when one is configured.
async fn executors(cfg: &Config, clock: &Arc<dyn Clock>) -> anyhow::Result<Executors> {
    let mut ex = Executors::default();
    if cfg.executors == ExecutorKind::Kube {
        let client = kube::Client::try_default()
            .await
            .map_err(|e| ClusterUnavailable(e.to_string()))?;
        let kube = Arc::new(KubeWorkloads::new(client, clock.clone()));
        ex.workloads = Some(kube.clone());
        ex.certificates = Some(kube);
    }
    if let Some(n) = &cfg.notify {
        ex.notifier = Some(Arc::new(HttpNotifier::new(&n.url, n.timeout)?));
    }
    if let Some(g) = &cfg.gitea {
        let token = match &g.token_file {
            Some(p) => std::fs::read_to_string(p)
                .with_context(|| format!("gitea.token_file {}", p.display()))?,
            None => std::env::var(GITEA_TOKEN_ENV)
                .with_context(|| format!("gitea: set {GITEA_TOKEN_ENV} or gitea.token_file"))?,
        };
        ex.workflows = Some(Arc::new(GiteaDispatcher::new(&g.url, &token, g.timeout)?));
    }
    Ok(ex)
}
