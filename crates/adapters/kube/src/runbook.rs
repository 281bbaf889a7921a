//! The `Runbook` custom resource for the API server: `kube::CustomResource` over the spec
//! model of `sre_remediation::runbook`, so that the domain crate stays kube-free while a
//! controller can list and watch `runbooks.catalyst.openova.io` with a typed `Api`.
//!
//! [`RunbookLister`] lists the objects of one namespace (or all) and
//! [`ClusterRunbooks`] turns a listing into rules exactly as files are turned into rules
//! (`sre_remediation::runbook::Runbook::from_json`, the same validation and conversion).
//! A periodic list is the whole "watch": the caller polls, and a listing whose
//! `resourceVersion` has not changed is not converted again. An invalid object is
//! reported by `namespace/name` and skipped; if an earlier version of it was valid, that
//! last good version stays in force, and the other objects are never affected.
//!
//! The listing goes through a `DynamicObject` API at the derived resource's path rather
//! than `Api<Runbook>`: a typed list fails whole when one object does not deserialise,
//! which would let one bad Runbook hide every good one.

use crate::error::port_error;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::{Client, CustomResource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sre_core::PortError;
use sre_remediation::checks::Checks;
use sre_remediation::rules::RuleSet;
use sre_remediation::runbook::{self as domain, RuleBook, RunbookSpec};
use std::collections::BTreeMap;

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

/// One listing of Runbook objects, as raw JSON so that each is validated on its own.
#[derive(Debug, Clone, PartialEq)]
pub struct RunbookListing {
    /// The list's `resourceVersion`: unchanged means nothing changed.
    pub resource_version: Option<String>,
    /// The objects, each with `apiVersion` and `kind` set.
    pub objects: Vec<Value>,
}

/// Lists `runbooks.catalyst.openova.io` in one namespace or in all.
#[derive(Clone)]
pub struct RunbookLister {
    api: Api<DynamicObject>,
    scope: String,
}

impl std::fmt::Debug for RunbookLister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunbookLister")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl RunbookLister {
    /// A lister for `namespace`, or for every namespace when `None` (the service
    /// account then needs a cluster-wide `list` on runbooks).
    #[must_use]
    pub fn new(client: Client, namespace: Option<&str>) -> Self {
        let ar = ApiResource::erase::<Runbook>(&());
        match namespace {
            Some(ns) => Self {
                api: Api::namespaced_with(client, ns, &ar),
                scope: format!("runbooks in {ns}"),
            },
            None => Self {
                api: Api::all_with(client, &ar),
                scope: "runbooks in all namespaces".into(),
            },
        }
    }

    /// One list call.
    pub async fn list(&self) -> Result<RunbookListing, PortError> {
        let list = self
            .api
            .list(&ListParams::default())
            .await
            .map_err(|e| port_error(e, &self.scope))?;
        let objects = list
            .items
            .iter()
            .map(|o| {
                let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
                // List items may leave out their type; every item here is a Runbook.
                if let Value::Object(m) = &mut v {
                    m.entry("apiVersion")
                        .or_insert_with(|| domain::API_VERSION.into());
                    m.entry("kind").or_insert_with(|| domain::KIND.into());
                }
                v
            })
            .collect();
        Ok(RunbookListing {
            resource_version: list.metadata.resource_version,
            objects,
        })
    }
}

/// A Runbook object that did not validate, by where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRunbook {
    /// `metadata.namespace` (empty when absent).
    pub namespace: String,
    /// `metadata.name` (empty when absent).
    pub name: String,
    /// Every problem, with its path.
    pub errors: String,
    /// Whether an earlier valid version of it stays in force.
    pub kept_last_good: bool,
}

impl std::fmt::Display for InvalidRunbook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Runbook {}/{} is invalid ({}): {}",
            self.namespace,
            self.name,
            if self.kept_last_good {
                "its last good version stays in force"
            } else {
                "skipped"
            },
            self.errors
        )
    }
}

/// What one [`ClusterRunbooks::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncReport {
    /// False when the listing's `resourceVersion` was the one already applied.
    pub changed: bool,
    /// `namespace/name` of every Runbook in force, sorted.
    pub loaded: Vec<String>,
    /// The objects that did not validate.
    pub invalid: Vec<InvalidRunbook>,
}

