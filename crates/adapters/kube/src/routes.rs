//! External traffic: the `HTTPRoutes` k8gb resolves to decide whether this region serves.
//!
//! k8gb (`k8gb-io/k8gb: controllers/runtime_shared.go`, `calculateServiceHealth` and
//! `hasReadyEndpoint`) marks a GSLB host `Healthy` when, under the default `Any` policy,
//! at least one Service named in the route's `spec.rules[].backendRefs[]` has an
//! `EndpointSlice` (label `kubernetes.io/service-name`) with an endpoint that has addresses
//! and is not `ready: false`. Only healthy hosts get this region's addresses in DNS
//! (`controllers/providers/k8gbendpoint/applicationDNSEndpoint.go`). There is no
//! annotation or status field to toggle: readiness *is* "a backend has ready endpoints".
//!
//! So this actuator switches the route's backends, which it fully controls, between the
//! Service that fronts the application (`serving_backend`) and a Service without a
//! selector and without endpoints (`withdrawn_backend`). Withdrawn, every backend k8gb
//! looks at has no ready endpoint and the region drops out of DNS; ready, the real
//! backend's endpoints count again. The application's Service and pods are never touched,
//! so in-cluster and mesh traffic are unaffected. The verify reads the route back and
//! then evaluates k8gb's own rule on the backend's EndpointSlices.

use async_trait::async_trait;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use sre_core::{Generation, PortError};
use sre_failover::ports::{ExternalTraffic, LayerError, LayerStatus};

use crate::error::layer_error;
use crate::fencing::{
    highest_stamp, read, refuse_stale, stamp_of, verify_read_back, write_unless_done,
};

/// Which routes and backends the external layer switches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRouteConfig {
    /// Namespace of the routes and both backend Services.
    pub namespace: String,
    /// The `HTTPRoutes` k8gb's `Gslb` resources reference (`spec.resourceRef`).
    pub routes: Vec<String>,
    /// The Service whose ready endpoints make the region healthy for k8gb.
    pub serving_backend: String,
    /// A Service with no selector and no endpoints; pointing the routes at it withdraws
    /// the region. It must never get endpoints (checked on every withdraw).
    pub withdrawn_backend: String,
}

/// [`ExternalTraffic`] over Gateway API `HTTPRoutes` watched by k8gb.
#[derive(Clone)]
pub struct HttpRouteTraffic {
    routes: Api<DynamicObject>,
    slices: Api<EndpointSlice>,
    cfg: HttpRouteConfig,
}

impl std::fmt::Debug for HttpRouteTraffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRouteTraffic")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// `gateway.networking.k8s.io/v1` `HTTPRoute`, without a CRD type crate.
fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

/// Which way the routes point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Serving,
    Withdrawn,
}

impl HttpRouteTraffic {
    /// Builds the actuator on `client` (this region's API server).
    #[must_use]
    pub fn new(client: Client, cfg: HttpRouteConfig) -> Self {
        Self {
            routes: Api::namespaced_with(client.clone(), &cfg.namespace, &http_route_resource()),
            slices: Api::namespaced(client, &cfg.namespace),
            cfg,
        }
    }

    fn what(&self, route: &str) -> String {
        format!("HTTPRoute {}/{route}", self.cfg.namespace)
    }

    fn backend_name(&self, target: Target) -> &str {
        match target {
            Target::Serving => &self.cfg.serving_backend,
            Target::Withdrawn => &self.cfg.withdrawn_backend,
        }
    }

    /// The Service names of every backendRef of `route`, refusing refs this actuator does
    /// not own: k8gb (policy `Any`) would keep the region healthy through any other
    /// backend with ready endpoints, so withdrawing could not work.
    fn backends(&self, route: &DynamicObject, what: &str) -> Result<Vec<String>, LayerError> {
        let mut names = Vec::new();
        let rules = route.data.pointer("/spec/rules").and_then(Value::as_array);
        for rule in rules.into_iter().flatten() {
            let refs = rule.get("backendRefs").and_then(Value::as_array);
            for r in refs.into_iter().flatten() {
                let group = r.get("group").and_then(Value::as_str).unwrap_or("");
                let kind = r.get("kind").and_then(Value::as_str).unwrap_or("Service");
                let ns = r
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or(&self.cfg.namespace);
                let name = r.get("name").and_then(Value::as_str).unwrap_or("");
                let ours = group.is_empty()
                    && kind == "Service"
                    && ns == self.cfg.namespace
                    && (name == self.cfg.serving_backend || name == self.cfg.withdrawn_backend);
                if !ours {
                    return Err(LayerError::Port(PortError::Invalid(format!(
                        "{what} has backendRef {group}/{kind} {ns}/{name}, which is neither the serving \
                         ({}) nor the withdrawn ({}) backend: k8gb would keep counting its endpoints",
                        self.cfg.serving_backend, self.cfg.withdrawn_backend
                    ))));
                }
                names.push(name.to_owned());
            }
        }
        if names.is_empty() {
            return Err(LayerError::Port(PortError::Invalid(format!(
                "{what} has no backendRefs: k8gb sees no Service to judge"
            ))));
        }
        Ok(names)
    }

