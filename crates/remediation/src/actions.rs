//! The ports remediation acts through: named by intent (scale, restart, roll back, evict,
//! renew, notify), free of any SDK type, so that the engine's plan can be carried out by
//! the kube adapter in production and by the in-memory fakes in tests.
//!
//! Every mutating call takes a [`Mode`] and answers an [`ActionOutcome`] that says whether
//! anything changed and what the state was before and after. That makes the two
//! properties the runbook needs visible in the run record: a dry run shows what *would*
//! change (and was validated by the backend, e.g. the API server's `dryRun=All`), and a
//! repeated call says "already at 5 replicas: nothing to do" instead of writing again.

use async_trait::async_trait;
use serde::Serialize;
use sre_core::PortError;
use std::collections::BTreeMap;
use std::fmt;

use crate::rules::Target;

/// Whether a call changes the world or only shows (and validates) what it would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Carry the change out.
    Apply,
    /// Validate and report, persist nothing (the webhook's `--dry-run`, `runbook run --dry-run`).
    DryRun,
}

impl Mode {
    /// True for [`Mode::DryRun`]; adapters map it to their backend's dry-run switch.
    #[must_use]
    pub fn is_dry_run(self) -> bool {
        matches!(self, Self::DryRun)
    }
}

/// The evidence one executed call leaves in the run record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionOutcome {
    /// True when the call changed something (or, in a dry run, would have).
    pub changed: bool,
    /// Whether this was a dry run: a `changed` dry run persisted nothing.
    pub dry_run: bool,
    /// The relevant state before the call (`"replicas=3"`), when it could be read.
    pub before: Option<String>,
    /// The state after the call (or the state a dry run would leave).
    pub after: Option<String>,
    /// One human-readable line: what was done, or why nothing was.
    pub detail: String,
}

impl ActionOutcome {
    /// An outcome that changed nothing because the wanted state already holds.
    #[must_use]
    pub fn unchanged(mode: Mode, state: impl Into<String>, detail: impl Into<String>) -> Self {
        let state = state.into();
        Self {
            changed: false,
            dry_run: mode.is_dry_run(),
            before: Some(state.clone()),
            after: Some(state),
            detail: detail.into(),
        }
    }

    /// An outcome that changed (or, dry, would change) `before` into `after`.
    #[must_use]
    pub fn changed(
        mode: Mode,
        before: Option<String>,
        after: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        let detail = detail.into();
        Self {
            changed: true,
            dry_run: mode.is_dry_run(),
            before,
            after,
            detail: if mode.is_dry_run() {
                format!("dry run: {detail}")
            } else {
                detail
            },
        }
    }
}

/// The workload kinds the [`Workloads`] port acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// `apps/v1` Deployment.
    Deployment,
    /// `apps/v1` `StatefulSet`.
    StatefulSet,
    /// KServe `serving.kserve.io/v1beta1` `InferenceService` (scaled by `minReplicas`).
    InferenceService,
    /// A bare pod (restart = delete, its controller recreates it).
    Pod,
}

impl WorkloadKind {
    /// The rule file's spelling (`target.kind`), the inverse of [`WorkloadRef::from_target`].
    #[must_use]
    pub fn rule_kind(self) -> &'static str {
        match self {
            Self::Deployment => "deployment",
            Self::StatefulSet => "stateful_set",
            Self::InferenceService => "inference_service",
            Self::Pod => "pod",
        }
    }
}

/// One namespaced workload: what the rules' [`Target`] names, checked for a kind the
/// [`Workloads`] port understands.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct WorkloadRef {
    /// The object's kind.
    pub kind: WorkloadKind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl WorkloadRef {
    /// Builds a reference (tests, runbooks).
    #[must_use]
    pub fn new(kind: WorkloadKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Reads a rule target, `None` when its kind is no workload or it lacks a namespace
    /// (every workload is namespaced).
    #[must_use]
    pub fn from_target(target: &Target) -> Option<Self> {
        let kind = match target.kind.as_str() {
            "deployment" => WorkloadKind::Deployment,
            "stateful_set" | "statefulset" => WorkloadKind::StatefulSet,
            "inference_service" | "inferenceservice" => WorkloadKind::InferenceService,
            "pod" => WorkloadKind::Pod,
            _ => return None,
        };
        Some(Self::new(
            kind,
            target.namespace.clone()?,
            target.name.clone(),
        ))
    }
}

impl fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::InferenceService => "InferenceService",
            WorkloadKind::Pod => "Pod",
        };
        write!(f, "{kind} {}/{}", self.namespace, self.name)
    }
}

/// Where low-priority pods are evicted from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scope", content = "name", rename_all = "snake_case")]
pub enum EvictScope {
    /// Every pod on one node (GPU memory exhausted on that node).
    Node(String),
    /// Every pod in one namespace.
    Namespace(String),
}

