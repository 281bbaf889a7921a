//! The timing lint: rejects configs whose timings cannot be safe, before a controller or a
//! drill starts (both exit 64 with every violation listed).
//!
//! Validation ([`crate::model::RawFailoverConfig::validate`]) asks "does this parse and
//! make sense"; the lint asks "can the safety argument in the README hold with these
//! numbers". They are separate so that the simulator can deliberately run unsafe timings.

use crate::model::FailoverConfig;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// One timing rule a config breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "rule")]
#[non_exhaustive]
pub enum TimingViolation {
    /// The holder cannot fit `retries + 1` renewal attempts before it must self-fence,
    /// so one lost renewal fences a healthy active (renew x (retries+1) + skew >= TTL).
    RenewalsDoNotFit {
        /// renew interval x (retries + 1) + skew margin.
        needed: Duration,
        /// The TTL.
        ttl: Duration,
    },
    /// A skew margin of half the TTL or more leaves the holder no time to act between
    /// renewals and self-fencing.
    SkewTooLarge {
        /// The margin.
        skew_margin: Duration,
        /// The TTL.
        ttl: Duration,
    },
    /// A zero skew margin means the holder stops exactly when others may start: any
    /// clock-rate difference or message delay overlaps them.
    NoSkewMargin,
    /// A DNS check longer than the renew interval means the active cannot look at the
    /// quorum once per interval, and the standby's confirm window no longer covers it.
    DnsTimeoutTooLong {
        /// The DNS timeout.
        dns_timeout: Duration,
        /// The renew interval.
        renew_interval: Duration,
    },
    /// A witness call longer than the renew interval overlaps the next renewal.
    WitnessTimeoutTooLong {
        /// The witness timeout.
        witness_timeout: Duration,
        /// The renew interval.
        renew_interval: Duration,
    },
    /// A renewal interval at or above the TTL lets the lease lapse between renewals.
    RenewNotBelowTtl {
        /// The renew interval.
        renew_interval: Duration,
        /// The TTL.
        ttl: Duration,
    },
}

impl TimingViolation {
    /// Stable name for metrics and JSON.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::RenewalsDoNotFit { .. } => "renewals-do-not-fit",
            Self::SkewTooLarge { .. } => "skew-too-large",
            Self::NoSkewMargin => "no-skew-margin",
            Self::DnsTimeoutTooLong { .. } => "dns-timeout-too-long",
            Self::WitnessTimeoutTooLong { .. } => "witness-timeout-too-long",
            Self::RenewNotBelowTtl { .. } => "renew-not-below-ttl",
        }
    }
}

impl fmt::Display for TimingViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = |d: &Duration| humantime::format_duration(*d).to_string();
        match self {
            Self::RenewalsDoNotFit { needed, ttl } => write!(
                f,
                "renew_interval x (retries + 1) + skew_margin = {} must be below lease_ttl = {}",
                h(needed),
                h(ttl)
            ),
            Self::SkewTooLarge { skew_margin, ttl } => write!(
                f,
                "skew_margin = {} must be below half of lease_ttl = {}",
                h(skew_margin),
                h(ttl)
            ),
            Self::NoSkewMargin => f.write_str("skew_margin must be greater than zero"),
            Self::DnsTimeoutTooLong {
                dns_timeout,
                renew_interval,
            } => write!(
                f,
                "dns_timeout = {} must not exceed renew_interval = {}",
                h(dns_timeout),
                h(renew_interval)
            ),
            Self::WitnessTimeoutTooLong {
                witness_timeout,
                renew_interval,
            } => write!(
                f,
                "witness_timeout = {} must not exceed renew_interval = {}",
                h(witness_timeout),
                h(renew_interval)
            ),
            Self::RenewNotBelowTtl {
                renew_interval,
                ttl,
            } => write!(
                f,
                "renew_interval = {} must be below lease_ttl = {}",
                h(renew_interval),
                h(ttl)
            ),
        }
    }
}

