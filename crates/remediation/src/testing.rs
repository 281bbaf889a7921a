//! In-memory fakes of the action ports, for the engine's, the webhook's and runbooks'
//! tests: they keep the state a cluster would (replicas, revisions, pods, certificates,
//! seal states, consumer replicas, `Gslb` statuses, Service selectors, Milvus indexes and
//! load states, webhook redeliveries),
//! honour [`Mode::DryRun`] by changing nothing, and log every write they accepted so a
//! test can assert what was (not) done.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use sre_core::PortError;

use crate::actions::{
    ActionOutcome, BaoInstance, Certificates, CollectionRef, ConsumerRef, EvictScope, GslbState,
    GslbStatus, IndexSpec, JetStreamConsumers, Mode, Notifier, ServiceFailover, Unsealer,
    VectorIndexes, WebhookRedelivery, WebhookRef, WorkflowDispatch, WorkloadKind, WorkloadRef,
    Workloads, index_params_json, selector_line,
};

/// One pod the fake evicts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Node it runs on.
    pub node: String,
    /// Resolved `PriorityClass` value.
    pub priority: i32,
}

#[derive(Debug, Default)]
struct State {
    replicas: BTreeMap<WorkloadRef, u32>,
    revisions: BTreeMap<WorkloadRef, Vec<String>>,
    max_num_seqs: BTreeMap<WorkloadRef, u32>,
    pods: Vec<FakePod>,
    failures: BTreeMap<WorkloadRef, PortError>,
    writes: Vec<String>,
}

/// A fake [`Workloads`]: a workload exists once a test gave it replicas or revisions.
#[derive(Debug, Default)]
pub struct FakeWorkloads {
    state: Mutex<State>,
}

impl FakeWorkloads {
    /// An empty cluster.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a workload with `replicas`.
    #[must_use]
    pub fn with_replicas(self, target: &WorkloadRef, replicas: u32) -> Self {
        self.lock().replicas.insert(target.clone(), replicas);
        self
    }

    /// Adds a Deployment's revision history (templates, oldest first; the last is live).
    #[must_use]
    pub fn with_revisions(self, target: &WorkloadRef, templates: &[&str]) -> Self {
        self.lock().revisions.insert(
            target.clone(),
            templates.iter().map(|t| (*t).to_owned()).collect(),
        );
        self
    }

    /// Sets the workload's `--max-num-seqs`.
    #[must_use]
    pub fn with_max_num_seqs(self, target: &WorkloadRef, value: u32) -> Self {
        self.lock().max_num_seqs.insert(target.clone(), value);
        self
    }

    /// Adds a pod.
    #[must_use]
    pub fn with_pod(self, pod: FakePod) -> Self {
        self.lock().pods.push(pod);
        self
    }

    /// Makes every call on `target` fail with `err`.
    #[must_use]
    pub fn failing(self, target: &WorkloadRef, err: PortError) -> Self {
        self.lock().failures.insert(target.clone(), err);
        self
    }

    /// The writes carried out (not dry runs), in order, e.g. `scale Deployment ns/a 4`.
    #[must_use]
    pub fn writes(&self) -> Vec<String> {
        self.lock().writes.clone()
    }

    /// The current replica count of `target`.
    #[must_use]
    pub fn replicas(&self, target: &WorkloadRef) -> Option<u32> {
        self.lock().replicas.get(target).copied()
    }

    /// The pods not evicted.
    #[must_use]
    pub fn pods(&self) -> Vec<FakePod> {
        self.lock().pods.clone()
    }

    /// The live template of a Deployment.
    #[must_use]
    pub fn live_template(&self, target: &WorkloadRef) -> Option<String> {
        self.lock().revisions.get(target)?.last().cloned()
    }

    /// The current `--max-num-seqs`.
    #[must_use]
    pub fn max_num_seqs_of(&self, target: &WorkloadRef) -> Option<u32> {
        self.lock().max_num_seqs.get(target).copied()
    }
}

