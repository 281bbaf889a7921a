//! The Kubernetes permissions each binary needs, as data, read off the requests this
//! adapter's modules send (paths and methods), plus the rendering of the `ClusterRole`,
//! `ServiceAccount` and `ClusterRoleBinding` that `deploy/rbac/<binary>.yaml` holds.
//!
//! Kept free of kube types so that the table is plain data an operator (or a test) can
//! audit. [`permits`] maps one HTTP request the way the API server's authorizer does
//! (method + path -> API group, resource, subresource, verb) and answers whether the
//! binary's rules allow it; the adapter's mock API servers call it on every request they
//! see, so a request the table does not grant fails the tests, and the unit tests below
//! check that every granted verb is backed by a request the adapter really sends.

use std::fmt::{self, Write as _};

/// A binary that links this adapter and therefore needs its own service account: each
/// gets exactly the verbs its own code paths send, not the union of all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Binary {
    /// `failover-controller`: the three failover layers and the Lease witness.
    FailoverController,
    /// `remediation-webhook`: the `KubeWorkloads` executors and cluster `Runbook`s.
    RemediationWebhook,
    /// `rotation-controller`: the rotation consumers (`KubeReload`).
    RotationController,
}

impl Binary {
    /// Every binary, so that renderers and tests cannot forget one.
    pub const ALL: [Self; 3] = [
        Self::FailoverController,
        Self::RemediationWebhook,
        Self::RotationController,
    ];

    /// The binary's name, which is also the `ServiceAccount`'s and the file's under
    /// `deploy/rbac/`, so operators find one from the other.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::FailoverController => "failover-controller",
            Self::RemediationWebhook => "remediation-webhook",
            Self::RotationController => "rotation-controller",
        }
    }
}

impl fmt::Display for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Kubernetes authorization verb, as RBAC spells it; only the ones the API server
/// derives from the HTTP methods this adapter can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    /// `GET` on a named object.
    Get,
    /// `GET` on a collection.
    List,
    /// `GET` on a collection with `watch=true`.
    Watch,
    /// `POST`.
    Create,
    /// `PUT`.
    Update,
    /// `PATCH`.
    Patch,
    /// `DELETE` on a named object.
    Delete,
    /// `DELETE` on a collection.
    DeleteCollection,
}

impl Verb {
    /// The verb as a `ClusterRole` rule writes it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Delete => "delete",
            Self::DeleteCollection => "deletecollection",
        }
    }
}

/// One RBAC rule: the verbs on one resource (or `resource/subresource`) of one API group.
/// One resource per rule, so that each line of the rendered role says why it is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// API group; `""` is the core group (`/api/v1`).
    pub api_group: &'static str,
    /// Plural resource, with `/subresource` when the request targets one.
    pub resource: &'static str,
    /// The verbs the binary's requests need, nothing more.
    pub verbs: &'static [Verb],
    /// Which code sends the requests, rendered as a comment above the rule.
    pub why: &'static str,
}

const fn rule(
    api_group: &'static str,
    resource: &'static str,
    verbs: &'static [Verb],
    why: &'static str,
) -> Rule {
    Rule {
        api_group,
        resource,
        verbs,
        why,
    }
}

use Verb::{Create, Delete, Get, List, Patch, Update};

const FAILOVER: &[Rule] = &[
    rule(
        "gateway.networking.k8s.io",
        "httproutes",
        &[Get, Patch],
        "routes.rs: HTTPRoute backendRefs switched between serving and withdrawn Service",
    ),
    rule(
        "discovery.k8s.io",
        "endpointslices",
        &[List],
        "routes.rs: k8gb's readiness rule checked on the backend's EndpointSlices",
    ),
    rule(
        "",
        "services",
        &[Get, Patch],
        "mesh.rs: Cilium service.cilium.io/global and /shared annotations",
    ),
    rule(
        "postgresql.cnpg.io",
        "clusters",
        &[Get, Patch],
        "stateful.rs: CNPG spec.replica.primary (here and on the peer's API server)",
    ),
    rule(
        "kafka.strimzi.io",
        "kafkamirrormaker2s",
        &[Get, Patch],
        "stateful.rs: Strimzi KafkaMirrorMaker2 spec.replicas",
    ),
    rule(
        "coordination.k8s.io",
        "leases",
        &[Get, Create, Update],
        "lease.rs: Lease witness (create, compare-and-swap by resourceVersion)",
    ),
];

