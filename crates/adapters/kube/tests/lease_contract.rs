//! `KubeLeaseWitness` against the sre-core `Witness` contract suite, run over an
//! in-process *stateful* fake of the API server's Lease endpoints (etcd-like
//! `resourceVersion`s: 409 `Conflict` on a stale one, 409 `AlreadyExists` on a second
//! create, 404 `NotFound` Status objects as the apiserver sends them); plus exact-request
//! `tower-test` scenarios for read, create and replace, and an opt-in run against a real
//! cluster.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use sre_adapter_kube::rbac::{self, Binary};
use sre_adapter_kube::{KubeLeaseWitness, LEASE_RECORD_ANNOTATION};
use sre_core::ports::{CasOutcome, LeaseFormat, LeaseRecord, Revision, Witness, WitnessRead};
use sre_core::testing::contract;
use sre_core::{Generation, PortError, RegionId};

const NS: &str = "failover";
const NAME: &str = "lease";
const COLLECTION: &str = "/apis/coordination.k8s.io/v1/namespaces/failover/leases";
const OBJECT: &str = "/apis/coordination.k8s.io/v1/namespaces/failover/leases/lease";
const WRITE_QUERY: &str = "&fieldManager=sre-failover";

// ---------------------------------------------------------------------------------------
// The stateful fake API server.

/// What etcd would hold: the objects by (namespace, name) and the store's revision.
#[derive(Default)]
struct Store {
    revision: u64,
    leases: BTreeMap<(String, String), Value>,
}

/// A `metav1.Status` failure as the apiserver writes it.
fn status(code: u16, reason: &str, message: &str, name: &str) -> (u16, Value) {
    (
        code,
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason,
            "details": {"name": name, "group": "coordination.k8s.io", "kind": "leases"},
            "code": code
        }),
    )
}

fn not_found(name: &str) -> (u16, Value) {
    status(
        404,
        "NotFound",
        &format!("leases.coordination.k8s.io \"{name}\" not found"),
        name,
    )
}