fn not_found(target: &WorkloadRef) -> PortError {
    PortError::NotFound {
        what: target.to_string(),
    }
}

fn check(s: &State, target: &WorkloadRef) -> Result<(), PortError> {
    match s.failures.get(target) {
        Some(e) => Err(e.clone()),
        None => Ok(()),
    }
}

#[async_trait]
impl Workloads for FakeWorkloads {
    async fn current_replicas(&self, target: &WorkloadRef) -> Result<u32, PortError> {
        let s = self.lock();
        check(&s, target)?;
        s.replicas
            .get(target)
            .copied()
            .ok_or_else(|| not_found(target))
    }

    async fn scale(
        &self,
        target: &WorkloadRef,
        replicas: u32,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let mut s = self.lock();
        check(&s, target)?;
        if target.kind == WorkloadKind::Pod {
            return Err(PortError::Invalid(format!("{target} has no replicas")));
        }
        let current = *s.replicas.get(target).ok_or_else(|| not_found(target))?;
        if current == replicas {
            return Ok(ActionOutcome::unchanged(
                mode,
                format!("replicas={current}"),
                format!("{target} already at {current} replicas: nothing to do"),
            ));
        }
        if !mode.is_dry_run() {
            s.replicas.insert(target.clone(), replicas);
            s.writes.push(format!("scale {target} {replicas}"));
        }
        Ok(ActionOutcome::changed(
            mode,
            Some(format!("replicas={current}")),
            Some(format!("replicas={replicas}")),
            format!("scaled {target} from {current} to {replicas}"),
        ))
    }

    async fn restart(&self, target: &WorkloadRef, mode: Mode) -> Result<ActionOutcome, PortError> {
        let mut s = self.lock();
        check(&s, target)?;
        let exists = match target.kind {
            WorkloadKind::Pod => s
                .pods
                .iter()
                .any(|p| p.namespace == target.namespace && p.name == target.name),
            _ => s.replicas.contains_key(target) || s.revisions.contains_key(target),
        };
        if !exists {
            return Err(not_found(target));
        }
        if !mode.is_dry_run() {
            s.writes.push(format!("restart {target}"));
        }
        Ok(ActionOutcome::changed(
            mode,
            None,
            None,
            format!("restarted {target}"),
        ))
    }

    async fn rollback(&self, target: &WorkloadRef, mode: Mode) -> Result<ActionOutcome, PortError> {
        let mut s = self.lock();
        check(&s, target)?;
        let history = s.revisions.get(target).ok_or_else(|| not_found(target))?;
        let (Some(live), Some(previous)) = (history.last(), history.iter().rev().nth(1)) else {
            return Err(PortError::NotFound {
                what: format!("previous revision of {target}"),
            });
        };
        let (live, previous) = (live.clone(), previous.clone());
        if !mode.is_dry_run() {
            // As the Deployment controller does: the old template becomes the newest revision.
            if let Some(h) = s.revisions.get_mut(target) {
                h.push(previous.clone());
            }
            s.writes.push(format!("rollback {target} to {previous}"));
        }
        Ok(ActionOutcome::changed(
            mode,
            Some(live),
            Some(previous),
            format!("rolled {target} back to its previous revision"),
        ))
    }

    async fn evict_lower_priority(
        &self,
        scope: &EvictScope,
        below_priority: i32,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let mut s = self.lock();
        let hit = |p: &FakePod| {
            p.priority < below_priority
                && match scope {
                    EvictScope::Node(n) => &p.node == n,
                    EvictScope::Namespace(n) => &p.namespace == n,
                }
        };
        let victims: Vec<String> = s
            .pods
            .iter()
            .filter(|p| hit(p))
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect();
        if victims.is_empty() {
            return Ok(ActionOutcome::unchanged(
                mode,
                "0 pods below priority",
                format!("no pod below priority {below_priority} on {scope}: nothing to do"),
            ));
        }
        if !mode.is_dry_run() {
            s.pods.retain(|p| !hit(p));
            s.writes.push(format!("evict {}", victims.join(",")));
        }
        Ok(ActionOutcome::changed(
            mode,
            Some(format!("{} pods below priority", victims.len())),
            Some("0 pods below priority".into()),
            format!("evicted {} from {scope}", victims.join(", ")),
        ))
    }

