//! From a plan to port calls: [`plan_to_calls`] is the pure mapping of each planned action
//! (rule action kind, its parameters and the target) to one [`Call`]; [`execute`] carries
//! one call out through the [`Executors`] it is given.
//!
//! Every action kind of the rule file maps to a call (the match is exhaustive, so a new
//! kind cannot compile without a decision); [`ExecError::NotSupported`] stays for kinds
//! a caller reports without an executor, so that a run record never shows an action as
//! done that nobody carried out.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use sre_core::PortError;
use thiserror::Error;

use crate::actions::{
    ActionOutcome, BaoInstance, Certificates, CollectionRef, ConsumerRef, EvictScope, GslbStatus,
    JetStreamConsumers, Mode, Notifier, ServiceFailover, Unsealer, VectorIndexes, WebhookRef,
    WorkflowDispatch, WorkloadKind, WorkloadRef, Workloads,
};
use crate::plan::{PlanEntry, Verdict};
use crate::retry::Redelivery;
use crate::rules::{ActionSpec, DispatchSpec, Target};

/// How a replica count moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "direction", rename_all = "snake_case")]
pub enum Step {
    /// Add `by`, never beyond `max`.
    Up {
        /// Replicas added.
        by: u32,
        /// Ceiling.
        max: u32,
    },
    /// Remove `by`, never below `min`.
    Down {
        /// Replicas removed.
        by: u32,
        /// Floor.
        min: u32,
    },
}

impl Step {
    /// The replica count to ask for from `current`; `None` when the bound is already reached.
    #[must_use]
    pub fn next(self, current: u32) -> Option<u32> {
        match self {
            Self::Up { by, max } => (current < max).then(|| current.saturating_add(by).min(max)),
            Self::Down { by, min } => (current > min).then(|| current.saturating_sub(by).max(min)),
        }
    }
}

/// One port call, with everything it needs; serialisable for the run record and for
/// `--dry-run` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// Read the replica count, then scale one step within the bound.
    Scale {
        /// What to scale.
        target: WorkloadRef,
        /// Which way and how far.
        step: Step,
    },
    /// Rollout restart, or pod delete for a pod.
    Restart {
        /// What to restart.
        target: WorkloadRef,
    },
    /// Back to the previous `ReplicaSet` revision.
    Rollback {
        /// The Deployment.
        target: WorkloadRef,
    },
    /// Evict pods below a priority.
    Evict {
        /// Node or namespace.
        scope: EvictScope,
        /// Pods with a lower `PriorityClass` value are evicted.
        below_priority: i32,
    },
    /// Read vLLM's `--max-num-seqs`, set it to `percent` of itself (at least 1).
    ReduceMaxNumSeqs {
        /// The serving workload.
        target: WorkloadRef,
        /// New value in percent of the old one.
        percent: u32,
    },
    /// cert-manager renewal.
    RenewCertificate {
        /// Certificate namespace.
        namespace: String,
        /// Certificate name.
        name: String,
    },
    /// A Gitea Actions `workflow_dispatch`.
    DispatchWorkflow {
        /// Repository owner.
        owner: String,
        /// Repository name.
        repo: String,
        /// Workflow file name or id.
        workflow: String,
        /// Branch or tag.
        git_ref: String,
        /// The alert's labels.
        inputs: BTreeMap<String, String>,
    },
    /// A message to people.
    Notify {
        /// Team or channel.
        channel: String,
        /// What to say.
        message: String,
    },
    /// Unseal an OpenBao server with the attested key shares.
    Unseal {
        /// The sealed server.
        instance: BaoInstance,
    },
    /// One more replica for a lagging JetStream consumer.
    AddConsumerReplica {
        /// The consumer.
        consumer: ConsumerRef,
        /// Never beyond this many replicas.
        max: u32,
    },
    /// Read a k8gb `Gslb`'s status into the run record.
    CheckGslb {
        /// The Gslb's namespace.
        namespace: String,
        /// The Gslb's name.
        name: String,
    },
    /// Point a Service at its backup's pods.
    FailoverToBackup {
        /// Namespace of both Services.
        namespace: String,
        /// The Service clients use.
        service: String,
        /// The Service whose pods take over.
        backup: String,
    },
    /// Restore the selector a failover saved.
    FailbackFromBackup {
        /// The Service's namespace.
        namespace: String,
        /// The Service that was failed over.
        service: String,
    },
    /// Drop and recreate a Milvus collection's vector indexes with the same spec.
    RebuildIndex {
        /// The collection.
        collection: CollectionRef,
    },
    /// Ask the application to redeliver a webhook's failed deliveries, retrying
    /// transient failures with exponential backoff.
    Redeliver {
        /// The webhook.
        webhook: WebhookRef,
        /// Requests sent at most (the first included).
        max_attempts: u32,
    },
}

/// Why a planned action was not (or could not be) carried out.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ExecError {
    /// No executor exists for this action kind yet; nothing was done.
    #[error("no executor for action `{0}` yet: nothing was done")]
    NotSupported(String),
    /// The rule pairs the action with a target it cannot act on (a config error).
    #[error("action `{action}` cannot act on {target}")]
    WrongTarget {
        /// The action kind.
        action: &'static str,
        /// The target as the plan names it.
        target: String,
    },
    /// The plan entry has no target (the rule did not resolve).
    #[error("action `{0}` has no target")]
    MissingTarget(&'static str),
    /// The executor exists but this process was not given the port it needs.
    #[error("action `{action}` needs the {port} port, which is not configured")]
    NotConfigured {
        /// The action kind.
        action: &'static str,
        /// The missing port.
        port: &'static str,
    },
    /// vLLM's batch size is not set on the workload, so "half of it" is unknown.
    #[error("{0} sets no --max-num-seqs: nothing to reduce from")]
    NoBatchSize(String),
    /// The port failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// The planned call for one `Act` entry of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedCall {
    /// The alert's fingerprint (the run record's key).
    pub fingerprint: String,
    /// The action kind.
    pub action: &'static str,
    /// The call, or why there is none.
    #[serde(serialize_with = "ser_call")]
    pub call: Result<Call, ExecError>,
}

fn ser_call<S: serde::Serializer>(call: &Result<Call, ExecError>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    match call {
        Ok(c) => c.serialize(s),
        Err(e) => {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry("error", &e.to_string())?;
            m.end()
        }
    }
}

/// What a notification about `entry` says: alert, fingerprint, target and rule.
fn message(entry: &PlanEntry) -> String {
    format!(
        "{} ({}) on {}: rule {}",
        entry.alertname,
        entry.fingerprint,
        entry
            .target
            .as_ref()
            .map_or_else(|| "no target".to_owned(), ToString::to_string),
        entry.rule.as_deref().unwrap_or("-"),
    )
}

/// Maps every `Act` entry of a plan to its call; other verdicts carry no action.
#[must_use]
pub fn plan_to_calls(plan: &[PlanEntry]) -> Vec<PlannedCall> {
    plan.iter().filter_map(planned_call).collect()
}

