//! The two servers `cargo xtask bench remediation` loads with wrk: `webhook` is the real
//! remediation webhook (auth, body limit, parsing, queueing; dry run, no executors),
//! `bare` is an axum handler that only reads the body and answers the same `202`, so the
//! ratio of the two is the cost of the webhook's own work on the request path.
//!
//! Usage: `bench_server webhook|bare TOKEN`; prints `listening on ADDR` once bound to an
//! ephemeral loopback port, then serves until killed.

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use remediation_webhook::config::BearerToken;
use remediation_webhook::server::{AppState, Ports, Settings, start};
use sre_core::SystemClock;
use sre_core::guard::{Backoff, Jitter};
use sre_remediation::execute::Executors;
use sre_remediation::plan::{BlastRadius, Policy};
use sre_remediation::rules::RuleSet;
use std::io::Write;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

fn webhook(token: &str) -> Result<Router, String> {
    let two = NonZeroU32::MIN.saturating_add(1);
    let settings = Settings {
        token: BearerToken::new(token).ok_or("empty token")?,
        policy: Policy {
            cooldown: Duration::from_mins(5),
            backoff: Backoff::new(
                Duration::from_mins(5),
                two,
                Duration::from_hours(1),
                Jitter::None,
            ),
            escalate_after: two.saturating_add(1),
            escalation_cool_off: Duration::from_hours(1),
            dedupe_window: Duration::from_mins(10),
            blast_radius: BlastRadius {
                max_targets: two.saturating_add(3),
                window: Duration::from_mins(10),
                max_replica_pct: 25,
            },
            budget: None,
            retention: Duration::from_hours(24),
        },
        dry_run: true,
        max_body_bytes: 1024 * 1024,
        // Deep enough that a 10 s run measures the request path, not queue refusals.
        queue_capacity: 1 << 20,
        runs_kept: 1000,
    };
    let ports = Ports {
        clock: Arc::new(SystemClock::new()),
        verifier: None,
        executors: Executors::default(),
        evidence: None,
    };
    let rules = RuleSet::builtin().map_err(|e| e.to_string())?;
    Ok(start(AppState::new(
        settings,
        rules,
        sre_core::telemetry::metrics_registry(),
        ports,
    )))
}

fn bare() -> Router {
    Router::new().route(
        "/alerts",
        post(|body: Bytes| async move {
            let _ = body.len();
            (
                StatusCode::ACCEPTED,
                [("content-type", "application/json")],
                r#"{"run":0,"state":"queued"}"#,
            )
        }),
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let app = match (args.first().map(String::as_str), args.get(1)) {
        (Some("webhook"), Some(token)) => match webhook(token) {
            Ok(app) => app,
            Err(e) => {
                eprintln!("bench_server: {e}");
                return ExitCode::from(70);
            }
        },
        (Some("bare"), _) => bare(),
        _ => {
            eprintln!("usage: bench_server webhook|bare TOKEN");
            return ExitCode::from(64);
        }
    };
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bench_server: bind: {e}");
            return ExitCode::from(69);
        }
    };
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_server: {e}");
            ExitCode::from(74)
        }
    }
}