    async fn max_num_seqs(&self, target: &WorkloadRef) -> Result<Option<u32>, PortError> {
        let s = self.lock();
        check(&s, target)?;
        Ok(s.max_num_seqs.get(target).copied())
    }

    async fn set_max_num_seqs(
        &self,
        target: &WorkloadRef,
        value: u32,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let mut s = self.lock();
        check(&s, target)?;
        let before = s.max_num_seqs.get(target).copied();
        if before == Some(value) {
            return Ok(ActionOutcome::unchanged(
                mode,
                format!("max_num_seqs={value}"),
                format!("{target} already runs with --max-num-seqs {value}: nothing to do"),
            ));
        }
        if !mode.is_dry_run() {
            s.max_num_seqs.insert(target.clone(), value);
            s.writes.push(format!("max-num-seqs {target} {value}"));
        }
        Ok(ActionOutcome::changed(
            mode,
            before.map(|b| format!("max_num_seqs={b}")),
            Some(format!("max_num_seqs={value}")),
            format!("set --max-num-seqs {value} on {target}"),
        ))
    }
}

/// A fake [`Certificates`] and [`Notifier`]: certificates are `(namespace, name)` with an
/// `issuing` flag; notifications are recorded.
#[derive(Debug, Default)]
pub struct FakeCerts {
    issuing: Mutex<BTreeMap<(String, String), bool>>,
}

impl FakeCerts {
    /// Adds a certificate, `issuing` when cert-manager is already re-issuing it.
    #[must_use]
    pub fn with(self, namespace: &str, name: &str, issuing: bool) -> Self {
        self.issuing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((namespace.into(), name.into()), issuing);
        self
    }

    /// Whether the certificate is being issued.
    #[must_use]
    pub fn is_issuing(&self, namespace: &str, name: &str) -> Option<bool> {
        self.issuing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(namespace.to_owned(), name.to_owned()))
            .copied()
    }
}

#[async_trait]
impl Certificates for FakeCerts {
    async fn renew_certificate(
        &self,
        namespace: &str,
        name: &str,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let mut m = self.issuing.lock().unwrap_or_else(PoisonError::into_inner);
        let what = format!("Certificate {namespace}/{name}");
        let issuing = m
            .get_mut(&(namespace.to_owned(), name.to_owned()))
            .ok_or_else(|| PortError::NotFound { what: what.clone() })?;
        if *issuing {
            return Ok(ActionOutcome::unchanged(
                mode,
                "Issuing=True",
                format!("{what} is already being issued: nothing to do"),
            ));
        }
        if !mode.is_dry_run() {
            *issuing = true;
        }
        Ok(ActionOutcome::changed(
            mode,
            Some("Issuing=False".into()),
            Some("Issuing=True".into()),
            format!("triggered re-issuance of {what}"),
        ))
    }
}

/// A fake [`Notifier`] that records `(channel, message)`.
#[derive(Debug, Default)]
pub struct FakeNotifier {
    sent: Mutex<Vec<(String, String)>>,
}

