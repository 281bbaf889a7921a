//! The ports remediation acts through: named by intent (scale, restart, roll back, evict,
//! renew, notify, unseal, add a consumer replica, read a `Gslb`, fail a Service over to
//! its backup, rebuild a vector index, ask an application to redeliver its webhooks),
//! free of any SDK type, so that the engine's plan can be carried out by
//! the kube adapter in production and by the in-memory fakes in tests.
//!
//! Every mutating call takes a [`Mode`] and answers an [`ActionOutcome`] that says whether
//! anything changed and what the state was before and after. That makes the two
//! properties the runbook needs visible in the run record: a dry run shows what *would*
//! change (and was validated by the backend, e.g. the API server's `dryRun=All`), and a
//! repeated call says "already at 5 replicas: nothing to do" instead of writing again.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
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

/// One OpenBao server (a pod of the `StatefulSet`), as the `OpenBaoSealed` alert names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct BaoInstance {
    /// The namespace it runs in, when the rule's target has one (adapters fill it into
    /// their address template).
    pub namespace: Option<String>,
    /// The instance (pod) name.
    pub name: String,
}

impl BaoInstance {
    /// Builds a reference (tests, runbooks).
    #[must_use]
    pub fn new(namespace: Option<&str>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.map(Into::into),
            name: name.into(),
        }
    }
}

impl fmt::Display for BaoInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "openbao {ns}/{}", self.name),
            None => write!(f, "openbao {}", self.name),
        }
    }
}

/// Unsealing an OpenBao server with key shares from an attested source (the handbook's
/// "auto-unseal via SPIRE-attested unseal keys"), so that a restarted pod serves secrets
/// again without a human typing shares at 3 a.m.
///
/// Implementations read the seal status first; a sealed instance gets key shares until it
/// reports unsealed. The call is idempotent: an instance already unsealed answers
/// `changed: false` and nothing is submitted. A dry run reports the shares available
/// against the threshold (the runbook's `openbao.unseal.shamir.shares.available`
/// precondition) and submits nothing. Fewer shares than the threshold is an error before
/// any share is sent, and no share ever appears in an outcome, error or log line.
#[async_trait]
pub trait Unsealer: Send + Sync {
    /// Unseals `instance` if it is sealed.
    async fn unseal(&self, instance: &BaoInstance, mode: Mode) -> Result<ActionOutcome, PortError>;
}

/// A JetStream consumer, `stream/consumer` in the rule file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ConsumerRef {
    /// The stream the consumer reads.
    pub stream: String,
    /// The consumer's (durable) name.
    pub consumer: String,
}

impl ConsumerRef {
    /// Builds a reference (tests, runbooks).
    #[must_use]
    pub fn new(stream: impl Into<String>, consumer: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            consumer: consumer.into(),
        }
    }

    /// Reads the rule target's name, `stream/consumer`; `None` for any other shape (an
    /// empty part or a second `/`), since NATS names hold neither.
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        let (stream, consumer) = name.split_once('/')?;
        let ok = |s: &str| !s.is_empty() && !s.contains('/');
        (ok(stream) && ok(consumer)).then(|| Self::new(stream, consumer))
    }
}

impl fmt::Display for ConsumerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "consumer {}/{}", self.stream, self.consumer)
    }
}

