//! Remediation where traffic goes: k8gb's view of a global endpoint ([`GslbStatus`]) and a
//! Service switched to its backup's pods and back ([`ServiceFailover`]), on
//! [`KubeWorkloads`].
//!
//! - **`Gslb` status**: `GET k8gb.absa.oss/v1beta1 .../gslbs/{name}` as a `DynamicObject`;
//!   its `status` (k8gb's `GslbStatus` in `api/v1beta1/gslb_types.go`: `serviceHealth`
//!   host -> `Healthy`/`Unhealthy`/`NotFound`, `healthyRecords` host -> addresses,
//!   `geoTag`) becomes a [`GslbState`]. No status yet is an empty state, a status of the
//!   wrong shape is `Malformed` (never read as "no hosts").
//! - **failover**: `GET` the backup Service, refuse (`Rejected`) when it has no selector;
//!   `GET discovery.k8s.io/v1 endpointslices?labelSelector=kubernetes.io/service-name=<backup>`
//!   and refuse when no endpoint is ready (addresses and not `ready: false`, the rule
//!   kube-proxy and k8gb apply); `GET` the Service and, unless it already selects what the
//!   backup selects, one JSON merge patch that sets `spec.selector` to the backup's (keys
//!   the backup lacks set to `null`, because a merge patch merges maps) and saves the
//!   original selector as JSON in [`SELECTOR_BEFORE_FAILOVER_ANNOTATION`], with the read
//!   `resourceVersion`. A selector saved by an earlier failover is kept, so failback always
//!   returns to the selector before the first one.
//! - **failback**: `GET` the Service; without the annotation there is nothing to undo
//!   (`changed: false`); otherwise one merge patch restores the saved selector exactly and
//!   removes the annotation.
//!
//! Writes carry `fieldManager=sre-remediation` and, in a dry run, `dryRun=All`; every
//! refusal happens before any write.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch};
use serde_json::{Map, Value, json};
use sre_core::PortError;
use sre_remediation::actions::{
    ActionOutcome, GslbState, GslbStatus, HostHealth, Mode, ServiceFailover, selector_line,
};

use crate::error::{BACKEND, port_error};
use crate::workloads::{KubeWorkloads, malformed, patch_params};

/// Where a failover keeps the Service's own selector (JSON), so a failback from any
/// process restores it exactly.
pub const SELECTOR_BEFORE_FAILOVER_ANNOTATION: &str = "sre.openova.io/selector-before-failover";

type Selector = BTreeMap<String, String>;

fn gslb_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("k8gb.absa.oss", "v1beta1", "Gslb"),
        "gslbs",
    )
}

fn refused(message: String) -> PortError {
    PortError::Rejected {
        backend: BACKEND,
        message,
    }
}

/// A `Gslb`'s `status` as k8gb writes it; absent (not reconciled yet) is an empty state.
fn gslb_state(obj: &DynamicObject, what: &str) -> Result<GslbState, PortError> {
    let status = match obj.data.get("status") {
        None | Some(Value::Null) => return Ok(GslbState::default()),
        Some(Value::Object(m)) => m,
        Some(other) => return Err(malformed(what, format!("status is {other}"))),
    };
    let object = |field: &str| -> Result<Map<String, Value>, PortError> {
        match status.get(field) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(other) => Err(malformed(what, format!("status.{field} is {other}"))),
        }
    };
    let mut service_health = BTreeMap::new();
    for (host, health) in object("serviceHealth")? {
        let h = health
            .as_str()
            .ok_or_else(|| malformed(what, format!("serviceHealth[{host}] is {health}")))?;
        service_health.insert(host, HostHealth::parse(h));
    }
    let mut healthy_records = BTreeMap::new();
    for (host, records) in object("healthyRecords")? {
        let bad = || malformed(what, format!("healthyRecords[{host}] is {records}"));
        let list = match &records {
            Value::Null => Vec::new(),
            Value::Array(a) => a
                .iter()
                .map(|r| r.as_str().map(str::to_owned).ok_or_else(bad))
                .collect::<Result<_, _>>()?,
            _ => return Err(bad()),
        };
        healthy_records.insert(host, list);
    }
    let geo_tag = match status.get("geoTag") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(malformed(what, format!("geoTag is {other}"))),
    };
    Ok(GslbState {
        service_health,
        healthy_records,
        geo_tag,
    })
}

