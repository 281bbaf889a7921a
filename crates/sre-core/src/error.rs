//! The one error type every port returns, so that domain code can tell "retry later"
//! from "you lost a race" from "the backend said no" without knowing which SDK answered.

use thiserror::Error;

/// Why a port call did not do what was asked.
///
/// Variants are chosen by what the caller should do next, not by what the backend said:
/// [`PortError::Unavailable`] is safe to retry, [`PortError::PreconditionFailed`] means
/// somebody else changed the thing first, the rest need a human or a config change.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortError {
    /// A conditional write lost: the object or version changed since it was read.
    #[error("precondition failed on {what}: it changed since it was read")]
    PreconditionFailed {
        /// The key, path or record that was guarded.
        what: String,
    },
    /// The named thing does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// The key, path or record that was asked for.
        what: String,
    },
    /// The backend could not be reached or timed out; retrying later may work.
    #[error("{backend} unavailable: {message}")]
    Unavailable {
        /// Which backend (`s3`, `openbao`, `dns`, ...).
        backend: &'static str,
        /// What the transport said.
        message: String,
    },
    /// The backend refused the request (authentication, authorization, sealed, invalid).
    #[error("{backend} refused the request: {message}")]
    Rejected {
        /// Which backend.
        backend: &'static str,
        /// What it said, without secrets.
        message: String,
    },
    /// The backend answered with data we cannot parse; never treated as an empty answer.
    #[error("{backend} returned malformed data for {what}: {message}")]
    Malformed {
        /// Which backend.
        backend: &'static str,
        /// The key or record that did not parse.
        what: String,
        /// The parse error.
        message: String,
    },
    /// The caller passed an argument the port cannot accept (bad key, bad name).
    #[error("invalid argument: {0}")]
    Invalid(String),
}

impl PortError {
    /// True when the same call may succeed later without anybody changing anything.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}
