//! Configuration (raw as deserialised, validated as used) and the observations that
//! [`crate::decide::decide`] consumes. Plain data: nothing here does IO or reads a clock.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sre_core::ports::{LeaseRecord, Revision, WitnessRead};
use sre_core::{PortError, RegionId};
use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU8;
use std::time::Duration;
use thiserror::Error;

/// How much a promotion needs a human: the handbook's three modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Promote as soon as the rules allow.
    Automatic,
    /// Ask for an approval and promote only once it is granted (it expires upstream).
    SemiAutomatic,
    /// Promote only on an operator command (the rules still have to allow it).
    Manual,
}

/// What a standby may do when it cannot reach the witness at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WitnessLossPolicy {
    /// Promote without the lease once the witness has been gone for TTL + skew margin and
    /// the DNS quorum has said every other region is unreachable for as long.
    DnsQuorum,
    /// Never promote without the lease; page a human instead.
    Hold,
}

/// `needed` of `of` resolvers must agree. Validated so that two quorums always share a
/// resolver (`2 * needed > of`), which is what the split-brain argument rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quorum {
    needed: NonZeroU8,
    of: NonZeroU8,
}

impl Quorum {
    /// The handbook's quorum: 2 of 3 public resolvers.
    pub const TWO_OF_THREE: Self = Self {
        needed: NonZeroU8::MIN.saturating_add(1),
        of: NonZeroU8::MIN.saturating_add(2),
    };

    /// A quorum, refused unless two quorums must overlap.
    pub fn new(needed: u8, of: u8) -> Result<Self, ConfigError> {
        let (Some(n), Some(o)) = (NonZeroU8::new(needed), NonZeroU8::new(of)) else {
            return Err(ConfigError::new(
                "quorum",
                "needed and of must be at least 1",
            ));
        };
        if needed > of {
            return Err(ConfigError::new(
                "quorum.needed",
                format!("{needed} is more than of = {of}"),
            ));
        }
        if u16::from(needed) * 2 <= u16::from(of) {
            return Err(ConfigError::new(
                "quorum.needed",
                format!(
                    "{needed} of {of} is not a majority: two quorums could disagree without a liar"
                ),
            ));
        }
        Ok(Self { needed: n, of: o })
    }

    /// How many answers make a quorum.
    #[must_use]
    pub fn needed(&self) -> usize {
        usize::from(self.needed.get())
    }

    /// How many resolvers are asked.
    #[must_use]
    pub fn of(&self) -> usize {
        usize::from(self.of.get())
    }
}

/// Timings as validated. The timing lint ([`crate::lint::check`]) decides whether they are
/// *safe*; validation only decides whether they make sense at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Timings {
    /// How often the active renews the lease.
    pub renew_interval: Duration,
    /// How long a lease is valid after a renewal.
    pub lease_ttl: Duration,
    /// Slack for clock-rate differences, scheduling and message delay: the holder stops
    /// this much before its lease lapses, others take over this much after.
    pub skew_margin: Duration,
    /// How long one witness call may take before it counts as failed.
    pub witness_timeout: Duration,
    /// How long one DNS lookup may take before it counts as unknown.
    pub dns_timeout: Duration,
    /// Renewal failures tolerated before the lease would lapse.
    pub retries: u32,
}

impl Timings {
    /// The handbook's timings: renew 10s, TTL 30s, skew margin 5s, 2s timeouts, 1 retry.
    #[must_use]
    pub fn handbook() -> Self {
        Self {
            renew_interval: Duration::from_secs(10),
            lease_ttl: Duration::from_secs(30),
            skew_margin: DEFAULT_SKEW_MARGIN,
            witness_timeout: Duration::from_secs(2),
            dns_timeout: Duration::from_secs(2),
            retries: 1,
        }
    }

    /// How long an "unreachable" DNS quorum must hold before a standby believes it on the
    /// lease path: long enough for the active to have run one full check (renew interval
    /// plus a DNS timeout) and fenced, plus the skew margin.
    #[must_use]
    pub fn confirm_window(&self) -> Duration {
        self.renew_interval + self.dns_timeout + self.skew_margin
    }

