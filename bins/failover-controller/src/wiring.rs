//! Builds the adapters the config names and hands them to `sre_failover::run` as ports.
//! Wiring only: every decision lives in `sre-failover`.

use crate::config::{ControllerConfig, EvidenceChoice, WitnessChoice};
use anyhow::Context;
use sre_adapter_dns::{DnsServer, HickoryResolver};
use sre_adapter_kube::{
    CiliumMeshTraffic, HttpRouteTraffic, KubeLeaseWitness, KubeStatefulServices,
};
use sre_adapter_s3::{S3Config, S3ObjectStore, S3Witness};
use sre_adapter_witness::{BearerToken, FileWitness, HttpWitness, LeaseName};
use sre_core::approval::Principal;
use sre_core::evidence::{EvidenceSink, FileEvidenceLog, ObjectStoreEvidenceLog};
use sre_core::ports::{ObjectStore, Resolver, Witness};
use sre_failover::control::ControlSettings;
use sre_failover::execute::{ExecutePorts, Layers};
use sre_failover::observe::ObservePorts;
use sre_failover::run::Ports;
use std::sync::Arc;

/// The witness adapter for `choice`, with the core's witness timeout as its own limit.
///
/// A Kubernetes Lease witness needs an API server config; without one this is
/// [`ClusterUnavailable`] (exit 69).
pub async fn witness(cfg: &ControllerConfig) -> anyhow::Result<Arc<dyn Witness>> {
    let timeout = cfg.failover.timings.witness_timeout;
    Ok(match &cfg.witness {
        WitnessChoice::S3 {
            endpoint,
            bucket,
            key,
            s3_region,
            access_key,
            secret_key,
            force_path_style,
        } => {
            let mut c = S3Config::new(s3_region, bucket, access_key, &secret_key.0);
            c.endpoint.clone_from(endpoint);
            c.force_path_style = *force_path_style;
            // One attempt within the witness timeout: a retry belongs to the next tick,
            // when the core can decide with fresh observations.
            c.timeout = timeout;
            c.max_attempts = 1;
            Arc::new(S3Witness::new(S3ObjectStore::new(&c), key.clone()))
        }
        WitnessChoice::File { path } => {
            Arc::new(FileWitness::new(path.clone()).context("file witness")?)
        }
        WitnessChoice::Http { url, lease, token } => {
            let name = LeaseName::new(lease.clone()).context("witness.lease")?;
            let token = BearerToken::new(token.0.clone()).context("witness.token")?;
            Arc::new(HttpWitness::new(url, name, &token, timeout).context("http witness")?)
        }
        WitnessChoice::Kube { namespace, name } => {
            // What `Client::try_default` does, with the witness timeout on the socket, so
            // a hung API server is a failed read within the tick, not a stuck loop.
            let mut config = kube::Config::infer()
                .await
                .map_err(|e| ClusterUnavailable::witness(e.to_string()))?;
            config.connect_timeout = Some(timeout);
            config.read_timeout = Some(timeout);
            config.write_timeout = Some(timeout);
            let client = kube::Client::try_from(config)
                .map_err(|e| ClusterUnavailable::witness(e.to_string()))?;
            Arc::new(KubeLeaseWitness::new(
                client,
                namespace.clone(),
                name.clone(),
            ))
        }
    })
}

/// No Kubernetes client configuration could be found or loaded (exit 69: the API
/// server is unavailable to us, not a flaw in the failover config).
#[derive(Debug)]
pub struct ClusterUnavailable {
    /// The part of the config that needs the cluster (`layers: kube`, `witness: kind kube`).
    pub needed_by: &'static str,
    /// Why no client could be built.
    pub reason: String,
}

impl ClusterUnavailable {
    fn layers(reason: String) -> Self {
        Self {
            needed_by: "layers: kube",
            reason,
        }
    }

    fn witness(reason: String) -> Self {
        Self {
            needed_by: "witness: kind kube",
            reason,
        }
    }
}

