//! The HTTP face of the webhook: `POST /alerts` (and the issue's
//! `/webhook/alertmanager`) behind a bearer token, `/healthz` and `/metrics`.
//!
//! The handler parses, plans through the pure engine and answers with the plan as JSON.
//! Nothing is executed: no executor exists yet for any action kind, and every planned
//! action says so in its `execution` field rather than pretending to have run.

use crate::config::BearerToken;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use serde_json::json;
use sre_core::Clock;
use sre_core::telemetry::{METRICS_CONTENT_TYPE, Registry, render_metrics};
use sre_remediation::payload;
use sre_remediation::plan::{self, EngineState, Observations, Outcome, PlanEntry, Policy, Verdict};
use sre_remediation::rules::RuleSet;
use std::sync::{Arc, Mutex, PoisonError};
use subtle::ConstantTimeEq;

type LabelFamily = Family<Vec<(String, String)>, Counter>;

/// Counters behind `/metrics`; labels come from small fixed sets (status, action kind,
/// skip reason, rejection reason), never from alert labels or ids.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    received: LabelFamily,
    planned: LabelFamily,
    blocked: LabelFamily,
    rejected: LabelFamily,
}

impl Metrics {
    /// Registers the counters as `sre_remediation_*_total`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let sub = registry.sub_registry_with_prefix("remediation");
        sub.register(
            "alerts_received",
            "Alerts received, by status",
            m.received.clone(),
        );
        sub.register(
            "actions_planned",
            "Actions planned, by action kind",
            m.planned.clone(),
        );
        sub.register(
            "actions_blocked",
            "Alerts that led to no action, by reason",
            m.blocked.clone(),
        );
        sub.register(
            "requests_rejected",
            "Webhook requests refused, by reason",
            m.rejected.clone(),
        );
        m
    }
}

fn inc(f: &LabelFamily, key: &str, value: &str) {
    f.get_or_create(&vec![(key.to_owned(), value.to_owned())])
        .inc();
}

/// Everything a request needs; one per process.
pub struct AppState {
    token: BearerToken,
    rules: RuleSet,
    policy: Policy,
    dry_run: bool,
    max_body_bytes: usize,
    clock: Arc<dyn Clock>,
    engine: Mutex<EngineState>,
    metrics: Metrics,
    registry: Registry,
}

impl AppState {
    /// Builds the state; the registry gets the webhook's counters.
    pub fn new(
        token: BearerToken,
        rules: RuleSet,
        policy: Policy,
        dry_run: bool,
        max_body_bytes: usize,
        clock: Arc<dyn Clock>,
        mut registry: Registry,
    ) -> Self {
        let metrics = Metrics::register(&mut registry);
        Self {
            token,
            engine: Mutex::new(EngineState::new(&policy)),
            rules,
            policy,
            dry_run,
            max_body_bytes,
            clock,
            metrics,
            registry,
        }
    }
}

/// The router: authenticated alert routes with a body limit, open health and metrics.
pub fn router(state: Arc<AppState>) -> Router {
    let alerts = Router::new()
        .route("/alerts", post(post_alerts))
        .route("/webhook/alertmanager", post(post_alerts))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(alerts)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(state)
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": message, "kind": kind })),
    )
        .into_response()
}

fn authorized(headers: &HeaderMap, token: &BearerToken) -> bool {
    let Some(sent) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    // Constant time in the token bytes: a timing side channel must not reveal a prefix.
    sent.ct_eq(token.expose()).into()
}

async fn require_token(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if authorized(req.headers(), &s.token) {
        return next.run(req).await;
    }
    inc(&s.metrics.rejected, "reason", "unauthorized");
    tracing::warn!("webhook request without a valid bearer token");
    let mut resp = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong bearer token",
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    resp
}

/// One plan entry plus what happened to it in this process.
#[derive(Debug, Serialize)]
struct Reported<'a> {
    #[serde(flatten)]
    entry: &'a PlanEntry,
    /// Present for actions: why nothing ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    execution: Option<String>,
}

async fn post_alerts(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rej) => {
            let status = rej.status();
            let kind = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "unreadable_body"
            };
            inc(&s.metrics.rejected, "reason", kind);
            return error(status, kind, &rej.body_text());
        }
    };
    let payload = match payload::parse(&body) {
        Ok(p) => p,
        Err(e) => {
            inc(&s.metrics.rejected, "reason", e.kind());
            tracing::warn!(error = %e, "malformed webhook payload");
            return error(StatusCode::BAD_REQUEST, e.kind(), &e.to_string());
        }
    };
    for a in &payload.alerts {
        inc(&s.metrics.received, "status", a.status.as_str());
    }
    let now = s.clock.monotonic();
    // No spend source exists yet: with a budget configured, scale-ups fail closed.
    let obs = Observations::default();
    let entries = {
        // A poisoned lock means a panic mid-decision; the state is plain data and the
        // next decision re-checks everything, so carry on rather than refuse all alerts.
        let mut engine = s.engine.lock().unwrap_or_else(PoisonError::into_inner);
        let entries = plan::decide(&mut engine, &s.rules, &s.policy, &obs, &payload.alerts, now);
        for e in &entries {
            if e.action().is_some() {
                plan::record_outcome(&mut engine, &e.fingerprint, Outcome::NotExecuted, now);
            }
        }
        entries
    };
    let reported: Vec<Reported<'_>> = entries.iter().map(|e| report(&s, e)).collect();
    axum::Json(json!({
        "dry_run": s.dry_run,
        "group_key": payload.group_key,
        "truncated_alerts": payload.truncated_alerts,
        "plan": reported,
    }))
    .into_response()
}

fn report<'a>(s: &AppState, e: &'a PlanEntry) -> Reported<'a> {
    let target = e
        .target
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let execution = match &e.verdict {
        Verdict::Act { action, .. } => {
            inc(&s.metrics.planned, "kind", action.kind());
            let why = if s.dry_run {
                format!(
                    "not executed: dry run (and no executor for {})",
                    action.kind()
                )
            } else {
                format!("not executed: no executor for {}", action.kind())
            };
            tracing::info!(alert_fingerprint = %e.fingerprint, alertname = %e.alertname, %target,
                action = action.kind(), dry_run = s.dry_run, "remediation planned");
            Some(why)
        }
        Verdict::Skip { skip } => {
            inc(&s.metrics.blocked, "reason", skip.kind());
            tracing::info!(alert_fingerprint = %e.fingerprint, alertname = %e.alertname, %target,
                reason = skip.kind(), "no action");
            None
        }
        Verdict::Unmatched => {
            inc(&s.metrics.blocked, "reason", "unmatched");
            tracing::info!(alert_fingerprint = %e.fingerprint, alertname = %e.alertname,
                "no rule matches; logged for analysis");
            None
        }
        Verdict::Escalate { to, attempts } => {
            inc(&s.metrics.planned, "kind", "escalate");
            tracing::warn!(alert_fingerprint = %e.fingerprint, alertname = %e.alertname, %target,
                to = %to, attempts, "remediation did not help; escalating");
            Some("not executed: no executor for escalate".to_owned())
        }
        Verdict::Cancel => {
            tracing::info!(alert_fingerprint = %e.fingerprint, %target, "resolved; pending work cancelled");
            None
        }
    };
    Reported {
        entry: e,
        execution,
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    match render_metrics(&s.registry) {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics",
            "rendering metrics failed",
        ),
    }
}
