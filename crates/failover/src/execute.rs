//! The acting half of the shell: carries out the [`Action`]s that
//! [`crate::decide::decide`] returned, through the witness and the three layer ports,
//! and writes what it did to the evidence chain.
//!
//! - Lease writes are compare-and-swaps under the witness timeout; the answer goes back
//!   to the core as a [`WriteResult`] stamped with the tick's monotonic time, which is
//!   when the core considers the write sent.
//! - A layer plan runs step by step, each step under its own timeout, and stops at the
//!   first step whose read-back does not show the change ([`LayerPlan::report`]).
//!   Without layers (lease-only mode) every step is recorded as skipped.
//! - `Fence` stops serving at once (the status says so before any plan step runs); the
//!   demotion plan that always follows it withdraws the routes first.
//! - Pages and approval requests are logged and counted; a human or an alert rule
//!   picks them up.
//!
//! Evidence: acquisitions, releases, failed or refused lease writes, fences, every plan
//! step, pages and approval requests are appended to the [`EvidenceSink`]. Successful
//! renewals are not (one every renew interval would drown the chain); the lease record
//! at the witness is their record. An evidence failure is logged and counted, never a
//! reason to stop failing over.

use crate::decide::{Action, FenceReason};
use crate::model::{PageReason, WriteOutcome, WriteResult};
use crate::plan::{Direction, LayerPlan, StepAction, StepReport, StepStatus};
use crate::ports::{
    ExternalTraffic, InternalTraffic, LayerError, LayerStatus, StatefulService, StatefulServices,
};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sre_core::evidence::EvidenceSink;
use sre_core::ports::{CasOutcome, LeaseRecord, Revision, Witness};
use sre_core::{Generation, MonoTime, RegionId};
use std::sync::Arc;
use std::time::Duration;

/// The three layers a promotion moves. Absent (`None` where the shell takes it) means
/// lease-only mode: the controller holds the lease and reports, and something else
/// moves the traffic.
#[derive(Clone)]
pub struct Layers {
    /// `HTTPRoute` readiness for k8gb.
    pub external: Arc<dyn ExternalTraffic>,
    /// Cilium ClusterMesh global service endpoints.
    pub internal: Arc<dyn InternalTraffic>,
    /// CNPG, FerretDB, Strimzi.
    pub stateful: Arc<dyn StatefulServices>,
}

impl std::fmt::Debug for Layers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layers").finish_non_exhaustive()
    }
}

/// What the shell acts through.
#[derive(Clone)]
pub struct ExecutePorts {
    /// The lease witness (the same one [`crate::observe`] reads).
    pub witness: Arc<dyn Witness>,
    /// The layers, or `None` for lease-only mode.
    pub layers: Option<Layers>,
    /// Where evidence goes; `None` keeps it in the logs only.
    pub evidence: Option<Arc<dyn EvidenceSink>>,
}

impl std::fmt::Debug for ExecutePorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutePorts")
            .field("layers", &self.layers.is_some())
            .field("evidence", &self.evidence.is_some())
            .finish_non_exhaustive()
    }
}

/// The facts of one tick that execution needs besides the actions.
#[derive(Debug, Clone)]
pub struct Tick {
    /// This region (the evidence actor).
    pub region: RegionId,
    /// Monotonic time of the decision: the `sent_at` of any lease write.
    pub now: MonoTime,
    /// Wall time, for evidence records.
    pub wall: DateTime<Utc>,
    /// Limit for one witness call.
    pub witness_timeout: Duration,
    /// Limit for one plan step (including its read-back).
    pub step_timeout: Duration,
}

/// What carrying out one tick's actions produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Executed {
    /// The answer to the lease write, for the next tick's observations.
    pub write: Option<WriteResult>,
    /// Set when the core fenced this region.
    pub fenced: Option<FenceReason>,
    /// The plans run this tick, as they ended.
    pub plans: Vec<LayerPlan>,
    /// Pages raised this tick.
    pub pages: Vec<PageReason>,
    /// Approvals requested this tick (the generation the promotion would take).
    pub approvals: Vec<Generation>,
    /// Evidence appends that failed.
    pub evidence_failures: u64,
}

