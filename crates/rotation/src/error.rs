//! Why a rotation step could not run or its result could not be recorded.

use crate::state::StateError;
use sre_core::PortError;
use thiserror::Error;

/// Why [`step`](crate::run::step) returned without recording a result. The rotation is
/// never half-done silently: the persisted state still names the step to repeat.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The state could not be read from, or written to, the secret store (OpenBao
    /// sealed or unreachable): back off and call again.
    #[error("rotation state of {path} not available")]
    Store {
        /// The KV path.
        path: String,
        /// What the store said.
        #[source]
        source: PortError,
    },
    /// The persisted state does not decode; a human must look before anything rotates.
    #[error("rotation state of {path} is unreadable")]
    State {
        /// The KV path.
        path: String,
        /// What is wrong with it.
        #[source]
        source: StateError,
    },
}

impl Error {
    /// A stable label for metrics.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Store { .. } => "store",
            Self::State { .. } => "state",
        }
    }

    /// True when calling again later may succeed without anybody changing anything.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Store { source, .. } if source.is_retryable())
    }
}