/// The merge-patch value that turns selector `from` into exactly `to`: a merge patch
/// merges maps, so every key `to` lacks is sent as `null` (deleted).
fn selector_patch(from: &Selector, to: &Selector) -> Value {
    let mut m: Map<String, Value> = from
        .keys()
        .filter(|k| !to.contains_key(*k))
        .map(|k| (k.clone(), Value::Null))
        .collect();
    m.extend(
        to.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone()))),
    );
    Value::Object(m)
}

fn selector_of(svc: &Service) -> Option<Selector> {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .filter(|s| !s.is_empty())
}

impl KubeWorkloads {
    /// Ready endpoints of Service `namespace/service` across its `EndpointSlices`.
    async fn ready_endpoints(&self, namespace: &str, service: &str) -> Result<usize, PortError> {
        let slices: Api<EndpointSlice> = Api::namespaced(self.client().clone(), namespace);
        let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
        let what = format!("EndpointSlices of Service {namespace}/{service}");
        let list = slices.list(&lp).await.map_err(|e| port_error(e, &what))?;
        Ok(list
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .filter(|e| {
                !e.addresses.is_empty()
                    && e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
            })
            .count())
    }

    fn saved_selector(svc: &Service, what: &str) -> Result<Option<Selector>, PortError> {
        svc.annotations()
            .get(SELECTOR_BEFORE_FAILOVER_ANNOTATION)
            .map(|raw| {
                serde_json::from_str::<Selector>(raw).map_err(|e| {
                    malformed(
                        what,
                        format!("{SELECTOR_BEFORE_FAILOVER_ANNOTATION} is not a selector: {e}"),
                    )
                })
            })
            .transpose()
    }
}

#[async_trait]
impl GslbStatus for KubeWorkloads {
    async fn gslb_status(&self, namespace: &str, name: &str) -> Result<GslbState, PortError> {
        let what = format!("Gslb {namespace}/{name}");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client().clone(), namespace, &gslb_resource());
        let obj = api.get(name).await.map_err(|e| port_error(e, &what))?;
        gslb_state(&obj, &what)
    }
}

#[async_trait]
impl ServiceFailover for KubeWorkloads {
    async fn failover_to_backup(
        &self,
        namespace: &str,
        service: &str,
        backup: &str,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        if backup == service {
            return Err(PortError::Invalid(format!(
                "Service {namespace}/{service} cannot be its own backup"
            )));
        }
        let api: Api<Service> = Api::namespaced(self.client().clone(), namespace);
        let bwhat = format!("Service {namespace}/{backup}");
        let b = api.get(backup).await.map_err(|e| port_error(e, &bwhat))?;
        let wanted = selector_of(&b).ok_or_else(|| {
            refused(format!(
                "backup {bwhat} has no selector: refusing to switch traffic to nothing"
            ))
        })?;
        let ready = self.ready_endpoints(namespace, backup).await?;
        if ready == 0 {
            return Err(refused(format!(
                "backup {bwhat} has no ready endpoints: refusing to switch traffic to nothing"
            )));
        }
        let what = format!("Service {namespace}/{service}");
        let svc = api.get(service).await.map_err(|e| port_error(e, &what))?;
        let current = selector_of(&svc).ok_or_else(|| {
            refused(format!(
                "{what} has no selector: its endpoints are managed elsewhere, not switched here"
            ))
        })?;
        if current == wanted {
            return Ok(ActionOutcome::unchanged(
                mode,
                format!("selector={}", selector_line(&current)),
                format!("{what} already selects the pods of {backup}: nothing to do"),
            ));
        }
        let original = Self::saved_selector(&svc, &what)?.unwrap_or_else(|| current.clone());
        let saved = serde_json::to_string(&original)
            .map_err(|e| malformed(&what, format!("selector: {e}")))?;
        let body = json!({
            "metadata": {
                "resourceVersion": svc.resource_version(),
                "annotations": { SELECTOR_BEFORE_FAILOVER_ANNOTATION: saved },
            },
            "spec": { "selector": selector_patch(&current, &wanted) },
        });
        api.patch(service, &patch_params(mode), &Patch::Merge(&body))
            .await
            .map_err(|e| port_error(e, &what))?;
        tracing::info!(service = %what, %backup, ready, dry_run = mode.is_dry_run(),
            "service failed over to backup");
        Ok(ActionOutcome::changed(
            mode,
            Some(format!("selector={}", selector_line(&current))),
            Some(format!("selector={}", selector_line(&wanted))),
            format!(
                "{what} now selects the pods of {backup} ({ready} ready endpoint(s)); \
                 its selector {} is saved in {SELECTOR_BEFORE_FAILOVER_ANNOTATION}",
                selector_line(&original)
            ),
        ))
    }

