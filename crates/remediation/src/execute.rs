//! From a plan to port calls: [`plan_to_calls`] is the pure mapping of each planned action
//! (rule action kind, its parameters and the target) to one [`Call`]; [`execute`] carries
//! one call out through the [`Executors`] it is given.
//!
//! Action kinds that have no executor yet map to [`ExecError::NotSupported`]: the run
//! record then says so, instead of reporting an action as done that nobody carried out.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use sre_core::PortError;
use thiserror::Error;

use crate::actions::{
    ActionOutcome, Certificates, EvictScope, Mode, Notifier, WorkflowDispatch, WorkloadKind,
    WorkloadRef, Workloads,
};
use crate::plan::{PlanEntry, Verdict};
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
/// [`ExecError::NotSupported`] for kinds without an executor, [`ExecError::WrongTarget`] or
/// [`ExecError::MissingTarget`] when the rule's target does not fit the action.
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
        other => return Err(ExecError::NotSupported(other.kind().to_owned())),
    })
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
}

impl std::fmt::Debug for Executors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executors")
            .field("workloads", &self.workloads.is_some())
            .field("certificates", &self.certificates.is_some())
            .field("notifier", &self.notifier.is_some())
            .field("workflows", &self.workflows.is_some())
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

/// Carries one call out.
///
/// # Errors
/// [`ExecError::NotConfigured`] when the needed port is absent, [`ExecError::NoBatchSize`]
/// when a batch size to reduce is not set, and the port's own errors.
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
            let current = w
                .max_num_seqs(target)
                .await?
                .ok_or_else(|| ExecError::NoBatchSize(target.to_string()))?;
            let reduced = u32::try_from(u64::from(current) * u64::from(*percent) / 100)
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{RuleSet, Template};
    use crate::testing::{FakeCerts, FakeNotifier, FakePod, FakeWorkloads};

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
    fn unsupported_kinds_and_unfit_targets_are_typed_refusals() {
        let dep = || Some(t("deployment", Some("ns"), "api"));
        // Kinds without an executor say so.
        for a in [
            ActionSpec::Unseal {},
            ActionSpec::CheckGslb {},
            ActionSpec::AddConsumerReplica { max_replicas: 5 },
            ActionSpec::RebuildIndex {},
            ActionSpec::FailoverToBackup {
                backup: Template::new("b"),
            },
            ActionSpec::RetryWithBackoff { max_attempts: 3 },
        ] {
            let kind = a.kind();
            check(
                a,
                dep(),
                Err(&format!(
                    "no executor for action `{kind}` yet: nothing was done"
                )),
            );
        }
        // Targets that do not fit the action are config errors, not guesses.
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
    fn every_builtin_rule_maps_to_a_call_or_not_supported() {
        let rules = RuleSet::builtin().expect("builtin rules");
        let mut unsupported = Vec::new();
        for rule in rules.rules() {
            let labels = |name: &str| -> Option<String> { Some(format!("{name}-v")) };
            let target = Target {
                kind: rule.target.kind.clone(),
                namespace: rule.target.namespace.as_ref().and_then(|_| labels("ns")),
                name: "n".into(),
            };
            match call_for(&rule.action, Some(&target), "m") {
                Ok(_) => {}
                Err(ExecError::NotSupported(k)) => unsupported.push(k),
                Err(e) => panic!("{}: {e}", rule.name),
            }
        }
        unsupported.sort();
        unsupported.dedup();
        assert_eq!(
            unsupported,
            [
                "add_consumer_replica",
                "check_gslb",
                "failover_to_backup",
                "rebuild_index",
                "retry_with_backoff",
                "unseal"
            ]
        );
    }

    #[test]
    fn a_scale_up_rolls_back_by_scaling_down_the_same_target() {
        let rules = RuleSet::builtin().expect("builtin rules");
        let rule = rules
            .rules()
            .iter()
            .find(|r| r.name == "control-plane/high-memory")
            .expect("rule");
        let entry = PlanEntry {
            fingerprint: "f1".into(),
            alertname: "HighMemoryUsage".into(),
            status: crate::payload::AlertStatus::Firing,
            rule: Some(rule.name.clone()),
            target: Some(t("deployment", Some("ns"), "api")),
            verdict: Verdict::Act {
                action: rule.action.clone(),
                verify: None,
                rollback: rule.rollback.clone(),
                escalate_to: "sre-oncall".into(),
                budget_warning_pct: None,
                trial: false,
            },
        };
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
        let no_rollback = PlanEntry {
            verdict: Verdict::Act {
                action: rule.action.clone(),
                verify: None,
                rollback: None,
                escalate_to: "sre-oncall".into(),
                budget_warning_pct: None,
                trial: false,
            },
            ..entry.clone()
        };
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
