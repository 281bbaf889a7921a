//! Stateful services: CNPG replica-cluster promotion and demotion (FerretDB through its
//! own CNPG cluster), and the direction of Strimzi MirrorMaker2.
//!
//! **CNPG distributed topology** (`cloudnative-pg/cloudnative-pg: api/v1/cluster_funcs.go`,
//! `IsReplica`; `api/v1/cluster_types.go`, `ReplicaClusterConfiguration` and
//! `ClusterStatus.DemotionToken`; the switchover sequence in
//! `tests/e2e/replica_mode_cluster_test.go`). Every region's `Cluster` names the same
//! `spec.replica.primary`; a cluster is a replica exactly when its own name
//! (`spec.replica.self`, defaulting to `metadata.name`) differs from it. A legacy
//! `spec.replica.enabled` overrides that rule, so clusters that set it are refused here.
//! - Demote (and fence the peer): set `spec.replica.primary` to the other region. The
//!   operator shuts the primary down cleanly and publishes `status.demotionToken`
//!   (`pg_controldata` of the last checkpoint).
//! - Promote: set `spec.replica.primary` to this region, with
//!   `spec.replica.promotionToken` = the peer's demotion token when the peer can be read.
//!   CNPG then promotes only once this replica has replayed up to that point, so a
//!   switchover loses nothing. When the peer cannot be reached (the disaster case) the
//!   promotion goes out without a token: writes the old primary made after the last
//!   replayed WAL are lost, and the status detail says so. When the peer *is* reachable,
//!   promotion waits (`NotVerified`) until the peer is demoted and its token is published.
//!
//! **Strimzi** (`kafka.strimzi.io/v1beta2` `KafkaMirrorMaker2`): each region runs the
//! MirrorMaker2 that mirrors *into* it (`spec.mirrors[].targetCluster` = this region's
//! alias, as `spec.connectCluster` requires). Promotion stops mirroring into this region
//! (`spec.replicas: 0`), so the local cluster takes writes without being overwritten;
//! demotion starts it again (`spec.replicas: n`). A MirrorMaker2 whose mirrors target
//! another cluster is refused: its direction is not what this actuator assumes. Pointing
//! clients at the local bootstrap is left to the client configuration (local bootstrap
//! Services per region), not changed here.

use std::num::NonZeroU16;

use async_trait::async_trait;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use sre_core::{Generation, PortError};
use sre_failover::ports::{LayerError, LayerStatus, StatefulService, StatefulServices};

use crate::error::peer_error;
use crate::fencing::{read, refuse_stale, stamp_of, verify_read_back, write_unless_done};

/// Where a CNPG `Cluster` object lives on one API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CnpgClusterRef {
    /// Namespace of the `Cluster`.
    pub namespace: String,
    /// `metadata.name` of the `Cluster`.
    pub name: String,
}

/// One CNPG distributed topology across the two regions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CnpgTopology {
    /// This region's `Cluster` on the local API server.
    pub local: CnpgClusterRef,
    /// This region's name in the topology (its `spec.replica.self`, or `metadata.name`).
    pub self_name: String,
    /// The peer region's name in the topology.
    pub peer_name: String,
    /// The peer's `Cluster` on the peer API server, to fence it and to read its demotion
    /// token. `None` when this region cannot reach the peer's API server by design.
    pub peer: Option<CnpgClusterRef>,
}

/// The `KafkaMirrorMaker2` that mirrors into this region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrimziConfig {
    /// Namespace of the `KafkaMirrorMaker2`.
    pub namespace: String,
    /// Its `metadata.name`.
    pub mirror_maker: String,
    /// This region's Kafka alias in `spec.clusters[]` (the mirrors' `targetCluster`).
    pub local_alias: String,
    /// Replicas to run while this region is a standby (mirroring into it). Non-zero:
    /// zero replicas is what "promoted" looks like, so a demotion could not be told apart.
    pub standby_replicas: NonZeroU16,
}

