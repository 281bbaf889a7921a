//! [`S3Witness`]: the failover lease stored as one object, changed only by conditional
//! puts.

use crate::store::S3ObjectStore;
use async_trait::async_trait;
use sre_core::PortError;
use sre_core::ports::{
    CasOutcome, LeaseRecord, ObjectStore, PutCondition, Revision, Witness, WitnessRead,
};

/// The [`Witness`] port on one key of a bucket.
///
/// The revision is the object's `ETag`: S3 checks `If-Match`/`If-None-Match` atomically,
/// so exactly one of two regions racing from the same revision wins. An `ETag` is a
/// content hash, so writing byte-identical records gives the same revision; that is
/// harmless because every change of holder bumps the generation and every renewal moves
/// `renewed_at`.
#[derive(Debug, Clone)]
pub struct S3Witness {
    store: S3ObjectStore,
    key: String,
}

impl S3Witness {
    /// The witness at `key` in `store`'s bucket. The bucket must be strongly consistent
    /// for conditional writes (AWS S3 is; check an S3-compatible store before trusting it).
    #[must_use]
    pub fn new(store: S3ObjectStore, key: impl Into<String>) -> Self {
        Self {
            store,
            key: key.into(),
        }
    }

    /// The key the lease lives at.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }
}

#[async_trait]
impl Witness for S3Witness {
    #[tracing::instrument(skip_all, fields(bucket = %self.store.bucket(), key = %self.key))]
    async fn read(&self) -> Result<WitnessRead, PortError> {
        let Some(obj) = self.store.get(&self.key).await? else {
            return Ok(WitnessRead::Absent);
        };
        let revision = Revision(obj.meta.etag);
        Ok(match LeaseRecord::from_bytes(&obj.body) {
            Ok(record) => WitnessRead::Present { record, revision },
            Err(error) => {
                // Garbage must never read as "no lease": failover holds on Malformed.
                tracing::warn!(%error, "witness record does not parse");
                WitnessRead::Malformed { revision, error }
            }
        })
    }

    #[tracing::instrument(skip_all, fields(
        bucket = %self.store.bucket(),
        key = %self.key,
        region = %record.holder,
        lease_epoch = %record.generation,
    ))]
    async fn compare_and_swap(
        &self,
        expected: Option<&Revision>,
        record: &LeaseRecord,
    ) -> Result<CasOutcome, PortError> {
        let condition = expected.map_or(PutCondition::IfAbsent, |r| {
            PutCondition::IfMatch(r.0.clone())
        });
        match self
            .store
            .put(&self.key, record.to_bytes(), condition)
            .await
        {
            Ok(meta) => Ok(CasOutcome::Swapped(Revision(meta.etag))),
            Err(PortError::PreconditionFailed { .. }) => Ok(CasOutcome::Conflict),
            Err(e) => Err(e),
        }
    }
}
