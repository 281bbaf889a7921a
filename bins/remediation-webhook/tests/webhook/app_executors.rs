//! The two application-level executors against local servers that speak the documented
//! protocols, through the real webhook:
//!
//! - `rebuild_index` over Milvus' REST API v2: the stand-in keeps collections with
//!   their indexes and load state, enforces Milvus' rule that an index of a loaded
//!   collection cannot be dropped, checks each call's path, `Authorization: Bearer`
//!   header and body shape (`dbName`, `collectionName`, `indexName`, `indexParams`), and
//!   answers like Milvus: HTTP 200 with `{"code": 0, "data": ...}` or a non-zero `code`
//!   and `message` (1800 bad token, 100 no collection, 700 no index, 1100 bad
//!   parameters), HTTP 401 for a missing or expired token. Its describe reports type and
//!   metric but no build parameters, as Milvus' REST API does, so an `HNSW` index is
//!   rebuilt only with the parameters of the webhook's `milvus.index_params` (loaded
//!   and wired as `main` does), and refused before any change when they are missing or
//!   written for another metric.
//! - `retry_with_backoff` against an application endpoint that fails a given number of
//!   times with 503 before it accepts, or refuses a wrong token with 401; the backoff's
//!   waits are recorded by the injected sleeper instead of slept.

use super::{Advance, Always, TOKEN, deliver, fixture, policy};
use axum::http::{HeaderMap, StatusCode};
use remediation_webhook::config::{BearerToken, ENV_PREFIX, RawConfig};
use remediation_webhook::milvus::MilvusIndexes;
use remediation_webhook::platform::add_app_executors;
use remediation_webhook::redeliver::HttpRedelivery;
use remediation_webhook::server::{AppState, Ports, Settings, Verifier, start};
use serde_json::{Value, json};
use sre_core::ManualClock;
use sre_core::PortError;
use sre_core::config::{EnvOverrides, Format, Source, load};
use sre_core::guard::{Backoff, Jitter};
use sre_remediation::actions::{CollectionRef, Mode, VectorIndexes, WebhookRef};
use sre_remediation::execute::Executors;
use sre_remediation::ports::QueryValue;
use sre_remediation::retry::Redelivery;
use sre_remediation::rules::RuleSet;
use sre_remediation::verify::Sleeper;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const MILVUS_TOKEN: &str = "root:Milvus";
const APP_TOKEN: &str = "billing-redeliver-secret";

/// One collection of the Milvus stand-in.
#[derive(Debug, Clone)]
struct Collection {
    /// Index descriptions as Milvus keeps them (with `params`, which describe hides).
    indexes: Vec<Value>,
    loaded: bool,
}

#[derive(Debug, Default)]
struct MilvusState {
    collections: BTreeMap<String, Collection>,
    /// `resource/verb collection [index...]`, in order, for every authenticated call.
    calls: Vec<String>,
    /// Answer `indexes/create` with this HTTP status (a proxy failing mid-rebuild).
    fail_create: Option<u16>,
}

type Milvus = Arc<Mutex<MilvusState>>;

fn milvus_error(code: i64, message: &str) -> (StatusCode, axum::Json<Value>) {
    (
        StatusCode::OK,
        axum::Json(json!({ "code": code, "message": message })),
    )
}

fn ok(data: Value) -> (StatusCode, axum::Json<Value>) {
    let mut answer = serde_json::Map::new();
    answer.insert("code".into(), json!(0));
    answer.insert("data".into(), data);
    (StatusCode::OK, axum::Json(Value::Object(answer)))
}

fn index(field: &str, name: &str, index_type: &str, metric: &str) -> Value {
    json!({ "fieldName": field, "indexName": name, "indexType": index_type, "metricType": metric })
}

