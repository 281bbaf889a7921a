//! Where the OpenBao server is and how to authenticate to it.

use std::fmt;
use std::time::Duration;

/// Connection settings for one KV v2 mount.
///
/// `Debug` redacts the token, so a config can be logged while diagnosing wiring. Nothing
/// is read from `VAULT_*`/`BAO_*` environment variables: what the bin configured is what
/// is used, so a stray `VAULT_SKIP_VERIFY` cannot turn TLS checks off.
#[derive(Clone)]
pub struct BaoConfig {
    /// Server address, `http(s)://host:port`.
    pub address: String,
    /// Token sent as `X-Vault-Token`. Never logged.
    pub token: String,
    /// Mount path of the KV v2 engine (default `secret`).
    pub mount: String,
    /// Namespace (OpenBao namespaces / Vault Enterprise), if any.
    pub namespace: Option<String>,
    /// PEM files with extra CA certificates for an `https` address.
    pub ca_certs: Vec<String>,
    /// Limit for one request; a rotation step that hangs on a dead server must fail and
    /// be retried rather than hold its lease forever.
    pub timeout: Duration,
}

impl BaoConfig {
    /// Settings for the KV v2 engine at `secret/` with a 10 s request timeout.
    #[must_use]
    pub fn new(address: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            token: token.into(),
            mount: "secret".to_owned(),
            namespace: None,
            ca_certs: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for BaoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaoConfig")
            .field("address", &self.address)
            .field("token", &"<redacted>")
            .field("mount", &self.mount)
            .field("namespace", &self.namespace)
            .field("ca_certs", &self.ca_certs)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_token() {
        let c = BaoConfig::new("http://127.0.0.1:8200", "s.very-secret-token");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("very-secret"), "{dbg}");
        assert!(
            dbg.contains("<redacted>") && dbg.contains("\"secret\""),
            "{dbg}"
        );
    }
}