impl Store {
    /// One request, answered the way kube-apiserver's generic registry does for Leases.
    fn handle(&mut self, method: &Method, path: &str, body: &[u8]) -> (u16, Value) {
        let Some(rest) = path.strip_prefix("/apis/coordination.k8s.io/v1/namespaces/") else {
            return status(404, "NotFound", &format!("no route {path}"), "");
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match (method, parts.as_slice()) {
            (&Method::GET, [ns, "leases", name]) => self
                .leases
                .get(&((*ns).to_string(), (*name).to_string()))
                .map_or_else(|| not_found(name), |o| (200, o.clone())),
            (&Method::POST, [ns, "leases"]) => {
                let Ok(mut obj) = serde_json::from_slice::<Value>(body) else {
                    return status(400, "BadRequest", "body is not JSON", "");
                };
                let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
                let key = ((*ns).to_string(), name.clone());
                if self.leases.contains_key(&key) {
                    return status(
                        409,
                        "AlreadyExists",
                        &format!("leases.coordination.k8s.io \"{name}\" already exists"),
                        &name,
                    );
                }
                if obj["metadata"].get("resourceVersion").is_some() {
                    return status(
                        500,
                        "InternalError",
                        "resourceVersion should not be set on objects to be created",
                        &name,
                    );
                }
                self.revision += 1;
                obj["metadata"]["resourceVersion"] = json!(self.revision.to_string());
                obj["metadata"]["uid"] = json!(format!("uid-{}", self.revision));
                obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                obj["metadata"]["namespace"] = json!(ns);
                self.leases.insert(key, obj.clone());
                (201, obj)
            }
            (&Method::PUT, [ns, "leases", name]) => {
                let Ok(mut obj) = serde_json::from_slice::<Value>(body) else {
                    return status(400, "BadRequest", "body is not JSON", name);
                };
                let key = ((*ns).to_string(), (*name).to_string());
                let Some(current) = self.leases.get(&key) else {
                    return not_found(name);
                };
                let Some(rv) = obj["metadata"]["resourceVersion"].as_str() else {
                    return status(
                        422,
                        "Invalid",
                        &format!(
                            "Lease.coordination.k8s.io \"{name}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
                        ),
                        name,
                    );
                };
                if current["metadata"]["resourceVersion"].as_str() != Some(rv) {
                    return status(
                        409,
                        "Conflict",
                        &format!(
                            "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                        ),
                        name,
                    );
                }
                self.revision += 1;
                obj["metadata"]["resourceVersion"] = json!(self.revision.to_string());
                obj["metadata"]["uid"] = current["metadata"]["uid"].clone();
                obj["metadata"]["creationTimestamp"] =
                    current["metadata"]["creationTimestamp"].clone();
                self.leases.insert(key, obj.clone());
                (200, obj)
            }
            _ => status(
                405,
                "MethodNotAllowed",
                &format!("{method} {path} is not supported"),
                "",
            ),
        }
    }
}

/// A client whose every request goes to `store`, through the real kube client stack.
fn fake_client(store: Arc<Mutex<Store>>) -> Client {
    let service = tower::service_fn(move |req: Request<Body>| {
        let store = store.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let uri = parts.uri.to_string();
            // What the API server does with a request the shipped RBAC does not grant;
            // the contract then fails on the `Rejected`.
            let (code, reply) =
                if rbac::permits(Binary::FailoverController, parts.method.as_str(), &uri) {
                    store.lock().map_or_else(
                        |_| status(500, "InternalError", "poisoned", ""),
                        |mut s| s.handle(&parts.method, parts.uri.path(), &bytes),
                    )
                } else {
                    status(
                        403,
                        "Forbidden",
                        &format!("{} {uri} is not granted by rbac", parts.method),
                        "",
                    )
                };
            let mut response = Response::new(Body::from(reply.to_string().into_bytes()));
            *response.status_mut() =
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Ok::<_, Infallible>(response)
        }
    });
    Client::new(service, "default")
}

#[tokio::test]
async fn the_lease_witness_passes_the_witness_contract() {
    let store = Arc::new(Mutex::new(Store::default()));
    let a = KubeLeaseWitness::new(fake_client(store.clone()), NS, NAME);
    let b = KubeLeaseWitness::new(fake_client(store.clone()), NS, NAME);
    contract::witness(&a, &b).await;
    // The mirror is there for kubectl.
    let stored = store
        .lock()
        .map(|s| s.leases[&(NS.to_string(), NAME.to_string())].clone())
        .expect("store");
    assert!(stored["spec"]["holderIdentity"].is_string(), "{stored}");
    assert_eq!(stored["spec"]["leaseDurationSeconds"], 30);
}

#[tokio::test]
async fn a_lease_without_our_annotation_or_with_garbage_is_malformed_not_absent() {
    let store = Arc::new(Mutex::new(Store::default()));
    let w = KubeLeaseWitness::new(fake_client(store.clone()), NS, NAME);
    let put = |body: Value| {
        store
            .lock()
            .map(|mut s| s.handle(&Method::POST, COLLECTION, body.to_string().as_bytes()))
    };
    // Someone's leader-election Lease under the same name.
    let (code, _) = put(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": NAME},
        "spec": {"holderIdentity": "some-pod", "leaseDurationSeconds": 15}
    }))
    .expect("store");
    assert_eq!(code, 201);
    let WitnessRead::Malformed { revision, error } = w.read().await.expect("read") else {
        panic!("a Lease without the record must read as Malformed");
    };
    assert!(error.0.contains(LEASE_RECORD_ANNOTATION), "{error}");
    // An operator-approved overwrite is still a CAS at that revision.
    let stale = Revision("0".into());
    assert_eq!(
        w.compare_and_swap(Some(&stale), &record("eu", 1))
            .await
            .expect("cas"),
        CasOutcome::Conflict
    );
    assert!(matches!(
        w.compare_and_swap(Some(&revision), &record("eu", 1)).await,
        Ok(CasOutcome::Swapped(_))
    ));

    let garbage = KubeLeaseWitness::new(fake_client(store.clone()), NS, "garbage");
    put(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "garbage", "annotations": {LEASE_RECORD_ANNOTATION: "{not json"}}
    }))
    .expect("store");
    assert!(matches!(
        garbage.read().await.expect("read"),
        WitnessRead::Malformed { .. }
    ));
}

// ---------------------------------------------------------------------------------------
// Exact requests, against kube's tower-test mock.