impl FakeNotifier {
    /// What was sent (dry runs are not).
    #[must_use]
    pub fn sent(&self) -> Vec<(String, String)> {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Notifier for FakeNotifier {
    async fn notify(
        &self,
        channel: &str,
        message: &str,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        if !mode.is_dry_run() {
            self.sent
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((channel.into(), message.into()));
        }
        Ok(ActionOutcome::changed(
            mode,
            None,
            None,
            format!("notified {channel}"),
        ))
    }
}

/// One dispatch the fake recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatched {
    /// `owner/repo`.
    pub repo: String,
    /// The workflow file.
    pub workflow: String,
    /// Branch or tag.
    pub git_ref: String,
    /// The inputs sent.
    pub inputs: BTreeMap<String, String>,
}

/// A fake [`WorkflowDispatch`] that records what it started (dry runs are not).
#[derive(Debug, Default)]
pub struct FakeWorkflows {
    started: Mutex<Vec<Dispatched>>,
}

impl FakeWorkflows {
    /// The dispatches, in order.
    #[must_use]
    pub fn started(&self) -> Vec<Dispatched> {
        self.started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl WorkflowDispatch for FakeWorkflows {
    async fn dispatch(
        &self,
        owner: &str,
        repo: &str,
        workflow: &str,
        git_ref: &str,
        inputs: &BTreeMap<String, String>,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        if !mode.is_dry_run() {
            self.started
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Dispatched {
                    repo: format!("{owner}/{repo}"),
                    workflow: workflow.into(),
                    git_ref: git_ref.into(),
                    inputs: inputs.clone(),
                });
        }
        Ok(ActionOutcome::changed(
            mode,
            None,
            None,
            format!("dispatched {workflow} of {owner}/{repo} on {git_ref}"),
        ))
    }
}

/// One fake OpenBao server's seal state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seal {
    sealed: bool,
    threshold: u32,
    shares: u32,
}

/// A fake [`Unsealer`]: instances are sealed or not, and have a number of attested
/// shares against a threshold, as the real adapter reads them.
#[derive(Debug, Default)]
pub struct FakeUnsealer {
    seals: Mutex<BTreeMap<String, Seal>>,
    unsealed: Mutex<Vec<String>>,
}

impl FakeUnsealer {
    /// Adds instance `name`, `sealed` or not, with `shares` available for a `threshold`.
    #[must_use]
    pub fn with(self, name: &str, sealed: bool, shares: u32, threshold: u32) -> Self {
        self.seals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                name.into(),
                Seal {
                    sealed,
                    threshold,
                    shares,
                },
            );
        self
    }

    /// Whether `name` is sealed.
    #[must_use]
    pub fn is_sealed(&self, name: &str) -> Option<bool> {
        self.seals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .map(|s| s.sealed)
    }

    /// The instances unsealed (not dry runs), in order.
    #[must_use]
    pub fn unsealed(&self) -> Vec<String> {
        self.unsealed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Unsealer for FakeUnsealer {
    async fn unseal(&self, instance: &BaoInstance, mode: Mode) -> Result<ActionOutcome, PortError> {
        let mut seals = self.seals.lock().unwrap_or_else(PoisonError::into_inner);
        let seal = seals
            .get_mut(&instance.name)
            .ok_or_else(|| PortError::NotFound {
                what: instance.to_string(),
            })?;
        if !seal.sealed {
            return Ok(ActionOutcome::unchanged(
                mode,
                "sealed=false",
                format!("{instance} is already unsealed: nothing to do"),
            ));
        }
        if seal.shares < seal.threshold {
            return Err(PortError::Rejected {
                backend: "openbao",
                message: format!(
                    "{instance}: {} key shares available, threshold is {}: nothing submitted",
                    seal.shares, seal.threshold
                ),
            });
        }
        if !mode.is_dry_run() {
            seal.sealed = false;
            self.unsealed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(instance.name.clone());
        }
        Ok(ActionOutcome::changed(
            mode,
            Some("sealed=true".into()),
            Some("sealed=false".into()),
            format!(
                "unsealed {instance} ({} shares available, threshold {})",
                seal.shares, seal.threshold
            ),
        ))
    }
}

/// One fake consumer: its replicas, its stream's replicas and its lag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FakeConsumer {
    replicas: u32,
    stream_replicas: u32,
    pending: u64,
}

/// A fake [`JetStreamConsumers`] that keeps replica counts and honours both bounds.
#[derive(Debug, Default)]
pub struct FakeJetStream {
    consumers: Mutex<BTreeMap<ConsumerRef, FakeConsumer>>,
}

impl FakeJetStream {
    /// Adds a consumer with `replicas`, on a stream with `stream_replicas`, `pending` behind.
    #[must_use]
    pub fn with(
        self,
        consumer: &ConsumerRef,
        replicas: u32,
        stream_replicas: u32,
        pending: u64,
    ) -> Self {
        self.consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                consumer.clone(),
                FakeConsumer {
                    replicas,
                    stream_replicas,
                    pending,
                },
            );
        self
    }

