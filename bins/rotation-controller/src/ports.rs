//! From the validated config to adapters: the OpenBao token (file or environment, never
//! logged), the KV store and one credential target per secret that has one. Shared with
//! `sre rotation` through the same functions in its own wiring.

use anyhow::Context as _;
use sre_adapter_openbao::{BaoConfig, BaoSecretStore, TransitSigningTarget};
use sre_adapter_postgres::PgDynamicTarget;
use sre_rotation::CredentialTarget;
use sre_rotation::config::{RotationConfig, TOKEN_ENV};
use std::sync::Arc;

use crate::controller::Managed;

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
        let target: Option<Arc<dyn CredentialTarget>> = match cfg.target(&secret.name) {
            None => None,
            Some(spec) => {
                let what = || format!("target of {}", secret.name);
                let pg = PgDynamicTarget::from_spec(bao, spec).with_context(what)?;
                let transit = TransitSigningTarget::from_spec(bao, spec).with_context(what)?;
                pg.map(|t| Arc::new(t) as Arc<dyn CredentialTarget>)
                    .or_else(|| transit.map(|t| Arc::new(t) as Arc<dyn CredentialTarget>))
            }
        };
        managed.push(Managed {
            secret: secret.clone(),
            target,
        });
    }
    Ok((store, managed))
}
