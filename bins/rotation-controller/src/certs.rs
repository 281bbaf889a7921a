//! Observing the certificates another system rotates (SPIRE SVIDs, cert-manager TLS):
//! every tick each `certificates` entry is read again from its source, so the age and
//! expiry metrics follow the renewals instead of a date typed into the config.
//!
//! - `pem_file`: the file the renewer rewrites (SPIRE's `svid.pem` via spiffe-helper, a
//!   mounted `tls.crt`), at most [`MAX_PEM_BYTES`], parsed by [`sre_rotation::x509`];
//! - `cert_manager`: the `Certificate`'s status through [`CertManager`] (Kubernetes);
//! - `not_after`: the declared date.
//!
//! A source that cannot be read is an error string for the metrics (`status="unreadable"`)
//! and the log, never a guessed date.

use async_trait::async_trait;
use sre_core::PortError;
use sre_rotation::config::{CertSource, CertificateSpec};
use sre_rotation::expiry::Validity;
use sre_rotation::x509;

/// Bigger than any certificate chain; a larger file is not a PEM bundle.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Reads what cert-manager last issued for a `Certificate`. A port so that the
/// controller's observation is tested with a fake; production uses
/// [`sre_adapter_kube::CertificateStatus`].
#[async_trait]
pub trait CertManager: Send + Sync {
    /// The validity in `namespace/name`'s status.
    async fn validity(&self, namespace: &str, name: &str) -> Result<Validity, PortError>;
}

#[async_trait]
impl CertManager for sre_adapter_kube::CertificateStatus {
    async fn validity(&self, namespace: &str, name: &str) -> Result<Validity, PortError> {
        let v = sre_adapter_kube::CertificateStatus::validity(self, namespace, name).await?;
        Ok(Validity {
            not_before: v.not_before,
            not_after: v.not_after,
        })
    }
}

/// Reads `spec`'s validity now from its source.
pub async fn read(
    spec: &CertificateSpec,
    cert_manager: Option<&dyn CertManager>,
) -> Result<Validity, String> {
    match &spec.source {
        CertSource::Declared(v) => Ok(*v),
        CertSource::PemFile(path) => {
            let shown = path.display();
            let meta = tokio::fs::metadata(path)
                .await
                .map_err(|e| format!("{shown}: {e}"))?;
            if meta.len() > MAX_PEM_BYTES {
                return Err(format!(
                    "{shown}: {} bytes, more than the {MAX_PEM_BYTES} a PEM bundle may have",
                    meta.len()
                ));
            }
            let pem = tokio::fs::read(path)
                .await
                .map_err(|e| format!("{shown}: {e}"))?;
            x509::parse_pem(&pem)
                .map(|v| Validity::from(&v))
                .map_err(|e| format!("{shown}: {e}"))
        }
        CertSource::CertManager { namespace, name } => match cert_manager {
            Some(cm) => cm
                .validity(namespace, name)
                .await
                .map_err(|e| format!("certificate {namespace}/{name}: {e}")),
            None => Err(format!(
                "certificate {namespace}/{name}: no Kubernetes client to read cert-manager with"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(source: CertSource) -> CertificateSpec {
        CertificateSpec {
            source,
            alert_before: Duration::from_mins(1),
        }
    }

    /// A certificate made by the real `openssl` binary, so the parser meets what real
    /// tools write (skipped with a message where openssl is not installed).
    fn openssl_cert(dir: &std::path::Path, days: &str) -> Option<std::path::PathBuf> {
        let out = dir.join(format!("cert-{days}.pem"));
        let status = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "ed25519", "-nodes", "-days", days,
            ])
            .args(["-subj", "/CN=svid", "-keyout"])
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(&out)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(out)
    }

    #[tokio::test]
    async fn a_pem_file_is_re_read_so_a_renewal_moves_the_expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("svid.pem");
        let (Some(short), Some(long)) = (
            openssl_cert(dir.path(), "1"),
            openssl_cert(dir.path(), "30"),
        ) else {
            panic!("openssl is needed for this test (Debian package openssl)");
        };
        std::fs::copy(&short, &path).expect("copy");
        let s = spec(CertSource::PemFile(path.clone()));
        let first = read(&s, None).await.expect("reads");
        let lifetime = first.not_after - first.not_before.expect("not_before");
        assert_eq!(lifetime.num_days(), 1);
        // The renewer writes a new certificate: the next read sees it.
        std::fs::copy(&long, &path).expect("copy");
        let second = read(&s, None).await.expect("reads");
        assert_eq!(
            (second.not_after - second.not_before.expect("not_before")).num_days(),
            30
        );
    }

    #[tokio::test]
    async fn unreadable_sources_are_errors_that_name_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let err = read(&spec(CertSource::PemFile(missing)), None)
            .await
            .expect_err("missing");
        assert!(err.contains("missing.pem"), "{err}");

        let half = dir.path().join("half.pem");
        std::fs::write(&half, "-----BEGIN CERTIFICATE-----\nMIIBfDCCAS6g").expect("write");
        let err = read(&spec(CertSource::PemFile(half)), None)
            .await
            .expect_err("half-written");
        assert!(err.contains("not terminated"), "{err}");

        let big = dir.path().join("big.pem");
        let f = std::fs::File::create(&big).expect("create");
        f.set_len(MAX_PEM_BYTES + 1).expect("grow");
        let err = read(&spec(CertSource::PemFile(big)), None)
            .await
            .expect_err("too big");
        assert!(err.contains("more than"), "{err}");

        let cm = spec(CertSource::CertManager {
            namespace: "ns".into(),
            name: "tls".into(),
        });
        let err = read(&cm, None).await.expect_err("no client");
        assert!(err.contains("no Kubernetes client"), "{err}");
    }
}