    fn points_at(
        &self,
        route: &DynamicObject,
        what: &str,
        target: Target,
    ) -> Result<bool, LayerError> {
        let want = self.backend_name(target);
        Ok(self.backends(route, what)?.iter().all(|n| n == want))
    }

    /// The route's `spec.rules` with every backendRef renamed to `target`. Merge patch
    /// replaces arrays whole, so the full rules go out; the `resourceVersion` precondition
    /// keeps a concurrent edit of the route from being lost.
    fn retargeted_rules(&self, route: &DynamicObject, target: Target) -> Value {
        let mut rules = route
            .data
            .pointer("/spec/rules")
            .cloned()
            .unwrap_or(Value::Null);
        for rule in rules.as_array_mut().into_iter().flatten() {
            let refs = rule.get_mut("backendRefs").and_then(Value::as_array_mut);
            for r in refs.into_iter().flatten() {
                r["name"] = Value::String(self.backend_name(target).to_owned());
            }
        }
        json!({ "spec": { "rules": rules } })
    }

    /// k8gb's `hasReadyEndpoint` for `service`.
    async fn has_ready_endpoint(&self, service: &str) -> Result<bool, LayerError> {
        let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
        let what = format!("EndpointSlices of Service {}/{service}", self.cfg.namespace);
        let list = self
            .slices
            .list(&lp)
            .await
            .map_err(|e| layer_error(e, &what))?;
        Ok(list
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .any(|e| {
                !e.addresses.is_empty()
                    && e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
            }))
    }

    async fn read_routes(&self) -> Result<Vec<(DynamicObject, String)>, LayerError> {
        let mut out = Vec::with_capacity(self.cfg.routes.len());
        for name in &self.cfg.routes {
            let what = self.what(name);
            out.push((read(&self.routes, name, &what).await?, what));
        }
        Ok(out)
    }

    async fn set(&self, target: Target, generation: Generation) -> Result<LayerStatus, LayerError> {
        let routes = self.read_routes().await?;
        // Invariant: nothing is written unless every route passed the stale check.
        for (route, what) in &routes {
            refuse_stale(generation, stamp_of(route, what)?)?;
            self.backends(route, what)?;
        }
        let mut written = 0;
        for (route, what) in &routes {
            let holds = self.points_at(route, what, target)?;
            let sent = write_unless_done(&self.routes, route, what, generation, holds, || {
                self.retargeted_rules(route, target)
            })
            .await?;
            // An object we did not write was just read in the wanted state with our
            // stamp: that read is the verification.
            let back = if sent {
                written += 1;
                read(&self.routes, &route.name_any(), what).await?
            } else {
                route.clone()
            };
            let holds = self.points_at(&back, what, target)?;
            verify_read_back(&back, what, generation, holds, self.backend_name(target))?;
        }
        let backend = self.backend_name(target);
        let ready = self.has_ready_endpoint(backend).await?;
        match (target, ready) {
            (Target::Serving, false) => Err(LayerError::NotVerified(format!(
                "routes point at {backend}, but it has no ready endpoint: k8gb keeps the region out"
            ))),
            (Target::Withdrawn, true) => Err(LayerError::NotVerified(format!(
                "withdrawn backend {backend} has ready endpoints: k8gb still sees the region healthy"
            ))),
            _ => Ok(LayerStatus {
                serving: target == Target::Serving,
                generation: Some(generation),
                detail: format!(
                    "{} route(s) -> Service {backend} ({written} written, {} already so); \
                     ready endpoints: {ready}",
                    routes.len(),
                    routes.len() - written
                ),
            }),
        }
    }
}

#[async_trait]
impl ExternalTraffic for HttpRouteTraffic {
    #[tracing::instrument(skip_all, fields(ready = ready, lease_epoch = generation.0))]
    async fn set_routes_ready(
        &self,
        ready: bool,
        generation: Generation,
    ) -> Result<LayerStatus, LayerError> {
        self.set(
            if ready {
                Target::Serving
            } else {
                Target::Withdrawn
            },
            generation,
        )
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn routes_status(&self) -> Result<LayerStatus, LayerError> {
        let routes = self.read_routes().await?;
        let mut all_serving = true;
        for (route, what) in &routes {
            all_serving &= self.points_at(route, what, Target::Serving)?;
        }
        let generation = highest_stamp(routes.iter().map(|(r, w)| (r, w.as_str())))?;
        let ready = self.has_ready_endpoint(&self.cfg.serving_backend).await?;
        Ok(LayerStatus {
            serving: all_serving && ready,
            generation,
            detail: format!(
                "{} route(s) {}; {} ready endpoints: {ready}",
                routes.len(),
                if all_serving {
                    "-> serving backend"
                } else {
                    "not all on the serving backend"
                },
                self.cfg.serving_backend
            ),
        })
    }
}