    async fn failback(
        &self,
        namespace: &str,
        service: &str,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        let api: Api<Service> = Api::namespaced(self.client().clone(), namespace);
        let what = format!("Service {namespace}/{service}");
        let svc = api.get(service).await.map_err(|e| port_error(e, &what))?;
        let current = selector_of(&svc).unwrap_or_default();
        let Some(saved) = Self::saved_selector(&svc, &what)? else {
            return Ok(ActionOutcome::unchanged(
                mode,
                format!("selector={}", selector_line(&current)),
                format!("{what} has no failover to undo: nothing to do"),
            ));
        };
        let body = json!({
            "metadata": {
                "resourceVersion": svc.resource_version(),
                "annotations": { SELECTOR_BEFORE_FAILOVER_ANNOTATION: null },
            },
            "spec": { "selector": selector_patch(&current, &saved) },
        });
        api.patch(service, &patch_params(mode), &Patch::Merge(&body))
            .await
            .map_err(|e| port_error(e, &what))?;
        tracing::info!(service = %what, dry_run = mode.is_dry_run(), "service failed back");
        Ok(ActionOutcome::changed(
            mode,
            Some(format!("selector={}", selector_line(&current))),
            Some(format!("selector={}", selector_line(&saved))),
            format!("{what} selects its own pods again (the selector saved at failover)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    //! Against kube's `tower-test` mock API server, as `tests/mock_api.rs` does: each
    //! scenario scripts the exact requests (method, path, query, JSON body) and replies
    //! with the shapes the API server sends; a missing or extra request times out.

    use super::*;
    use http::{Method, Request, Response};
    use kube::Client;
    use kube::client::Body;
    use sre_core::ManualClock;
    use std::future::Future;
    use std::sync::Arc;
    use std::time::Duration;

    const GSLB: &str = "/apis/k8gb.absa.oss/v1beta1/namespaces/k8gb/gslbs/app";
    const QUOTA: &str = "/api/v1/namespaces/bank/services/quota-service";
    const BACKUP: &str = "/api/v1/namespaces/bank/services/quota-service-backup";
    const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/bank/endpointslices";
    const BACKUP_SLICES: &str =
        "&labelSelector=kubernetes.io%2Fservice-name%3Dquota-service-backup";
    const WRITE: &str = "&fieldManager=sre-remediation";
    const WRITE_DRY: &str = "&dryRun=All&fieldManager=sre-remediation";

    /// One expected request and the reply to it.
    struct Step {
        method: Method,
        path: &'static str,
        query: Option<&'static str>,
        body: Option<Value>,
        status: u16,
        reply: Value,
    }

    fn get(path: &'static str, reply: Value) -> Step {
        Step {
            method: Method::GET,
            path,
            query: None,
            body: None,
            status: 200,
            reply,
        }
    }

    fn slices(ready: &[Option<bool>]) -> Step {
        let endpoints: Vec<Value> = ready
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut e = json!({"addresses": [format!("10.0.1.{i}")], "targetRef": {
                    "kind": "Pod", "namespace": "bank", "name": format!("quota-backup-{i}")}});
                if let Some(r) = r {
                    e["conditions"] = json!({"ready": r, "serving": r, "terminating": false});
                }
                e
            })
            .collect();
        Step {
            method: Method::GET,
            path: SLICES,
            query: Some(BACKUP_SLICES),
            body: None,
            status: 200,
            reply: json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
                "metadata": {"resourceVersion": "7001"},
                "items": [{
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "addressType": "IPv4",
                    "metadata": {"name": "quota-service-backup-x7k2p", "namespace": "bank",
                                 "labels": {"kubernetes.io/service-name": "quota-service-backup",
                                            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
                    "endpoints": endpoints,
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
                }]
            }),
        }
    }

    fn patch(query: &'static str, body: Value, reply: Value) -> Step {
        Step {
            method: Method::PATCH,
            path: QUOTA,
            query: Some(query),
            body: Some(body),
            status: 200,
            reply,
        }
    }

    fn not_found(path: &'static str) -> Step {
        Step {
            status: 404,
            reply: json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                          "status": "Failure", "message": "not found", "reason": "NotFound",
                          "code": 404}),
            ..get(path, Value::Null)
        }
    }

