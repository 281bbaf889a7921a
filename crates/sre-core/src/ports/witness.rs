//! The witness: a strongly consistent place where exactly one region at a time can hold
//! the failover lease, changed only by compare-and-swap.

use crate::{Generation, PortError, RegionId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// The lease as stored at the witness.
///
/// Times are wall-clock because the record is read by other machines; the holder itself
/// judges its own lease on its monotonic clock (see `sre-failover`). The generation is
/// the fencing token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRecord {
    /// Format marker, so that a different record at the same key is never misread.
    pub format: LeaseFormat,
    /// The region that holds (or last held) the lease.
    pub holder: RegionId,
    /// Fencing token: strictly increases on every change of holder.
    pub generation: Generation,
    /// When the current holder acquired it.
    pub acquired_at: DateTime<Utc>,
    /// When the holder last renewed it.
    pub renewed_at: DateTime<Utc>,
    /// How long after `renewed_at` the lease is valid, in milliseconds.
    pub ttl_ms: u64,
    /// True once the holder gave the lease up on purpose: others may take it at once.
    #[serde(default)]
    pub released: bool,
}

/// The lease record format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseFormat {
    /// Version 1 of the record.
    #[serde(rename = "sre.lease/v1")]
    V1,
}

impl LeaseRecord {
    /// The lease's time to live.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    /// Wall time at which the record says the lease lapses (`renewed_at + ttl`).
    #[must_use]
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.renewed_at
            + chrono::Duration::milliseconds(i64::try_from(self.ttl_ms).unwrap_or(i64::MAX))
    }

    /// Serialises the record as the witness stores it (JSON).
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a stored record; anything else is an error, never a default.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LeaseParseError> {
        serde_json::from_slice(bytes).map_err(|e| LeaseParseError(e.to_string()))
    }
}

/// A witness record that is not a valid lease. Failover treats it as *unknown* and holds:
/// garbage at the witness must never look like an expired lease.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("lease record does not parse: {0}")]
pub struct LeaseParseError(pub String);

/// Opaque token of the record version read, passed back to [`Witness::compare_and_swap`]
/// (an S3 `ETag`, a Kubernetes `resourceVersion`, a file's content hash).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Revision(pub String);

/// What a read of the witness found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessRead {
    /// No lease has ever been written.
    Absent,
    /// A valid lease record at this revision.
    Present {
        /// The record.
        record: LeaseRecord,
        /// Its revision, for the next compare-and-swap.
        revision: Revision,
    },
    /// Something is stored but it is not a lease record.
    Malformed {
        /// Its revision (so that an operator-approved overwrite is still a CAS).
        revision: Revision,
        /// Why it did not parse.
        error: LeaseParseError,
    },
}

/// Result of a compare-and-swap: losing a race is an expected outcome, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// The write happened; this is the new revision.
    Swapped(Revision),
    /// Somebody else wrote first; read again before deciding anything.
    Conflict,
}

/// A lease witness.
#[async_trait]
pub trait Witness: Send + Sync {
    /// Reads the current record.
    async fn read(&self) -> Result<WitnessRead, PortError>;

    /// Writes `record` only if the stored revision is still `expected`
    /// (`None`: only if no record exists yet).
    async fn compare_and_swap(
        &self,
        expected: Option<&Revision>,
        record: &LeaseRecord,
    ) -> Result<CasOutcome, PortError>;
}
