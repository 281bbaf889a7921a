//! Per-secret rotation metrics for the "Secret Rotation" dashboard. Labels are the
//! secret's inventory name (bounded by the config) and, for results, one of
//! `sre_rotation::status::RESULT_LABELS`; never versions, paths or ids.

use crate::consumers::ConsumerStatus;
use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sre_core::telemetry::Registry;
use sre_rotation::expiry::{ExpiryStatus, Validity, expiry_report};
use std::time::Duration;

/// The `status` of a certificate whose source could not be read this tick.
const UNREADABLE: &str = "unreadable";
/// Every `status` label of `certificate_expiry_status`, for the one-hot gauge.
const CERT_STATUS_LABELS: [&str; 4] = [
    ExpiryStatus::Ok.label(),
    ExpiryStatus::Warn.label(),
    ExpiryStatus::Expired.label(),
    UNREADABLE,
];
use sre_rotation::status::{RESULT_LABELS, StatusRow};

type Labels = Vec<(String, String)>;

/// The metric families, registered as `sre_rotation_*`.
#[derive(Debug, Clone, Default)]
pub struct RotationMetrics {
    age: Family<Labels, Gauge>,
    next: Family<Labels, Gauge>,
    current: Family<Labels, Gauge>,
    last_result: Family<Labels, Gauge>,
    readable: Family<Labels, Gauge>,
    awaiting_approval: Family<Labels, Gauge>,
    attempts: Family<Labels, Counter>,
    expiry: Family<Labels, Gauge>,
    expiry_status: Family<Labels, Gauge>,
    consumers: Family<Labels, Gauge>,
    refreshes: Family<Labels, Counter>,
    lease_remaining: Family<Labels, Gauge>,
    lease_renewals: Family<Labels, Counter>,
    engine_configured: Family<Labels, Gauge>,
    engine_setups: Family<Labels, Counter>,
}

/// The `result` labels of `sre_rotation_lease_renewals_total`: extended by the whole
/// increment, extended only up to the role's `max_ttl`, lease no longer exists, the
/// renewal could not be made.
pub const LEASE_RESULTS: [&str; 4] = ["ok", "capped", "gone", "failed"];

fn secret_version(name: &str, version: &str) -> Labels {
    vec![
        ("secret".to_owned(), name.to_owned()),
        ("version".to_owned(), version.to_owned()),
    ]
}

fn secret_status(name: &str, status: &str) -> Labels {
    vec![
        ("secret".to_owned(), name.to_owned()),
        ("status".to_owned(), status.to_owned()),
    ]
}

fn secret(name: &str) -> Labels {
    vec![("secret".to_owned(), name.to_owned())]
}

fn secret_result(name: &str, result: &str) -> Labels {
    vec![
        ("secret".to_owned(), name.to_owned()),
        ("result".to_owned(), result.to_owned()),
    ]
}

