//! Remediation actions on Kubernetes workloads: the [`Workloads`] and [`Certificates`]
//! ports of `sre-remediation`, over kube-rs.
//!
//! Every write goes out with `fieldManager=sre-remediation`; a [`Mode::DryRun`] call sends
//! the same write with `?dryRun=All`, so the API server validates and admits it (webhooks
//! included) and persists nothing. State-like intents (replicas, `--max-num-seqs`, a
//! certificate being issued) are read first and not written when they already hold.
//! Read-modify-write calls carry the `metadata.resourceVersion` they read, so a concurrent
//! writer turns ours into a 409 (`PreconditionFailed`) instead of being overwritten.
//!
//! What each call sends, as the Kubernetes tools do it:
//! - **scale**: `PATCH apps/v1 {deployments,statefulsets}/{name}/scale` (merge patch
//!   `{"spec":{"replicas":n}}`), after `GET .../scale`; an `InferenceService`
//!   (`serving.kserve.io/v1beta1`) gets `spec.predictor.minReplicas` (and `maxReplicas`
//!   when it would fall below), absent `minReplicas` reads as KServe's default of 1.
//! - **restart**: `kubectl rollout restart`'s template annotation
//!   `kubectl.kubernetes.io/restartedAt` (RFC 3339, from the injected clock), merge patch;
//!   a bare pod is deleted (its controller recreates it).
//! - **rollback**: `kubectl rollout undo`: the Deployment's `ReplicaSets` (its selector, owned
//!   by its uid), the one with the highest `deployment.kubernetes.io/revision` below the
//!   Deployment's own; its pod template without the `pod-template-hash` label replaces the
//!   Deployment's (`PUT`, with the read `resourceVersion`). A template that already equals
//!   it is left alone; a paused Deployment is refused as kubectl does.
//! - **evict**: `POST pods/{name}/eviction` (`policy/v1` `Eviction`), so `PodDisruptionBudgets`
//!   hold, for every pod in scope with `spec.priority` (the resolved `PriorityClass` value)
//!   below the threshold. Like `kubectl drain`, `DaemonSet` pods, mirror (static) pods and
//!   finished or terminating pods are skipped. A 429 (a PDB forbids it now) is recorded and
//!   the other pods are still evicted; when all are blocked the call is `Unavailable`.
//! - **vLLM batch size**: the `--max-num-seqs` *argument* (vLLM reads engine settings from
//!   its command line; no environment variable sets it), in `spec.predictor.model.args` or
//!   `spec.predictor.containers[].args` of an `InferenceService`, or the containers' args of
//!   a Deployment's template. The containers list is sent whole with the read
//!   `resourceVersion`, because a merge patch replaces lists.
//! - **certificate renewal**: what `cmctl renew` does: the `Issuing` condition set to
//!   `True` (reason `ManuallyTriggered`) on the Certificate's `status` subresource (`PUT`,
//!   with the read `resourceVersion`); cert-manager's issuing controller then re-issues.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::SecondsFormat;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use sre_core::{Clock, PortError};
use sre_remediation::actions::{
    ActionOutcome, Certificates, EvictScope, Mode, WorkloadKind, WorkloadRef, Workloads,
};

use crate::error::port_error;

/// The field manager of every remediation write (visible in `managedFields`).
pub const REMEDIATION_FIELD_MANAGER: &str = "sre-remediation";
/// `kubectl rollout restart`'s pod template annotation.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// The Deployment controller's revision annotation (Deployments and their `ReplicaSets`).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// vLLM's maximum number of sequences per batch.
pub const MAX_NUM_SEQS_ARG: &str = "--max-num-seqs";

/// [`Workloads`] and [`Certificates`] over one cluster's API server.
#[derive(Clone)]
pub struct KubeWorkloads {
    client: Client,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for KubeWorkloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeWorkloads").finish_non_exhaustive()
    }
}

fn isvc_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("serving.kserve.io", "v1beta1", "InferenceService"),
        "inferenceservices",
    )
}

fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    )
}

