//! Kubernetes actuators for the failover layer ports: `HTTPRoute` backends as k8gb sees
//! them, Cilium ClusterMesh global services, CNPG replica clusters and Strimzi MirrorMaker2.
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod fencing;
mod mesh;
mod routes;
mod stateful;

pub use fencing::GENERATION_ANNOTATION;
pub use mesh::{CiliumMeshConfig, CiliumMeshTraffic, GLOBAL_ANNOTATION, SHARED_ANNOTATION};
pub use routes::{HttpRouteConfig, HttpRouteTraffic};
pub use stateful::{
    CnpgClusterRef, CnpgTopology, KubeStatefulServices, StatefulConfig, StrimziConfig,
};