/// What the stateful layer moves in this region; `None` = not deployed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatefulConfig {
    /// The application database.
    pub cnpg: Option<CnpgTopology>,
    /// FerretDB's own CNPG cluster (FerretDB is stateless on top of it).
    pub ferretdb: Option<CnpgTopology>,
    /// Kafka mirroring.
    pub strimzi: Option<StrimziConfig>,
}

/// [`StatefulServices`] over CNPG `Cluster`s and a Strimzi `KafkaMirrorMaker2`.
#[derive(Clone)]
pub struct KubeStatefulServices {
    local: Client,
    peer: Option<Client>,
    cfg: StatefulConfig,
}

impl std::fmt::Debug for KubeStatefulServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStatefulServices")
            .field("cfg", &self.cfg)
            .field("peer", &self.peer.is_some())
            .finish_non_exhaustive()
    }
}

/// `postgresql.cnpg.io/v1` `Cluster`.
fn cnpg_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster"),
        "clusters",
    )
}

/// `kafka.strimzi.io/v1beta2` `KafkaMirrorMaker2`.
fn mm2_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kafka.strimzi.io", "v1beta2", "KafkaMirrorMaker2"),
        "kafkamirrormaker2s",
    )
}

fn invalid(msg: String) -> LayerError {
    LayerError::Port(PortError::Invalid(msg))
}

fn str_at<'a>(obj: &'a DynamicObject, ptr: &str) -> Option<&'a str> {
    obj.data
        .pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// CNPG's `IsReplica`, refusing the legacy `enabled` switch this actuator does not drive.
fn cnpg_is_replica(obj: &DynamicObject, what: &str) -> Result<bool, LayerError> {
    let Some(replica) = obj.data.pointer("/spec/replica").filter(|v| !v.is_null()) else {
        return Ok(false);
    };
    if replica.get("enabled").is_some_and(|v| !v.is_null()) {
        return Err(invalid(format!(
            "{what} sets spec.replica.enabled (a standalone replica cluster); only a distributed \
             topology (spec.replica.primary/self) can be switched back and forth"
        )));
    }
    let me = str_at(obj, "/spec/replica/self").map_or_else(|| obj.name_any(), str::to_owned);
    Ok(str_at(obj, "/spec/replica/primary") != Some(me.as_str()))
}

fn cnpg_detail(obj: &DynamicObject) -> String {
    format!(
        "spec.replica.primary={}, status.currentPrimary={}, phase={}",
        str_at(obj, "/spec/replica/primary").unwrap_or("-"),
        str_at(obj, "/status/currentPrimary").unwrap_or("-"),
        str_at(obj, "/status/phase").unwrap_or("-"),
    )
}

fn mm2_replicas(obj: &DynamicObject) -> Option<u64> {
    obj.data.pointer("/spec/replicas").and_then(Value::as_u64)
}

/// What a promotion may carry, decided from the peer.
enum Token {
    /// The peer is demoted and published its token: a lossless switchover.
    Switchover(String),
    /// The peer cannot be read: a failover that may lose the last writes.
    Failover(String),
}

impl KubeStatefulServices {
    /// Builds the actuator on `local` (this region's API server) and, where this region
    /// can reach it, `peer` (the other region's API server, to fence its old primary and
    /// read its demotion token).
    #[must_use]
    pub fn new(local: Client, peer: Option<Client>, cfg: StatefulConfig) -> Self {
        Self { local, peer, cfg }
    }

    fn topology(&self, service: StatefulService) -> Option<&CnpgTopology> {
        match service {
            StatefulService::Cnpg => self.cfg.cnpg.as_ref(),
            StatefulService::FerretDb => self.cfg.ferretdb.as_ref(),
            StatefulService::Strimzi => None,
        }
    }

    fn clusters(client: &Client, at: &CnpgClusterRef) -> (Api<DynamicObject>, String) {
        (
            Api::namespaced_with(client.clone(), &at.namespace, &cnpg_resource()),
            format!("CNPG Cluster {}/{}", at.namespace, at.name),
        )
    }

