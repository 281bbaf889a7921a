//! Builds the adapters the config names and hands them to `sre_failover::run` as ports.
//! Wiring only: every decision lives in `sre-failover`.

use crate::config::{ControllerConfig, WitnessChoice};
use anyhow::Context;
use sre_adapter_dns::{DnsServer, HickoryResolver};
use sre_adapter_s3::{S3Config, S3ObjectStore, S3Witness};
use sre_adapter_witness::{BearerToken, FileWitness, HttpWitness, LeaseName};
use sre_core::evidence::{EvidenceSink, FileEvidenceLog};
use sre_core::ports::{Resolver, Witness};
use sre_failover::execute::ExecutePorts;
use sre_failover::observe::ObservePorts;
use sre_failover::run::Ports;
use std::sync::Arc;

/// The witness adapter for `choice`, with the core's witness timeout as its own limit.
pub fn witness(cfg: &ControllerConfig) -> anyhow::Result<Arc<dyn Witness>> {
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
    })
}

/// All the ports for the loop.
pub fn ports(cfg: &ControllerConfig) -> anyhow::Result<Ports> {
    let witness = witness(cfg)?;
    let mut resolvers: Vec<Arc<dyn Resolver>> = Vec::new();
    for r in &cfg.resolvers {
        let mut server = DnsServer::new(r.name.clone(), r.addr);
        server.timeout = cfg.failover.timings.dns_timeout;
        let resolver =
            HickoryResolver::new(&server).with_context(|| format!("resolver {}", r.name))?;
        resolvers.push(Arc::new(resolver));
    }
    let evidence: Option<Arc<dyn EvidenceSink>> = match &cfg.evidence {
        Some(path) => Some(Arc::new(
            FileEvidenceLog::open(path)
                .with_context(|| format!("evidence log {}", path.display()))?,
        )),
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
            layers: None,
            evidence,
        },
    })
}
