//! [`KmsRewrapTarget`]: an envelope-encryption master key (class `kms_master_key`) as a
//! rotation `CredentialTarget`, so that the controller runs it with the same staged,
//! resumable plan, approval gate, overlap and status as every other class, instead of
//! a second driver. The pure re-wrap plan (`sre_rotation::rewrap`) and the per-key
//! shell ([`crate::envelope`]) are reused; this maps them onto the four steps:
//!
//! - issue: add a master key version in transit (`rotate`); the KV version stores
//!   `{key, version}`. Not deduplicated: a repeat after a crash adds one more version,
//!   which is harmless (nothing is wrapped by the skipped one, and the re-wrap always
//!   moves data keys to the newest version).
//! - install: re-wrap every data key under `data_keys_path` (one KV level, field
//!   `ciphertext`) to that version, each checked to decrypt to the same key, with the
//!   cursor persisted in that folder path's custom metadata after every key: a crash
//!   halfway resumes with the first key not yet done. A key that does not decrypt the
//!   same is a refusal: the rotation aborts before anything is cut over.
//! - verify: every stored data key is wrapped by that version (or newer) and decrypts,
//!   and a fresh data key made with it unwraps: real transit calls.
//! - revoke: the cut-over. Retiring the previous version (after the overlap, during
//!   which ciphertexts that consumers still hold keep decrypting) raises
//!   `min_decryption_version` past it, but only once no stored data key is wrapped by
//!   it or older (otherwise the step fails and is retried, so no stored key can become
//!   undecryptable). A dropped pending version is the newest one, which transit cannot
//!   disable and which may already wrap data keys: it is left as it is.
//!
//! Every KV read and write of the target (data keys, cursor) goes through one
//! `SecretStore`, replaceable with [`KmsRewrapTarget::with_store`]: the crash tests
//! wrap it in a fault injector so that the real install stops after k of n data keys.
//!
//! Limitation: the first rotation has no previous KV version, so the master key
//! versions older than it stay decryptable until the second rotation retires its
//! predecessor (or an operator raises `min_decryption_version`).

use crate::client;
use crate::envelope::{self, Envelope, corrupt, rewrap_one};
use crate::keyring::BaoKeyring;
use crate::store::BaoSecretStore;
use crate::transit::signature_version;
use crate::{BaoConfig, error::Failure};
use async_trait::async_trait;
use rustify::endpoint::Endpoint;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use sre_core::PortError;
use sre_core::ports::{SecretData, SecretStore};
use sre_rotation::config::TargetSpec;
use sre_rotation::rewrap::{self, RewrapProgress, RewrapStep};
use sre_rotation::{CredentialTarget, Verification};
use std::fmt;
use std::sync::Arc;
use vaultrs::client::VaultClient;

/// A KMS master key and its data keys as a rotation target.
pub struct KmsRewrapTarget {
    keys: BaoKeyring,
    store: Arc<dyn SecretStore>,
    /// The KV mount of the data keys, for the raw listing (the port cannot list).
    kv_mount: String,
    client: VaultClient,
    key: String,
    data_keys_path: String,
}

impl fmt::Debug for KmsRewrapTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsRewrapTarget")
            .field("keys", &self.keys)
            .field("key", &self.key)
            .field("data_keys_path", &self.data_keys_path)
            .finish_non_exhaustive()
    }
}

/// `LIST <kv mount>/metadata/<folder>`: vaultrs 0.8's `kv2::list` hides the 404 of an
/// empty folder behind a generic error, so the raw call tells "no data keys" apart.
struct List(String);

impl Endpoint for List {
    type Response = serde_json::Value;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        self.0.clone()
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::LIST
    }
}

fn version_of(credential: &SecretData) -> Result<u64, PortError> {
    credential
        .get("version")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| PortError::Invalid("credential without a numeric version".into()))
}

impl KmsRewrapTarget {
    /// Master key `key` of the transit engine at `transit_mount`, data keys under the KV
    /// folder `data_keys_path` of `bao`'s KV mount.
    pub fn new(
        bao: &BaoConfig,
        transit_mount: impl Into<String>,
        key: impl Into<String>,
        data_keys_path: &str,
    ) -> Result<Self, crate::Error> {
        let store = BaoSecretStore::new(bao)?;
        Ok(Self {
            keys: BaoKeyring::new(bao, transit_mount)?,
            kv_mount: store.mount().to_owned(),
            store: Arc::new(store),
            client: client::build(bao)?,
            key: key.into(),
            data_keys_path: data_keys_path.trim_matches('/').to_owned(),
        })
    }

    /// Builds the target a `kms_rewrap` section names; `None` for another kind.
    pub fn from_spec(bao: &BaoConfig, spec: &TargetSpec) -> Result<Option<Self>, crate::Error> {
        match spec {
            TargetSpec::KmsRewrap {
                transit_mount,
                key,
                data_keys_path,
            } => Self::new(bao, transit_mount.clone(), key.clone(), data_keys_path).map(Some),
            _ => Ok(None),
        }
    }

    /// Sends every KV read and write of this target (the data keys and the re-wrap
    /// cursor) through `store` instead of the plain KV v2 client `new` made.
    ///
    /// Why it exists: it is the seam through which a wrapper sees each write of the
    /// real install, e.g. `testing::FaultyStore`, which makes install stop after k of
    /// n data keys so that the crash tests exercise the production re-wrap loop rather
    /// than a copy of it. The re-wrap logic is the same either way. `store` must be a
    /// view of the same KV mount of the same server: the data keys are still listed
    /// there directly, since the `SecretStore` port has no listing.
    #[must_use]
    pub fn with_store(mut self, store: Arc<dyn SecretStore>) -> Self {
        self.store = store;
        self
    }

