//! Kubernetes actuators for the failover layer ports: `HTTPRoute` backends as k8gb sees
//! them, Cilium ClusterMesh global services, CNPG replica clusters and Strimzi MirrorMaker2;
//! and the remediation executors (`KubeWorkloads`: scale, restart, rollback, evict, vLLM
//! batch size, cert-manager renewal, k8gb `Gslb` status, Service failover to a backup).
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod certificates;
mod error;
mod fencing;
mod lease;
mod mesh;
pub mod rbac;
mod reload;
mod routes;
pub mod runbook;
mod stateful;
mod traffic;
mod workloads;

pub use certificates::{CertificateStatus, IssuedValidity};
pub use fencing::GENERATION_ANNOTATION;
pub use lease::{KubeLeaseWitness, LEASE_RECORD_ANNOTATION, MANAGED_BY_LABEL};
pub use mesh::{CiliumMeshConfig, CiliumMeshTraffic, GLOBAL_ANNOTATION, SHARED_ANNOTATION};
pub use reload::{
    FORCE_SYNC_ANNOTATION, KubeReload, RELOADED_FROM_ANNOTATION, ROTATION_FIELD_MANAGER,
};
pub use routes::{HttpRouteConfig, HttpRouteTraffic};
pub use stateful::{
    CnpgClusterRef, CnpgTopology, KubeStatefulServices, StatefulConfig, StrimziConfig,
};
pub use traffic::SELECTOR_BEFORE_FAILOVER_ANNOTATION;
pub use workloads::{
    KubeWorkloads, MAX_NUM_SEQS_ARG, REMEDIATION_FIELD_MANAGER, RESTARTED_AT_ANNOTATION,
    REVISION_ANNOTATION,
};
