//! The HTTP face of the webhook: `POST /alerts` (and the issue's `/webhook/alertmanager`)
//! and `GET /runs`, `GET /runs/{id}` behind a bearer token; `/healthz` and `/metrics` open.
//!
//! The alert handler only authenticates, parses and queues: it answers `202` with the
//! run id, and one worker task plans every queued delivery in arrival order through the
//! pure engine (so dedupe sees deliveries in the order Alertmanager sent them). A full
//! queue is `503`, which Alertmanager retries: an accepted alert is never dropped.
//!
//! Actions are not executed: no executor exists yet for any action kind, and every planned
//! action says so in its `execution` field rather than pretending to have run. The path
//! after execution is wired: an executed action with a verify spec is verified through
//! the [`MetricsQuery`] port in a task of its own, and the result is recorded in the
//! engine (`Helped`/`NotHelped`) and in the run.

use crate::config::BearerToken;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use serde_json::json;
use sre_core::Clock;
use sre_core::telemetry::{METRICS_CONTENT_TYPE, Registry, render_metrics};
use sre_remediation::payload::{self, AlertStatus, WebhookPayload};
use sre_remediation::plan::{self, EngineState, Observations, Outcome, PlanEntry, Policy, Verdict};
use sre_remediation::ports::MetricsQuery;
use sre_remediation::rules::{RuleSet, VerifySpec};
use sre_remediation::verify::{self, Sleeper, VerifyOutcome};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;

type LabelFamily = Family<Vec<(String, String)>, Counter>;

/// Counters behind `/metrics`; labels come from small fixed sets (status, action kind,
/// skip reason, rejection reason, verification result), never from alert labels or ids.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    received: LabelFamily,
    planned: LabelFamily,
    blocked: LabelFamily,
    rejected: LabelFamily,
    verified: LabelFamily,
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
        sub.register(
            "verifications",
            "Verifications of executed actions, by result",
            m.verified.clone(),
        );
        m
    }
}

fn inc(f: &LabelFamily, key: &str, value: &str) {
    f.get_or_create(&vec![(key.to_owned(), value.to_owned())])
        .inc();
}

/// Locks shared plain data; a poisoned lock means a panic mid-update of data that the
/// next update re-checks, so carry on rather than refuse every later alert.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The webhook's fixed settings (from the config file and the token source).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The token Alertmanager must send.
    pub token: BearerToken,
    /// Engine limits.
    pub policy: Policy,
    /// Plan and report only.
    pub dry_run: bool,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Deliveries waiting for the planner; beyond this the handler answers 503.
    pub queue_capacity: usize,
    /// Runs kept for `GET /runs` (oldest dropped first).
    pub runs_kept: usize,
}

/// How executed actions are verified: the metrics port, a sleeper for the waits between
/// queries (tokio's in the binary) and the poll interval.
pub struct Verifier {
    /// The metrics backend (`sre-adapter-prometheus` in the binary).
    pub query: Arc<dyn MetricsQuery>,
    /// Waits between attempts.
    pub sleeper: Arc<dyn Sleeper>,
    /// Time between attempts.
    pub interval: Duration,
}

/// The production [`Sleeper`]: tokio's timer, which follows the same monotonic time as
/// [`sre_core::SystemClock`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

#[async_trait::async_trait]
impl Sleeper for TokioSleeper {
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

/// What happened to a planned action in this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Execution {
    /// Nothing ran, for the reason given (dry run, no executor).
    NotExecuted {
        /// Why.
        reason: String,
    },
    /// An executor carried the action out (executors come with the kube adapter).
    Executed {
        /// What the executor reported (object, revision, request id).
        evidence: String,
    },
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Accepted, waiting for the planner.
    Queued,
    /// Planned; executed actions are being verified.
    Verifying,
    /// Planned and, where anything ran, verified.
    Done,
}

/// One plan entry with what happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct RunEntry {
    /// The engine's decision.
    #[serde(flatten)]
    pub entry: PlanEntry,
    /// For actions: whether it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<Execution>,
    /// For executed actions with a verify spec: the result, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerifyOutcome>,
}