/// The call for one plan entry, `None` unless its verdict is `Act`: what the webhook
/// carries out per entry (the same mapping as [`plan_to_calls`]).
#[must_use]
pub fn planned_call(entry: &PlanEntry) -> Option<PlannedCall> {
    let action = entry.action()?;
    Some(PlannedCall {
        fingerprint: entry.fingerprint.clone(),
        action: action.kind(),
        call: call_for(action, entry.target.as_ref(), &message(entry)),
    })
}

/// The undo of an `Act` entry whose action did not help: the rule's `rollback` action on
/// the same target (a scale-up's `scale_down`), through the same mapping as the action
/// itself. `None` when the verdict is no `Act` or the rule names no rollback.
#[must_use]
pub fn rollback_call(entry: &PlanEntry) -> Option<PlannedCall> {
    let Verdict::Act {
        rollback: Some(rollback),
        ..
    } = &entry.verdict
    else {
        return None;
    };
    Some(PlannedCall {
        fingerprint: entry.fingerprint.clone(),
        action: rollback.kind(),
        call: call_for(rollback, entry.target.as_ref(), &message(entry)),
    })
}

/// The call for one action on one target; `message` is what a notification says.
///
/// # Errors
/// [`ExecError::WrongTarget`] or [`ExecError::MissingTarget`] when the rule's target does
/// not fit the action.
pub fn call_for(
    action: &ActionSpec,
    target: Option<&Target>,
    message: &str,
) -> Result<Call, ExecError> {
    const SCALABLE: &[WorkloadKind] = &[
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::InferenceService,
    ];
    let kind = action.kind();
    let target_of = |allowed: &[WorkloadKind]| -> Result<WorkloadRef, ExecError> {
        let t = target.ok_or(ExecError::MissingTarget(kind))?;
        WorkloadRef::from_target(t)
            .filter(|w| allowed.contains(&w.kind))
            .ok_or_else(|| ExecError::WrongTarget {
                action: kind,
                target: t.to_string(),
            })
    };
    Ok(match action {
        ActionSpec::ScaleUp {
            step, max_replicas, ..
        } => Call::Scale {
            target: target_of(SCALABLE)?,
            step: Step::Up {
                by: *step,
                max: *max_replicas,
            },
        },
        ActionSpec::ScaleDown { step, min_replicas } => Call::Scale {
            target: target_of(SCALABLE)?,
            step: Step::Down {
                by: *step,
                min: *min_replicas,
            },
        },
        ActionSpec::RolloutRestart {} => Call::Restart {
            target: target_of(&[WorkloadKind::Deployment, WorkloadKind::StatefulSet])?,
        },
        ActionSpec::DeletePod {} => Call::Restart {
            target: target_of(&[WorkloadKind::Pod])?,
        },
        ActionSpec::Rollback {} => Call::Rollback {
            target: target_of(&[WorkloadKind::Deployment])?,
        },
        ActionSpec::ReduceBatchSize { percent } => Call::ReduceMaxNumSeqs {
            target: target_of(&[WorkloadKind::InferenceService, WorkloadKind::Deployment])?,
            percent: *percent,
        },
        ActionSpec::EvictLowPriority { below_priority } => {
            let t = target.ok_or(ExecError::MissingTarget(kind))?;
            let scope = match (t.kind.as_str(), &t.namespace) {
                ("node", _) => EvictScope::Node(t.name.clone()),
                ("namespace", _) => EvictScope::Namespace(t.name.clone()),
                _ => {
                    return Err(ExecError::WrongTarget {
                        action: kind,
                        target: t.to_string(),
                    });
                }
            };
            Call::Evict {
                scope,
                below_priority: *below_priority,
            }
        }
        ActionSpec::RenewCertificate {} => {
            let t = target.ok_or(ExecError::MissingTarget(kind))?;
            match (t.kind.as_str(), &t.namespace) {
                ("certificate", Some(ns)) => Call::RenewCertificate {
                    namespace: ns.clone(),
                    name: t.name.clone(),
                },
                _ => {
                    return Err(ExecError::WrongTarget {
                        action: kind,
                        target: t.to_string(),
                    });
                }
            }
        }
        ActionSpec::DispatchWorkflow(d) => dispatch_call(d)?,
        ActionSpec::Notify { channel } => Call::Notify {
            channel: channel.as_str().to_owned(),
            message: message.to_owned(),
        },
        ActionSpec::Unseal {}
        | ActionSpec::AddConsumerReplica { .. }
        | ActionSpec::CheckGslb {}
        | ActionSpec::FailoverToBackup { .. }
        | ActionSpec::FailbackFromBackup {}
        | ActionSpec::RebuildIndex {}
        | ActionSpec::RetryWithBackoff { .. } => {
            platform_call(action, target.ok_or(ExecError::MissingTarget(kind))?)?
        }
    })
}

/// The calls on platform services rather than workloads: an OpenBao instance to unseal
/// (target kind `openbao`), a JetStream consumer to give a replica (target kind
/// `jetstream_consumer`, name `stream/consumer`), a k8gb `Gslb` to read (kind `gslb`), a
/// Service to fail over to its backup or back (kind `service`; the backup is a Service
/// of the same namespace, never the Service itself), a Milvus collection whose indexes
/// to rebuild (kind `milvus_collection`) and an application webhook whose failed
/// deliveries to redeliver (kind `webhook`).
fn platform_call(action: &ActionSpec, t: &Target) -> Result<Call, ExecError> {
    let wrong = || ExecError::WrongTarget {
        action: action.kind(),
        target: t.to_string(),
    };
    match action {
        ActionSpec::Unseal {} if t.kind == "openbao" => Ok(Call::Unseal {
            instance: BaoInstance::new(t.namespace.as_deref(), t.name.clone()),
        }),
        ActionSpec::AddConsumerReplica { max_replicas } if t.kind == "jetstream_consumer" => {
            Ok(Call::AddConsumerReplica {
                consumer: ConsumerRef::parse(&t.name).ok_or_else(wrong)?,
                max: *max_replicas,
            })
        }
        ActionSpec::CheckGslb {} if t.kind == "gslb" => Ok(Call::CheckGslb {
            namespace: t.namespace.clone().ok_or_else(wrong)?,
            name: t.name.clone(),
        }),
        ActionSpec::FailoverToBackup { backup } if t.kind == "service" => {
            let backup = backup.as_str();
            if backup.is_empty() || backup == t.name {
                return Err(wrong());
            }
            Ok(Call::FailoverToBackup {
                namespace: t.namespace.clone().ok_or_else(wrong)?,
                service: t.name.clone(),
                backup: backup.to_owned(),
            })
        }
        ActionSpec::FailbackFromBackup {} if t.kind == "service" => Ok(Call::FailbackFromBackup {
            namespace: t.namespace.clone().ok_or_else(wrong)?,
            service: t.name.clone(),
        }),
        ActionSpec::RebuildIndex {} if t.kind == "milvus_collection" && !t.name.is_empty() => {
            Ok(Call::RebuildIndex {
                collection: CollectionRef::new(t.namespace.as_deref(), t.name.clone()),
            })
        }
        ActionSpec::RetryWithBackoff { max_attempts }
            if t.kind == "webhook" && !t.name.is_empty() =>
        {
            Ok(Call::Redeliver {
                webhook: WebhookRef::new(t.namespace.as_deref(), t.name.clone()),
                max_attempts: *max_attempts,
            })
        }
        _ => Err(wrong()),
    }
}

