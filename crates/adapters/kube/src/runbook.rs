//! The `Runbook` custom resource for the API server: `kube::CustomResource` over the spec
//! model of `sre_remediation::runbook`, so that the domain crate stays kube-free while a
//! controller can list and watch `runbooks.catalyst.openova.io` with a typed `Api`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sre_remediation::runbook::RunbookSpec;

/// The spec of a [`Runbook`] object: the domain's [`RunbookSpec`], flattened so that the
/// API object's `spec` has exactly the fields the handbook documents.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "catalyst.openova.io",
    version = "v1alpha1",
    kind = "Runbook",
    plural = "runbooks",
    doc = "An alert-triggered remediation with preconditions, verification and rollback.",
    namespaced
)]
pub struct RunbookResourceSpec {
    /// The Runbook as validated and converted to rules by `sre-remediation`.
    #[serde(flatten)]
    pub spec: RunbookSpec,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use kube::Resource;

    #[test]
    fn derived_crd_agrees_with_the_schemars_rendering() {
        let derived = serde_json::to_value(Runbook::crd()).unwrap_or_default();
        let ours = sre_remediation::runbook::crd();
        assert_eq!(derived["metadata"]["name"], ours["metadata"]["name"]);
        let top = |crd: &serde_json::Value| {
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"].clone()
        };
        assert_eq!(top(&derived), top(&ours));
        assert_eq!(derived["spec"]["group"], ours["spec"]["group"]);
        assert_eq!(derived["spec"]["names"]["kind"], "Runbook");
        assert_eq!(derived["spec"]["scope"], "Namespaced");
        let v = &derived["spec"]["versions"][0];
        assert_eq!(v["name"], ours["spec"]["versions"][0]["name"]);
        let spec_of = |crd: &serde_json::Value| {
            let props = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
                ["properties"];
            props
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        };
        assert_eq!(spec_of(&derived), spec_of(&ours));
        let props = |crd: &serde_json::Value| {
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
                ["properties"]
                .clone()
        };
        assert_eq!(props(&derived), props(&ours), "field schemas are identical");
        assert_eq!(
            spec_of(&derived),
            [
                "preconditions",
                "rollback",
                "steps",
                "target",
                "triggers",
                "verify"
            ]
        );
        assert_eq!(Runbook::api_version(&()), "catalyst.openova.io/v1alpha1");
    }

    #[test]
    fn the_seed_example_deserialises_as_the_api_object() {
        let seed = serde_json::json!({
            "apiVersion": "catalyst.openova.io/v1alpha1",
            "kind": "Runbook",
            "metadata": {"name": "openbao-sealed", "namespace": "catalyst-system"},
            "spec": {
                "triggers": [{"alertName": "OpenBaoSealed"}],
                "preconditions": [{"check": "spire.server.healthy"}],
                "steps": [
                    {"run": "openbao operator unseal --auto-shamir"},
                    {"verify": "openbao.status.sealed == false"}
                ],
                "rollback": "page-oncall"
            }
        });
        let rb: Runbook = serde_json::from_value(seed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rb.spec.spec.triggers[0].alert_name, "OpenBaoSealed");
        assert_eq!(rb.spec.spec.rollback.as_deref(), Some("page-oncall"));
    }
}