fn record(holder: &str, generation: u64) -> LeaseRecord {
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default();
    LeaseRecord {
        format: LeaseFormat::V1,
        holder: RegionId::from(holder),
        generation: Generation(generation),
        acquired_at: t,
        renewed_at: t + chrono::Duration::seconds(10),
        ttl_ms: 30_000,
        released: false,
    }
}

/// The Lease body the witness sends for `record` (at `rv` for a replace).
fn lease_body(rec: &LeaseRecord, rv: Option<&str>) -> Value {
    let mut metadata = json!({
        "name": NAME, "namespace": NS,
        "annotations": {LEASE_RECORD_ANNOTATION: String::from_utf8(rec.to_bytes()).expect("utf-8")},
        "labels": {"app.kubernetes.io/managed-by": "sre-failover"},
    });
    if let Some(rv) = rv {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": rec.holder.to_string(),
            "acquireTime": "2026-01-01T00:00:00.000000Z",
            "renewTime": "2026-01-01T00:00:10.000000Z",
            "leaseDurationSeconds": 30,
            "leaseTransitions": rec.generation.0,
        }
    })
}

/// The same object as the API server returns it, at `rv`.
fn stored(rec: &LeaseRecord, rv: &str) -> Value {
    let mut v = lease_body(rec, Some(rv));
    v["metadata"]["uid"] = json!("0b9e4d1c-lease");
    v
}

struct Call {
    method: Method,
    path: &'static str,
    query: Option<&'static str>,
    body: Option<Value>,
    status: u16,
    reply: Value,
}

fn failure(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason,
        "details": {"name": NAME, "group": "coordination.k8s.io", "kind": "leases"}, "code": code
    })
}

/// Runs `act` against a mock that expects exactly `calls`, in order.
async fn scenario<T, F: Future<Output = T>>(
    calls: Vec<Call>,
    act: impl FnOnce(KubeLeaseWitness) -> F,
) -> T {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let verifier = tokio::spawn(async move {
        for (i, call) in calls.into_iter().enumerate() {
            let (request, send) = handle
                .next_request()
                .await
                .unwrap_or_else(|| panic!("call {i} ({} {}) never came", call.method, call.path));
            let uri = request.uri().to_string();
            assert!(
                rbac::permits(Binary::FailoverController, request.method().as_str(), &uri),
                "call {i} {} {uri} is not granted by rbac",
                request.method()
            );
            assert_eq!(request.method(), call.method, "call {i} method");
            assert_eq!(request.uri().path(), call.path, "call {i} path");
            assert_eq!(request.uri().query(), call.query, "call {i} query");
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .expect("request body");
            if let Some(want) = call.body {
                let got: Value = serde_json::from_slice(&bytes).expect("request body is JSON");
                assert_eq!(got, want, "call {i} body");
            }
            let reply = Response::builder()
                .status(call.status)
                .body(Body::from(call.reply.to_string().into_bytes()))
                .expect("reply");
            send.send_response(reply);
        }
        handle
    });
    let witness = KubeLeaseWitness::new(Client::new(service, "default"), NS, NAME);
    let out = tokio::time::timeout(Duration::from_secs(1), act(witness))
        .await
        .expect("scenario timed out: a scripted call was not made, or an unscripted one was");
    tokio::time::timeout(Duration::from_secs(1), verifier)
        .await
        .expect("a scripted call was not made")
        .expect("verifier");
    out
}

fn get(status: u16, reply: Value) -> Call {
    Call {
        method: Method::GET,
        path: OBJECT,
        query: None,
        body: None,
        status,
        reply,
    }
}

#[tokio::test]
async fn read_gets_the_lease_and_maps_absent_present_and_errors() {
    let a = record("eu", 3);
    let got = scenario(vec![get(200, stored(&a, "812"))], |w| async move {
        w.read().await
    })
    .await;
    assert_eq!(
        got.expect("read"),
        WitnessRead::Present {
            record: a,
            revision: Revision("812".into())
        }
    );
    let absent = scenario(
        vec![get(
            404,
            failure(
                404,
                "NotFound",
                "leases.coordination.k8s.io \"lease\" not found",
            ),
        )],
        |w| async move { w.read().await },
    )
    .await;
    assert_eq!(absent.expect("read"), WitnessRead::Absent);
    let forbidden = scenario(
        vec![get(
            403,
            failure(
                403,
                "Forbidden",
                "leases.coordination.k8s.io \"lease\" is forbidden",
            ),
        )],
        |w| async move { w.read().await },
    )
    .await;
    assert!(
        matches!(forbidden, Err(PortError::Rejected { .. })),
        "{forbidden:?}"
    );
    let down = scenario(
        vec![get(503, failure(503, "ServiceUnavailable", "etcd is down"))],
        |w| async move { w.read().await },
    )
    .await;
    assert!(
        matches!(down, Err(PortError::Unavailable { .. })),
        "{down:?}"
    );
}

