//! [`KubeReload`]: how consumers pick up a rotated secret in Kubernetes.
//!
//! - **ESO refresh**: External Secrets Operator re-reads an `ExternalSecret` from OpenBao
//!   at once when its `force-sync` annotation changes (ESO documents
//!   `kubectl annotate es NAME force-sync=$(date +%s) --overwrite`); we set the same
//!   annotation to the Unix time of the rotation, by merge patch.
//! - **Reloader-compatible restart**: Stakater Reloader's `annotations` strategy rolls a
//!   Deployment out by writing `reloader.stakater.com/last-reloaded-from` into its pod
//!   template; we write the same key (value: JSON naming the secrets and the time), so a
//!   cluster that also runs Reloader sees one consistent annotation, and the template
//!   change makes the Deployment controller roll the pods. Which Deployments restart,
//!   and when, is decided by the pure `sre_rotation::restart::coalesce` (one rollout per
//!   workload per window).

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::json;
use sre_core::PortError;

use crate::error::port_error;

/// ESO's annotation that triggers an immediate refresh when its value changes.
pub const FORCE_SYNC_ANNOTATION: &str = "force-sync";
/// Reloader's pod-template annotation (annotations reload strategy).
pub const RELOADED_FROM_ANNOTATION: &str = "reloader.stakater.com/last-reloaded-from";
/// Field manager of the patches, so `managedFields` show who wrote them.
pub const ROTATION_FIELD_MANAGER: &str = "sre-rotation";

/// The `ExternalSecret` API (`external-secrets.io/v1`, ESO 0.17 and later).
fn external_secret_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret"),
        "externalsecrets",
    )
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(ROTATION_FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// Refreshes and restarts the consumers of rotated secrets.
#[derive(Clone)]
pub struct KubeReload {
    client: Client,
}

impl std::fmt::Debug for KubeReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeReload").finish_non_exhaustive()
    }
}

impl KubeReload {
    /// Works through `client`. The time of each change is passed in by the caller (the
    /// rotation's promotion time), so that repeating a call after a crash writes the
    /// same value and triggers nothing new.
    #[must_use]
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// Makes ESO re-read `namespace/name` now: `force-sync` = `at` in Unix seconds.
    #[tracing::instrument(skip_all, fields(namespace, name))]
    pub async fn force_sync(
        &self,
        namespace: &str,
        name: &str,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &external_secret_resource());
        let body = json!({"metadata": {"annotations": {
            FORCE_SYNC_ANNOTATION: at.timestamp().to_string(),
        }}});
        api.patch(name, &params(), &Patch::Merge(&body))
            .await
            .map_err(|e| port_error(e, &format!("externalsecret/{namespace}/{name}")))?;
        Ok(())
    }

    /// Rolls Deployment `namespace/name` out once for `secrets`, changed at `at`.
    #[tracing::instrument(skip_all, fields(namespace, name))]
    pub async fn restart(
        &self,
        namespace: &str,
        name: &str,
        secrets: &BTreeSet<String>,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let value = json!({
            "type": "SECRET",
            "names": secrets,
            "observedAt": at.to_rfc3339_opts(SecondsFormat::Secs, true),
        })
        .to_string();
        let body = json!({"spec": {"template": {"metadata": {"annotations": {
            RELOADED_FROM_ANNOTATION: value,
        }}}}});
        api.patch(name, &params(), &Patch::Merge(&body))
            .await
            .map_err(|e| port_error(e, &format!("deployment/{namespace}/{name}")))?;
        tracing::info!(
            namespace,
            name,
            secrets = secrets.len(),
            "rollout for rotated secrets"
        );
        Ok(())
    }
}
