//! The actuators against kube's `tower-test` mock API server: every scenario scripts the
//! exact requests (method, path, query, JSON body) it expects and replies with API shapes
//! as the API server sends them. Each runs under a 1-second timeout, so a missing call or
//! an unexpected extra one (for example a write that should have been refused) fails fast.
//! The ignored tests run against a real cluster. The `remediation` scenarios drive
//! `KubeWorkloads` (scale, restart, rollback, evict, vLLM batch size, cert renewal) the same way.

use std::future::Future;
use std::time::Duration;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use sre_adapter_kube::rbac::{self, Binary};
use sre_adapter_kube::{
    CiliumMeshConfig, CiliumMeshTraffic, CnpgClusterRef, CnpgTopology, GENERATION_ANNOTATION,
    HttpRouteConfig, HttpRouteTraffic, KubeStatefulServices, StatefulConfig, StrimziConfig,
};
use sre_core::{Generation, PortError};
use sre_failover::ports::{
    ExternalTraffic, InternalTraffic, LayerError, StatefulService, StatefulServices,
};

const ROUTE: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/web";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices";
const SVC: &str = "/api/v1/namespaces/shop/services/orders";
const LOCAL_PG: &str = "/apis/postgresql.cnpg.io/v1/namespaces/db/clusters/pg-eu";
const PEER_PG: &str = "/apis/postgresql.cnpg.io/v1/namespaces/db/clusters/pg-us";
const MM2: &str = "/apis/kafka.strimzi.io/v1beta2/namespaces/kafka/kafkamirrormaker2s/into-eu";
const PATCH_QUERY: Option<&str> = Some("&fieldManager=sre-failover");

/// One expected request and the reply to it.
struct Call {
    method: Method,
    path: &'static str,
    query: Option<&'static str>,
    body: Option<Value>,
    status: u16,
    reply: Value,
}

fn get(path: &'static str, reply: Value) -> Call {
    Call {
        method: Method::GET,
        path,
        query: None,
        body: None,
        status: 200,
        reply,
    }
}

fn list(path: &'static str, query: &'static str, reply: Value) -> Call {
    Call {
        method: Method::GET,
        path,
        query: Some(query),
        body: None,
        status: 200,
        reply,
    }
}

fn patch(path: &'static str, body: Value, reply: Value) -> Call {
    Call {
        method: Method::PATCH,
        path,
        query: PATCH_QUERY,
        body: Some(body),
        status: 200,
        reply,
    }
}

fn fail(method: Method, path: &'static str, code: u16, reason: &str) -> Call {
    let query = if method == Method::PATCH {
        PATCH_QUERY
    } else {
        None
    };
    Call {
        method,
        path,
        query,
        body: None,
        status: code,
        reply: json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("the server says {reason}"), "reason": reason, "code": code
        }),
    }
}

/// A client over a mock API server that answers `calls` in order and asserts each request,
/// first that `binary`'s RBAC rules (`deploy/rbac/`) grant it.
fn mock_server(
    binary: Binary,
    name: &'static str,
    calls: Vec<Call>,
) -> (Client, tokio::task::JoinHandle<impl Send>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let verifier = tokio::spawn(async move {
        for (i, call) in calls.into_iter().enumerate() {
            let (request, send) = handle.next_request().await.unwrap_or_else(|| {
                panic!(
                    "{name}: call {i} ({} {}) never came",
                    call.method, call.path
                )
            });
            assert!(
                rbac::permits(
                    binary,
                    request.method().as_str(),
                    &request.uri().to_string()
                ),
                "{name}: call {i} {} {} is not granted to {binary} by sre_adapter_kube::rbac",
                request.method(),
                request.uri()
            );
            assert_eq!(request.method(), call.method, "{name}: call {i} method");
            assert_eq!(request.uri().path(), call.path, "{name}: call {i} path");
            assert_eq!(request.uri().query(), call.query, "{name}: call {i} query");
            if call.method == Method::PATCH {
                let ct = request.headers().get(http::header::CONTENT_TYPE);
                assert_eq!(
                    ct.and_then(|v| v.to_str().ok()),
                    Some("application/merge-patch+json"),
                    "{name}: call {i} must be a JSON merge patch"
                );
            }
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .expect("request body");
            if let Some(want) = call.body {
                let got: Value = serde_json::from_slice(&bytes).expect("request body is JSON");
                assert_eq!(got, want, "{name}: call {i} body");
            }
            let reply = Response::builder()
                .status(call.status)
                .body(Body::from(
                    serde_json::to_vec(&call.reply).expect("reply JSON"),
                ))
                .expect("reply");
            send.send_response(reply);
        }
        // Kept alive so that an unexpected extra request hangs (and the scenario times
        // out) instead of failing with a transport error that could look like a result.
        handle
    });
    (Client::new(service, "default"), verifier)
}

/// Runs `act` against one scripted API server, as the failover controller (the
/// `remediation` and `rotation_reload` modules shadow this with their binary).
async fn scenario<T, F: Future<Output = T>>(calls: Vec<Call>, act: impl FnOnce(Client) -> F) -> T {
    scenario_as(Binary::FailoverController, calls, act).await
}

/// Runs `act` against one scripted API server whose every request `binary` must be granted.
async fn scenario_as<T, F: Future<Output = T>>(
    binary: Binary,
    calls: Vec<Call>,
    act: impl FnOnce(Client) -> F,
) -> T {
    let (client, verifier) = mock_server(binary, "local", calls);
    let out = tokio::time::timeout(Duration::from_secs(1), act(client))
        .await
        .expect("scenario timed out: a scripted call was not made, or an unscripted one was");
    tokio::time::timeout(Duration::from_secs(1), verifier)
        .await
        .expect("verifier timed out")
        .expect("verifier failed");
    out
}

/// Runs `act` against a scripted local and a scripted peer API server.
async fn scenario2<T, F: Future<Output = T>>(
    local: Vec<Call>,
    peer: Vec<Call>,
    act: impl FnOnce(Client, Client) -> F,
) -> T {
    let (lc, lv) = mock_server(Binary::FailoverController, "local", local);
    let (pc, pv) = mock_server(Binary::FailoverController, "peer", peer);
    let out = tokio::time::timeout(Duration::from_secs(1), act(lc, pc))
        .await
        .expect("scenario timed out: a scripted call was not made, or an unscripted one was");
    for v in [lv, pv] {
        tokio::time::timeout(Duration::from_secs(1), v)
            .await
            .expect("verifier timed out")
            .expect("verifier failed");
    }
    out
}

// ---- recorded API shapes ------------------------------------------------------------

fn annotations(generation: Option<u64>, extra: &[(&str, &str)]) -> Value {
    let mut a = serde_json::Map::new();
    if let Some(g) = generation {
        a.insert(GENERATION_ANNOTATION.into(), Value::String(g.to_string()));
    }
    for (k, v) in extra {
        a.insert((*k).into(), Value::String((*v).into()));
    }
    Value::Object(a)
}

fn rules(backend: &str) -> Value {
    json!([{
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [{"group": "", "kind": "Service", "name": backend, "port": 80, "weight": 1}]
    }])
}

