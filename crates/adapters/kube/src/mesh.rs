//! Internal traffic: Cilium ClusterMesh global services.
//!
//! Cilium (`cilium/cilium: pkg/annotation/clustermesh.go`, `GetAnnotationShared`, and
//! the constants in `pkg/annotation/k8s.go`) treats a Service as global when
//! `service.cilium.io/global` is `"true"`; a global Service's local endpoints are shared
//! with the other clusters unless `service.cilium.io/shared` is `"false"` (shared is the
//! default, and ignored for a non-global Service). A cluster that stops sharing still
//! load-balances to the *remote* endpoints of the same global Service.
//!
//! That is exactly a withdraw: this actuator keeps `global: "true"` and sets
//! `shared: "false"`, so the region's endpoints leave every peer's backends while its own
//! clients keep reaching the active region. Sharing sets `shared: "true"`. The affinity
//! annotation (`service.cilium.io/affinity`: `local`/`remote`/`none`) only orders local
//! versus remote backends and is left as the operator configured it.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde_json::json;
use sre_core::Generation;
use sre_failover::ports::{InternalTraffic, LayerError, LayerStatus};

use crate::fencing::{
    highest_stamp, read, refuse_stale, stamp_of, verify_read_back, write_unless_done,
};

/// Cilium: the Service is a ClusterMesh global service.
pub const GLOBAL_ANNOTATION: &str = "service.cilium.io/global";
/// Cilium: whether this cluster's endpoints of a global service go to the other clusters.
pub const SHARED_ANNOTATION: &str = "service.cilium.io/shared";

/// Which global Services the internal layer shares or withdraws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiliumMeshConfig {
    /// Namespace of the Services.
    pub namespace: String,
    /// The Services, annotated identically in every region (Cilium merges by name).
    pub services: Vec<String>,
}

/// [`InternalTraffic`] over Cilium ClusterMesh Service annotations.
#[derive(Clone)]
pub struct CiliumMeshTraffic {
    services: Api<Service>,
    cfg: CiliumMeshConfig,
}

impl std::fmt::Debug for CiliumMeshTraffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CiliumMeshTraffic")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// Cilium's reading of the annotations: global and not explicitly unshared.
fn is_shared(svc: &Service) -> bool {
    let get = |k: &str| svc.annotations().get(k).map(|v| v.to_ascii_lowercase());
    get(GLOBAL_ANNOTATION).as_deref() == Some("true")
        && get(SHARED_ANNOTATION).is_none_or(|v| v == "true")
}

/// Global but explicitly not shared: remote endpoints in, ours not out.
fn is_withdrawn(svc: &Service) -> bool {
    let get = |k: &str| svc.annotations().get(k).map(|v| v.to_ascii_lowercase());
    get(GLOBAL_ANNOTATION).as_deref() == Some("true")
        && get(SHARED_ANNOTATION).as_deref() == Some("false")
}

impl CiliumMeshTraffic {
    /// Builds the actuator on `client` (this region's API server).
    #[must_use]
    pub fn new(client: Client, cfg: CiliumMeshConfig) -> Self {
        Self {
            services: Api::namespaced(client, &cfg.namespace),
            cfg,
        }
    }

    async fn read_all(&self) -> Result<Vec<(Service, String)>, LayerError> {
        let mut out = Vec::with_capacity(self.cfg.services.len());
        for name in &self.cfg.services {
            let what = format!("Service {}/{name}", self.cfg.namespace);
            out.push((read(&self.services, name, &what).await?, what));
        }
        Ok(out)
    }
}

#[async_trait]
impl InternalTraffic for CiliumMeshTraffic {
    #[tracing::instrument(skip_all, fields(shared = shared, lease_epoch = generation.0))]
    async fn set_mesh_endpoints(
        &self,
        shared: bool,
        generation: Generation,
    ) -> Result<LayerStatus, LayerError> {
        let holds = if shared { is_shared } else { is_withdrawn };
        let services = self.read_all().await?;
        for (svc, what) in &services {
            refuse_stale(generation, stamp_of(svc, what)?)?;
        }
        let wanted = if shared { "shared" } else { "withdrawn" };
        let mut written = 0;
        for (svc, what) in &services {
            let change = || {
                json!({ "metadata": { "annotations": {
                    GLOBAL_ANNOTATION: "true",
                    SHARED_ANNOTATION: if shared { "true" } else { "false" },
                }}})
            };
            let sent = write_unless_done(&self.services, svc, what, generation, holds(svc), change)
                .await?;
            let back = if sent {
                written += 1;
                read(&self.services, &svc.name_any(), what).await?
            } else {
                svc.clone()
            };
            verify_read_back(&back, what, generation, holds(&back), wanted)?;
        }
        Ok(LayerStatus {
            serving: shared,
            generation: Some(generation),
            detail: format!(
                "{} global service(s) {wanted} ({written} written, {} already so)",
                services.len(),
                services.len() - written
            ),
        })
    }

    #[tracing::instrument(skip_all)]
    async fn mesh_status(&self) -> Result<LayerStatus, LayerError> {
        let services = self.read_all().await?;
        let shared: Vec<&str> = services
            .iter()
            .filter(|(s, _)| is_shared(s))
            .map(|(_, w)| w.as_str())
            .collect();
        Ok(LayerStatus {
            serving: !services.is_empty() && shared.len() == services.len(),
            generation: highest_stamp(services.iter().map(|(s, w)| (s, w.as_str())))?,
            detail: format!(
                "{} of {} global service(s) shared",
                shared.len(),
                services.len()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn svc(pairs: &[(&str, &str)]) -> Service {
        Service {
            metadata: ObjectMeta {
                annotations: Some(
                    pairs
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            ..Service::default()
        }
    }

    #[test]
    fn cilium_semantics_shared_is_the_default_for_global_and_ignored_otherwise() {
        type Case<'a> = (&'a [(&'a str, &'a str)], bool, bool);
        let cases: [Case; 6] = [
            (&[], false, false),
            (&[(GLOBAL_ANNOTATION, "true")], true, false),
            (
                &[(GLOBAL_ANNOTATION, "True"), (SHARED_ANNOTATION, "TRUE")],
                true,
                false,
            ),
            (
                &[(GLOBAL_ANNOTATION, "true"), (SHARED_ANNOTATION, "false")],
                false,
                true,
            ),
            (
                &[(GLOBAL_ANNOTATION, "false"), (SHARED_ANNOTATION, "true")],
                false,
                false,
            ),
            (&[(SHARED_ANNOTATION, "false")], false, false),
        ];
        for (ann, shared, withdrawn) in cases {
            let s = svc(ann);
            assert_eq!(
                (is_shared(&s), is_withdrawn(&s)),
                (shared, withdrawn),
                "{ann:?}"
            );
        }
    }
}