const REMEDIATION: &[Rule] = &[
    rule(
        "apps",
        "deployments",
        &[Get, Patch, Update],
        "workloads.rs: rollout restart, vLLM --max-num-seqs, rollback (PUT)",
    ),
    rule(
        "apps",
        "deployments/scale",
        &[Get, Patch],
        "workloads.rs: scale through the scale subresource",
    ),
    rule(
        "apps",
        "statefulsets",
        &[Get, Patch],
        "workloads.rs: rollout restart",
    ),
    rule(
        "apps",
        "statefulsets/scale",
        &[Get, Patch],
        "workloads.rs: scale through the scale subresource",
    ),
    rule(
        "apps",
        "replicasets",
        &[List],
        "workloads.rs: rollback finds the previous revision's template",
    ),
    rule(
        "",
        "pods",
        &[Get, List, Delete],
        "workloads.rs: pod restart (delete) and eviction candidates (by node: all namespaces)",
    ),
    rule(
        "",
        "pods/eviction",
        &[Create],
        "workloads.rs: evict_lower_priority through the Eviction API (PDBs respected)",
    ),
    rule(
        "",
        "services",
        &[Get, Patch],
        "traffic.rs: Service selector failover to a backup and failback",
    ),
    rule(
        "discovery.k8s.io",
        "endpointslices",
        &[List],
        "traffic.rs: the backup Service must have ready endpoints",
    ),
    rule(
        "serving.kserve.io",
        "inferenceservices",
        &[Get, Patch],
        "workloads.rs: KServe minReplicas and vLLM --max-num-seqs",
    ),
    rule(
        "cert-manager.io",
        "certificates",
        &[Get],
        "workloads.rs: renew_certificate reads the Issuing condition",
    ),
    rule(
        "cert-manager.io",
        "certificates/status",
        &[Update],
        "workloads.rs: renew_certificate sets Issuing=True (what cmctl renew does)",
    ),
    rule(
        "k8gb.absa.oss",
        "gslbs",
        &[Get],
        "traffic.rs: check_gslb reads Gslb status (read only)",
    ),
    rule(
        "catalyst.openova.io",
        "runbooks",
        &[List],
        "runbook.rs: cluster Runbooks (runbooks.from_cluster)",
    ),
];

const ROTATION: &[Rule] = &[
    rule(
        "external-secrets.io",
        "externalsecrets",
        &[Patch],
        "reload.rs: force-sync annotation makes ESO re-read the rotated secret",
    ),
    rule(
        "apps",
        "deployments",
        &[Patch],
        "reload.rs: Reloader-compatible template annotation rolls consumers out",
    ),
    rule(
        "cert-manager.io",
        "certificates",
        &[Get],
        "certificates.rs: observe-only tls secrets read status.notBefore/notAfter",
    ),
];

/// The rules `binary` needs: the table `deploy/rbac/` is rendered from and [`permits`]
/// checks against.
#[must_use]
pub fn rules(binary: Binary) -> &'static [Rule] {
    match binary {
        Binary::FailoverController => FAILOVER,
        Binary::RemediationWebhook => REMEDIATION,
        Binary::RotationController => ROTATION,
    }
}

/// What the API server's authorizer checks for one request: group, resource (with
/// `/subresource`) and verb. Exposed so that a refusal can say what was missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// API group; `""` for the core group.
    pub api_group: String,
    /// Plural resource, with `/subresource` when there is one.
    pub resource: String,
    /// The verb the method maps to.
    pub verb: Verb,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group = if self.api_group.is_empty() {
            "core"
        } else {
            &self.api_group
        };
        write!(f, "{} {group}/{}", self.verb.as_str(), self.resource)
    }
}

