//! Construction errors. Runtime failures of a witness are `sre_core::PortError`s, so the
//! domain decides on their kind; this enum only covers setting a witness up.

use std::path::PathBuf;

/// Why a witness (or the reference server) could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lease file path has no file name, so there is nowhere to put the lock and
    /// temp files next to it.
    #[error("lease file path {path:?} has no file name")]
    InvalidPath {
        /// The path given.
        path: PathBuf,
    },
    /// The witness endpoint is not a usable base URL.
    #[error("invalid witness endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The lease name is not one path segment of `[A-Za-z0-9._-]`, 1 to 128 bytes.
    #[error("invalid lease name {name:?}: use 1-128 of [A-Za-z0-9._-], not \".\" or \"..\"")]
    InvalidLeaseName {
        /// The name given.
        name: String,
    },
    /// A zero request timeout would fail every call; the caller mixed up its units or
    /// forgot to set it.
    #[error("request timeout must be greater than zero")]
    InvalidTimeout,
    /// The bearer token is empty or has characters RFC 6750 does not allow. The token
    /// itself is never part of the message.
    #[error("invalid bearer token: {reason}")]
    InvalidToken {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("cannot build the HTTP client")]
    Client {
        /// The underlying reqwest error.
        #[source]
        source: reqwest::Error,
    },
    /// The reference server stopped with an I/O error.
    #[error("witness server failed")]
    Serve {
        /// The I/O error from the listener.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A stable label for metrics and logs that survives refactors.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidPath { .. } => "invalid_path",
            Self::InvalidEndpoint { .. } => "invalid_endpoint",
            Self::InvalidLeaseName { .. } => "invalid_lease_name",
            Self::InvalidTimeout => "invalid_timeout",
            Self::InvalidToken { .. } => "invalid_token",
            Self::Client { .. } => "client",
            Self::Serve { .. } => "serve",
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
