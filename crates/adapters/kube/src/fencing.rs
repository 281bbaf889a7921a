//! The generation stamp every write carries, and the guarded read → check → write →
//! read-back cycle that all actuators share.
//!
//! Each object a layer changes carries the annotation [`GENERATION_ANNOTATION`] with the
//! lease generation of the controller that last changed it. Before writing, every object
//! of the layer is read and the write is refused with [`LayerError::Stale`] when any of
//! them carries a higher generation: a controller that lost its lease without noticing
//! must not undo its successor's work. The write is a JSON merge patch that also carries
//! the `metadata.resourceVersion` that was read, so a writer that slips in between our
//! read and our write makes the API server answer 409 (`PreconditionFailed`) instead of
//! being overwritten. An object that already shows the wanted state *and* our generation
//! is not written at all, which makes a repeated call a no-op.

use std::fmt::Debug;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::core::Resource;
use serde_json::{Map, Value, json};
use sre_core::{Generation, PortError};
use sre_failover::ports::LayerError;

use crate::error::{BACKEND, layer_error};

/// The annotation that carries the fencing token (lease generation) on every object a
/// layer changes.
pub const GENERATION_ANNOTATION: &str = "sre.openova.io/failover-generation";

/// The field manager recorded in `managedFields`, so `kubectl` shows who made a change.
pub(crate) const FIELD_MANAGER: &str = "sre-failover";

/// The generation stamped on `obj`, if any. An unparsable stamp is an error, never
/// "no stamp": treating garbage as absent would let a stale controller write.
pub(crate) fn stamp_of<K: Resource>(obj: &K, what: &str) -> Result<Option<Generation>, LayerError> {
    let Some(raw) = obj.annotations().get(GENERATION_ANNOTATION) else {
        return Ok(None);
    };
    raw.trim()
        .parse::<u64>()
        .map(|g| Some(Generation(g)))
        .map_err(|e| {
            LayerError::Port(PortError::Malformed {
                backend: BACKEND,
                what: format!("{what} annotation {GENERATION_ANNOTATION}={raw:?}"),
                message: e.to_string(),
            })
        })
}

/// Refuses when `seen` is newer than `ours`.
pub(crate) fn refuse_stale(ours: Generation, seen: Option<Generation>) -> Result<(), LayerError> {
    match seen {
        Some(seen) if seen > ours => Err(LayerError::Stale { ours, seen }),
        _ => Ok(()),
    }
}

/// Reads one object.
pub(crate) async fn read<K>(api: &Api<K>, name: &str, what: &str) -> Result<K, LayerError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + Debug,
{
    api.get(name).await.map_err(|e| layer_error(e, what))
}

/// Deep-merges `patch` into `base` (objects only; everything else replaces).
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

/// The merge-patch body: the layer's own `change`, plus our stamp and the
/// `resourceVersion` precondition.
pub(crate) fn guarded_body(
    change: Value,
    resource_version: Option<&str>,
    generation: Generation,
) -> Value {
    let mut meta = Map::new();
    meta.insert(
        "annotations".into(),
        json!({ GENERATION_ANNOTATION: generation.0.to_string() }),
    );
    if let Some(rv) = resource_version {
        meta.insert("resourceVersion".into(), Value::String(rv.into()));
    }
    let mut body = json!({ "metadata": Value::Object(meta) });
    merge(&mut body, change);
    body
}

/// Writes `change` to `obj` unless it already `holds` and carries `generation`.
/// Returns whether a write was sent.
pub(crate) async fn write_unless_done<K>(
    api: &Api<K>,
    obj: &K,
    what: &str,
    generation: Generation,
    holds: bool,
    change: impl FnOnce() -> Value,
) -> Result<bool, LayerError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + Debug,
{
    if holds && stamp_of(obj, what)? == Some(generation) {
        return Ok(false);
    }
    let body = guarded_body(change(), obj.meta().resource_version.as_deref(), generation);
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch(&obj.name_any(), &pp, &Patch::Merge(&body))
        .await
        .map_err(|e| layer_error(e, what))?;
    tracing::info!(
        object = what,
        lease_epoch = generation.0,
        "layer object patched"
    );
    Ok(true)
}

/// Checks a read-back object: a newer stamp means we lost a race to a newer controller
/// (`Stale`); a missing or older stamp, or a state that does not hold, is `NotVerified`.
pub(crate) fn verify_read_back<K: Resource>(
    obj: &K,
    what: &str,
    generation: Generation,
    holds: bool,
    wanted: &str,
) -> Result<(), LayerError> {
    let seen = stamp_of(obj, what)?;
    refuse_stale(generation, seen)?;
    if seen != Some(generation) {
        return Err(LayerError::NotVerified(format!(
            "{what} carries generation {} after our write of {generation}",
            seen.map_or_else(|| "none".to_owned(), |g| g.to_string())
        )));
    }
    if !holds {
        return Err(LayerError::NotVerified(format!(
            "{what} is not {wanted} after the write"
        )));
    }
    Ok(())
}

/// The highest stamp over `objs`.
pub(crate) fn highest_stamp<'a, K: Resource + 'a>(
    objs: impl IntoIterator<Item = (&'a K, &'a str)>,
) -> Result<Option<Generation>, LayerError> {
    let mut best = None;
    for (obj, what) in objs {
        best = best.max(stamp_of(obj, what)?);
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use kube::api::ObjectMeta;

    fn svc(stamp: Option<&str>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("a".into()),
                namespace: Some("ns".into()),
                annotations: stamp
                    .map(|s| [(GENERATION_ANNOTATION.to_owned(), s.to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Service::default()
        }
    }

    #[test]
    fn stamps_parse_and_garbage_is_malformed_not_absent() {
        assert_eq!(stamp_of(&svc(None), "s").ok(), Some(None));
        assert_eq!(
            stamp_of(&svc(Some("7")), "s").ok(),
            Some(Some(Generation(7)))
        );
        assert!(matches!(
            stamp_of(&svc(Some("seven")), "s"),
            Err(LayerError::Port(PortError::Malformed { .. }))
        ));
    }

    #[test]
    fn only_a_newer_stamp_is_stale() {
        assert!(refuse_stale(Generation(5), None).is_ok());
        assert!(refuse_stale(Generation(5), Some(Generation(5))).is_ok());
        assert!(refuse_stale(Generation(5), Some(Generation(4))).is_ok());
        assert_eq!(
            refuse_stale(Generation(5), Some(Generation(6))),
            Err(LayerError::Stale {
                ours: Generation(5),
                seen: Generation(6)
            })
        );
    }

    #[test]
    fn the_body_carries_stamp_and_precondition_next_to_the_change() {
        let body = guarded_body(
            json!({"metadata": {"annotations": {"x": "1"}}, "spec": {"a": 1}}),
            Some("42"),
            Generation(3),
        );
        assert_eq!(
            body,
            json!({
                "metadata": {
                    "annotations": {GENERATION_ANNOTATION: "3", "x": "1"},
                    "resourceVersion": "42"
                },
                "spec": {"a": 1}
            })
        );
    }

    #[test]
    fn read_back_with_a_newer_stamp_is_stale_and_with_ours_but_wrong_state_is_not_verified() {
        assert!(matches!(
            verify_read_back(&svc(Some("9")), "s", Generation(5), true, "x"),
            Err(LayerError::Stale { .. })
        ));
        assert!(matches!(
            verify_read_back(&svc(Some("5")), "s", Generation(5), false, "x"),
            Err(LayerError::NotVerified(_))
        ));
        assert!(verify_read_back(&svc(Some("5")), "s", Generation(5), true, "x").is_ok());
    }
}
