//! The ordered layer plan: what "promote" and "demote" mean across the three layers, as
//! pure data plus a step state machine. The Kubernetes actuators that carry the steps
//! out live in an adapter; this module only says which step comes next and when to stop.
//!
//! Promotion goes from the inside out, so that nothing sends traffic to a region whose
//! data is not yet writable: fence the old primary where reachable, promote the
//! databases, open the mesh endpoints, and only then mark the `HTTPRoutes` ready so that
//! k8gb starts answering with this region. Demotion is the exact reverse (traffic first,
//! data last). Every step carries the generation, so that a layer can refuse a write
//! from a controller whose lease is older than the one it last saw.

use serde::Serialize;
use sre_core::Generation;
use thiserror::Error;

/// One layer step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepAction {
    /// Demote or fence the old database primary, where it can still be reached.
    FenceOldPrimary,
    /// CNPG: leave replica mode (`spec.replica.enabled: false`, with the demotion token).
    PromoteCnpg,
    /// FerretDB: follows its CNPG cluster; verify it accepts writes.
    PromoteFerretDb,
    /// Strimzi: point MirrorMaker2 away from this region and clients at the local bootstrap.
    PromoteStrimzi,
    /// Cilium ClusterMesh: make this region's global service endpoints preferred.
    EnableMeshEndpoints,
    /// Mark the `HTTPRoutes` ready so k8gb serves this region.
    MarkRoutesReady,
    /// Withdraw the `HTTPRoutes` so k8gb stops serving this region.
    WithdrawRoutes,
    /// Stop preferring this region's mesh endpoints.
    DisableMeshEndpoints,
    /// Strimzi: mirror into this region again.
    DemoteStrimzi,
    /// FerretDB: back to read-only with its CNPG cluster.
    DemoteFerretDb,
    /// CNPG: back to replica mode.
    DemoteCnpg,
}

impl StepAction {
    /// The layer the step belongs to, for logs and metrics.
    #[must_use]
    pub fn layer(self) -> &'static str {
        match self {
            Self::FenceOldPrimary
            | Self::PromoteCnpg
            | Self::PromoteFerretDb
            | Self::PromoteStrimzi
            | Self::DemoteStrimzi
            | Self::DemoteFerretDb
            | Self::DemoteCnpg => "stateful",
            Self::EnableMeshEndpoints | Self::DisableMeshEndpoints => "internal",
            Self::MarkRoutesReady | Self::WithdrawRoutes => "external",
        }
    }
}

/// Where a step stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum StepStatus {
    /// Not started.
    Pending,
    /// The actuator was asked to act; the verify has not come back yet.
    Running,
    /// Acted and verified.
    Verified,
    /// Not needed (the old primary is unreachable, so there is nothing to fence).
    Skipped {
        /// Why.
        reason: String,
    },
    /// The verify failed: the plan stops here.
    Failed {
        /// What the verify saw.
        reason: String,
    },
}

/// A step and its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanStep {
    /// What it does.
    pub action: StepAction,
    /// The fencing token it carries.
    pub generation: Generation,
    /// Where it stands.
    pub status: StepStatus,
}

/// Which way the plan goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Standby to active.
    Promotion,
    /// Active to standby.
    Demotion,
}

/// An ordered plan across the three layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerPlan {
    /// Which way.
    pub direction: Direction,
    /// The generation every step carries.
    pub generation: Generation,
    /// The steps, in order.
    pub steps: Vec<PlanStep>,
}

/// What an actuator reported about a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepReport {
    /// The actuator started it.
    Started,
    /// It acted and the verify passed.
    Verified,
    /// Nothing to do (the target is unreachable or already gone); only for fencing.
    NotReachable,
    /// The verify failed.
    VerifyFailed(String),
}

/// A report that does not fit the plan: a bug in the caller, never ignored silently.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The plan is finished or stopped; nothing can be reported any more.
    #[error("plan is {state}; no step accepts reports")]
    NotRunning {
        /// `complete` or `failed`.
        state: &'static str,
    },
    /// The report is about a different generation (a stale actuator).
    #[error("report for generation {got} on a plan for generation {expected}")]
    StaleGeneration {
        /// The plan's generation.
        expected: Generation,
        /// The report's.
        got: Generation,
    },
    /// Only fencing the old primary may be skipped as unreachable.
    #[error("step {action:?} cannot be skipped as unreachable")]
    CannotSkip {
        /// The step.
        action: StepAction,
    },
}

impl LayerPlan {
    fn new(direction: Direction, generation: Generation, actions: &[StepAction]) -> Self {
        Self {
            direction,
            generation,
            steps: actions
                .iter()
                .map(|a| PlanStep {
                    action: *a,
                    generation,
                    status: StepStatus::Pending,
                })
                .collect(),
        }
    }

    /// The promotion plan for `generation`.
    #[must_use]
    pub fn promotion(generation: Generation) -> Self {
        use StepAction as S;
        Self::new(
            Direction::Promotion,
            generation,
            &[
                S::FenceOldPrimary,
                S::PromoteCnpg,
                S::PromoteFerretDb,
                S::PromoteStrimzi,
                S::EnableMeshEndpoints,
                S::MarkRoutesReady,
            ],
        )
    }

