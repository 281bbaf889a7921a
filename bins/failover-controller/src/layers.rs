//! The `kube:` config section (read when `layers: kube`): which Kubernetes objects the
//! three failover layers move in this region, validated all at once and mapped onto
//! `sre-adapter-kube`'s config types. The mapping is pure, so it is tested here without
//! a cluster; the actuators themselves are tested against kube's mock API server in
//! the adapter.

use serde::{Deserialize, Serialize};
use sre_adapter_kube::{
    CiliumMeshConfig, CnpgClusterRef, CnpgTopology, HttpRouteConfig, StatefulConfig, StrimziConfig,
};
use sre_core::config::ConfigError;
use std::num::NonZeroU16;

/// `kube:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKube {
    /// Namespace of every object whose own section names none.
    namespace: Option<String>,
    /// kubeconfig context of the peer region's API server: used to fence the old CNPG
    /// primary and read its demotion token. Without it a promotion is never lossless.
    peer_context: Option<String>,
    routes: Option<RawRoutes>,
    mesh: Option<RawMesh>,
    cnpg: Option<RawCnpg>,
    ferretdb: Option<RawCnpg>,
    strimzi: Option<RawStrimzi>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoutes {
    namespace: Option<String>,
    #[serde(default)]
    names: Vec<String>,
    serving_backend: Option<String>,
    withdrawn_backend: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMesh {
    namespace: Option<String>,
    #[serde(default)]
    services: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCnpg {
    namespace: Option<String>,
    /// This region's `Cluster`.
    cluster: Option<String>,
    /// Its `spec.replica.self` (default: `cluster`).
    self_name: Option<String>,
    /// The peer's name in the topology.
    peer_name: Option<String>,
    /// The peer's `Cluster` on the peer API server (default: `peer_name`).
    peer_cluster: Option<String>,
    /// Its namespace there (default: this section's namespace).
    peer_namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrimzi {
    namespace: Option<String>,
    mirror_maker: Option<String>,
    local_alias: Option<String>,
    #[serde(default = "one")]
    standby_replicas: u16,
}

fn one() -> u16 {
    1
}

/// One CNPG topology, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CnpgSpec {
    /// Namespace of this region's `Cluster`.
    pub namespace: String,
    /// This region's `Cluster`.
    pub cluster: String,
    /// This region's name in the topology.
    pub self_name: String,
    /// The peer's name in the topology.
    pub peer_name: String,
    /// The peer's `Cluster` (namespace, name) on the peer API server.
    pub peer: (String, String),
}

/// The Strimzi section, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StrimziSpec {
    /// Namespace of the `KafkaMirrorMaker2`.
    pub namespace: String,
    /// Its name.
    pub mirror_maker: String,
    /// This region's alias (the mirrors' `targetCluster`).
    pub local_alias: String,
    /// Replicas while standby.
    pub standby_replicas: NonZeroU16,
}

/// The validated `kube:` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeLayers {
    /// kubeconfig context of the peer API server, if this region can reach it.
    pub peer_context: Option<String>,
    /// Namespace of the routes.
    pub routes_namespace: String,
    /// `HTTPRoute` names.
    pub routes: Vec<String>,
    /// Service the routes point at while serving.
    pub serving_backend: String,
    /// Endpoint-less Service they point at while withdrawn.
    pub withdrawn_backend: String,
    /// Namespace of the global Services.
    pub mesh_namespace: String,
    /// Cilium global Service names.
    pub mesh_services: Vec<String>,
    /// The application database.
    pub cnpg: Option<CnpgSpec>,
    /// FerretDB's CNPG cluster.
    pub ferretdb: Option<CnpgSpec>,
    /// Kafka mirroring into this region.
    pub strimzi: Option<StrimziSpec>,
}

/// Collects problems under `kube.<path>` while reading optional fields.
struct Check<'a>(&'a mut Vec<ConfigError>);

impl Check<'_> {
    fn need(&mut self, path: &str, v: Option<&String>) -> String {
        if let Some(s) = v.filter(|s| !s.trim().is_empty()) {
            s.clone()
        } else {
            self.0
                .push(ConfigError::new(format!("kube.{path}"), "required"));
            String::new()
        }
    }

    fn namespace(&mut self, section: &str, own: Option<&String>, dflt: Option<&String>) -> String {
        self.need(&format!("{section}.namespace"), own.or(dflt))
    }

    fn names(&mut self, path: &str, v: &[String]) -> Vec<String> {
        if v.is_empty() || v.iter().any(|s| s.trim().is_empty()) {
            self.0.push(ConfigError::new(
                format!("kube.{path}"),
                "at least one non-empty name",
            ));
        }
        v.to_vec()
    }

    fn cnpg(&mut self, section: &str, c: &RawCnpg, dflt: Option<&String>) -> CnpgSpec {
        let namespace = self.namespace(section, c.namespace.as_ref(), dflt);
        let cluster = self.need(&format!("{section}.cluster"), c.cluster.as_ref());
        let self_name = c.self_name.clone().unwrap_or_else(|| cluster.clone());
        let peer_name = self.need(&format!("{section}.peer_name"), c.peer_name.as_ref());
        if !peer_name.is_empty() && peer_name == self_name {
            self.0.push(ConfigError::new(
                format!("kube.{section}.peer_name"),
                "must differ from self_name: a cluster is a replica iff its name differs from spec.replica.primary",
            ));
        }
        let peer = (
            c.peer_namespace
                .clone()
                .unwrap_or_else(|| namespace.clone()),
            c.peer_cluster.clone().unwrap_or_else(|| peer_name.clone()),
        );
        CnpgSpec {
            namespace,
            cluster,
            self_name,
            peer_name,
            peer,
        }
    }
}