    /// The consumer's replica count.
    #[must_use]
    pub fn replicas(&self, consumer: &ConsumerRef) -> Option<u32> {
        self.consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(consumer)
            .map(|c| c.replicas)
    }
}

#[async_trait]
impl JetStreamConsumers for FakeJetStream {
    async fn add_replica(
        &self,
        consumer: &ConsumerRef,
        max_replicas: u32,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let mut m = self
            .consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let c = m.get_mut(consumer).ok_or_else(|| PortError::NotFound {
            what: consumer.to_string(),
        })?;
        let state = format!("replicas={}", c.replicas);
        let lag = format!("num_pending={}", c.pending);
        let bound = max_replicas.min(c.stream_replicas);
        if c.replicas >= bound {
            return Ok(ActionOutcome::unchanged(
                mode,
                state,
                format!(
                    "{consumer} at {} replicas, bound {bound} (max {max_replicas}, stream {}); {lag}: nothing to do",
                    c.replicas, c.stream_replicas
                ),
            ));
        }
        let next = c.replicas + 1;
        if !mode.is_dry_run() {
            c.replicas = next;
        }
        Ok(ActionOutcome::changed(
            mode,
            Some(state),
            Some(format!("replicas={next}")),
            format!("added a replica to {consumer}; {lag}"),
        ))
    }
}

/// A fake [`GslbStatus`]: `Gslb`s are `(namespace, name)` with the status a test gave them.
#[derive(Debug, Default)]
pub struct FakeGslb {
    gslbs: BTreeMap<(String, String), GslbState>,
}

impl FakeGslb {
    /// Adds a `Gslb` with `status`.
    #[must_use]
    pub fn with(mut self, namespace: &str, name: &str, status: GslbState) -> Self {
        self.gslbs.insert((namespace.into(), name.into()), status);
        self
    }
}

#[async_trait]
impl GslbStatus for FakeGslb {
    async fn gslb_status(&self, namespace: &str, name: &str) -> Result<GslbState, PortError> {
        self.gslbs
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| PortError::NotFound {
                what: format!("Gslb {namespace}/{name}"),
            })
    }
}

/// One Service the fake fails over: its selector, the pods ready behind it, and the
/// selector a failover saved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeService {
    /// `spec.selector`; `None` for a selector-less Service (endpoints managed elsewhere).
    pub selector: Option<BTreeMap<String, String>>,
    /// Ready endpoints behind it.
    pub ready_endpoints: u32,
    /// The selector saved by a failover, restored by a failback.
    pub saved: Option<BTreeMap<String, String>>,
}

/// A fake [`ServiceFailover`] with the kube adapter's rules: refuse a backup with no
/// selector or no ready endpoint before any write, keep the first saved selector, and
/// restore it exactly on failback.
#[derive(Debug, Default)]
pub struct FakeServices {
    services: Mutex<BTreeMap<(String, String), FakeService>>,
    writes: Mutex<Vec<String>>,
}

