//! [`KubeLeaseWitness`]: the failover lease kept in a `coordination.k8s.io/v1` `Lease`,
//! changed only by a create or by a replace that carries the `resourceVersion` read.
//!
//! # Why a replace with `resourceVersion` is a compare-and-swap
//!
//! The API server stores every object in etcd and stamps it with `metadata.resourceVersion`,
//! the etcd revision of its last write. An update (`PUT`) that carries a `resourceVersion`
//! is a guaranteed update: the apiserver's storage layer runs it as one etcd transaction
//! `If(mod_revision(key) == rv) Then(put) Else(get)`, so the write lands only if nobody
//! wrote since that revision, and otherwise the answer is `409 Conflict`. etcd serialises
//! transactions through Raft (a linearizable store), so of two regions replacing from the
//! same revision exactly one wins, and the loser learns it. A create (`POST`) is the same
//! transaction with `If(create_revision(key) == 0)`: a second create is
//! `409 AlreadyExists`. Reads (`GET` without `resourceVersion`) are quorum reads, so a
//! region never decides on a revision older than the last acknowledged write.
//!
//! A `PATCH` would not do: a merge patch without a `resourceVersion` is applied to
//! whatever is stored (last writer wins), so only a full replace carrying the read
//! revision is used for the lease.
//!
//! # Layout
//!
//! The [`LeaseRecord`] is stored verbatim as JSON in the annotation
//! [`LEASE_RECORD_ANNOTATION`] (the source of truth, parsed strictly); the `Lease` spec
//! mirrors it (`holderIdentity`, `acquireTime`, `renewTime`, `leaseDurationSeconds`,
//! `leaseTransitions` = generation) so that `kubectl get lease` shows who holds it. The
//! revision is `metadata.resourceVersion`. The object belongs to the witness: a replace
//! writes the whole object, so labels or annotations added by hand are dropped.

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, Error as KubeError};
use sre_core::PortError;
use sre_core::ports::{CasOutcome, LeaseParseError, LeaseRecord, Revision, Witness, WitnessRead};
use std::collections::BTreeMap;

use crate::error::{BACKEND, port_error};
use crate::fencing::FIELD_MANAGER;

/// The annotation that holds the lease record as JSON. The spec fields are a display copy;
/// only this annotation is read back, so a hand-edited spec can never move the lease.
pub const LEASE_RECORD_ANNOTATION: &str = "sre.openova.io/lease-record";

/// Label on the Lease, so an operator can find every witness lease with a selector.
pub const MANAGED_BY_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "sre-failover");

/// The [`Witness`] port on one `Lease` object.
///
/// Point every region at the same Lease on one cluster that all of them can reach (a
/// cluster outside the failover regions, or a stretched control plane): the witness is
/// only as available as that API server, and only as consistent as its etcd.
#[derive(Clone)]
pub struct KubeLeaseWitness {
    api: Api<Lease>,
    namespace: String,
    name: String,
}

impl std::fmt::Debug for KubeLeaseWitness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeLeaseWitness")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KubeLeaseWitness {
    /// The witness on Lease `namespace/name` through `client`. Nothing is sent until the
    /// first read; the Lease is created by the first region that takes the lease.
    #[must_use]
    pub fn new(client: Client, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        let namespace = namespace.into();
        Self {
            api: Api::namespaced(client, &namespace),
            namespace,
            name: name.into(),
        }
    }

    /// `Lease namespace/name`, for errors and logs.
    fn what(&self) -> String {
        format!("Lease {}/{}", self.namespace, self.name)
    }

    /// The whole object as the witness writes it for `record` (at `expected`, if any).
    fn object(&self, expected: Option<&Revision>, record: &LeaseRecord) -> Lease {
        let json = String::from_utf8(record.to_bytes()).unwrap_or_default();
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version: expected.map(|r| r.0.clone()),
                annotations: Some(BTreeMap::from([(LEASE_RECORD_ANNOTATION.into(), json)])),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY_LABEL.0.into(),
                    MANAGED_BY_LABEL.1.into(),
                )])),
                ..ObjectMeta::default()
            },
            spec: Some(mirror_spec(record)),
        }
    }
}

/// The Lease spec that shows `record` to `kubectl get lease` and to humans.
///
/// A released lease shows no holder, as client-go's leader election does for a free lease.
fn mirror_spec(record: &LeaseRecord) -> LeaseSpec {
    let micro = |t: chrono::DateTime<chrono::Utc>| {
        k8s_openapi::jiff::Timestamp::from_microsecond(t.timestamp_micros())
            .ok()
            .map(MicroTime)
    };
    LeaseSpec {
        holder_identity: (!record.released).then(|| record.holder.to_string()),
        acquire_time: micro(record.acquired_at),
        renew_time: micro(record.renewed_at),
        lease_duration_seconds: Some(
            i32::try_from(record.ttl_ms.div_ceil(1000)).unwrap_or(i32::MAX),
        ),
        lease_transitions: Some(i32::try_from(record.generation.0).unwrap_or(i32::MAX)),
        ..LeaseSpec::default()
    }
}