fn route(backend: &str, generation: Option<u64>, rv: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": rv,
                     "annotations": annotations(generation, &[])},
        "spec": {"parentRefs": [{"name": "gw", "namespace": "infra"}],
                 "hostnames": ["shop.example.com"], "rules": rules(backend)},
        "status": {"parents": []}
    })
}

fn slices(service: &str, ready: Option<bool>) -> Value {
    let items = match ready {
        None => json!([]),
        Some(r) => json!([{
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": format!("{service}-abcde"), "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": service}},
            "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": r}}],
            "ports": [{"port": 8080, "protocol": "TCP"}]
        }]),
    };
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
           "metadata": {"resourceVersion": "900"}, "items": items})
}

fn service(shared: Option<&str>, generation: Option<u64>, rv: &str) -> Value {
    let mut extra = vec![("service.cilium.io/global", "true")];
    if let Some(s) = shared {
        extra.push(("service.cilium.io/shared", s));
    }
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "orders", "namespace": "shop", "resourceVersion": rv,
                     "annotations": annotations(generation, &extra)},
        "spec": {"selector": {"app": "orders"}, "ports": [{"port": 80, "targetPort": 8080}],
                 "clusterIP": "10.96.0.10", "type": "ClusterIP"}
    })
}

fn pg(
    name: &str,
    primary: &str,
    token: Option<&str>,
    demotion: Option<&str>,
    generation: Option<u64>,
) -> Value {
    let mut replica =
        json!({"primary": primary, "source": if name == "pg-eu" { "pg-us" } else { "pg-eu" }});
    if let Some(t) = token {
        replica["promotionToken"] = json!(t);
    }
    let mut status =
        json!({"currentPrimary": format!("{name}-1"), "phase": "Cluster in healthy state"});
    if let Some(d) = demotion {
        status["demotionToken"] = json!(d);
    }
    json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": name, "namespace": "db", "resourceVersion": "55",
                     "annotations": annotations(generation, &[])},
        "spec": {"instances": 3, "replica": replica,
                 "externalClusters": [{"name": "pg-eu"}, {"name": "pg-us"}]},
        "status": status
    })
}

fn mm2(replicas: u64, target: &str, generation: Option<u64>) -> Value {
    json!({
        "apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaMirrorMaker2",
        "metadata": {"name": "into-eu", "namespace": "kafka", "resourceVersion": "12",
                     "annotations": annotations(generation, &[])},
        "spec": {"version": "4.1.0", "replicas": replicas, "connectCluster": target,
                 "clusters": [{"alias": "us", "bootstrapServers": "us-kafka:9092"},
                              {"alias": "eu", "bootstrapServers": "eu-kafka:9092"}],
                 "mirrors": [{"sourceCluster": "us", "targetCluster": target, "topicsPattern": ".*"}]}
    })
}

/// The body every guarded write sends: stamp + precondition, next to the change.
fn guarded(generation: u64, rv: &str, change: Value) -> Value {
    let mut body = json!({"metadata": {"annotations": {GENERATION_ANNOTATION: generation.to_string()},
                                        "resourceVersion": rv}});
    merge(&mut body, change);
    body
}

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

// ---- actuators under test -------------------------------------------------------------

fn routes(client: Client) -> HttpRouteTraffic {
    HttpRouteTraffic::new(
        client,
        HttpRouteConfig {
            namespace: "shop".into(),
            routes: vec!["web".into()],
            serving_backend: "web".into(),
            withdrawn_backend: "web-withdrawn".into(),
        },
    )
}

fn mesh(client: Client) -> CiliumMeshTraffic {
    CiliumMeshTraffic::new(
        client,
        CiliumMeshConfig {
            namespace: "shop".into(),
            services: vec!["orders".into()],
        },
    )
}

fn stateful(local: Client, peer: Option<Client>) -> KubeStatefulServices {
    KubeStatefulServices::new(
        local,
        peer,
        StatefulConfig {
            cnpg: Some(CnpgTopology {
                local: CnpgClusterRef {
                    namespace: "db".into(),
                    name: "pg-eu".into(),
                },
                self_name: "pg-eu".into(),
                peer_name: "pg-us".into(),
                peer: Some(CnpgClusterRef {
                    namespace: "db".into(),
                    name: "pg-us".into(),
                }),
            }),
            ferretdb: None,
            strimzi: Some(StrimziConfig {
                namespace: "kafka".into(),
                mirror_maker: "into-eu".into(),
                local_alias: "eu".into(),
                standby_replicas: std::num::NonZeroU16::MIN,
            }),
        },
    )
}

const WEB_SLICES: &str = "&labelSelector=kubernetes.io%2Fservice-name%3Dweb";
const WITHDRAWN_SLICES: &str = "&labelSelector=kubernetes.io%2Fservice-name%3Dweb-withdrawn";

// ---- external traffic -------------------------------------------------------------------

#[tokio::test]
async fn routes_ready_points_backends_at_the_serving_service_and_checks_k8gbs_rule() {
    let status = scenario(
        vec![
            get(ROUTE, route("web-withdrawn", Some(3), "100")),
            patch(
                ROUTE,
                guarded(4, "100", json!({"spec": {"rules": rules("web")}})),
                route("web", Some(4), "101"),
            ),
            get(ROUTE, route("web", Some(4), "101")),
            list(SLICES, WEB_SLICES, slices("web", Some(true))),
        ],
        |c| async move { routes(c).set_routes_ready(true, Generation(4)).await },
    )
    .await
    .expect("ready");
    assert!(status.serving);
    assert_eq!(status.generation, Some(Generation(4)));
}

#[tokio::test]
async fn routes_withdraw_points_backends_at_the_endpointless_service() {
    let status = scenario(
        vec![
            get(ROUTE, route("web", Some(4), "101")),
            patch(
                ROUTE,
                guarded(5, "101", json!({"spec": {"rules": rules("web-withdrawn")}})),
                route("web-withdrawn", Some(5), "102"),
            ),
            get(ROUTE, route("web-withdrawn", Some(5), "102")),
            list(SLICES, WITHDRAWN_SLICES, slices("web-withdrawn", None)),
        ],
        |c| async move { routes(c).set_routes_ready(false, Generation(5)).await },
    )
    .await
    .expect("withdraw");
    assert!(!status.serving);
}