    /// A Service as the API server returns it.
    fn service(name: &str, selector: Option<Value>, annotations: Option<Value>) -> Value {
        let mut spec = json!({"ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                         "protocol": "TCP"}],
                              "clusterIP": "10.96.20.4", "type": "ClusterIP",
                              "sessionAffinity": "None"});
        if let Some(s) = selector {
            spec["selector"] = s;
        }
        let mut metadata = json!({"name": name, "namespace": "bank", "resourceVersion": "4242",
                                  "uid": format!("{name}-uid")});
        if let Some(a) = annotations {
            metadata["annotations"] = a;
        }
        json!({"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec,
               "status": {"loadBalancer": {}}})
    }

    fn quota(selector: Value, annotations: Option<Value>) -> Value {
        service("quota-service", Some(selector), annotations)
    }

    fn backup() -> Value {
        service(
            "quota-service-backup",
            Some(json!({"app": "quota-backup"})),
            None,
        )
    }

    async fn scenario<T, F: Future<Output = T>>(
        steps: Vec<Step>,
        act: impl FnOnce(KubeWorkloads) -> F,
    ) -> T {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let verifier = tokio::spawn(async move {
            for (i, step) in steps.into_iter().enumerate() {
                let (request, send) = handle.next_request().await.unwrap_or_else(|| {
                    panic!("call {i} ({} {}) never came", step.method, step.path)
                });
                let uri = request.uri().to_string();
                assert!(
                    crate::rbac::permits(
                        crate::rbac::Binary::RemediationWebhook,
                        request.method().as_str(),
                        &uri
                    ),
                    "call {i} {} {uri} is not granted by rbac",
                    request.method()
                );
                assert_eq!(request.method(), step.method, "call {i} method");
                assert_eq!(request.uri().path(), step.path, "call {i} path");
                assert_eq!(request.uri().query(), step.query, "call {i} query");
                if step.method == Method::PATCH {
                    let ct = request.headers().get(http::header::CONTENT_TYPE);
                    assert_eq!(
                        ct.and_then(|v| v.to_str().ok()),
                        Some("application/merge-patch+json"),
                        "call {i} must be a JSON merge patch"
                    );
                }
                let bytes = request.into_body().collect_bytes().await.expect("body");
                if let Some(want) = step.body {
                    let got: Value = serde_json::from_slice(&bytes).expect("JSON body");
                    assert_eq!(got, want, "call {i} body");
                }
                let reply = Response::builder()
                    .status(step.status)
                    .body(Body::from(serde_json::to_vec(&step.reply).expect("JSON")))
                    .expect("reply");
                send.send_response(reply);
            }
            // Kept alive: an unscripted extra request hangs and the scenario times out.
            handle
        });
        let kube = KubeWorkloads::new(
            Client::new(svc, "default"),
            Arc::new(ManualClock::at_epoch()),
        );
        let out = tokio::time::timeout(Duration::from_secs(1), act(kube))
            .await
            .expect("a scripted call was not made, or an unscripted one was");
        tokio::time::timeout(Duration::from_secs(1), verifier)
            .await
            .expect("verifier timed out")
            .expect("verifier failed");
        out
    }