#[tokio::test]
async fn create_posts_the_lease_and_a_second_create_is_a_conflict() {
    let a = record("eu", 1);
    let post = |status: u16, reply: Value| Call {
        method: Method::POST,
        path: COLLECTION,
        query: Some(WRITE_QUERY),
        body: Some(lease_body(&a, None)),
        status,
        reply,
    };
    let won = scenario(vec![post(201, stored(&a, "100"))], |w| {
        let a = a.clone();
        async move { w.compare_and_swap(None, &a).await }
    })
    .await;
    assert_eq!(
        won.expect("cas"),
        CasOutcome::Swapped(Revision("100".into()))
    );
    let lost = scenario(
        vec![post(
            409,
            failure(
                409,
                "AlreadyExists",
                "leases.coordination.k8s.io \"lease\" already exists",
            ),
        )],
        |w| {
            let a = a.clone();
            async move { w.compare_and_swap(None, &a).await }
        },
    )
    .await;
    assert_eq!(lost.expect("cas"), CasOutcome::Conflict);
}

#[tokio::test]
async fn replace_puts_the_whole_lease_with_the_read_resource_version() {
    let b = record("us", 2);
    let put = |status: u16, reply: Value| Call {
        method: Method::PUT,
        path: OBJECT,
        query: Some(WRITE_QUERY),
        body: Some(lease_body(&b, Some("812"))),
        status,
        reply,
    };
    let rev = Revision("812".into());
    let won = scenario(vec![put(200, stored(&b, "813"))], |w| {
        let (b, rev) = (b.clone(), rev.clone());
        async move { w.compare_and_swap(Some(&rev), &b).await }
    })
    .await;
    assert_eq!(
        won.expect("cas"),
        CasOutcome::Swapped(Revision("813".into()))
    );
    let stale = scenario(
        vec![put(
            409,
            failure(
                409,
                "Conflict",
                "Operation cannot be fulfilled on leases.coordination.k8s.io \"lease\": the object has been modified; please apply your changes to the latest version and try again",
            ),
        )],
        |w| {
            let (b, rev) = (b.clone(), rev.clone());
            async move { w.compare_and_swap(Some(&rev), &b).await }
        },
    )
    .await;
    assert_eq!(stale.expect("cas"), CasOutcome::Conflict);
    let refused = scenario(
        vec![put(
            422,
            failure(
                422,
                "Invalid",
                "Lease.coordination.k8s.io \"lease\" is invalid",
            ),
        )],
        |w| {
            let (b, rev) = (b.clone(), rev.clone());
            async move { w.compare_and_swap(Some(&rev), &b).await }
        },
    )
    .await;
    assert!(
        matches!(refused, Err(PortError::Rejected { .. })),
        "an admission refusal is an error, not a lost race: {refused:?}"
    );
}

// ---------------------------------------------------------------------------------------
// A real cluster.

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG=... SRE_KUBE_TEST_NAMESPACE=ns cargo test -p sre-adapter-kube --test lease_contract -- --ignored"]
async fn the_contract_holds_on_a_real_cluster() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Api, DeleteParams};

    let ns = std::env::var("SRE_KUBE_TEST_NAMESPACE").unwrap_or_else(|_| "default".into());
    let name = format!(
        "sre-witness-contract-{}",
        chrono::Utc::now().timestamp_millis()
    );
    let a = Client::try_default().await.expect("a cluster (KUBECONFIG)");
    let b = Client::try_default().await.expect("a cluster (KUBECONFIG)");
    let w1 = KubeLeaseWitness::new(a.clone(), ns.clone(), name.clone());
    let w2 = KubeLeaseWitness::new(b, ns.clone(), name.clone());
    contract::witness(&w1, &w2).await;
    Api::<Lease>::namespaced(a, &ns)
        .delete(&name, &DeleteParams::default())
        .await
        .expect("clean up the test Lease");
}