/// The dispatch of a rule applied to an alert (its templates filled, its inputs set).
fn dispatch_call(d: &DispatchSpec) -> Result<Call, ExecError> {
    let (owner, name) = d
        .repo
        .as_str()
        .split_once('/')
        .ok_or_else(|| ExecError::WrongTarget {
            action: "dispatch_workflow",
            target: d.repo.as_str().to_owned(),
        })?;
    Ok(Call::DispatchWorkflow {
        owner: owner.to_owned(),
        repo: name.to_owned(),
        workflow: d.workflow.as_str().to_owned(),
        git_ref: d.git_ref.as_str().to_owned(),
        inputs: d.inputs.clone(),
    })
}

/// The ports this process can act through; a missing one makes its actions
/// [`ExecError::NotConfigured`] rather than silently skipped.
#[derive(Clone, Default)]
pub struct Executors {
    /// Workload changes (kube).
    pub workloads: Option<Arc<dyn Workloads>>,
    /// cert-manager.
    pub certificates: Option<Arc<dyn Certificates>>,
    /// Notifications.
    pub notifier: Option<Arc<dyn Notifier>>,
    /// Gitea Actions dispatches.
    pub workflows: Option<Arc<dyn WorkflowDispatch>>,
    /// OpenBao unseal (attested key shares).
    pub unsealer: Option<Arc<dyn Unsealer>>,
    /// JetStream consumer replicas.
    pub jetstream: Option<Arc<dyn JetStreamConsumers>>,
    /// k8gb `Gslb` status reads.
    pub gslb: Option<Arc<dyn GslbStatus>>,
    /// Service failover to a backup and back.
    pub services: Option<Arc<dyn ServiceFailover>>,
    /// Milvus vector index rebuilds.
    pub vector_indexes: Option<Arc<dyn VectorIndexes>>,
    /// Webhook redelivery requests, with their backoff and sleeper.
    pub redelivery: Option<Redelivery>,
}

impl std::fmt::Debug for Executors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executors")
            .field("workloads", &self.workloads.is_some())
            .field("certificates", &self.certificates.is_some())
            .field("notifier", &self.notifier.is_some())
            .field("workflows", &self.workflows.is_some())
            .field("unsealer", &self.unsealer.is_some())
            .field("jetstream", &self.jetstream.is_some())
            .field("gslb", &self.gslb.is_some())
            .field("services", &self.services.is_some())
            .field("vector_indexes", &self.vector_indexes.is_some())
            .field("redelivery", &self.redelivery.is_some())
            .finish()
    }
}

fn port<'a, T: ?Sized>(
    p: Option<&'a Arc<T>>,
    action: &'static str,
    name: &'static str,
) -> Result<&'a T, ExecError> {
    p.map(AsRef::as_ref)
        .ok_or(ExecError::NotConfigured { action, port: name })
}

/// Reads vLLM's `--max-num-seqs` and sets it to `percent` of itself (at least 1); a value
/// that cannot shrink is left alone.
async fn reduce_max_num_seqs(
    w: &dyn Workloads,
    target: &WorkloadRef,
    percent: u32,
    mode: Mode,
) -> Result<ActionOutcome, ExecError> {
    let current = w
        .max_num_seqs(target)
        .await?
        .ok_or_else(|| ExecError::NoBatchSize(target.to_string()))?;
    let reduced = u32::try_from(u64::from(current) * u64::from(percent) / 100)
        .unwrap_or(current)
        .max(1);
    if reduced >= current {
        return Ok(ActionOutcome::unchanged(
            mode,
            format!("max_num_seqs={current}"),
            format!("{target}: --max-num-seqs {current} cannot be reduced further"),
        ));
    }
    Ok(w.set_max_num_seqs(target, reduced, mode).await?)
}

