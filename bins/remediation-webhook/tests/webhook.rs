//! The real server, in-process: on 127.0.0.1:0 fed the Alertmanager 0.25 payloads
//! captured in `shared/fixtures/alertmanager/` (auth, body limit, bad JSON, queued plans),
//! running the whole remediation loop over fake ports (`sre_remediation::testing`
//! workloads, a scripted metrics port on a manual clock, a local HTTP escalation receiver,
//! a real evidence file), on `SRE_TEST_WEBHOOK_PORT` receiving the real Alertmanager of
//! `cargo xtask services up`, which posts the always-firing `SreTestAlwaysFiring` group
//! with its bearer token, and (`alerting`) behind a Prometheus rule of its own: a metric
//! the test serves fires the rule, the test's own Alertmanager posts it, the webhook acts,
//! and Prometheus verifies the recovery, or the rollback and escalation.

#[path = "webhook/alerting.rs"]
mod alerting;
#[path = "webhook/app_executors.rs"]
mod app_executors;

use remediation_webhook::config::BearerToken;
use remediation_webhook::notify::HttpNotifier;
use remediation_webhook::server::{AppState, Ports, Settings, Verifier, start};
use serde_json::{Value, json};
use sre_core::PortError;
use sre_core::evidence::FileEvidenceLog;
use sre_core::guard::{Backoff, Jitter};
use sre_core::testing::test_env;
use sre_core::{Clock, ManualClock, SystemClock};
use sre_remediation::actions::{WorkloadKind, WorkloadRef};
use sre_remediation::execute::Executors;
use sre_remediation::plan::{BlastRadius, Policy};
use sre_remediation::ports::{MetricsQuery, QueryValue, Sample};
use sre_remediation::rules::RuleSet;
use sre_remediation::testing::FakeWorkloads;
use sre_remediation::verify::Sleeper;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

const TOKEN: &str = "test-token-7f3a";

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/alertmanager")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn policy() -> Policy {
    Policy {
        cooldown: Duration::from_mins(5),
        backoff: Backoff::new(
            Duration::from_mins(5),
            NonZeroU32::MIN.saturating_add(1),
            Duration::from_hours(1),
            Jitter::None,
        ),
        escalate_after: NonZeroU32::MIN.saturating_add(2),
        escalation_cool_off: Duration::from_hours(1),
        dedupe_window: Duration::from_mins(10),
        blast_radius: BlastRadius {
            max_targets: NonZeroU32::MIN.saturating_add(4),
            window: Duration::from_mins(10),
            max_replica_pct: 25,
        },
        budget: None,
        retention: Duration::from_hours(24),
    }
}

/// Serves a dry-run webhook on `listener` (built-in rules, no executors, no metrics backend).
fn serve(listener: tokio::net::TcpListener, token: &str, clock: Arc<dyn Clock>) -> String {
    let ports = Ports {
        clock,
        verifier: None,
        executors: Executors::default(),
        evidence: None,
    };
    serve_with(listener, token, true, ports)
}