    #[tokio::test]
    async fn gslb_status_reads_k8gbs_status_fields() {
        // The shape k8gb 0.14 writes for a failover Gslb whose local backend is down.
        let gslb = json!({
            "apiVersion": "k8gb.absa.oss/v1beta1", "kind": "Gslb",
            "metadata": {"name": "app", "namespace": "k8gb", "resourceVersion": "91",
                         "generation": 2},
            "spec": {"resourceRef": {"apiVersion": "gateway.networking.k8s.io/v1",
                                     "kind": "HTTPRoute", "name": "app"},
                     "strategy": {"type": "failover", "primaryGeoTag": "eu",
                                  "dnsTtlSeconds": 30}},
            "status": {
                "geoTag": "eu",
                "hosts": "app.cloud.example.com,api.cloud.example.com",
                "serviceHealth": {"app.cloud.example.com": "Unhealthy",
                                  "api.cloud.example.com": "Healthy"},
                "healthyRecords": {"api.cloud.example.com": ["172.18.0.5", "172.18.0.6"]}
            }
        });
        let state = scenario(vec![get(GSLB, gslb)], |k| async move {
            k.gslb_status("k8gb", "app").await
        })
        .await
        .expect("status");
        assert_eq!(state.geo_tag.as_deref(), Some("eu"));
        assert_eq!(
            state.service_health.get("app.cloud.example.com"),
            Some(&HostHealth::Unhealthy)
        );
        assert_eq!(
            state.healthy_records["api.cloud.example.com"],
            ["172.18.0.5", "172.18.0.6"]
        );
        let o = state.outcome("k8gb", "app", Mode::Apply);
        assert!(!o.changed);
        assert_eq!(o.after.as_deref(), Some("healthy=1/2"));

        let fresh = json!({"apiVersion": "k8gb.absa.oss/v1beta1", "kind": "Gslb",
                           "metadata": {"name": "app", "namespace": "k8gb"}, "spec": {}});
        let none = scenario(vec![get(GSLB, fresh)], |k| async move {
            k.gslb_status("k8gb", "app").await
        })
        .await
        .expect("not reconciled yet");
        assert_eq!(none, GslbState::default());

        let err = scenario(vec![not_found(GSLB)], |k| async move {
            k.gslb_status("k8gb", "app").await
        })
        .await
        .expect_err("missing");
        assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");

        let odd = json!({"apiVersion": "k8gb.absa.oss/v1beta1", "kind": "Gslb",
                         "metadata": {"name": "app", "namespace": "k8gb"},
                         "status": {"serviceHealth": ["app.cloud.example.com"]}});
        let err = scenario(vec![get(GSLB, odd)], |k| async move {
            k.gslb_status("k8gb", "app").await
        })
        .await
        .expect_err("wrong shape");
        assert!(matches!(err, PortError::Malformed { .. }), "{err:?}");
    }

    fn failover_body(saved: &str) -> Value {
        json!({
            "metadata": {"resourceVersion": "4242",
                         "annotations": {SELECTOR_BEFORE_FAILOVER_ANNOTATION: saved}},
            "spec": {"selector": {"app": "quota-backup", "tier": null}}
        })
    }

