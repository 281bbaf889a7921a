//! Object storage with conditional writes and versions (S3 semantics).

use crate::PortError;
use async_trait::async_trait;

/// The condition a write must meet at the store, checked atomically by the store.
///
/// Compare-and-swap on an object store is how the witness lease and the evidence chain
/// avoid lost updates without a lock service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    /// Write whatever is there.
    Always,
    /// Create only: fail if the key exists (`If-None-Match: *`).
    IfAbsent,
    /// Replace only the version with this entity tag (`If-Match: <etag>`).
    IfMatch(String),
}

/// What the store knows about one object, without its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: String,
    /// Entity tag of the current version, the token for [`PutCondition::IfMatch`].
    pub etag: String,
    /// Version id when the bucket keeps versions.
    pub version_id: Option<String>,
    /// Body length in bytes.
    pub size: u64,
}

/// An object and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// Metadata of the version that was read.
    pub meta: ObjectMeta,
    /// The bytes.
    pub body: Vec<u8>,
}

/// One version of a key in a versioned bucket, including delete markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The object's key.
    pub key: String,
    /// The version id.
    pub version_id: String,
    /// True for the version a plain GET returns.
    pub is_latest: bool,
    /// True if this version is a delete marker, not data.
    pub is_delete_marker: bool,
}

/// Object storage.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Reads the current version; `Ok(None)` when the key does not exist.
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, PortError>;

    /// Writes `body` if `condition` holds; a failed condition is
    /// [`PortError::PreconditionFailed`], never a silent overwrite.
    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        condition: PutCondition,
    ) -> Result<ObjectMeta, PortError>;

    /// Lists current objects whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, PortError>;

    /// Deletes the current version (adds a delete marker in a versioned bucket).
    /// Deleting a missing key succeeds: the caller wanted it gone and it is.
    async fn delete(&self, key: &str) -> Result<(), PortError>;

    /// Lists every version and delete marker under `prefix`, newest first per key.
    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, PortError>;

    /// Permanently removes one version, which GDPR erasure needs in a versioned bucket.
    async fn delete_version(&self, key: &str, version_id: &str) -> Result<(), PortError>;
}