    /// TTL + skew margin: how long a record must stay unchanged, or the witness stay
    /// unreachable, before a standby treats the lease as lapsed.
    #[must_use]
    pub fn takeover_after(&self) -> Duration {
        self.lease_ttl + self.skew_margin
    }

    /// TTL - skew margin: how long after sending a successful renewal the holder may act.
    #[must_use]
    pub fn hold_for(&self) -> Duration {
        self.lease_ttl.saturating_sub(self.skew_margin)
    }
}

/// The skew margin when the config does not say: the handbook's 5 seconds.
pub const DEFAULT_SKEW_MARGIN: Duration = Duration::from_secs(5);

/// Validated failover configuration for one region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailoverConfig {
    /// All regions, in promotion order (first = preferred successor).
    pub regions: Vec<RegionId>,
    /// The region this controller runs in; one of `regions`.
    pub this_region: RegionId,
    /// Lease, renewal and timeout durations.
    pub timings: Timings,
    /// How much a promotion needs a human.
    pub mode: Mode,
    /// What to do when the witness is gone.
    pub witness_loss: WitnessLossPolicy,
    /// The DNS quorum.
    pub quorum: Quorum,
}

impl FailoverConfig {
    /// The same config seen from another region (the simulator runs one per region).
    #[must_use]
    pub fn for_region(&self, region: &RegionId) -> Self {
        Self {
            this_region: region.clone(),
            ..self.clone()
        }
    }

    /// Position of `region` in the promotion order.
    #[must_use]
    pub fn rank(&self, region: &RegionId) -> Option<usize> {
        self.regions.iter().position(|r| r == region)
    }

    /// Regions other than this one.
    pub fn others(&self) -> impl Iterator<Item = &RegionId> {
        self.regions.iter().filter(|r| **r != self.this_region)
    }

    /// Regions before this one in promotion order.
    pub fn earlier(&self) -> impl Iterator<Item = &RegionId> {
        self.regions.iter().take_while(|r| **r != self.this_region)
    }
}

/// Timings as written in config: humantime strings, every field optional with the
/// handbook default.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimings {
    /// Renewal interval (`10s`).
    #[serde(default = "d_renew", with = "humantime_serde")]
    pub renew_interval: Duration,
    /// Lease TTL (`30s`).
    #[serde(default = "d_ttl", with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Skew margin (`5s`).
    #[serde(default = "d_skew", with = "humantime_serde")]
    pub skew_margin: Duration,
    /// Witness call timeout (`2s`).
    #[serde(default = "d_timeout", with = "humantime_serde")]
    pub witness_timeout: Duration,
    /// DNS lookup timeout (`2s`).
    #[serde(default = "d_timeout", with = "humantime_serde")]
    pub dns_timeout: Duration,
    /// Renewal retries (`1`).
    #[serde(default = "d_retries")]
    pub retries: u32,
}

fn d_renew() -> Duration {
    Timings::handbook().renew_interval
}
fn d_ttl() -> Duration {
    Timings::handbook().lease_ttl
}
fn d_skew() -> Duration {
    DEFAULT_SKEW_MARGIN
}
fn d_timeout() -> Duration {
    Timings::handbook().witness_timeout
}
fn d_retries() -> u32 {
    Timings::handbook().retries
}

impl Default for RawTimings {
    fn default() -> Self {
        let t = Timings::handbook();
        Self {
            renew_interval: t.renew_interval,
            lease_ttl: t.lease_ttl,
            skew_margin: t.skew_margin,
            witness_timeout: t.witness_timeout,
            dns_timeout: t.dns_timeout,
            retries: t.retries,
        }
    }
}

impl RawTimings {
    /// Checks that every duration is positive, collecting every problem.
    pub fn validate(&self, errs: &mut Vec<ConfigError>) -> Timings {
        for (field, d) in [
            ("timings.renew_interval", self.renew_interval),
            ("timings.lease_ttl", self.lease_ttl),
            ("timings.witness_timeout", self.witness_timeout),
            ("timings.dns_timeout", self.dns_timeout),
        ] {
            if d.is_zero() {
                errs.push(ConfigError::new(field, "must be greater than zero"));
            }
        }
        Timings {
            renew_interval: self.renew_interval,
            lease_ttl: self.lease_ttl,
            skew_margin: self.skew_margin,
            witness_timeout: self.witness_timeout,
            dns_timeout: self.dns_timeout,
            retries: self.retries,
        }
    }
}

