//! The adapter against the real Prometheus started by `cargo xtask services up`
//! (`SRE_TEST_PROMETHEUS_URL`, which evaluates the always-firing `SreTestAlwaysFiring`
//! rule every second), and remediation's verify loop end to end over it.

use async_trait::async_trait;
use sre_adapter_prometheus::{DEFAULT_TIMEOUT, PrometheusClient};
use sre_core::testing::test_env;
use sre_core::{PortError, SystemClock};
use sre_remediation::ports::{MetricsQuery, QueryValue};
use sre_remediation::rules::{Expect, Template, VerifySpec};
use sre_remediation::verify::{self, LastSeen, Sleeper, VerifyOutcome};
use std::time::Duration;

fn client() -> PrometheusClient {
    PrometheusClient::new(&test_env("SRE_TEST_PROMETHEUS_URL"), DEFAULT_TIMEOUT).expect("client")
}

struct TokioSleeper;

#[async_trait]
impl Sleeper for TokioSleeper {
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_queries_return_typed_results() {
    let prom = client();
    let v = prom.instant("vector(1)").await.expect("query");
    let QueryValue::Vector(samples) = v else {
        panic!("vector(1) is an instant vector, got {v:?}")
    };
    assert_eq!(samples.len(), 1, "{samples:?}");
    assert!((samples[0].value - 1.0).abs() < f64::EPSILON);
    assert!(samples[0].labels.is_empty(), "{samples:?}");

    assert_eq!(
        prom.instant("vector(0) > 1").await.expect("query"),
        QueryValue::Vector(Vec::new())
    );
    assert_eq!(
        prom.instant("scalar(vector(2.5))").await.expect("query"),
        QueryValue::Scalar(2.5)
    );
    assert!(matches!(
        prom.instant("vector(1)[1m:10s]").await.expect("query"),
        QueryValue::Matrix(_)
    ));
    assert_eq!(
        prom.instant(r#""hello""#).await.expect("query"),
        QueryValue::String("hello".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_expression_is_invalid_not_retryable() {
    let err = client()
        .instant("sum(rate(up[5m]")
        .await
        .expect_err("unbalanced parentheses");
    assert!(
        matches!(&err, PortError::Invalid(m) if m.contains("bad_data")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_always_firing_alert_shows_up_in_alerts() {
    let prom = client();
    let query = r#"ALERTS{alertname="SreTestAlwaysFiring", alertstate="firing"}"#;
    let mut last = None;
    // Rules are evaluated every second; a freshly started server needs a few.
    for _ in 0..120 {
        match prom.instant(query).await {
            Ok(QueryValue::Vector(s)) if !s.is_empty() => {
                assert_eq!(
                    s[0].labels.get("severity").map(String::as_str),
                    Some("test"),
                    "{s:?}"
                );
                return;
            }
            other => last = Some(other),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("SreTestAlwaysFiring never appeared in ALERTS within 60 s; last answer {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let prom = PrometheusClient::new(&format!("http://127.0.0.1:{port}"), DEFAULT_TIMEOUT)
        .expect("client");
    let err = prom
        .instant("vector(1)")
        .await
        .expect_err("nothing listens");
    assert!(
        matches!(
            &err,
            PortError::Unavailable {
                backend: "prometheus",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());

    // Something that is not Prometheus answers: refused, not an empty result.
    let base = test_env("SRE_TEST_PROMETHEUS_URL");
    let wrong =
        PrometheusClient::new(&format!("{base}/nothing-here"), DEFAULT_TIMEOUT).expect("client");
    let err = wrong.instant("vector(1)").await.expect_err("404");
    assert!(matches!(&err, PortError::Rejected { .. }), "{err:?}");
}

fn spec(query: &str, expect: Expect, timeout: Duration) -> VerifySpec {
    VerifySpec {
        query: Template::new(query),
        expect,
        timeout,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verify_loop_over_the_real_server() {
    let prom = client();
    let clock = SystemClock::new();
    let interval = Duration::from_millis(200);

    let out = verify::until_holds(
        &prom,
        &spec("vector(1)", Expect::NonEmpty, Duration::from_secs(30)),
        &clock,
        &TokioSleeper,
        interval,
    )
    .await;
    assert!(
        matches!(out, VerifyOutcome::Holds { attempts: 1, .. }),
        "{out:?}"
    );
    let out = verify::until_holds(
        &prom,
        &spec("vector(0) > 1", Expect::Empty, Duration::from_secs(30)),
        &clock,
        &TokioSleeper,
        interval,
    )
    .await;
    assert!(
        matches!(out, VerifyOutcome::Holds { attempts: 1, .. }),
        "{out:?}"
    );

    let out = verify::until_holds(
        &prom,
        &spec("vector(0) > 1", Expect::NonEmpty, Duration::from_secs(1)),
        &clock,
        &TokioSleeper,
        interval,
    )
    .await;
    match out {
        VerifyOutcome::TimedOut { attempts, last } => {
            assert!(attempts >= 2, "asked again before giving up: {attempts}");
            assert_eq!(last, LastSeen::Series { count: 0 });
        }
        other => panic!("expected a timeout, got {other:?}"),
    }

    let out = verify::until_holds(
        &prom,
        &spec("rate(up[5m]", Expect::Empty, Duration::from_secs(30)),
        &clock,
        &TokioSleeper,
        interval,
    )
    .await;
    assert!(
        matches!(&out, VerifyOutcome::Failed { attempts: 1, reason } if reason.contains("bad_data")),
        "{out:?}"
    );
}