impl RotationMetrics {
    /// Registers every family under `rotation_` in `registry` (prefixed `sre_`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let sub = registry.sub_registry_with_prefix("rotation");
        sub.register(
            "secret_age_seconds",
            "Seconds since the current version was promoted",
            m.age.clone(),
        );
        sub.register(
            "next_rotation_timestamp_seconds",
            "Unix time at which the next rotation is due",
            m.next.clone(),
        );
        sub.register(
            "current_version",
            "KV version consumers should use",
            m.current.clone(),
        );
        sub.register(
            "last_result",
            "1 for the result of the last rotation attempt (none, rotated, aborted, failed)",
            m.last_result.clone(),
        );
        sub.register(
            "state_readable",
            "1 when the rotation state could be read from OpenBao",
            m.readable.clone(),
        );
        sub.register(
            "awaiting_approval",
            "1 while a rotation waits for an open approval request",
            m.awaiting_approval.clone(),
        );
        sub.register(
            "attempts",
            "Rotation attempts finished by this process, by result",
            m.attempts.clone(),
        );
        sub.register(
            "certificate_expiry_timestamp_seconds",
            "Unix time at which an observed certificate (svid, tls) expires",
            m.expiry.clone(),
        );
        sub.register(
            "certificate_expiry_status",
            "1 for where an observed certificate stands (ok, warn, expired, unreadable)",
            m.expiry_status.clone(),
        );
        sub.register(
            "consumers_status",
            "1 for where the consumers of the current version stand (none, refreshed, pending, \
             failed, no_kube_client)",
            m.consumers.clone(),
        );
        sub.register(
            "consumer_refreshes",
            "Consumer refresh calls (ESO force-sync, Reloader-compatible rollout) by kind and result",
            m.refreshes.clone(),
        );
        sub.register(
            "lease_remaining_seconds",
            "Seconds left on the lease of a live minted credential (version current or previous), \
             as of its last renewal",
            m.lease_remaining.clone(),
        );
        sub.register(
            "lease_renewals",
            "Lease renewals of live minted credentials by result (ok, capped at max_ttl, gone, \
             failed)",
            m.lease_renewals.clone(),
        );
        sub.register(
            "engine_configured",
            "1 once the database engine of a secret's engine block is configured; 0 while it \
             is not (the secret is not rotated)",
            m.engine_configured.clone(),
        );
        sub.register(
            "engine_setups",
            "Attempts to configure a secret's database engine, by result (ok, failed)",
            m.engine_setups.clone(),
        );
        m
    }

    /// Records one attempt to configure `secret`'s database engine.
    pub fn engine_setup(&self, secret_name: &str, ok: bool) {
        self.engine_configured
            .get_or_create(&secret(secret_name))
            .set(i64::from(ok));
        self.engine_setups
            .get_or_create(&secret_result(
                secret_name,
                if ok { "ok" } else { "failed" },
            ))
            .inc();
    }

    /// Sets the time left on the lease of `secret`'s `version` (`current`/`previous`).
    pub fn lease_remaining(&self, secret: &str, version: &'static str, left: std::time::Duration) {
        self.lease_remaining
            .get_or_create(&secret_version(secret, version))
            .set(i64::try_from(left.as_secs()).unwrap_or(i64::MAX));
    }

    /// Drops the lease gauge of a version that is no longer live (the previous one after
    /// retirement), so a dead credential does not look like it is running out.
    pub fn forget_lease(&self, secret: &str, version: &'static str) {
        self.lease_remaining
            .remove(&secret_version(secret, version));
    }

    /// Counts one lease renewal; `result` is one of [`LEASE_RESULTS`].
    pub fn lease_renewal(&self, secret: &str, result: &'static str) {
        self.lease_renewals
            .get_or_create(&secret_result(secret, result))
            .inc();
    }

    /// Sets the one-hot consumer status of a secret (`no_kube_client` says plainly that
    /// nobody refreshes its consumers).
    pub fn observe_consumers(&self, name: &str, status: ConsumerStatus) {
        for s in ConsumerStatus::ALL {
            self.consumers
                .get_or_create(&secret_status(name, s.label()))
                .set(i64::from(s == status));
        }
    }

    /// Counts refresh calls: `kind` is `deployment` or `externalsecret`, `result` is
    /// `ok` or `failed`.
    pub fn refreshes(&self, kind: &'static str, result: &'static str, n: usize) {
        let labels = vec![
            ("kind".to_owned(), kind.to_owned()),
            ("result".to_owned(), result.to_owned()),
        ];
        self.refreshes
            .get_or_create(&labels)
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Sets the age and expiry gauges of an observe-only secret from what its source
    /// said this tick (SPIRE, cert-manager rotate it; the alert rules fire on
    /// `status="warn"`, `"expired"` or `"unreadable"`). An unreadable source removes the
    /// expiry and age rather than leave a stale date that looks healthy. Call after
    /// [`observe`](Self::observe), which knows no age for these classes.
    pub fn observe_certificate(
        &self,
        name: &str,
        observed: &Result<Validity, String>,
        alert_before: Duration,
        now: DateTime<Utc>,
    ) {
        let l = secret(name);
        let status = if let Ok(v) = observed {
            self.expiry.get_or_create(&l).set(v.not_after.timestamp());
            if let Some(age) = v.not_before.and_then(|nb| (now - nb).to_std().ok()) {
                self.age
                    .get_or_create(&l)
                    .set(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
            } else {
                self.age.remove(&l);
            }
            expiry_report(now, v.not_after, alert_before).label()
        } else {
            self.expiry.remove(&l);
            self.age.remove(&l);
            UNREADABLE
        };
        for s in CERT_STATUS_LABELS {
            self.expiry_status
                .get_or_create(&secret_status(name, s))
                .set(i64::from(s == status));
        }
    }

    /// Sets the gauges of one secret from its status row.
    pub fn observe(&self, row: &StatusRow) {
        let name = row.name.as_str();
        let l = secret(name);
        self.readable
            .get_or_create(&l)
            .set(i64::from(row.error.is_none()));
        if row.error.is_some() {
            return;
        }
        match row.age {
            Some(a) => {
                self.age
                    .get_or_create(&l)
                    .set(i64::try_from(a.as_secs()).unwrap_or(i64::MAX));
            }
            None => {
                self.age.remove(&l);
            }
        }
        match row.next_rotation {
            Some(t) => {
                self.next.get_or_create(&l).set(t.timestamp());
            }
            None => {
                self.next.remove(&l);
            }
        }
        self.current
            .get_or_create(&l)
            .set(row.current.and_then(|v| i64::try_from(v).ok()).unwrap_or(0));
        for r in RESULT_LABELS {
            self.last_result
                .get_or_create(&secret_result(name, r))
                .set(i64::from(r == row.last_result));
        }
        self.awaiting_approval
            .get_or_create(&l)
            .set(i64::from(row.approval.is_some()));
    }

    /// Counts a finished attempt (`rotated`, `aborted` or `failed`).
    pub fn attempt(&self, secret_name: &str, result: &'static str) {
        self.attempts
            .get_or_create(&secret_result(secret_name, result))
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sre_rotation::SecretClass;
    use sre_rotation::status::unavailable_row;
    use std::time::Duration;

    fn row() -> StatusRow {
        StatusRow {
            name: "billing-db".into(),
            class: SecretClass::DynamicDb,
            current: Some(3),
            previous: None,
            pending: None,
            age: Some(Duration::from_secs(42)),
            next_rotation: chrono::DateTime::from_timestamp(1_767_229_200, 0),
            last_result: "rotated",
            last_message: None,
            approval: None,
            error: None,
            certificate: None,
        }
    }

    #[test]
    fn a_row_becomes_per_secret_samples_with_bounded_labels() {
        let mut reg = sre_core::telemetry::metrics_registry();
        let m = RotationMetrics::register(&mut reg);
        m.observe(&row());
        m.attempt("billing-db", "rotated");
        let text = sre_core::telemetry::render_metrics(&reg).unwrap_or_default();
        for line in [
            "sre_rotation_secret_age_seconds{secret=\"billing-db\"} 42",
            "sre_rotation_next_rotation_timestamp_seconds{secret=\"billing-db\"} 1767229200",
            "sre_rotation_current_version{secret=\"billing-db\"} 3",
            "sre_rotation_last_result{secret=\"billing-db\",result=\"rotated\"} 1",
            "sre_rotation_last_result{secret=\"billing-db\",result=\"failed\"} 0",
            "sre_rotation_state_readable{secret=\"billing-db\"} 1",
            "sre_rotation_attempts_total{secret=\"billing-db\",result=\"rotated\"} 1",
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
    }

    #[test]
    fn certificates_export_expiry_age_and_the_alert_status() {
        let mut reg = sre_core::telemetry::metrics_registry();
        let m = RotationMetrics::register(&mut reg);
        let t = |s: i64| chrono::DateTime::from_timestamp(1_767_225_600 + s, 0).unwrap_or_default();
        let cert = Ok(Validity {
            not_after: t(1000),
            not_before: Some(t(0)),
        });
        let lead = Duration::from_secs(100);
        m.observe_certificate("ingress", &cert, lead, t(950));
        let text = sre_core::telemetry::render_metrics(&reg).unwrap_or_default();
        for line in [
            "sre_rotation_certificate_expiry_timestamp_seconds{secret=\"ingress\"} 1767226600",
            "sre_rotation_secret_age_seconds{secret=\"ingress\"} 950",
            "sre_rotation_certificate_expiry_status{secret=\"ingress\",status=\"warn\"} 1",
            "sre_rotation_certificate_expiry_status{secret=\"ingress\",status=\"ok\"} 0",
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
        m.observe_certificate("ingress", &cert, lead, t(1000));
        let text = sre_core::telemetry::render_metrics(&reg).unwrap_or_default();
        assert!(text.contains(
            "sre_rotation_certificate_expiry_status{secret=\"ingress\",status=\"expired\"} 1"
        ));
        // The source cannot be read any more: no stale date, and the status says so.
        m.observe_certificate("ingress", &Err("gone".into()), lead, t(1001));
        let text = sre_core::telemetry::render_metrics(&reg).unwrap_or_default();
        assert!(text.contains(
            "sre_rotation_certificate_expiry_status{secret=\"ingress\",status=\"unreadable\"} 1"
        ));
        assert!(text.contains(
            "sre_rotation_certificate_expiry_status{secret=\"ingress\",status=\"expired\"} 0"
        ));
        assert!(
            !text.contains("sre_rotation_certificate_expiry_timestamp_seconds{"),
            "{text}"
        );
        assert!(
            !text.contains("sre_rotation_secret_age_seconds{secret=\"ingress\"}"),
            "{text}"
        );
    }

    #[test]
    fn an_unreadable_state_keeps_the_last_values_and_says_so() {
        let mut reg = sre_core::telemetry::metrics_registry();
        let m = RotationMetrics::register(&mut reg);
        m.observe(&row());
        let mut down = unavailable_row(
            &sre_rotation::ManagedSecret {
                name: "billing-db".into(),
                class: SecretClass::DynamicDb,
                path: "p".into(),
                cadence: sre_rotation::model::Cadence::Never,
                overlap: Duration::ZERO,
                owner: "o".into(),
                consumers: vec![],
                approval: sre_rotation::model::ApprovalPolicy::NotRequired,
            },
            "sealed".into(),
        );
        down.name = "billing-db".into();
        m.observe(&down);
        let text = sre_core::telemetry::render_metrics(&reg).unwrap_or_default();
        assert!(
            text.contains("sre_rotation_state_readable{secret=\"billing-db\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("sre_rotation_current_version{secret=\"billing-db\"} 3"),
            "{text}"
        );
    }
}