/// JetStream consumers: the handbook's answer to `JetstreamLagHigh` is one more consumer
/// replica, so that a consumer whose leader's server is overloaded gets a peer to move to.
///
/// Implementations read the consumer (its replicas and its lag: pending and
/// unacknowledged messages, which they put into the outcome's detail so the run record
/// shows the lag the action was taken against) and its stream, then raise the replica
/// count by one. They never go beyond `max_replicas` nor beyond the stream's own replica
/// count (a consumer cannot have more peers than its stream): at either bound they answer
/// `changed: false` with the reason. A dry run reads and reports, and writes nothing.
#[async_trait]
pub trait JetStreamConsumers: Send + Sync {
    /// Adds one replica to `consumer`, within `max_replicas` and its stream's replicas.
    async fn add_replica(
        &self,
        consumer: &ConsumerRef,
        max_replicas: u32,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError>;
}

/// How k8gb judges one host of a `Gslb` (`status.serviceHealth`): `Healthy` hosts get
/// this cluster's addresses in DNS, the others do not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostHealth {
    /// A backend Service has ready endpoints.
    Healthy,
    /// The backend Services exist but none has a ready endpoint.
    Unhealthy,
    /// No backend Service was found for the host.
    NotFound,
    /// A value this version does not know, kept verbatim rather than guessed.
    Other(String),
}

impl HostHealth {
    /// Reads k8gb's spelling (`Healthy`, `Unhealthy`, `NotFound`); anything else is kept
    /// as [`HostHealth::Other`] so a newer k8gb shows up in the record instead of failing.
    #[must_use]
    pub fn parse(s: &str) -> Self {
        match s {
            "Healthy" => Self::Healthy,
            "Unhealthy" => Self::Unhealthy,
            "NotFound" => Self::NotFound,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for HostHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Healthy => f.write_str("Healthy"),
            Self::Unhealthy => f.write_str("Unhealthy"),
            Self::NotFound => f.write_str("NotFound"),
            Self::Other(s) => f.write_str(s),
        }
    }
}

/// What k8gb reports about one `Gslb` (`k8gb.absa.oss/v1beta1`, its `status`): the
/// evidence an on-call engineer reads first when `GslbEndpointDown` fires.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GslbState {
    /// `status.serviceHealth`: host -> health.
    pub service_health: BTreeMap<String, HostHealth>,
    /// `status.healthyRecords`: host -> the addresses k8gb answers with.
    pub healthy_records: BTreeMap<String, Vec<String>>,
    /// `status.geoTag`: the cluster (region) that reported this status.
    pub geo_tag: Option<String>,
}

impl GslbState {
    /// The run record's entry for a status check of `namespace/name`: never `changed`
    /// (the check only reads), the healthy-host count as state, one line per host as detail.
    #[must_use]
    pub fn outcome(&self, namespace: &str, name: &str, mode: Mode) -> ActionOutcome {
        let what = match &self.geo_tag {
            Some(tag) => format!("Gslb {namespace}/{name} (geoTag {tag})"),
            None => format!("Gslb {namespace}/{name}"),
        };
        let mut hosts: Vec<&String> = self
            .service_health
            .keys()
            .chain(self.healthy_records.keys())
            .collect();
        hosts.sort();
        hosts.dedup();
        if hosts.is_empty() {
            return ActionOutcome::unchanged(
                mode,
                "no status",
                format!("{what}: no status yet (k8gb has not reconciled it)"),
            );
        }
        let healthy = hosts
            .iter()
            .filter(|h| self.service_health.get(**h) == Some(&HostHealth::Healthy))
            .count();
        let lines: Vec<String> = hosts
            .iter()
            .map(|h| {
                let health = self
                    .service_health
                    .get(*h)
                    .map_or_else(|| "no health".to_owned(), ToString::to_string);
                let records = match self.healthy_records.get(*h) {
                    Some(r) if !r.is_empty() => r.join(","),
                    _ => "no records".to_owned(),
                };
                format!("{h} {health} -> {records}")
            })
            .collect();
        ActionOutcome::unchanged(
            mode,
            format!("healthy={healthy}/{}", hosts.len()),
            format!(
                "{what}: {healthy} of {} host(s) healthy; {}",
                hosts.len(),
                lines.join("; ")
            ),
        )
    }
}

/// k8gb's view of a global endpoint, read for `GslbEndpointDown`: the alert says DNS
/// lost an endpoint, the `Gslb` status says which host and why, so the check records it
/// and changes nothing (k8gb itself moves DNS once the backends are healthy again).
#[async_trait]
pub trait GslbStatus: Send + Sync {
    /// The `status` of the `Gslb` `namespace/name`; a missing `Gslb` is `NotFound`, one
    /// not reconciled yet an empty [`GslbState`].
    async fn gslb_status(&self, namespace: &str, name: &str) -> Result<GslbState, PortError>;
}