    /// Sets `spec.replica.primary` on one `Cluster` (`obj`, just read), guarded and
    /// verified. `becomes_primary` says whether that cluster ends up the primary
    /// (`primary_name` is its own name).
    #[allow(clippy::too_many_arguments)] // reason: one guarded write, each argument is a distinct fact
    async fn switch_cluster(
        api: &Api<DynamicObject>,
        obj: DynamicObject,
        what: &str,
        generation: Generation,
        primary_name: &str,
        token: Option<&str>,
        becomes_primary: bool,
    ) -> Result<DynamicObject, LayerError> {
        refuse_stale(generation, stamp_of(&obj, what)?)?;
        let holds = cnpg_is_replica(&obj, what)? != becomes_primary;
        // A token only ever goes with a promotion; a demoted cluster must not keep an old
        // one, or its next promotion would be checked against a stale checkpoint.
        let token = if becomes_primary {
            token.map_or(Value::Null, |t| Value::String(t.into()))
        } else {
            Value::Null
        };
        let change = || json!({ "spec": { "replica": { "primary": primary_name, "promotionToken": token } } });
        let sent = write_unless_done(api, &obj, what, generation, holds, change).await?;
        let back = if sent {
            read(api, &obj.name_any(), what).await?
        } else {
            obj
        };
        let holds = cnpg_is_replica(&back, what)? != becomes_primary;
        verify_read_back(
            &back,
            what,
            generation,
            holds,
            if becomes_primary {
                "primary"
            } else {
                "a replica"
            },
        )?;
        Ok(back)
    }

    /// Reads the peer to decide how this promotion may go.
    async fn promotion_token(&self, topo: &CnpgTopology) -> Result<Token, LayerError> {
        let (Some(peer), Some(at)) = (&self.peer, &topo.peer) else {
            return Ok(Token::Failover("no peer API server configured".into()));
        };
        let (api, what) = Self::clusters(peer, at);
        let obj = match read(&api, &at.name, &what).await.map_err(peer_error) {
            Ok(obj) => obj,
            Err(LayerError::Unreachable(why)) => {
                return Ok(Token::Failover(format!("peer unreachable: {why}")));
            }
            Err(e) => return Err(e),
        };
        if !cnpg_is_replica(&obj, &what)? {
            return Err(LayerError::NotVerified(format!(
                "{what} is still the primary ({}): fence it before promoting",
                cnpg_detail(&obj)
            )));
        }
        match str_at(&obj, "/status/demotionToken") {
            Some(token) => Ok(Token::Switchover(token.to_owned())),
            None => Err(LayerError::NotVerified(format!(
                "{what} is demoted but has not published status.demotionToken yet"
            ))),
        }
    }

    async fn promote_cnpg(
        &self,
        topo: &CnpgTopology,
        generation: Generation,
    ) -> Result<LayerStatus, LayerError> {
        let (api, what) = Self::clusters(&self.local, &topo.local);
        let obj = read(&api, &topo.local.name, &what).await?;
        refuse_stale(generation, stamp_of(&obj, &what)?)?;
        // Only a cluster that still has to be promoted needs the peer's token; a repeated
        // call must not depend on the peer being reachable.
        let (token, how) = if cnpg_is_replica(&obj, &what)? {
            match self.promotion_token(topo).await? {
                Token::Switchover(t) => (
                    Some(t),
                    "switchover with the peer's demotion token".to_owned(),
                ),
                Token::Failover(why) => (
                    None,
                    format!(
                        "failover without a demotion token ({why}): writes after the last replayed WAL may be lost"
                    ),
                ),
            }
        } else {
            (None, "already primary".to_owned())
        };
        let back = Self::switch_cluster(
            &api,
            obj,
            &what,
            generation,
            &topo.self_name,
            token.as_deref(),
            true,
        )
        .await?;
        Ok(LayerStatus {
            serving: true,
            generation: Some(generation),
            detail: format!("{what}: {how}; {}", cnpg_detail(&back)),
        })
    }