/// Carries one call out.
///
/// # Errors
/// [`ExecError::NotConfigured`] when the needed port is absent, [`ExecError::NoBatchSize`]
/// when a batch size to reduce is not set, and the port's own errors.
#[allow(
    clippy::too_many_lines,
    reason = "one arm per call kind, each a port lookup and one call"
)]
pub async fn execute(
    call: &Call,
    ports: &Executors,
    mode: Mode,
) -> Result<ActionOutcome, ExecError> {
    match call {
        Call::Scale { target, step } => {
            let w = port(ports.workloads.as_ref(), "scale", "workloads")?;
            let current = w.current_replicas(target).await?;
            match step.next(current) {
                Some(n) => Ok(w.scale(target, n, mode).await?),
                None => Ok(ActionOutcome::unchanged(
                    mode,
                    format!("replicas={current}"),
                    format!(
                        "{target} already at {current} replicas (the rule's bound): nothing to do"
                    ),
                )),
            }
        }
        Call::Restart { target } => {
            let w = port(ports.workloads.as_ref(), "restart", "workloads")?;
            Ok(w.restart(target, mode).await?)
        }
        Call::Rollback { target } => {
            let w = port(ports.workloads.as_ref(), "rollback", "workloads")?;
            Ok(w.rollback(target, mode).await?)
        }
        Call::Evict {
            scope,
            below_priority,
        } => {
            let w = port(ports.workloads.as_ref(), "evict_low_priority", "workloads")?;
            Ok(w.evict_lower_priority(scope, *below_priority, mode).await?)
        }
        Call::ReduceMaxNumSeqs { target, percent } => {
            let w = port(ports.workloads.as_ref(), "reduce_batch_size", "workloads")?;
            reduce_max_num_seqs(w, target, *percent, mode).await
        }
        Call::RenewCertificate { namespace, name } => {
            let c = port(
                ports.certificates.as_ref(),
                "renew_certificate",
                "certificates",
            )?;
            Ok(c.renew_certificate(namespace, name, mode).await?)
        }
        Call::DispatchWorkflow {
            owner,
            repo,
            workflow,
            git_ref,
            inputs,
        } => {
            let d = port(ports.workflows.as_ref(), "dispatch_workflow", "workflows")?;
            Ok(d.dispatch(owner, repo, workflow, git_ref, inputs, mode)
                .await?)
        }
        Call::Notify { channel, message } => {
            let n = port(ports.notifier.as_ref(), "notify", "notifier")?;
            Ok(n.notify(channel, message, mode).await?)
        }
        Call::Unseal { instance } => {
            let u = port(ports.unsealer.as_ref(), "unseal", "unsealer")?;
            Ok(u.unseal(instance, mode).await?)
        }
        Call::AddConsumerReplica { consumer, max } => {
            let j = port(
                ports.jetstream.as_ref(),
                "add_consumer_replica",
                "jetstream",
            )?;
            Ok(j.add_replica(consumer, *max, mode).await?)
        }
        Call::CheckGslb { namespace, name } => {
            let g = port(ports.gslb.as_ref(), "check_gslb", "gslb")?;
            Ok(g.gslb_status(namespace, name)
                .await?
                .outcome(namespace, name, mode))
        }
        Call::FailoverToBackup {
            namespace,
            service,
            backup,
        } => {
            let f = port(ports.services.as_ref(), "failover_to_backup", "services")?;
            Ok(f.failover_to_backup(namespace, service, backup, mode)
                .await?)
        }
        Call::FailbackFromBackup { namespace, service } => {
            let f = port(ports.services.as_ref(), "failback_from_backup", "services")?;
            Ok(f.failback(namespace, service, mode).await?)
        }
        Call::RebuildIndex { collection } => {
            let v = port(
                ports.vector_indexes.as_ref(),
                "rebuild_index",
                "vector_indexes",
            )?;
            Ok(v.rebuild_index(collection, mode).await?)
        }
        Call::Redeliver {
            webhook,
            max_attempts,
        } => {
            let r = ports.redelivery.as_ref().ok_or(ExecError::NotConfigured {
                action: "retry_with_backoff",
                port: "redelivery",
            })?;
            Ok(r.redeliver(webhook, *max_attempts, mode).await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::IndexSpec;
    use crate::actions::{GslbState, HostHealth};
    use crate::rules::{RuleSet, Template};
    use crate::testing::{
        FakeCerts, FakeGslb, FakeJetStream, FakeNotifier, FakePod, FakeServices, FakeUnsealer,
        FakeVectorIndexes, FakeWorkloads, selector,
    };

    fn t(kind: &str, ns: Option<&str>, name: &str) -> Target {
        Target {
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: name.into(),
        }
    }

    fn w(kind: WorkloadKind, name: &str) -> WorkloadRef {
        WorkloadRef::new(kind, "ns", name)
    }

    /// One case: action + target -> the call, or the error's text.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "table rows read better by value"
    )]
    fn check(action: ActionSpec, target: Option<Target>, expect: Result<Call, &str>) {
        let got = call_for(&action, target.as_ref(), "msg");
        match (got, expect) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "{action:?}"),
            (Err(g), Err(e)) => assert_eq!(g.to_string(), e, "{action:?}"),
            (g, e) => panic!("{action:?}: got {g:?}, expected {e:?}"),
        }
    }

    #[test]
    fn every_action_kind_maps_to_a_call_or_a_typed_refusal() {
        let dep = || Some(t("deployment", Some("ns"), "api"));
        check(
            ActionSpec::ScaleUp {
                step: 2,
                max_replicas: 5,
                cost_per_replica_cents: 0,
            },
            dep(),
            Ok(Call::Scale {
                target: w(WorkloadKind::Deployment, "api"),
                step: Step::Up { by: 2, max: 5 },
            }),
        );
        check(
            ActionSpec::ScaleDown {
                step: 1,
                min_replicas: 1,
            },
            Some(t("stateful_set", Some("ns"), "kc")),
            Ok(Call::Scale {
                target: w(WorkloadKind::StatefulSet, "kc"),
                step: Step::Down { by: 1, min: 1 },
            }),
        );
        check(
            ActionSpec::ScaleUp {
                step: 1,
                max_replicas: 8,
                cost_per_replica_cents: 0,
            },
            Some(t("inference_service", Some("ns"), "llama")),
            Ok(Call::Scale {
                target: w(WorkloadKind::InferenceService, "llama"),
                step: Step::Up { by: 1, max: 8 },
            }),
        );
        check(
            ActionSpec::RolloutRestart {},
            dep(),
            Ok(Call::Restart {
                target: w(WorkloadKind::Deployment, "api"),
            }),
        );
        check(
            ActionSpec::DeletePod {},
            Some(t("pod", Some("ns"), "api-1")),
            Ok(Call::Restart {
                target: w(WorkloadKind::Pod, "api-1"),
            }),
        );
        check(
            ActionSpec::Rollback {},
            dep(),
            Ok(Call::Rollback {
                target: w(WorkloadKind::Deployment, "api"),
            }),
        );
        check(
            ActionSpec::ReduceBatchSize { percent: 50 },
            Some(t("inference_service", Some("ns"), "llama")),
            Ok(Call::ReduceMaxNumSeqs {
                target: w(WorkloadKind::InferenceService, "llama"),
                percent: 50,
            }),
        );
        check(
            ActionSpec::EvictLowPriority {
                below_priority: 1000,
            },
            Some(t("node", None, "gpu-1")),
            Ok(Call::Evict {
                scope: EvictScope::Node("gpu-1".into()),
                below_priority: 1000,
            }),
        );
        check(
            ActionSpec::RenewCertificate {},
            Some(t("certificate", Some("ns"), "web-tls")),
            Ok(Call::RenewCertificate {
                namespace: "ns".into(),
                name: "web-tls".into(),
            }),
        );
        check(
            ActionSpec::Notify {
                channel: Template::new("ai-hub"),
            },
            Some(t("service", Some("ns"), "rag")),
            Ok(Call::Notify {
                channel: "ai-hub".into(),
                message: "msg".into(),
            }),
        );
    }

    #[test]
    fn unseal_and_consumer_replica_map_or_refuse_unfit_targets() {
        check(
            ActionSpec::Unseal {},
            Some(t("openbao", Some("vault"), "openbao-1")),
            Ok(Call::Unseal {
                instance: BaoInstance::new(Some("vault"), "openbao-1"),
            }),
        );
        check(
            ActionSpec::AddConsumerReplica { max_replicas: 5 },
            Some(t("jetstream_consumer", Some("nats"), "ORDERS/billing")),
            Ok(Call::AddConsumerReplica {
                consumer: ConsumerRef::new("ORDERS", "billing"),
                max: 5,
            }),
        );
        let add = || ActionSpec::AddConsumerReplica { max_replicas: 3 };
        check(
            add(),
            Some(t("jetstream_consumer", Some("nats"), "ORDERS")),
            Err("action `add_consumer_replica` cannot act on jetstream_consumer/nats/ORDERS"),
        );
        check(
            add(),
            Some(t("jetstream_consumer", None, "a/b/c")),
            Err("action `add_consumer_replica` cannot act on jetstream_consumer/a/b/c"),
        );
        check(
            add(),
            Some(t("deployment", Some("ns"), "ORDERS/billing")),
            Err("action `add_consumer_replica` cannot act on deployment/ns/ORDERS/billing"),
        );
        check(
            ActionSpec::Unseal {},
            Some(t("pod", Some("vault"), "openbao-0")),
            Err("action `unseal` cannot act on pod/vault/openbao-0"),
        );
        check(
            ActionSpec::Unseal {},
            None,
            Err("action `unseal` has no target"),
        );
    }

    #[tokio::test]
    async fn unseal_goes_through_the_port_once() {
        let fake = Arc::new(FakeUnsealer::default().with("openbao-0", true, 3, 3).with(
            "openbao-1",
            true,
            1,
            3,
        ));
        let ex = Executors {
            unsealer: Some(fake.clone()),
            ..Executors::default()
        };
        let call = Call::Unseal {
            instance: BaoInstance::new(Some("vault"), "openbao-0"),
        };
        let dry = execute(&call, &ex, Mode::DryRun).await.expect("dry run");
        assert!(dry.changed && dry.dry_run);
        assert_eq!(
            fake.is_sealed("openbao-0"),
            Some(true),
            "a dry run submits nothing"
        );
        assert!(
            execute(&call, &ex, Mode::Apply)
                .await
                .expect("unseal")
                .changed
        );
        let again = execute(&call, &ex, Mode::Apply).await.expect("again");
        assert!(!again.changed, "{again:?}");
        assert_eq!(fake.unsealed(), ["openbao-0"]);
        let short = Call::Unseal {
            instance: BaoInstance::new(Some("vault"), "openbao-1"),
        };
        assert!(matches!(
            execute(&short, &ex, Mode::Apply).await,
            Err(ExecError::Port(PortError::Rejected { .. }))
        ));
        assert_eq!(fake.is_sealed("openbao-1"), Some(true));
        assert_eq!(
            execute(&call, &Executors::default(), Mode::Apply).await,
            Err(ExecError::NotConfigured {
                action: "unseal",
                port: "unsealer"
            })
        );
    }

    #[tokio::test]
    async fn consumer_replicas_stop_at_the_rule_and_the_stream_bound() {
        let orders = ConsumerRef::new("ORDERS", "billing");
        let small = ConsumerRef::new("SMALL", "c");
        let fake = Arc::new(
            FakeJetStream::default()
                .with(&orders, 1, 3, 5000)
                .with(&small, 1, 1, 10),
        );
        let ex = Executors {
            jetstream: Some(fake.clone()),
            ..Executors::default()
        };
        let add = |c: &ConsumerRef, max| Call::AddConsumerReplica {
            consumer: c.clone(),
            max,
        };
        let dry = execute(&add(&orders, 5), &ex, Mode::DryRun)
            .await
            .expect("dry");
        assert!(
            dry.changed && dry.detail.contains("num_pending=5000"),
            "{dry:?}"
        );
        assert_eq!(fake.replicas(&orders), Some(1));
        execute(&add(&orders, 2), &ex, Mode::Apply)
            .await
            .expect("add");
        assert_eq!(fake.replicas(&orders), Some(2));
        let at_max = execute(&add(&orders, 2), &ex, Mode::Apply)
            .await
            .expect("max");
        assert!(!at_max.changed);
        let at_stream = execute(&add(&small, 5), &ex, Mode::Apply)
            .await
            .expect("stream");
        assert!(
            !at_stream.changed && at_stream.detail.contains("stream 1"),
            "{at_stream:?}"
        );
        assert!(matches!(
            execute(&add(&ConsumerRef::new("X", "y"), 3), &ex, Mode::Apply).await,
            Err(ExecError::Port(PortError::NotFound { .. }))
        ));
        assert_eq!(
            execute(&add(&orders, 5), &Executors::default(), Mode::Apply).await,
            Err(ExecError::NotConfigured {
                action: "add_consumer_replica",
                port: "jetstream"
            })
        );
    }

    #[test]
    fn gslb_checks_and_service_failover_map_or_refuse_unfit_targets() {
        check(
            ActionSpec::CheckGslb {},
            Some(t("gslb", Some("k8gb"), "app")),
            Ok(Call::CheckGslb {
                namespace: "k8gb".into(),
                name: "app".into(),
            }),
        );
        check(
            ActionSpec::CheckGslb {},
            Some(t("gslb", None, "app")),
            Err("action `check_gslb` cannot act on gslb/app"),
        );
        check(
            ActionSpec::CheckGslb {},
            Some(t("deployment", Some("ns"), "app")),
            Err("action `check_gslb` cannot act on deployment/ns/app"),
        );
        let failover = |b: &str| ActionSpec::FailoverToBackup {
            backup: Template::new(b),
        };
        let quota = || Some(t("service", Some("bank"), "quota-service"));
        check(
            failover("quota-service-backup"),
            quota(),
            Ok(Call::FailoverToBackup {
                namespace: "bank".into(),
                service: "quota-service".into(),
                backup: "quota-service-backup".into(),
            }),
        );
        // Failing a Service over to itself, or to nothing, is a rule error.
        for bad in ["quota-service", ""] {
            check(
                failover(bad),
                quota(),
                Err("action `failover_to_backup` cannot act on service/bank/quota-service"),
            );
        }
        check(
            failover("b"),
            Some(t("service", None, "quota-service")),
            Err("action `failover_to_backup` cannot act on service/quota-service"),
        );
        check(
            ActionSpec::FailbackFromBackup {},
            quota(),
            Ok(Call::FailbackFromBackup {
                namespace: "bank".into(),
                service: "quota-service".into(),
            }),
        );
        check(
            ActionSpec::FailbackFromBackup {},
            Some(t("deployment", Some("bank"), "quota")),
            Err("action `failback_from_backup` cannot act on deployment/bank/quota"),
        );
        check(
            ActionSpec::CheckGslb {},
            None,
            Err("action `check_gslb` has no target"),
        );
    }

    #[tokio::test]
    async fn a_gslb_check_records_the_status_and_changes_nothing() {
        let status = GslbState {
            service_health: [("app.example.com".to_owned(), HostHealth::Unhealthy)]
                .into_iter()
                .collect(),
            healthy_records: BTreeMap::new(),
            geo_tag: Some("eu".into()),
        };
        let ex = Executors {
            gslb: Some(Arc::new(FakeGslb::default().with("k8gb", "app", status))),
            ..Executors::default()
        };
        let call = |name: &str| Call::CheckGslb {
            namespace: "k8gb".into(),
            name: name.into(),
        };
        for mode in [Mode::Apply, Mode::DryRun] {
            let out = execute(&call("app"), &ex, mode).await.expect("status");
            assert!(!out.changed);
            assert_eq!(out.dry_run, mode.is_dry_run());
            assert_eq!(
                out.detail,
                "Gslb k8gb/app (geoTag eu): 0 of 1 host(s) healthy; app.example.com Unhealthy -> no records"
            );
        }
        assert!(matches!(
            execute(&call("gone"), &ex, Mode::Apply).await,
            Err(ExecError::Port(PortError::NotFound { .. }))
        ));
        assert_eq!(
            execute(&call("app"), &Executors::default(), Mode::Apply).await,
            Err(ExecError::NotConfigured {
                action: "check_gslb",
                port: "gslb"
            })
        );
    }

    #[tokio::test]
    async fn failover_switches_to_a_ready_backup_once_and_failback_restores_exactly() {
        let original = selector(&[("app", "quota"), ("tier", "api")]);
        let backup_sel = selector(&[("app", "quota-backup")]);
        let fake = Arc::new(
            FakeServices::default()
                .with("bank", "quota-service", Some(original.clone()), 0)
                .with("bank", "quota-service-backup", Some(backup_sel.clone()), 2)
                .with("bank", "empty-backup", Some(selector(&[("app", "x")])), 0)
                .with("bank", "manual-backup", None, 3),
        );
        let ex = Executors {
            services: Some(fake.clone()),
            ..Executors::default()
        };
        let over = |backup: &str| Call::FailoverToBackup {
            namespace: "bank".into(),
            service: "quota-service".into(),
            backup: backup.into(),
        };
        let back = Call::FailbackFromBackup {
            namespace: "bank".into(),
            service: "quota-service".into(),
        };
        // Never to nothing: no ready endpoint, or no selector, is refused before any write.
        for bad in ["empty-backup", "manual-backup"] {
            assert!(matches!(
                execute(&over(bad), &ex, Mode::Apply).await,
                Err(ExecError::Port(PortError::Rejected { .. }))
            ));
        }
        let dry = execute(&over("quota-service-backup"), &ex, Mode::DryRun)
            .await
            .expect("dry run");
        assert!(dry.changed && dry.dry_run);
        let svc = |f: &FakeServices| f.service("bank", "quota-service").expect("exists");
        assert_eq!(svc(&fake).selector.as_ref(), Some(&original));

        let done = execute(&over("quota-service-backup"), &ex, Mode::Apply)
            .await
            .expect("failover");
        assert_eq!(
            (done.before.as_deref(), done.after.as_deref()),
            (
                Some("selector=app=quota,tier=api"),
                Some("selector=app=quota-backup")
            )
        );
        let again = execute(&over("quota-service-backup"), &ex, Mode::Apply)
            .await
            .expect("again");
        assert!(!again.changed, "{again:?}");
        assert_eq!(svc(&fake).saved.as_ref(), Some(&original));

        let restored = execute(&back, &ex, Mode::Apply).await.expect("failback");
        assert!(restored.changed);
        assert_eq!(svc(&fake).selector.as_ref(), Some(&original));
        assert_eq!(svc(&fake).saved, None);
        assert!(
            !execute(&back, &ex, Mode::Apply)
                .await
                .expect("nothing to undo")
                .changed
        );
        assert_eq!(
            fake.writes(),
            [
                "failover bank/quota-service -> quota-service-backup",
                "failback bank/quota-service"
            ]
        );
        assert_eq!(
            execute(&back, &Executors::default(), Mode::Apply).await,
            Err(ExecError::NotConfigured {
                action: "failback_from_backup",
                port: "services"
            })
        );
    }

    /// The `Act` entry the engine would plan for built-in rule `rule_name` on `target`.
    fn act_entry(rule_name: &str, alertname: &str, target: Target) -> PlanEntry {
        let rules = RuleSet::builtin().expect("builtin rules");
        let rule = rules
            .rules()
            .iter()
            .find(|r| r.name == rule_name)
            .expect("rule");
        PlanEntry {
            fingerprint: format!("fp-{alertname}"),
            alertname: alertname.into(),
            status: crate::payload::AlertStatus::Firing,
            rule: Some(rule.name.clone()),
            target: Some(target),
            verdict: Verdict::Act {
                action: rule.action.clone(),
                verify: None,
                rollback: rule.rollback.clone(),
                escalate_to: "sre-oncall".into(),
                budget_warning_pct: None,
                trial: false,
            },
        }
    }

    #[test]
    fn the_quota_failover_rule_rolls_back_by_failing_back() {
        let entry = act_entry(
            "open-banking/quota-service-down",
            "QuotaServiceDown",
            t("service", Some("bank"), "quota-service"),
        );
        assert_eq!(
            planned_call(&entry).expect("act").call,
            Ok(Call::FailoverToBackup {
                namespace: "bank".into(),
                service: "quota-service".into(),
                backup: "quota-service-backup".into(),
            })
        );
        let back = rollback_call(&entry).expect("the rule has a rollback");
        assert_eq!(back.action, "failback_from_backup");
        assert_eq!(
            back.call,
            Ok(Call::FailbackFromBackup {
                namespace: "bank".into(),
                service: "quota-service".into(),
            })
        );
    }

    #[test]
    fn unsupported_kinds_and_unfit_targets_are_typed_refusals() {
        let dep = || Some(t("deployment", Some("ns"), "api"));
        // Targets that do not fit the action are config errors, not guesses.
        check(
            ActionSpec::RebuildIndex {},
            dep(),
            Err("action `rebuild_index` cannot act on deployment/ns/api"),
        );
        check(
            ActionSpec::RetryWithBackoff { max_attempts: 3 },
            dep(),
            Err("action `retry_with_backoff` cannot act on deployment/ns/api"),
        );
        check(
            ActionSpec::Rollback {},
            Some(t("stateful_set", Some("ns"), "kc")),
            Err("action `rollback` cannot act on stateful_set/ns/kc"),
        );
        check(
            ActionSpec::DeletePod {},
            dep(),
            Err("action `delete_pod` cannot act on deployment/ns/api"),
        );
        check(
            ActionSpec::ScaleUp {
                step: 1,
                max_replicas: 2,
                cost_per_replica_cents: 0,
            },
            Some(t("pod", Some("ns"), "p")),
            Err("action `scale_up` cannot act on pod/ns/p"),
        );
        check(
            ActionSpec::RenewCertificate {},
            Some(t("certificate", None, "c")),
            Err("action `renew_certificate` cannot act on certificate/c"),
        );
        check(
            ActionSpec::Rollback {},
            None,
            Err("action `rollback` has no target"),
        );
    }

    #[test]
    fn milvus_rebuilds_and_webhook_redeliveries_map_or_refuse_unfit_targets() {
        check(
            ActionSpec::RebuildIndex {},
            Some(t("milvus_collection", Some("ai-hub"), "docs")),
            Ok(Call::RebuildIndex {
                collection: CollectionRef::new(Some("ai-hub"), "docs"),
            }),
        );
        check(
            ActionSpec::RebuildIndex {},
            Some(t("milvus_collection", None, "")),
            Err("action `rebuild_index` cannot act on milvus_collection/"),
        );
        check(
            ActionSpec::RetryWithBackoff { max_attempts: 5 },
            Some(t("webhook", Some("bank"), "stripe")),
            Ok(Call::Redeliver {
                webhook: WebhookRef::new(Some("bank"), "stripe"),
                max_attempts: 5,
            }),
        );
        check(
            ActionSpec::RetryWithBackoff { max_attempts: 5 },
            Some(t("service", Some("bank"), "stripe")),
            Err("action `retry_with_backoff` cannot act on service/bank/stripe"),
        );
        check(
            ActionSpec::RebuildIndex {},
            None,
            Err("action `rebuild_index` has no target"),
        );
    }

    fn hnsw(name: &str, params: &[(&str, u32)]) -> IndexSpec {
        IndexSpec {
            field_name: "embedding".into(),
            index_name: name.into(),
            index_type: "HNSW".into(),
            metric_type: "COSINE".into(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::json!(v)))
                .collect(),
        }
    }

    #[tokio::test]
    async fn a_rebuild_drops_and_recreates_vector_indexes_with_their_spec_only() {
        let scalar = IndexSpec {
            field_name: "tenant".into(),
            index_name: "tenant_idx".into(),
            index_type: "INVERTED".into(),
            metric_type: String::new(),
            params: BTreeMap::new(),
        };
        let vec_idx = hnsw("vec_idx", &[("M", 16), ("efConstruction", 200)]);
        let fake = Arc::new(
            FakeVectorIndexes::default()
                .with("docs", vec![scalar.clone(), vec_idx.clone()])
                .with("bare", vec![hnsw("v", &[])])
                .with("scalars", vec![scalar.clone()]),
        );
        let ex = Executors {
            vector_indexes: Some(fake.clone()),
            ..Executors::default()
        };
        let call = |name: &str| Call::RebuildIndex {
            collection: CollectionRef::new(Some("ai-hub"), name),
        };
        let dry = execute(&call("docs"), &ex, Mode::DryRun)
            .await
            .expect("dry");
        assert!(dry.changed && dry.dry_run && fake.writes().is_empty());
        let out = execute(&call("docs"), &ex, Mode::Apply)
            .await
            .expect("rebuilt");
        assert_eq!(
            out.before.as_deref(),
            Some(
                r#"[{"fieldName":"embedding","indexName":"vec_idx","indexType":"HNSW","metricType":"COSINE","params":{"M":16,"efConstruction":200}}]"#
            ),
            "the spec a human needs to recreate the index"
        );
        assert_eq!(
            fake.writes(),
            [
                "release docs",
                "drop docs/vec_idx",
                "create docs/vec_idx",
                "load docs"
            ]
        );
        let after = fake.collection("docs").expect("exists");
        assert!(after.loaded);
        assert_eq!(after.indexes, [scalar, vec_idx]);
        // An HNSW index whose build parameters are unknown, or no vector index at all:
        // refused before anything is released.
        assert!(matches!(
            execute(&call("bare"), &ex, Mode::Apply).await,
            Err(ExecError::Port(PortError::Rejected { message, .. })) if message.contains("build parameters")
        ));
        assert!(matches!(
            execute(&call("scalars"), &ex, Mode::Apply).await,
            Err(ExecError::Port(PortError::NotFound { .. }))
        ));
        assert_eq!(fake.writes().len(), 4);
        assert_eq!(
            execute(&call("docs"), &Executors::default(), Mode::Apply).await,
            Err(ExecError::NotConfigured {
                action: "rebuild_index",
                port: "vector_indexes"
            })
        );
    }

    #[tokio::test]
    async fn a_redelivery_goes_through_the_retry_loop_or_is_not_configured() {
        use crate::retry::Redelivery;
        use crate::testing::FakeRedelivery;
        use sre_core::guard::{Backoff, Jitter};
        struct NoSleep;
        #[async_trait::async_trait]
        impl crate::verify::Sleeper for NoSleep {
            async fn sleep(&self, _: std::time::Duration) {}
        }
        let fake = Arc::new(FakeRedelivery::default().failing_first(
            2,
            PortError::Unavailable {
                backend: "app",
                message: "HTTP 502".into(),
            },
        ));
        let ex = Executors {
            redelivery: Some(Redelivery {
                port: fake.clone(),
                backoff: Backoff::new(
                    std::time::Duration::from_secs(1),
                    std::num::NonZeroU32::MIN.saturating_add(1),
                    std::time::Duration::from_mins(1),
                    Jitter::None,
                ),
                sleeper: Arc::new(NoSleep),
            }),
            ..Executors::default()
        };
        let call = Call::Redeliver {
            webhook: WebhookRef::new(Some("bank"), "stripe"),
            max_attempts: 5,
        };
        let out = execute(&call, &ex, Mode::Apply)
            .await
            .expect("third attempt");
        assert_eq!(out.after.as_deref(), Some("attempts=3"));
        assert_eq!(fake.requests(), 3);
        assert_eq!(
            execute(&call, &Executors::default(), Mode::Apply).await,
            Err(ExecError::NotConfigured {
                action: "retry_with_backoff",
                port: "redelivery"
            })
        );
    }

    #[test]
    fn every_builtin_rule_maps_to_a_call() {
        let rules = RuleSet::builtin().expect("builtin rules");
        for rule in rules.rules() {
            let labels = |name: &str| -> Option<String> { Some(format!("{name}-v")) };
            // The name as the rule's template renders it (`stream/consumer` stays two parts).
            let name = rule
                .target
                .name
                .as_str()
                .split('/')
                .map(|_| "n")
                .collect::<Vec<_>>()
                .join("/");
            let target = Target {
                kind: rule.target.kind.clone(),
                namespace: rule.target.namespace.as_ref().and_then(|_| labels("ns")),
                name,
            };
            if let Err(e) = call_for(&rule.action, Some(&target), "m") {
                panic!("{}: {e}", rule.name);
            }
        }
    }

    #[test]
    fn a_scale_up_rolls_back_by_scaling_down_the_same_target() {
        let entry = act_entry(
            "control-plane/high-memory",
            "HighMemoryUsage",
            t("deployment", Some("ns"), "api"),
        );
        let up = planned_call(&entry).expect("act");
        assert_eq!(up.action, "scale_up");
        let back = rollback_call(&entry).expect("the rule has a rollback");
        assert_eq!(back.action, "scale_down");
        assert_eq!(
            back.call,
            Ok(Call::Scale {
                target: w(WorkloadKind::Deployment, "api"),
                step: Step::Down { by: 1, min: 1 },
            })
        );
        let mut no_rollback = entry.clone();
        if let Verdict::Act { rollback, .. } = &mut no_rollback.verdict {
            *rollback = None;
        }
        assert_eq!(rollback_call(&no_rollback), None);
        let skipped = PlanEntry {
            verdict: Verdict::Unmatched,
            ..entry
        };
        assert_eq!(planned_call(&skipped), None);
        assert_eq!(rollback_call(&skipped), None);
    }

    #[test]
    fn steps_stop_at_their_bounds() {
        let up = Step::Up { by: 2, max: 5 };
        assert_eq!(up.next(1), Some(3));
        assert_eq!(up.next(4), Some(5));
        assert_eq!(up.next(5), None);
        assert_eq!(up.next(7), None);
        let down = Step::Down { by: 2, min: 1 };
        assert_eq!(down.next(4), Some(2));
        assert_eq!(down.next(2), Some(1));
        assert_eq!(down.next(1), None);
    }

    fn ports(w: FakeWorkloads) -> (Arc<FakeWorkloads>, Executors) {
        let w = Arc::new(w);
        let ex = Executors {
            workloads: Some(w.clone()),
            ..Executors::default()
        };
        (w, ex)
    }

    #[tokio::test]
    async fn scale_steps_up_once_and_then_reports_the_bound() {
        let api = w(WorkloadKind::Deployment, "api");
        let (fake, ex) = ports(FakeWorkloads::new().with_replicas(&api, 4));
        let call = Call::Scale {
            target: api.clone(),
            step: Step::Up { by: 2, max: 5 },
        };

        let dry = execute(&call, &ex, Mode::DryRun).await.expect("dry run");
        assert!(dry.changed && dry.dry_run);
        assert_eq!(fake.replicas(&api), Some(4), "a dry run persists nothing");

        let first = execute(&call, &ex, Mode::Apply).await.expect("scale");
        assert_eq!(
            (first.before.as_deref(), first.after.as_deref()),
            (Some("replicas=4"), Some("replicas=5"))
        );
        let second = execute(&call, &ex, Mode::Apply).await.expect("at bound");
        assert!(!second.changed);
        assert!(
            second.detail.contains("already at 5 replicas"),
            "{}",
            second.detail
        );
        assert_eq!(fake.writes(), ["scale Deployment ns/api 5"]);
    }

    #[tokio::test]
    async fn port_errors_and_missing_ports_surface_typed() {
        let api = w(WorkloadKind::Deployment, "api");
        let (_, ex) = ports(FakeWorkloads::new());
        let call = Call::Rollback {
            target: api.clone(),
        };
        assert!(matches!(
            execute(&call, &ex, Mode::Apply).await,
            Err(ExecError::Port(PortError::NotFound { .. }))
        ));
        let none = Executors::default();
        assert_eq!(
            execute(&call, &none, Mode::Apply).await,
            Err(ExecError::NotConfigured {
                action: "rollback",
                port: "workloads"
            })
        );
        let forbidden = PortError::Rejected {
            backend: "kubernetes",
            message: "forbidden".into(),
        };
        let (_, ex) = ports(
            FakeWorkloads::new()
                .with_replicas(&api, 1)
                .failing(&api, forbidden.clone()),
        );
        let scale = Call::Scale {
            target: api,
            step: Step::Up { by: 1, max: 3 },
        };
        assert_eq!(
            execute(&scale, &ex, Mode::Apply).await,
            Err(ExecError::Port(forbidden))
        );
    }

    #[tokio::test]
    async fn rollback_restart_evict_and_batch_size_go_through_the_port() {
        let api = w(WorkloadKind::Deployment, "api");
        let llm = w(WorkloadKind::InferenceService, "llama");
        let low = |name: &str, priority| FakePod {
            namespace: "jobs".into(),
            name: name.into(),
            node: "gpu-1".into(),
            priority,
        };
        let (fake, ex) = ports(
            FakeWorkloads::new()
                .with_revisions(&api, &["v1", "v2"])
                .with_max_num_seqs(&llm, 256)
                .with_pod(low("batch", 10))
                .with_pod(low("serving", 2000)),
        );
        let rb = execute(
            &Call::Rollback {
                target: api.clone(),
            },
            &ex,
            Mode::Apply,
        )
        .await
        .expect("rollback");
        assert_eq!(
            (rb.before.as_deref(), rb.after.as_deref()),
            (Some("v2"), Some("v1"))
        );
        assert_eq!(fake.live_template(&api).as_deref(), Some("v1"));

        execute(
            &Call::Restart {
                target: api.clone(),
            },
            &ex,
            Mode::Apply,
        )
        .await
        .expect("restart");

        let evict = Call::Evict {
            scope: EvictScope::Node("gpu-1".into()),
            below_priority: 1000,
        };
        let out = execute(&evict, &ex, Mode::Apply).await.expect("evict");
        assert!(
            out.detail.contains("jobs/batch") && !out.detail.contains("serving"),
            "{}",
            out.detail
        );
        let again = execute(&evict, &ex, Mode::Apply)
            .await
            .expect("evict again");
        assert!(!again.changed);
        assert_eq!(fake.pods(), [low("serving", 2000)]);

        let reduce = Call::ReduceMaxNumSeqs {
            target: llm.clone(),
            percent: 50,
        };
        execute(&reduce, &ex, Mode::Apply).await.expect("reduce");
        assert_eq!(fake.max_num_seqs_of(&llm), Some(128));
        let unknown = Call::ReduceMaxNumSeqs {
            target: api.clone(),
            percent: 50,
        };
        assert_eq!(
            execute(&unknown, &ex, Mode::Apply).await,
            Err(ExecError::NoBatchSize("Deployment ns/api".into()))
        );
        assert_eq!(
            fake.writes(),
            [
                "rollback Deployment ns/api to v1",
                "restart Deployment ns/api",
                "evict jobs/batch",
                "max-num-seqs InferenceService ns/llama 128",
            ]
        );
    }

    #[tokio::test]
    async fn renew_is_idempotent_and_notify_records() {
        let certs = Arc::new(FakeCerts::default().with("ns", "web", false));
        let notifier = Arc::new(FakeNotifier::default());
        let ex = Executors {
            certificates: Some(certs.clone()),
            notifier: Some(notifier.clone()),
            ..Executors::default()
        };
        let renew = Call::RenewCertificate {
            namespace: "ns".into(),
            name: "web".into(),
        };
        assert!(
            execute(&renew, &ex, Mode::Apply)
                .await
                .expect("renew")
                .changed
        );
        assert!(
            !execute(&renew, &ex, Mode::Apply)
                .await
                .expect("renew")
                .changed
        );
        assert_eq!(certs.is_issuing("ns", "web"), Some(true));
        let note = Call::Notify {
            channel: "ai-hub".into(),
            message: "m".into(),
        };
        execute(&note, &ex, Mode::DryRun).await.expect("dry");
        execute(&note, &ex, Mode::Apply).await.expect("notify");
        assert_eq!(notifier.sent(), [("ai-hub".to_owned(), "m".to_owned())]);
    }

    #[tokio::test]
    async fn a_dispatch_rule_sends_the_alerts_labels_as_inputs() {
        use crate::payload::Labels;
        use crate::testing::FakeWorkflows;
        let rules = RuleSet::load(&sre_core::config::Source::Text {
            name: "t.yaml".into(),
            text: "rules:\n- {name: gitops, alert: QuotaServiceDown, action: {kind: dispatch_workflow, \
                   repo: 'acme/${service}-ops', workflow: failover.yml, ref: main}, \
                   target: {kind: service, name: '${service}'}}\n"
                .into(),
            format: sre_core::config::Format::Yaml,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let labels: Labels = [("alertname", "QuotaServiceDown"), ("service", "quota")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let resolved = rules.rules()[0].resolve(&labels).expect("labels present");
        let call = call_for(&resolved.action, Some(&resolved.target), "m").expect("a call");
        assert_eq!(
            call,
            Call::DispatchWorkflow {
                owner: "acme".into(),
                repo: "quota-ops".into(),
                workflow: "failover.yml".into(),
                git_ref: "main".into(),
                inputs: labels.clone(),
            }
        );
        let fake = Arc::new(FakeWorkflows::default());
        let ex = Executors {
            workflows: Some(fake.clone()),
            ..Executors::default()
        };
        let dry = execute(&call, &ex, Mode::DryRun).await.expect("dry run");
        assert!(dry.dry_run && fake.started().is_empty());
        execute(&call, &ex, Mode::Apply).await.expect("dispatched");
        assert_eq!(fake.started()[0].inputs, labels);
        assert!(matches!(
            execute(&call, &Executors::default(), Mode::Apply).await,
            Err(ExecError::NotConfigured {
                port: "workflows",
                ..
            })
        ));
        let bad = RuleSet::load(&sre_core::config::Source::Text {
            name: "t.yaml".into(),
            text: "rules:\n- {name: g, alert: A, action: {kind: dispatch_workflow, repo: nope, \
                   workflow: w.yml, ref: main, inputs: {a: b}}, target: {kind: service, name: x}}\n"
                .into(),
            format: sre_core::config::Format::Yaml,
        })
        .expect_err("inputs are not a rule parameter");
        assert!(bad.to_string().contains("inputs"), "{bad}");
    }
}
