//! In-memory fakes of the action ports, for the engine's, the webhook's and runbooks'
//! tests: they keep the state a cluster would (replicas, revisions, pods, certificates),
//! honour [`Mode::DryRun`] by changing nothing, and log every write they accepted so a
//! test can assert what was (not) done.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use sre_core::PortError;

use crate::actions::{
    ActionOutcome, Certificates, EvictScope, Mode, Notifier, WorkflowDispatch, WorkloadKind,
    WorkloadRef, Workloads,
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