    async fn demote_cnpg(
        &self,
        topo: &CnpgTopology,
        generation: Generation,
    ) -> Result<LayerStatus, LayerError> {
        let (api, what) = Self::clusters(&self.local, &topo.local);
        let obj = read(&api, &topo.local.name, &what).await?;
        let back = Self::switch_cluster(&api, obj, &what, generation, &topo.peer_name, None, false)
            .await?;
        Ok(LayerStatus {
            serving: false,
            generation: Some(generation),
            detail: format!(
                "{what}: replica of {}; {}",
                topo.peer_name,
                cnpg_detail(&back)
            ),
        })
    }

    fn mirror_makers(&self, cfg: &StrimziConfig) -> (Api<DynamicObject>, String) {
        (
            Api::namespaced_with(self.local.clone(), &cfg.namespace, &mm2_resource()),
            format!("KafkaMirrorMaker2 {}/{}", cfg.namespace, cfg.mirror_maker),
        )
    }

    /// Refuses a MirrorMaker2 that does not mirror into this region.
    fn check_direction(
        obj: &DynamicObject,
        cfg: &StrimziConfig,
        what: &str,
    ) -> Result<(), LayerError> {
        let mirrors = obj.data.pointer("/spec/mirrors").and_then(Value::as_array);
        let targets: Vec<&str> = mirrors
            .into_iter()
            .flatten()
            .map(|m| m.get("targetCluster").and_then(Value::as_str).unwrap_or(""))
            .collect();
        if targets.is_empty() || targets.iter().any(|t| *t != cfg.local_alias) {
            return Err(invalid(format!(
                "{what} mirrors into {targets:?}, not only into this region's cluster {:?}",
                cfg.local_alias
            )));
        }
        Ok(())
    }

    async fn set_strimzi(
        &self,
        cfg: &StrimziConfig,
        promote: bool,
        generation: Generation,
    ) -> Result<LayerStatus, LayerError> {
        let (api, what) = self.mirror_makers(cfg);
        let obj = read(&api, &cfg.mirror_maker, &what).await?;
        refuse_stale(generation, stamp_of(&obj, &what)?)?;
        Self::check_direction(&obj, cfg, &what)?;
        let want = if promote {
            0
        } else {
            u64::from(cfg.standby_replicas.get())
        };
        let sent = write_unless_done(
            &api,
            &obj,
            &what,
            generation,
            mm2_replicas(&obj) == Some(want),
            || json!({ "spec": { "replicas": want } }),
        )
        .await?;
        let back = if sent {
            read(&api, &cfg.mirror_maker, &what).await?
        } else {
            obj
        };
        let wanted = if promote {
            "stopped (replicas 0)"
        } else {
            "mirroring into this region"
        };
        verify_read_back(
            &back,
            &what,
            generation,
            mm2_replicas(&back) == Some(want),
            wanted,
        )?;
        Ok(LayerStatus {
            serving: promote,
            generation: Some(generation),
            detail: format!("{what}: {wanted}, spec.replicas={want}"),
        })
    }

    fn not_configured(service: StatefulService, serving: bool) -> LayerStatus {
        LayerStatus {
            serving,
            generation: None,
            detail: format!("{service:?} is not deployed in this region: nothing to move"),
        }
    }
}

#[async_trait]
impl StatefulServices for KubeStatefulServices {
    #[tracing::instrument(skip_all, fields(lease_epoch = generation.0))]
    async fn fence_old_primary(&self, generation: Generation) -> Result<LayerStatus, LayerError> {
        let Some(peer) = &self.peer else {
            return Err(LayerError::Unreachable(
                "no peer API server configured".into(),
            ));
        };
        let targets: Vec<(&CnpgTopology, &CnpgClusterRef)> = [&self.cfg.cnpg, &self.cfg.ferretdb]
            .into_iter()
            .flatten()
            .filter_map(|t| t.peer.as_ref().map(|p| (t, p)))
            .collect();
        if targets.is_empty() {
            return Err(LayerError::Unreachable(
                "no peer CNPG cluster configured".into(),
            ));
        }
        let mut details = Vec::with_capacity(targets.len());
        for (topo, at) in targets {
            let (api, what) = Self::clusters(peer, at);
            // The peer's cluster becomes a replica of ours.
            let obj = read(&api, &at.name, &what).await.map_err(peer_error)?;
            let back =
                Self::switch_cluster(&api, obj, &what, generation, &topo.self_name, None, false)
                    .await
                    .map_err(peer_error)?;
            details.push(format!("{what} demoted: {}", cnpg_detail(&back)));
        }
        Ok(LayerStatus {
            serving: false,
            generation: Some(generation),
            detail: details.join("; "),
        })
    }

