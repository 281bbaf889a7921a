//! The one port rotation needs beyond sre-core's `SecretStore`: the system that accepts
//! or refuses a credential (a database, an API, a signing service).

use async_trait::async_trait;
use sre_core::PortError;
use sre_core::ports::SecretData;

/// Whether the target accepted a credential in a real check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// A login (or signature check) with it succeeded.
    Accepted,
    /// The target refused it: the rotation must abort and keep the current version.
    Refused {
        /// What the target said (never the credential itself).
        reason: String,
    },
}

/// The system whose credential is rotated, one instance per managed secret.
///
/// Every method is idempotent, because a crash between a call and the persisting of its
/// result repeats the call on restart.
#[async_trait]
pub trait CredentialTarget: Send + Sync {
    /// New credential material. Targets that mint credentials themselves (the OpenBao
    /// database engine) create it at the target here; others generate it locally.
    async fn issue(&self) -> Result<SecretData, PortError>;

    /// Makes the target accept `credential`; a no-op for minted credentials.
    async fn install(&self, credential: &SecretData) -> Result<(), PortError>;

    /// Proves the target accepts `credential` with a real login or signature check.
    /// `Err` means the check could not be made (retry), not that it failed.
    async fn verify(&self, credential: &SecretData) -> Result<Verification, PortError>;

    /// Makes the target refuse `credential` from now on; already revoked is success.
    async fn revoke(&self, credential: &SecretData) -> Result<(), PortError>;
}
