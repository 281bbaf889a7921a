//! KMS master-key rotation for envelope encryption, one resumable step at a time: the
//! pure plan is `sre_rotation::rewrap`; this is its shell over transit (rotate, `rewrap`,
//! decrypt) and KV v2 (the wrapped data keys, and the progress in custom metadata).
//!
//! A data key lives at a KV path with the field `ciphertext` (`vault:vN:...`). Each
//! step persists its result before the next one starts, so stopping anywhere (a crash)
//! and calling [`rewrap_step`] again continues with the first data key not yet done;
//! re-wrapping a key twice is harmless (transit re-wraps an up-to-date ciphertext to
//! itself). The cut-over (`min_decryption_version` = the new version) happens only once
//! every data key has been re-wrapped and decrypts to the same key as before.

use crate::error::BACKEND;
use crate::keyring::BaoKeyring;
use crate::transit::signature_version;
use sre_core::PortError;
use sre_core::ports::{SecretData, SecretStore};
use sre_rotation::rewrap::{self, RewrapProgress, RewrapStep};

/// Where one master-key rotation works.
#[derive(Clone, Copy)]
pub struct Envelope<'a> {
    /// The transit engine holding the master key.
    pub keys: &'a BaoKeyring,
    /// The master key's name.
    pub master_key: &'a str,
    /// KV store of the data keys and of the progress.
    pub store: &'a dyn SecretStore,
    /// KV path whose custom metadata holds the progress.
    pub progress_path: &'a str,
}

impl std::fmt::Debug for Envelope<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("keys", self.keys)
            .field("master_key", &self.master_key)
            .field("progress_path", &self.progress_path)
            .finish_non_exhaustive()
    }
}

pub(crate) fn corrupt(message: String) -> PortError {
    PortError::Rejected {
        backend: BACKEND,
        message,
    }
}

pub(crate) async fn save(
    env: Envelope<'_>,
    progress: Option<&RewrapProgress>,
) -> Result<(), PortError> {
    let mut custom = env
        .store
        .metadata(env.progress_path)
        .await?
        .map(|m| m.custom)
        .unwrap_or_default();
    rewrap::encode(progress, &mut custom);
    env.store
        .set_custom_metadata(env.progress_path, &custom)
        .await
}

/// Re-wraps data key `id` (a KV path) under the newest master key version, checks the
/// result is at `target_version` or newer and decrypts to the same key, and stores it.
/// Repeating it is harmless: an up-to-date ciphertext re-wraps to an equivalent one.
pub(crate) async fn rewrap_one(
    env: Envelope<'_>,
    id: &str,
    target_version: u64,
) -> Result<(), PortError> {
    let old = ciphertext(env.store, id).await?;
    let plain = env.keys.decrypt(env.master_key, &old).await?;
    let new = env.keys.rewrap(env.master_key, &old).await?;
    if signature_version(&new).is_none_or(|v| v < target_version) {
        return Err(corrupt(format!(
            "data key {id} re-wrapped below version {target_version}"
        )));
    }
    if env.keys.decrypt(env.master_key, &new).await? != plain {
        return Err(corrupt(format!(
            "data key {id} decrypts differently after re-wrap"
        )));
    }
    if new != old {
        env.store
            .write(id, &SecretData::from_pairs([("ciphertext", new)]), None)
            .await?;
    }
    Ok(())
}

/// The wrapped data key stored at `id` (field `ciphertext`).
pub(crate) async fn ciphertext(store: &dyn SecretStore, id: &str) -> Result<String, PortError> {
    store
        .read(id, None)
        .await?
        .and_then(|v| v.data.get("ciphertext").map(str::to_owned))
        .ok_or_else(|| corrupt(format!("data key {id} has no ciphertext")))
}

/// Loads the persisted progress (`None`: no re-wrap in flight).
pub async fn progress(env: Envelope<'_>) -> Result<Option<RewrapProgress>, PortError> {
    let custom = env
        .store
        .metadata(env.progress_path)
        .await?
        .map(|m| m.custom)
        .unwrap_or_default();
    rewrap::decode(&custom).map_err(|e| corrupt(e.to_string()))
}

/// Does the next step of rotating the master key over `data_keys` (KV paths) and
/// returns it; call until it returns [`RewrapStep::CutOver`]. A data key that no longer
/// decrypts to the same key after re-wrapping is an error and stops the rotation
/// before the cut-over.
#[tracing::instrument(skip_all, fields(key = env.master_key))]
pub async fn rewrap_step(env: Envelope<'_>, data_keys: &[String]) -> Result<RewrapStep, PortError> {
    let current = progress(env).await?;
    let step = rewrap::next(current.as_ref(), data_keys);
    match &step {
        RewrapStep::Start => {
            env.keys.rotate(env.master_key).await?;
            let info = env
                .keys
                .read(env.master_key)
                .await?
                .ok_or_else(|| PortError::NotFound {
                    what: format!("transit key {}", env.master_key),
                })?;
            let p = RewrapProgress {
                target_version: info.latest_version,
                done_through: None,
            };
            save(env, Some(&p)).await?;
        }
        RewrapStep::Rewrap { id } => {
            let mut p = current.unwrap_or(RewrapProgress {
                target_version: 0,
                done_through: None,
            });
            rewrap_one(env, id, p.target_version).await?;
            p.done_through = Some(id.clone());
            save(env, Some(&p)).await?;
        }
        RewrapStep::CutOver { min_version } => {
            env.keys
                .set_min_decryption_version(env.master_key, *min_version)
                .await?;
            save(env, None).await?;
        }
    }
    Ok(step)
}