    #[tracing::instrument(skip_all, fields(service = ?service, lease_epoch = generation.0))]
    async fn promote(
        &self,
        service: StatefulService,
        generation: Generation,
    ) -> Result<LayerStatus, LayerError> {
        match (service, self.topology(service), &self.cfg.strimzi) {
            (StatefulService::Strimzi, _, Some(cfg)) => {
                self.set_strimzi(cfg, true, generation).await
            }
            (_, Some(topo), _) => self.promote_cnpg(topo, generation).await,
            _ => Ok(Self::not_configured(service, true)),
        }
    }

    #[tracing::instrument(skip_all, fields(service = ?service, lease_epoch = generation.0))]
    async fn demote(
        &self,
        service: StatefulService,
        generation: Generation,
    ) -> Result<LayerStatus, LayerError> {
        match (service, self.topology(service), &self.cfg.strimzi) {
            (StatefulService::Strimzi, _, Some(cfg)) => {
                self.set_strimzi(cfg, false, generation).await
            }
            (_, Some(topo), _) => self.demote_cnpg(topo, generation).await,
            _ => Ok(Self::not_configured(service, false)),
        }
    }

    #[tracing::instrument(skip_all, fields(service = ?service))]
    async fn status(&self, service: StatefulService) -> Result<LayerStatus, LayerError> {
        if let (StatefulService::Strimzi, Some(cfg)) = (service, &self.cfg.strimzi) {
            let (api, what) = self.mirror_makers(cfg);
            let obj = read(&api, &cfg.mirror_maker, &what).await?;
            let replicas = mm2_replicas(&obj);
            return Ok(LayerStatus {
                serving: replicas == Some(0),
                generation: stamp_of(&obj, &what)?,
                detail: format!(
                    "{what}: spec.replicas={}",
                    replicas.map_or_else(|| "-".into(), |r| r.to_string())
                ),
            });
        }
        let Some(topo) = self.topology(service) else {
            return Ok(LayerStatus {
                serving: false,
                generation: None,
                detail: format!("{service:?} is not deployed in this region"),
            });
        };
        let (api, what) = Self::clusters(&self.local, &topo.local);
        let obj = read(&api, &topo.local.name, &what).await?;
        Ok(LayerStatus {
            serving: !cnpg_is_replica(&obj, &what)?,
            generation: stamp_of(&obj, &what)?,
            detail: format!("{what}: {}", cnpg_detail(&obj)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(name: &str, replica: &Value) -> DynamicObject {
        let mut obj = DynamicObject::new(name, &cnpg_resource());
        obj.data = json!({ "spec": { "replica": replica } });
        obj
    }

    #[test]
    fn cnpg_is_replica_follows_primary_versus_self() {
        let cases = [
            (json!(null), false),
            (json!({"primary": "eu", "source": "us"}), false),
            (json!({"primary": "us", "source": "us"}), true),
            (
                json!({"primary": "eu", "self": "europe", "source": "us"}),
                true,
            ),
            (
                json!({"primary": "europe", "self": "europe", "source": "us"}),
                false,
            ),
        ];
        for (replica, expect) in cases {
            let got = cnpg_is_replica(&cluster("eu", &replica), "c").ok();
            assert_eq!(got, Some(expect), "{replica}");
        }
    }

    #[test]
    fn legacy_enabled_clusters_are_refused() {
        let c = cluster("eu", &json!({"enabled": true, "source": "us"}));
        assert!(matches!(
            cnpg_is_replica(&c, "c"),
            Err(LayerError::Port(PortError::Invalid(_)))
        ));
    }
}