/// Carries out `actions` in order.
#[tracing::instrument(skip_all, fields(region = %tick.region))]
pub async fn execute(ports: &ExecutePorts, tick: &Tick, actions: Vec<Action>) -> Executed {
    let mut out = Executed::default();
    for action in actions {
        match action {
            Action::AcquireLease {
                generation,
                expected,
                record,
            } => {
                let w = (generation, expected.as_ref(), &record);
                lease_write(ports, tick, "acquire", w, &mut out).await;
            }
            Action::RenewLease {
                generation,
                expected,
                record,
            } => {
                let w = (generation, Some(&expected), &record);
                lease_write(ports, tick, "renew", w, &mut out).await;
            }
            Action::ReleaseLease {
                generation,
                expected,
                record,
            } => {
                let w = (generation, Some(&expected), &record);
                lease_write(ports, tick, "release", w, &mut out).await;
            }
            Action::Fence { generation, reason } => {
                tracing::warn!(lease_epoch = generation.0, ?reason, "fenced: stop serving");
                out.fenced = Some(reason);
                let d = json!({ "generation": generation.0, "reason": reason });
                evidence(ports, tick, "failover.fence", generation, d, &mut out).await;
            }
            Action::RunPromotionPlan { generation } => {
                let plan = run_plan(ports, tick, LayerPlan::promotion(generation)).await;
                out.evidence_failures += plan.1;
                out.plans.push(plan.0);
            }
            Action::RunDemotionPlan { generation } => {
                let plan = run_plan(ports, tick, LayerPlan::demotion(generation)).await;
                out.evidence_failures += plan.1;
                out.plans.push(plan.0);
            }
            Action::RequestApproval { generation } => {
                tracing::warn!(
                    lease_epoch = generation.0,
                    "promotion allowed: waiting for approval (semi-automatic mode)"
                );
                out.approvals.push(generation);
                let d = json!({ "generation": generation.0 });
                evidence(
                    ports,
                    tick,
                    "failover.approval.request",
                    generation,
                    d,
                    &mut out,
                )
                .await;
            }
            Action::Page { reason } => {
                tracing::error!(%reason, "page: a human is needed");
                out.pages.push(reason);
                let d = json!({ "reason": reason });
                evidence(ports, tick, "failover.page", Generation(0), d, &mut out).await;
            }
        }
    }
    out
}

/// One lease compare-and-swap: the answer goes to `out.write`; acquisitions, releases
/// and renewals that did not land go to the evidence chain.
async fn lease_write(
    ports: &ExecutePorts,
    tick: &Tick,
    kind: &str,
    (generation, expected, record): (Generation, Option<&Revision>, &LeaseRecord),
    out: &mut Executed,
) {
    let outcome = cas(ports, tick, expected, record).await;
    let landed = matches!(outcome, WriteOutcome::Swapped(_));
    if kind == "renew" && landed {
        tracing::debug!(lease_epoch = generation.0, "lease renewed");
    } else {
        if landed {
            tracing::info!(lease_epoch = generation.0, kind, "lease write landed");
        } else {
            tracing::warn!(
                lease_epoch = generation.0,
                kind,
                ?outcome,
                "lease write did not land"
            );
        }
        let d = json!({ "generation": generation.0, "outcome": outcome_name(&outcome) });
        let action = format!("failover.lease.{kind}");
        evidence(ports, tick, &action, generation, d, out).await;
    }
    out.write = Some(WriteResult {
        sent_at: tick.now,
        outcome,
    });
}

async fn cas(
    ports: &ExecutePorts,
    tick: &Tick,
    expected: Option<&Revision>,
    record: &LeaseRecord,
) -> WriteOutcome {
    let write = ports.witness.compare_and_swap(expected, record);
    match tokio::time::timeout(tick.witness_timeout, write).await {
        Ok(Ok(CasOutcome::Swapped(rev))) => WriteOutcome::Swapped(rev),
        Ok(Ok(CasOutcome::Conflict)) => WriteOutcome::Conflict,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "witness write failed");
            WriteOutcome::Failed
        }
        // The write may still land: the core treats Failed as "maybe", and the next read
        // shows which.
        Err(_) => WriteOutcome::Failed,
    }
}

