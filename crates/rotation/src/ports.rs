//! The one port rotation needs beyond sre-core's `SecretStore`: the system that accepts
//! or refuses a credential (a database, an API, a signing service).

use async_trait::async_trait;
use sre_core::PortError;
use sre_core::ports::SecretData;
use std::time::Duration;

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

/// What keeping a credential alive achieved.
///
/// Minted credentials with a lease (OpenBao database users) die when the lease runs
/// out, whatever the rotation schedule says: with a role TTL of one hour and hourly
/// rotation, the current credential would expire around its own rotation and the
/// previous one during its overlap window. The controller therefore renews the leases
/// of every live version and needs to tell "extended", "cannot be extended any further"
/// and "already gone" apart to alert on the last two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeepAlive {
    /// The credential does not expire on its own (a password, a key version): nothing
    /// to renew.
    NotNeeded,
    /// The lease was extended by the whole increment asked for.
    Extended {
        /// Time left on the lease now.
        remaining: Duration,
    },
    /// The lease was extended, but by less than asked: it has reached its hard limit
    /// (OpenBao's `max_ttl`) and dies after `remaining` unless the secret rotates first.
    Capped {
        /// Time left on the lease now, at most what was asked for.
        remaining: Duration,
    },
    /// The lease does not exist any more (revoked, expired): the credential no longer
    /// logs in, and renewing again cannot bring it back.
    Gone,
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

    /// Keeps `credential` valid for a while longer, because minted credentials with a
    /// lease expire unless renewed, even while they are the current version or inside
    /// their overlap window. Targets whose credentials have no lease have nothing to
    /// renew, hence the default [`KeepAlive::NotNeeded`]. `Err` means the renewal could
    /// not be made (retry); a lease that is gone is [`KeepAlive::Gone`], not an error.
    async fn keep_alive(&self, credential: &SecretData) -> Result<KeepAlive, PortError> {
        let _ = credential;
        Ok(KeepAlive::NotNeeded)
    }
}