/// The Runbooks found in the cluster, last good version of each.
#[derive(Debug, Clone, Default)]
pub struct ClusterRunbooks {
    in_force: BTreeMap<(String, String), domain::Runbook>,
    resource_version: Option<String>,
}

impl ClusterRunbooks {
    /// Nothing listed yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates every object of `listing` against `base` (the rules a Runbook inherits
    /// target, verification and escalation from) and `checks`; valid objects replace
    /// their earlier version, deleted ones go, invalid ones are reported and keep their
    /// last good version if they had one. Pure.
    pub fn apply(
        &mut self,
        listing: &RunbookListing,
        base: &RuleSet,
        checks: &Checks,
    ) -> SyncReport {
        if listing.resource_version.is_some() && listing.resource_version == self.resource_version {
            return SyncReport {
                changed: false,
                loaded: self.loaded(),
                invalid: Vec::new(),
            };
        }
        let mut next = BTreeMap::new();
        let mut invalid = Vec::new();
        for obj in &listing.objects {
            let meta = |k: &str| {
                obj.get("metadata")
                    .and_then(|m| m.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let key = (meta("namespace"), meta("name"));
            let source = format!("runbook {}/{}", key.0, key.1);
            match domain::Runbook::from_json(&source, obj, base, checks) {
                Ok(rb) => {
                    next.insert(key, rb);
                }
                Err(e) => {
                    let errors = e
                        .errors
                        .iter()
                        .map(|e| format!("{}: {}", e.path, e.message))
                        .collect::<Vec<_>>()
                        .join("; ");
                    let last = self.in_force.get(&key).cloned();
                    invalid.push(InvalidRunbook {
                        namespace: key.0.clone(),
                        name: key.1.clone(),
                        errors,
                        kept_last_good: last.is_some(),
                    });
                    if let Some(rb) = last {
                        next.insert(key, rb);
                    }
                }
            }
        }
        self.in_force = next;
        self.resource_version.clone_from(&listing.resource_version);
        SyncReport {
            changed: true,
            loaded: self.loaded(),
            invalid,
        }
    }

    fn loaded(&self) -> Vec<String> {
        self.in_force
            .keys()
            .map(|(ns, n)| format!("{ns}/{n}"))
            .collect()
    }

    /// `base` with every Runbook in force ahead of it (in `namespace/name` order, the
    /// first match wins) and their preconditions attached.
    #[must_use]
    pub fn rule_book(&self, base: RuleBook) -> RuleBook {
        // `with_runbook` puts each one ahead of the previous: add in reverse order so
        // that the first by namespace/name ends up first.
        self.in_force
            .values()
            .rev()
            .fold(base, RuleBook::with_runbook)
    }
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

    const LIST_PATH: &str =
        "/apis/catalyst.openova.io/v1alpha1/namespaces/catalyst-system/runbooks";

    /// A Runbook item as the API server lists it (metadata as it records it).
    fn item(name: &str, rv: &str, steps: &serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "catalyst.openova.io/v1alpha1",
            "kind": "Runbook",
            "metadata": {
                "name": name,
                "namespace": "catalyst-system",
                "uid": format!("uid-{name}"),
                "resourceVersion": rv,
                "generation": 1,
                "creationTimestamp": "2025-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {
                "triggers": [{"alertName": "OpenBaoSealed"}],
                "preconditions": [{"check": "spire.server.healthy"}],
                "steps": steps,
                "rollback": "page-oncall"
            }
        })
    }