/// Moving a Service's traffic to a backup and back (`QuotaServiceDown`: "failover to
/// backup"): the Service keeps its name and address, so clients notice nothing but the
/// pods behind it change.
///
/// Failover sets the Service's selector to the backup Service's and saves the original
/// selector on the Service, so [`ServiceFailover::failback`] restores it exactly, from
/// any process, after a restart. Implementations refuse (`PortError::Rejected`) before
/// any write when the backup selects nothing or has no ready endpoint: switching traffic
/// to nothing would turn a degraded service into a dead one. Both calls are idempotent
/// (a Service already on the backup, or with nothing to restore, is `changed: false`),
/// and a dry run validates the write without persisting it.
#[async_trait]
pub trait ServiceFailover: Send + Sync {
    /// Points Service `namespace/service` at the pods of Service `namespace/backup`.
    async fn failover_to_backup(
        &self,
        namespace: &str,
        service: &str,
        backup: &str,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError>;

    /// Restores the selector saved by the last failover of `namespace/service` and forgets it.
    async fn failback(
        &self,
        namespace: &str,
        service: &str,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError>;
}

/// A Milvus collection, as `MilvusQuerySlow` names it (its `collection_name` label); the
/// namespace is where Milvus runs, kept for the record: the database is the executor's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct CollectionRef {
    /// The namespace from the rule's target, when it has one.
    pub namespace: Option<String>,
    /// The collection's name.
    pub name: String,
}

impl CollectionRef {
    /// Builds a reference (tests, runbooks).
    #[must_use]
    pub fn new(namespace: Option<&str>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.map(Into::into),
            name: name.into(),
        }
    }
}

impl fmt::Display for CollectionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "Milvus collection {ns}/{}", self.name),
            None => write!(f, "Milvus collection {}", self.name),
        }
    }
}

/// One index of a collection as Milvus describes it, in the shape of one entry of the
/// `indexParams` of Milvus' create-index call (camelCase), so that the JSON an outcome
/// records can be sent back as is to recreate the index by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexSpec {
    /// The indexed field.
    pub field_name: String,
    /// The index's name.
    pub index_name: String,
    /// `HNSW`, `IVF_FLAT`, `AUTOINDEX`, ...; empty when Milvus did not say.
    pub index_type: String,
    /// `COSINE`, `L2`, `IP`, ...; empty for a scalar index.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub metric_type: String,
    /// Build parameters (`M`, `efConstruction`, `nlist`), when Milvus reported them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// Index types whose create call takes no build parameters: dropping and creating one
/// again with its type and metric alone gives the same index.
const PARAMETERLESS: &[&str] = &[
    "AUTOINDEX",
    "FLAT",
    "BIN_FLAT",
    "INVERTED",
    "STL_SORT",
    "TRIE",
    "BITMAP",
];

impl IndexSpec {
    /// A vector index (it has a metric); scalar indexes are not what slows a search.
    #[must_use]
    pub fn is_vector(&self) -> bool {
        !self.metric_type.is_empty()
    }

    /// Whether the index can be dropped and created again *identically* from this spec.
    /// Milvus' REST API describes type and metric but not the build parameters
    /// (`M`, `nlist`, ...): recreating an `HNSW` index without them would silently swap
    /// its parameters for Milvus' defaults, so such a spec is refused before anything is
    /// dropped, naming what is missing.
    ///
    /// # Errors
    /// Why the index cannot be recreated from this spec.
    pub fn recreatable(&self) -> Result<(), String> {
        let t = self.index_type.to_ascii_uppercase();
        if t.is_empty() {
            return Err(format!(
                "index {} on {}: Milvus did not report its type",
                self.index_name, self.field_name
            ));
        }
        if self.params.is_empty() && !PARAMETERLESS.contains(&t.as_str()) {
            return Err(format!(
                "index {} on {} is {}, whose build parameters Milvus' describe did not report: \
                 recreating it would replace them with defaults",
                self.index_name, self.field_name, self.index_type
            ));
        }
        Ok(())
    }
}