/// One accepted delivery and everything decided about it, as `GET /runs` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Returned by the `POST` that accepted the delivery.
    pub id: u64,
    /// When the delivery was accepted (wall clock).
    pub received_at: DateTime<Utc>,
    /// Where the run is.
    pub state: RunState,
    /// The Alertmanager group the delivery belongs to.
    pub group_key: String,
    /// The Alertmanager receiver that sent it.
    pub receiver: String,
    /// Group status.
    pub status: AlertStatus,
    /// Alerts in the delivery.
    pub alerts: usize,
    /// Alerts Alertmanager left out of the delivery (`max_alerts`).
    pub truncated_alerts: u64,
    /// Whether the webhook runs in dry-run mode.
    pub dry_run: bool,
    /// The plan, once made.
    pub plan: Vec<RunEntry>,
    /// Verifications still running.
    #[serde(skip)]
    verifying: usize,
}

#[derive(Debug, Default)]
struct Runs {
    next_id: u64,
    list: VecDeque<Run>,
}

impl Runs {
    fn get_mut(&mut self, id: u64) -> Option<&mut Run> {
        self.list.iter_mut().find(|r| r.id == id)
    }
}

struct Job {
    run: u64,
    payload: WebhookPayload,
}

/// Everything a request and the planner need; one per process.
pub struct AppState {
    settings: Settings,
    rules: RuleSet,
    clock: Arc<dyn Clock>,
    engine: Mutex<EngineState>,
    metrics: Metrics,
    registry: Registry,
    runs: Mutex<Runs>,
    queue: mpsc::Sender<Job>,
    queued: Mutex<Option<mpsc::Receiver<Job>>>,
    verifier: Option<Verifier>,
}

impl AppState {
    /// Builds the state; the registry gets the webhook's counters. Without a verifier,
    /// an executed action's verification fails with "no metrics backend configured".
    pub fn new(
        settings: Settings,
        rules: RuleSet,
        clock: Arc<dyn Clock>,
        mut registry: Registry,
        verifier: Option<Verifier>,
    ) -> Self {
        let metrics = Metrics::register(&mut registry);
        let (queue, queued) = mpsc::channel(settings.queue_capacity.max(1));
        Self {
            engine: Mutex::new(EngineState::new(&settings.policy)),
            settings,
            rules,
            clock,
            metrics,
            registry,
            runs: Mutex::new(Runs::default()),
            queue,
            queued: Mutex::new(Some(queued)),
            verifier,
        }
    }
}

/// Starts the planner task on the current tokio runtime and returns the router.
pub fn start(state: AppState) -> Router {
    let state = Arc::new(state);
    if let Some(rx) = lock(&state.queued).take() {
        tokio::spawn(planner(state.clone(), rx));
    }
    router(state)
}

/// The router: authenticated alert and run routes, open health and metrics.
fn router(state: Arc<AppState>) -> Router {
    let authed = Router::new()
        .route("/alerts", post(post_alerts))
        .route("/webhook/alertmanager", post(post_alerts))
        .route("/runs", get(list_runs))
        .route("/runs/{id}", get(get_run))
        .layer(DefaultBodyLimit::max(state.settings.max_body_bytes))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(authed)
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
    if authorized(req.headers(), &s.settings.token) {
        return next.run(req).await;
    }
    inc(&s.metrics.rejected, "reason", "unauthorized");
    tracing::warn!(path = %req.uri().path(), "request without a valid bearer token");
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
    // Reserve queue space before recording anything: a full queue refuses the delivery
    // whole (Alertmanager retries a 503) instead of accepting it and dropping it.
    let Ok(permit) = s.queue.try_reserve() else {
        inc(&s.metrics.rejected, "reason", "queue_full");
        tracing::warn!("planner queue full; asking Alertmanager to retry");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_full",
            "too many deliveries waiting; retry later",
        );
    };
    for a in &payload.alerts {
        inc(&s.metrics.received, "status", a.status.as_str());
    }
    let id = {
        let mut runs = lock(&s.runs);
        runs.next_id += 1;
        let id = runs.next_id;
        runs.list.push_back(Run {
            id,
            received_at: s.clock.wall(),
            state: RunState::Queued,
            group_key: payload.group_key.clone(),
            receiver: payload.receiver.clone(),
            status: payload.status,
            alerts: payload.alerts.len(),
            truncated_alerts: payload.truncated_alerts,
            dry_run: s.settings.dry_run,
            plan: Vec::new(),
            verifying: 0,
        });
        while runs.list.len() > s.settings.runs_kept.max(1) {
            runs.list.pop_front();
        }
        id
    };
    permit.send(Job { run: id, payload });
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "run": id, "state": RunState::Queued })),
    )
        .into_response()
}

