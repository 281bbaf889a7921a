//! The ports the failover shell drives the three layers through, one trait per layer and
//! methods named by intent. The Kubernetes implementations live in `sre-adapter-kube`;
//! in-memory fakes are in the `testing` module (feature `test-util`).
//!
//! Every write carries the lease generation (the fencing token). An implementation
//! stamps it on the object it changes (an annotation or a field) and refuses with
//! [`LayerError::Stale`] when the object already carries a *higher* generation: that is
//! how a controller that lost its lease without noticing is kept from undoing the work
//! of its successor. Every method is idempotent and returns only after verifying the
//! change is visible (read back), so a retry after a timeout is always safe.

use async_trait::async_trait;
use serde::Serialize;
use sre_core::{Generation, PortError};
use thiserror::Error;

/// What a layer looks like now, as read back after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerStatus {
    /// True when this region serves on this layer (routes ready, endpoints shared,
    /// database primary).
    pub serving: bool,
    /// The highest generation stamped on the layer's objects, if any.
    pub generation: Option<Generation>,
    /// Human-readable detail for the timeline (which objects, which condition).
    pub detail: String,
}

/// Why a layer change did not happen.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The layer already carries a newer generation: we are a stale controller.
    #[error("layer carries generation {seen}, newer than ours ({ours}): refusing a stale write")]
    Stale {
        /// Our generation.
        ours: Generation,
        /// The generation found on the objects.
        seen: Generation,
    },
    /// The change was made but the read-back does not show it (yet).
    #[error("change not visible after write: {0}")]
    NotVerified(String),
    /// The target could not be reached (a fence of an unreachable old primary is skipped).
    #[error("target unreachable: {0}")]
    Unreachable(String),
    /// The backend failed.
    #[error(transparent)]
    Port(#[from] PortError),
}

/// Stateful services a promotion moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StatefulService {
    /// `CloudNativePG` cluster (replica cluster promotion / demotion).
    Cnpg,
    /// FerretDB on top of its CNPG cluster.
    FerretDb,
    /// Strimzi Kafka (MirrorMaker2 direction and client bootstrap).
    Strimzi,
}

/// External traffic: the `HTTPRoutes` k8gb watches to decide whether this region serves.
#[async_trait]
pub trait ExternalTraffic: Send + Sync {
    /// Marks the region's routes ready (`true`) or withdrawn (`false`).
    async fn set_routes_ready(
        &self,
        ready: bool,
        generation: Generation,
    ) -> Result<LayerStatus, LayerError>;
    /// Reads the routes' current state.
    async fn routes_status(&self) -> Result<LayerStatus, LayerError>;
}

/// Internal traffic: Cilium ClusterMesh global services.
#[async_trait]
pub trait InternalTraffic: Send + Sync {
    /// Shares (`true`) or withdraws (`false`) this region's global service endpoints.
    async fn set_mesh_endpoints(
        &self,
        shared: bool,
        generation: Generation,
    ) -> Result<LayerStatus, LayerError>;
    /// Reads the endpoints' current state.
    async fn mesh_status(&self) -> Result<LayerStatus, LayerError>;
}

/// Stateful services: databases and streams.
#[async_trait]
pub trait StatefulServices: Send + Sync {
    /// Demotes or fences the old primary in the peer region, if it can be reached.
    /// [`LayerError::Unreachable`] means there is nothing to fence from here.
    async fn fence_old_primary(&self, generation: Generation) -> Result<LayerStatus, LayerError>;
    /// Makes this region's copy of `service` the writable primary.
    async fn promote(
        &self,
        service: StatefulService,
        generation: Generation,
    ) -> Result<LayerStatus, LayerError>;
    /// Makes this region's copy of `service` a replica again.
    async fn demote(
        &self,
        service: StatefulService,
        generation: Generation,
    ) -> Result<LayerStatus, LayerError>;
    /// Reads `service`'s current state in this region.
    async fn status(&self, service: StatefulService) -> Result<LayerStatus, LayerError>;
}