/// The specs as the JSON `indexParams` array of Milvus' create-index call: what a human
/// sends to recreate them if a rebuild stops between drop and create.
#[must_use]
pub fn index_params_json(specs: &[IndexSpec]) -> String {
    serde_json::to_string(specs).unwrap_or_else(|e| format!("<unprintable index specs: {e}>"))
}

/// Vector indexes (`MilvusQuerySlow`: "rebuild index"): a collection whose searches got
/// slow, typically after many inserts and deletes left segments indexed with stale
/// statistics, gets its vector indexes dropped and built again.
///
/// Implementations read the collection's indexes first and refuse (`Rejected`), before
/// any change, an index they cannot recreate identically ([`IndexSpec::recreatable`]);
/// no vector index at all is `NotFound`. Then: release the collection (Milvus drops no
/// index of a loaded collection), drop each vector index, create it again with the same
/// spec, load the collection. Scalar indexes are left alone. The outcome's `before` is
/// [`index_params_json`] of the rebuilt indexes, and an error after a drop carries it in
/// its message, so a human can recreate them whatever happens in between. A dry run
/// reads, checks and reports, and changes nothing. Searches fail from the release until
/// the load completes: that is the price of the handbook's action.
#[async_trait]
pub trait VectorIndexes: Send + Sync {
    /// Drops and recreates every vector index of `collection`, then loads it again.
    async fn rebuild_index(
        &self,
        collection: &CollectionRef,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError>;
}

/// An application's outgoing webhook (`BillingWebhookFailed`'s `webhook` label), whose
/// failed deliveries the application itself can send again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct WebhookRef {
    /// The application's namespace, when the rule's target has one.
    pub namespace: Option<String>,
    /// The webhook's name.
    pub name: String,
}

impl WebhookRef {
    /// Builds a reference (tests, runbooks).
    #[must_use]
    pub fn new(namespace: Option<&str>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.map(Into::into),
            name: name.into(),
        }
    }
}

impl fmt::Display for WebhookRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "webhook {ns}/{}", self.name),
            None => write!(f, "webhook {}", self.name),
        }
    }
}

/// Asking an application to redeliver its failed webhook deliveries: only the
/// application has the delivery log, the payloads and the idempotency keys, so the
/// remediation asks it rather than replaying anything itself.
///
/// One call is one request; the retries with backoff around it are
/// `execute`'s (`retry_with_backoff`'s `max_attempts`). An unreachable application or a
/// 5xx answer is `Unavailable` (worth another attempt), a refusal (4xx: bad token,
/// unknown webhook) is `Rejected`. A dry run sends nothing.
#[async_trait]
pub trait WebhookRedelivery: Send + Sync {
    /// Asks the application once to redeliver the failed deliveries of `webhook`.
    async fn redeliver(&self, webhook: &WebhookRef, mode: Mode)
    -> Result<ActionOutcome, PortError>;
}

