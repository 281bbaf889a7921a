//! `rotation-controller`: runs the rotation schedules of the inventory against OpenBao,
//! moves consumers (ESO, Reloader-compatible rollouts) when Kubernetes is enabled, and
//! serves `/metrics`, `/healthz` and the JWKS documents. Wiring only: arguments ->
//! config -> token -> telemetry -> adapters -> controller loop + server; errors map to
//! exit codes (64 usage/config, 69 cannot listen or reach OpenBao's client, 1 other).

use clap::Parser;
use rotation_controller::consumers;
use rotation_controller::controller::Controller;
use rotation_controller::jwks::JwksPublisher;
use rotation_controller::metrics::RotationMetrics;
use rotation_controller::{certs, ports, server};
use sre_core::config::{EnvOverrides, Source, load};
use sre_core::telemetry::{self, LogFormat};
use sre_core::{Clock, SystemClock};
use sre_rotation::config::{ENV_PREFIX, RawRotationConfig, RotationConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Runs secret rotation schedules on OpenBao and exports per-secret metrics.
#[derive(Debug, Parser)]
#[command(name = "rotation-controller", version, about, long_about = None)]
struct Args {
    /// Config file (.yaml, .yml or .toml); `SRE_ROTATION__...` variables override it.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
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
    let cfg: RotationConfig = match load::<RawRotationConfig>(
        &Source::File(args.config),
        &EnvOverrides::with_prefix(ENV_PREFIX),
        std::env::vars(),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    let token = match ports::read_token(&cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(64);
        }
    };
    let format = if args.text_logs {
        LogFormat::Text
    } else {
        LogFormat::Json
    };
    let _telemetry = match telemetry::init("rotation-controller", format) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("telemetry: {e}");
            return ExitCode::from(64);
        }
    };
    for w in &cfg.inventory.warnings {
        tracing::warn!(path = %w.path, "{}", w.message);
    }
    match serve(&cfg, token) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "rotation controller stopped");
            let unavailable = e.downcast_ref::<std::io::Error>().is_some();
            ExitCode::from(if unavailable { 69 } else { 1 })
        }
    }
}

#[tokio::main]
async fn serve(cfg: &RotationConfig, token: String) -> anyhow::Result<()> {
    let bao = ports::bao_config(cfg, token);
    let (store, secrets) = ports::build(cfg, &bao)?;
    let engines = ports::engines(cfg, &bao)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let jwks = Arc::new(JwksPublisher::from_config(cfg, &bao, Arc::clone(&clock))?);
    let kube = consumers::client(&cfg.kubernetes).await;
    let refresher = kube
        .clone()
        .map(|c| -> Arc<dyn consumers::ConsumerRefresh> {
            Arc::new(consumers::KubeConsumers::new(c))
        });
    let cert_manager = kube.map(|c| -> Arc<dyn certs::CertManager> {
        Arc::new(sre_adapter_kube::CertificateStatus::new(c))
    });
    let mut registry = telemetry::metrics_registry();
    let metrics = RotationMetrics::register(&mut registry);
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    tracing::info!(listen = %cfg.listen, openbao = %cfg.openbao.address,
        secrets = secrets.len(), engines = engines.len(), tick = ?cfg.tick, "rotation controller up");
    let controller = Controller::new(store, secrets, clock, metrics, cfg.tick)
        .with_certificates(cfg.certificates.clone(), cert_manager)
        .with_lease_renewal(cfg.lease_renewals())
        .with_engines(engines)
        .with_consumers(refresher, cfg.kubernetes.restart_window);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let loop_task = tokio::spawn(controller.run(async move {
        let mut rx = stop_rx;
        let _ = rx.wait_for(|stop| *stop).await;
    }));
    axum::serve(listener, server::router(Arc::new(registry), jwks))
        .with_graceful_shutdown(server::shutdown_signal())
        .await?;
    tracing::info!("shutting down: finishing the step in flight");
    let _ = stop_tx.send(true);
    loop_task.await?;
    tracing::info!("rotation controller stopped");
    Ok(())
}