    /// The demotion plan: the promotion's layers in reverse.
    #[must_use]
    pub fn demotion(generation: Generation) -> Self {
        use StepAction as S;
        Self::new(
            Direction::Demotion,
            generation,
            &[
                S::WithdrawRoutes,
                S::DisableMeshEndpoints,
                S::DemoteStrimzi,
                S::DemoteFerretDb,
                S::DemoteCnpg,
            ],
        )
    }

    /// The step to work on now: the first not yet done, unless the plan stopped.
    #[must_use]
    pub fn current(&self) -> Option<&PlanStep> {
        if self.is_failed() {
            return None;
        }
        self.steps
            .iter()
            .find(|s| matches!(s.status, StepStatus::Pending | StepStatus::Running))
    }

    /// True once every step is verified or skipped.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s.status, StepStatus::Verified | StepStatus::Skipped { .. }))
    }

    /// True once a verify failed; later steps never run.
    #[must_use]
    pub fn is_failed(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.status, StepStatus::Failed { .. }))
    }

    /// Applies a report about the current step, made under `generation`.
    pub fn report(&mut self, generation: Generation, report: StepReport) -> Result<(), PlanError> {
        if generation != self.generation {
            return Err(PlanError::StaleGeneration {
                expected: self.generation,
                got: generation,
            });
        }
        let state = if self.is_failed() {
            "failed"
        } else {
            "complete"
        };
        let Some(idx) = self
            .current()
            .and_then(|c| self.steps.iter().position(|s| s.action == c.action))
        else {
            return Err(PlanError::NotRunning { state });
        };
        let step = &mut self.steps[idx];
        step.status = match report {
            StepReport::Started => StepStatus::Running,
            StepReport::Verified => StepStatus::Verified,
            StepReport::VerifyFailed(reason) => StepStatus::Failed { reason },
            StepReport::NotReachable if step.action == StepAction::FenceOldPrimary => {
                StepStatus::Skipped {
                    reason: "old primary unreachable".into(),
                }
            }
            StepReport::NotReachable => {
                return Err(PlanError::CannotSkip {
                    action: step.action,
                });
            }
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_goes_inside_out_and_demotion_reverses_the_layers() {
        let p = LayerPlan::promotion(Generation(4));
        let layers: Vec<&str> = p.steps.iter().map(|s| s.action.layer()).collect();
        assert_eq!(
            layers,
            [
                "stateful", "stateful", "stateful", "stateful", "internal", "external"
            ]
        );
        let d = LayerPlan::demotion(Generation(4));
        let layers: Vec<&str> = d.steps.iter().map(|s| s.action.layer()).collect();
        assert_eq!(
            layers,
            ["external", "internal", "stateful", "stateful", "stateful"]
        );
        assert!(
            p.steps
                .iter()
                .chain(&d.steps)
                .all(|s| s.generation == Generation(4))
        );
    }

    #[test]
    fn runs_in_order_and_completes() {
        let g = Generation(2);
        let mut p = LayerPlan::promotion(g);
        let first = p.current().map(|s| s.action);
        assert_eq!(first, Some(StepAction::FenceOldPrimary));
        assert_eq!(p.report(g, StepReport::NotReachable), Ok(()));
        while p.current().is_some() {
            assert_eq!(p.report(g, StepReport::Started), Ok(()));
            assert_eq!(p.report(g, StepReport::Verified), Ok(()));
        }
        assert!(p.is_complete() && !p.is_failed());
        assert_eq!(
            p.report(g, StepReport::Verified),
            Err(PlanError::NotRunning { state: "complete" })
        );
    }

    #[test]
    fn stops_at_the_first_failed_verify() {
        let g = Generation(2);
        let mut p = LayerPlan::promotion(g);
        assert_eq!(p.report(g, StepReport::Verified), Ok(()));
        assert_eq!(
            p.report(g, StepReport::VerifyFailed("still replica".into())),
            Ok(())
        );
        assert!(p.is_failed() && !p.is_complete());
        assert_eq!(p.current(), None);
        assert!(p.steps[2..].iter().all(|s| s.status == StepStatus::Pending));
        assert_eq!(
            p.report(g, StepReport::Verified),
            Err(PlanError::NotRunning { state: "failed" })
        );
    }

    #[test]
    fn refuses_stale_generations_and_skipping_real_work() {
        let mut p = LayerPlan::promotion(Generation(5));
        assert!(matches!(
            p.report(Generation(4), StepReport::Verified),
            Err(PlanError::StaleGeneration { .. })
        ));
        assert_eq!(p.report(Generation(5), StepReport::Verified), Ok(()));
        assert_eq!(
            p.report(Generation(5), StepReport::NotReachable),
            Err(PlanError::CannotSkip {
                action: StepAction::PromoteCnpg
            })
        );
    }
}