/// The quorum as written in config.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuorum {
    /// Answers needed.
    pub needed: u8,
    /// Resolvers asked.
    pub of: u8,
}

impl Default for RawQuorum {
    fn default() -> Self {
        Self { needed: 2, of: 3 }
    }
}

/// The failover section as deserialised, before validation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFailoverConfig {
    /// Region names in promotion order.
    pub regions: Vec<String>,
    /// This controller's region.
    pub this_region: String,
    /// Timings; handbook defaults where absent.
    #[serde(default)]
    pub timings: RawTimings,
    /// Mode; `automatic` when absent.
    #[serde(default = "d_mode")]
    pub mode: Mode,
    /// Witness-loss policy; `dns-quorum` (the handbook's design) when absent.
    #[serde(default = "d_policy")]
    pub witness_loss: WitnessLossPolicy,
    /// DNS quorum; 2 of 3 when absent.
    #[serde(default)]
    pub quorum: RawQuorum,
}

fn d_mode() -> Mode {
    Mode::Automatic
}
fn d_policy() -> WitnessLossPolicy {
    WitnessLossPolicy::DnsQuorum
}

/// Checks region names (non-empty, unique, DNS-label-like) and returns them as ids.
pub fn validate_regions(
    field: &str,
    names: &[String],
    errs: &mut Vec<ConfigError>,
) -> Vec<RegionId> {
    if names.is_empty() {
        errs.push(ConfigError::new(field, "at least one region is needed"));
    }
    let mut out: Vec<RegionId> = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        let ok = !n.is_empty()
            && n.len() <= 63
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            errs.push(ConfigError::new(
                format!("{field}[{i}]"),
                format!("{n:?} is not a region name (lowercase letters, digits, '-')"),
            ));
        }
        let id = RegionId::new(n.clone());
        if out.contains(&id) {
            errs.push(ConfigError::new(
                format!("{field}[{i}]"),
                format!("{n:?} appears twice"),
            ));
        } else {
            out.push(id);
        }
    }
    out
}

impl RawFailoverConfig {
    /// Validates everything, reporting every problem rather than the first.
    pub fn validate(self) -> Result<FailoverConfig, Vec<ConfigError>> {
        let mut errs = Vec::new();
        let regions = validate_regions("regions", &self.regions, &mut errs);
        let this_region = RegionId::new(self.this_region.clone());
        if !regions.contains(&this_region) {
            errs.push(ConfigError::new(
                "this_region",
                format!(
                    "{:?} is not one of the configured regions",
                    self.this_region
                ),
            ));
        }
        let timings = self.timings.validate(&mut errs);
        let quorum = Quorum::new(self.quorum.needed, self.quorum.of)
            .map_err(|e| errs.push(e))
            .ok();
        match quorum {
            Some(quorum) if errs.is_empty() => Ok(FailoverConfig {
                regions,
                this_region,
                timings,
                mode: self.mode,
                witness_loss: self.witness_loss,
                quorum,
            }),
            _ => Err(errs),
        }
    }
}

impl sre_core::config::Validate for RawFailoverConfig {
    type Valid = FailoverConfig;

    /// The same checks as [`RawFailoverConfig::validate`], in `sre_core::config`'s error
    /// type, so that binaries load the failover section with `sre_core::config::load`.
    fn validate(self) -> Result<FailoverConfig, Vec<sre_core::config::ConfigError>> {
        Self::validate(self).map_err(|errs| errs.into_iter().map(Into::into).collect())
    }
}

impl From<ConfigError> for sre_core::config::ConfigError {
    fn from(e: ConfigError) -> Self {
        Self::new(e.field, e.reason)
    }
}

/// One problem with a config, naming the field so that the operator can find it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// Dotted path of the field (`timings.lease_ttl`, `regions[2]`).
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// What one resolver said about one region's health name.
///
/// `Unknown` is kept apart from `Unreachable`: a timeout or SERVFAIL says something about
/// the path to the resolver, not about the region, so it never counts towards a quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reachability {
    /// The resolver got an answer from the region's authoritative DNS.
    Reachable,
    /// The resolver authoritatively says the region's health name is gone (NXDOMAIN/NODATA).
    Unreachable,
    /// Timeout, SERVFAIL, refused, or the resolver itself is unreachable.
    Unknown,
}

