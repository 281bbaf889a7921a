//! The real server on 127.0.0.1:0, in-process, fed the Alertmanager 0.25 payloads captured
//! in `shared/fixtures/alertmanager/`: auth, body limit, bad JSON, and the plans.

use remediation_webhook::config::BearerToken;
use remediation_webhook::server::{AppState, router};
use serde_json::Value;
use sre_core::ManualClock;
use sre_core::guard::{Backoff, Jitter};
use sre_remediation::plan::{BlastRadius, Policy};
use sre_remediation::rules::RuleSet;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "test-token-7f3a";

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/alertmanager")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

async fn start() -> String {
    let policy = Policy {
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
    };
    let state = AppState::new(
        BearerToken::new(TOKEN).expect("non-empty"),
        RuleSet::builtin().expect("built-in rules are valid"),
        policy,
        true,
        64 * 1024,
        Arc::new(ManualClock::at_epoch()),
        sre_core::telemetry::metrics_registry(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    tokio::spawn(async move { axum::serve(listener, router(Arc::new(state))).await });
    format!("http://{addr}")
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

#[tokio::test]
async fn webhook_plans_real_alertmanager_payloads_and_refuses_bad_requests() {
    let base = start().await;
    let firing = fixture("firing-high-memory.json");

    let (status, body) = post(&base, None, firing.clone()).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["kind"], "unauthorized");
    let (status, _) = post(&base, Some("wrong-token-7f3a"), firing.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = post(&base, Some("x"), firing.clone()).await;
    assert_eq!(status, 401, "shorter token");

    let (status, body) = post(&base, Some(TOKEN), vec![b' '; 65 * 1024]).await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = post(&base, Some(TOKEN), b"{not json".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(body["kind"], "malformed", "{body}");
    let (status, body) = post(&base, Some(TOKEN), br#"{"version":"4"}"#.to_vec()).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("missing field")),
        "{body}"
    );

    // Nothing was planned by the refused requests: the first real delivery acts.
    let (status, body) = post(&base, Some(TOKEN), firing.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(verdicts(&body), ["act:scale_up"], "{body}");
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
    assert_eq!(
        entry["execution"],
        "not executed: dry run (and no executor for scale_up)"
    );
    assert_eq!(body["dry_run"], true);

    // At-least-once delivery: the same alert again is a duplicate, not a second action.
    let (_, body) = post(&base, Some(TOKEN), firing).await;
    assert_eq!(verdicts(&body), ["skip:duplicate"], "{body}");

    let (_, body) = post(&base, Some(TOKEN), fixture("resolved-high-memory.json")).await;
    assert_eq!(verdicts(&body), ["skip:nothing_pending"], "{body}");

    // Two pods of one model: one batch-size change for the InferenceService, not two.
    let (status, body) = post(&base, Some(TOKEN), fixture("firing-vllm-oom-two-pods.json")).await;
    assert_eq!(status, 200);
    assert_eq!(
        verdicts(&body),
        ["act:reduce_batch_size", "skip:coalesced"],
        "{body}"
    );
    assert_eq!(body["plan"][0]["target"]["kind"], "inference_service");
    assert_eq!(body["plan"][0]["action"]["percent"], 50);

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
        r#"sre_remediation_requests_rejected_total{reason="unauthorized"} 3"#,
        r#"sre_remediation_requests_rejected_total{reason="too_large"} 1"#,
        r#"sre_remediation_requests_rejected_total{reason="malformed"} 2"#,
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
