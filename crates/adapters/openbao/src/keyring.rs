//! [`BaoKeyring`]: the transit calls that signing-key and KMS master-key rotation need
//! beyond [`BaoTransit`](crate::BaoTransit): reading every key version with its public
//! key and `min_decryption_version`, signing with a chosen version (to test a pending
//! one), and the envelope-encryption calls (data keys, decrypt, `rewrap`).

use crate::client::{self, Raw};
use crate::config::BaoConfig;
use crate::error::{BACKEND, Error, Failure};
use serde_json::json;
use sre_core::PortError;
use std::collections::BTreeMap;
use std::fmt;
use vaultrs::client::VaultClient;

/// What transit holds about one key: the versions it still has and which of them may
/// still decrypt or verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitKeyInfo {
    /// Newest version: new signatures and ciphertexts use it.
    pub latest_version: u64,
    /// Versions below this are refused for decrypt and verify.
    pub min_decryption_version: u64,
    /// Public key per version (asymmetric keys; empty text for symmetric ones).
    pub public_keys: BTreeMap<u64, String>,
}

/// The outcome of a signature check through [`BaoKeyring::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The signature is valid.
    Valid,
    /// It does not match the input.
    Invalid,
    /// Transit refuses to check it (version below `min_decryption_version`, malformed).
    Refused {
        /// What OpenBao said.
        reason: String,
    },
}

/// A fresh data key from transit: the plaintext for the caller to encrypt with, the
/// ciphertext (wrapped by the master key) to store.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey {
    /// Base64 plaintext key. Never logged.
    pub plaintext: String,
    /// `vault:vN:...`, wrapped by version N of the master key.
    pub ciphertext: String,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("plaintext", &"<redacted>")
            .field("ciphertext", &self.ciphertext)
            .finish()
    }
}

/// The transit engine at one mount, for key-lifecycle work.
pub struct BaoKeyring {
    client: VaultClient,
    mount: String,
}

impl fmt::Debug for BaoKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaoKeyring")
            .field("address", &self.client.settings.address.as_str())
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

/// Standard base64 with padding, as transit expects its `input`.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn malformed(what: &str, message: impl Into<String>) -> PortError {
    PortError::Malformed {
        backend: BACKEND,
        what: what.to_owned(),
        message: message.into(),
    }
}

fn data_str(env: &serde_json::Value, field: &str, what: &str) -> Result<String, PortError> {
    env.pointer(&format!("/data/{field}"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| malformed(what, format!("no data.{field}")))
}

/// Reads the key-info envelope of `GET <mount>/keys/<name>`.
fn key_info(env: &serde_json::Value, what: &str) -> Result<TransitKeyInfo, PortError> {
    let num = |f: &str| {
        env.pointer(&format!("/data/{f}"))
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| malformed(what, format!("no data.{f}")))
    };
    let keys = env
        .pointer("/data/keys")
        .and_then(serde_json::Value::as_object)
        .ok_or_else(|| malformed(what, "no data.keys"))?;
    let mut public_keys = BTreeMap::new();
    for (v, k) in keys {
        let v: u64 = v
            .parse()
            .map_err(|_| malformed(what, format!("key version {v:?}")))?;
        // Asymmetric keys list an object with `public_key`; symmetric ones a timestamp.
        let pk = k
            .get("public_key")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        public_keys.insert(v, pk.to_owned());
    }
    Ok(TransitKeyInfo {
        latest_version: num("latest_version")?,
        min_decryption_version: num("min_decryption_version")?,
        public_keys,
    })
}

impl BaoKeyring {
    /// The engine at `mount` (e.g. `transit`). No request is made.
    pub fn new(config: &BaoConfig, mount: impl Into<String>) -> Result<Self, Error> {
        Ok(Self {
            client: client::build(config)?,
            mount: mount.into(),
        })
    }

    /// Mounts the engine; already mounted is success.
    pub async fn enable(&self) -> Result<(), PortError> {
        client::enable_engine(&self.client, &self.mount, "transit").await
    }