impl From<&sre_core::ports::LookupOutcome> for Reachability {
    fn from(o: &sre_core::ports::LookupOutcome) -> Self {
        use sre_core::ports::LookupOutcome as L;
        match o {
            L::Answer(a) if !a.is_empty() => Self::Reachable,
            L::NxDomain | L::NoData => Self::Unreachable,
            _ => Self::Unknown,
        }
    }
}

/// What a read of the witness gave, with "could not reach it" as a value of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessObservation {
    /// The read failed or timed out.
    Unreachable,
    /// No record has ever been written.
    Absent,
    /// A valid record.
    Present {
        /// The record.
        record: LeaseRecord,
        /// Its revision, for compare-and-swap.
        revision: Revision,
    },
    /// Something that is not a lease: treated as unknown, never as expired.
    Malformed {
        /// Its revision.
        revision: Revision,
        /// Why it did not parse.
        error: String,
    },
}

impl From<Result<WitnessRead, PortError>> for WitnessObservation {
    fn from(r: Result<WitnessRead, PortError>) -> Self {
        match r {
            Err(_) => Self::Unreachable,
            Ok(WitnessRead::Absent) => Self::Absent,
            Ok(WitnessRead::Present { record, revision }) => Self::Present { record, revision },
            Ok(WitnessRead::Malformed { revision, error }) => Self::Malformed {
                revision,
                error: error.to_string(),
            },
        }
    }
}

/// How a lease write the controller sent ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// It was written; this is the new revision.
    Swapped(Revision),
    /// Someone else wrote first.
    Conflict,
    /// Transport failure or timeout: it may or may not have been written.
    Failed,
}

/// The answer to a lease write, matched to the write by the time it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// Monotonic time at which `decide` asked for the write.
    pub sent_at: sre_core::MonoTime,
    /// How it ended.
    pub outcome: WriteOutcome,
}

/// An operator's explicit command for this region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OperatorCommand {
    /// `sre failover promote`: the trigger in manual mode (the safety rules still apply).
    Promote,
    /// `sre failover demote`: step down and release the lease.
    Demote,
}

/// Everything the controller learnt since the last decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observations {
    /// This host's wall clock, used only to stamp records (never to judge a lease).
    pub wall: DateTime<Utc>,
    /// The witness read.
    pub witness: WitnessObservation,
    /// Answer to the lease write in flight, if it came back.
    pub write: Option<WriteResult>,
    /// Per region (this one included), one answer per resolver about its health name.
    pub dns: BTreeMap<RegionId, Vec<Reachability>>,
    /// A promotion approval is granted and unexpired (semi-automatic mode).
    pub approval_granted: bool,
    /// An operator command, if one arrived.
    pub operator: Option<OperatorCommand>,
    /// The demotion plan started by a fence or demotion has finished.
    pub demotion_complete: bool,
}

impl Observations {
    /// Observations with nothing but a witness read (tests fill in the rest).
    #[must_use]
    pub fn new(wall: DateTime<Utc>, witness: WitnessObservation) -> Self {
        Self {
            wall,
            witness,
            write: None,
            dns: BTreeMap::new(),
            approval_granted: false,
            operator: None,
            demotion_complete: false,
        }
    }

    fn count(&self, region: &RegionId, want: Reachability) -> usize {
        self.dns
            .get(region)
            .map_or(0, |v| v.iter().filter(|a| **a == want).count())
    }

    /// True when a quorum of resolvers says `region` is reachable.
    #[must_use]
    pub fn quorum_reachable(&self, quorum: &Quorum, region: &RegionId) -> bool {
        self.count(region, Reachability::Reachable) >= quorum.needed()
    }

    /// True when a quorum of resolvers says `region` is unreachable.
    #[must_use]
    pub fn quorum_unreachable(&self, quorum: &Quorum, region: &RegionId) -> bool {
        self.count(region, Reachability::Unreachable) >= quorum.needed()
    }
}

