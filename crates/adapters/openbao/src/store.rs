//! [`BaoSecretStore`]: the secret-store port over one KV v2 mount.

use crate::config::BaoConfig;
use crate::error::{BACKEND, Error, Failure};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sre_core::PortError;
use sre_core::ports::{SecretData, SecretMetadata, SecretStore, SecretValue, SecretVersionInfo};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use vaultrs::api::kv2::requests::{
    ReadSecretRequest, SetSecretMetadataRequest, SetSecretRequestOptions,
};
use vaultrs::client::VaultClient;

/// The [`SecretStore`] port over an OpenBao (or Vault) KV v2 mount.
///
/// One HTTP stack: every call goes through `vaultrs`' client, including the endpoints
/// it exposes only as raw requests.
pub struct BaoSecretStore {
    client: VaultClient,
    mount: String,
}

impl fmt::Debug for BaoSecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client holds the token; only say where it points.
        f.debug_struct("BaoSecretStore")
            .field("address", &self.client.settings.address.as_str())
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

impl BaoSecretStore {
    /// Builds the client. No request is made: an unreachable or sealed server shows up as
    /// [`PortError::Unavailable`] on the first call.
    pub fn new(config: &BaoConfig) -> Result<Self, Error> {
        let client = crate::client::build(config)?;
        Ok(Self {
            client,
            mount: config.mount.clone(),
        })
    }

    /// The KV v2 mount this store reads and writes.
    #[must_use]
    pub fn mount(&self) -> &str {
        &self.mount
    }
}

/// KV v2 data is a JSON object; this port carries string values only, and anything else
/// is reported, never coerced.
fn parse_data(value: serde_json::Value, path: &str) -> Result<Option<SecretData>, PortError> {
    if value.is_null() {
        // A deleted or destroyed version can come back as 200 with `data: null`.
        return Ok(None);
    }
    serde_json::from_value::<BTreeMap<String, String>>(value)
        .map(|m| Some(SecretData(m)))
        .map_err(|e| PortError::Malformed {
            backend: BACKEND,
            what: path.to_owned(),
            message: format!("secret data is not a string map: {e}"),
        })
}

fn parse_time(s: &str, path: &str) -> Result<DateTime<Utc>, PortError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| PortError::Malformed {
            backend: BACKEND,
            what: path.to_owned(),
            message: format!("timestamp {s:?}: {e}"),
        })
}

#[async_trait]
impl SecretStore for BaoSecretStore {
    #[tracing::instrument(skip_all, fields(mount = %self.mount, secret_path = %path, version = ?version))]
    async fn read(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<SecretValue>, PortError> {
        let req = ReadSecretRequest::builder()
            .mount(self.mount.as_str())
            .path(path)
            .version(version)
            .build()
            .map_err(|e| PortError::Invalid(format!("{path}: {e}")))?;
        match vaultrs::api::exec_with_result(&self.client, req).await {
            Ok(res) => Ok(parse_data(res.data, path)?.map(|data| SecretValue {
                version: res.metadata.version,
                data,
            })),
            Err(e) => {
                let f = Failure::from_client(&e);
                // No such path, no such version, or a deleted/destroyed version.
                if f.is_not_found() {
                    Ok(None)
                } else {
                    Err(f.into_port(path))
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(mount = %self.mount, secret_path = %path, cas = ?cas))]
    async fn write(
        &self,
        path: &str,
        data: &SecretData,
        cas: Option<u64>,
    ) -> Result<u64, PortError> {
        let res = match cas {
            None => vaultrs::kv2::set(&self.client, &self.mount, path, &data.0).await,
            Some(n) => {
                let cas = u32::try_from(n).map_err(|_| {
                    PortError::Invalid(format!("{path}: cas {n} exceeds the KV v2 range"))
                })?;
                vaultrs::kv2::set_with_options(
                    &self.client,
                    &self.mount,
                    path,
                    &data.0,
                    SetSecretRequestOptions { cas },
                )
                .await
            }
        };
        match res {
            Ok(meta) => Ok(meta.version),
            Err(e) => {
                let f = Failure::from_client(&e);
                if cas.is_some() && f.is_cas_mismatch() {
                    Err(PortError::PreconditionFailed {
                        what: path.to_owned(),
                    })
                } else {
                    Err(f.into_port(path))
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(mount = %self.mount, secret_path = %path))]
    async fn metadata(&self, path: &str) -> Result<Option<SecretMetadata>, PortError> {
        let res = match vaultrs::kv2::read_metadata(&self.client, &self.mount, path).await {
            Ok(res) => res,
            Err(e) => {
                let f = Failure::from_client(&e);
                return if f.is_not_found() {
                    Ok(None)
                } else {
                    Err(f.into_port(path))
                };
            }
        };
        let now = Utc::now();
        let mut versions = Vec::with_capacity(res.versions.len());
        for (num, v) in &res.versions {
            let version = num.parse::<u64>().map_err(|e| PortError::Malformed {
                backend: BACKEND,
                what: path.to_owned(),
                message: format!("version key {num:?}: {e}"),
            })?;
            // `deletion_time` is also set ahead of time when `delete_version_after` is
            // configured: only a time already passed means the version is deleted.
            let deleted = !v.deletion_time.is_empty() && parse_time(&v.deletion_time, path)? <= now;
            versions.push(SecretVersionInfo {
                version,
                created_at: parse_time(&v.created_time, path)?,
                deleted,
                destroyed: v.destroyed,
            });
        }
        versions.sort_by_key(|v| v.version);
        Ok(Some(SecretMetadata {
            current_version: res.current_version,
            versions,
            custom: res
                .custom_metadata
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(mount = %self.mount, secret_path = %path, keys = custom.len()))]
    async fn set_custom_metadata(
        &self,
        path: &str,
        custom: &BTreeMap<String, String>,
    ) -> Result<(), PortError> {
        let custom: HashMap<String, String> =
            custom.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut opts = SetSecretMetadataRequest::builder();
        opts.custom_metadata(custom);
        vaultrs::kv2::set_metadata(&self.client, &self.mount, path, Some(&mut opts))
            .await
            .map_err(|e| Failure::from_client(&e).into_port(path))
    }

    #[tracing::instrument(skip_all, fields(mount = %self.mount, secret_path = %path, versions = ?versions))]
    async fn destroy_versions(&self, path: &str, versions: &[u64]) -> Result<(), PortError> {
        if versions.is_empty() {
            return Ok(());
        }
        vaultrs::kv2::destroy_versions(&self.client, &self.mount, path, versions.to_vec())
            .await
            .map_err(|e| Failure::from_client(&e).into_port(path))
    }
}
