//! The actuators against kube's `tower-test` mock API server: every scenario scripts the
//! exact requests (method, path, query, JSON body) it expects and replies with API shapes
//! as the API server sends them. Each runs under a 1-second timeout, so a missing call or
//! an unexpected extra one (for example a write that should have been refused) fails fast.
//! One `#[ignore]`d test runs against a real cluster.

use std::future::Future;
use std::time::Duration;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
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

/// A client over a mock API server that answers `calls` in order and asserts each request.
fn mock_server(
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

/// Runs `act` against one scripted API server.
async fn scenario<T, F: Future<Output = T>>(calls: Vec<Call>, act: impl FnOnce(Client) -> F) -> T {
    let (client, verifier) = mock_server("local", calls);
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
    let (lc, lv) = mock_server("local", local);
    let (pc, pv) = mock_server("peer", peer);
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
