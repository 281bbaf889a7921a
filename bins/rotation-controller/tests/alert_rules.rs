//! The shipped alerting rules (`deploy/prometheus/rotation-rules.yaml`) evaluated by the
//! real Prometheus rule engine (`promtool test rules`, installed with Prometheus by
//! `cargo xtask test`), and checked against the metric families this controller really
//! registers, so that a renamed metric cannot leave an alert that never fires.

use std::path::PathBuf;
use std::process::Command;

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus")
}

/// `promtool` next to the Prometheus the test servers use, else from `PATH`.
fn promtool() -> PathBuf {
    std::env::var_os("SRE_TEST_PROMTOOL_BIN")
        .map_or_else(|| PathBuf::from("promtool"), PathBuf::from)
}

#[test]
fn the_rules_fire_as_their_unit_tests_say_on_prometheus_own_engine() {
    let out = Command::new(promtool())
        .current_dir(rules_dir())
        .args(["test", "rules", "rotation-rules.test.yaml"])
        .output()
        .expect("promtool (Debian package prometheus, installed by cargo xtask test)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool test rules failed:\n{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn every_metric_the_rules_use_is_registered_by_the_controller() {
    let rules = std::fs::read_to_string(rules_dir().join("rotation-rules.yaml")).expect("rules");
    let mut reg = sre_core::telemetry::metrics_registry();
    let m = rotation_controller::metrics::RotationMetrics::register(&mut reg);
    // One sample in every family (an empty family is not rendered).
    let now = chrono::Utc::now();
    let secret = sre_rotation::ManagedSecret {
        name: "db".into(),
        class: sre_rotation::SecretClass::DynamicDb,
        path: "apps/db".into(),
        cadence: sre_rotation::model::Cadence::MaxAge(std::time::Duration::from_hours(1)),
        overlap: std::time::Duration::from_mins(5),
        owner: "o".into(),
        consumers: vec![],
        approval: sre_rotation::model::ApprovalPolicy::NotRequired,
    };
    m.observe(&sre_rotation::status::row(
        &secret,
        &sre_rotation::RotationState::new(),
        None,
        now,
    ));
    m.observe_certificate(
        "tls",
        &Err("unreadable".into()),
        std::time::Duration::from_hours(1),
        now,
    );
    m.attempt("db", "rotated");
    m.lease_remaining("db", "current", std::time::Duration::from_hours(1));
    m.lease_renewal("db", "ok");
    m.observe_consumers("db", rotation_controller::consumers::ConsumerStatus::Failed);
    m.refreshes("deployment", "ok", 1);
    let text = sre_core::telemetry::render_metrics(&reg).expect("render");
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut used: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("sre_rotation_"))
        .collect();
    used.sort_unstable();
    used.dedup();
    assert!(
        used.len() >= 6,
        "the rules use the controller's metrics: {used:?}"
    );
    for m in used {
        let family = m.strip_suffix("_total").unwrap_or(m);
        assert!(
            families.contains(&family),
            "{m} is not a metric of rotation-controller; families: {families:?}"
        );
    }
}