impl RawKube {
    /// Validates the section, pushing every problem to `errs`.
    pub fn validate(&self, errs: &mut Vec<ConfigError>) -> KubeLayers {
        let mut c = Check(errs);
        let ns = self.namespace.as_ref();
        let none_routes = RawRoutes {
            namespace: None,
            names: Vec::new(),
            serving_backend: None,
            withdrawn_backend: None,
        };
        let r = self.routes.as_ref().unwrap_or(&none_routes);
        let routes_namespace = c.namespace("routes", r.namespace.as_ref(), ns);
        let routes = c.names("routes.names", &r.names);
        let serving_backend = c.need("routes.serving_backend", r.serving_backend.as_ref());
        let withdrawn_backend = c.need("routes.withdrawn_backend", r.withdrawn_backend.as_ref());
        if !serving_backend.is_empty() && serving_backend == withdrawn_backend {
            c.0.push(ConfigError::new(
                "kube.routes.withdrawn_backend",
                "must differ from serving_backend (an endpoint-less Service)",
            ));
        }
        let (mesh_ns, mesh_services) = match &self.mesh {
            Some(m) => (m.namespace.as_ref(), m.services.as_slice()),
            None => (None, [].as_slice()),
        };
        let mesh_namespace = c.namespace("mesh", mesh_ns, ns);
        let mesh_services = c.names("mesh.services", mesh_services);
        let cnpg = self.cnpg.as_ref().map(|x| c.cnpg("cnpg", x, ns));
        let ferretdb = self.ferretdb.as_ref().map(|x| c.cnpg("ferretdb", x, ns));
        let strimzi = self.strimzi.as_ref().map(|s| {
            let namespace = c.namespace("strimzi", s.namespace.as_ref(), ns);
            let mirror_maker = c.need("strimzi.mirror_maker", s.mirror_maker.as_ref());
            let local_alias = c.need("strimzi.local_alias", s.local_alias.as_ref());
            let standby_replicas = NonZeroU16::new(s.standby_replicas).unwrap_or_else(|| {
                c.0.push(ConfigError::new(
                    "kube.strimzi.standby_replicas",
                    "must be at least 1 (0 replicas is what a promoted region looks like)",
                ));
                NonZeroU16::MIN
            });
            StrimziSpec {
                namespace,
                mirror_maker,
                local_alias,
                standby_replicas,
            }
        });
        KubeLayers {
            peer_context: self.peer_context.clone(),
            routes_namespace,
            routes,
            serving_backend,
            withdrawn_backend,
            mesh_namespace,
            mesh_services,
            cnpg,
            ferretdb,
            strimzi,
        }
    }
}

impl KubeLayers {
    /// The external-traffic actuator's config.
    #[must_use]
    pub fn routes_config(&self) -> HttpRouteConfig {
        HttpRouteConfig {
            namespace: self.routes_namespace.clone(),
            routes: self.routes.clone(),
            serving_backend: self.serving_backend.clone(),
            withdrawn_backend: self.withdrawn_backend.clone(),
        }
    }

    /// The internal-traffic actuator's config.
    #[must_use]
    pub fn mesh_config(&self) -> CiliumMeshConfig {
        CiliumMeshConfig {
            namespace: self.mesh_namespace.clone(),
            services: self.mesh_services.clone(),
        }
    }

    /// The stateful actuator's config; the peer `Cluster`s are named only when a peer
    /// API server is wired (`peer_context`), since nothing else could read them.
    #[must_use]
    pub fn stateful_config(&self) -> StatefulConfig {
        let topo = |c: &CnpgSpec| CnpgTopology {
            local: CnpgClusterRef {
                namespace: c.namespace.clone(),
                name: c.cluster.clone(),
            },
            self_name: c.self_name.clone(),
            peer_name: c.peer_name.clone(),
            peer: self.peer_context.as_ref().map(|_| CnpgClusterRef {
                namespace: c.peer.0.clone(),
                name: c.peer.1.clone(),
            }),
        };
        StatefulConfig {
            cnpg: self.cnpg.as_ref().map(topo),
            ferretdb: self.ferretdb.as_ref().map(topo),
            strimzi: self.strimzi.as_ref().map(|s| StrimziConfig {
                namespace: s.namespace.clone(),
                mirror_maker: s.mirror_maker.clone(),
                local_alias: s.local_alias.clone(),
                standby_replicas: s.standby_replicas,
            }),
        }
    }
}
