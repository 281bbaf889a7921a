//! [`BaoTransit`]: signing keys in the OpenBao transit engine: create, rotate, sign,
//! verify, and `min_decryption_version`, which decides until when signatures made with
//! an old key version still verify (the overlap window of a signing-key rotation).

use crate::client;
use crate::config::BaoConfig;
use crate::error::{Error, Failure};
use crate::keyring::base64;
use sre_core::PortError;
use std::fmt;
use vaultrs::api::transit::KeyType;
use vaultrs::api::transit::requests::{CreateKeyRequest, UpdateKeyConfigurationRequest};
use vaultrs::client::VaultClient;

/// The outcome of a signature check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// The signature is valid for the input.
    Valid,
    /// The signature does not match the input.
    Invalid,
    /// The key refuses to check it: its version is below `min_decryption_version`, or
    /// the signature is malformed.
    Refused {
        /// What OpenBao said.
        reason: String,
    },
}

/// The transit engine at one mount.
pub struct BaoTransit {
    client: VaultClient,
    mount: String,
}

impl fmt::Debug for BaoTransit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaoTransit")
            .field("address", &self.client.settings.address.as_str())
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

/// The key version a transit signature was made with (`vault:v3:...` -> 3).
#[must_use]
pub fn signature_version(signature: &str) -> Option<u64> {
    signature
        .strip_prefix("vault:v")?
        .split(':')
        .next()?
        .parse()
        .ok()
}

impl BaoTransit {
    /// The engine at `mount` (e.g. `transit`). No request is made.
    pub fn new(config: &BaoConfig, mount: impl Into<String>) -> Result<Self, Error> {
        Ok(Self {
            client: client::build(config)?,
            mount: mount.into(),
        })
    }

    /// Mounts the engine; already mounted is success.
    #[tracing::instrument(skip_all, fields(mount = %self.mount))]
    pub async fn enable(&self) -> Result<(), PortError> {
        client::enable_engine(&self.client, &self.mount, "transit").await
    }

    /// Creates an Ed25519 signing key `name` (no-op if it exists).
    #[tracing::instrument(skip_all, fields(mount = %self.mount, key = name))]
    pub async fn create_signing_key(&self, name: &str) -> Result<(), PortError> {
        let mut b = CreateKeyRequest::builder();
        b.key_type(KeyType::Ed25519);
        vaultrs::transit::key::create(&self.client, &self.mount, name, Some(&mut b))
            .await
            .map_err(|e| Failure::from_client(&e).into_port(name))
    }

    /// Adds a new key version; new signatures use it, old versions stay for checking.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, key = name))]
    pub async fn rotate(&self, name: &str) -> Result<(), PortError> {
        vaultrs::transit::key::rotate(&self.client, &self.mount, name)
            .await
            .map_err(|e| Failure::from_client(&e).into_port(name))
    }

    /// Refuses signatures (and ciphertexts) made with versions below `version`: the end
    /// of a signing-key rotation's overlap window.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, key = name, version))]
    pub async fn set_min_decryption_version(
        &self,
        name: &str,
        version: u64,
    ) -> Result<(), PortError> {
        let mut b = UpdateKeyConfigurationRequest::builder();
        b.min_decryption_version(version);
        vaultrs::transit::key::update(&self.client, &self.mount, name, Some(&mut b))
            .await
            .map_err(|e| Failure::from_client(&e).into_port(name))
    }

    /// Signs `input` with the newest key version; the result names that version.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, key = name))]
    pub async fn sign(&self, name: &str, input: &[u8]) -> Result<String, PortError> {
        vaultrs::transit::data::sign(&self.client, &self.mount, name, &base64(input), None)
            .await
            .map(|r| r.signature)
            .map_err(|e| Failure::from_client(&e).into_port(name))
    }

    /// Checks `signature` over `input`. A refusal by policy is an answer, not an error;
    /// `Err` means the check could not be made.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, key = name))]
    pub async fn verify(
        &self,
        name: &str,
        input: &[u8],
        signature: &str,
    ) -> Result<SignatureCheck, PortError> {
        let mut b = vaultrs::api::transit::requests::VerifySignedDataRequest::builder();
        b.signature(signature.to_owned());
        match vaultrs::transit::data::verify(
            &self.client,
            &self.mount,
            name,
            &base64(input),
            Some(&mut b),
        )
        .await
        {
            Ok(r) if r.valid => Ok(SignatureCheck::Valid),
            Ok(_) => Ok(SignatureCheck::Invalid),
            Err(e) => match Failure::from_client(&e) {
                // "signature verification failed: ... version is disallowed by policy"
                Failure::Status { code: 400, errors } => Ok(SignatureCheck::Refused {
                    reason: errors.join("; "),
                }),
                f => Err(f.into_port(name)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc, "{plain:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn signature_versions_are_read_from_the_prefix() {
        assert_eq!(signature_version("vault:v3:abc="), Some(3));
        assert_eq!(signature_version("vault:vx:abc="), None);
        assert_eq!(signature_version("abc"), None);
    }
}
