//! Approval requests for rotations that wait for a human (signing keys), persisted in
//! OpenBao next to the secret: the KV v2 path `<secret path>/approval` holds the latest
//! request as JSON under the key `request`. Every new request and every decision is a new
//! KV version written with check-and-set, so two approvers (or an approver and the
//! controller) cannot overwrite each other, and the version history is the audit trail.
//!
//! Expiry and four eyes are `sre_core::approval`'s rules: the controller is the
//! requester ([`REQUESTER`]), a request names the approvers from the inventory, and a
//! decision at or after `expires_at` is refused.

use crate::model::{ApprovalPolicy, ManagedSecret};
use chrono::{DateTime, Utc};
use sre_core::PortError;
use sre_core::approval::{ApprovalError, ApprovalId, ApprovalRequest, Principal};
use sre_core::ports::{SecretData, SecretStore};
use thiserror::Error;

/// Who asks for approvals: the rotation machinery, never a person, so that any human
/// approver passes the four-eyes check.
pub const REQUESTER: &str = "sre-rotation";

/// The KV key under which the request JSON is stored.
const KEY: &str = "request";

/// Why an approval could not be read, made or decided.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ApprovalStoreError {
    /// OpenBao could not be read or written (sealed, unreachable, token refused).
    #[error("approval record at {path} not available")]
    Store {
        /// The KV path.
        path: String,
        /// What the store said.
        #[source]
        source: PortError,
    },
    /// The stored record does not decode; a human must look.
    #[error("approval record at {path} is unreadable: {message}")]
    Corrupt {
        /// The KV path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The decision breaks a rule (expired, four eyes, not an approver, decided).
    #[error(transparent)]
    Decision(#[from] ApprovalError),
    /// No secret has an open or recorded request with this id.
    #[error("no approval request {id}")]
    Unknown {
        /// The id asked for.
        id: String,
    },
}

impl ApprovalStoreError {
    /// A stable label for metrics and exit codes.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Store { .. } => "store",
            Self::Corrupt { .. } => "corrupt",
            Self::Decision(e) => e.kind(),
            Self::Unknown { .. } => "unknown",
        }
    }

    /// True when retrying later may succeed without anybody changing anything.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Store { source, .. } if source.is_retryable())
    }
}

/// Where the approval requests of `secret` live.
#[must_use]
pub fn approval_path(secret: &ManagedSecret) -> String {
    format!("{}/approval", secret.path)
}

/// A request as stored, with the KV version it was read at (for check-and-set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApproval {
    /// KV version of the record.
    pub version: u64,
    /// The request.
    pub request: ApprovalRequest,
}