fn outcome_name(o: &WriteOutcome) -> &'static str {
    match o {
        WriteOutcome::Swapped(_) => "swapped",
        WriteOutcome::Conflict => "conflict",
        WriteOutcome::Failed => "failed",
    }
}

async fn evidence(
    ports: &ExecutePorts,
    tick: &Tick,
    action: &str,
    generation: Generation,
    details: Value,
    out: &mut Executed,
) {
    if !append(ports, tick, action, generation, details).await {
        out.evidence_failures += 1;
    }
}

/// Appends one record; false (and a warning) when the sink refused it.
async fn append(
    ports: &ExecutePorts,
    tick: &Tick,
    action: &str,
    generation: Generation,
    details: Value,
) -> bool {
    let Some(sink) = &ports.evidence else {
        return true;
    };
    let actor = format!("failover-controller/{}", tick.region);
    let subject = format!("generation/{}", generation.0);
    match sink
        .append(&actor, action, &subject, details, tick.wall)
        .await
    {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, action, "evidence append failed");
            false
        }
    }
}

/// Runs `plan` from its first pending step and returns it as it ended, with the number
/// of evidence appends that failed. Steps are idempotent, so running a plan again after
/// a failure (the [`crate::run`] loop does, every tick) is safe.
pub async fn run_plan(ports: &ExecutePorts, tick: &Tick, mut plan: LayerPlan) -> (LayerPlan, u64) {
    let g = plan.generation;
    let direction = match plan.direction {
        Direction::Promotion => "promotion",
        Direction::Demotion => "demotion",
    };
    let mut failures = 0;
    let Some(layers) = &ports.layers else {
        for s in &mut plan.steps {
            s.status = StepStatus::Skipped {
                reason: "lease-only: no layers configured".into(),
            };
        }
        let d = json!({ "direction": direction, "generation": g.0, "skipped": "lease-only" });
        if !append(ports, tick, "failover.plan", g, d).await {
            failures += 1;
        }
        return (plan, failures);
    };
    while let Some(step) = plan.current().map(|s| s.action) {
        let _ = plan.report(g, StepReport::Started);
        let result = tokio::time::timeout(tick.step_timeout, run_step(layers, step, g)).await;
        let report = match result {
            Err(_) => StepReport::VerifyFailed(format!(
                "no answer within {}",
                humantime::format_duration(tick.step_timeout)
            )),
            Ok(r) => verify(step, r),
        };
        tracing::info!(lease_epoch = g.0, ?step, ?report, direction, "plan step");
        let d = json!({
            "direction": direction,
            "step": step,
            "layer": step.layer(),
            "generation": g.0,
            "report": format!("{report:?}"),
        });
        if let Err(e) = plan.report(g, report) {
            tracing::error!(error = %e, "plan refused a step report");
            break;
        }
        if !append(ports, tick, "failover.plan.step", g, d).await {
            failures += 1;
        }
    }
    if plan.is_failed() {
        tracing::error!(
            lease_epoch = g.0,
            direction,
            "plan stopped at a failed step"
        );
    }
    (plan, failures)
}

/// What the read-back after `step` must show: `Some(serving)`, or `None` when any
/// success will do (fencing the old primary).
fn wanted(step: StepAction) -> Option<bool> {
    use StepAction as S;
    match step {
        S::FenceOldPrimary => None,
        S::PromoteCnpg
        | S::PromoteFerretDb
        | S::PromoteStrimzi
        | S::EnableMeshEndpoints
        | S::MarkRoutesReady => Some(true),
        S::WithdrawRoutes
        | S::DisableMeshEndpoints
        | S::DemoteStrimzi
        | S::DemoteFerretDb
        | S::DemoteCnpg => Some(false),
    }
}