#[tokio::test]
async fn routes_ready_without_ready_endpoints_is_not_verified() {
    let err = scenario(
        vec![
            get(ROUTE, route("web-withdrawn", Some(3), "100")),
            patch(
                ROUTE,
                guarded(4, "100", json!({"spec": {"rules": rules("web")}})),
                route("web", Some(4), "101"),
            ),
            get(ROUTE, route("web", Some(4), "101")),
            list(SLICES, WEB_SLICES, slices("web", Some(false))),
        ],
        |c| async move { routes(c).set_routes_ready(true, Generation(4)).await },
    )
    .await
    .expect_err("no ready endpoint");
    assert!(
        matches!(err, LayerError::NotVerified(ref m) if m.contains("no ready endpoint")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_stale_generation_is_refused_before_any_write() {
    // Only the read is scripted: a PATCH would hang and time the scenario out.
    let err = scenario(
        vec![get(ROUTE, route("web", Some(9), "300"))],
        |c| async move { routes(c).set_routes_ready(false, Generation(4)).await },
    )
    .await
    .expect_err("stale");
    assert_eq!(
        err,
        LayerError::Stale {
            ours: Generation(4),
            seen: Generation(9)
        }
    );
}

#[tokio::test]
async fn applying_the_same_route_state_twice_sends_no_write() {
    let status = scenario(
        vec![
            get(ROUTE, route("web", Some(4), "101")),
            list(SLICES, WEB_SLICES, slices("web", Some(true))),
        ],
        |c| async move { routes(c).set_routes_ready(true, Generation(4)).await },
    )
    .await
    .expect("idempotent");
    assert!(status.serving);
    assert!(status.detail.contains("0 written"), "{}", status.detail);
}

#[tokio::test]
async fn a_route_with_a_foreign_backend_is_refused() {
    let mut foreign = route("web", Some(1), "100");
    foreign["spec"]["rules"][0]["backendRefs"][0]["name"] = json!("legacy");
    let err = scenario(vec![get(ROUTE, foreign)], |c| async move {
        routes(c).set_routes_ready(false, Generation(2)).await
    })
    .await
    .expect_err("foreign backend");
    assert!(
        matches!(err, LayerError::Port(PortError::Invalid(ref m)) if m.contains("legacy")),
        "{err:?}"
    );
}

#[tokio::test]
async fn routes_status_reads_route_and_endpoints() {
    let status = scenario(
        vec![
            get(ROUTE, route("web", Some(6), "101")),
            list(SLICES, WEB_SLICES, slices("web", Some(true))),
        ],
        |c| async move { routes(c).routes_status().await },
    )
    .await
    .expect("status");
    assert!(status.serving);
    assert_eq!(status.generation, Some(Generation(6)));
}

// ---- error mapping ------------------------------------------------------------------------

#[tokio::test]
async fn api_errors_map_to_port_errors() {
    let err = scenario(
        vec![fail(Method::GET, ROUTE, 404, "NotFound")],
        |c| async move { routes(c).routes_status().await },
    )
    .await
    .expect_err("404");
    assert!(
        matches!(err, LayerError::Port(PortError::NotFound { ref what }) if what.contains("HTTPRoute shop/web")),
        "{err:?}"
    );

    let err = scenario(
        vec![fail(Method::GET, SVC, 403, "Forbidden")],
        |c| async move { mesh(c).mesh_status().await },
    )
    .await
    .expect_err("403");
    assert!(
        matches!(err, LayerError::Port(PortError::Rejected { .. })),
        "{err:?}"
    );

    // A writer slipped in between our read and our write: the resourceVersion
    // precondition makes the API server answer 409.
    let err = scenario(
        vec![
            get(SVC, service(Some("false"), Some(2), "70")),
            fail(Method::PATCH, SVC, 409, "Conflict"),
        ],
        |c| async move { mesh(c).set_mesh_endpoints(true, Generation(3)).await },
    )
    .await
    .expect_err("409");
    assert!(
        matches!(err, LayerError::Port(PortError::PreconditionFailed { .. })),
        "{err:?}"
    );
}

// ---- internal traffic -----------------------------------------------------------------------

#[tokio::test]
async fn mesh_share_and_withdraw_set_cilium_annotations() {
    let share = json!({"metadata": {"annotations": {
        "service.cilium.io/global": "true", "service.cilium.io/shared": "true"}}});
    let status = scenario(
        vec![
            get(SVC, service(Some("false"), Some(2), "70")),
            patch(
                SVC,
                guarded(3, "70", share),
                service(Some("true"), Some(3), "71"),
            ),
            get(SVC, service(Some("true"), Some(3), "71")),
        ],
        |c| async move { mesh(c).set_mesh_endpoints(true, Generation(3)).await },
    )
    .await
    .expect("share");
    assert!(status.serving);

    let withdraw = json!({"metadata": {"annotations": {
        "service.cilium.io/global": "true", "service.cilium.io/shared": "false"}}});
    let status = scenario(
        vec![
            // No `shared` annotation: Cilium shares a global service by default.
            get(SVC, service(None, Some(3), "71")),
            patch(
                SVC,
                guarded(4, "71", withdraw),
                service(Some("false"), Some(4), "72"),
            ),
            get(SVC, service(Some("false"), Some(4), "72")),
        ],
        |c| async move { mesh(c).set_mesh_endpoints(false, Generation(4)).await },
    )
    .await
    .expect("withdraw");
    assert!(!status.serving);
}

#[tokio::test]
async fn mesh_second_apply_is_a_no_op_and_a_lost_race_on_read_back_is_stale() {
    scenario(
        vec![get(SVC, service(Some("true"), Some(5), "80"))],
        |c| async move { mesh(c).set_mesh_endpoints(true, Generation(5)).await },
    )
    .await
    .expect("no-op");

    let share = json!({"metadata": {"annotations": {
        "service.cilium.io/global": "true", "service.cilium.io/shared": "true"}}});
    let err = scenario(
        vec![
            get(SVC, service(Some("false"), Some(2), "70")),
            patch(
                SVC,
                guarded(3, "70", share),
                service(Some("true"), Some(3), "71"),
            ),
            // A newer controller wrote right after us.
            get(SVC, service(Some("false"), Some(8), "75")),
        ],
        |c| async move { mesh(c).set_mesh_endpoints(true, Generation(3)).await },
    )
    .await
    .expect_err("lost race");
    assert_eq!(
        err,
        LayerError::Stale {
            ours: Generation(3),
            seen: Generation(8)
        }
    );
}

// ---- stateful services ---------------------------------------------------------------------

#[tokio::test]
async fn cnpg_promote_carries_the_peers_demotion_token() {
    let change = json!({"spec": {"replica": {"primary": "pg-eu", "promotionToken": "tok-1"}}});
    let status = scenario2(
        vec![
            get(LOCAL_PG, pg("pg-eu", "pg-us", None, None, Some(6))),
            patch(
                LOCAL_PG,
                guarded(7, "55", change),
                pg("pg-eu", "pg-eu", Some("tok-1"), None, Some(7)),
            ),
            get(LOCAL_PG, pg("pg-eu", "pg-eu", Some("tok-1"), None, Some(7))),
        ],
        // The peer was fenced (its primary is us) and published its token.
        vec![get(
            PEER_PG,
            pg("pg-us", "pg-eu", None, Some("tok-1"), Some(7)),
        )],
        |l, p| async move {
            stateful(l, Some(p))
                .promote(StatefulService::Cnpg, Generation(7))
                .await
        },
    )
    .await
    .expect("promote");
    assert!(status.serving);
    assert!(status.detail.contains("switchover"), "{}", status.detail);
}

#[tokio::test]
async fn cnpg_promote_with_an_unreachable_peer_goes_without_a_token_and_says_so() {
    let change = json!({"spec": {"replica": {"primary": "pg-eu", "promotionToken": null}}});
    let status = scenario2(
        vec![
            get(LOCAL_PG, pg("pg-eu", "pg-us", None, None, Some(6))),
            patch(
                LOCAL_PG,
                guarded(7, "55", change),
                pg("pg-eu", "pg-eu", None, None, Some(7)),
            ),
            get(LOCAL_PG, pg("pg-eu", "pg-eu", None, None, Some(7))),
        ],
        vec![fail(Method::GET, PEER_PG, 503, "ServiceUnavailable")],
        |l, p| async move {
            stateful(l, Some(p))
                .promote(StatefulService::Cnpg, Generation(7))
                .await
        },
    )
    .await
    .expect("failover promote");
    assert!(
        status.detail.contains("without a demotion token"),
        "{}",
        status.detail
    );
}

#[tokio::test]
async fn cnpg_promote_waits_while_the_reachable_peer_is_still_primary() {
    let err = scenario2(
        vec![get(LOCAL_PG, pg("pg-eu", "pg-us", None, None, Some(6)))],
        vec![get(PEER_PG, pg("pg-us", "pg-us", None, None, Some(6)))],
        |l, p| async move {
            stateful(l, Some(p))
                .promote(StatefulService::Cnpg, Generation(7))
                .await
        },
    )
    .await
    .expect_err("peer still primary");
    assert!(
        matches!(err, LayerError::NotVerified(ref m) if m.contains("fence it")),
        "{err:?}"
    );
}

#[tokio::test]
async fn cnpg_demote_names_the_peer_primary_and_drops_the_token() {
    let change = json!({"spec": {"replica": {"primary": "pg-us", "promotionToken": null}}});
    let status = scenario(
        vec![
            get(LOCAL_PG, pg("pg-eu", "pg-eu", Some("tok-1"), None, Some(7))),
            patch(
                LOCAL_PG,
                guarded(8, "55", change),
                pg("pg-eu", "pg-us", None, None, Some(8)),
            ),
            get(LOCAL_PG, pg("pg-eu", "pg-us", None, None, Some(8))),
        ],
        |c| async move {
            stateful(c, None)
                .demote(StatefulService::Cnpg, Generation(8))
                .await
        },
    )
    .await
    .expect("demote");
    assert!(!status.serving);
}

#[tokio::test]
async fn fencing_demotes_the_peer_or_reports_it_unreachable() {
    let change = json!({"spec": {"replica": {"primary": "pg-eu", "promotionToken": null}}});
    let status = scenario2(
        vec![],
        vec![
            get(PEER_PG, pg("pg-us", "pg-us", None, None, Some(6))),
            patch(
                PEER_PG,
                guarded(7, "55", change),
                pg("pg-us", "pg-eu", None, None, Some(7)),
            ),
            get(PEER_PG, pg("pg-us", "pg-eu", None, None, Some(7))),
        ],
        |l, p| async move { stateful(l, Some(p)).fence_old_primary(Generation(7)).await },
    )
    .await
    .expect("fence");
    assert!(status.detail.contains("pg-us demoted"), "{}", status.detail);

    let err = scenario(vec![], |c| async move {
        stateful(c, None).fence_old_primary(Generation(7)).await
    })
    .await
    .expect_err("no peer");
    assert!(matches!(err, LayerError::Unreachable(_)), "{err:?}");

    let err = scenario2(
        vec![],
        vec![fail(Method::GET, PEER_PG, 504, "Timeout")],
        |l, p| async move { stateful(l, Some(p)).fence_old_primary(Generation(7)).await },
    )
    .await
    .expect_err("peer down");
    assert!(matches!(err, LayerError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn strimzi_promote_stops_mirroring_into_this_region() {
    let status = scenario(
        vec![
            get(MM2, mm2(1, "eu", Some(6))),
            patch(
                MM2,
                guarded(7, "12", json!({"spec": {"replicas": 0}})),
                mm2(0, "eu", Some(7)),
            ),
            get(MM2, mm2(0, "eu", Some(7))),
        ],
        |c| async move {
            stateful(c, None)
                .promote(StatefulService::Strimzi, Generation(7))
                .await
        },
    )
    .await
    .expect("promote strimzi");
    assert!(status.serving);

    let err = scenario(vec![get(MM2, mm2(1, "us", Some(6)))], |c| async move {
        stateful(c, None)
            .promote(StatefulService::Strimzi, Generation(7))
            .await
    })
    .await
    .expect_err("wrong direction");
    assert!(
        matches!(err, LayerError::Port(PortError::Invalid(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unconfigured_service_is_a_no_op_that_says_so() {
    let status = scenario(vec![], |c| async move {
        stateful(c, None)
            .promote(StatefulService::FerretDb, Generation(7))
            .await
    })
    .await
    .expect("nothing to move");
    assert!(status.detail.contains("not deployed"), "{}", status.detail);
}

// ---- a real cluster ----------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG (optional SRE_KUBE_TEST_NAMESPACE, default `default`); cargo test -p sre-adapter-kube -- --ignored"]
async fn cluster_mesh_annotations_round_trip_on_a_service_it_creates() {
    use k8s_openapi::api::core::v1::Service;
    use kube::api::{Api, DeleteParams, PostParams};

    let client = Client::try_default()
        .await
        .expect("KUBECONFIG or in-cluster config");
    let ns = std::env::var("SRE_KUBE_TEST_NAMESPACE").unwrap_or_else(|_| "default".into());
    let name = format!("sre-kube-test-{}", std::process::id());
    let api: Api<Service> = Api::namespaced(client.clone(), &ns);
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"ports": [{"port": 80}]}
    }))
    .expect("service");
    api.create(&PostParams::default(), &svc)
        .await
        .expect("create test service");

    let traffic = CiliumMeshTraffic::new(
        client,
        CiliumMeshConfig {
            namespace: ns,
            services: vec![name.clone()],
        },
    );
    let shared = traffic.set_mesh_endpoints(true, Generation(1)).await;
    let again = traffic.set_mesh_endpoints(true, Generation(1)).await;
    let withdrawn = traffic.set_mesh_endpoints(false, Generation(2)).await;
    let stale = traffic.set_mesh_endpoints(true, Generation(1)).await;
    let status = traffic.mesh_status().await;
    api.delete(&name, &DeleteParams::default())
        .await
        .expect("delete test service");

    assert!(shared.expect("share").serving);
    assert!(again.expect("idempotent").detail.contains("0 written"));
    assert!(!withdrawn.expect("withdraw").serving);
    assert_eq!(
        stale.expect_err("stale"),
        LayerError::Stale {
            ours: Generation(1),
            seen: Generation(2)
        }
    );
    let status = status.expect("status");
    assert_eq!(
        (status.serving, status.generation),
        (false, Some(Generation(2)))
    );
}

// ---- remediation executors (KubeWorkloads) ---------------------------------------------------

mod remediation {
    use super::*;
    use sre_adapter_kube::KubeWorkloads;
    use sre_core::ManualClock;
    use sre_remediation::actions::{
        Certificates, EvictScope, Mode, WorkloadKind, WorkloadRef, Workloads,
    };
    use sre_remediation::execute::{Call as Planned, ExecError, Executors, Step, execute};
    use std::sync::Arc;

    const DEP: &str = "/apis/apps/v1/namespaces/shop/deployments/api";
    const DEP_SCALE: &str = "/apis/apps/v1/namespaces/shop/deployments/api/scale";
    const STS_SCALE: &str = "/apis/apps/v1/namespaces/shop/statefulsets/kc/scale";
    const RS: &str = "/apis/apps/v1/namespaces/shop/replicasets";
    const ISVC: &str = "/apis/serving.kserve.io/v1beta1/namespaces/ai/inferenceservices/llama";
    const POD: &str = "/api/v1/namespaces/shop/pods/api-7d4f-x2x";
    const PODS: &str = "/api/v1/pods";
    const CERT: &str = "/apis/cert-manager.io/v1/namespaces/shop/certificates/web-tls";
    const WRITE: Option<&str> = Some("&fieldManager=sre-remediation");
    const WRITE_DRY: Option<&str> = Some("&dryRun=All&fieldManager=sre-remediation");
    /// `ManualClock::at_epoch()`, as the restart annotation and condition times carry it.
    const NOW: &str = "2026-01-01T00:00:00Z";

    fn call(
        method: Method,
        path: &'static str,
        query: Option<&'static str>,
        body: Option<Value>,
        reply: Value,
    ) -> Call {
        Call {
            method,
            path,
            query,
            body,
            status: 200,
            reply,
        }
    }

    fn refuse(mut c: Call, code: u16, reason: &str) -> Call {
        c.status = code;
        c.reply = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("the server says {reason}"), "reason": reason, "code": code
        });
        c
    }

    /// Every request here must be granted to the remediation webhook.
    async fn scenario<T, F: Future<Output = T>>(
        calls: Vec<Call>,
        act: impl FnOnce(Client) -> F,
    ) -> T {
        scenario_as(Binary::RemediationWebhook, calls, act).await
    }

    fn kube(client: Client) -> KubeWorkloads {
        KubeWorkloads::new(client, Arc::new(ManualClock::at_epoch()))
    }

    fn dep_ref() -> WorkloadRef {
        WorkloadRef::new(WorkloadKind::Deployment, "shop", "api")
    }

    fn isvc_ref() -> WorkloadRef {
        WorkloadRef::new(WorkloadKind::InferenceService, "ai", "llama")
    }

    fn scale(kind: &str, name: &str, replicas: u32) -> Value {
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
               "metadata": {"name": name, "namespace": "shop", "resourceVersion": "40"},
               "spec": {"replicas": replicas},
               "status": {"replicas": replicas, "selector": format!("app={name}"), "kind": kind}})
    }

    fn template(image: &str, hash: Option<&str>) -> Value {
        let mut labels = json!({"app": "api"});
        if let Some(h) = hash {
            labels["pod-template-hash"] = json!(h);
        }
        json!({"metadata": {"labels": labels},
               "spec": {"containers": [{"name": "api", "image": image}]}})
    }

    fn deployment(revision: u32, tpl: &Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "api", "namespace": "shop", "uid": "dep-uid",
                            "resourceVersion": "88",
                            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()}},
               "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "api"}}, "template": tpl}})
    }

    fn replica_set(name: &str, revision: u32, owner: &str, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": name, "namespace": "shop",
                            "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": "api", "uid": owner, "controller": true}]},
               "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "api", "pod-template-hash": name}},
                        "template": template(image, Some(name))}})
    }

    fn isvc(min: Option<u32>, max: Option<u32>, args: &[&str]) -> Value {
        let mut predictor = json!({"model": {"modelFormat": {"name": "huggingface"},
                                             "args": args, "resources": {"limits": {"nvidia.com/gpu": "1"}}}});
        if let Some(m) = min {
            predictor["minReplicas"] = json!(m);
        }
        if let Some(m) = max {
            predictor["maxReplicas"] = json!(m);
        }
        json!({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
               "metadata": {"name": "llama", "namespace": "ai", "resourceVersion": "501", "generation": 4},
               "spec": {"predictor": predictor}})
    }

    #[tokio::test]
    async fn scale_patches_the_scale_subresource_and_a_dry_run_says_dry_run_all() {
        let body = json!({"spec": {"replicas": 5}});
        let out = scenario(
            vec![
                get(DEP_SCALE, scale("Deployment", "api", 3)),
                call(
                    Method::PATCH,
                    DEP_SCALE,
                    WRITE,
                    Some(body.clone()),
                    scale("Deployment", "api", 5),
                ),
            ],
            |c| async move { kube(c).scale(&dep_ref(), 5, Mode::Apply).await },
        )
        .await
        .expect("scale");
        assert!(out.changed && !out.dry_run);
        assert_eq!(
            (out.before.as_deref(), out.after.as_deref()),
            (Some("replicas=3"), Some("replicas=5"))
        );

        let dry = scenario(
            vec![
                get(DEP_SCALE, scale("Deployment", "api", 3)),
                call(
                    Method::PATCH,
                    DEP_SCALE,
                    WRITE_DRY,
                    Some(body),
                    scale("Deployment", "api", 5),
                ),
            ],
            |c| async move { kube(c).scale(&dep_ref(), 5, Mode::DryRun).await },
        )
        .await
        .expect("dry run");
        assert!(dry.changed && dry.dry_run);
        assert!(dry.detail.starts_with("dry run: "), "{}", dry.detail);

        let sts = WorkloadRef::new(WorkloadKind::StatefulSet, "shop", "kc");
        scenario(
            vec![
                get(STS_SCALE, scale("StatefulSet", "kc", 1)),
                call(
                    Method::PATCH,
                    STS_SCALE,
                    WRITE,
                    Some(json!({"spec": {"replicas": 2}})),
                    scale("StatefulSet", "kc", 2),
                ),
            ],
            |c| async move { kube(c).scale(&sts, 2, Mode::Apply).await },
        )
        .await
        .expect("statefulset");
    }

    #[tokio::test]
    async fn scale_to_the_current_count_sends_no_patch() {
        let out = scenario(
            vec![get(DEP_SCALE, scale("Deployment", "api", 5))],
            |c| async move { kube(c).scale(&dep_ref(), 5, Mode::Apply).await },
        )
        .await
        .expect("no-op");
        assert!(!out.changed);
        assert!(
            out.detail.contains("already at 5 replicas: nothing to do"),
            "{}",
            out.detail
        );
    }

    #[tokio::test]
    async fn missing_and_forbidden_objects_are_typed() {
        let err = scenario(
            vec![fail(Method::GET, DEP_SCALE, 404, "NotFound")],
            |c| async move { kube(c).scale(&dep_ref(), 5, Mode::Apply).await },
        )
        .await
        .expect_err("missing");
        assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");

        let forbidden = refuse(
            call(
                Method::PATCH,
                DEP_SCALE,
                WRITE,
                Some(json!({"spec": {"replicas": 4}})),
                json!({}),
            ),
            403,
            "Forbidden",
        );
        let err = scenario(
            vec![get(DEP_SCALE, scale("Deployment", "api", 3)), forbidden],
            |c| async move { kube(c).scale(&dep_ref(), 4, Mode::Apply).await },
        )
        .await
        .expect_err("forbidden");
        assert!(matches!(err, PortError::Rejected { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn the_executor_steps_from_the_read_count_through_kube() {
        let out = scenario(
            vec![
                get(DEP_SCALE, scale("Deployment", "api", 9)),
                get(DEP_SCALE, scale("Deployment", "api", 9)),
                call(
                    Method::PATCH,
                    DEP_SCALE,
                    WRITE,
                    Some(json!({"spec": {"replicas": 10}})),
                    scale("Deployment", "api", 10),
                ),
            ],
            |c| async move {
                let ex = Executors {
                    workloads: Some(Arc::new(kube(c))),
                    ..Executors::default()
                };
                let up = Planned::Scale {
                    target: dep_ref(),
                    step: Step::Up { by: 2, max: 10 },
                };
                execute(&up, &ex, Mode::Apply).await
            },
        )
        .await
        .expect("scale up");
        assert_eq!(out.after.as_deref(), Some("replicas=10"));

        // At the rule's bound: one read, no write.
        let out = scenario(
            vec![get(DEP_SCALE, scale("Deployment", "api", 10))],
            |c| async move {
                let ex = Executors {
                    workloads: Some(Arc::new(kube(c))),
                    ..Executors::default()
                };
                let up = Planned::Scale {
                    target: dep_ref(),
                    step: Step::Up { by: 1, max: 10 },
                };
                execute(&up, &ex, Mode::Apply).await
            },
        )
        .await
        .expect("bound");
        assert!(!out.changed);
        let err = scenario(
            vec![fail(Method::GET, DEP_SCALE, 404, "NotFound")],
            |c| async move {
                let ex = Executors {
                    workloads: Some(Arc::new(kube(c))),
                    ..Executors::default()
                };
                let up = Planned::Scale {
                    target: dep_ref(),
                    step: Step::Up { by: 1, max: 10 },
                };
                execute(&up, &ex, Mode::Apply).await
            },
        )
        .await
        .expect_err("missing");
        assert!(
            matches!(err, ExecError::Port(PortError::NotFound { .. })),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn inference_service_scale_sets_min_replicas_and_lifts_max() {
        let body = json!({"metadata": {"resourceVersion": "501"},
                          "spec": {"predictor": {"minReplicas": 3, "maxReplicas": 3}}});
        let out = scenario(
            vec![
                get(ISVC, isvc(Some(2), Some(2), &[])),
                call(
                    Method::PATCH,
                    ISVC,
                    WRITE,
                    Some(body),
                    isvc(Some(3), Some(3), &[]),
                ),
            ],
            |c| async move { kube(c).scale(&isvc_ref(), 3, Mode::Apply).await },
        )
        .await
        .expect("minReplicas");
        assert_eq!(out.after.as_deref(), Some("minReplicas=3"));

        // No minReplicas: KServe's default of 1 is the current count.
        let n = scenario(vec![get(ISVC, isvc(None, None, &[]))], |c| async move {
            kube(c).current_replicas(&isvc_ref()).await
        })
        .await
        .expect("default");
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn restart_patches_the_template_annotation_or_deletes_a_pod() {
        let body = json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": NOW}}}}});
        let out = scenario(
            vec![
                get(DEP, deployment(3, &template("api:2", None))),
                call(
                    Method::PATCH,
                    DEP,
                    WRITE,
                    Some(body),
                    deployment(3, &template("api:2", None)),
                ),
            ],
            |c| async move { kube(c).restart(&dep_ref(), Mode::Apply).await },
        )
        .await
        .expect("restart");
        assert_eq!(
            out.after.as_deref(),
            Some("restartedAt=2026-01-01T00:00:00Z")
        );

        let pod = json!({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": "api-7d4f-x2x", "namespace": "shop", "uid": "pod-uid"}});
        let target = WorkloadRef::new(WorkloadKind::Pod, "shop", "api-7d4f-x2x");
        let out = scenario(
            vec![
                get(POD, pod.clone()),
                // kube sends DeleteOptions in the body: `dryRun: ["All"]` there is the
                // API server's dry run for a delete, as `?dryRun=All` is for writes.
                call(
                    Method::DELETE,
                    POD,
                    Some(""),
                    Some(json!({"dryRun": ["All"]})),
                    pod,
                ),
            ],
            |c| async move { kube(c).restart(&target, Mode::DryRun).await },
        )
        .await
        .expect("dry-run delete");
        assert_eq!(out.before.as_deref(), Some("uid=pod-uid"));
        assert!(out.dry_run);
    }

    #[tokio::test]
    async fn rollback_puts_the_previous_revisions_template_back() {
        let live = deployment(3, &template("api:3", None));
        let sets = json!({"apiVersion": "apps/v1", "kind": "ReplicaSetList", "metadata": {}, "items": [
            replica_set("api-1", 1, "dep-uid", "api:1"),
            replica_set("api-2", 2, "dep-uid", "api:2"),
            replica_set("api-3", 3, "dep-uid", "api:3"),
            replica_set("other-9", 2, "someone-else", "evil:9"),
        ]});
        let mut want = live.clone();
        want["spec"]["template"] = template("api:2", None);
        let out = scenario(
            vec![
                get(DEP, live.clone()),
                list(RS, "&labelSelector=app%3Dapi", sets.clone()),
                call(Method::PUT, DEP, WRITE, Some(want.clone()), want),
            ],
            |c| async move { kube(c).rollback(&dep_ref(), Mode::Apply).await },
        )
        .await
        .expect("rollback");
        assert_eq!(out.after.as_deref(), Some("template of revision 2"));

        // The previous revision's template is live already: nothing is written.
        let same = deployment(3, &template("api:2", None));
        let out = scenario(
            vec![get(DEP, same), list(RS, "&labelSelector=app%3Dapi", sets)],
            |c| async move { kube(c).rollback(&dep_ref(), Mode::Apply).await },
        )
        .await
        .expect("no-op");
        assert!(!out.changed, "{out:?}");

        // Only one revision: nothing to roll back to.
        let only = json!({"apiVersion": "apps/v1", "kind": "ReplicaSetList", "metadata": {},
                          "items": [replica_set("api-3", 3, "dep-uid", "api:3")]});
        let err = scenario(
            vec![get(DEP, live), list(RS, "&labelSelector=app%3Dapi", only)],
            |c| async move { kube(c).rollback(&dep_ref(), Mode::Apply).await },
        )
        .await
        .expect_err("no previous");
        assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");
    }

    fn pod_on(name: &str, ns: &str, priority: i32, owner: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns,
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner, "name": "o",
                                                 "uid": "u", "controller": true}]},
               "spec": {"nodeName": "gpu-1", "priority": priority, "containers": [{"name": "c"}]},
               "status": {"phase": "Running"}})
    }

    fn eviction(path: &'static str, name: &str, query: Option<&'static str>) -> Call {
        call(
            Method::POST,
            path,
            query,
            Some(json!({"apiVersion": "policy/v1", "kind": "Eviction",
                        "metadata": {"name": name, "namespace": "jobs"}})),
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        )
    }

    #[tokio::test]
    async fn eviction_uses_the_eviction_api_below_the_priority_only() {
        let pods = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
            pod_on("batch-a", "jobs", 100, "Job"),
            pod_on("batch-b", "jobs", 0, "Job"),
            pod_on("vllm-0", "ai", 100_000, "ReplicaSet"),
            pod_on("dcgm-exporter", "gpu", 0, "DaemonSet"),
        ]});
        let scope = EvictScope::Node("gpu-1".into());
        let out = scenario(
            vec![
                list(PODS, "&fieldSelector=spec.nodeName%3Dgpu-1", pods.clone()),
                eviction(
                    "/api/v1/namespaces/jobs/pods/batch-a/eviction",
                    "batch-a",
                    Some("&dryRun=All"),
                ),
                refuse(
                    eviction(
                        "/api/v1/namespaces/jobs/pods/batch-b/eviction",
                        "batch-b",
                        Some("&dryRun=All"),
                    ),
                    429,
                    "TooManyRequests",
                ),
            ],
            |c| async move {
                kube(c)
                    .evict_lower_priority(&scope, 1000, Mode::DryRun)
                    .await
            },
        )
        .await
        .expect("dry-run evict");
        assert!(out.changed && out.dry_run);
        assert!(
            out.detail.contains("evicted jobs/batch-a"),
            "{}",
            out.detail
        );
        assert!(
            out.detail
                .contains("blocked by a PodDisruptionBudget: jobs/batch-b"),
            "{}",
            out.detail
        );

        // Nothing below the threshold: no eviction is sent.
        let scope = EvictScope::Node("gpu-1".into());
        let out = scenario(
            vec![list(PODS, "&fieldSelector=spec.nodeName%3Dgpu-1", pods)],
            |c| async move { kube(c).evict_lower_priority(&scope, 0, Mode::Apply).await },
        )
        .await
        .expect("none");
        assert!(!out.changed);
    }

    #[tokio::test]
    async fn vllm_batch_size_is_the_max_num_seqs_argument() {
        let args = ["--model", "/mnt/models", "--max-num-seqs=256"];
        let n = scenario(
            vec![get(ISVC, isvc(Some(1), None, &args))],
            |c| async move { kube(c).max_num_seqs(&isvc_ref()).await },
        )
        .await
        .expect("read");
        assert_eq!(n, Some(256));

        let mut model = isvc(Some(1), None, &args)["spec"]["predictor"]["model"].clone();
        model["args"] = json!(["--model", "/mnt/models", "--max-num-seqs=128"]);
        let body = json!({"metadata": {"resourceVersion": "501"}, "spec": {"predictor": {"model": model}}});
        let out = scenario(
            vec![
                get(ISVC, isvc(Some(1), None, &args)),
                call(
                    Method::PATCH,
                    ISVC,
                    WRITE,
                    Some(body),
                    isvc(Some(1), None, &[]),
                ),
            ],
            |c| async move {
                kube(c)
                    .set_max_num_seqs(&isvc_ref(), 128, Mode::Apply)
                    .await
            },
        )
        .await
        .expect("set");
        assert_eq!(
            (out.before.as_deref(), out.after.as_deref()),
            (Some("max_num_seqs=256"), Some("max_num_seqs=128"))
        );

        let out = scenario(
            vec![get(ISVC, isvc(Some(1), None, &args))],
            |c| async move {
                kube(c)
                    .set_max_num_seqs(&isvc_ref(), 256, Mode::Apply)
                    .await
            },
        )
        .await
        .expect("no-op");
        assert!(!out.changed);
    }

    #[tokio::test]
    async fn a_deployments_vllm_container_gets_the_whole_list_back_and_a_lost_race_is_409() {
        let containers = json!([
            {"name": "proxy", "image": "envoy:1", "args": ["--config", "/etc/envoy.yaml"]},
            {"name": "vllm", "image": "vllm/vllm-openai:v0.11.0",
             "args": ["--model", "m", "--max-num-seqs", "64", "--port", "8000"]}
        ]);
        let dep = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"name": "api", "namespace": "shop", "resourceVersion": "88"},
                         "spec": {"selector": {"matchLabels": {"app": "api"}},
                                  "template": {"metadata": {"labels": {"app": "api"}},
                                               "spec": {"containers": containers.clone()}}}});
        let mut sent = containers;
        sent[1]["args"] = json!(["--model", "m", "--max-num-seqs=32", "--port", "8000"]);
        let body = json!({"metadata": {"resourceVersion": "88"},
                          "spec": {"template": {"spec": {"containers": sent}}}});
        let err = scenario(
            vec![
                get(DEP, dep),
                refuse(
                    call(Method::PATCH, DEP, WRITE, Some(body), json!({})),
                    409,
                    "Conflict",
                ),
            ],
            |c| async move { kube(c).set_max_num_seqs(&dep_ref(), 32, Mode::Apply).await },
        )
        .await
        .expect_err("lost race");
        assert!(
            matches!(err, PortError::PreconditionFailed { .. }),
            "{err:?}"
        );
    }

    fn certificate(issuing: Option<&str>) -> Value {
        let mut conditions = vec![json!({"type": "Ready", "status": "True", "reason": "Ready",
                                         "lastTransitionTime": "2025-10-01T00:00:00Z", "observedGeneration": 2})];
        if let Some(s) = issuing {
            conditions.push(json!({"type": "Issuing", "status": s, "reason": "Done",
                                   "lastTransitionTime": "2025-10-01T00:00:00Z", "observedGeneration": 2}));
        }
        json!({"apiVersion": "cert-manager.io/v1", "kind": "Certificate",
               "metadata": {"name": "web-tls", "namespace": "shop", "resourceVersion": "812", "generation": 2},
               "spec": {"secretName": "web-tls", "dnsNames": ["shop.example.com"],
                        "issuerRef": {"name": "le", "kind": "ClusterIssuer"}},
               "status": {"conditions": conditions, "notAfter": "2026-01-05T00:00:00Z", "revision": 3}})
    }

    #[tokio::test]
    async fn renewal_sets_the_issuing_condition_like_cmctl_renew() {
        let mut want = certificate(Some("False"));
        want["status"]["conditions"][1] = json!({
            "type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
            "message": "Certificate re-issuance manually triggered",
            "lastTransitionTime": NOW, "observedGeneration": 2});
        let out = scenario(
            vec![
                get(CERT, certificate(Some("False"))),
                call(
                    Method::PUT,
                    "/apis/cert-manager.io/v1/namespaces/shop/certificates/web-tls/status",
                    WRITE_DRY,
                    Some(want.clone()),
                    want,
                ),
            ],
            |c| async move {
                kube(c)
                    .renew_certificate("shop", "web-tls", Mode::DryRun)
                    .await
            },
        )
        .await
        .expect("renew");
        assert!(out.changed && out.dry_run);
        assert_eq!(out.before.as_deref(), Some("Issuing=False"));

        let out = scenario(vec![get(CERT, certificate(Some("True")))], |c| async move {
            kube(c)
                .renew_certificate("shop", "web-tls", Mode::Apply)
                .await
        })
        .await
        .expect("already issuing");
        assert!(!out.changed, "{out:?}");
    }
}

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG (optional SRE_KUBE_TEST_NAMESPACE, default `default`); cargo test -p sre-adapter-kube -- --ignored"]
async fn cluster_scale_round_trip_on_a_deployment_it_creates() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, DeleteParams, PostParams};
    use sre_adapter_kube::KubeWorkloads;
    use sre_remediation::actions::{Mode, WorkloadKind, WorkloadRef, Workloads};

    let client = Client::try_default()
        .await
        .expect("KUBECONFIG or in-cluster config");
    let ns = std::env::var("SRE_KUBE_TEST_NAMESPACE").unwrap_or_else(|_| "default".into());
    let name = format!("sre-kube-scale-{}", std::process::id());
    let api: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let dep: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]}}}
    }))
    .expect("deployment");
    api.create(&PostParams::default(), &dep)
        .await
        .expect("create test deployment");

    let w = KubeWorkloads::new(client, std::sync::Arc::new(sre_core::SystemClock::new()));
    let target = WorkloadRef::new(WorkloadKind::Deployment, ns.clone(), name.clone());
    let dry = w.scale(&target, 1, Mode::DryRun).await;
    let after_dry = w.current_replicas(&target).await;
    let applied = w.scale(&target, 1, Mode::Apply).await;
    let again = w.scale(&target, 1, Mode::Apply).await;
    let now = w.current_replicas(&target).await;
    api.delete(&name, &DeleteParams::default())
        .await
        .expect("delete test deployment");

    assert!(dry.expect("dry run").changed);
    assert_eq!(after_dry.expect("read"), 0, "a dry run persists nothing");
    assert!(applied.expect("scale").changed);
    assert!(!again.expect("idempotent").changed);
    assert_eq!(now.expect("read"), 1);
}

