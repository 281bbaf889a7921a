//! [`TransitSigningTarget`]: an Ed25519 signing or JWT key in the transit engine as a
//! rotation `CredentialTarget`. The KV version holds `{key, version, public_key}`; the
//! key material never leaves OpenBao.
//!
//! - issue: add a transit key version (create the key on first use); it is the pending
//!   one. Idempotent: because the plan retires the previous version before it creates a
//!   new one, `latest_version > min_decryption_version` at issue time can only mean that
//!   a crash lost the bookkeeping of an earlier issue, and that version is reused.
//! - install: nothing to set (transit already holds the version); checks it is usable.
//! - verify: a real sign with exactly that version, then a verify.
//! - promote: nothing at the target: `min_decryption_version` stays at the previous
//!   version during the overlap, so signatures made with it keep verifying.
//! - revoke (retire): raise `min_decryption_version` past the version. Transit cannot
//!   disable its newest version alone, so revoking a rejected pending version is
//!   refused (the rotation stays `aborting`, reported as failed, for a human).

use crate::config::BaoConfig;
use crate::error::{BACKEND, Error};
use crate::keyring::{BaoKeyring, Verdict};
use async_trait::async_trait;
use sre_core::PortError;
use sre_core::ports::SecretData;
use sre_rotation::config::TargetSpec;
use sre_rotation::{CredentialTarget, Verification};

/// Signed in the test step; any fixed text works, the check is that the version signs
/// and that transit accepts its own signature.
const PROBE: &[u8] = b"sre-rotation signing-key probe";

/// A transit signing key as a rotation target.
#[derive(Debug)]
pub struct TransitSigningTarget {
    keys: BaoKeyring,
    key: String,
}

fn version_of(credential: &SecretData) -> Result<u64, PortError> {
    credential
        .get("version")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| PortError::Invalid("credential without a numeric version".into()))
}

impl TransitSigningTarget {
    /// Key `key` of the transit engine `keys`.
    #[must_use]
    pub fn new(keys: BaoKeyring, key: impl Into<String>) -> Self {
        Self {
            keys,
            key: key.into(),
        }
    }

    /// Builds the target a `transit_signing` section names; `None` for another kind.
    pub fn from_spec(bao: &BaoConfig, spec: &TargetSpec) -> Result<Option<Self>, Error> {
        match spec {
            TargetSpec::TransitSigning { transit_mount, key } => Ok(Some(Self::new(
                BaoKeyring::new(bao, transit_mount.clone())?,
                key.clone(),
            ))),
            _ => Ok(None),
        }
    }

    /// The key name in transit.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    async fn info(&self) -> Result<crate::TransitKeyInfo, PortError> {
        self.keys
            .read(&self.key)
            .await?
            .ok_or_else(|| PortError::NotFound {
                what: format!("transit key {}", self.key),
            })
    }
}

#[async_trait]
impl CredentialTarget for TransitSigningTarget {
    async fn issue(&self) -> Result<SecretData, PortError> {
        let info = match self.keys.read(&self.key).await? {
            None => {
                self.keys.create(&self.key, "ed25519").await?;
                self.info().await?
            }
            Some(i) if i.latest_version > i.min_decryption_version => i,
            Some(_) => {
                self.keys.rotate(&self.key).await?;
                self.info().await?
            }
        };
        let v = info.latest_version;
        Ok(SecretData::from_pairs([
            ("key", self.key.clone()),
            ("version", v.to_string()),
            (
                "public_key",
                info.public_keys.get(&v).cloned().unwrap_or_default(),
            ),
        ]))
    }

    async fn install(&self, credential: &SecretData) -> Result<(), PortError> {
        let v = version_of(credential)?;
        let info = self.info().await?;
        if v < info.min_decryption_version || v > info.latest_version {
            return Err(PortError::Rejected {
                backend: BACKEND,
                message: format!(
                    "version {v} is outside {}..={} of transit key {}",
                    info.min_decryption_version, info.latest_version, self.key
                ),
            });
        }
        Ok(())
    }

    async fn verify(&self, credential: &SecretData) -> Result<Verification, PortError> {
        let v = version_of(credential)?;
        let sig = match self.keys.sign_with(&self.key, v, PROBE).await {
            Ok(s) => s,
            Err(PortError::Rejected { message, .. }) => {
                return Ok(Verification::Refused { reason: message });
            }
            Err(e) => return Err(e),
        };
        Ok(match self.keys.verify(&self.key, PROBE, &sig).await? {
            Verdict::Valid => Verification::Accepted,
            Verdict::Invalid => Verification::Refused {
                reason: format!("transit rejected its own signature with version {v}"),
            },
            Verdict::Refused { reason } => Verification::Refused { reason },
        })
    }

    async fn revoke(&self, credential: &SecretData) -> Result<(), PortError> {
        let v = version_of(credential)?;
        let Some(info) = self.keys.read(&self.key).await? else {
            return Ok(());
        };
        if info.min_decryption_version > v {
            return Ok(());
        }
        if v >= info.latest_version {
            return Err(PortError::Rejected {
                backend: BACKEND,
                message: format!(
                    "transit cannot disable version {v}, the newest of key {}; rotate again \
                     or disable the key by hand",
                    self.key
                ),
            });
        }
        self.keys.set_min_decryption_version(&self.key, v + 1).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_needs_a_numeric_version() {
        assert_eq!(
            version_of(&SecretData::from_pairs([("version", "4")])),
            Ok(4)
        );
        assert!(version_of(&SecretData::from_pairs([("version", "x")])).is_err());
        assert!(version_of(&SecretData::default()).is_err());
    }
}