/// Builds a selector from `key=value` pairs (tests).
#[must_use]
pub fn selector(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl FakeServices {
    /// Adds Service `namespace/name` with `selector` and `ready_endpoints`.
    #[must_use]
    pub fn with(
        self,
        namespace: &str,
        name: &str,
        selector: Option<BTreeMap<String, String>>,
        ready_endpoints: u32,
    ) -> Self {
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (namespace.into(), name.into()),
                FakeService {
                    selector,
                    ready_endpoints,
                    saved: None,
                },
            );
        self
    }

    /// The Service as it is now.
    #[must_use]
    pub fn service(&self, namespace: &str, name: &str) -> Option<FakeService> {
        self.services
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The writes accepted (dry runs are not), in order.
    #[must_use]
    pub fn writes(&self) -> Vec<String> {
        self.writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn rejected(message: String) -> PortError {
    PortError::Rejected {
        backend: "fake",
        message,
    }
}

#[async_trait]
impl ServiceFailover for FakeServices {
    async fn failover_to_backup(
        &self,
        namespace: &str,
        service: &str,
        backup: &str,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let mut m = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        let key = |n: &str| (namespace.to_owned(), n.to_owned());
        let not_found = |n: &str| PortError::NotFound {
            what: format!("Service {namespace}/{n}"),
        };
        let b = m.get(&key(backup)).ok_or_else(|| not_found(backup))?;
        let Some(wanted) = b.selector.clone().filter(|s| !s.is_empty()) else {
            return Err(rejected(format!(
                "backup Service {namespace}/{backup} has no selector: refusing to switch traffic to nothing"
            )));
        };
        if b.ready_endpoints == 0 {
            return Err(rejected(format!(
                "backup Service {namespace}/{backup} has no ready endpoints: refusing to switch traffic to nothing"
            )));
        }
        let t = m.get_mut(&key(service)).ok_or_else(|| not_found(service))?;
        let Some(current) = t.selector.clone() else {
            return Err(rejected(format!(
                "Service {namespace}/{service} has no selector: its endpoints are not ours to switch"
            )));
        };
        if current == wanted {
            return Ok(ActionOutcome::unchanged(
                mode,
                format!("selector={}", selector_line(&current)),
                format!(
                    "Service {namespace}/{service} already selects the pods of {backup}: nothing to do"
                ),
            ));
        }
        if !mode.is_dry_run() {
            t.saved.get_or_insert_with(|| current.clone());
            t.selector = Some(wanted.clone());
            self.writes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(format!("failover {namespace}/{service} -> {backup}"));
        }
        Ok(ActionOutcome::changed(
            mode,
            Some(format!("selector={}", selector_line(&current))),
            Some(format!("selector={}", selector_line(&wanted))),
            format!("Service {namespace}/{service} now selects the pods of {backup}"),
        ))
    }

    async fn failback(
        &self,
        namespace: &str,
        service: &str,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let mut m = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        let t = m
            .get_mut(&(namespace.to_owned(), service.to_owned()))
            .ok_or_else(|| PortError::NotFound {
                what: format!("Service {namespace}/{service}"),
            })?;
        let current = t.selector.clone().unwrap_or_default();
        let Some(saved) = t.saved.clone() else {
            return Ok(ActionOutcome::unchanged(
                mode,
                format!("selector={}", selector_line(&current)),
                format!("Service {namespace}/{service} has no failover to undo: nothing to do"),
            ));
        };
        if !mode.is_dry_run() {
            t.selector = Some(saved.clone());
            t.saved = None;
            self.writes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(format!("failback {namespace}/{service}"));
        }
        Ok(ActionOutcome::changed(
            mode,
            Some(format!("selector={}", selector_line(&current))),
            Some(format!("selector={}", selector_line(&saved))),
            format!("Service {namespace}/{service} selects its own pods again"),
        ))
    }
}

/// One fake Milvus collection: its indexes, whether it is loaded, and how often each
/// index was built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeCollection {
    /// The indexes, in creation order.
    pub indexes: Vec<IndexSpec>,
    /// Whether the collection is loaded (searchable).
    pub loaded: bool,
}

/// A fake [`VectorIndexes`] with Milvus' rules: an index of a loaded collection cannot
/// be dropped, and only recreatable vector indexes are rebuilt; every step is logged.
#[derive(Debug, Default)]
pub struct FakeVectorIndexes {
    collections: Mutex<BTreeMap<String, FakeCollection>>,
    writes: Mutex<Vec<String>>,
}

impl FakeVectorIndexes {
    /// Adds a loaded collection `name` with `indexes`.
    #[must_use]
    pub fn with(self, name: &str, indexes: Vec<IndexSpec>) -> Self {
        self.collections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                name.into(),
                FakeCollection {
                    indexes,
                    loaded: true,
                },
            );
        self
    }

    /// The collection as it is now.
    #[must_use]
    pub fn collection(&self, name: &str) -> Option<FakeCollection> {
        self.collections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The steps carried out (dry runs have none), e.g. `drop docs/vec_idx`.
    #[must_use]
    pub fn writes(&self) -> Vec<String> {
        self.writes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl VectorIndexes for FakeVectorIndexes {
    async fn rebuild_index(
        &self,
        collection: &CollectionRef,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let mut m = self
            .collections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let c = m
            .get_mut(&collection.name)
            .ok_or_else(|| PortError::NotFound {
                what: collection.to_string(),
            })?;
        let vector: Vec<IndexSpec> = c
            .indexes
            .iter()
            .filter(|i| i.is_vector())
            .cloned()
            .collect();
        if vector.is_empty() {
            return Err(PortError::NotFound {
                what: format!("vector index of {collection}"),
            });
        }
        for spec in &vector {
            spec.recreatable().map_err(|message| PortError::Rejected {
                backend: "fake",
                message,
            })?;
        }
        let spec = index_params_json(&vector);
        let names: Vec<&str> = vector.iter().map(|i| i.index_name.as_str()).collect();
        let what = format!(
            "{} index(es) ({}) of {collection}",
            names.len(),
            names.join(", ")
        );
        if !mode.is_dry_run() {
            let mut w = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
            c.loaded = false;
            w.push(format!("release {}", collection.name));
            for i in &vector {
                c.indexes.retain(|x| x.index_name != i.index_name);
                w.push(format!("drop {}/{}", collection.name, i.index_name));
            }
            for i in &vector {
                c.indexes.push(i.clone());
                w.push(format!("create {}/{}", collection.name, i.index_name));
            }
            c.loaded = true;
            w.push(format!("load {}", collection.name));
        }
        Ok(ActionOutcome::changed(
            mode,
            Some(spec.clone()),
            Some(spec),
            format!("rebuilt {what}: released, dropped, created with the same spec, loaded"),
        ))
    }
}

/// A fake [`WebhookRedelivery`] whose first requests fail with a given error, so the
/// retries around it can be tested; it counts requests and records successes.
#[derive(Debug, Default)]
pub struct FakeRedelivery {
    failures: Mutex<(u32, Option<PortError>)>,
    requests: Mutex<u32>,
    redelivered: Mutex<Vec<WebhookRef>>,
}

impl FakeRedelivery {
    /// The first `n` requests (not dry runs) fail with `err`.
    #[must_use]
    pub fn failing_first(self, n: u32, err: PortError) -> Self {
        *self.failures.lock().unwrap_or_else(PoisonError::into_inner) = (n, Some(err));
        self
    }

    /// Requests received (dry runs send none), failed ones included.
    #[must_use]
    pub fn requests(&self) -> u32 {
        *self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The webhooks whose redelivery was accepted, in order.
    #[must_use]
    pub fn redelivered(&self) -> Vec<WebhookRef> {
        self.redelivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl WebhookRedelivery for FakeRedelivery {
    async fn redeliver(
        &self,
        webhook: &WebhookRef,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        if mode.is_dry_run() {
            return Ok(ActionOutcome::changed(
                mode,
                None,
                None,
                format!("would ask to redeliver the failed deliveries of {webhook}"),
            ));
        }
        *self.requests.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        {
            let mut f = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
            if f.0 > 0 {
                f.0 -= 1;
                if let Some(e) = &f.1 {
                    return Err(e.clone());
                }
            }
        }
        self.redelivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(webhook.clone());
        Ok(ActionOutcome::changed(
            mode,
            None,
            None,
            format!("asked to redeliver the failed deliveries of {webhook}"),
        ))
    }
}