/// Why a human is paged. A small closed set so that it can be a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PageReason {
    /// The witness holds something that is not a lease record: hold, a human must look.
    MalformedLease,
    /// The lease record vanished after we had seen one: hold, it may be data loss.
    LeaseRecordVanished,
    /// The active looks gone and the witness is unreachable, but policy is `hold`.
    WitnessLostHold,
    /// The promotion plan is waiting for an approval.
    ApprovalNeeded,
}

impl fmt::Display for PageReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MalformedLease => "malformed-lease",
            Self::LeaseRecordVanished => "lease-record-vanished",
            Self::WitnessLostHold => "witness-lost-hold",
            Self::ApprovalNeeded => "approval-needed",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawFailoverConfig {
        serde_norway::from_str(
            "regions: [eu, us]\nthis_region: eu\ntimings:\n  renew_interval: 10s\n  lease_ttl: 30s\n",
        )
        .unwrap_or_else(|e| panic!("fixture parses: {e}"))
    }

    #[test]
    fn defaults_are_the_handbook() {
        let c = raw().validate().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(c.timings, Timings::handbook());
        assert_eq!(c.quorum, Quorum::TWO_OF_THREE);
        assert_eq!(c.mode, Mode::Automatic);
        assert_eq!(c.witness_loss, WitnessLossPolicy::DnsQuorum);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let r: Result<RawFailoverConfig, _> =
            serde_norway::from_str("regions: [eu]\nthis_region: eu\nleaseTtl: 30s\n");
        assert!(r.is_err());
    }

    #[test]
    fn validation_collects_every_error() {
        let mut r = raw();
        r.regions = vec!["eu".into(), "eu".into(), "US".into()];
        r.this_region = "mars".into();
        r.timings.lease_ttl = Duration::ZERO;
        r.quorum = RawQuorum { needed: 1, of: 3 };
        let errs = r.validate().err().unwrap_or_default();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "regions[1]",
                "regions[2]",
                "this_region",
                "timings.lease_ttl",
                "quorum.needed"
            ]
        );
    }

    #[test]
    fn loads_through_sre_core_config_with_every_error_and_its_path() {
        use sre_core::config::{EnvOverrides, Format, Source, load};
        let src = |text: &str| Source::Text {
            name: "f.yaml".into(),
            text: text.into(),
            format: Format::Yaml,
        };
        let ok = load::<RawFailoverConfig>(
            &src("regions: [eu, us]\nthis_region: eu\n"),
            &EnvOverrides::default().alias("REGION", "this_region"),
            vec![("REGION".to_owned(), "us".to_owned())],
        );
        assert_eq!(ok.map(|c| c.this_region), Ok(RegionId::new("us")));
        let err = load::<RawFailoverConfig>(
            &src("regions: [eu]\nthis_region: mars\nquorum: {needed: 1, of: 2}\n"),
            &EnvOverrides::default(),
            vec![],
        )
        .err()
        .map(|e| e.errors.into_iter().map(|e| e.path).collect::<Vec<_>>());
        assert_eq!(
            err,
            Some(vec!["this_region".to_owned(), "quorum.needed".to_owned()])
        );
    }

    #[test]
    fn quorum_must_be_a_majority() {
        assert!(Quorum::new(2, 3).is_ok());
        assert!(Quorum::new(3, 5).is_ok());
        assert!(Quorum::new(2, 4).is_err());
        assert!(Quorum::new(4, 3).is_err());
        assert!(Quorum::new(0, 3).is_err());
        assert_eq!(
            Quorum::TWO_OF_THREE,
            Quorum::new(2, 3).unwrap_or(Quorum::TWO_OF_THREE)
        );
        assert_eq!(
            (Quorum::TWO_OF_THREE.needed(), Quorum::TWO_OF_THREE.of()),
            (2, 3)
        );
    }

    #[test]
    fn servfail_and_timeouts_are_unknown_not_unreachable() {
        use sre_core::ports::LookupOutcome as L;
        assert_eq!(Reachability::from(&L::Timeout), Reachability::Unknown);
        assert_eq!(Reachability::from(&L::ServFail), Reachability::Unknown);
        assert_eq!(Reachability::from(&L::NxDomain), Reachability::Unreachable);
        assert_eq!(
            Reachability::from(&L::Answer(vec![[127, 0, 0, 1].into()])),
            Reachability::Reachable
        );
    }
}