/// A label selector as one line for the run record: `app=quota,tier=api`, `-` when empty.
#[must_use]
pub fn selector_line(selector: &BTreeMap<String, String>) -> String {
    if selector.is_empty() {
        return "-".to_owned();
    }
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
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
    fn consumer_refs_parse_only_stream_slash_consumer() {
        assert_eq!(
            ConsumerRef::parse("ORDERS/billing"),
            Some(ConsumerRef::new("ORDERS", "billing"))
        );
        for bad in ["ORDERS", "/billing", "ORDERS/", "a/b/c", ""] {
            assert_eq!(ConsumerRef::parse(bad), None, "{bad}");
        }
        assert_eq!(
            BaoInstance::new(Some("vault"), "openbao-0").to_string(),
            "openbao vault/openbao-0"
        );
    }

    #[test]
    fn a_gslb_check_changes_nothing_and_names_every_host() {
        let state = GslbState {
            service_health: [
                ("app.example.com".to_owned(), HostHealth::Healthy),
                ("api.example.com".to_owned(), HostHealth::parse("Unhealthy")),
            ]
            .into_iter()
            .collect(),
            healthy_records: [(
                "app.example.com".to_owned(),
                vec!["10.0.0.1".to_owned(), "10.0.0.2".to_owned()],
            )]
            .into_iter()
            .collect(),
            geo_tag: Some("eu".into()),
        };
        let o = state.outcome("k8gb", "app", Mode::Apply);
        assert!(!o.changed);
        assert_eq!(o.after.as_deref(), Some("healthy=1/2"));
        assert_eq!(
            o.detail,
            "Gslb k8gb/app (geoTag eu): 1 of 2 host(s) healthy; \
             api.example.com Unhealthy -> no records; app.example.com Healthy -> 10.0.0.1,10.0.0.2"
        );
        let empty = GslbState::default().outcome("k8gb", "app", Mode::DryRun);
        assert!(!empty.changed && empty.dry_run);
        assert!(empty.detail.contains("no status yet"), "{}", empty.detail);
        assert_eq!(HostHealth::parse("Degraded").to_string(), "Degraded");
        assert_eq!(HostHealth::parse("NotFound"), HostHealth::NotFound);
    }

    #[test]
    fn an_index_is_recreatable_only_when_its_spec_is_complete() {
        let spec = |t: &str, params: &[(&str, serde_json::Value)]| IndexSpec {
            field_name: "embedding".into(),
            index_name: "vec_idx".into(),
            index_type: t.into(),
            metric_type: "L2".into(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        };
        for ok in ["AUTOINDEX", "flat", "BIN_FLAT", "INVERTED", "Trie"] {
            assert_eq!(spec(ok, &[]).recreatable(), Ok(()), "{ok}");
        }
        assert_eq!(
            spec("IVF_FLAT", &[("nlist", serde_json::json!(1024))]).recreatable(),
            Ok(())
        );
        let hnsw = spec("HNSW", &[]).recreatable().expect_err("no parameters");
        assert!(
            hnsw.contains("HNSW") && hnsw.contains("build parameters"),
            "{hnsw}"
        );
        let untyped = spec("", &[]).recreatable().expect_err("no type");
        assert!(untyped.contains("did not report its type"), "{untyped}");
        // The record is Milvus' own create-call shape: empty fields are left out.
        let scalar = IndexSpec {
            metric_type: String::new(),
            ..spec("INVERTED", &[])
        };
        assert!(!scalar.is_vector() && spec("HNSW", &[]).is_vector());
        assert_eq!(
            index_params_json(&[scalar]),
            r#"[{"fieldName":"embedding","indexName":"vec_idx","indexType":"INVERTED"}]"#
        );
        let back: Vec<IndexSpec> = serde_json::from_str(&index_params_json(&[spec(
            "IVF_PQ",
            &[
                ("m", serde_json::json!(8)),
                ("nbits", serde_json::json!("8")),
            ],
        )]))
        .expect("round trip");
        assert_eq!(back[0].params.len(), 2);
        assert_eq!(
            CollectionRef::new(Some("ai-hub"), "docs").to_string(),
            "Milvus collection ai-hub/docs"
        );
        assert_eq!(
            WebhookRef::new(None, "stripe").to_string(),
            "webhook stripe"
        );
    }

    #[test]
    fn selectors_print_sorted_or_as_a_dash() {
        let s: BTreeMap<String, String> = [("tier", "api"), ("app", "quota")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(selector_line(&s), "app=quota,tier=api");
        assert_eq!(selector_line(&BTreeMap::new()), "-");
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
