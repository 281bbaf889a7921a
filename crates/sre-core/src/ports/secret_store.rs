//! Versioned key/value secrets (OpenBao / Vault KV v2 semantics).

use crate::PortError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Secret key/value pairs. `Debug` prints the keys only, so a secret can be logged by
/// accident without leaking its values.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretData(pub BTreeMap<String, String>);

impl SecretData {
    /// Builds data from pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// The value under `key`, if any.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// One version of a secret, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretValue {
    /// The version number (starts at 1, grows by one per write).
    pub version: u64,
    /// The data of that version.
    pub data: SecretData,
}

/// What the store knows about one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersionInfo {
    /// The version number.
    pub version: u64,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Soft-deleted: readable again after undelete.
    pub deleted: bool,
    /// Destroyed: the data is gone for good.
    pub destroyed: bool,
}

/// Metadata of a secret path: its versions and the custom metadata that rotation uses to
/// remember which version is pending, current and previous across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMetadata {
    /// The newest version number.
    pub current_version: u64,
    /// Every version the store still knows about, oldest first.
    pub versions: Vec<SecretVersionInfo>,
    /// Free-form string metadata.
    pub custom: BTreeMap<String, String>,
}

/// A versioned secret store.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Reads `version` of `path`, or the newest when `None`; `Ok(None)` if there is no
    /// such path or version (or it was deleted or destroyed).
    async fn read(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<SecretValue>, PortError>;

    /// Writes a new version. With `cas: Some(n)` the write succeeds only if the newest
    /// version is `n` (`Some(0)`: only if the path does not exist yet); otherwise
    /// [`PortError::PreconditionFailed`]. Returns the new version number.
    async fn write(
        &self,
        path: &str,
        data: &SecretData,
        cas: Option<u64>,
    ) -> Result<u64, PortError>;

    /// Versions and custom metadata; `Ok(None)` if the path does not exist.
    async fn metadata(&self, path: &str) -> Result<Option<SecretMetadata>, PortError>;

    /// Replaces the custom metadata of `path`.
    async fn set_custom_metadata(
        &self,
        path: &str,
        custom: &BTreeMap<String, String>,
    ) -> Result<(), PortError>;

    /// Destroys the listed versions permanently.
    async fn destroy_versions(&self, path: &str, versions: &[u64]) -> Result<(), PortError>;
}