    #[tokio::test]
    async fn failover_sets_the_backups_selector_and_saves_the_original() {
        let original = json!({"app": "quota", "tier": "api"});
        let after = quota(
            json!({"app": "quota-backup"}),
            Some(json!({SELECTOR_BEFORE_FAILOVER_ANNOTATION: r#"{"app":"quota","tier":"api"}"#})),
        );
        for (mode, query) in [(Mode::Apply, WRITE), (Mode::DryRun, WRITE_DRY)] {
            let out = scenario(
                vec![
                    get(BACKUP, backup()),
                    slices(&[Some(true), None, Some(false)]),
                    get(QUOTA, quota(original.clone(), None)),
                    patch(
                        query,
                        failover_body(r#"{"app":"quota","tier":"api"}"#),
                        after.clone(),
                    ),
                ],
                |k| async move {
                    k.failover_to_backup("bank", "quota-service", "quota-service-backup", mode)
                        .await
                },
            )
            .await
            .expect("failover");
            assert!(out.changed);
            assert_eq!(out.dry_run, mode.is_dry_run());
            assert_eq!(
                (out.before.as_deref(), out.after.as_deref()),
                (
                    Some("selector=app=quota,tier=api"),
                    Some("selector=app=quota-backup")
                )
            );
            assert!(
                out.detail.contains("(2 ready endpoint(s))"),
                "{}",
                out.detail
            );
        }
    }

    #[tokio::test]
    async fn a_second_failover_sends_no_write_and_keeps_the_first_saved_selector() {
        let saved = json!({SELECTOR_BEFORE_FAILOVER_ANNOTATION: r#"{"app":"quota","tier":"api"}"#});
        let out = scenario(
            vec![
                get(BACKUP, backup()),
                slices(&[Some(true)]),
                get(
                    QUOTA,
                    quota(json!({"app": "quota-backup"}), Some(saved.clone())),
                ),
            ],
            |k| async move {
                k.failover_to_backup("bank", "quota-service", "quota-service-backup", Mode::Apply)
                    .await
            },
        )
        .await
        .expect("no-op");
        assert!(!out.changed);
        assert!(out.detail.contains("nothing to do"), "{}", out.detail);

        // Moved by hand since: the selector before the *first* failover stays the one saved.
        scenario(
            vec![
                get(BACKUP, backup()),
                slices(&[Some(true)]),
                get(
                    QUOTA,
                    quota(json!({"app": "quota", "tier": "canary"}), Some(saved)),
                ),
                patch(
                    WRITE,
                    failover_body(r#"{"app":"quota","tier":"api"}"#),
                    quota(json!({"app": "quota-backup"}), None),
                ),
            ],
            |k| async move {
                k.failover_to_backup("bank", "quota-service", "quota-service-backup", Mode::Apply)
                    .await
            },
        )
        .await
        .expect("failover keeps the original");
    }

    #[tokio::test]
    async fn failover_to_nothing_is_refused_before_any_write() {
        let call = |k: KubeWorkloads| async move {
            k.failover_to_backup("bank", "quota-service", "quota-service-backup", Mode::Apply)
                .await
        };
        // No ready endpoint: one not ready, one without addresses.
        let mut empty = slices(&[Some(false)]);
        empty.reply["items"][0]["endpoints"]
            .as_array_mut()
            .expect("endpoints")
            .push(json!({"addresses": [], "conditions": {"ready": true}}));
        let err = scenario(vec![get(BACKUP, backup()), empty], call)
            .await
            .expect_err("no ready endpoints");
        assert!(
            matches!(&err, PortError::Rejected { message, .. } if message.contains("no ready endpoints")),
            "{err:?}"
        );
        // A selector-less backup (endpoints managed by hand) selects no pods to move to.
        let manual = service("quota-service-backup", None, None);
        let err = scenario(vec![get(BACKUP, manual)], call)
            .await
            .expect_err("no selector");
        assert!(
            matches!(&err, PortError::Rejected { message, .. } if message.contains("no selector")),
            "{err:?}"
        );
        let err = scenario(vec![not_found(BACKUP)], call)
            .await
            .expect_err("no backup");
        assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");
        // The Service itself without a selector: not ours to switch.
        let err = scenario(
            vec![
                get(BACKUP, backup()),
                slices(&[Some(true)]),
                get(QUOTA, service("quota-service", None, None)),
            ],
            call,
        )
        .await
        .expect_err("target without selector");
        assert!(matches!(err, PortError::Rejected { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn failback_restores_the_saved_selector_exactly_and_forgets_it() {
        let saved = json!({SELECTOR_BEFORE_FAILOVER_ANNOTATION: r#"{"app":"quota","tier":"api"}"#});
        let body = json!({
            "metadata": {"resourceVersion": "4242",
                         "annotations": {SELECTOR_BEFORE_FAILOVER_ANNOTATION: null}},
            "spec": {"selector": {"app": "quota", "tier": "api", "track": null}}
        });
        let on_backup = json!({"app": "quota-backup", "track": "stable"});
        for (mode, query) in [(Mode::DryRun, WRITE_DRY), (Mode::Apply, WRITE)] {
            let out = scenario(
                vec![
                    get(QUOTA, quota(on_backup.clone(), Some(saved.clone()))),
                    patch(
                        query,
                        body.clone(),
                        quota(json!({"app": "quota", "tier": "api"}), None),
                    ),
                ],
                |k| async move { k.failback("bank", "quota-service", mode).await },
            )
            .await
            .expect("failback");
            assert!(out.changed && out.dry_run == mode.is_dry_run());
            assert_eq!(out.after.as_deref(), Some("selector=app=quota,tier=api"));
        }
        let out = scenario(
            vec![get(QUOTA, quota(json!({"app": "quota"}), None))],
            |k| async move { k.failback("bank", "quota-service", Mode::Apply).await },
        )
        .await
        .expect("nothing to undo");
        assert!(!out.changed);
        let garbled = json!({SELECTOR_BEFORE_FAILOVER_ANNOTATION: "app=quota"});
        let err = scenario(
            vec![get(QUOTA, quota(on_backup, Some(garbled)))],
            |k| async move { k.failback("bank", "quota-service", Mode::Apply).await },
        )
        .await
        .expect_err("unreadable saved selector");
        assert!(matches!(err, PortError::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn selector_patches_delete_the_keys_the_new_selector_lacks() {
        let from: Selector = [("app", "a"), ("tier", "api")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let to: Selector = [("app", "b")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(
            selector_patch(&from, &to),
            json!({"app": "b", "tier": null})
        );
        assert_eq!(selector_patch(&to, &to), json!({"app": "b"}));
    }
}
