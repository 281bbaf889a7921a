//! `failover-controller`: runs in each region, holds the failover lease at a witness,
//! watches a DNS quorum and serves `/metrics` and `/healthz`. Wiring only: the loop is
//! `sre_failover::run::Runtime`, the rules are `sre_failover::decide`.

mod cli;
mod config;
mod http;
mod layers;
mod wiring;

use clap::Parser;
use sre_core::SystemClock;
use sre_core::config::{Source, load};
use sre_failover::run::Runtime;
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    let args = match cli::Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let source = args.config.map_or(Source::Empty, Source::File);
    let cfg = match load::<config::RawControllerConfig>(
        &source,
        &config::env_overrides(),
        std::env::vars(),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    let violations = sre_failover::lint::check(&cfg.failover);
    if !violations.is_empty() {
        eprintln!("unsafe failover timings:");
        for v in &violations {
            eprintln!("  - {v}");
        }
        return ExitCode::from(64);
    }
    if args.check_config {
        println!(
            "{}",
            serde_json::to_string_pretty(&config::effective(&cfg)).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    let _telemetry = match sre_core::telemetry::init("failover-controller", cfg.log_format) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("telemetry: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(serve(cfg)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<wiring::ClusterUnavailable>().is_some() => {
            tracing::error!(error = format!("{e:#}"), "no Kubernetes API server");
            eprintln!("{e:#}");
            ExitCode::from(69)
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "failover-controller failed");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: config::ControllerConfig) -> anyhow::Result<()> {
    let region = cfg.failover.this_region.clone();
    if cfg.lease_only {
        tracing::warn!(%region, "layers: none (lease-only mode): this controller holds the lease and reports its role and actions, but drives NO traffic, mesh or database layer");
    }
    let clock: Arc<dyn sre_core::Clock> = Arc::new(SystemClock::new());
    let ports = wiring::ports(&cfg).await?;
    let evidence = ports.execute.evidence.clone();
    let runtime = Runtime::new(cfg.failover.clone(), ports, clock.clone(), cfg.settings)?
        .with_control(wiring::control_settings(&cfg));
    let control = cfg.control.as_ref().map(|c| http::ControlApi {
        control: runtime.control(),
        token: c.token.0.clone(),
        clock,
        evidence,
    });
    let state = Arc::new(http::AppState::new(runtime.subscribe(), control));
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    tracing::info!(%region, listen = %listener.local_addr()?, control = cfg.control.is_some(), "serving /metrics, /healthz and /v1 (control)");
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        axum::serve(listener, http::router(state))
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    let outcome = runtime.run(shutdown_signal()).await;
    tracing::info!(%region, ?outcome, "stopped; lease released if it was held");
    let _ = stop.send(true);
    server.await??;
    Ok(())
}

/// SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
