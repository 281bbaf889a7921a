//! The HTTP side of the controller: `/metrics` and `/healthz` (open, read from the
//! status the loop publishes after every tick, so a scrape never waits on the witness),
//! and the control endpoint under `/v1` (bearer token, compared in constant time;
//! bodies capped at 4 KiB):
//!
//! - `GET /v1/status`: the loop's status and the pending approval / commands;
//! - `POST /v1/approvals/{plan_id}` `{"approver": "ana"}`: approve a promotion plan
//!   (semi-automatic mode; four eyes: the controller is the requester);
//! - `POST /v1/commands/promote|demote` `{"by": "ana"}`: operator commands.
//!
//! Metric definitions live in `sre_failover::metrics`; this module only serves them.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use sre_core::Clock;
use sre_core::approval::Principal;
use sre_core::evidence::EvidenceSink;
use sre_failover::control::{Control, ControlError};
use sre_failover::metrics::Metrics;
use sre_failover::model::OperatorCommand;
use sre_failover::run::RuntimeStatus;
use std::sync::{Arc, Mutex, PoisonError};
use subtle::ConstantTimeEq;
use tokio::sync::watch;

/// Largest accepted request body: a name and a little JSON.
const MAX_BODY: usize = 4096;

/// The control endpoint's wiring: the loop's handle, the token and a wall clock.
pub struct ControlApi {
    /// The loop's control handle.
    pub control: Control,
    /// The bearer token every `/v1` request must carry.
    pub token: String,
    /// Wall time for approval expiry.
    pub clock: Arc<dyn Clock>,
    /// The audit chain: every approval and command, granted or refused, goes there.
    pub evidence: Option<Arc<dyn EvidenceSink>>,
}

impl ControlApi {
    /// Appends one control event to the audit chain (a failure is logged, not fatal:
    /// the loop's own evidence carries on, and the request already took effect).
    async fn audit(&self, action: &str, by: &Principal, subject: &str, details: serde_json::Value) {
        if let Some(sink) = &self.evidence {
            let at = self.clock.wall();
            if let Err(e) = sink.append(&by.0, action, subject, details, at).await {
                tracing::warn!(error = %e, action, "evidence append failed");
            }
        }
    }
}

/// Everything the handlers read.
pub struct AppState {
    metrics: Mutex<(Registry, Metrics)>,
    status: watch::Receiver<RuntimeStatus>,
    control: Option<ControlApi>,
}

impl AppState {
    /// Registers the metrics; `control: None` leaves `/v1` unrouted (404).
    pub fn new(status: watch::Receiver<RuntimeStatus>, control: Option<ControlApi>) -> Self {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        Self {
            metrics: Mutex::new((registry, metrics)),
            status,
            control,
        }
    }

    /// The metrics text for the current status.
    pub fn render(&self) -> String {
        let st = self.status.borrow().clone();
        let guard = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        let (registry, m) = &*guard;
        m.update(&st);
        sre_core::telemetry::render_metrics(registry).unwrap_or_default()
    }
}

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    let open = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz));
    let routes = if state.control.is_some() {
        open.route("/v1/status", get(status))
            .route("/v1/approvals/{plan_id}", post(approve))
            .route("/v1/commands/{command}", post(command))
    } else {
        open
    };
    routes
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            sre_core::telemetry::METRICS_CONTENT_TYPE,
        )],
        s.render(),
    )
}

async fn healthz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let st = s.status.borrow().clone();
    let code = if st.ticks_total > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(st))
}

fn error(code: StatusCode, kind: &str, message: impl std::fmt::Display) -> Response {
    let body = serde_json::json!({ "error": kind, "message": message.to_string() });
    (code, Json(body)).into_response()
}

/// The control API if the request carries its token; the refusal otherwise.
fn authorized<'a>(s: &'a AppState, headers: &HeaderMap) -> Result<&'a ControlApi, Box<Response>> {
    let Some(api) = &s.control else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "disabled",
            "no control token configured",
        )));
    };
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    if bool::from(sent.ct_eq(api.token.as_bytes())) {
        Ok(api)
    } else {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "bearer token required",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        Err(Box::new(r))
    }
}

/// A person's name as given: non-empty, short, printable (it lands in the audit trail).
fn principal(name: &str) -> Result<Principal, Box<Response>> {
    let name = name.trim();
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "bad_name",
            "a non-empty printable name of at most 128 bytes",
        )));
    }
    Ok(Principal::new(name))
}