impl std::fmt::Display for ClusterUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} needs a Kubernetes API server: {} (in a pod: the service account; elsewhere: KUBECONFIG or ~/.kube/config)",
            self.needed_by, self.reason
        )
    }
}

impl std::error::Error for ClusterUnavailable {}

/// The three layer actuators over this region's API server (and, with `peer_context`,
/// the peer's, for fencing and the CNPG demotion token).
async fn kube_layers(k: &crate::layers::KubeLayers) -> anyhow::Result<Layers> {
    let local = kube::Client::try_default()
        .await
        .map_err(|e| ClusterUnavailable::layers(e.to_string()))?;
    let peer =
        match &k.peer_context {
            Some(context) => {
                let options = kube::config::KubeConfigOptions {
                    context: Some(context.clone()),
                    ..Default::default()
                };
                let config = kube::Config::from_kubeconfig(&options).await.map_err(|e| {
                    ClusterUnavailable::layers(format!("peer context {context}: {e}"))
                })?;
                Some(kube::Client::try_from(config).map_err(|e| {
                    ClusterUnavailable::layers(format!("peer context {context}: {e}"))
                })?)
            }
            None => None,
        };
    Ok(Layers {
        external: Arc::new(HttpRouteTraffic::new(local.clone(), k.routes_config())),
        internal: Arc::new(CiliumMeshTraffic::new(local.clone(), k.mesh_config())),
        stateful: Arc::new(KubeStatefulServices::new(local, peer, k.stateful_config())),
    })
}

/// Who requests approvals (this controller), who may grant them, for how long.
pub fn control_settings(cfg: &ControllerConfig) -> ControlSettings {
    let mut s = ControlSettings::for_region(&cfg.failover.this_region);
    if let Some(c) = &cfg.control {
        s.approvers = c.approvers.iter().cloned().map(Principal::new).collect();
        s.ttl = c.approval_ttl;
    }
    s
}

/// The audit chain the config names: a local file or create-only objects in S3.
pub async fn evidence(cfg: &ControllerConfig) -> anyhow::Result<Option<Arc<dyn EvidenceSink>>> {
    Ok(match &cfg.evidence {
        None => None,
        Some(EvidenceChoice::File { path }) => Some(Arc::new(
            FileEvidenceLog::open(path)
                .with_context(|| format!("evidence log {}", path.display()))?,
        )),
        Some(EvidenceChoice::S3 {
            endpoint,
            bucket,
            prefix,
            s3_region,
            access_key,
            secret_key,
            force_path_style,
        }) => {
            let mut c = S3Config::new(s3_region, bucket, access_key, &secret_key.0);
            c.endpoint.clone_from(endpoint);
            c.force_path_style = *force_path_style;
            let store: Arc<dyn ObjectStore> = Arc::new(S3ObjectStore::new(&c));
            Some(Arc::new(
                ObjectStoreEvidenceLog::open(store, prefix.clone())
                    .await
                    .with_context(|| format!("evidence chain s3://{bucket}/{prefix}"))?,
            ))
        }
    })
}

/// All the ports for the loop.
pub async fn ports(cfg: &ControllerConfig) -> anyhow::Result<Ports> {
    let witness = witness(cfg).await?;
    let mut resolvers: Vec<Arc<dyn Resolver>> = Vec::new();
    for r in &cfg.resolvers {
        let mut server = DnsServer::new(r.name.clone(), r.addr);
        server.timeout = cfg.failover.timings.dns_timeout;
        let resolver =
            HickoryResolver::new(&server).with_context(|| format!("resolver {}", r.name))?;
        resolvers.push(Arc::new(resolver));
    }
    let evidence = evidence(cfg).await?;
    let layers = match &cfg.kube {
        Some(k) => Some(kube_layers(k).await?),
        None => None,
    };
    Ok(Ports {
        observe: ObservePorts {
            witness: witness.clone(),
            resolvers,
            health: cfg.health.clone(),
        },
        execute: ExecutePorts {
            witness,
            layers,
            evidence,
        },
    })
}