/// The latest request for `secret`, if any was made.
pub async fn load(
    store: &dyn SecretStore,
    secret: &ManagedSecret,
) -> Result<Option<StoredApproval>, ApprovalStoreError> {
    let path = approval_path(secret);
    let Some(value) =
        store
            .read(&path, None)
            .await
            .map_err(|source| ApprovalStoreError::Store {
                path: path.clone(),
                source,
            })?
    else {
        return Ok(None);
    };
    let json = value
        .data
        .get(KEY)
        .ok_or_else(|| ApprovalStoreError::Corrupt {
            path: path.clone(),
            message: format!("no {KEY:?} key"),
        })?;
    let request = serde_json::from_str(json).map_err(|e| ApprovalStoreError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok(Some(StoredApproval {
        version: value.version,
        request,
    }))
}

/// A new pending request for rotating `secret`, restricted to its approvers. Pure: the
/// id is the secret name and the request time, so a retried request gets the same id.
pub fn new_request(
    secret: &ManagedSecret,
    subject: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<ApprovalRequest, ApprovalError> {
    let id = ApprovalId(format!("{}-{}", secret.name, now.timestamp()));
    let request = ApprovalRequest::new(id, subject, Principal::new(REQUESTER), now, expires_at)?;
    Ok(match &secret.approval {
        ApprovalPolicy::Required { approvers, .. } => {
            request.with_approvers(approvers.iter().cloned())
        }
        ApprovalPolicy::NotRequired => request,
    })
}

async fn save(
    store: &dyn SecretStore,
    secret: &ManagedSecret,
    request: &ApprovalRequest,
    cas: u64,
) -> Result<(), ApprovalStoreError> {
    let path = approval_path(secret);
    let json = serde_json::to_string(request).map_err(|e| ApprovalStoreError::Corrupt {
        path: path.clone(),
        message: e.to_string(),
    })?;
    store
        .write(&path, &SecretData::from_pairs([(KEY, json)]), Some(cas))
        .await
        .map(|_| ())
        .map_err(|source| ApprovalStoreError::Store { path, source })
}

/// Persists a new request (replacing the latest, which stays in the KV history).
/// `seen` is the record version the caller decided from (0: none), so a request made
/// concurrently by another controller makes this fail instead of being overwritten.
pub async fn request(
    store: &dyn SecretStore,
    secret: &ManagedSecret,
    request: &ApprovalRequest,
    seen: u64,
) -> Result<(), ApprovalStoreError> {
    save(store, secret, request, seen).await
}

/// Records `by`'s approval of request `id`, looked up among `secrets`; returns the
/// secret's name and the approved request.
pub async fn approve(
    store: &dyn SecretStore,
    secrets: &[ManagedSecret],
    id: &str,
    by: Principal,
    now: DateTime<Utc>,
) -> Result<(String, ApprovalRequest), ApprovalStoreError> {
    for secret in secrets
        .iter()
        .filter(|s| matches!(s.approval, ApprovalPolicy::Required { .. }))
    {
        let Some(mut stored) = load(store, secret).await? else {
            continue;
        };
        if stored.request.id.0 != id {
            continue;
        }
        stored.request.approve(by, now)?;
        save(store, secret, &stored.request, stored.version).await?;
        return Ok((secret.name.clone(), stored.request));
    }
    Err(ApprovalStoreError::Unknown { id: id.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cadence, SecretClass};
    use sre_core::approval::ApprovalStatus;
    use sre_core::testing::MemSecretStore;
    use std::collections::BTreeSet;
    use std::time::Duration;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + s, 0).unwrap_or_default()
    }

    fn signing() -> ManagedSecret {
        ManagedSecret {
            name: "release-signing".into(),
            class: SecretClass::SigningKey,
            path: "keys/release".into(),
            cadence: Cadence::MaxAge(Duration::from_hours(24 * 365)),
            overlap: Duration::from_hours(24 * 7),
            owner: "security".into(),
            consumers: vec![],
            approval: ApprovalPolicy::Required {
                approvers: BTreeSet::from([Principal::new("officer")]),
                expires_after: Duration::from_hours(24),
            },
        }
    }

    #[tokio::test]
    async fn a_request_is_persisted_approved_once_and_expires() {
        let store = MemSecretStore::new();
        let s = signing();
        assert_eq!(load(&store, &s).await.ok().flatten(), None);
        let req = new_request(&s, "rotate release-signing", t(0), t(100))
            .unwrap_or_else(|e| panic!("{e}"));
        request(&store, &s, &req, 0)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let id = req.id.0.clone();
        assert_eq!(id, "release-signing-1767225600");

        let err = approve(
            &store,
            std::slice::from_ref(&s),
            &id,
            Principal::new("mallory"),
            t(10),
        )
        .await;
        assert_eq!(err.err().map(|e| e.kind()), Some("not_an_approver"));
        let (name, approved) = approve(
            &store,
            std::slice::from_ref(&s),
            &id,
            Principal::new("officer"),
            t(10),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(name, "release-signing");
        assert!(approved.is_approved());
        let stored = load(&store, &s).await.ok().flatten().map(|a| a.request);
        assert!(
            matches!(
                stored.map(|r| r.status(t(20))),
                Some(ApprovalStatus::Approved { .. })
            ),
            "the decision is persisted"
        );
        let again = approve(
            &store,
            std::slice::from_ref(&s),
            &id,
            Principal::new("officer"),
            t(11),
        )
        .await;
        assert_eq!(again.err().map(|e| e.kind()), Some("already_decided"));

        let late = new_request(&s, "rotate", t(200), t(300)).unwrap_or_else(|e| panic!("{e}"));
        request(&store, &s, &late, 2)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let expired = approve(
            &store,
            std::slice::from_ref(&s),
            &late.id.0,
            Principal::new("officer"),
            t(300),
        )
        .await;
        assert_eq!(expired.err().map(|e| e.kind()), Some("expired"));
        let unknown = approve(&store, &[s], "nope", Principal::new("officer"), t(0)).await;
        assert_eq!(unknown.err().map(|e| e.kind()), Some("unknown"));
    }

    #[tokio::test]
    async fn a_concurrent_request_loses_instead_of_overwriting() {
        let store = MemSecretStore::new();
        let s = signing();
        let a = new_request(&s, "rotate", t(0), t(100)).unwrap_or_else(|e| panic!("{e}"));
        request(&store, &s, &a, 0)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let b = new_request(&s, "rotate", t(1), t(100)).unwrap_or_else(|e| panic!("{e}"));
        let lost = request(&store, &s, &b, 0).await;
        assert!(
            matches!(
                lost,
                Err(ApprovalStoreError::Store {
                    source: PortError::PreconditionFailed { .. },
                    ..
                })
            ),
            "{lost:?}"
        );
    }
}
