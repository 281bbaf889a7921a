//! Observe-only classes (SPIRE SVIDs, cert-manager certificates): another system
//! rotates them, so all this crate does is say how close each one is to its expiry and
//! when to alert. Pure, so the thresholds are tested without a clock.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// What is known of one certificate's lifetime, wherever it was read (a PEM file, a
/// cert-manager status, the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Start of validity (the issue time), when the source says it: gives the age.
    pub not_before: Option<DateTime<Utc>>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
}

impl From<&crate::x509::CertValidity> for Validity {
    fn from(v: &crate::x509::CertValidity) -> Self {
        Self {
            not_before: Some(v.not_before),
            not_after: v.not_after,
        }
    }
}

/// How close a certificate is to its `not_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryStatus {
    /// More than the alert lead time left.
    Ok,
    /// Inside the alert lead time: the rotating system should have renewed it by now.
    Warn,
    /// Past `not_after`: consumers are failing.
    Expired,
}

impl ExpiryStatus {
    /// A stable label for metrics and the status table.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Expired => "expired",
        }
    }
}

/// Where a certificate valid until `not_after` stands at `now`, alerting `alert_before`
/// ahead (cert-manager renews at two thirds of the lifetime, SPIRE at half, so a
/// certificate still old at `not_after - alert_before` means the renewer is stuck).
#[must_use]
pub fn expiry_report(
    now: DateTime<Utc>,
    not_after: DateTime<Utc>,
    alert_before: Duration,
) -> ExpiryStatus {
    if now >= not_after {
        return ExpiryStatus::Expired;
    }
    let lead = chrono::Duration::from_std(alert_before).unwrap_or(chrono::Duration::MAX);
    match not_after.checked_sub_signed(lead) {
        Some(alert_at) if now < alert_at => ExpiryStatus::Ok,
        _ => ExpiryStatus::Warn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + s, 0).unwrap_or_default()
    }

    fn check(now: i64, not_after: i64, alert_before: u64, expect: ExpiryStatus) {
        assert_eq!(
            expiry_report(t(now), t(not_after), Duration::from_secs(alert_before)),
            expect,
            "now={now} not_after={not_after} alert_before={alert_before}"
        );
    }

    #[test]
    fn thresholds_are_inclusive_at_the_alert_and_the_expiry() {
        check(0, 100, 10, ExpiryStatus::Ok);
        check(89, 100, 10, ExpiryStatus::Ok);
        check(90, 100, 10, ExpiryStatus::Warn);
        check(99, 100, 10, ExpiryStatus::Warn);
        check(100, 100, 10, ExpiryStatus::Expired);
        check(500, 100, 10, ExpiryStatus::Expired);
        check(0, 100, 0, ExpiryStatus::Ok);
        check(0, 100, u64::MAX, ExpiryStatus::Warn);
        assert_eq!(ExpiryStatus::Warn.label(), "warn");
    }
}
