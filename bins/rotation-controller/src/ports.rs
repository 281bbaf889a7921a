//! From the validated config to adapters: the OpenBao token (file or environment, never
//! logged), the KV store, one credential target per secret that has one, and the
//! database engines of the `engine:` blocks. Shared with `sre rotation` through the
//! same functions in its own wiring.

use anyhow::Context as _;
use sre_adapter_openbao::{
    BaoConfig, BaoSecretStore, GeneratedTokenTarget, KmsRewrapTarget, TransitSigningTarget,
};
use sre_adapter_postgres::{PgDynamicTarget, PgStaticTarget};
use sre_rotation::CredentialTarget;
use sre_rotation::config::{RotationConfig, TOKEN_ENV, TargetSpec};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::controller::Managed;
use crate::engines::{BaoEngine, EngineSetup};

/// The OpenBao token: the first line of `openbao.token_file`, or [`TOKEN_ENV`].
pub fn read_token(cfg: &RotationConfig) -> anyhow::Result<String> {
    let text = match &cfg.openbao.token_file {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("openbao.token_file {}", p.display()))?,
        None => std::env::var(TOKEN_ENV)
            .with_context(|| format!("no OpenBao token: set {TOKEN_ENV} or openbao.token_file"))?,
    };
    let token = text.trim().to_owned();
    anyhow::ensure!(!token.is_empty(), "the OpenBao token is empty");
    Ok(token)
}

/// The OpenBao client settings for `cfg` with `token`.
#[must_use]
pub fn bao_config(cfg: &RotationConfig, token: String) -> BaoConfig {
    let mut bao = BaoConfig::new(cfg.openbao.address.clone(), token);
    bao.mount.clone_from(&cfg.openbao.kv_mount);
    bao
}

/// The KV store and every secret with its target (`None`: reported, not rotated).
pub fn build(
    cfg: &RotationConfig,
    bao: &BaoConfig,
) -> anyhow::Result<(Arc<BaoSecretStore>, Vec<Managed>)> {
    let store = Arc::new(BaoSecretStore::new(bao).context("openbao client")?);
    let mut managed = Vec::new();
    for secret in &cfg.inventory.secrets {
        let target = match cfg.target(&secret.name) {
            None => None,
            Some(spec) => {
                Some(target(bao, spec).with_context(|| format!("target of {}", secret.name))?)
            }
        };
        managed.push(Managed {
            secret: secret.clone(),
            target,
        });
    }
    Ok((store, managed))
}

/// The database engine to configure per secret name, one for each `engine:` block
/// (see `Controller::with_engines`). No request is made.
pub fn engines(
    cfg: &RotationConfig,
    bao: &BaoConfig,
) -> anyhow::Result<BTreeMap<String, Arc<dyn EngineSetup>>> {
    cfg.engines
        .iter()
        .map(|(name, spec)| {
            let engine = BaoEngine::new(bao, spec.clone())
                .with_context(|| format!("database engine of {name}"))?;
            Ok((name.clone(), Arc::new(engine) as Arc<dyn EngineSetup>))
        })
        .collect()
}

/// The credential target a validated spec names, one adapter per kind. A kind that no
/// adapter builds is an error naming it (not a silently unrotated secret); the test
/// below builds every kind.
pub fn target(bao: &BaoConfig, spec: &TargetSpec) -> anyhow::Result<Arc<dyn CredentialTarget>> {
    fn arc<T: CredentialTarget + 'static>(t: T) -> Arc<dyn CredentialTarget> {
        Arc::new(t)
    }
    let built = match spec {
        TargetSpec::PostgresDynamic { .. } => PgDynamicTarget::from_spec(bao, spec)?.map(arc),
        TargetSpec::PostgresStatic { .. } => PgStaticTarget::from_spec(bao, spec)?.map(arc),
        TargetSpec::TransitSigning { .. } => TransitSigningTarget::from_spec(bao, spec)?.map(arc),
        TargetSpec::Generated { .. } => GeneratedTokenTarget::from_spec(spec)?.map(arc),
        TargetSpec::KmsRewrap { .. } => KmsRewrapTarget::from_spec(bao, spec)?.map(arc),
        _ => None,
    };
    built.with_context(|| format!("no adapter builds a {} target", spec.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sre_rotation::config::{LeaseRenewal, TokenEncoding};

    #[test]
    fn every_target_kind_builds_an_adapter() {
        let bao = BaoConfig::new("http://127.0.0.1:8200", "t");
        let specs = [
            TargetSpec::PostgresDynamic {
                database_mount: "database".into(),
                role: "app".into(),
                host: "127.0.0.1".into(),
                port: 5432,
                dbname: "postgres".into(),
                lease: LeaseRenewal::with_increment(LeaseRenewal::DEFAULT_INCREMENT),
            },
            TargetSpec::PostgresStatic {
                database_mount: "database".into(),
                role: "svc".into(),
                host: "127.0.0.1".into(),
                port: 5432,
                dbname: "postgres".into(),
            },
            TargetSpec::TransitSigning {
                transit_mount: "transit".into(),
                key: "release".into(),
            },
            TargetSpec::Generated {
                length: 32,
                encoding: TokenEncoding::Hex,
                verify_url: None,
            },
            TargetSpec::KmsRewrap {
                transit_mount: "transit".into(),
                key: "master".into(),
                data_keys_path: "kms/data-keys".into(),
            },
        ];
        for spec in &specs {
            assert!(target(&bao, spec).is_ok(), "{}", spec.kind());
        }
        let bad = BaoConfig::new("not a url", "t");
        assert!(target(&bad, &specs[1]).is_err());
    }
}
