//! [`S3ObjectStore`]: the object-store port over one bucket.

use crate::config::S3Config;
use crate::error::{Failure, body_error};
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    VersioningConfiguration,
};
use sre_core::PortError;
use sre_core::ports::{ObjectMeta, ObjectStore, ObjectVersion, PutCondition, StoredObject};

/// Whether [`S3ObjectStore::ensure_bucket`] turns versioning on.
///
/// An enum rather than a `bool` so that call sites say what they want.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// Keep every version and add delete markers (evidence chain, GDPR erasure tests).
    Enabled,
    /// Leave the bucket's versioning as S3 creates it (off).
    Unchanged,
}

/// The [`ObjectStore`] port over one S3 bucket.
///
/// Cheap to clone: clones share the SDK client and its connection pool. Two stores built
/// from the same config with [`S3ObjectStore::new`] have separate clients, which is what a
/// race test between two writers needs.
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3ObjectStore {
    /// Builds a client for `config.bucket`. No request is made until the first call, so
    /// an unreachable endpoint shows up as [`PortError::Unavailable`] there, not here.
    #[must_use]
    pub fn new(config: &S3Config) -> Self {
        Self {
            client: config.client(),
            bucket: config.bucket.clone(),
        }
    }

    /// Wraps an SDK client the caller built (custom interceptors, another credential
    /// source). The SDK type appears only here, never in the port.
    #[must_use]
    pub fn from_client(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// The bucket this store writes to.
    #[must_use]
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket if it does not exist yet and optionally turns versioning on.
    ///
    /// For tests and the failover drill, which bring their own bucket; production buckets
    /// are provisioned with their policies elsewhere. A bucket that already exists and is
    /// ours counts as success, so the call is idempotent.
    #[tracing::instrument(skip_all, fields(bucket = %self.bucket, ?versioning))]
    pub async fn ensure_bucket(&self, versioning: Versioning) -> Result<(), PortError> {
        let mut req = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the one region that rejects an explicit location constraint.
        if let Some(region) = self.client.config().region().map(ToString::to_string)
            && region != "us-east-1"
        {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        if let Err(e) = req.send().await {
            let f = Failure::from_sdk(&e);
            if f.code.as_deref() != Some("BucketAlreadyOwnedByYou") {
                return Err(f.into_port(&self.bucket));
            }
        }
        if versioning == Versioning::Enabled {
            self.client
                .put_bucket_versioning()
                .bucket(&self.bucket)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| Failure::from_sdk(&e).into_port(&self.bucket))?;
        }
        Ok(())
    }
}

fn size_of(len: Option<i64>) -> u64 {
    len.and_then(|l| u64::try_from(l).ok()).unwrap_or(0)
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    #[tracing::instrument(skip_all, fields(bucket = %self.bucket, key = %key))]
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, PortError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let f = Failure::from_sdk(&e);
                // A delete marker as the latest version is also a 404 `NoSuchKey`.
                return if f.is_not_found() {
                    Ok(None)
                } else {
                    Err(f.into_port(key))
                };
            }
        };
        let meta = ObjectMeta {
            key: key.to_owned(),
            etag: out.e_tag().unwrap_or_default().to_owned(),
            version_id: out.version_id().map(str::to_owned),
            size: size_of(out.content_length()),
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| body_error(&e))?
            .into_bytes()
            .to_vec();
        Ok(Some(StoredObject { meta, body }))
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.bucket, key = %key, size = body.len(), condition = ?condition))]
    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        condition: PutCondition,
    ) -> Result<ObjectMeta, PortError> {
        let size = body.len() as u64;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body));
        let conditional = match &condition {
            PutCondition::Always => false,
            PutCondition::IfAbsent => {
                req = req.if_none_match("*");
                true
            }
            PutCondition::IfMatch(etag) => {
                req = req.if_match(etag);
                true
            }
        };
        match req.send().await {
            Ok(out) => Ok(ObjectMeta {
                key: key.to_owned(),
                etag: out.e_tag().unwrap_or_default().to_owned(),
                version_id: out.version_id().map(str::to_owned),
                size,
            }),
            Err(e) => {
                let f = Failure::from_sdk(&e);
                if f.is_precondition(conditional) {
                    tracing::debug!(code = ?f.code, status = ?f.status, "conditional put lost");
                    Err(PortError::PreconditionFailed {
                        what: key.to_owned(),
                    })
                } else {
                    Err(f.into_port(key))
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.bucket, prefix = %prefix))]
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, PortError> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| Failure::from_sdk(&e).into_port(prefix))?;
            all.extend(out.contents().iter().filter_map(|o| {
                Some(ObjectMeta {
                    key: o.key()?.to_owned(),
                    etag: o.e_tag().unwrap_or_default().to_owned(),
                    version_id: None,
                    size: size_of(o.size()),
                })
            }));
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        // S3 lists in UTF-8 byte order already; sorting keeps the port's promise for
        // stores that do not.
        all.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(all)
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.bucket, key = %key))]
    async fn delete(&self, key: &str) -> Result<(), PortError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let f = Failure::from_sdk(&e);
                if f.is_not_found() {
                    Ok(())
                } else {
                    Err(f.into_port(key))
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.bucket, prefix = %prefix))]
    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, PortError> {
        // (version, last modified, position in the response) for a stable merge.
        let mut all: Vec<(ObjectVersion, Option<aws_smithy_types::DateTime>, usize)> = Vec::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let out = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(markers.0.take())
                .set_version_id_marker(markers.1.take())
                .send()
                .await
                .map_err(|e| Failure::from_sdk(&e).into_port(prefix))?;
            for v in out.versions() {
                if let (Some(key), Some(id)) = (v.key(), v.version_id()) {
                    let n = all.len();
                    all.push((
                        ObjectVersion {
                            key: key.to_owned(),
                            version_id: id.to_owned(),
                            is_latest: v.is_latest().unwrap_or(false),
                            is_delete_marker: false,
                        },
                        v.last_modified().copied(),
                        n,
                    ));
                }
            }
            for m in out.delete_markers() {
                if let (Some(key), Some(id)) = (m.key(), m.version_id()) {
                    let n = all.len();
                    all.push((
                        ObjectVersion {
                            key: key.to_owned(),
                            version_id: id.to_owned(),
                            is_latest: m.is_latest().unwrap_or(false),
                            is_delete_marker: true,
                        },
                        m.last_modified().copied(),
                        n,
                    ));
                }
            }
            if out.is_truncated() != Some(true) {
                break;
            }
            markers = (
                out.next_key_marker().map(str::to_owned),
                out.next_version_id_marker().map(str::to_owned),
            );
            if markers.0.is_none() {
                break;
            }
        }
        // The SDK splits versions and delete markers into two lists and loses their
        // interleaving; rebuild "newest first per key": latest first, then by time, and
        // the server's own order where timestamps tie.
        all.sort_by(|(a, ta, na), (b, tb, nb)| {
            a.key
                .cmp(&b.key)
                .then(b.is_latest.cmp(&a.is_latest))
                .then(tb.cmp(ta))
                .then(na.cmp(nb))
        });
        Ok(all.into_iter().map(|(v, _, _)| v).collect())
    }

    #[tracing::instrument(skip_all, fields(bucket = %self.bucket, key = %key, version_id = %version_id))]
    async fn delete_version(&self, key: &str, version_id: &str) -> Result<(), PortError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let f = Failure::from_sdk(&e);
                // Gone already: erasure is idempotent.
                if f.is_not_found() {
                    Ok(())
                } else {
                    Err(f.into_port(key))
                }
            }
        }
    }
}