/// Maps an HTTP request (method and path, with or without `?query`) to the permission the
/// API server checks, as its request-info resolver does: `/api/v1/...` is the core group,
/// `/apis/<group>/<version>/...`; `namespaces/<ns>/` is stripped; GET on a name is `get`,
/// on a collection `list` (`watch` with `watch=true`); POST `create`, PUT `update`, PATCH
/// `patch`, DELETE `delete` (`deletecollection` on a collection). `None` for anything
/// that is not a resource request (`/version`, discovery, an unknown method).
#[must_use]
pub fn permission(method: &str, uri: &str) -> Option<Permission> {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (api_group, rest) = match segs.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, inner @ ..] if !inner.is_empty() => inner,
        other => other,
    };
    let (resource, named) = match rest {
        [resource] => ((*resource).to_owned(), false),
        [resource, _name] => ((*resource).to_owned(), true),
        [resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => return None,
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (method.to_ascii_uppercase().as_str(), named) {
        ("GET", true) => Verb::Get,
        ("GET", false) if watch => Verb::Watch,
        ("GET", false) => Verb::List,
        ("POST", _) => Verb::Create,
        ("PUT", _) => Verb::Update,
        ("PATCH", _) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => return None,
    };
    Some(Permission {
        api_group: api_group.to_owned(),
        resource,
        verb,
    })
}

/// Whether `binary`'s rules allow the request `method uri`: what the adapter's mock API
/// servers assert on every request, so that the table cannot fall behind the code.
#[must_use]
pub fn permits(binary: Binary, method: &str, uri: &str) -> bool {
    permission(method, uri).is_some_and(|p| {
        rules(binary).iter().any(|r| {
            r.api_group == p.api_group && r.resource == p.resource && r.verbs.contains(&p.verb)
        })
    })
}

/// The name of `binary`'s `ClusterRole`, prefixed so it does not collide with a role of
/// the same name from another project.
#[must_use]
pub fn cluster_role_name(binary: Binary) -> String {
    format!("sre-{}", binary.name())
}

/// Renders `binary`'s `ClusterRole`, its `ServiceAccount` in `namespace` and the
/// `ClusterRoleBinding` between them, as the YAML `kubectl apply -f` takes. A
/// `ClusterRole` because the objects live in namespaces chosen in each binary's config
/// (and `remediation-webhook` lists pods across all namespaces to evict by node); to
/// confine a binary to its namespaces, bind the same `ClusterRole` with one `RoleBinding`
/// per namespace instead of the `ClusterRoleBinding`.
#[must_use]
pub fn render(binary: Binary, namespace: &str) -> String {
    let role = cluster_role_name(binary);
    let sa = binary.name();
    let scope = match binary {
        Binary::FailoverController => {
            "# Its objects live in the namespaces of its kube: config (and the Lease's). The identity\n\
             # of its peer kubeconfig context needs the postgresql.cnpg.io rule on the peer too.\n"
        }
        Binary::RemediationWebhook => {
            "# Cluster-wide as shipped: alerts name any namespace, evict-by-node lists pods in all\n\
             # namespaces (/api/v1/pods) and Runbooks without runbooks.namespace are listed cluster-wide.\n"
        }
        Binary::RotationController => {
            "# Its objects live in the namespaces of the consumers in its rotation config.\n"
        }
    };
    let mut out = String::new();
    // Writing into a String cannot fail; `let _` keeps the renderer infallible.
    let _ = writeln!(
        out,
        "# Generated from sre_adapter_kube::rbac (crates/adapters/kube/src/rbac.rs); do not edit:\n\
         # the adapter's tests fail when this file and the table differ. Regenerate with\n\
         # SRE_RBAC_BLESS=1 cargo test -p sre-adapter-kube rbac\n\
         # Least privilege for {sa}: only the verbs its requests use.\n\
         {scope}\
         # To confine it to some namespaces, replace the ClusterRoleBinding by one RoleBinding each:\n\
         #   kubectl -n NS create rolebinding {sa} --clusterrole={role} --serviceaccount={namespace}:{sa}\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: ClusterRole\n\
         metadata:\n  name: {role}\n  labels:\n    app.kubernetes.io/name: {sa}\n    app.kubernetes.io/part-of: sre\n\
         rules:"
    );
    for r in rules(binary) {
        let verbs: Vec<&str> = r.verbs.iter().map(|v| v.as_str()).collect();
        let _ = writeln!(
            out,
            "  # {}\n  - apiGroups: [\"{}\"]\n    resources: [{}]\n    verbs: [{}]",
            r.why,
            r.api_group,
            r.resource,
            verbs.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "---\n\
         apiVersion: v1\n\
         kind: ServiceAccount\n\
         metadata:\n  name: {sa}\n  namespace: {namespace}\n  labels:\n    app.kubernetes.io/name: {sa}\n    app.kubernetes.io/part-of: sre\n\
         ---\n\
         apiVersion: rbac.authorization.k8s.io/v1\n\
         kind: ClusterRoleBinding\n\
         metadata:\n  name: {role}\n  labels:\n    app.kubernetes.io/name: {sa}\n    app.kubernetes.io/part-of: sre\n\
         roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {role}\n\
         subjects:\n  - kind: ServiceAccount\n    name: {sa}\n    namespace: {namespace}"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    #[test]
    fn requests_map_to_group_resource_and_verb() {
        let p = |m: &str, u: &str| permission(m, u).map(|p| p.to_string());
        assert_eq!(
            p("GET", "/api/v1/namespaces/shop/pods/api-1").as_deref(),
            Some("get core/pods")
        );
        assert_eq!(
            p("GET", "/api/v1/pods?&fieldSelector=spec.nodeName%3Dn1").as_deref(),
            Some("list core/pods")
        );
        assert_eq!(
            p(
                "GET",
                "/api/v1/namespaces/shop/pods?watch=true&timeoutSeconds=290"
            )
            .as_deref(),
            Some("watch core/pods")
        );
        assert_eq!(
            p("POST", "/api/v1/namespaces/shop/pods/api-1/eviction").as_deref(),
            Some("create core/pods/eviction")
        );
        assert_eq!(
            p(
                "PATCH",
                "/apis/apps/v1/namespaces/shop/deployments/api/scale?&fieldManager=x"
            )
            .as_deref(),
            Some("patch apps/deployments/scale")
        );
        assert_eq!(
            p(
                "PUT",
                "/apis/cert-manager.io/v1/namespaces/shop/certificates/web/status"
            )
            .as_deref(),
            Some("update cert-manager.io/certificates/status")
        );
        assert_eq!(
            p("DELETE", "/api/v1/namespaces/shop/pods").as_deref(),
            Some("deletecollection core/pods")
        );
        // A namespace object itself, not a namespaced resource.
        assert_eq!(
            p("GET", "/api/v1/namespaces/shop").as_deref(),
            Some("get core/namespaces")
        );
        assert_eq!(p("GET", "/version"), None);
        assert_eq!(p("GET", "/apis/apps/v1"), None);
        assert_eq!(p("OPTIONS", "/api/v1/pods"), None);
    }

    #[test]
    fn permits_only_what_the_table_grants() {
        use Binary::{FailoverController as F, RemediationWebhook as R, RotationController as O};
        assert!(permits(
            R,
            "POST",
            "/api/v1/namespaces/shop/pods/api-1/eviction"
        ));
        assert!(permits(
            R,
            "GET",
            "/apis/apps/v1/namespaces/shop/statefulsets/kc/scale"
        ));
        assert!(permits(
            R,
            "PUT",
            "/apis/cert-manager.io/v1/namespaces/s/certificates/c/status"
        ));
        assert!(permits(
            F,
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/f/leases/l"
        ));
        assert!(permits(
            O,
            "PATCH",
            "/apis/apps/v1/namespaces/b/deployments/api"
        ));
        // Denied: a verb not granted, a subresource not granted, another binary's rule,
        // a watch where only list is granted, and non-resource URLs.
        assert!(!permits(
            R,
            "PUT",
            "/apis/cert-manager.io/v1/namespaces/s/certificates/c"
        ));
        assert!(!permits(
            R,
            "PATCH",
            "/api/v1/namespaces/shop/pods/api-1/status"
        ));
        assert!(!permits(
            R,
            "DELETE",
            "/apis/apps/v1/namespaces/shop/deployments/api"
        ));
        assert!(!permits(
            O,
            "GET",
            "/apis/apps/v1/namespaces/b/deployments/api"
        ));
        assert!(!permits(
            F,
            "DELETE",
            "/apis/coordination.k8s.io/v1/namespaces/f/leases/l"
        ));
        assert!(!permits(
            R,
            "GET",
            "/apis/catalyst.openova.io/v1alpha1/runbooks?watch=true"
        ));
        assert!(!permits(R, "GET", "/version"));
    }

    const FAILOVER_REQUESTS: &[(&str, &str)] = &[
        (
            "GET",
            "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web",
        ),
        (
            "PATCH",
            "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web",
        ),
        (
            "GET",
            "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices",
        ),
        ("GET", "/api/v1/namespaces/shop/services/orders"),
        ("PATCH", "/api/v1/namespaces/shop/services/orders"),
        (
            "GET",
            "/apis/postgresql.cnpg.io/v1/namespaces/db/clusters/pg-eu",
        ),
        (
            "PATCH",
            "/apis/postgresql.cnpg.io/v1/namespaces/db/clusters/pg-us",
        ),
        (
            "GET",
            "/apis/kafka.strimzi.io/v1beta2/namespaces/kafka/kafkamirrormaker2s/mm",
        ),
        (
            "PATCH",
            "/apis/kafka.strimzi.io/v1beta2/namespaces/kafka/kafkamirrormaker2s/mm",
        ),
        (
            "GET",
            "/apis/coordination.k8s.io/v1/namespaces/failover/leases/lease",
        ),
        (
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/failover/leases",
        ),
        (
            "PUT",
            "/apis/coordination.k8s.io/v1/namespaces/failover/leases/lease",
        ),
    ];

    const REMEDIATION_REQUESTS: &[(&str, &str)] = &[
        ("GET", "/apis/apps/v1/namespaces/shop/deployments/api"),
        ("PATCH", "/apis/apps/v1/namespaces/shop/deployments/api"),
        ("PUT", "/apis/apps/v1/namespaces/shop/deployments/api"),
        ("GET", "/apis/apps/v1/namespaces/shop/deployments/api/scale"),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/api/scale",
        ),
        ("GET", "/apis/apps/v1/namespaces/shop/statefulsets/kc"),
        ("PATCH", "/apis/apps/v1/namespaces/shop/statefulsets/kc"),
        ("GET", "/apis/apps/v1/namespaces/shop/statefulsets/kc/scale"),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/shop/statefulsets/kc/scale",
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/shop/replicasets?&labelSelector=app%3Dapi",
        ),
        ("GET", "/api/v1/namespaces/shop/pods/api-1"),
        ("GET", "/api/v1/pods?&fieldSelector=spec.nodeName%3Dgpu-1"),
        ("DELETE", "/api/v1/namespaces/shop/pods/api-1"),
        ("POST", "/api/v1/namespaces/shop/pods/api-1/eviction"),
        ("GET", "/api/v1/namespaces/bank/services/quota-service"),
        ("PATCH", "/api/v1/namespaces/bank/services/quota-service"),
        (
            "GET",
            "/apis/discovery.k8s.io/v1/namespaces/bank/endpointslices",
        ),
        (
            "GET",
            "/apis/serving.kserve.io/v1beta1/namespaces/ai/inferenceservices/llama",
        ),
        (
            "PATCH",
            "/apis/serving.kserve.io/v1beta1/namespaces/ai/inferenceservices/llama",
        ),
        (
            "GET",
            "/apis/cert-manager.io/v1/namespaces/shop/certificates/web-tls",
        ),
        (
            "PUT",
            "/apis/cert-manager.io/v1/namespaces/shop/certificates/web-tls/status",
        ),
        (
            "GET",
            "/apis/k8gb.absa.oss/v1beta1/namespaces/k8gb/gslbs/app",
        ),
        (
            "GET",
            "/apis/catalyst.openova.io/v1alpha1/namespaces/ops/runbooks",
        ),
    ];

    const ROTATION_REQUESTS: &[(&str, &str)] = &[
        (
            "PATCH",
            "/apis/external-secrets.io/v1/namespaces/billing/externalsecrets/db",
        ),
        ("PATCH", "/apis/apps/v1/namespaces/billing/deployments/api"),
        (
            "GET",
            "/apis/cert-manager.io/v1/namespaces/catalyst-system/certificates/ingress-tls",
        ),
    ];

    /// One request each binary really sends for every granted verb (paths as the mock
    /// tests script them, taken from the modules named in each rule). The table must be
    /// exactly what these need: a verb added without a request fails here, and the mock
    /// API servers fail any request the table lacks.
    fn witnesses(binary: Binary) -> &'static [(&'static str, &'static str)] {
        match binary {
            Binary::FailoverController => FAILOVER_REQUESTS,
            Binary::RemediationWebhook => REMEDIATION_REQUESTS,
            Binary::RotationController => ROTATION_REQUESTS,
        }
    }

    fn key(group: &str, resource: &str, verb: Verb) -> (String, String, Verb) {
        (group.to_owned(), resource.to_owned(), verb)
    }

    #[test]
    fn the_table_is_exactly_what_the_requests_need() {
        for b in Binary::ALL {
            let mut needed = BTreeSet::new();
            for (m, u) in witnesses(b) {
                assert!(permits(b, m, u), "{b}: {m} {u} is not granted");
                let p = permission(m, u).unwrap_or_else(|| panic!("{m} {u} is a resource request"));
                needed.insert(key(&p.api_group, &p.resource, p.verb));
            }
            let mut granted = BTreeSet::new();
            for r in rules(b) {
                for v in r.verbs {
                    assert!(
                        granted.insert(key(r.api_group, r.resource, *v)),
                        "{b}: {} {}/{} granted twice",
                        v.as_str(),
                        r.api_group,
                        r.resource
                    );
                }
            }
            let extra: Vec<_> = granted.difference(&needed).collect();
            assert!(
                extra.is_empty(),
                "{b}: granted but never requested: {extra:?}"
            );
        }
    }

    #[test]
    fn the_rendered_role_lists_each_rule() {
        let y = render(Binary::RotationController, "ops");
        assert!(
            y.contains("kind: ClusterRole\nmetadata:\n  name: sre-rotation-controller\n"),
            "{y}"
        );
        assert!(y.contains(
            "  - apiGroups: [\"external-secrets.io\"]\n    resources: [externalsecrets]\n    verbs: [patch]\n"
        ), "{y}");
        assert!(
            y.contains(
                "kind: ServiceAccount\nmetadata:\n  name: rotation-controller\n  namespace: ops\n"
            ),
            "{y}"
        );
        assert!(y.contains("subjects:\n  - kind: ServiceAccount\n    name: rotation-controller\n    namespace: ops\n"), "{y}");
        let core = render(Binary::RemediationWebhook, "ops");
        assert!(
            core.contains(
                "  - apiGroups: [\"\"]\n    resources: [pods/eviction]\n    verbs: [create]\n"
            ),
            "{core}"
        );
    }

    /// `deploy/rbac/<binary>.yaml` is the rendering for namespace `sre-system`, byte for
    /// byte, so the shipped files cannot drift from the table. `SRE_RBAC_BLESS=1`
    /// rewrites them after a deliberate table change.
    #[test]
    fn the_checked_in_manifests_equal_the_rendering() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../deploy/rbac");
        let bless = std::env::var_os("SRE_RBAC_BLESS").is_some();
        for b in Binary::ALL {
            let path = dir.join(format!("{}.yaml", b.name()));
            let want = render(b, "sre-system");
            if bless {
                std::fs::create_dir_all(&dir).expect("create deploy/rbac");
                std::fs::write(&path, &want).expect("write the manifest");
            }
            let got = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (SRE_RBAC_BLESS=1 writes it)", path.display()));
            assert_eq!(
                got,
                want,
                "{} differs from rbac::render; regenerate with SRE_RBAC_BLESS=1 cargo test -p sre-adapter-kube rbac",
                path.display()
            );
        }
    }
}
