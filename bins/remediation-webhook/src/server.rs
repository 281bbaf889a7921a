//! The HTTP face of the webhook: `POST /alerts` (and the issue's `/webhook/alertmanager`)
//! and `GET /runs`, `GET /runs/{id}` behind a bearer token; `/healthz` and `/metrics` open.
//!
//! The alert handler only authenticates, parses and queues: it answers `202` with the
//! run id, and one worker task plans every queued delivery in arrival order through the
//! pure engine (so dedupe sees deliveries in the order Alertmanager sent them). A full
//! queue is `503`, which Alertmanager retries: an accepted alert is never dropped.
//!
//! Each planned action then runs the remediation loop in a task of its own, through the
//! injected [`Ports`]: execute (in [`Mode::DryRun`] when the webhook is a dry run: the
//! backend validates, nothing is persisted, nothing is verified), verify through the
//! [`MetricsQuery`] port until the rule's expectation holds or times out, record
//! `Helped`/`NotHelped` in the engine (whose breaker escalates after repeated failures),
//! and when it did not help run the rule's rollback through the same executors and
//! escalate: a structured log line, a counter and, when a notifier is configured, a
//! notification. Every step is appended to the evidence log, the record for analysis.
//! An action without an executor says so in its `execution` field rather than
//! pretending to have run.

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
use sre_core::evidence::EvidenceSink;
use sre_core::telemetry::{METRICS_CONTENT_TYPE, Registry, render_metrics};
use sre_remediation::actions::{ActionOutcome, Mode};
use sre_remediation::checks::{self, Gate, NamedCheck};
use sre_remediation::execute::{self, Call, ExecError, Executors, PlannedCall};
use sre_remediation::payload::{self, AlertStatus, WebhookPayload};
use sre_remediation::plan::{self, EngineState, Observations, Outcome, PlanEntry, Policy, Verdict};
use sre_remediation::ports::MetricsQuery;
use sre_remediation::rules::RuleSet;
use sre_remediation::runbook::RuleBook;
use sre_remediation::spend::{self, SpendObservation, SpendSource};
use sre_remediation::verify::{self, Sleeper, VerifyOutcome};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One fixed label per counter family, both names `'static`: counting on the request path
/// allocates nothing (a `Vec<(String, String)>` key cost three allocations per count).
type LabelFamily = Family<[(&'static str, &'static str); 1], Counter>;

/// Counters behind `/metrics`; labels come from small fixed sets (status, action kind,
/// skip reason, rejection reason, verification, execution, rollback and escalation
/// result), never from alert labels or ids.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    received: LabelFamily,
    planned: LabelFamily,
    blocked: LabelFamily,
    rejected: LabelFamily,
    verified: LabelFamily,
    executed: LabelFamily,
    rollbacks: LabelFamily,
    escalations: LabelFamily,
    evidence_failures: Counter,
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
        sub.register(
            "executions",
            "Planned actions carried out (or dry-run validated), by result",
            m.executed.clone(),
        );
        sub.register(
            "rollbacks",
            "Rollbacks after a remediation did not help, by result",
            m.rollbacks.clone(),
        );
        sub.register(
            "escalations",
            "Escalations to humans, by reason",
            m.escalations.clone(),
        );
        sub.register(
            "evidence_failures",
            "Evidence records that could not be appended",
            m.evidence_failures.clone(),
        );
        m
    }
}

fn inc(f: &LabelFamily, key: &'static str, value: &'static str) {
    f.get_or_create(&[(key, value)]).inc();
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

/// The ports the webhook acts through, injected as one struct so that tests run the whole
/// loop on fakes (`sre_remediation::testing`, a scripted [`MetricsQuery`], a manual
/// clock) while `main` wires kube, Prometheus and the evidence file.
pub struct Ports {
    /// Time for the engine, verification deadlines and evidence timestamps.
    pub clock: Arc<dyn Clock>,
    /// How executed actions are verified; without one, every executed action's
    /// verification fails ("no metrics backend configured") and counts as not helped.
    pub verifier: Option<Verifier>,
    /// Who carries actions, rollbacks and notifications out; an absent port makes its
    /// actions "not executed", never silently skipped.
    pub executors: Executors,
    /// Where every step is recorded for analysis; `None` logs only.
    pub evidence: Option<Arc<dyn EvidenceSink>>,
}

/// What happened to a planned action in this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Execution {
    /// Nothing ran, for the reason given (no executor, no port, an unfit target).
    NotExecuted {
        /// Why.
        reason: String,
    },
    /// The executor validated the call in dry-run mode; nothing was persisted, so
    /// nothing is verified.
    DryRun {
        /// The call.
        call: Call,
        /// What the executor reported it would do.
        outcome: ActionOutcome,
    },
    /// The executor carried the call out.
    Executed {
        /// The call.
        call: Call,
        /// What changed (before/after).
        outcome: ActionOutcome,
    },
    /// The executor failed; counts as not helped and is escalated.
    Failed {
        /// The call.
        call: Call,
        /// The executor's error.
        error: String,
    },
}