/// Checks one `indexParams` entry of a create call as Milvus' `IndexParam` binds it.
fn index_param_ok(p: &Value) -> bool {
    let s = |k: &str| p.get(k).is_none_or(Value::is_string);
    p.get("fieldName")
        .and_then(Value::as_str)
        .is_some_and(|f| !f.is_empty())
        && s("indexName")
        && s("metricType")
        && s("indexType")
        && p.get("params").is_none_or(Value::is_object)
        && p.as_object().is_some_and(|m| {
            m.keys().all(|k| {
                [
                    "fieldName",
                    "indexName",
                    "metricType",
                    "indexType",
                    "params",
                ]
                .contains(&k.as_str())
            })
        })
}

/// One call to the Milvus stand-in: authentication, the fields every call needs, the
/// call log, then [`apply`].
fn milvus_call(
    state: &Milvus,
    op: &str,
    headers: &HeaderMap,
    body: &Value,
) -> (StatusCode, axum::Json<Value>) {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        None | Some("Bearer expired") => {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"code": 1800, "message": "user hasn't authenticated"})),
            );
        }
        Some(a) if a != format!("Bearer {MILVUS_TOKEN}") => {
            return milvus_error(1800, "user hasn't authenticated");
        }
        Some(_) => {}
    }
    if body["dbName"] != "default" {
        return milvus_error(800, "database not found[database=?]");
    }
    let Some(coll) = body["collectionName"].as_str().filter(|c| !c.is_empty()) else {
        return milvus_error(1100, "missing required parameters: collectionName");
    };
    let mut s = state.lock().expect("lock");
    let index_name = body["indexName"].as_str().map(str::to_owned);
    let needs_index = matches!(op, "indexes/describe" | "indexes/drop");
    if needs_index && index_name.as_deref().is_none_or(str::is_empty) {
        return milvus_error(1100, "missing required parameters: indexName");
    }
    let created: Vec<String> = body["indexParams"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| p["indexName"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let named = index_name
        .clone()
        .into_iter()
        .chain(created)
        .collect::<Vec<_>>();
    let mut logged = format!("{op} {coll}");
    for n in &named {
        logged.push(' ');
        logged.push_str(n);
    }
    s.calls.push(logged);
    if let (true, Some(status)) = (op == "indexes/create", s.fail_create) {
        return (
            StatusCode::from_u16(status).expect("status"),
            axum::Json(json!({"message": "upstream failed"})),
        );
    }
    let Some(c) = s.collections.get_mut(coll) else {
        return milvus_error(100, &format!("collection not found[collection={coll}]"));
    };
    apply(c, op, index_name, body)
}

/// What Milvus does for `op` on collection `c`.
fn apply(
    c: &mut Collection,
    op: &str,
    index_name: Option<String>,
    body: &Value,
) -> (StatusCode, axum::Json<Value>) {
    let find = |c: &Collection, n: &str| c.indexes.iter().position(|i| i["indexName"] == n);
    match op {
        "indexes/list" => ok(json!(
            c.indexes
                .iter()
                .map(|i| i["indexName"].clone())
                .collect::<Vec<_>>()
        )),
        "indexes/describe" => {
            let name = index_name.unwrap_or_default();
            let Some(i) = find(c, &name) else {
                return milvus_error(700, "index not found");
            };
            let i = &c.indexes[i];
            // Milvus' REST describe: type and metric, no build parameters.
            ok(json!([{
                "fieldName": i["fieldName"], "indexName": i["indexName"],
                "indexType": i["indexType"], "metricType": i.get("metricType").cloned().unwrap_or(json!("")),
                "indexState": "Finished", "indexedRows": 0, "pendingRows": 0, "totalRows": 0,
                "failReason": ""
            }]))
        }
        "collections/release" => {
            c.loaded = false;
            ok(Value::Null)
        }
        "indexes/drop" => {
            if c.loaded {
                return milvus_error(
                    65535,
                    "index cannot be dropped, collection is loaded, please release it first",
                );
            }
            let name = index_name.unwrap_or_default();
            let Some(i) = find(c, &name) else {
                return milvus_error(700, "index not found");
            };
            c.indexes.remove(i);
            ok(Value::Null)
        }
        "indexes/create" => {
            let Some(params) = body["indexParams"].as_array().filter(|a| !a.is_empty()) else {
                return milvus_error(1100, "missing required parameters: indexParams");
            };
            if !params.iter().all(index_param_ok) {
                return milvus_error(1100, "invalid parameter: indexParams");
            }
            for p in params {
                if c.indexes.iter().any(|i| i["fieldName"] == p["fieldName"]) {
                    return milvus_error(65535, "at most one distinct index is allowed per field");
                }
                c.indexes.push(p.clone());
            }
            ok(Value::Null)
        }
        "collections/load" => {
            if !c
                .indexes
                .iter()
                .any(|i| i.get("metricType").is_some_and(|m| m != ""))
            {
                return milvus_error(700, "there is no vector index on the collection");
            }
            c.loaded = true;
            ok(Value::Null)
        }
        other => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": format!("no such endpoint {other}")})),
        ),
    }
}