pub(crate) fn patch_params(mode: Mode) -> PatchParams {
    PatchParams {
        dry_run: mode.is_dry_run(),
        field_manager: Some(REMEDIATION_FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

fn post_params(mode: Mode) -> PostParams {
    PostParams {
        dry_run: mode.is_dry_run(),
        field_manager: Some(REMEDIATION_FIELD_MANAGER.into()),
    }
}

fn invalid(target: &WorkloadRef, what: &str) -> PortError {
    PortError::Invalid(format!("{target}: {what}"))
}

pub(crate) fn malformed(what: &str, message: impl Into<String>) -> PortError {
    PortError::Malformed {
        backend: crate::error::BACKEND,
        what: what.into(),
        message: message.into(),
    }
}

/// `minReplicas` of an `InferenceService`'s predictor; KServe defaults it to 1.
fn isvc_min_replicas(obj: &DynamicObject, what: &str) -> Result<u32, PortError> {
    match obj.data.pointer("/spec/predictor/minReplicas") {
        None | Some(Value::Null) => Ok(1),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| malformed(what, format!("minReplicas is {v}"))),
    }
}

/// The value of `--max-num-seqs` in one argument list (`--max-num-seqs=N` or
/// `--max-num-seqs N`), with the index of the argument that holds it.
fn find_max_num_seqs(args: &[Value]) -> Option<(usize, Option<u32>)> {
    let prefix = format!("{MAX_NUM_SEQS_ARG}=");
    args.iter().enumerate().find_map(|(i, a)| {
        let a = a.as_str()?;
        if let Some(v) = a.strip_prefix(&prefix) {
            Some((i, v.parse().ok()))
        } else if a == MAX_NUM_SEQS_ARG {
            let v = args.get(i + 1).and_then(Value::as_str);
            Some((i, v.and_then(|v| v.parse().ok())))
        } else {
            None
        }
    })
}

/// Sets `--max-num-seqs=value` in `args`, replacing either spelling or appending it.
fn set_max_num_seqs_arg(args: &mut Vec<Value>, value: u32) {
    let new = Value::String(format!("{MAX_NUM_SEQS_ARG}={value}"));
    match find_max_num_seqs(args) {
        Some((i, _)) => {
            let separate = args.get(i).and_then(Value::as_str) == Some(MAX_NUM_SEQS_ARG);
            args[i] = new;
            if separate && i + 1 < args.len() {
                args.remove(i + 1);
            }
        }
        None => args.push(new),
    }
}

/// Where a workload keeps its serving containers' args, as JSON pointers.
#[derive(Debug)]
struct BatchLocation {
    /// Pointer to the args list holding (or to receive) `--max-num-seqs`.
    args: String,
    /// The top-level field sent back whole (`/spec/predictor/model` or a containers list).
    send: String,
    /// Its current value.
    current: Option<u32>,
}

fn locate_batch(kind: WorkloadKind, data: &Value, what: &str) -> Result<BatchLocation, PortError> {
    let (model, containers) = match kind {
        WorkloadKind::InferenceService => {
            (Some("/spec/predictor/model"), "/spec/predictor/containers")
        }
        WorkloadKind::Deployment => (None, "/spec/template/spec/containers"),
        _ => return Err(PortError::Invalid(format!("{what}: no vLLM container"))),
    };
    let args_of = |p: &str| {
        data.pointer(&format!("{p}/args"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut candidates: Vec<String> = Vec::new();
    if let Some(m) = model
        && data.pointer(m).is_some()
    {
        candidates.push(m.to_owned());
    }
    let n = data
        .pointer(containers)
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    candidates.extend((0..n).map(|i| format!("{containers}/{i}")));
    let Some(first) = candidates.first().cloned() else {
        return Err(malformed(what, "no model and no containers"));
    };
    let found = candidates
        .iter()
        .find_map(|c| find_max_num_seqs(&args_of(c)).map(|(_, v)| (c.clone(), v)));
    let (at, current) = match found {
        Some((c, Some(v))) => (c, Some(v)),
        Some((c, None)) => {
            return Err(malformed(
                what,
                format!("{MAX_NUM_SEQS_ARG} in {c}/args is not a number"),
            ));
        }
        None => (first, None),
    };
    let send = if model.is_some_and(|m| at == m) {
        at.clone()
    } else {
        containers.to_owned()
    };
    Ok(BatchLocation {
        args: format!("{at}/args"),
        send,
        current,
    })
}

/// Builds a merge-patch body that sets `value` at JSON `pointer`.
fn body_at(pointer: &str, value: Value) -> Value {
    pointer
        .split('/')
        .filter(|s| !s.is_empty())
        .rev()
        .fold(value, |inner, key| json!({ key: inner }))
}

fn controller_uid(rs: &ReplicaSet) -> Option<&str> {
    rs.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

fn revision_of(meta: &BTreeMap<String, String>) -> Option<u64> {
    meta.get(REVISION_ANNOTATION)?.parse().ok()
}

impl KubeWorkloads {
    /// Builds the executor on `client`; `clock` stamps restarts and condition times, so
    /// tests assert exact bodies.
    #[must_use]
    pub fn new(client: Client, clock: Arc<dyn Clock>) -> Self {
        Self { client, clock }
    }

    /// The API client, shared with the other remediation ports (`Gslb` reads, Service
    /// failover) implemented on this type in sibling modules.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    fn now(&self) -> String {
        self.clock.wall().to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn isvc(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &isvc_resource())
    }

    async fn scale_subresource<K>(
        &self,
        api: Api<K>,
        target: &WorkloadRef,
        replicas: u32,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let what = target.to_string();
        let scale = api
            .get_scale(&target.name)
            .await
            .map_err(|e| port_error(e, &what))?;
        let current = scale_replicas(&scale, &what)?;
        if current == replicas {
            return Ok(ActionOutcome::unchanged(
                mode,
                format!("replicas={current}"),
                format!("{what} already at {current} replicas: nothing to do"),
            ));
        }
        let body = json!({"spec": {"replicas": replicas}});
        let after = api
            .patch_scale(&target.name, &patch_params(mode), &Patch::Merge(&body))
            .await
            .map_err(|e| port_error(e, &what))?;
        let after = scale_replicas(&after, &what)?;
        tracing::info!(target = %what, from = current, to = after, dry_run = mode.is_dry_run(), "scaled");
        Ok(ActionOutcome::changed(
            mode,
            Some(format!("replicas={current}")),
            Some(format!("replicas={after}")),
            format!("scaled {what} from {current} to {after} replicas"),
        ))
    }

    async fn rollout_restart<K>(
        &self,
        api: Api<K>,
        target: &WorkloadRef,
        template_annotations: impl Fn(&K) -> Option<String>,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let what = target.to_string();
        let obj = api
            .get(&target.name)
            .await
            .map_err(|e| port_error(e, &what))?;
        let before = template_annotations(&obj);
        let now = self.now();
        let body = json!({"spec": {"template": {"metadata": {"annotations": {
            RESTARTED_AT_ANNOTATION: now,
        }}}}});
        api.patch(&target.name, &patch_params(mode), &Patch::Merge(&body))
            .await
            .map_err(|e| port_error(e, &what))?;
        tracing::info!(target = %what, dry_run = mode.is_dry_run(), "rollout restart");
        Ok(ActionOutcome::changed(
            mode,
            Some(format!(
                "restartedAt={}",
                before.as_deref().unwrap_or("never")
            )),
            Some(format!("restartedAt={now}")),
            format!("rollout restart of {what}"),
        ))
    }

    async fn delete_pod(
        &self,
        target: &WorkloadRef,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let what = target.to_string();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &target.namespace);
        let pod = api
            .get(&target.name)
            .await
            .map_err(|e| port_error(e, &what))?;
        let dp = DeleteParams {
            dry_run: mode.is_dry_run(),
            ..DeleteParams::default()
        };
        api.delete(&target.name, &dp)
            .await
            .map_err(|e| port_error(e, &what))?;
        tracing::info!(target = %what, dry_run = mode.is_dry_run(), "pod deleted");
        Ok(ActionOutcome::changed(
            mode,
            Some(format!("uid={}", pod.uid().unwrap_or_default())),
            Some("deleted".into()),
            format!("deleted {what} for its controller to recreate"),
        ))
    }

    async fn read_batch(
        &self,
        target: &WorkloadRef,
    ) -> Result<(Api<DynamicObject>, DynamicObject, BatchLocation), PortError> {
        let what = target.to_string();
        let api = match target.kind {
            WorkloadKind::InferenceService => self.isvc(&target.namespace),
            WorkloadKind::Deployment => Api::namespaced_with(
                self.client.clone(),
                &target.namespace,
                &ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk("apps", "v1", "Deployment"),
                    "deployments",
                ),
            ),
            _ => return Err(invalid(target, "no vLLM container")),
        };
        let obj = api
            .get(&target.name)
            .await
            .map_err(|e| port_error(e, &what))?;
        let loc = locate_batch(target.kind, &obj.data, &what)?;
        Ok((api, obj, loc))
    }
}

fn scale_replicas(
    scale: &k8s_openapi::api::autoscaling::v1::Scale,
    what: &str,
) -> Result<u32, PortError> {
    // The Scale spec omits a zero `replicas` (Go `omitempty`).
    let n = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    u32::try_from(n).map_err(|_| malformed(what, format!("replicas is {n}")))
}

/// Whether `kubectl drain` would leave this pod alone, or it is already going away.
fn skip_eviction(pod: &Pod) -> bool {
    let daemon = pod
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|o| o.iter().any(|r| r.kind == "DaemonSet"));
    let mirror = pod
        .annotations()
        .contains_key("kubernetes.io/config.mirror");
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    daemon || mirror || finished || pod.metadata.deletion_timestamp.is_some()
}

#[async_trait]
impl Workloads for KubeWorkloads {
    #[tracing::instrument(skip_all, fields(target = %target))]
    async fn current_replicas(&self, target: &WorkloadRef) -> Result<u32, PortError> {
        let what = target.to_string();
        let scale = match target.kind {
            WorkloadKind::Deployment => {
                Api::<Deployment>::namespaced(self.client.clone(), &target.namespace)
                    .get_scale(&target.name)
                    .await
            }
            WorkloadKind::StatefulSet => {
                Api::<StatefulSet>::namespaced(self.client.clone(), &target.namespace)
                    .get_scale(&target.name)
                    .await
            }
            WorkloadKind::InferenceService => {
                let obj = self
                    .isvc(&target.namespace)
                    .get(&target.name)
                    .await
                    .map_err(|e| port_error(e, &what))?;
                return isvc_min_replicas(&obj, &what);
            }
            WorkloadKind::Pod => return Err(invalid(target, "a pod has no replica count")),
        };
        scale_replicas(&scale.map_err(|e| port_error(e, &what))?, &what)
    }

    #[tracing::instrument(skip_all, fields(target = %target, replicas))]
    async fn scale(
        &self,
        target: &WorkloadRef,
        replicas: u32,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let ns = &target.namespace;
        match target.kind {
            WorkloadKind::Deployment => {
                let api = Api::<Deployment>::namespaced(self.client.clone(), ns);
                self.scale_subresource(api, target, replicas, mode).await
            }
            WorkloadKind::StatefulSet => {
                let api = Api::<StatefulSet>::namespaced(self.client.clone(), ns);
                self.scale_subresource(api, target, replicas, mode).await
            }
            WorkloadKind::InferenceService => {
                let what = target.to_string();
                let api = self.isvc(ns);
                let obj = api
                    .get(&target.name)
                    .await
                    .map_err(|e| port_error(e, &what))?;
                let current = isvc_min_replicas(&obj, &what)?;
                if current == replicas {
                    return Ok(ActionOutcome::unchanged(
                        mode,
                        format!("minReplicas={current}"),
                        format!("{what} already at minReplicas {current}: nothing to do"),
                    ));
                }
                let mut predictor = json!({"minReplicas": replicas});
                let max = obj
                    .data
                    .pointer("/spec/predictor/maxReplicas")
                    .and_then(Value::as_u64);
                if max.is_some_and(|m| m > 0 && m < u64::from(replicas)) {
                    predictor["maxReplicas"] = json!(replicas);
                }
                let body = json!({
                    "metadata": {"resourceVersion": obj.resource_version()},
                    "spec": {"predictor": predictor},
                });
                api.patch(&target.name, &patch_params(mode), &Patch::Merge(&body))
                    .await
                    .map_err(|e| port_error(e, &what))?;
                tracing::info!(target = %what, from = current, to = replicas, dry_run = mode.is_dry_run(), "minReplicas set");
                Ok(ActionOutcome::changed(
                    mode,
                    Some(format!("minReplicas={current}")),
                    Some(format!("minReplicas={replicas}")),
                    format!("set minReplicas of {what} from {current} to {replicas}"),
                ))
            }
            WorkloadKind::Pod => Err(invalid(target, "a pod cannot be scaled")),
        }
    }

    #[tracing::instrument(skip_all, fields(target = %target))]
    async fn restart(&self, target: &WorkloadRef, mode: Mode) -> Result<ActionOutcome, PortError> {
        let ns = &target.namespace;
        match target.kind {
            WorkloadKind::Deployment => {
                let api = Api::<Deployment>::namespaced(self.client.clone(), ns);
                let get = |d: &Deployment| {
                    d.spec
                        .template
                        .metadata
                        .as_ref()?
                        .annotations
                        .as_ref()?
                        .get(RESTARTED_AT_ANNOTATION)
                        .cloned()
                };
                self.rollout_restart(api, target, get, mode).await
            }
            WorkloadKind::StatefulSet => {
                let api = Api::<StatefulSet>::namespaced(self.client.clone(), ns);
                let get = |d: &StatefulSet| {
                    d.spec
                        .template
                        .metadata
                        .as_ref()?
                        .annotations
                        .as_ref()?
                        .get(RESTARTED_AT_ANNOTATION)
                        .cloned()
                };
                self.rollout_restart(api, target, get, mode).await
            }
            WorkloadKind::Pod => self.delete_pod(target, mode).await,
            WorkloadKind::InferenceService => Err(invalid(
                target,
                "restart the predictor's Deployment instead",
            )),
        }
    }

    #[tracing::instrument(skip_all, fields(target = %target))]
    async fn rollback(&self, target: &WorkloadRef, mode: Mode) -> Result<ActionOutcome, PortError> {
        if target.kind != WorkloadKind::Deployment {
            return Err(invalid(
                target,
                "only Deployments keep ReplicaSet revisions",
            ));
        }
        let what = target.to_string();
        let deployments = Api::<Deployment>::namespaced(self.client.clone(), &target.namespace);
        let mut dep = deployments
            .get(&target.name)
            .await
            .map_err(|e| port_error(e, &what))?;
        let spec = &dep.spec;
        if spec.paused == Some(true) {
            return Err(invalid(target, "paused: resume it before rolling back"));
        }
        let current = revision_of(dep.annotations())
            .ok_or_else(|| malformed(&what, format!("no {REVISION_ANNOTATION} annotation")))?;
        let selector = spec
            .selector
            .match_labels
            .as_ref()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| malformed(&what, "no selector.matchLabels"))?
            .iter()
            .fold(String::new(), |mut s, (k, v)| {
                if !s.is_empty() {
                    s.push(',');
                }
                let _ = write!(s, "{k}={v}");
                s
            });
        let uid = dep.uid().unwrap_or_default();
        let sets = Api::<ReplicaSet>::namespaced(self.client.clone(), &target.namespace)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| port_error(e, &format!("ReplicaSets of {what}")))?;
        let previous = sets
            .items
            .into_iter()
            .filter(|rs| controller_uid(rs) == Some(uid.as_str()))
            .filter_map(|rs| revision_of(rs.annotations()).map(|r| (r, rs)))
            .filter(|(r, _)| *r < current)
            .max_by_key(|(r, _)| *r);
        let Some((revision, rs)) = previous else {
            return Err(PortError::NotFound {
                what: format!("a revision of {what} before {current}"),
            });
        };
        let mut template = rs.spec.template.ok_or_else(|| {
            malformed(
                &what,
                format!("ReplicaSet revision {revision} has no template"),
            )
        })?;
        if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove("pod-template-hash");
        }
        let spec = &mut dep.spec;
        if spec.template == template {
            return Ok(ActionOutcome::unchanged(
                mode,
                format!("revision={current}"),
                format!("{what} already runs the template of revision {revision}: nothing to do"),
            ));
        }
        spec.template = template;
        deployments
            .replace(&target.name, &post_params(mode), &dep)
            .await
            .map_err(|e| port_error(e, &what))?;
        tracing::info!(target = %what, from = current, to = revision, dry_run = mode.is_dry_run(), "rolled back");
        Ok(ActionOutcome::changed(
            mode,
            Some(format!("revision={current}")),
            Some(format!("template of revision {revision}")),
            format!(
                "rolled {what} back from revision {current} to the template of revision {revision}"
            ),
        ))
    }

    #[tracing::instrument(skip_all, fields(scope = %scope, below_priority))]
    async fn evict_lower_priority(
        &self,
        scope: &EvictScope,
        below_priority: i32,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let (api, lp): (Api<Pod>, ListParams) = match scope {
            EvictScope::Node(node) => (
                Api::all(self.client.clone()),
                ListParams::default().fields(&format!("spec.nodeName={node}")),
            ),
            EvictScope::Namespace(ns) => (
                Api::namespaced(self.client.clone(), ns),
                ListParams::default(),
            ),
        };
        let pods = api
            .list(&lp)
            .await
            .map_err(|e| port_error(e, &format!("pods on {scope}")))?;
        let victims: Vec<Pod> = pods
            .items
            .into_iter()
            .filter(|p| !skip_eviction(p))
            .filter(|p| p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0) < below_priority)
            .collect();
        if victims.is_empty() {
            return Ok(ActionOutcome::unchanged(
                mode,
                "0 pods below priority",
                format!("no pod below priority {below_priority} on {scope}: nothing to do"),
            ));
        }
        let (mut evicted, mut blocked) = (Vec::new(), Vec::new());
        for pod in &victims {
            let ns = pod.namespace().unwrap_or_default();
            let name = pod.name_any();
            let what = format!("Pod {ns}/{name}");
            let eviction = json!({
                "apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": name, "namespace": ns},
            });
            let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let pp = PostParams {
                dry_run: mode.is_dry_run(),
                field_manager: None,
            };
            match pods
                .create_subresource::<_, Value>("eviction", &name, &pp, &eviction)
                .await
            {
                Ok(_) => evicted.push(format!("{ns}/{name}")),
                Err(kube::Error::Api(s)) if s.code == 429 => blocked.push(format!("{ns}/{name}")),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(port_error(e, &what)),
            }
        }
        tracing::info!(scope = %scope, evicted = evicted.len(), blocked = blocked.len(), dry_run = mode.is_dry_run(), "evicted");
        if evicted.is_empty() && !blocked.is_empty() {
            return Err(PortError::Unavailable {
                backend: crate::error::BACKEND,
                message: format!(
                    "every eviction on {scope} is blocked by a PodDisruptionBudget: {}",
                    blocked.join(", ")
                ),
            });
        }
        let mut detail = format!("evicted {} from {scope}", evicted.join(", "));
        if !blocked.is_empty() {
            let _ = write!(
                detail,
                "; blocked by a PodDisruptionBudget: {}",
                blocked.join(", ")
            );
        }
        Ok(ActionOutcome {
            changed: !evicted.is_empty(),
            dry_run: mode.is_dry_run(),
            before: Some(format!(
                "{} pods below priority {below_priority}",
                victims.len()
            )),
            after: Some(format!(
                "{} pods below priority {below_priority}",
                blocked.len()
            )),
            detail: if mode.is_dry_run() {
                format!("dry run: {detail}")
            } else {
                detail
            },
        })
    }

    #[tracing::instrument(skip_all, fields(target = %target))]
    async fn max_num_seqs(&self, target: &WorkloadRef) -> Result<Option<u32>, PortError> {
        Ok(self.read_batch(target).await?.2.current)
    }

    #[tracing::instrument(skip_all, fields(target = %target, value))]
    async fn set_max_num_seqs(
        &self,
        target: &WorkloadRef,
        value: u32,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let what = target.to_string();
        let (api, mut obj, loc) = self.read_batch(target).await?;
        if loc.current == Some(value) {
            return Ok(ActionOutcome::unchanged(
                mode,
                format!("max_num_seqs={value}"),
                format!("{what} already runs with {MAX_NUM_SEQS_ARG} {value}: nothing to do"),
            ));
        }
        let mut args = obj
            .data
            .pointer(&loc.args)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        set_max_num_seqs_arg(&mut args, value);
        let (parent, _) = loc
            .args
            .rsplit_once('/')
            .ok_or_else(|| malformed(&what, "args location"))?;
        let holder = obj
            .data
            .pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .ok_or_else(|| malformed(&what, format!("{parent} is not an object")))?;
        holder.insert("args".into(), Value::Array(args));
        let sent = obj.data.pointer(&loc.send).cloned().unwrap_or(Value::Null);
        let mut body = body_at(&loc.send, sent);
        body["metadata"] = json!({"resourceVersion": obj.resource_version()});
        api.patch(&target.name, &patch_params(mode), &Patch::Merge(&body))
            .await
            .map_err(|e| port_error(e, &what))?;
        tracing::info!(target = %what, value, dry_run = mode.is_dry_run(), "max-num-seqs set");
        Ok(ActionOutcome::changed(
            mode,
            loc.current.map(|c| format!("max_num_seqs={c}")),
            Some(format!("max_num_seqs={value}")),
            format!("set {MAX_NUM_SEQS_ARG} {value} on {what}"),
        ))
    }
}