    /// Creates key `name` of transit type `key_type` (`ed25519`, `aes256-gcm96`, ...);
    /// an existing key is left as it is.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, key = name))]
    pub async fn create(&self, name: &str, key_type: &str) -> Result<(), PortError> {
        let path = format!("{}/keys/{name}", self.mount);
        // Transit answers 204 here, or 200 with the key info on newer servers.
        match client::empty(
            &self.client,
            Raw::put(path.clone(), json!({ "type": key_type })),
            name,
        )
        .await
        {
            Ok(()) | Err(PortError::Malformed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The key's versions; `None` when it does not exist.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, key = name))]
    pub async fn read(&self, name: &str) -> Result<Option<TransitKeyInfo>, PortError> {
        let path = format!("{}/keys/{name}", self.mount);
        match client::envelope(&self.client, Raw::get(path), name).await {
            Ok(env) => key_info(&env, name).map(Some),
            Err(PortError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Adds a version; new signatures and ciphertexts use it from now on.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, key = name))]
    pub async fn rotate(&self, name: &str) -> Result<(), PortError> {
        vaultrs::transit::key::rotate(&self.client, &self.mount, name)
            .await
            .map_err(|e| Failure::from_client(&e).into_port(name))
    }

    /// Sets `min_decryption_version`: versions below it stop verifying and decrypting.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, key = name, version))]
    pub async fn set_min_decryption_version(
        &self,
        name: &str,
        version: u64,
    ) -> Result<(), PortError> {
        let mut b = vaultrs::api::transit::requests::UpdateKeyConfigurationRequest::builder();
        b.min_decryption_version(version);
        vaultrs::transit::key::update(&self.client, &self.mount, name, Some(&mut b))
            .await
            .map_err(|e| Failure::from_client(&e).into_port(name))
    }

    /// Signs `input` with key `version` (a pending one under test, say).
    #[tracing::instrument(skip_all, fields(mount = %self.mount, key = name, version))]
    pub async fn sign_with(
        &self,
        name: &str,
        version: u64,
        input: &[u8],
    ) -> Result<String, PortError> {
        let path = format!("{}/sign/{name}", self.mount);
        let body = json!({ "input": base64(input), "key_version": version });
        let env = client::envelope(&self.client, Raw::put(path, body), name).await?;
        data_str(&env, "signature", name)
    }

    /// Checks `signature` over `input`; a refusal by policy is an answer, not an error.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, key = name))]
    pub async fn verify(
        &self,
        name: &str,
        input: &[u8],
        signature: &str,
    ) -> Result<Verdict, PortError> {
        let path = format!("{}/verify/{name}", self.mount);
        let body = json!({ "input": base64(input), "signature": signature });
        match vaultrs::api::exec_with_no_result(&self.client, Raw::put(path, body)).await {
            Ok(env) => match env
                .pointer("/data/valid")
                .and_then(serde_json::Value::as_bool)
            {
                Some(true) => Ok(Verdict::Valid),
                Some(false) => Ok(Verdict::Invalid),
                None => Err(malformed(name, "no data.valid")),
            },
            Err(e) => match Failure::from_client(&e) {
                Failure::Status { code: 400, errors } => Ok(Verdict::Refused {
                    reason: errors.join("; "),
                }),
                f => Err(f.into_port(name)),
            },
        }
    }

    /// A new data key wrapped by the newest version of master key `name`.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, key = name))]
    pub async fn data_key(&self, name: &str) -> Result<DataKey, PortError> {
        let path = format!("{}/datakey/plaintext/{name}", self.mount);
        let env = client::envelope(&self.client, Raw::put(path, json!({})), name).await?;
        Ok(DataKey {
            plaintext: data_str(&env, "plaintext", name)?,
            ciphertext: data_str(&env, "ciphertext", name)?,
        })
    }

    /// Unwraps `ciphertext` with master key `name`: the base64 plaintext.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, key = name))]
    pub async fn decrypt(&self, name: &str, ciphertext: &str) -> Result<String, PortError> {
        let path = format!("{}/decrypt/{name}", self.mount);
        let env = client::envelope(
            &self.client,
            Raw::put(path, json!({ "ciphertext": ciphertext })),
            name,
        )
        .await?;
        data_str(&env, "plaintext", name)
    }

    /// Re-wraps `ciphertext` under the newest version of master key `name` without the
    /// plaintext ever leaving OpenBao.
    #[tracing::instrument(skip_all, fields(mount = %self.mount, key = name))]
    pub async fn rewrap(&self, name: &str, ciphertext: &str) -> Result<String, PortError> {
        let path = format!("{}/rewrap/{name}", self.mount);
        let env = client::envelope(
            &self.client,
            Raw::put(path, json!({ "ciphertext": ciphertext })),
            name,
        )
        .await?;
        data_str(&env, "ciphertext", name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_info_reads_versions_and_public_keys() {
        let env = json!({ "data": {
            "latest_version": 3, "min_decryption_version": 2,
            "keys": { "2": { "public_key": "AAA=" }, "3": { "public_key": "BBB=" } }
        }});
        let info = key_info(&env, "k").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((info.latest_version, info.min_decryption_version), (3, 2));
        assert_eq!(info.public_keys.get(&3).map(String::as_str), Some("BBB="));
        let sym = json!({ "data": { "latest_version": 1, "min_decryption_version": 1, "keys": { "1": 1_700_000_000 } }});
        let info = key_info(&sym, "k").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(info.public_keys.get(&1).map(String::as_str), Some(""));
        assert!(key_info(&json!({ "data": {} }), "k").is_err());
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc, "{plain:?}");
        }
    }
}