// ---- rotation: ESO force-sync and Reloader-compatible restarts ----------------------

mod rotation_reload {
    use super::*;
    use chrono::{DateTime, Utc};
    use sre_adapter_kube::{
        CertificateStatus, FORCE_SYNC_ANNOTATION, KubeReload, RELOADED_FROM_ANNOTATION,
    };
    use std::collections::BTreeSet;

    const ES: &str = "/apis/external-secrets.io/v1/namespaces/billing/externalsecrets/db";
    const DEP: &str = "/apis/apps/v1/namespaces/billing/deployments/api";
    const QUERY: Option<&str> = Some("&fieldManager=sre-rotation");

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default()
    }

    /// Every request here must be granted to the rotation controller.
    async fn scenario<T, F: Future<Output = T>>(
        calls: Vec<Call>,
        act: impl FnOnce(Client) -> F,
    ) -> T {
        scenario_as(Binary::RotationController, calls, act).await
    }

    fn rotation_patch(path: &'static str, body: Value, reply: Value) -> Call {
        Call {
            query: QUERY,
            ..patch(path, body, reply)
        }
    }

    #[tokio::test]
    async fn force_sync_sets_esos_annotation_to_the_rotation_time() {
        let body = json!({"metadata": {"annotations": {FORCE_SYNC_ANNOTATION: "1767225600"}}});
        let reply = json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": "db", "namespace": "billing",
                         "annotations": {FORCE_SYNC_ANNOTATION: "1767225600"}}
        });
        let out = scenario(vec![rotation_patch(ES, body, reply)], |c| async move {
            KubeReload::new(c).force_sync("billing", "db", at()).await
        })
        .await;
        assert_eq!(out, Ok(()));
    }

    #[tokio::test]
    async fn restart_writes_reloaders_template_annotation_once_for_all_secrets() {
        let value = json!({"type": "SECRET", "names": ["db", "token"],
                           "observedAt": "2026-01-01T00:00:00Z"})
        .to_string();
        let body = json!({"spec": {"template": {"metadata": {"annotations": {
            RELOADED_FROM_ANNOTATION: value,
        }}}}});
        let reply = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "api", "namespace": "billing"},
            "spec": {"selector": {"matchLabels": {"app": "api"}},
                     "template": {"metadata": {"labels": {"app": "api"}},
                                  "spec": {"containers": [{"name": "api", "image": "api:1"}]}}}
        });
        let secrets = BTreeSet::from(["token".to_owned(), "db".to_owned()]);
        let out = scenario(vec![rotation_patch(DEP, body, reply)], |c| async move {
            KubeReload::new(c)
                .restart("billing", "api", &secrets, at())
                .await
        })
        .await;
        assert_eq!(out, Ok(()));
    }

    #[tokio::test]
    async fn a_missing_external_secret_is_not_found_and_forbidden_is_rejected() {
        let mut missing = fail(Method::PATCH, ES, 404, "NotFound");
        missing.query = QUERY;
        let out = scenario(vec![missing], |c| async move {
            KubeReload::new(c).force_sync("billing", "db", at()).await
        })
        .await;
        assert!(matches!(out, Err(PortError::NotFound { .. })), "{out:?}");
        let mut denied = fail(Method::PATCH, DEP, 403, "Forbidden");
        denied.query = QUERY;
        let out = scenario(vec![denied], |c| async move {
            KubeReload::new(c)
                .restart("billing", "api", &BTreeSet::new(), at())
                .await
        })
        .await;
        assert!(matches!(out, Err(PortError::Rejected { .. })), "{out:?}");
    }

    const CERT: &str =
        "/apis/cert-manager.io/v1/namespaces/catalyst-system/certificates/ingress-tls";

    fn certificate(status: &Value) -> Value {
        json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": "ingress-tls", "namespace": "catalyst-system"},
            "spec": {"secretName": "ingress-tls", "dnsNames": ["console.example"],
                     "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}},
            "status": status
        })
    }

    #[tokio::test]
    async fn certificate_validity_is_read_from_cert_managers_status_only() {
        // Status as cert-manager 1.15 writes it after issuance.
        let status = json!({
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}],
            "notBefore": "2026-11-06T10:00:00Z", "notAfter": "2027-02-04T10:00:00Z",
            "renewalTime": "2027-01-05T10:00:00Z", "revision": 3
        });
        let out = scenario(vec![get(CERT, certificate(&status))], |c| async move {
            CertificateStatus::new(c)
                .validity("catalyst-system", "ingress-tls")
                .await
        })
        .await
        .expect("validity");
        assert_eq!(
            out.not_before.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-11-06T10:00:00+00:00")
        );
        assert_eq!(out.not_after.to_rfc3339(), "2027-02-04T10:00:00+00:00");
        assert_eq!(
            out.renewal_time.map(|t| t.to_rfc3339()).as_deref(),
            Some("2027-01-05T10:00:00+00:00")
        );
    }

    #[tokio::test]
    async fn an_unissued_or_garbled_certificate_is_an_error_not_a_date() {
        let pending = json!({"conditions": [{"type": "Issuing", "status": "True"}]});
        let out = scenario(vec![get(CERT, certificate(&pending))], |c| async move {
            CertificateStatus::new(c)
                .validity("catalyst-system", "ingress-tls")
                .await
        })
        .await;
        assert!(
            matches!(&out, Err(PortError::NotFound { what }) if what.contains("not issued")),
            "{out:?}"
        );
        let garbled = json!({"notAfter": "next tuesday"});
        let out = scenario(vec![get(CERT, certificate(&garbled))], |c| async move {
            CertificateStatus::new(c)
                .validity("catalyst-system", "ingress-tls")
                .await
        })
        .await;
        assert!(
            matches!(&out, Err(PortError::Malformed { what, .. }) if what.ends_with("status.notAfter")),
            "{out:?}"
        );
        let out = scenario(
            vec![fail(Method::GET, CERT, 404, "NotFound")],
            |c| async move {
                CertificateStatus::new(c)
                    .validity("catalyst-system", "ingress-tls")
                    .await
            },
        )
        .await;
        assert!(matches!(out, Err(PortError::NotFound { .. })), "{out:?}");
    }
}
