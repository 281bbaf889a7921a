//! When to renew the leases of minted credentials, decided purely from what the
//! controller remembers (last renewal per credential), the live versions and `now`.
//!
//! A credential minted with a lease (a dynamic database user) dies when the lease runs
//! out, whatever the rotation schedule says: with a role TTL of one hour and hourly
//! rotation, the current credential would expire around its own rotation and the
//! previous one during its overlap window. So the controller renews the lease of the
//! current version, and of the previous one while it is in its overlap, at most once
//! per `renew_every` per credential.
//!
//! The memory ([`LeaseBook`]) is kept in the process only. After a restart every live
//! credential is simply renewed at once, which is harmless (a renewal only moves the
//! expiry later, up to the role's `max_ttl`).

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::time::Duration;

/// Which live version a credential is, as the metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Which {
    /// The version consumers should use.
    Current,
    /// The version before it, still valid during the overlap window.
    Previous,
}

impl Which {
    /// The `version` label of `sre_rotation_lease_remaining_seconds`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Previous => "previous",
        }
    }
}

/// One live credential of a secret: its role and its KV version. The memory is keyed
/// by version, so the current credential keeps its renewal history when a rotation
/// makes it the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    /// Current or previous.
    pub which: Which,
    /// Its KV version.
    pub version: u64,
}

/// The live credentials of a persisted state: the current version and, during the
/// overlap, the previous one.
#[must_use]
pub fn live(current: Option<u64>, previous: Option<u64>) -> Vec<Live> {
    let current = current.map(|version| Live {
        which: Which::Current,
        version,
    });
    let previous = previous.map(|version| Live {
        which: Which::Previous,
        version,
    });
    current.into_iter().chain(previous).collect()
}

/// The last renewal of one credential that got an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renewed {
    /// When it was made.
    pub at: DateTime<Utc>,
    /// What the lease had left then (zero for a lease that is gone).
    pub remaining: Duration,
}

/// Whether a credential last renewed at `last` is due at `now`: never renewed (by
/// this process) or renewed at least `every` ago.
#[must_use]
pub fn is_due(last: Option<&Renewed>, now: DateTime<Utc>, every: Duration) -> bool {
    last.is_none_or(|r| (now - r.at).to_std().is_ok_and(|elapsed| elapsed >= every))
}

/// The live credentials of one secret due for a renewal at `now`.
#[must_use]
pub fn due(
    live: &[Live],
    last: &BTreeMap<u64, Renewed>,
    now: DateTime<Utc>,
    every: Duration,
) -> Vec<Live> {
    live.iter()
        .copied()
        .filter(|l| is_due(last.get(&l.version), now, every))
        .collect()
}

/// When the earliest of `live` becomes due again; `None` when one is due now or has no
/// renewal yet (then the next tick handles it).
#[must_use]
pub fn next_due(
    live: &[Live],
    last: &BTreeMap<u64, Renewed>,
    every: Duration,
) -> Option<DateTime<Utc>> {
    let every = chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
    live.iter()
        .map(|l| last.get(&l.version).map(|r| r.at + every))
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .min()
}

/// What a lease renewed at `r.at` with `r.remaining` left has left at `now` (never
/// negative; a clock that went back counts as no time passed).
#[must_use]
pub fn remaining_at(r: &Renewed, now: DateTime<Utc>) -> Duration {
    let elapsed = (now - r.at).to_std().unwrap_or(Duration::ZERO);
    r.remaining.saturating_sub(elapsed)
}

/// What the controller remembers between ticks: per secret, per KV version, the last
/// renewal that got an answer.
#[derive(Debug, Clone, Default)]
pub struct LeaseBook {
    by_secret: BTreeMap<String, BTreeMap<u64, Renewed>>,
}

impl LeaseBook {
    /// An empty memory: every live credential is due.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The renewals remembered for `secret`, by KV version.
    #[must_use]
    pub fn of(&self, secret: &str) -> BTreeMap<u64, Renewed> {
        self.by_secret.get(secret).cloned().unwrap_or_default()
    }