/// Starts the Milvus stand-in with `docs` (an `AUTOINDEX` vector index and an
/// `INVERTED` scalar index) and `hnsw` (an `HNSW` index built with `M` 16), both loaded.
async fn fake_milvus() -> (String, Milvus) {
    let state: Milvus = Arc::default();
    {
        let mut s = state.lock().expect("lock");
        s.collections.insert(
            "docs".into(),
            Collection {
                indexes: vec![
                    index("tenant", "tenant_idx", "INVERTED", ""),
                    index("embedding", "embedding_idx", "AUTOINDEX", "COSINE"),
                ],
                loaded: true,
            },
        );
        let mut hnsw = index("embedding", "vec", "HNSW", "L2");
        hnsw["params"] = json!({"M": 16, "efConstruction": 200});
        s.collections.insert(
            "hnsw".into(),
            Collection {
                indexes: vec![hnsw],
                loaded: true,
            },
        );
    }
    let st = state.clone();
    let app = axum::Router::new().route(
        "/v2/vectordb/{resource}/{verb}",
        axum::routing::post(
            move |axum::extract::Path((resource, verb)): axum::extract::Path<(String, String)>,
                  headers: HeaderMap,
                  axum::Json(body): axum::Json<Value>| {
                let st = st.clone();
                async move { milvus_call(&st, &format!("{resource}/{verb}"), &headers, &body) }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), state)
}

/// Records the waits instead of sleeping.
#[derive(Default)]
struct Waits(Mutex<Vec<Duration>>);

#[async_trait::async_trait]
impl Sleeper for Waits {
    async fn sleep(&self, d: Duration) {
        self.0.lock().expect("lock").push(d);
    }
}

/// A webhook with the built-in rules acting for real (not dry) through `executors`,
/// whose verification holds at once.
async fn app_webhook(executors: Executors) -> String {
    let clock = ManualClock::at_epoch();
    let ports = Ports {
        clock: Arc::new(clock.clone()),
        verifier: Some(Verifier {
            query: Arc::new(Always(QueryValue::Vector(Vec::new()))),
            sleeper: Arc::new(Advance(clock)),
            interval: Duration::from_secs(10),
        }),
        executors,
        evidence: None,
    };
    let settings = Settings {
        token: BearerToken::new(TOKEN).expect("non-empty"),
        policy: policy(),
        dry_run: false,
        max_body_bytes: 64 * 1024,
        queue_capacity: 16,
        runs_kept: 100,
    };
    let state = AppState::new(
        settings,
        RuleSet::builtin().expect("built-in rules are valid"),
        sre_core::telemetry::metrics_registry(),
        ports,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = start(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// The captured Alertmanager delivery with its alert relabelled as `alertname` with
/// `labels` (everything else as Alertmanager 0.25 sent it).
fn delivery(alertname: &str, labels: &[(&str, &str)], fingerprint: &str) -> Vec<u8> {
    let mut v: Value =
        serde_json::from_slice(&fixture("firing-high-memory.json")).expect("fixture is JSON");
    let mut l = serde_json::Map::new();
    l.insert("alertname".into(), json!(alertname));
    for (k, val) in labels {
        l.insert((*k).into(), json!(val));
    }
    v["alerts"][0]["labels"] = Value::Object(l.clone());
    v["alerts"][0]["fingerprint"] = json!(fingerprint);
    v["commonLabels"] = Value::Object(l);
    v["groupLabels"] = json!({ "alertname": alertname });
    v.to_string().into_bytes()
}

fn milvus_client(base: &str, token: &str) -> MilvusIndexes {
    MilvusIndexes::new(base, token, "default", Duration::from_secs(5)).expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milvus_query_slow_rebuilds_the_vector_index_through_the_rest_api() {
    let (milvus, state) = fake_milvus().await;
    let base = app_webhook(Executors {
        vector_indexes: Some(Arc::new(milvus_client(&milvus, MILVUS_TOKEN))),
        ..Executors::default()
    })
    .await;

    let run = deliver(
        &base,
        delivery(
            "MilvusQuerySlow",
            &[("namespace", "ai-hub"), ("collection_name", "docs")],
            "a1b2c3d4e5f60718",
        ),
    )
    .await;
    let entry = &run["plan"][0];
    assert_eq!(entry["rule"], "ai-hub/milvus-query-slow", "{entry}");
    assert_eq!(entry["execution"]["result"], "executed", "{entry}");
    assert_eq!(
        entry["execution"]["call"]["call"], "rebuild_index",
        "{entry}"
    );
    // The record holds what a human needs to recreate the index: Milvus' own indexParams.
    let before: Value = serde_json::from_str(
        entry["execution"]["outcome"]["before"]
            .as_str()
            .expect("before is recorded"),
    )
    .expect("before is JSON");
    assert_eq!(
        before,
        json!([{"fieldName": "embedding", "indexName": "embedding_idx",
                "indexType": "AUTOINDEX", "metricType": "COSINE"}])
    );
    assert_eq!(entry["verification"]["result"], "holds", "{entry}");

    let s = state.lock().expect("lock");
    assert_eq!(
        s.calls,
        [
            "indexes/list docs",
            "indexes/describe docs tenant_idx",
            "indexes/describe docs embedding_idx",
            "collections/release docs",
            "indexes/drop docs embedding_idx",
            "indexes/create docs embedding_idx",
            "collections/load docs",
        ],
        "the scalar index is left alone"
    );
    let docs = &s.collections["docs"];
    assert!(docs.loaded, "loaded again");
    assert_eq!(
        docs.indexes,
        [
            index("tenant", "tenant_idx", "INVERTED", ""),
            index("embedding", "embedding_idx", "AUTOINDEX", "COSINE"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milvus_dry_runs_refusals_and_error_codes_map_to_typed_errors() {
    let (milvus, state) = fake_milvus().await;
    let client = milvus_client(&milvus, MILVUS_TOKEN);
    let docs = CollectionRef::new(Some("ai-hub"), "docs");
    let calls = |s: &Milvus| s.lock().expect("lock").calls.clone();

    // A dry run describes and changes nothing.
    let dry = client
        .rebuild_index(&docs, Mode::DryRun)
        .await
        .expect("dry run");
    assert!(dry.dry_run && dry.changed, "{dry:?}");
    assert!(dry.detail.contains("embedding_idx"), "{}", dry.detail);
    assert_eq!(
        calls(&state),
        [
            "indexes/list docs",
            "indexes/describe docs tenant_idx",
            "indexes/describe docs embedding_idx"
        ]
    );
    assert!(state.lock().expect("lock").collections["docs"].loaded);

    // HNSW built with M 16: describe does not say so, so nothing is released or dropped.
    state.lock().expect("lock").calls.clear();
    let err = client
        .rebuild_index(&CollectionRef::new(None, "hnsw"), Mode::Apply)
        .await
        .expect_err("build parameters unknown");
    assert!(
        matches!(&err, PortError::Rejected { message, .. } if message.contains("HNSW")
            && message.contains("milvus.index_params.hnsw.vec")
            && message.contains("nothing was changed")),
        "{err}"
    );
    assert_eq!(
        calls(&state),
        ["indexes/list hnsw", "indexes/describe hnsw vec"]
    );

    // code != 0: a wrong token (1800) is a refusal, a missing collection (100) NotFound.
    let err = milvus_client(&milvus, "root:wrong")
        .rebuild_index(&docs, Mode::Apply)
        .await
        .expect_err("wrong token");
    assert!(
        matches!(&err, PortError::Rejected { message, .. } if message.contains("code 1800")),
        "{err}"
    );
    assert!(matches!(
        client.rebuild_index(&CollectionRef::new(None, "gone"), Mode::Apply).await,
        Err(PortError::NotFound { what }) if what.contains("code 100")
    ));
    // HTTP 401 (an expired token at the proxy): a refusal too.
    let err = milvus_client(&milvus, "expired")
        .rebuild_index(&docs, Mode::Apply)
        .await
        .expect_err("401");
    assert!(
        matches!(&err, PortError::Rejected { message, .. } if message.contains("HTTP 401")),
        "{err}"
    );

    // A 5xx after the drop: retryable, and the error says how to recreate the index.
    state.lock().expect("lock").fail_create = Some(503);
    let err = client
        .rebuild_index(&docs, Mode::Apply)
        .await
        .expect_err("create fails");
    let PortError::Unavailable { message, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        message.contains("HTTP 503")
            && message.contains(
                r#""indexParams": [{"fieldName":"embedding","indexName":"embedding_idx""#
            ),
        "{message}"
    );
    let s = state.lock().expect("lock");
    assert!(!s.collections["docs"].loaded);
    assert_eq!(
        s.collections["docs"].indexes.len(),
        1,
        "only the scalar index is left"
    );
}

/// The executors of a webhook config whose `milvus:` section points at `base` with
/// `index_params` (flow YAML), loaded, validated and wired as `main` does; the token
/// comes from a file.
fn configured_milvus(base: &str, index_params: &str) -> Executors {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("milvus-token");
    std::fs::write(&token, format!("{MILVUS_TOKEN}\n")).expect("write token");
    let config = load::<RawConfig>(
        &Source::Text {
            name: "remediation.yaml".into(),
            text: format!(
                "milvus:\n  url: '{base}'\n  token_file: {}\n  index_params: {index_params}\n",
                token.display()
            ),
            format: Format::Yaml,
        },
        &EnvOverrides::with_prefix(ENV_PREFIX),
        Vec::new(),
    )
    .expect("valid config");
    let mut ex = Executors::default();
    add_app_executors(&mut ex, config.milvus.as_ref(), None).expect("wires");
    ex
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_build_parameters_rebuild_an_hnsw_index_with_exactly_those_parameters() {
    let (milvus, state) = fake_milvus().await;
    let base = app_webhook(configured_milvus(
        &milvus,
        "{hnsw: {vec: {index_type: HNSW, metric_type: L2, params: {M: 16, efConstruction: 200}}}}",
    ))
    .await;

    let run = deliver(
        &base,
        delivery(
            "MilvusQuerySlow",
            &[("namespace", "ai-hub"), ("collection_name", "hnsw")],
            "b2c3d4e5f6071829",
        ),
    )
    .await;
    let entry = &run["plan"][0];
    assert_eq!(entry["execution"]["result"], "executed", "{entry}");
    let outcome = &entry["execution"]["outcome"];
    assert!(
        outcome["detail"].as_str().is_some_and(
            |d| d.contains("build parameters of vec from milvus.index_params.hnsw.vec")
        ),
        "{entry}"
    );
    let built = json!({"fieldName": "embedding", "indexName": "vec", "indexType": "HNSW",
                       "metricType": "L2", "params": {"M": 16, "efConstruction": 200}});
    let before: Value =
        serde_json::from_str(outcome["before"].as_str().expect("before")).expect("JSON");
    assert_eq!(
        before,
        json!([built]),
        "the record holds the configured parameters"
    );

    let s = state.lock().expect("lock");
    assert_eq!(
        s.calls,
        [
            "indexes/list hnsw",
            "indexes/describe hnsw vec",
            "collections/release hnsw",
            "indexes/drop hnsw vec",
            "indexes/create hnsw vec",
            "collections/load hnsw",
        ]
    );
    // The stand-in keeps each create entry as it was sent: the body carried exactly the
    // configured parameters, nothing added or left out.
    assert_eq!(s.collections["hnsw"].indexes, [built]);
    assert!(s.collections["hnsw"].loaded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_parameters_for_another_metric_are_refused_before_any_change() {
    let (milvus, state) = fake_milvus().await;
    // Keyed by field name, written for COSINE; the index is L2.
    let ex = configured_milvus(
        &milvus,
        "{hnsw: {embedding: {index_type: HNSW, metric_type: COSINE, params: {M: 16, efConstruction: 200}}}}",
    );
    let port = ex.vector_indexes.expect("milvus executor");
    let hnsw = CollectionRef::new(Some("ai-hub"), "hnsw");
    for mode in [Mode::DryRun, Mode::Apply] {
        let err = port
            .rebuild_index(&hnsw, mode)
            .await
            .expect_err("metric differs");
        assert!(
            matches!(&err, PortError::Rejected { message, .. }
                if message.contains("metric L2")
                    && message.contains("milvus.index_params.hnsw.embedding says COSINE")
                    && message.ends_with("nothing was changed")),
            "{err}"
        );
    }
    let s = state.lock().expect("lock");
    assert_eq!(
        s.calls,
        [
            "indexes/list hnsw",
            "indexes/describe hnsw vec",
            "indexes/list hnsw",
            "indexes/describe hnsw vec"
        ],
        "no release, no drop"
    );
    let mut original = index("embedding", "vec", "HNSW", "L2");
    original["params"] = json!({"M": 16, "efConstruction": 200});
    assert_eq!(s.collections["hnsw"].indexes, [original]);
    assert!(s.collections["hnsw"].loaded);
}

/// What the application's redelivery endpoint received: path, `Authorization`, body.
type AppCalls = Arc<Mutex<Vec<(String, String, Value)>>>;

/// An application endpoint that answers 503 to its first `failures` requests, then 202
/// with a count; a wrong bearer token is 401 (and no failure is used up).
async fn fake_app(failures: u32) -> (String, AppCalls) {
    let calls: AppCalls = Arc::default();
    let seen = calls.clone();
    let left = Arc::new(Mutex::new(failures));
    let app = axum::Router::new().route(
        "/{namespace}/internal/webhooks/{name}/redeliver",
        axum::routing::post(
            move |uri: axum::http::Uri, headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                let (seen, left) = (seen.clone(), left.clone());
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    seen.lock()
                        .expect("lock")
                        .push((uri.path().to_owned(), auth.clone(), body));
                    if auth != format!("Bearer {APP_TOKEN}") {
                        return (StatusCode::UNAUTHORIZED, "bad token".to_owned());
                    }
                    let mut l = left.lock().expect("lock");
                    if *l > 0 {
                        *l -= 1;
                        return (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "delivery log busy".to_owned(),
                        );
                    }
                    (StatusCode::ACCEPTED, r#"{"redelivered": 3}"#.to_owned())
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        format!("http://{addr}/${{namespace}}/internal/webhooks/${{name}}/redeliver"),
        calls,
    )
}

fn redelivery(template: &str, token: &str, waits: &Arc<Waits>) -> Redelivery {
    Redelivery {
        port: Arc::new(
            HttpRedelivery::new(template, token, Duration::from_secs(5)).expect("client"),
        ),
        backoff: Backoff::new(
            Duration::from_secs(1),
            NonZeroU32::MIN.saturating_add(1),
            Duration::from_secs(30),
            Jitter::None,
        ),
        sleeper: waits.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_webhook_failed_asks_the_app_again_with_backoff_until_it_accepts() {
    let (template, calls) = fake_app(2).await;
    let waits = Arc::new(Waits::default());
    let base = app_webhook(Executors {
        redelivery: Some(redelivery(&template, APP_TOKEN, &waits)),
        ..Executors::default()
    })
    .await;

    let run = deliver(
        &base,
        delivery(
            "BillingWebhookFailed",
            &[("namespace", "bank"), ("webhook", "stripe")],
            "0f1e2d3c4b5a6978",
        ),
    )
    .await;
    let entry = &run["plan"][0];
    assert_eq!(
        entry["rule"], "open-banking/billing-webhook-failed",
        "{entry}"
    );
    assert_eq!(entry["execution"]["result"], "executed", "{entry}");
    assert_eq!(entry["execution"]["call"]["max_attempts"], 5, "{entry}");
    let outcome = &entry["execution"]["outcome"];
    assert_eq!(outcome["after"], "attempts=3", "{entry}");
    assert!(
        outcome["detail"]
            .as_str()
            .is_some_and(|d| d.contains("HTTP 202") && d.contains(r#"{"redelivered": 3}"#)),
        "{entry}"
    );
    assert_eq!(
        *waits.0.lock().expect("lock"),
        [Duration::from_secs(1), Duration::from_secs(2)],
        "exponential backoff between the three attempts"
    );
    let calls = calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 3, "{calls:?}");
    for (path, auth, body) in &calls {
        assert_eq!(path, "/bank/internal/webhooks/stripe/redeliver");
        assert_eq!(auth, &format!("Bearer {APP_TOKEN}"));
        assert_eq!(
            body,
            &json!({"source": "sre-remediation", "namespace": "bank", "webhook": "stripe"})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_redelivery_is_not_retried_and_a_dry_run_sends_nothing() {
    let (template, calls) = fake_app(0).await;
    let waits = Arc::new(Waits::default());
    let hook = WebhookRef::new(Some("bank"), "stripe");

    let dry = redelivery(&template, APP_TOKEN, &waits)
        .redeliver(&hook, 5, Mode::DryRun)
        .await
        .expect("dry run");
    assert!(
        dry.dry_run && dry.detail.starts_with("dry run: would ask"),
        "{dry:?}"
    );
    assert!(
        calls.lock().expect("lock").is_empty(),
        "a dry run sends nothing"
    );

    let err = redelivery(&template, "wrong", &waits)
        .redeliver(&hook, 5, Mode::Apply)
        .await
        .expect_err("401");
    assert!(
        matches!(&err, PortError::Rejected { message, .. } if message.contains("HTTP 401")),
        "{err}"
    );
    assert_eq!(calls.lock().expect("lock").len(), 1, "a refusal is final");
    assert!(waits.0.lock().expect("lock").is_empty());

    // Nothing listening: transport errors are retried up to max_attempts, then given up.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let err = redelivery(
        &format!("http://{closed}/${{namespace}}/${{name}}"),
        APP_TOKEN,
        &waits,
    )
    .redeliver(&hook, 3, Mode::Apply)
    .await
    .expect_err("nobody listens");
    assert!(
        matches!(&err, PortError::Unavailable { message, .. } if message.starts_with("gave up after 3 attempt(s)")),
        "{err}"
    );
    assert_eq!(
        *waits.0.lock().expect("lock"),
        [Duration::from_secs(1), Duration::from_secs(2)]
    );
}