/// Plans queued deliveries one at a time, in arrival order.
async fn planner(s: Arc<AppState>, mut rx: mpsc::Receiver<Job>) {
    while let Some(job) = rx.recv().await {
        plan_run(&s, &job);
    }
}

/// What one executed action still needs verified.
struct Pending {
    index: usize,
    fingerprint: String,
    spec: VerifySpec,
}

fn plan_run(s: &Arc<AppState>, job: &Job) {
    let now = s.clock.monotonic();
    // No spend source exists yet: with a budget configured, scale-ups fail closed.
    let obs = Observations::default();
    let mut to_verify = Vec::new();
    let plan: Vec<RunEntry> = {
        let mut engine = lock(&s.engine);
        let entries = plan::decide(
            &mut engine,
            &s.rules,
            &s.settings.policy,
            &obs,
            &job.payload.alerts,
            now,
        );
        entries
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                let execution = report(s, &entry);
                match (&execution, &entry.verdict) {
                    (
                        Some(Execution::Executed { .. }),
                        Verdict::Act {
                            verify: Some(v), ..
                        },
                    ) => {
                        to_verify.push(Pending {
                            index,
                            fingerprint: entry.fingerprint.clone(),
                            spec: v.clone(),
                        });
                    }
                    // Nothing to check: an executed action without a verify spec counts
                    // as having helped, or escalation would follow every run of it.
                    (Some(Execution::Executed { .. }), _) => {
                        plan::record_outcome(&mut engine, &entry.fingerprint, Outcome::Helped, now);
                    }
                    (Some(Execution::NotExecuted { .. }), _) => {
                        plan::record_outcome(
                            &mut engine,
                            &entry.fingerprint,
                            Outcome::NotExecuted,
                            now,
                        );
                    }
                    (None, _) => {}
                }
                RunEntry {
                    entry,
                    execution,
                    verification: None,
                }
            })
            .collect()
    };
    {
        let mut runs = lock(&s.runs);
        if let Some(run) = runs.get_mut(job.run) {
            run.plan = plan;
            run.verifying = to_verify.len();
            run.state = if to_verify.is_empty() {
                RunState::Done
            } else {
                RunState::Verifying
            };
        }
    }
    for p in to_verify {
        tokio::spawn(verify_action(s.clone(), job.run, p));
    }
}

async fn verify_action(s: Arc<AppState>, run: u64, p: Pending) {
    let outcome = match &s.verifier {
        Some(v) => {
            verify::until_holds(
                v.query.as_ref(),
                &p.spec,
                s.clock.as_ref(),
                v.sleeper.as_ref(),
                v.interval,
            )
            .await
        }
        None => VerifyOutcome::Failed {
            attempts: 0,
            reason: "no metrics backend configured (verify.prometheus_url)".into(),
        },
    };
    let result = match &outcome {
        VerifyOutcome::Holds { .. } => "holds",
        VerifyOutcome::TimedOut { .. } => "timed_out",
        _ => "failed",
    };
    inc(&s.metrics.verified, "result", result);
    tracing::info!(alert_fingerprint = %p.fingerprint, run, result, "verification finished");
    plan::record_outcome(
        &mut lock(&s.engine),
        &p.fingerprint,
        outcome.outcome(),
        s.clock.monotonic(),
    );
    let mut runs = lock(&s.runs);
    if let Some(r) = runs.get_mut(run) {
        if let Some(e) = r.plan.get_mut(p.index) {
            e.verification = Some(outcome);
        }
        r.verifying = r.verifying.saturating_sub(1);
        if r.verifying == 0 {
            r.state = RunState::Done;
        }
    }
}

/// Carries out an action. No executor exists yet for any kind: every action reports why
/// it did not run, and nothing pretends otherwise.
fn execute(s: &AppState, kind: &str) -> Execution {
    let reason = if s.settings.dry_run {
        format!("dry run (and no executor for {kind})")
    } else {
        format!("no executor for {kind}")
    };
    Execution::NotExecuted { reason }
}