/// Serves a webhook on `listener` over the given ports.
fn serve_with(
    listener: tokio::net::TcpListener,
    token: &str,
    dry_run: bool,
    ports: Ports,
) -> String {
    let settings = Settings {
        token: BearerToken::new(token).expect("non-empty"),
        policy: policy(),
        dry_run,
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
    let addr = listener.local_addr().expect("bound address");
    let app = start(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn start_local() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    serve(listener, TOKEN, Arc::new(ManualClock::at_epoch()))
}

async fn get(base: &str, path: &str, token: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Posts a delivery (expecting 202) and waits for the planner to finish its run.
async fn deliver(base: &str, body: Vec<u8>) -> Value {
    let (status, accepted) = post(base, Some(TOKEN), body).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["state"], "queued", "{accepted}");
    let id = accepted["run"].as_u64().expect("run id");
    // The planner is one task working through a short queue: a bounded wait for liveness.
    for _ in 0..500 {
        let (status, run) = get(base, &format!("/runs/{id}"), TOKEN).await;
        assert_eq!(status, 200, "{run}");
        if run["state"] == "done" {
            return run;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run {id} was not planned within 5 s");
}

async fn post(base: &str, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/alerts"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn verdicts(v: &Value) -> Vec<String> {
    v["plan"]
        .as_array()
        .map(|p| {
            p.iter()
                .map(|e| {
                    let kind = e["action"]["kind"]
                        .as_str()
                        .or(e["skip"]["kind"].as_str())
                        .unwrap_or("");
                    format!("{}:{kind}", e["verdict"].as_str().unwrap_or("?"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Bad requests of every kind: refused with the right status, and nothing queued.
async fn refusals(base: &str, firing: &[u8]) {
    let (status, body) = post(base, None, firing.to_vec()).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["kind"], "unauthorized");
    let (status, _) = post(base, Some("wrong-token-7f3a"), firing.to_vec()).await;
    assert_eq!(status, 401);
    let (status, _) = post(base, Some("x"), firing.to_vec()).await;
    assert_eq!(status, 401, "shorter token");

    let (status, body) = post(base, Some(TOKEN), vec![b' '; 65 * 1024]).await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = post(base, Some(TOKEN), b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(body["kind"], "malformed", "{body}");
    let (status, body) = post(base, Some(TOKEN), br#"{"version":"4"}"#.to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(body["kind"], "malformed", "{body}");
    // The real delivery with its first alert's fingerprint taken out: the error names
    // the field by its path, so a broken sender can be fixed from the answer alone.
    let mut no_fp: Value = serde_json::from_slice(firing).expect("fixture is JSON");
    no_fp["alerts"][0]
        .as_object_mut()
        .expect("alerts[0] is an object")
        .remove("fingerprint");
    let (status, body) = post(base, Some(TOKEN), no_fp.to_string().into_bytes()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["kind"], "malformed", "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("missing field `alerts[0].fingerprint`")),
        "{body}"
    );

    let (status, body) = get(base, "/runs", "wrong-token-7f3a").await;
    assert_eq!(
        status, 401,
        "runs show alert labels: token required, {body}"
    );
    let (status, body) = get(base, "/runs", TOKEN).await;
    assert_eq!(
        (status, &body["runs"]),
        (200, &Value::Array(Vec::new())),
        "refused requests queue nothing"
    );
    let (status, body) = get(base, "/runs/99", TOKEN).await;
    assert_eq!((status, body["kind"].as_str()), (404, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_plans_real_alertmanager_payloads_and_refuses_bad_requests() {
    let base = start_local().await;
    let firing = fixture("firing-high-memory.json");

    refusals(&base, &firing).await;

    // Nothing was planned by the refused requests: the first real delivery acts.
    let body = deliver(&base, firing.clone()).await;
    assert_eq!(verdicts(&body), ["act:scale_up"], "{body}");
    assert_eq!(body["id"], 1);
    assert_eq!(body["receiver"], "sre");
    assert_eq!(body["alerts"], 1);
    let entry = &body["plan"][0];
    assert_eq!(entry["fingerprint"], "4877162fa439cb7f");
    assert_eq!(entry["rule"], "control-plane/high-memory");
    assert_eq!(entry["target"]["name"], "console");
    assert_eq!(entry["target"]["namespace"], "catalyst-system");
    assert!(
        entry["verify"]["query"]
            .as_str()
            .is_some_and(|q| q.contains(r#"namespace="catalyst-system""#)),
        "{entry}"
    );
    assert_eq!(entry["execution"]["result"], "not_executed", "{entry}");
    assert_eq!(
        entry["execution"]["reason"],
        "dry run; not executed: action `scale` needs the workloads port, which is not configured"
    );
    assert!(
        entry.get("verification").is_none(),
        "nothing ran, nothing verified: {entry}"
    );
    assert_eq!(body["dry_run"], true);

    // At-least-once delivery: the same alert again is a duplicate, not a second action.
    let body = deliver(&base, firing).await;
    assert_eq!(verdicts(&body), ["skip:duplicate"], "{body}");

    let body = deliver(&base, fixture("resolved-high-memory.json")).await;
    assert_eq!(verdicts(&body), ["skip:nothing_pending"], "{body}");

    // Two pods of one model: one batch-size change for the InferenceService, not two.
    let body = deliver(&base, fixture("firing-vllm-oom-two-pods.json")).await;
    assert_eq!(
        verdicts(&body),
        ["act:reduce_batch_size", "skip:coalesced"],
        "{body}"
    );
    assert_eq!(body["plan"][0]["target"]["kind"], "inference_service");
    assert_eq!(body["plan"][0]["action"]["percent"], 50);

    let (_, runs) = get(&base, "/runs", TOKEN).await;
    let ids: Vec<u64> = runs["runs"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["id"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [4, 3, 2, 1], "newest first: {runs}");

    let health = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        r#"sre_remediation_requests_rejected_total{reason="unauthorized"} 4"#,
        r#"sre_remediation_requests_rejected_total{reason="too_large"} 1"#,
        r#"sre_remediation_requests_rejected_total{reason="malformed"} 3"#,
        r#"sre_remediation_actions_planned_total{kind="scale_up"} 1"#,
        r#"sre_remediation_actions_planned_total{kind="reduce_batch_size"} 1"#,
        r#"sre_remediation_actions_blocked_total{reason="duplicate"} 1"#,
        r#"sre_remediation_alerts_received_total{status="firing"} 4"#,
        r#"sre_remediation_alerts_received_total{status="resolved"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert!(!metrics.contains(TOKEN));
}

/// The always-firing rule of the test Prometheus, routed by the test Alertmanager to
/// `127.0.0.1:$SRE_TEST_WEBHOOK_PORT/webhook/alertmanager` (`/alerts` from services
/// started before that change; the server serves both) with `Authorization: Bearer
/// $SRE_TEST_WEBHOOK_TOKEN` (both written by `cargo xtask services up`). The only test that
/// binds that port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_alertmanager_delivers_the_always_firing_alert_with_its_token() {
    let port: u16 = test_env("SRE_TEST_WEBHOOK_PORT")
        .parse()
        .expect("SRE_TEST_WEBHOOK_PORT is a port");
    let token = test_env("SRE_TEST_WEBHOOK_TOKEN");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port} (is another webhook running?): {e}"));
    // One server on the port Alertmanager posts to (one test binds it). The always-firing
    // alert is unmatched and never acts; acting and verifying on a real rule is
    // `alerting`'s part, on a Prometheus and Alertmanager of its own.
    let base = serve(listener, &token, Arc::new(SystemClock::new()));

    // group_wait and group_interval are 1s and the group is re-sent every 5s: a bounded
    // wait for delivery, not a latency assertion.
    let mut last = Value::Null;
    for _ in 0..120 {
        let (status, runs) = get(&base, "/runs", &token).await;
        assert_eq!(status, 200, "{runs}");
        let delivered = runs["runs"].as_array().and_then(|runs| {
            runs.iter().find(|r| {
                r["state"] == "done"
                    && r["plan"]
                        .as_array()
                        .is_some_and(|p| p.iter().any(|e| e["alertname"] == "SreTestAlwaysFiring"))
            })
        });
        if let Some(run) = delivered {
            assert_eq!(run["receiver"], "sre-test-webhook", "{run}");
            assert_eq!(run["status"], "firing", "{run}");
            assert!(
                run["group_key"]
                    .as_str()
                    .is_some_and(|k| k.contains("SreTestAlwaysFiring")),
                "{run}"
            );
            let entry = run["plan"]
                .as_array()
                .and_then(|p| p.iter().find(|e| e["alertname"] == "SreTestAlwaysFiring"))
                .expect("entry");
            // No built-in rule handles the test alert: accepted and logged as unmatched.
            assert_eq!(entry["verdict"], "unmatched", "{entry}");
            assert_eq!(entry["status"], "firing", "{entry}");
            assert!(entry.get("execution").is_none(), "{entry}");
            let metrics = reqwest::get(format!("{base}/metrics"))
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text");
            assert!(
                !metrics.contains(r#"reason="unauthorized""#),
                "Alertmanager must authenticate every delivery:\n{metrics}"
            );
            assert!(
                metrics.contains(r#"sre_remediation_actions_blocked_total{reason="unmatched"}"#),
                "{metrics}"
            );
            return;
        }
        last = runs;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "no SreTestAlwaysFiring delivery from Alertmanager within 60 s on port {port}; runs: {last}"
    );
}

/// Answers every query with the same value: an empty vector (the problem is gone) or one
/// series (it persists).
struct Always(QueryValue);

#[async_trait::async_trait]
impl MetricsQuery for Always {
    async fn instant(&self, _: &str) -> Result<QueryValue, PortError> {
        Ok(self.0.clone())
    }
}

/// Waits by advancing the manual clock: a five-minute verification without sleeping.
struct Advance(ManualClock);

#[async_trait::async_trait]
impl Sleeper for Advance {
    async fn sleep(&self, d: Duration) {
        self.0.advance(d);
    }
}

type Posts = Arc<Mutex<Vec<Value>>>;

/// A local escalation receiver that records every JSON body posted to `/hook`.
async fn escalation_receiver() -> (String, Posts) {
    let posts: Posts = Arc::default();
    let seen = posts.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().expect("lock").push(v);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), posts)
}

fn console() -> WorkloadRef {
    WorkloadRef::new(WorkloadKind::Deployment, "catalyst-system", "console")
}

/// A webhook acting on a fake cluster where `console` runs 3 replicas, verified by
/// `answer`, escalating to a local receiver, with evidence in `evidence`.
async fn loop_server(
    dry_run: bool,
    answer: QueryValue,
    evidence: &std::path::Path,
) -> (String, Arc<FakeWorkloads>, Posts) {
    let fake = FakeWorkloads::new().with_replicas(&console(), 3);
    loop_server_on(fake, dry_run, answer, evidence).await
}

/// [`loop_server`] on the given fake cluster.
async fn loop_server_on(
    fake: FakeWorkloads,
    dry_run: bool,
    answer: QueryValue,
    evidence: &std::path::Path,
) -> (String, Arc<FakeWorkloads>, Posts) {
    let fake = Arc::new(fake);
    let (hook, received) = escalation_receiver().await;
    let clock = ManualClock::at_epoch();
    let ports = Ports {
        clock: Arc::new(clock.clone()),
        verifier: Some(Verifier {
            query: Arc::new(Always(answer)),
            sleeper: Arc::new(Advance(clock)),
            interval: Duration::from_secs(10),
        }),
        executors: Executors {
            workloads: Some(fake.clone()),
            notifier: Some(Arc::new(
                HttpNotifier::new(&hook, Duration::from_secs(5)).expect("notifier"),
            )),
            ..Executors::default()
        },
        evidence: Some(Arc::new(
            FileEvidenceLog::open(evidence).expect("evidence log"),
        )),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    (serve_with(listener, TOKEN, dry_run, ports), fake, received)
}

fn evidence_actions(path: &std::path::Path) -> Vec<String> {
    let records = FileEvidenceLog::read_records(path).expect("a valid chain");
    sre_core::evidence::verify(&records).expect("verifies");
    records.into_iter().map(|r| r.action).collect()
}

async fn metrics_text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firing_high_memory_alert_scales_up_and_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ev = dir.path().join("evidence.jsonl");
    let (base, fake, posts) = loop_server(false, QueryValue::Vector(Vec::new()), &ev).await;

    let run = deliver(&base, fixture("firing-high-memory.json")).await;
    let entry = &run["plan"][0];
    assert_eq!(entry["execution"]["result"], "executed", "{entry}");
    assert_eq!(entry["execution"]["outcome"]["before"], "replicas=3");
    assert_eq!(entry["execution"]["outcome"]["after"], "replicas=4");
    assert_eq!(entry["execution"]["call"]["call"], "scale", "{entry}");
    assert_eq!(entry["verification"]["result"], "holds", "{entry}");
    assert!(entry.get("rollback_result").is_none(), "{entry}");
    assert!(entry.get("escalation").is_none(), "{entry}");
    assert_eq!(fake.replicas(&console()), Some(4));
    assert_eq!(
        fake.writes(),
        ["scale Deployment catalyst-system/console 4"]
    );
    assert!(posts.lock().expect("lock").is_empty(), "nothing escalated");
    assert_eq!(
        evidence_actions(&ev),
        [
            "remediation.plan",
            "remediation.execute",
            "remediation.verify"
        ]
    );
    let metrics = metrics_text(&base).await;
    for line in [
        r#"sre_remediation_executions_total{result="executed"} 1"#,
        r#"sre_remediation_verifications_total{result="holds"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert!(
        !metrics.contains("sre_remediation_escalations_total{"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_that_never_holds_rolls_back_and_escalates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ev = dir.path().join("evidence.jsonl");
    let still_high = QueryValue::Vector(vec![Sample {
        labels: std::collections::BTreeMap::new(),
        value: 0.97,
    }]);
    let (base, fake, posts) = loop_server(false, still_high, &ev).await;

    let run = deliver(&base, fixture("firing-high-memory.json")).await;
    let entry = &run["plan"][0];
    assert_eq!(entry["execution"]["result"], "executed", "{entry}");
    assert_eq!(entry["verification"]["result"], "timed_out", "{entry}");
    assert_eq!(entry["rollback_result"]["result"], "done", "{entry}");
    assert_eq!(
        entry["rollback_result"]["outcome"]["after"], "replicas=3",
        "{entry}"
    );
    assert_eq!(entry["escalation"]["to"], "sre-oncall", "{entry}");
    assert_eq!(entry["escalation"]["reason"], "not_helped", "{entry}");
    assert_eq!(
        entry["escalation"]["notification"]["result"], "done",
        "{entry}"
    );
    assert_eq!(fake.replicas(&console()), Some(3), "scaled back");
    assert_eq!(
        fake.writes(),
        [
            "scale Deployment catalyst-system/console 4",
            "scale Deployment catalyst-system/console 3"
        ]
    );
    let posts = posts.lock().expect("lock").clone();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(posts[0]["source"], "sre-remediation");
    assert_eq!(posts[0]["channel"], "sre-oncall");
    let text = posts[0]["text"].as_str().unwrap_or_default();
    for part in [
        "HighMemoryUsage",
        "4877162fa439cb7f",
        "deployment/catalyst-system/console",
        "scale_up did not help (verification timed out)",
        "rollback done",
    ] {
        assert!(text.contains(part), "{part:?} missing from {text}");
    }
    assert_eq!(
        evidence_actions(&ev),
        [
            "remediation.plan",
            "remediation.execute",
            "remediation.verify",
            "remediation.rollback",
            "remediation.escalate"
        ]
    );
    let metrics = metrics_text(&base).await;
    for line in [
        r#"sre_remediation_verifications_total{result="timed_out"} 1"#,
        r#"sre_remediation_rollbacks_total{result="done"} 1"#,
        r#"sre_remediation_escalations_total{reason="not_helped"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_validates_through_the_executor_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ev = dir.path().join("evidence.jsonl");
    let (base, fake, posts) = loop_server(true, QueryValue::Vector(Vec::new()), &ev).await;

    let run = deliver(&base, fixture("firing-high-memory.json")).await;
    assert_eq!(run["dry_run"], true);
    let entry = &run["plan"][0];
    assert_eq!(entry["execution"]["result"], "dry_run", "{entry}");
    assert_eq!(
        entry["execution"]["outcome"],
        json!({"changed": true, "dry_run": true, "before": "replicas=3", "after": "replicas=4",
               "detail": "dry run: scaled Deployment catalyst-system/console from 3 to 4"}),
        "{entry}"
    );
    assert!(
        entry.get("verification").is_none(),
        "nothing persisted, nothing verified"
    );
    assert_eq!(fake.replicas(&console()), Some(3));
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
    assert!(posts.lock().expect("lock").is_empty());
    assert_eq!(
        evidence_actions(&ev),
        ["remediation.plan", "remediation.execute"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_executor_is_escalated_and_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ev = dir.path().join("evidence.jsonl");
    let forbidden = PortError::Rejected {
        backend: "kubernetes",
        message: "deployments.apps \"console\" is forbidden".into(),
    };
    let fake = FakeWorkloads::new()
        .with_replicas(&console(), 3)
        .failing(&console(), forbidden);
    let (base, fake, posts) =
        loop_server_on(fake, false, QueryValue::Vector(Vec::new()), &ev).await;

    let run = deliver(&base, fixture("firing-high-memory.json")).await;
    let entry = &run["plan"][0];
    assert_eq!(entry["execution"]["result"], "failed", "{entry}");
    assert!(
        entry["execution"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("forbidden")),
        "{entry}"
    );
    assert!(entry.get("verification").is_none(), "{entry}");
    assert_eq!(entry["escalation"]["reason"], "execution_failed", "{entry}");
    assert!(fake.writes().is_empty());
    let posts = posts.lock().expect("lock").clone();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(
        posts[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("scale_up failed") && t.contains("forbidden")),
        "{posts:?}"
    );
    assert_eq!(
        evidence_actions(&ev),
        [
            "remediation.plan",
            "remediation.execute",
            "remediation.escalate"
        ]
    );
    let metrics = metrics_text(&base).await;
    assert!(
        metrics.contains(r#"sre_remediation_escalations_total{reason="execution_failed"} 1"#),
        "{metrics}"
    );
}

/// `executors: kube` without any cluster configuration: a clear message and exit 69,
/// before the webhook listens.
#[test]
fn kube_executors_without_a_cluster_exit_69() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("webhook.yaml");
    std::fs::write(&config, "listen: 127.0.0.1:0\nexecutors: kube\n").expect("config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_remediation-webhook"))
        .arg("--config")
        .arg(&config)
        .arg("--text-logs")
        .env("SRE_REMEDIATION_TOKEN", TOKEN)
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .expect("run the binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(69), "{text}");
    // The wording names what needs the cluster (`executors: kube`, and cluster Runbooks
    // when configured): match the parts that must be there, not the whole sentence.
    assert!(
        text.contains("executors: kube")
            && text.contains("need")
            && text.contains("a Kubernetes API server"),
        "{text}"
    );
}

/// What the fake Gitea received: path, `Authorization` header, JSON body.
type GiteaCalls = Arc<Mutex<Vec<(String, String, Value)>>>;

/// A local stand-in for Gitea's `workflow_dispatch` endpoint that checks each request
/// against the documented API (`POST /api/v1/repos/{owner}/{repo}/actions/workflows/
/// {workflow_id}/dispatches`, `Authorization: token <t>`, body `CreateActionWorkflowDispatch`
/// with a string `ref` and string-valued `inputs`) and answers like Gitea: 204, or 401/422.
async fn fake_gitea(token: &'static str) -> (String, GiteaCalls) {
    let calls: GiteaCalls = Arc::default();
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/api/v1/repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches",
        axum::routing::post(
            move |uri: axum::http::Uri,
                  headers: axum::http::HeaderMap,
                  axum::Json(body): axum::Json<Value>| {
                let seen = seen.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    seen.lock().expect("lock").push((
                        uri.path().to_owned(),
                        auth.clone(),
                        body.clone(),
                    ));
                    if auth != format!("token {token}") {
                        return axum::http::StatusCode::UNAUTHORIZED;
                    }
                    let ref_ok = body["ref"].as_str().is_some_and(|r| !r.is_empty());
                    let inputs_ok = body["inputs"]
                        .as_object()
                        .is_some_and(|m| m.values().all(Value::is_string));
                    if ref_ok && inputs_ok {
                        axum::http::StatusCode::NO_CONTENT
                    } else {
                        axum::http::StatusCode::UNPROCESSABLE_ENTITY
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runbook_routes_an_alert_to_a_gitea_workflow_dispatch() {
    use remediation_webhook::gitea::GiteaDispatcher;
    use sre_remediation::runbook::Runbook;
    let (gitea, calls) = fake_gitea("gitea-secret").await;
    let builtin = RuleSet::builtin().expect("built-in rules are valid");
    let runbook = Runbook::parse(
        "gitops.yaml",
        "apiVersion: catalyst.openova.io/v1alpha1
kind: Runbook
metadata: {name: memory-gitops, namespace: catalyst-system}
spec:
  triggers: [{alertName: HighMemoryUsage}]
  steps:
    - action: {kind: dispatch_workflow, repo: 'acme/${namespace}-ops', workflow: scale.yml, ref: main}
  rollback: page-platform
",
        &builtin,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let clock = ManualClock::at_epoch();
    let ports = Ports {
        clock: Arc::new(clock.clone()),
        verifier: Some(Verifier {
            query: Arc::new(Always(QueryValue::Vector(Vec::new()))),
            sleeper: Arc::new(Advance(clock)),
            interval: Duration::from_secs(10),
        }),
        executors: Executors {
            workflows: Some(Arc::new(
                GiteaDispatcher::new(&gitea, "gitea-secret", Duration::from_secs(5))
                    .expect("dispatcher"),
            )),
            ..Executors::default()
        },
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
        builtin.overridden_by(runbook.rules()),
        sre_core::telemetry::metrics_registry(),
        ports,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = start(state);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let run = deliver(&base, fixture("firing-high-memory.json")).await;
    let entry = &run["plan"][0];
    assert_eq!(
        entry["rule"], "runbook/catalyst-system/memory-gitops",
        "{entry}"
    );
    assert_eq!(entry["execution"]["result"], "executed", "{entry}");
    assert_eq!(entry["verification"]["result"], "holds", "{entry}");
    let calls = calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let (path, auth, body) = &calls[0];
    assert_eq!(
        path,
        "/api/v1/repos/acme/catalyst-system-ops/actions/workflows/scale.yml/dispatches"
    );
    assert_eq!(auth, "token gitea-secret");
    assert_eq!(body["ref"], "main");
    assert_eq!(body["inputs"]["alertname"], "HighMemoryUsage", "{body}");
    assert_eq!(body["inputs"]["deployment"], "console", "{body}");
    assert_eq!(body["inputs"]["namespace"], "catalyst-system", "{body}");

    // A wrong token is Gitea's 401: a refusal, recorded as a failed execution.
    let bad = GiteaDispatcher::new(&gitea, "wrong", Duration::from_secs(5)).expect("dispatcher");
    let err = sre_remediation::actions::WorkflowDispatch::dispatch(
        &bad,
        "acme",
        "ops",
        "scale.yml",
        "main",
        &std::collections::BTreeMap::new(),
        sre_remediation::actions::Mode::Apply,
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, PortError::Rejected { .. }), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
}