/// A follow-up step after a remediation that did not help.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum StepResult {
    /// Carried out.
    Done {
        /// What the executor reported.
        outcome: ActionOutcome,
    },
    /// Tried, and it failed.
    Failed {
        /// Why.
        error: String,
    },
    /// Not tried, for the reason given (no rollback step, no notifier, nothing changed).
    NotRun {
        /// Why.
        reason: String,
    },
}

/// An escalation to humans, with what was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Escalation {
    /// The channel (the rule's `escalate_to`, else the default).
    pub to: String,
    /// Why (`not_helped`, `execution_failed`, `breaker_open`).
    pub reason: &'static str,
    /// The summary that was logged and sent.
    pub summary: String,
    /// Whether the notification went out.
    pub notification: StepResult,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Accepted, waiting for the planner.
    Queued,
    /// Planned; actions are being executed, verified, rolled back or escalated.
    Acting,
    /// Planned and every action's loop finished.
    Done,
}

/// One plan entry with what happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct RunEntry {
    /// The engine's decision.
    #[serde(flatten)]
    pub entry: PlanEntry,
    /// For actions of a Runbook with preconditions: whether they held right before
    /// acting (a blocked gate names the check that failed and why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preconditions: Option<Gate>,
    /// For actions: whether and how it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<Execution>,
    /// For executed actions: the verification result, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerifyOutcome>,
    /// For executed actions that did not help: how the rule's rollback step went
    /// (`rollback` itself, flattened from the plan entry, is the step as planned).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_result: Option<StepResult>,
    /// When humans were told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
}

impl RunEntry {
    fn new(entry: PlanEntry, execution: Option<Execution>) -> Self {
        Self {
            entry,
            preconditions: None,
            execution,
            verification: None,
            rollback_result: None,
            escalation: None,
        }
    }
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
    /// The spend the budget gate planned with (only when a budget is configured): the
    /// amount, or why it is unknown (scale-ups were then blocked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spend: Option<SpendObservation>,
    /// Action loops still running.
    #[serde(skip)]
    in_flight: usize,
}

#[derive(Debug, Default)]
struct Runs {
    next_id: u64,
    list: VecDeque<Run>,
}

impl Runs {
    /// Ids are handed out in order and runs leave only from the front, so the list is
    /// contiguous in id: the position is an offset, not a search of up to `runs_kept`.
    fn position(&self, id: u64) -> Option<usize> {
        let first = self.list.front()?.id;
        let i = usize::try_from(id.checked_sub(first)?).ok()?;
        (self.list.get(i)?.id == id).then_some(i)
    }

    fn get(&self, id: u64) -> Option<&Run> {
        self.list.get(self.position(id)?)
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Run> {
        let i = self.position(id)?;
        self.list.get_mut(i)
    }
}

struct Job {
    run: u64,
    payload: WebhookPayload,
}

/// Everything a request and the planner need; one per process.
pub struct AppState {
    settings: Settings,
    book: RuleBookHandle,
    spend: SpendSource,
    clock: Arc<dyn Clock>,
    engine: Mutex<EngineState>,
    metrics: Metrics,
    registry: Registry,
    runs: Mutex<Runs>,
    queue: mpsc::Sender<Job>,
    queued: Mutex<Option<mpsc::Receiver<Job>>>,
    verifier: Option<Verifier>,
    executors: Executors,
    evidence: Option<Arc<dyn EvidenceSink>>,
}

impl AppState {
    /// Builds the state from its settings, rules and ports; the registry gets the
    /// webhook's counters.
    #[must_use]
    pub fn new(settings: Settings, rules: RuleSet, mut registry: Registry, ports: Ports) -> Self {
        let metrics = Metrics::register(&mut registry);
        let (queue, queued) = mpsc::channel(settings.queue_capacity.max(1));
        Self {
            engine: Mutex::new(EngineState::new(&settings.policy)),
            settings,
            book: RuleBookHandle::new(RuleBook::new(rules)),
            spend: SpendSource::None,
            clock: ports.clock,
            metrics,
            registry,
            runs: Mutex::new(Runs::default()),
            queue,
            queued: Mutex::new(Some(queued)),
            verifier: ports.verifier,
            executors: ports.executors,
            evidence: ports.evidence,
        }
    }

    /// Plans with `book` (rules plus the preconditions of its Runbook rules) instead of
    /// the plain rules given to [`AppState::new`].
    #[must_use]
    pub fn with_rule_book(self, book: RuleBook) -> Self {
        self.book.replace(book);
        self
    }

    /// Reads the budget gate's spend from `spend` before every plan (asked through the
    /// verifier's metrics port for a query source).
    #[must_use]
    pub fn with_spend(mut self, spend: SpendSource) -> Self {
        self.spend = spend;
        self
    }