/// Every timing rule `config` breaks; empty when the timings are safe.
#[must_use]
pub fn check(config: &FailoverConfig) -> Vec<TimingViolation> {
    let t = &config.timings;
    let mut out = Vec::new();
    if t.renew_interval >= t.lease_ttl {
        out.push(TimingViolation::RenewNotBelowTtl {
            renew_interval: t.renew_interval,
            ttl: t.lease_ttl,
        });
    }
    let needed = t
        .renew_interval
        .saturating_mul(t.retries.saturating_add(1))
        .saturating_add(t.skew_margin);
    if needed >= t.lease_ttl {
        out.push(TimingViolation::RenewalsDoNotFit {
            needed,
            ttl: t.lease_ttl,
        });
    }
    if t.skew_margin.is_zero() {
        out.push(TimingViolation::NoSkewMargin);
    } else if t.skew_margin.saturating_mul(2) >= t.lease_ttl {
        out.push(TimingViolation::SkewTooLarge {
            skew_margin: t.skew_margin,
            ttl: t.lease_ttl,
        });
    }
    if t.dns_timeout > t.renew_interval {
        out.push(TimingViolation::DnsTimeoutTooLong {
            dns_timeout: t.dns_timeout,
            renew_interval: t.renew_interval,
        });
    }
    if t.witness_timeout > t.renew_interval {
        out.push(TimingViolation::WitnessTimeoutTooLong {
            witness_timeout: t.witness_timeout,
            renew_interval: t.renew_interval,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Mode, Quorum, Timings, WitnessLossPolicy};
    use sre_core::RegionId;

    fn cfg(t: Timings) -> FailoverConfig {
        FailoverConfig {
            regions: vec![RegionId::from("a"), RegionId::from("b")],
            this_region: RegionId::from("a"),
            timings: t,
            mode: Mode::Automatic,
            witness_loss: WitnessLossPolicy::DnsQuorum,
            quorum: Quorum::TWO_OF_THREE,
        }
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    type Case = (&'static str, fn(&mut Timings), &'static [&'static str]);

    #[test]
    fn table() {
        let base = Timings::handbook();
        // (name, change, expected rule kinds)
        let cases: &[Case] = &[
            ("handbook is safe", |_| {}, &[]),
            (
                "two retries do not fit",
                |t| t.retries = 2,
                &["renewals-do-not-fit"],
            ),
            (
                "exactly TTL is not enough",
                |t| t.skew_margin = s(10),
                &["renewals-do-not-fit"],
            ),
            (
                "skew at half TTL",
                |t| {
                    t.lease_ttl = s(60);
                    t.skew_margin = s(30);
                },
                &["skew-too-large"],
            ),
            (
                "no skew margin",
                |t| t.skew_margin = Duration::ZERO,
                &["no-skew-margin"],
            ),
            (
                "dns timeout beyond renew",
                |t| t.dns_timeout = s(11),
                &["dns-timeout-too-long"],
            ),
            (
                "dns timeout equal to renew is fine",
                |t| t.dns_timeout = s(10),
                &[],
            ),
            (
                "witness timeout beyond renew",
                |t| t.witness_timeout = s(12),
                &["witness-timeout-too-long"],
            ),
            (
                "renew at TTL",
                |t| t.renew_interval = s(30),
                &["renew-not-below-ttl", "renewals-do-not-fit"],
            ),
            (
                "zero retries with renew 20s",
                |t| {
                    t.retries = 0;
                    t.renew_interval = s(20);
                },
                &[],
            ),
        ];
        for (name, change, want) in cases {
            let mut t = base;
            change(&mut t);
            let got: Vec<&str> = check(&cfg(t)).iter().map(TimingViolation::kind).collect();
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn messages_name_the_fields_and_numbers() {
        let mut t = Timings::handbook();
        t.retries = 2;
        let v = check(&cfg(t));
        assert_eq!(
            v[0].to_string(),
            "renew_interval x (retries + 1) + skew_margin = 35s must be below lease_ttl = 30s"
        );
    }
}