    fn env(&self) -> Envelope<'_> {
        Envelope {
            keys: &self.keys,
            master_key: &self.key,
            store: &*self.store,
            progress_path: &self.data_keys_path,
        }
    }

    /// The KV paths of the data keys (one level under the folder; sub-folders are not
    /// data keys), sorted, as the re-wrap cursor needs.
    pub async fn data_keys(&self) -> Result<Vec<String>, PortError> {
        let what = format!("{}/metadata/{}", self.kv_mount, self.data_keys_path);
        let answer = vaultrs::api::exec_with_no_result(&self.client, List(what.clone())).await;
        let env = match answer {
            Ok(env) => env,
            Err(e) => {
                return match Failure::from_client(&e).into_port(&what) {
                    PortError::NotFound { .. } => Ok(Vec::new()),
                    e => Err(e),
                };
            }
        };
        let mut ids: Vec<String> = env
            .pointer("/data/keys")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| PortError::Malformed {
                backend: crate::error::BACKEND,
                what: what.clone(),
                message: "no data.keys".into(),
            })?
            .iter()
            .filter_map(serde_json::Value::as_str)
            .filter(|k| !k.ends_with('/'))
            .map(|k| format!("{}/{k}", self.data_keys_path))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The first data key wrapped by a version below `min`, if any.
    async fn first_below(&self, min: u64) -> Result<Option<(String, u64)>, PortError> {
        for id in self.data_keys().await? {
            let ct = envelope::ciphertext(&*self.store, &id).await?;
            let v = signature_version(&ct)
                .ok_or_else(|| corrupt(format!("data key {id} is not a transit ciphertext")))?;
            if v < min {
                return Ok(Some((id, v)));
            }
        }
        Ok(None)
    }
}

#[async_trait]
impl CredentialTarget for KmsRewrapTarget {
    async fn issue(&self) -> Result<SecretData, PortError> {
        self.keys.rotate(&self.key).await?;
        let info = self
            .keys
            .read(&self.key)
            .await?
            .ok_or_else(|| PortError::NotFound {
                what: format!("transit key {}", self.key),
            })?;
        Ok(SecretData::from_pairs([
            ("key", self.key.clone()),
            ("version", info.latest_version.to_string()),
        ]))
    }

    async fn install(&self, credential: &SecretData) -> Result<(), PortError> {
        let version = version_of(credential)?;
        let env = self.env();
        let mut p = match envelope::progress(env).await? {
            Some(p) if p.target_version == version => p,
            _ => {
                let p = RewrapProgress {
                    target_version: version,
                    done_through: None,
                };
                envelope::save(env, Some(&p)).await?;
                p
            }
        };
        let ids = self.data_keys().await?;
        loop {
            match rewrap::next(Some(&p), &ids) {
                RewrapStep::Rewrap { id } => {
                    rewrap_one(env, &id, version).await?;
                    p.done_through = Some(id);
                    envelope::save(env, Some(&p)).await?;
                }
                RewrapStep::CutOver { .. } | RewrapStep::Start => {
                    // Done: the cut-over itself waits for the overlap (`revoke`).
                    return envelope::save(env, None).await;
                }
            }
        }
    }

    async fn verify(&self, credential: &SecretData) -> Result<Verification, PortError> {
        let version = version_of(credential)?;
        if let Some((id, v)) = self.first_below(version).await? {
            return Ok(Verification::Refused {
                reason: format!("data key {id} is still wrapped by version {v} < {version}"),
            });
        }
        for id in self.data_keys().await? {
            let ct = envelope::ciphertext(&*self.store, &id).await?;
            match self.keys.decrypt(&self.key, &ct).await {
                Ok(_) => {}
                Err(PortError::Rejected { message, .. }) => {
                    return Ok(Verification::Refused {
                        reason: format!("data key {id} does not decrypt: {message}"),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        let probe = self.keys.data_key(&self.key).await?;
        if signature_version(&probe.ciphertext).is_none_or(|v| v < version) {
            return Ok(Verification::Refused {
                reason: format!("transit wraps new data keys below version {version}"),
            });
        }
        Ok(
            if self.keys.decrypt(&self.key, &probe.ciphertext).await? == probe.plaintext {
                Verification::Accepted
            } else {
                Verification::Refused {
                    reason: format!("a data key wrapped by version {version} unwraps differently"),
                }
            },
        )
    }

    async fn revoke(&self, credential: &SecretData) -> Result<(), PortError> {
        let version = version_of(credential)?;
        let Some(info) = self.keys.read(&self.key).await? else {
            return Ok(());
        };
        if info.min_decryption_version > version || version >= info.latest_version {
            return Ok(());
        }
        if let Some((id, v)) = self.first_below(version + 1).await? {
            return Err(PortError::Rejected {
                backend: crate::error::BACKEND,
                message: format!(
                    "cut-over refused: data key {id} is still wrapped by version {v} of {}",
                    self.key
                ),
            });
        }
        self.keys
            .set_min_decryption_version(&self.key, version + 1)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_kms_spec_builds_one_and_the_folder_is_trimmed() {
        let bao = BaoConfig::new("http://127.0.0.1:8200", "t");
        let spec = TargetSpec::KmsRewrap {
            transit_mount: "transit".into(),
            key: "master".into(),
            data_keys_path: "kms/data/".into(),
        };
        let t = KmsRewrapTarget::from_spec(&bao, &spec)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("a kms spec"));
        assert_eq!(t.data_keys_path, "kms/data");
        let other = TargetSpec::TransitSigning {
            transit_mount: "transit".into(),
            key: "k".into(),
        };
        assert!(matches!(KmsRewrapTarget::from_spec(&bao, &other), Ok(None)));
        assert!(version_of(&SecretData::from_pairs([("version", "x")])).is_err());
    }
}
