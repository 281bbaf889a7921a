//! The two servers `cargo xtask bench remediation` loads with wrk: `webhook` is the real
//! remediation webhook (auth, body limit, parsing, queueing; dry run, no executors),
//! `bare` is an axum handler that only reads the body and answers the same `202`, so the
//! ratio of the two is the cost of the webhook's own work on the request path. `firing`
//! is the webhook acting (not a dry run) on `ROUNDS` fake deployments `bench/round-N`
//! for the bench's `SreBenchFlip` alert, so that "rule fired -> action recorded" can be
//! timed against a real Prometheus and Alertmanager.
//!
//! Usage: `bench_server webhook|bare|firing TOKEN [ROUNDS]`; prints `listening on ADDR`
//! once bound to an ephemeral loopback port, then serves until killed.

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use remediation_webhook::config::BearerToken;
use remediation_webhook::server::{AppState, Ports, Settings, start};
use sre_core::SystemClock;
use sre_core::config::{Format, Source};
use sre_core::guard::{Backoff, Jitter};
use sre_remediation::actions::{WorkloadKind, WorkloadRef};
use sre_remediation::execute::Executors;
use sre_remediation::plan::{BlastRadius, Policy};
use sre_remediation::rules::RuleSet;
use sre_remediation::testing::FakeWorkloads;
use std::io::Write;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The bench's rule for its flip alert: scale the round's deployment up; no
/// verification (it would time the verification, not the path to the action).
const FLIP_RULES: &str = r#"rules:
  - name: bench/flip
    alert: SreBenchFlip
    action: {kind: scale_up, step: 1, max_replicas: 10, cost_per_replica_cents: 0}
    target: {kind: deployment, namespace: "${namespace}", name: "${deployment}"}
"#;

fn webhook(token: &str) -> Result<Router, String> {
    let rules = RuleSet::builtin().map_err(|e| e.to_string())?;
    app(token, true, rules, Executors::default(), 5)
}

/// The webhook acting on `rounds` fake deployments `bench/round-N` of 3 replicas.
fn firing(token: &str, rounds: u32) -> Result<Router, String> {
    let rules = RuleSet::load(&Source::Text {
        name: "bench-rules.yaml".into(),
        text: FLIP_RULES.into(),
        format: Format::Yaml,
    })
    .map_err(|e| e.to_string())?;
    let fake = (1..=rounds).fold(FakeWorkloads::new(), |f, r| {
        let w = WorkloadRef::new(WorkloadKind::Deployment, "bench", format!("round-{r}"));
        f.with_replicas(&w, 3)
    });
    let executors = Executors {
        workloads: Some(Arc::new(fake)),
        ..Executors::default()
    };
    app(token, false, rules, executors, rounds.saturating_add(1))
}

fn app(
    token: &str,
    dry_run: bool,
    rules: RuleSet,
    executors: Executors,
    max_targets: u32,
) -> Result<Router, String> {
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
                max_targets: NonZeroU32::new(max_targets).unwrap_or(two),
                window: Duration::from_mins(10),
                max_replica_pct: 25,
            },
            budget: None,
            retention: Duration::from_hours(24),
        },
        dry_run,
        max_body_bytes: 1024 * 1024,
        // Deep enough that a 10 s run measures the request path, not queue refusals.
        queue_capacity: 1 << 20,
        runs_kept: 1000,
    };
    let ports = Ports {
        clock: Arc::new(SystemClock::new()),
        verifier: None,
        executors,
        evidence: None,
    };
    Ok(start(AppState::new(
        settings,
        rules,
        sre_core::telemetry::metrics_registry(),
        ports,
    )))
}

fn bare() -> Router {
    Router::new().route(
        "/webhook/alertmanager",
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
        (Some("firing"), Some(token)) => {
            let rounds = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(5);
            match firing(token, rounds) {
                Ok(app) => app,
                Err(e) => {
                    eprintln!("bench_server: {e}");
                    return ExitCode::from(70);
                }
            }
        }
        (Some("bare"), _) => bare(),
        _ => {
            eprintln!("usage: bench_server webhook|bare|firing TOKEN [ROUNDS]");
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