async fn status(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match authorized(&s, &headers) {
        Ok(api) => {
            let runtime = s.status.borrow().clone();
            let control = api.control.status(api.clock.wall());
            Json(serde_json::json!({ "runtime": runtime, "control": control })).into_response()
        }
        Err(r) => *r,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    approver: String,
}

async fn approve(
    State(s): State<Arc<AppState>>,
    Path(plan_id): Path<String>,
    headers: HeaderMap,
    body: Option<Json<ApproveBody>>,
) -> Response {
    let api = match authorized(&s, &headers) {
        Ok(api) => api,
        Err(r) => return *r,
    };
    let Some(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            r#"expected {"approver": NAME}"#,
        );
    };
    let by = match principal(&body.approver) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let result = api.control.approve(&plan_id, by.clone(), api.clock.wall());
    let outcome = result
        .as_ref()
        .map_or_else(ControlError::kind, |_| "approved");
    let details = serde_json::json!({ "plan_id": plan_id, "outcome": outcome });
    api.audit("failover.approval.decide", &by, &plan_id, details)
        .await;
    match result {
        Ok(st) => {
            tracing::warn!(%plan_id, approver = %by, "promotion approved");
            Json(serde_json::json!({ "plan_id": plan_id, "status": st })).into_response()
        }
        Err(e) => {
            let code = match &e {
                ControlError::UnknownPlan { .. } => StatusCode::NOT_FOUND,
                ControlError::Approval(a) => match a.kind() {
                    "expired" => StatusCode::GONE,
                    "already_decided" => StatusCode::CONFLICT,
                    _ => StatusCode::FORBIDDEN,
                },
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            tracing::warn!(%plan_id, approver = %by, error = %e, "approval refused");
            error(code, e.kind(), e)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandBody {
    by: String,
}

async fn command(
    State(s): State<Arc<AppState>>,
    Path(command): Path<String>,
    headers: HeaderMap,
    body: Option<Json<CommandBody>>,
) -> Response {
    let api = match authorized(&s, &headers) {
        Ok(api) => api,
        Err(r) => return *r,
    };
    let cmd = match command.as_str() {
        "promote" => OperatorCommand::Promote,
        "demote" => OperatorCommand::Demote,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "unknown_command",
                "use promote or demote",
            );
        }
    };
    let Some(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            r#"expected {"by": NAME}"#,
        );
    };
    let by = match principal(&body.by) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    tracing::warn!(%command, by = %by, "operator command");
    let details = serde_json::json!({ "command": command });
    api.audit("failover.command", &by, &command, details).await;
    api.control.command(cmd, by, api.clock.wall());
    let control = api.control.status(api.clock.wall());
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "command": command, "control": control })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use sre_core::{Generation, ManualClock, RegionId};
    use sre_failover::control::ControlSettings;
    use tower::ServiceExt;

    const TOKEN: &str = "0123456789abcdef-token";

    fn app() -> (Router, Control, chrono::DateTime<chrono::Utc>) {
        let control = Control::new(ControlSettings::for_region(&RegionId::new("eu")));
        let (_tx, rx) = watch::channel(RuntimeStatus::new(RegionId::new("eu"), true));
        let clock = ManualClock::at_epoch();
        let now = clock.wall();
        let api = ControlApi {
            control: control.clone(),
            token: TOKEN.into(),
            clock: Arc::new(clock),
            evidence: None,
        };
        (router(Arc::new(AppState::new(rx, Some(api)))), control, now)
    }

    async fn call(app: &Router, method: &str, uri: &str, token: &str, body: &str) -> (u16, String) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap_or_else(|e| panic!("{e}"));
        let resp = app
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|e| match e {});
        let code = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        (code, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn control_needs_the_token_and_feeds_approvals_and_commands() {
        let (app, control, now) = app();
        assert_eq!(call(&app, "GET", "/v1/status", "wrong", "").await.0, 401);
        assert_eq!(call(&app, "GET", "/metrics", "", "").await.0, 200);
        let (code, body) = call(&app, "GET", "/v1/status", TOKEN, "").await;
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(r#""approval":null"#), "{body}");

        let id = control.request(Generation(5), now);
        let uri = format!("/v1/approvals/{id}");
        let me = r#"{"approver":"failover-controller/eu"}"#;
        let (code, body) = call(&app, "POST", &uri, TOKEN, me).await;
        assert_eq!(
            (code, body.contains("self_approval")),
            (403, true),
            "{body}"
        );
        let (code, _) = call(
            &app,
            "POST",
            "/v1/approvals/nope",
            TOKEN,
            r#"{"approver":"ana"}"#,
        )
        .await;
        assert_eq!(code, 404);
        let (code, _) = call(&app, "POST", &uri, TOKEN, r#"{"who":"ana"}"#).await;
        assert_eq!(code, 422, "unknown fields are refused");
        let (code, body) = call(&app, "POST", &uri, TOKEN, r#"{"approver":"ana"}"#).await;
        assert_eq!(code, 200, "{body}");
        assert!(control.approval_granted(now));

        let (code, _) = call(
            &app,
            "POST",
            "/v1/commands/promote",
            TOKEN,
            r#"{"by":"ana"}"#,
        )
        .await;
        assert_eq!(code, 202);
        assert_eq!(control.pending_command(now), Some(OperatorCommand::Promote));
        let (code, _) = call(
            &app,
            "POST",
            "/v1/commands/reboot",
            TOKEN,
            r#"{"by":"ana"}"#,
        )
        .await;
        assert_eq!(code, 404);
        let big = format!(r#"{{"by":"{}"}}"#, "a".repeat(MAX_BODY));
        assert_eq!(
            call(&app, "POST", "/v1/commands/demote", TOKEN, &big)
                .await
                .0,
            413
        );
        assert_eq!(control.pending_command(now), Some(OperatorCommand::Promote));
    }
}