    /// Remembers a renewal of `secret`'s `version` that got an answer.
    pub fn record(&mut self, secret: &str, version: u64, renewed: Renewed) {
        self.by_secret
            .entry(secret.to_owned())
            .or_default()
            .insert(version, renewed);
    }

    /// Forgets the versions of `secret` that are no longer live (retired, dropped), so
    /// the memory stays as small as the set of live credentials.
    pub fn retain_live(&mut self, secret: &str, live: &[Live]) {
        if let Some(m) = self.by_secret.get_mut(secret) {
            m.retain(|v, _| live.iter().any(|l| l.version == *v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + s, 0).unwrap_or_default()
    }

    fn renewed(at: i64, remaining: u64) -> Renewed {
        Renewed {
            at: t(at),
            remaining: Duration::from_secs(remaining),
        }
    }

    /// `last` as (version, renewed at); `every` is 100 s; expect the due versions.
    fn check(
        current: Option<u64>,
        previous: Option<u64>,
        last: &[(u64, i64)],
        now: i64,
        expect: &[u64],
    ) {
        let last: BTreeMap<u64, Renewed> =
            last.iter().map(|&(v, at)| (v, renewed(at, 3600))).collect();
        let got: Vec<u64> = due(
            &live(current, previous),
            &last,
            t(now),
            Duration::from_secs(100),
        )
        .iter()
        .map(|l| l.version)
        .collect();
        assert_eq!(got, expect, "last {last:?} at {now}");
    }

    #[test]
    fn a_credential_is_due_when_never_renewed_or_renewed_at_least_every_ago() {
        check(None, None, &[], 0, &[]);
        check(Some(1), None, &[], 0, &[1]);
        check(Some(1), None, &[(1, 0)], 99, &[]);
        check(Some(1), None, &[(1, 0)], 100, &[1]);
        check(Some(2), Some(1), &[(1, 0), (2, 50)], 120, &[1]);
        check(Some(2), Some(1), &[(1, 0), (2, 50)], 150, &[2, 1]);
        // After a rotation the old current is the previous one with its history kept;
        // the new current was never renewed.
        check(Some(3), Some(2), &[(2, 50)], 60, &[3]);
        // A clock that went back does not make a credential due.
        check(Some(1), None, &[(1, 100)], 50, &[]);
    }

    #[test]
    fn next_due_is_the_earliest_renewal_or_none_while_one_is_unknown() {
        let every = Duration::from_secs(100);
        let both = live(Some(2), Some(1));
        let last = BTreeMap::from([(1, renewed(0, 10)), (2, renewed(30, 10))]);
        assert_eq!(next_due(&both, &last, every), Some(t(100)));
        let only_one = BTreeMap::from([(2, renewed(30, 10))]);
        assert_eq!(next_due(&both, &only_one, every), None);
        assert_eq!(next_due(&[], &last, every), None);
    }

    #[test]
    fn remaining_time_counts_down_from_the_last_answer_and_stops_at_zero() {
        let r = renewed(0, 3600);
        assert_eq!(remaining_at(&r, t(0)), Duration::from_hours(1));
        assert_eq!(remaining_at(&r, t(600)), Duration::from_mins(50));
        assert_eq!(remaining_at(&r, t(4000)), Duration::ZERO);
        assert_eq!(remaining_at(&r, t(-10)), Duration::from_hours(1));
    }

    #[test]
    fn the_book_forgets_versions_that_are_no_longer_live() {
        let mut book = LeaseBook::new();
        book.record("db", 1, renewed(0, 10));
        book.record("db", 2, renewed(5, 10));
        book.record("other", 1, renewed(0, 10));
        book.retain_live("db", &live(Some(2), None));
        assert_eq!(book.of("db").keys().copied().collect::<Vec<_>>(), [2]);
        assert_eq!(book.of("other").len(), 1);
        assert!(book.of("nobody").is_empty());
        assert_eq!(Which::Previous.label(), "previous");
    }
}