    /// A handle that swaps the rule book while the server runs (the cluster Runbook
    /// poller); each delivery plans with the book current when it is planned.
    #[must_use]
    pub fn rule_book_handle(&self) -> RuleBookHandle {
        self.book.clone()
    }

    fn mode(&self) -> Mode {
        if self.settings.dry_run {
            Mode::DryRun
        } else {
            Mode::Apply
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
    // Everything but the id is built before taking the lock, and the runs that fall out
    // of the kept window are dropped after releasing it: concurrent deliveries and
    // `GET /runs` wait only for the push.
    let mut run = Run {
        id: 0,
        received_at: s.clock.wall(),
        state: RunState::Queued,
        group_key: payload.group_key.clone(),
        receiver: payload.receiver.clone(),
        status: payload.status,
        alerts: payload.alerts.len(),
        truncated_alerts: payload.truncated_alerts,
        dry_run: s.settings.dry_run,
        plan: Vec::new(),
        spend: None,
        in_flight: 0,
    };
    let (id, evicted) = {
        let mut runs = lock(&s.runs);
        runs.next_id += 1;
        run.id = runs.next_id;
        runs.list.push_back(run);
        let excess = runs.list.len().saturating_sub(s.settings.runs_kept.max(1));
        let evicted: Vec<Run> = runs.list.drain(..excess).collect();
        (runs.next_id, evicted)
    };
    drop(evicted);
    permit.send(Job { run: id, payload });
    // The answer is two fixed fields: written directly, not through a `serde_json::Value`.
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        format!(r#"{{"run":{id},"state":"queued"}}"#),
    )
        .into_response()
}

/// Plans queued deliveries one at a time, in arrival order; each action's loop runs in a
/// task of its own, so a slow verification never holds up the next delivery.
async fn planner(s: Arc<AppState>, mut rx: mpsc::Receiver<Job>) {
    while let Some(job) = rx.recv().await {
        // The loops run detached; their results land in the run record.
        drop(plan_run(&s, &job).await);
    }
}

/// The rules the planner uses, swappable while the server runs: readers take the
/// current `Arc` and plan with it, so a swap never waits for a plan or changes one
/// midway.
#[derive(Debug, Clone)]
pub struct RuleBookHandle(Arc<Mutex<Arc<RuleBook>>>);

impl RuleBookHandle {
    /// A handle on `book`.
    #[must_use]
    pub fn new(book: RuleBook) -> Self {
        Self(Arc::new(Mutex::new(Arc::new(book))))
    }

    /// The book deliveries are planned with from now on.
    pub fn replace(&self, book: RuleBook) {
        *lock(&self.0) = Arc::new(book);
    }

    /// The current book.
    #[must_use]
    pub fn current(&self) -> Arc<RuleBook> {
        lock(&self.0).clone()
    }
}

/// What must hold before an action runs: its Runbook's checks, rendered from the
/// alert's labels.
struct Precheck {
    checks: Vec<NamedCheck>,
    labels: payload::Labels,
}

/// One action's loop, or one escalation the engine decided.
enum Work {
    Act(PlannedCall, Option<Precheck>),
    Escalate { to: String, attempts: u32 },
}

/// Where a loop writes its results: the run and the entry in its plan.
struct Slot {
    run: u64,
    index: usize,
    entry: PlanEntry,
}

/// Plans one delivery, records the plan (run and evidence) and starts one loop task per
/// action or escalation; returns the tasks, which the planner detaches and tests await.
async fn plan_run(s: &Arc<AppState>, job: &Job) -> Vec<JoinHandle<()>> {
    // Read before planning; an unknown spend blocks scale-ups (fail closed), and the
    // reason goes into the run.
    let spend = observe_spend(s).await;
    let obs = Observations {
        spend: spend.as_ref().and_then(SpendObservation::spend),
        ..Observations::default()
    };
    let book = s.book.current();
    let now = s.clock.monotonic();
    let mut work = Vec::new();
    let plan: Vec<RunEntry> = {
        let mut engine = lock(&s.engine);
        plan::decide(
            &mut engine,
            book.rules(),
            &s.settings.policy,
            &obs,
            &job.payload.alerts,
            now,
        )
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            report(s, &entry);
            let w = match &entry.verdict {
                Verdict::Act { .. } => execute::planned_call(&entry)
                    .map(|call| Work::Act(call, precheck(&book, &entry, &job.payload))),
                Verdict::Escalate { to, attempts } => Some(Work::Escalate {
                    to: to.clone(),
                    attempts: *attempts,
                }),
                _ => None,
            };
            if let Some(w) = w {
                let slot = Slot {
                    run: job.run,
                    index,
                    entry: entry.clone(),
                };
                work.push((slot, w));
            }
            RunEntry::new(entry, None)
        })
        .collect()
    };
    record_plan(s, job, &plan).await;
    {
        let mut runs = lock(&s.runs);
        if let Some(run) = runs.get_mut(job.run) {
            run.plan = plan;
            run.spend = spend;
            run.in_flight = work.len();
            run.state = if work.is_empty() {
                RunState::Done
            } else {
                RunState::Acting
            };
        }
    }
    work.into_iter()
        .map(|(slot, w)| {
            let s = s.clone();
            tokio::spawn(async move {
                match w {
                    Work::Act(call, pre) => {
                        if preconditions_hold(&s, &slot, call.action, pre).await {
                            remediate(&s, &slot, call).await;
                        }
                    }
                    Work::Escalate { to, attempts } => {
                        let detail = format!(
                            "{attempts} remediations did not help; not acting again until the cool-off ends"
                        );
                        let esc = escalate(&s, &slot, &to, "breaker_open", detail).await;
                        update(&s, &slot, |e| e.escalation = Some(esc));
                    }
                }
                finish(&s, slot.run);
            })
        })
        .collect()
}

/// The plan's evidence record; built only when there is an evidence log to append it
/// to (without one, `record` would throw it away).
async fn record_plan(s: &AppState, job: &Job, plan: &[RunEntry]) {
    if s.evidence.is_none() {
        return;
    }
    let summary: Vec<serde_json::Value> = plan
        .iter()
        .map(|e| {
            let verdict = match &e.entry.verdict {
                Verdict::Act { action, .. } => format!("act:{}", action.kind()),
                Verdict::Skip { skip } => format!("skip:{}", skip.kind()),
                Verdict::Escalate { .. } => "escalate".into(),
                Verdict::Cancel => "cancel".into(),
                Verdict::Unmatched => "unmatched".into(),
            };
            json!({
                "fingerprint": e.entry.fingerprint,
                "alertname": e.entry.alertname,
                "rule": e.entry.rule,
                "target": e.entry.target.as_ref().map(ToString::to_string),
                "verdict": verdict,
            })
        })
        .collect();
    record(
        s,
        "remediation.plan",
        &format!("run/{}", job.run),
        json!({ "run": job.run, "group_key": job.payload.group_key,
                "dry_run": s.settings.dry_run, "entries": summary }),
    )
    .await;
}

/// The spend for this plan, when a budget is configured (no query otherwise).
async fn observe_spend(s: &AppState) -> Option<SpendObservation> {
    s.settings.policy.budget?;
    let o = spend::observe(&s.spend, s.verifier.as_ref().map(|v| v.query.as_ref())).await;
    if let Some(why) = &o.unknown_because {
        tracing::warn!(source = o.source, reason = %why,
            "spend unknown: scale-ups are blocked by the budget gate");
    }
    Some(o)
}

/// The preconditions of the rule an action comes from, with the alert's labels; `None`
/// when the rule has none.
fn precheck(book: &RuleBook, entry: &PlanEntry, payload: &WebhookPayload) -> Option<Precheck> {
    let checks = book.preconditions(entry.rule.as_deref()?);
    if checks.is_empty() {
        return None;
    }
    let labels = payload
        .alerts
        .iter()
        .find(|a| a.fingerprint == entry.fingerprint)
        .map(|a| a.labels.clone())
        .unwrap_or_default();
    Some(Precheck {
        checks: checks.to_vec(),
        labels,
    })
}

/// Evaluates the action's preconditions right before it runs; `true` to go on. A
/// failing one is recorded in the run, counted, logged, and escalated, and the action is
/// not taken.
async fn preconditions_hold(
    s: &AppState,
    slot: &Slot,
    action: &'static str,
    pre: Option<Precheck>,
) -> bool {
    let Some(pre) = pre else { return true };
    let query = s.verifier.as_ref().map(|v| v.query.as_ref());
    let gate = checks::evaluate(query, &pre.checks, &pre.labels).await;
    let entry = &slot.entry;
    let subj = subject(entry);
    let extra =
        json!({ "result": if gate.proceeds() { "proceed" } else { "blocked" }, "gate": gate });
    record(
        s,
        "remediation.precondition",
        &subj,
        details(slot, action, extra),
    )
    .await;
    let blocked = match &gate {
        Gate::Proceed { .. } => None,
        Gate::Blocked { check, reason, .. } => {
            Some(format!("precondition {check} failed: {reason}"))
        }
    };
    update(s, slot, |e| e.preconditions = Some(gate));
    let Some(reason) = blocked else { return true };
    inc(&s.metrics.blocked, "reason", "precondition");
    tracing::warn!(alert_fingerprint = %entry.fingerprint, target = %subj, action, %reason,
        "precondition failed: not acting");
    record_outcome(s, &entry.fingerprint, Outcome::NotExecuted);
    let not_run = reason.clone();
    update(s, slot, |e| {
        e.execution = Some(Execution::NotExecuted { reason: not_run });
    });
    let esc = escalate(
        s,
        slot,
        &escalation_channel(entry),
        "precondition_failed",
        format!("{action} not taken: {reason}"),
    )
    .await;
    update(s, slot, |e| e.escalation = Some(esc));
    false
}

/// Applies `f` to the slot's entry in its run (if the run is still kept).
fn update(s: &AppState, slot: &Slot, f: impl FnOnce(&mut RunEntry)) {
    let mut runs = lock(&s.runs);
    if let Some(e) = runs
        .get_mut(slot.run)
        .and_then(|r| r.plan.get_mut(slot.index))
    {
        f(e);
    }
}

/// One loop of `run` finished; the run is done when none is left.
fn finish(s: &AppState, run: u64) {
    let mut runs = lock(&s.runs);
    if let Some(r) = runs.get_mut(run) {
        r.in_flight = r.in_flight.saturating_sub(1);
        if r.in_flight == 0 {
            r.state = RunState::Done;
        }
    }
}

fn record_outcome(s: &AppState, fingerprint: &str, outcome: Outcome) {
    plan::record_outcome(
        &mut lock(&s.engine),
        fingerprint,
        outcome,
        s.clock.monotonic(),
    );
}

/// Appends one evidence record; a failed append is logged and counted, never stops the
/// loop (the remediation matters more than its record).
async fn record(s: &AppState, action: &str, subject: &str, details: serde_json::Value) {
    let Some(ev) = &s.evidence else { return };
    if let Err(e) = ev
        .append(
            "remediation-webhook",
            action,
            subject,
            details,
            s.clock.wall(),
        )
        .await
    {
        s.metrics.evidence_failures.inc();
        tracing::error!(error = %e, action, subject, "evidence record not appended");
    }
}

fn subject(entry: &PlanEntry) -> String {
    entry
        .target
        .as_ref()
        .map_or_else(|| entry.fingerprint.clone(), ToString::to_string)
}

/// The evidence details of one step: the run, the alert, the action, plus `extra`.
fn details(slot: &Slot, action: &str, extra: serde_json::Value) -> serde_json::Value {
    let e = &slot.entry;
    let mut v = json!({ "run": slot.run, "fingerprint": e.fingerprint,
        "alertname": e.alertname, "rule": e.rule, "action": action });
    if let (Some(m), serde_json::Value::Object(x)) = (v.as_object_mut(), extra) {
        m.extend(x);
    }
    v
}

/// Execute -> (dry run: report) -> verify -> record -> (not helped: rollback, escalate).
async fn remediate(s: &AppState, slot: &Slot, planned: PlannedCall) {
    let entry = &slot.entry;
    let subj = subject(entry);
    let mode = s.mode();
    let Some((call, outcome)) = execute_step(s, slot, &planned).await else {
        return;
    };
    let result = if mode.is_dry_run() {
        "dry_run"
    } else {
        "executed"
    };
    inc(&s.metrics.executed, "result", result);
    tracing::info!(alert_fingerprint = %entry.fingerprint, target = %subj, action = planned.action,
        result, changed = outcome.changed, detail = %outcome.detail, "action carried out");
    let extra = json!({ "result": result, "call": call, "outcome": outcome });
    record(
        s,
        "remediation.execute",
        &subj,
        details(slot, planned.action, extra),
    )
    .await;
    if mode.is_dry_run() {
        // Nothing persisted: there is nothing to verify or roll back.
        record_outcome(s, &entry.fingerprint, Outcome::NotExecuted);
        update(s, slot, |e| {
            e.execution = Some(Execution::DryRun { call, outcome });
        });
        return;
    }
    let changed = outcome.changed;
    update(s, slot, |e| {
        e.execution = Some(Execution::Executed { call, outcome });
    });

    let verification = verify_step(s, slot, planned.action).await;
    // An executed action without a verify spec counts as having helped, or escalation
    // would follow every run of it.
    let helped = verification
        .as_ref()
        .map_or(Outcome::Helped, VerifyOutcome::outcome);
    record_outcome(s, &entry.fingerprint, helped);
    if helped == Outcome::Helped {
        tracing::info!(alert_fingerprint = %entry.fingerprint, target = %subj,
            action = planned.action, "remediation helped: resolved");
        return;
    }
    let (rb_result, rb_text) = rollback_step(s, slot, planned.action, changed).await;
    let verified = match &verification {
        Some(VerifyOutcome::TimedOut { .. }) => "verification timed out".to_owned(),
        Some(VerifyOutcome::Failed { reason, .. }) => format!("verification failed: {reason}"),
        _ => "verification did not hold".to_owned(),
    };
    let esc = escalate(
        s,
        slot,
        &escalation_channel(entry),
        "not_helped",
        format!(
            "{} did not help ({verified}); rollback {rb_result}: {rb_text}",
            planned.action
        ),
    )
    .await;
    update(s, slot, |e| e.escalation = Some(esc));
}

/// Carries the call out; `None` when it did not run (recorded as not executed) or failed
/// (recorded as not helped and escalated): the loop ends there.
async fn execute_step(
    s: &AppState,
    slot: &Slot,
    planned: &PlannedCall,
) -> Option<(Call, ActionOutcome)> {
    let entry = &slot.entry;
    let subj = subject(entry);
    let mode = s.mode();
    let result = match &planned.call {
        Ok(call) => execute::execute(call, &s.executors, mode)
            .await
            .map(|o| (call.clone(), o)),
        Err(e) => Err(e.clone()),
    };
    match result {
        Ok(done) => Some(done),
        Err(
            e @ (ExecError::NotSupported(_)
            | ExecError::NotConfigured { .. }
            | ExecError::WrongTarget { .. }
            | ExecError::MissingTarget(_)),
        ) => {
            let reason = if mode.is_dry_run() {
                format!("dry run; not executed: {e}")
            } else {
                format!("not executed: {e}")
            };
            inc(&s.metrics.executed, "result", "not_executed");
            tracing::info!(alert_fingerprint = %entry.fingerprint, target = %subj,
                action = planned.action, %reason, "action not executed");
            let extra = json!({ "result": "not_executed", "reason": reason });
            record(
                s,
                "remediation.execute",
                &subj,
                details(slot, planned.action, extra),
            )
            .await;
            record_outcome(s, &entry.fingerprint, Outcome::NotExecuted);
            update(s, slot, |e| {
                e.execution = Some(Execution::NotExecuted { reason });
            });
            None
        }
        Err(e) => {
            let error = e.to_string();
            inc(&s.metrics.executed, "result", "failed");
            tracing::error!(alert_fingerprint = %entry.fingerprint, target = %subj,
                action = planned.action, %error, "action failed");
            let extra = json!({ "result": "failed", "mode": mode, "error": error });
            record(
                s,
                "remediation.execute",
                &subj,
                details(slot, planned.action, extra),
            )
            .await;
            record_outcome(s, &entry.fingerprint, Outcome::NotHelped);
            if let Ok(call) = &planned.call {
                let call = call.clone();
                let error = error.clone();
                update(s, slot, |e| {
                    e.execution = Some(Execution::Failed { call, error });
                });
            }
            let esc = escalate(
                s,
                slot,
                &escalation_channel(entry),
                "execution_failed",
                format!("{} failed: {error}", planned.action),
            )
            .await;
            update(s, slot, |e| e.escalation = Some(esc));
            None
        }
    }
}

/// Verifies an executed action with the rule's query; `None` when the rule has none.
async fn verify_step(s: &AppState, slot: &Slot, action: &str) -> Option<VerifyOutcome> {
    let Verdict::Act {
        verify: Some(spec), ..
    } = &slot.entry.verdict
    else {
        return None;
    };
    let v = match &s.verifier {
        Some(v) => {
            verify::until_holds(
                v.query.as_ref(),
                spec,
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
    let result = match &v {
        VerifyOutcome::Holds { .. } => "holds",
        VerifyOutcome::TimedOut { .. } => "timed_out",
        _ => "failed",
    };
    let subj = subject(&slot.entry);
    inc(&s.metrics.verified, "result", result);
    tracing::info!(alert_fingerprint = %slot.entry.fingerprint, target = %subj, run = slot.run,
        result, "verification finished");
    let extra = json!({ "result": result, "verification": v });
    record(s, "remediation.verify", &subj, details(slot, action, extra)).await;
    let out = v.clone();
    update(s, slot, |e| e.verification = Some(v));
    Some(out)
}

/// Runs the rule's rollback step after an action that did not help (only when the action
/// changed something); returns its result label and one line for the escalation.
async fn rollback_step(
    s: &AppState,
    slot: &Slot,
    action: &str,
    changed: bool,
) -> (&'static str, String) {
    let rollback = if changed {
        match execute::rollback_call(&slot.entry) {
            None => StepResult::NotRun {
                reason: "the rule names no rollback step".into(),
            },
            Some(PlannedCall { call: Err(e), .. }) => StepResult::Failed {
                error: e.to_string(),
            },
            Some(PlannedCall { call: Ok(c), .. }) => {
                match execute::execute(&c, &s.executors, s.mode()).await {
                    Ok(outcome) => StepResult::Done { outcome },
                    Err(e) => StepResult::Failed {
                        error: e.to_string(),
                    },
                }
            }
        }
    } else {
        StepResult::NotRun {
            reason: "the action changed nothing: nothing to roll back".into(),
        }
    };
    let (result, text) = match &rollback {
        StepResult::Done { outcome } => ("done", outcome.detail.clone()),
        StepResult::Failed { error } => ("failed", error.clone()),
        StepResult::NotRun { reason } => ("not_run", reason.clone()),
    };
    let subj = subject(&slot.entry);
    inc(&s.metrics.rollbacks, "result", result);
    tracing::warn!(alert_fingerprint = %slot.entry.fingerprint, target = %subj, result,
        detail = %text, "rollback after a remediation that did not help");
    let extra = json!({ "result": result, "rollback": rollback });
    record(
        s,
        "remediation.rollback",
        &subj,
        details(slot, action, extra),
    )
    .await;
    update(s, slot, |e| e.rollback_result = Some(rollback));
    (result, text)
}

fn escalation_channel(entry: &PlanEntry) -> String {
    match &entry.verdict {
        Verdict::Act { escalate_to, .. } => escalate_to.clone(),
        Verdict::Escalate { to, .. } => to.clone(),
        _ => plan::DEFAULT_ESCALATION.to_owned(),
    }
}

/// Tells humans: always a structured warning and a counter, a notification when a
/// notifier is configured, and an evidence record.
async fn escalate(
    s: &AppState,
    slot: &Slot,
    to: &str,
    reason: &'static str,
    detail: String,
) -> Escalation {
    let entry = &slot.entry;
    let subj = subject(entry);
    let summary = format!(
        "{} ({}) on {subj}, rule {}: {detail}",
        entry.alertname,
        entry.fingerprint,
        entry.rule.as_deref().unwrap_or("-"),
    );
    inc(&s.metrics.escalations, "reason", reason);
    tracing::warn!(alert_fingerprint = %entry.fingerprint, alertname = %entry.alertname,
        target = %subj, run = slot.run, to, reason, %summary, "remediation escalated");
    let notification = match &s.executors.notifier {
        Some(n) => match n.notify(to, &summary, s.mode()).await {
            Ok(outcome) => StepResult::Done { outcome },
            Err(e) => {
                tracing::error!(error = %e, to, "escalation notification failed");
                StepResult::Failed {
                    error: e.to_string(),
                }
            }
        },
        None => StepResult::NotRun {
            reason: "no notifier configured: logged and counted only".into(),
        },
    };
    let esc = Escalation {
        to: to.to_owned(),
        reason,
        summary,
        notification,
    };
    record(
        s,
        "remediation.escalate",
        &subj,
        json!({ "run": slot.run, "fingerprint": entry.fingerprint, "escalation": esc }),
    )
    .await;
    esc
}

/// Logs and counts one plan entry as decided.
fn report(s: &AppState, e: &PlanEntry) {
    // Formatted only when a subscriber records the event, not for every entry planned.
    let target = e.target.as_ref().map(tracing::field::display);
    match &e.verdict {
        Verdict::Act { action, .. } => {
            inc(&s.metrics.planned, "kind", action.kind());
            tracing::info!(alert_fingerprint = %e.fingerprint, alertname = %e.alertname, target,
                action = action.kind(), dry_run = s.settings.dry_run, "remediation planned");
        }
        Verdict::Skip { skip } => {
            inc(&s.metrics.blocked, "reason", skip.kind());
            tracing::info!(alert_fingerprint = %e.fingerprint, alertname = %e.alertname, target,
                reason = skip.kind(), "no action");
        }
        Verdict::Unmatched => {
            inc(&s.metrics.blocked, "reason", "unmatched");
            tracing::info!(alert_fingerprint = %e.fingerprint, alertname = %e.alertname,
                "no rule matches; logged for analysis");
        }
        Verdict::Escalate { to, attempts } => {
            inc(&s.metrics.planned, "kind", "escalate");
            tracing::warn!(alert_fingerprint = %e.fingerprint, alertname = %e.alertname, target,
                to = %to, attempts, "remediation did not help; escalating");
        }
        Verdict::Cancel => {
            tracing::info!(alert_fingerprint = %e.fingerprint, target, "resolved; pending work cancelled");
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
    let run = lock(&s.runs).get(id).cloned();
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
    //! The queue's back-pressure; the remediation loop itself is driven end to end in
    //! `tests/webhook.rs` over fake ports.
    use super::*;
    use sre_core::ManualClock;
    use std::time::Duration;

    fn app_state(clock: &ManualClock, queue_capacity: usize) -> AppState {
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
            sre_core::telemetry::metrics_registry(),
            Ports {
                clock: Arc::new(clock.clone()),
                verifier: None,
                executors: Executors::default(),
                evidence: None,
            },
        )
    }

    #[tokio::test]
    async fn a_full_queue_refuses_with_503_and_keeps_what_it_accepted() {
        let clock = ManualClock::at_epoch();
        // No planner started: the one queue slot stays taken.
        let app = router(Arc::new(app_state(&clock, 1)));
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

    /// Against the REAL Prometheus of the test servers (`SRE_TEST_PROMETHEUS_URL`):
    /// the spend source and Runbook preconditions, through the whole run worker.
    mod real_prometheus {
        use super::*;
        use sre_core::guard::{Budget, Cents};
        use sre_core::testing::test_env;
        use sre_remediation::checks::{Checks, RawCheck};
        use sre_remediation::runbook::Runbook;
        use sre_remediation::spend::SpendUnit;

        fn prometheus() -> Verifier {
            let url = test_env("SRE_TEST_PROMETHEUS_URL");
            Verifier {
                query: Arc::new(
                    sre_adapter_prometheus::PrometheusClient::new(&url, Duration::from_secs(5))
                        .expect("prometheus client"),
                ),
                sleeper: Arc::new(TokioSleeper),
                interval: Duration::from_millis(100),
            }
        }

        fn state(budget: Option<u64>) -> AppState {
            let clock = ManualClock::at_epoch();
            let mut s = app_state(&clock, 8);
            s.settings.dry_run = true;
            s.settings.policy.budget = budget.map(|c| Budget::new(Cents(c)));
            s.engine = Mutex::new(EngineState::new(&s.settings.policy));
            s.verifier = Some(prometheus());
            s
        }

        /// Posts the high-memory fixture and waits (bounded) for its run to finish.
        async fn deliver(state: AppState) -> serde_json::Value {
            let app = start(state);
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
            let posted: serde_json::Value = http
                .post(format!("{base}/alerts"))
                .bearer_auth("t")
                .body(body)
                .send()
                .await
                .expect("post")
                .json()
                .await
                .expect("json");
            let id = posted["run"].as_u64().expect("run id");
            let mut run = serde_json::Value::Null;
            for _ in 0..400 {
                run = http
                    .get(format!("{base}/runs/{id}"))
                    .bearer_auth("t")
                    .send()
                    .await
                    .expect("get")
                    .json()
                    .await
                    .expect("json");
                if run["state"] == "done" {
                    return run;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("run never finished: {run}");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn spend_from_the_real_prometheus_warns_and_an_empty_answer_blocks() {
            let s = state(Some(900)).with_spend(SpendSource::Query {
                query: "vector(750)".into(),
                unit: SpendUnit::Cents,
            });
            let run = deliver(s).await;
            assert_eq!(run["spend"]["cents"], 750, "{run}");
            assert_eq!(run["spend"]["source"], "query");
            let e = &run["plan"][0];
            assert_eq!(e["verdict"], "act", "{run}");
            assert_eq!(
                e["budget_warning_pct"], 83,
                "750 of 900 is past the 80 % warning"
            );

            let s = state(Some(900)).with_spend(SpendSource::Query {
                query: r#"up{job="nonexistent"}"#.into(),
                unit: SpendUnit::Cents,
            });
            let run = deliver(s).await;
            assert!(run["spend"].get("cents").is_none(), "{run}");
            assert_eq!(
                run["spend"]["unknown_because"], "the spend query returned no series",
                "{run}"
            );
            let e = &run["plan"][0];
            assert_eq!(e["verdict"], "skip", "{run}");
            assert_eq!(e["skip"]["kind"], "budget_unknown", "fail closed: {run}");
        }

        fn gated(query: &str) -> RuleBook {
            let checks = Checks::builtin()
                .with_overrides(
                    "checks",
                    &std::collections::BTreeMap::from([(
                        "e2e.gate".to_owned(),
                        RawCheck {
                            query: query.into(),
                            expect: sre_remediation::rules::Expect::NonEmpty,
                        },
                    )]),
                )
                .expect("valid checks");
            let builtin = RuleSet::builtin().expect("built-in rules");
            let rb = Runbook::parse_with(
                "gated.yaml",
                "apiVersion: catalyst.openova.io/v1alpha1
kind: Runbook
metadata: {name: gated, namespace: catalyst-system}
spec:
  triggers: [{alertName: HighMemoryUsage}]
  preconditions: [{check: e2e.gate}]
  steps: [{action: {kind: scale_up, step: 1, max_replicas: 10}}]
  rollback: page-platform
",
                &builtin,
                &checks,
            )
            .expect("valid runbook");
            RuleBook::new(builtin).with_runbook(&rb)
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn preconditions_from_the_real_prometheus_proceed_or_block_and_escalate() {
            let run = deliver(state(None).with_rule_book(gated("vector(1)"))).await;
            let e = &run["plan"][0];
            assert_eq!(e["rule"], "runbook/catalyst-system/gated", "{run}");
            assert_eq!(e["preconditions"]["gate"], "proceed", "{run}");
            assert_eq!(e["preconditions"]["checked"][0], "e2e.gate");
            assert!(e.get("escalation").is_none(), "{run}");

            let run = deliver(state(None).with_rule_book(gated(r#"up{job="nonexistent"}"#))).await;
            let e = &run["plan"][0];
            assert_eq!(e["verdict"], "act", "planned, then gated: {run}");
            let gate = &e["preconditions"];
            assert_eq!(gate["gate"], "blocked", "{run}");
            assert_eq!(gate["check"], "e2e.gate");
            assert_eq!(gate["query"], r#"up{job="nonexistent"}"#);
            assert_eq!(gate["reason"], "expected at least one series, got none");
            assert_eq!(e["execution"]["result"], "not_executed");
            assert!(
                e["execution"]["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("precondition e2e.gate failed")),
                "{run}"
            );
            assert_eq!(e["escalation"]["reason"], "precondition_failed", "{run}");
            assert_eq!(e["escalation"]["to"], "platform");
        }
    }
}