fn report(s: &AppState, e: &PlanEntry) -> Option<Execution> {
    let target = e
        .target
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    match &e.verdict {
        Verdict::Act { action, .. } => {
            inc(&s.metrics.planned, "kind", action.kind());
            tracing::info!(alert_fingerprint = %e.fingerprint, alertname = %e.alertname, %target,
                action = action.kind(), dry_run = s.settings.dry_run, "remediation planned");
            Some(execute(s, action.kind()))
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
            Some(execute(s, "escalate"))
        }
        Verdict::Cancel => {
            tracing::info!(alert_fingerprint = %e.fingerprint, %target, "resolved; pending work cancelled");
            None
        }
    }
}

async fn list_runs(State(s): State<Arc<AppState>>) -> Response {
    let runs: Vec<Run> = lock(&s.runs).list.iter().rev().cloned().collect();
    axum::Json(json!({ "runs": runs })).into_response()
}

async fn get_run(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "bad_id", "run ids are numbers");
    };
    let run = lock(&s.runs).list.iter().find(|r| r.id == id).cloned();
    match run {
        Some(r) => axum::Json(r).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such run (never accepted, or older than the runs kept)",
        ),
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

#[cfg(test)]
mod tests {
    //! The verification step after an executed action. Executors do not exist yet, so the
    //! step is driven directly: a planned run, then `verify_action` over a scripted port.
    use super::*;
    use sre_core::{ManualClock, PortError};
    use sre_remediation::ports::QueryValue;
    use std::time::Duration;

    struct Answers(Mutex<Vec<Result<QueryValue, PortError>>>);

    #[async_trait::async_trait]
    impl MetricsQuery for Answers {
        async fn instant(&self, _: &str) -> Result<QueryValue, PortError> {
            let mut a = lock(&self.0);
            if a.len() > 1 {
                a.remove(0)
            } else {
                a[0].clone()
            }
        }
    }

    struct Advance(ManualClock);

    #[async_trait::async_trait]
    impl Sleeper for Advance {
        async fn sleep(&self, d: Duration) {
            self.0.advance(d);
        }
    }

    fn state(answers: Vec<Result<QueryValue, PortError>>, clock: &ManualClock) -> Arc<AppState> {
        Arc::new(app_state(answers, clock, 4))
    }

    fn app_state(
        answers: Vec<Result<QueryValue, PortError>>,
        clock: &ManualClock,
        queue_capacity: usize,
    ) -> AppState {
        let policy = Policy {
            cooldown: Duration::from_mins(5),
            backoff: sre_core::guard::Backoff::new(
                Duration::from_mins(5),
                std::num::NonZeroU32::MIN.saturating_add(1),
                Duration::from_hours(1),
                sre_core::guard::Jitter::None,
            ),
            escalate_after: std::num::NonZeroU32::MIN.saturating_add(2),
            escalation_cool_off: Duration::from_hours(1),
            dedupe_window: Duration::from_mins(10),
            blast_radius: plan::BlastRadius {
                max_targets: std::num::NonZeroU32::MIN.saturating_add(4),
                window: Duration::from_mins(10),
                max_replica_pct: 25,
            },
            budget: None,
            retention: Duration::from_hours(24),
        };
        let settings = Settings {
            token: BearerToken::new("t").expect("non-empty"),
            policy,
            dry_run: false,
            max_body_bytes: 64 * 1024,
            queue_capacity,
            runs_kept: 4,
        };
        AppState::new(
            settings,
            RuleSet::builtin().expect("valid"),
            Arc::new(clock.clone()),
            sre_core::telemetry::metrics_registry(),
            Some(Verifier {
                query: Arc::new(Answers(Mutex::new(answers))),
                sleeper: Arc::new(Advance(clock.clone())),
                interval: Duration::from_secs(10),
            }),
        )
    }