impl fmt::Display for EvictScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Node(n) => write!(f, "node {n}"),
            Self::Namespace(n) => write!(f, "namespace {n}"),
        }
    }
}

/// Workload changes: what most of the handbook's actions do to Kubernetes objects.
///
/// Implementations must be idempotent where the intent is a state ("5 replicas"): a call
/// that finds the state already there sends no write and answers `changed: false`.
/// Restart and rollback are events, not states; the engine's dedupe and cooldown keep
/// them from repeating.
#[async_trait]
pub trait Workloads: Send + Sync {
    /// The desired replica count (`spec.replicas`; `minReplicas` of an `InferenceService`),
    /// which scale-up and scale-down step from.
    async fn current_replicas(&self, target: &WorkloadRef) -> Result<u32, PortError>;

    /// Sets the desired replica count; for an `InferenceService`, its predictor's
    /// `minReplicas` (raising `maxReplicas` with it when it would fall below).
    async fn scale(
        &self,
        target: &WorkloadRef,
        replicas: u32,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError>;

    /// Restarts the pods: a rollout restart (the `kubectl.kubernetes.io/restartedAt`
    /// template annotation) for a Deployment or `StatefulSet`, a delete for a bare pod.
    async fn restart(&self, target: &WorkloadRef, mode: Mode) -> Result<ActionOutcome, PortError>;

    /// Rolls a Deployment back to the pod template of its previous `ReplicaSet` revision,
    /// as `kubectl rollout undo` does.
    async fn rollback(&self, target: &WorkloadRef, mode: Mode) -> Result<ActionOutcome, PortError>;

    /// Evicts (Eviction API, so `PodDisruptionBudgets` hold) every pod in `scope` whose
    /// resolved `PriorityClass` value is below `below_priority`.
    async fn evict_lower_priority(
        &self,
        scope: &EvictScope,
        below_priority: i32,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError>;

    /// vLLM's maximum batch size (`--max-num-seqs`) of the serving container, `None` when
    /// the argument is not set (vLLM's default applies).
    async fn max_num_seqs(&self, target: &WorkloadRef) -> Result<Option<u32>, PortError>;

    /// Sets vLLM's `--max-num-seqs` argument on the serving container (a rollout follows).
    async fn set_max_num_seqs(
        &self,
        target: &WorkloadRef,
        value: u32,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError>;
}

/// cert-manager certificates.
#[async_trait]
pub trait Certificates: Send + Sync {
    /// Triggers re-issuance now, as `cmctl renew` does (the `Issuing` condition); a
    /// certificate already being issued is left alone.
    async fn renew_certificate(
        &self,
        namespace: &str,
        name: &str,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError>;
}

/// Telling people: the `notify` action and escalations.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Sends `message` to `channel` (a team, `user:<id>`, a chat room).
    async fn notify(
        &self,
        channel: &str,
        message: &str,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError>;
}

/// CI workflows started on behalf of an alert (Gitea Actions `workflow_dispatch`).
#[async_trait]
pub trait WorkflowDispatch: Send + Sync {
    /// Starts `workflow` of `owner/repo` on `git_ref` with `inputs`; a dry run only says
    /// what it would start, because Gitea has no dry-run for dispatches.
    async fn dispatch(
        &self,
        owner: &str,
        repo: &str,
        workflow: &str,
        git_ref: &str,
        inputs: &BTreeMap<String, String>,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: &str, ns: Option<&str>) -> Target {
        Target {
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: "x".into(),
        }
    }

    #[test]
    fn rule_targets_become_workload_refs_only_for_workload_kinds() {
        for kind in [
            WorkloadKind::Deployment,
            WorkloadKind::StatefulSet,
            WorkloadKind::InferenceService,
            WorkloadKind::Pod,
        ] {
            let got = WorkloadRef::from_target(&target(kind.rule_kind(), Some("ns")));
            assert_eq!(got, Some(WorkloadRef::new(kind, "ns", "x")));
        }
        assert_eq!(WorkloadRef::from_target(&target("node", None)), None);
        assert_eq!(
            WorkloadRef::from_target(&target("certificate", Some("ns"))),
            None
        );
        assert_eq!(WorkloadRef::from_target(&target("deployment", None)), None);
    }

    #[test]
    fn dry_run_outcomes_say_so() {
        let o = ActionOutcome::changed(Mode::DryRun, None, Some("replicas=4".into()), "scale");
        assert!(o.changed && o.dry_run);
        assert_eq!(o.detail, "dry run: scale");
        let u = ActionOutcome::unchanged(Mode::Apply, "replicas=4", "already");
        assert_eq!(u.before, u.after);
        assert!(!u.changed && !u.dry_run);
    }
}