fn verify(step: StepAction, r: Result<LayerStatus, LayerError>) -> StepReport {
    match r {
        Ok(status) => match wanted(step) {
            Some(want) if status.serving != want => StepReport::VerifyFailed(format!(
                "read-back shows serving = {}, wanted {want} ({})",
                status.serving, status.detail
            )),
            _ => StepReport::Verified,
        },
        // Only the old primary may be out of reach: there is nothing to fence from here.
        Err(LayerError::Unreachable(_)) if step == StepAction::FenceOldPrimary => {
            StepReport::NotReachable
        }
        Err(e) => StepReport::VerifyFailed(e.to_string()),
    }
}

async fn run_step(
    layers: &Layers,
    step: StepAction,
    g: Generation,
) -> Result<LayerStatus, LayerError> {
    use StatefulService::{Cnpg, FerretDb, Strimzi};
    use StepAction as S;
    match step {
        S::FenceOldPrimary => layers.stateful.fence_old_primary(g).await,
        S::PromoteCnpg => layers.stateful.promote(Cnpg, g).await,
        S::PromoteFerretDb => layers.stateful.promote(FerretDb, g).await,
        S::PromoteStrimzi => layers.stateful.promote(Strimzi, g).await,
        S::EnableMeshEndpoints => layers.internal.set_mesh_endpoints(true, g).await,
        S::MarkRoutesReady => layers.external.set_routes_ready(true, g).await,
        S::WithdrawRoutes => layers.external.set_routes_ready(false, g).await,
        S::DisableMeshEndpoints => layers.internal.set_mesh_endpoints(false, g).await,
        S::DemoteStrimzi => layers.stateful.demote(Strimzi, g).await,
        S::DemoteFerretDb => layers.stateful.demote(FerretDb, g).await,
        S::DemoteCnpg => layers.stateful.demote(Cnpg, g).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemLayers;
    use sre_core::evidence::{EvidenceError, EvidenceRecord};
    use sre_core::ports::{LeaseFormat, WitnessRead};
    use sre_core::testing::MemWitness;
    use std::sync::Mutex;

    /// Keeps the action names it was given.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<String>>);
    #[async_trait::async_trait]
    impl EvidenceSink for Recorded {
        async fn append(
            &self,
            _: &str,
            action: &str,
            _: &str,
            _: Value,
            _: DateTime<Utc>,
        ) -> Result<EvidenceRecord, EvidenceError> {
            let mut v = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            v.push(action.to_owned());
            Err(EvidenceError::Poisoned { path: "mem".into() })
        }
    }

    fn tick() -> Tick {
        Tick {
            region: RegionId::new("eu"),
            now: MonoTime(Duration::from_secs(7)),
            wall: DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default(),
            witness_timeout: Duration::from_secs(2),
            step_timeout: Duration::from_secs(2),
        }
    }

    fn record(g: u64) -> LeaseRecord {
        let t = tick();
        LeaseRecord {
            format: LeaseFormat::V1,
            holder: t.region,
            generation: Generation(g),
            acquired_at: t.wall,
            renewed_at: t.wall,
            ttl_ms: 30_000,
            released: false,
        }
    }

    fn ports(w: &MemWitness, layers: Option<Layers>) -> (ExecutePorts, Arc<Recorded>) {
        let ev = Arc::new(Recorded::default());
        let p = ExecutePorts {
            witness: Arc::new(w.clone()),
            layers,
            evidence: Some(ev.clone()),
        };
        (p, ev)
    }

    #[tokio::test]
    async fn lease_writes_map_to_write_results_stamped_with_the_tick() {
        let w = MemWitness::new();
        let (p, ev) = ports(&w, None);
        let acquire = |expected| Action::AcquireLease {
            generation: Generation(3),
            expected,
            record: record(3),
        };
        let out = execute(&p, &tick(), vec![acquire(None)]).await;
        let Some(WriteResult {
            sent_at,
            outcome: WriteOutcome::Swapped(rev),
        }) = out.write
        else {
            panic!("expected a swap, got {:?}", out.write);
        };
        assert_eq!(sent_at, tick().now);
        assert!(
            matches!(w.read().await, Ok(WitnessRead::Present { revision, .. }) if revision == rev)
        );
        // The same create again lost the race; an outage is a failed (maybe-landed) write.
        let out = execute(&p, &tick(), vec![acquire(None)]).await;
        assert_eq!(out.write.map(|w| w.outcome), Some(WriteOutcome::Conflict));
        w.set_unavailable(true);
        let out = execute(&p, &tick(), vec![acquire(Some(rev))]).await;
        assert_eq!(out.write.map(|w| w.outcome), Some(WriteOutcome::Failed));
        // Three acquisitions recorded, and the sink's refusals counted, not fatal.
        assert_eq!(out.evidence_failures, 1);
        assert_eq!(ev.0.lock().map_or(0, |v| v.len()), 3);
    }

    #[tokio::test]
    async fn promotion_runs_every_layer_in_order_with_the_generation() {
        let w = MemWitness::new();
        let mem = MemLayers::new();
        let (p, ev) = ports(&w, Some(mem.layers()));
        let g = Generation(9);
        let out = execute(
            &p,
            &tick(),
            vec![Action::RunPromotionPlan { generation: g }],
        )
        .await;
        assert!(out.plans[0].is_complete(), "{:?}", out.plans);
        assert!(mem.serving());
        assert_eq!(mem.external.generation(), Some(g));
        assert_eq!(mem.stateful.writes()[0].0, "old-primary-fenced");
        let steps = ev.0.lock().map_or(0, |v| v.len());
        assert_eq!(steps, 6, "one evidence record per step");
        // Demotion reverses it.
        let out = execute(
            &p,
            &tick(),
            vec![
                Action::Fence {
                    generation: g,
                    reason: FenceReason::LeaseLapsed,
                },
                Action::RunDemotionPlan { generation: g },
            ],
        )
        .await;
        assert_eq!(out.fenced, Some(FenceReason::LeaseLapsed));
        assert!(out.plans[0].is_complete());
        assert!(!mem.external.serving("routes") && !mem.stateful.serving("cnpg"));
    }

    #[tokio::test]
    async fn a_plan_stops_at_the_first_refused_step_and_an_unreachable_old_primary_is_skipped() {
        let w = MemWitness::new();
        let mem = MemLayers::new();
        let (p, _) = ports(&w, Some(mem.layers()));
        // A successor already stamped the mesh with a newer generation.
        assert!(
            mem.internal
                .set_mesh_endpoints(true, Generation(10))
                .await
                .is_ok()
        );
        mem.stateful.set_unreachable(true);
        let (plan, _) = run_plan(&p, &tick(), LayerPlan::promotion(Generation(9))).await;
        assert!(matches!(plan.steps[0].status, StepStatus::Skipped { .. }));
        assert!(matches!(plan.steps[1].status, StepStatus::Failed { .. }));
        assert!(
            plan.steps[2..]
                .iter()
                .all(|s| s.status == StepStatus::Pending)
        );
        mem.stateful.set_unreachable(false);
        let (plan, _) = run_plan(&p, &tick(), LayerPlan::promotion(Generation(9))).await;
        let failed: Vec<StepAction> = plan
            .steps
            .iter()
            .filter(|s| matches!(s.status, StepStatus::Failed { .. }))
            .map(|s| s.action)
            .collect();
        assert_eq!(failed, [StepAction::EnableMeshEndpoints]);
        assert!(
            !mem.external.serving("routes"),
            "routes never marked after a failure"
        );
    }

    #[tokio::test]
    async fn lease_only_mode_skips_every_step_and_completes() {
        let w = MemWitness::new();
        let (p, ev) = ports(&w, None);
        let out = execute(
            &p,
            &tick(),
            vec![
                Action::RunDemotionPlan {
                    generation: Generation(2),
                },
                Action::Page {
                    reason: PageReason::MalformedLease,
                },
            ],
        )
        .await;
        assert!(out.plans[0].is_complete());
        assert_eq!(out.pages, [PageReason::MalformedLease]);
        let actions = ev.0.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(actions, ["failover.plan", "failover.page"]);
    }
}