    fn list_reply(rv: &str, items: &[serde_json::Value]) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "catalyst.openova.io/v1alpha1",
            "kind": "RunbookList",
            "metadata": {"resourceVersion": rv, "continue": ""},
            "items": items
        })
    }

    /// A client over kube's `tower-test` mock API server that expects one list of the
    /// namespace's runbooks per reply, asserting method, path and query.
    fn mock(
        replies: Vec<serde_json::Value>,
    ) -> (kube::Client, tokio::task::JoinHandle<Vec<Option<String>>>) {
        use http::{Request, Response};
        use kube::client::Body;
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let mut queries = Vec::new();
            for reply in replies {
                let (req, send) = handle.next_request().await.expect("a list request");
                assert_eq!(req.method(), http::Method::GET);
                assert_eq!(req.uri().path(), LIST_PATH);
                let uri = req.uri().to_string();
                assert!(
                    crate::rbac::permits(crate::rbac::Binary::RemediationWebhook, "GET", &uri),
                    "GET {uri} is not granted by rbac"
                );
                queries.push(req.uri().query().map(str::to_owned));
                send.send_response(
                    Response::builder()
                        .status(200)
                        .body(Body::from(serde_json::to_vec(&reply).expect("json")))
                        .expect("response"),
                );
            }
            queries
        });
        (kube::Client::new(service, "default"), server)
    }

    #[tokio::test]
    async fn cluster_runbooks_become_rules_and_a_bad_one_keeps_its_last_good_version() {
        let good_steps = serde_json::json!([
            {"run": "openbao operator unseal --auto-shamir"},
            {"verify": "openbao.status.sealed == false"}
        ]);
        let bad_steps = serde_json::json!([{"reboot": "now"}]);
        let (client, server) = mock(vec![
            list_reply(
                "100",
                &[
                    item("openbao-sealed", "90", &good_steps),
                    item("broken", "91", &bad_steps),
                ],
            ),
            list_reply(
                "100",
                &[
                    item("openbao-sealed", "90", &good_steps),
                    item("broken", "91", &bad_steps),
                ],
            ),
            list_reply("120", &[item("openbao-sealed", "119", &bad_steps)]),
            list_reply("130", &[]),
        ]);
        let lister = RunbookLister::new(client, Some("catalyst-system"));
        let base = RuleSet::builtin().expect("built-in rules");
        let checks = Checks::builtin();
        let mut cluster = ClusterRunbooks::new();

        let listing = lister.list().await.expect("list");
        assert_eq!(listing.resource_version.as_deref(), Some("100"));
        let r = cluster.apply(&listing, &base, &checks);
        assert!(r.changed);
        assert_eq!(r.loaded, ["catalyst-system/openbao-sealed"]);
        assert_eq!(r.invalid.len(), 1, "{r:?}");
        assert_eq!(
            (r.invalid[0].namespace.as_str(), r.invalid[0].name.as_str()),
            ("catalyst-system", "broken")
        );
        assert!(
            r.invalid[0].errors.contains("spec.steps[0].reboot"),
            "{r:?}"
        );
        assert!(!r.invalid[0].kept_last_good);
        let book = cluster.rule_book(RuleBook::new(base.clone()));
        assert_eq!(
            book.rules().rules()[0].name,
            "runbook/catalyst-system/openbao-sealed"
        );
        assert_eq!(
            book.preconditions("runbook/catalyst-system/openbao-sealed")[0].name,
            "spire.server.healthy"
        );

        // Same resourceVersion: nothing converted, nothing re-reported.
        let r = cluster.apply(&lister.list().await.expect("list"), &base, &checks);
        assert_eq!(
            r,
            SyncReport {
                changed: false,
                loaded: vec!["catalyst-system/openbao-sealed".into()],
                invalid: vec![]
            }
        );

        // Edited into something invalid: reported, and its last good version stays.
        let r = cluster.apply(&lister.list().await.expect("list"), &base, &checks);
        assert!(r.invalid[0].kept_last_good, "{r:?}");
        assert!(
            r.invalid[0]
                .to_string()
                .contains("catalyst-system/openbao-sealed")
        );
        assert_eq!(r.loaded, ["catalyst-system/openbao-sealed"]);

        // Deleted: gone.
        let r = cluster.apply(&lister.list().await.expect("list"), &base, &checks);
        assert!(r.loaded.is_empty() && r.invalid.is_empty(), "{r:?}");
        assert_eq!(
            cluster
                .rule_book(RuleBook::new(base.clone()))
                .rules()
                .rules()
                .len(),
            base.rules().len()
        );
        let queries = server.await.expect("mock server");
        assert_eq!(
            queries,
            vec![Some(String::new()); 4],
            "a plain list: no selector"
        );
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