/// What a stored Lease says: the record from the annotation, or why there is none.
fn parse(lease: &Lease) -> Result<LeaseRecord, LeaseParseError> {
    let annotation = lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LEASE_RECORD_ANNOTATION))
        .ok_or_else(|| {
            LeaseParseError(format!(
                "the Lease has no {LEASE_RECORD_ANNOTATION} annotation"
            ))
        })?;
    LeaseRecord::from_bytes(annotation.as_bytes())
}

/// The revision of a Lease the API server returned.
fn revision_of(lease: &Lease, what: &str) -> Result<Revision, PortError> {
    lease
        .metadata
        .resource_version
        .clone()
        .filter(|rv| !rv.is_empty())
        .map(Revision)
        .ok_or_else(|| PortError::Malformed {
            backend: BACKEND,
            what: what.into(),
            message: "the API server returned a Lease without metadata.resourceVersion".into(),
        })
}

/// Lost races: a create that found the Lease (`409 AlreadyExists`), a replace from a
/// stale revision (`409 Conflict`), or a replace of a Lease deleted since it was read
/// (`404`: the revision we hold is gone, which is the same news). Everything else is an
/// error mapped like the rest of the crate.
fn lost_race(err: &KubeError, replacing: bool) -> bool {
    match err {
        KubeError::Api(status) => status.code == 409 || (replacing && status.code == 404),
        _ => false,
    }
}

#[async_trait]
impl Witness for KubeLeaseWitness {
    #[tracing::instrument(skip_all, fields(namespace = %self.namespace, lease = %self.name))]
    async fn read(&self) -> Result<WitnessRead, PortError> {
        let what = self.what();
        let Some(lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| port_error(e, &what))?
        else {
            return Ok(WitnessRead::Absent);
        };
        let revision = revision_of(&lease, &what)?;
        Ok(match parse(&lease) {
            Ok(record) => WitnessRead::Present { record, revision },
            Err(error) => {
                // Garbage must never read as "no lease": failover holds on Malformed.
                tracing::warn!(%error, "witness Lease does not hold a lease record");
                WitnessRead::Malformed { revision, error }
            }
        })
    }

    #[tracing::instrument(skip_all, fields(
        namespace = %self.namespace,
        lease = %self.name,
        region = %record.holder,
        lease_epoch = %record.generation,
    ))]
    async fn compare_and_swap(
        &self,
        expected: Option<&Revision>,
        record: &LeaseRecord,
    ) -> Result<CasOutcome, PortError> {
        let what = self.what();
        let pp = PostParams {
            dry_run: false,
            field_manager: Some(FIELD_MANAGER.into()),
        };
        let body = self.object(expected, record);
        let written = match expected {
            None => self.api.create(&pp, &body).await,
            Some(_) => self.api.replace(&self.name, &pp, &body).await,
        };
        match written {
            Ok(lease) => Ok(CasOutcome::Swapped(revision_of(&lease, &what)?)),
            Err(e) if lost_race(&e, expected.is_some()) => {
                tracing::debug!(error = %e, "lease compare-and-swap lost");
                Ok(CasOutcome::Conflict)
            }
            Err(e) => Err(port_error(e, &what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use sre_core::ports::LeaseFormat;
    use sre_core::{Generation, RegionId};

    fn record(released: bool) -> LeaseRecord {
        let t = DateTime::<Utc>::from_timestamp(1_767_225_600, 250_000_000).unwrap_or_default();
        LeaseRecord {
            format: LeaseFormat::V1,
            holder: RegionId::from("eu"),
            generation: Generation(7),
            acquired_at: t,
            renewed_at: t + chrono::Duration::seconds(10),
            ttl_ms: 30_500,
            released,
        }
    }

    #[test]
    fn the_spec_mirrors_the_record_for_kubectl() {
        let s = mirror_spec(&record(false));
        assert_eq!(s.holder_identity.as_deref(), Some("eu"));
        assert_eq!(
            s.lease_duration_seconds,
            Some(31),
            "a partial second rounds up"
        );
        assert_eq!(s.lease_transitions, Some(7));
        let renew = serde_json::to_value(&s).expect("serialises");
        assert_eq!(renew["renewTime"], "2026-01-01T00:00:10.250000Z");
        assert_eq!(renew["acquireTime"], "2026-01-01T00:00:00.250000Z");
        assert_eq!(mirror_spec(&record(true)).holder_identity, None);
    }

    #[test]
    fn only_the_annotation_is_the_record() {
        let mut lease = Lease {
            spec: Some(mirror_spec(&record(false))),
            ..Lease::default()
        };
        assert!(parse(&lease).is_err(), "a spec alone is not a lease record");
        lease.metadata.annotations = Some(BTreeMap::from([(
            LEASE_RECORD_ANNOTATION.to_string(),
            "{\"holder\":\"eu\"}".to_string(),
        )]));
        assert!(parse(&lease).is_err(), "a partial record is garbage");
        lease.metadata.annotations = Some(BTreeMap::from([(
            LEASE_RECORD_ANNOTATION.to_string(),
            String::from_utf8(record(false).to_bytes()).expect("utf-8"),
        )]));
        assert_eq!(parse(&lease), Ok(record(false)));
    }

    #[test]
    fn a_lease_without_a_resource_version_is_malformed() {
        assert!(matches!(
            revision_of(&Lease::default(), "Lease ns/x"),
            Err(PortError::Malformed { .. })
        ));
    }
}