/// `cmctl renew`'s condition.
fn issuing_condition(generation: Option<i64>, now: &str) -> Value {
    let mut c = json!({
        "type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
        "message": "Certificate re-issuance manually triggered",
        "lastTransitionTime": now,
    });
    if let Some(g) = generation {
        c["observedGeneration"] = json!(g);
    }
    c
}

#[async_trait]
impl Certificates for KubeWorkloads {
    #[tracing::instrument(skip_all, fields(namespace, name))]
    async fn renew_certificate(
        &self,
        namespace: &str,
        name: &str,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let what = format!("Certificate {namespace}/{name}");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &certificate_resource());
        let mut cert = api.get(name).await.map_err(|e| port_error(e, &what))?;
        let conditions = cert
            .data
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let issuing = conditions
            .iter()
            .position(|c| c.get("type").and_then(Value::as_str) == Some("Issuing"));
        let status_of = |i: usize| conditions[i].get("status").and_then(Value::as_str);
        if issuing.is_some_and(|i| status_of(i) == Some("True")) {
            return Ok(ActionOutcome::unchanged(
                mode,
                "Issuing=True",
                format!("{what} is already being issued: nothing to do"),
            ));
        }
        let before = issuing
            .and_then(status_of)
            .map_or_else(|| "Issuing absent".to_owned(), |s| format!("Issuing={s}"));
        let condition = issuing_condition(cert.metadata.generation, &self.now());
        let mut conditions = conditions.clone();
        match issuing {
            Some(i) => conditions[i] = condition,
            None => conditions.push(condition),
        }
        if !cert.data.get("status").is_some_and(Value::is_object) {
            cert.data["status"] = json!({});
        }
        cert.data["status"]["conditions"] = Value::Array(conditions);
        api.replace_status(name, &post_params(mode), &cert)
            .await
            .map_err(|e| port_error(e, &what))?;
        tracing::info!(certificate = %what, dry_run = mode.is_dry_run(), "re-issuance triggered");
        Ok(ActionOutcome::changed(
            mode,
            Some(before),
            Some("Issuing=True".into()),
            format!("triggered re-issuance of {what} (as cmctl renew)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<Value> {
        a.iter().map(|s| json!(s)).collect()
    }

    #[test]
    fn max_num_seqs_is_read_and_set_in_both_spellings() {
        for (before, found, after) in [
            (
                &["--model", "m", "--max-num-seqs=256"][..],
                Some(256),
                &["--model", "m", "--max-num-seqs=128"][..],
            ),
            (
                &["--max-num-seqs", "64", "--port", "8080"][..],
                Some(64),
                &["--max-num-seqs=128", "--port", "8080"][..],
            ),
            (
                &["--model", "m"][..],
                None,
                &["--model", "m", "--max-num-seqs=128"][..],
            ),
        ] {
            let mut a = args(before);
            assert_eq!(
                find_max_num_seqs(&a).and_then(|(_, v)| v),
                found,
                "{before:?}"
            );
            set_max_num_seqs_arg(&mut a, 128);
            assert_eq!(a, args(after), "{before:?}");
        }
    }

    #[test]
    fn batch_location_prefers_the_container_that_sets_it() {
        let isvc = json!({"spec": {"predictor": {
            "model": {"modelFormat": {"name": "huggingface"}, "args": ["--max-num-seqs=32"]}}}});
        let loc = locate_batch(WorkloadKind::InferenceService, &isvc, "x").expect("model");
        assert_eq!(
            (loc.args.as_str(), loc.send.as_str(), loc.current),
            (
                "/spec/predictor/model/args",
                "/spec/predictor/model",
                Some(32)
            )
        );
        let dep = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "proxy", "args": []}, {"name": "vllm", "args": ["--max-num-seqs", "8"]}]}}}});
        let loc = locate_batch(WorkloadKind::Deployment, &dep, "x").expect("containers");
        assert_eq!(
            (loc.args.as_str(), loc.send.as_str(), loc.current),
            (
                "/spec/template/spec/containers/1/args",
                "/spec/template/spec/containers",
                Some(8)
            )
        );
        let bad = json!({"spec": {"template": {"spec": {"containers": [{"name": "v", "args": ["--max-num-seqs=lots"]}]}}}});
        assert!(matches!(
            locate_batch(WorkloadKind::Deployment, &bad, "x"),
            Err(PortError::Malformed { .. })
        ));
    }

    #[test]
    fn merge_bodies_nest_by_pointer() {
        assert_eq!(
            body_at("/spec/predictor/model", json!(1)),
            json!({"spec": {"predictor": {"model": 1}}})
        );
    }
}