    /// Plans the high-memory fixture into run 1 as if its action had been executed.
    fn executed_run(s: &Arc<AppState>) -> Pending {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/alertmanager/firing-high-memory.json"
        ))
        .expect("fixture");
        let payload = payload::parse(&body).expect("valid");
        let entries = plan::decide(
            &mut lock(&s.engine),
            &s.rules,
            &s.settings.policy,
            &Observations::default(),
            &payload.alerts,
            s.clock.monotonic(),
        );
        let Verdict::Act {
            verify: Some(spec), ..
        } = &entries[0].verdict
        else {
            panic!("{entries:?}")
        };
        let pending = Pending {
            index: 0,
            fingerprint: entries[0].fingerprint.clone(),
            spec: spec.clone(),
        };
        lock(&s.runs).list.push_back(Run {
            id: 1,
            received_at: s.clock.wall(),
            state: RunState::Verifying,
            group_key: payload.group_key,
            receiver: payload.receiver,
            status: payload.status,
            alerts: 1,
            truncated_alerts: 0,
            dry_run: false,
            plan: entries
                .into_iter()
                .map(|entry| RunEntry {
                    entry,
                    execution: Some(Execution::Executed {
                        evidence: "test".into(),
                    }),
                    verification: None,
                })
                .collect(),
            verifying: 1,
        });
        pending
    }

    fn run_one(s: &AppState) -> Run {
        lock(&s.runs).list[0].clone()
    }

    #[tokio::test]
    async fn a_verification_that_holds_completes_the_run() {
        let clock = ManualClock::at_epoch();
        let s = state(vec![Ok(QueryValue::Vector(Vec::new()))], &clock);
        let p = executed_run(&s);
        verify_action(s.clone(), 1, p).await;
        let run = run_one(&s);
        assert_eq!(run.state, RunState::Done);
        assert!(
            matches!(
                run.plan[0].verification,
                Some(VerifyOutcome::Holds { attempts: 1, .. })
            ),
            "{run:?}"
        );
        assert!(lock(&s.engine).pending().is_empty(), "outcome recorded");
        let text = render_metrics(&s.registry).expect("metrics");
        assert!(
            text.contains(r#"sre_remediation_verifications_total{result="holds"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_verification_that_never_holds_times_out_on_the_rule_timeout() {
        let clock = ManualClock::at_epoch();
        let series = QueryValue::Vector(vec![sre_remediation::ports::Sample {
            labels: std::collections::BTreeMap::new(),
            value: 0.97,
        }]);
        let s = state(vec![Ok(series)], &clock);
        let p = executed_run(&s);
        let timeout = p.spec.timeout;
        verify_action(s.clone(), 1, p).await;
        let run = run_one(&s);
        assert_eq!(run.state, RunState::Done);
        assert!(
            matches!(
                run.plan[0].verification,
                Some(VerifyOutcome::TimedOut { .. })
            ),
            "{run:?}"
        );
        assert_eq!(
            clock.monotonic().0,
            timeout,
            "waited exactly the rule's timeout"
        );
        let text = render_metrics(&s.registry).expect("metrics");
        assert!(
            text.contains(r#"sre_remediation_verifications_total{result="timed_out"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_with_503_and_keeps_what_it_accepted() {
        let clock = ManualClock::at_epoch();
        // No planner started: the one queue slot stays taken.
        let app = router(Arc::new(app_state(
            vec![Ok(QueryValue::Scalar(0.0))],
            &clock,
            1,
        )));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/fixtures/alertmanager/firing-high-memory.json"
        ))
        .expect("fixture");
        let http = reqwest::Client::new();
        let post = || {
            http.post(format!("{base}/alerts"))
                .bearer_auth("t")
                .body(body.clone())
                .send()
        };
        let first = post().await.expect("post");
        assert_eq!(first.status().as_u16(), 202);
        let second = post().await.expect("post");
        assert_eq!(second.status().as_u16(), 503);
        let err: serde_json::Value = second.json().await.expect("json");
        assert_eq!(err["kind"], "queue_full");
        let runs: serde_json::Value = http
            .get(format!("{base}/runs"))
            .bearer_auth("t")
            .send()
            .await
            .expect("runs")
            .json()
            .await
            .expect("json");
        let runs = runs["runs"].as_array().cloned().unwrap_or_default();
        assert_eq!(runs.len(), 1, "the refused delivery left no run: {runs:?}");
        assert_eq!(runs[0]["state"], "queued");
    }
}
