//! [`CertificateStatus`]: the validity cert-manager reports for a `Certificate`, for the
//! observe-only rotation classes (cert-manager renews; we watch that it does).
//!
//! cert-manager copies the issued certificate's `notBefore`/`notAfter` into the
//! `Certificate`'s `status` (and its planned `renewalTime`), so reading the status needs
//! `get` on `certificates.cert-manager.io` only, never the `Secret` that holds the private
//! key. A `Certificate` that has not been issued yet has no `status.notAfter`: that is
//! reported as `NotFound` (nothing to measure), not as a date.

use chrono::{DateTime, Utc};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use sre_core::PortError;

use crate::error::{BACKEND, port_error};

/// What a `Certificate`'s status says of the certificate cert-manager last issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuedValidity {
    /// `status.notBefore`, when present.
    pub not_before: Option<DateTime<Utc>>,
    /// `status.notAfter`.
    pub not_after: DateTime<Utc>,
    /// `status.renewalTime`: when cert-manager plans to renew (absent on old versions).
    pub renewal_time: Option<DateTime<Utc>>,
}

fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    )
}

/// Reads cert-manager `Certificate` statuses.
#[derive(Clone)]
pub struct CertificateStatus {
    client: Client,
}

impl std::fmt::Debug for CertificateStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateStatus").finish_non_exhaustive()
    }
}

impl CertificateStatus {
    /// Reads through `client`.
    #[must_use]
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The validity of the certificate issued for `namespace/name`.
    #[tracing::instrument(skip_all, fields(namespace, name))]
    pub async fn validity(&self, namespace: &str, name: &str) -> Result<IssuedValidity, PortError> {
        let what = format!("certificate/{namespace}/{name}");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &certificate_resource());
        let cert = api.get(name).await.map_err(|e| port_error(e, &what))?;
        let status = cert.data.get("status");
        let time = |field: &str| -> Result<Option<DateTime<Utc>>, PortError> {
            match status.and_then(|s| s.get(field)) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(v) => v
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| Some(t.with_timezone(&Utc)))
                    .ok_or_else(|| PortError::Malformed {
                        backend: BACKEND,
                        what: format!("{what} status.{field}"),
                        message: format!("{v} is not an RFC 3339 time"),
                    }),
            }
        };
        let not_after = time("notAfter")?.ok_or_else(|| PortError::NotFound {
            what: format!("{what} status.notAfter (not issued yet)"),
        })?;
        Ok(IssuedValidity {
            not_before: time("notBefore")?,
            not_after,
            renewal_time: time("renewalTime")?,
        })
    }
}
