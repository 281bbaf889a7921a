//! What one region's controller believes: its role, the lease as last read, the write in
//! flight, and how long each DNS and witness condition has held on its own monotonic
//! clock. Plain data, owned by the caller and threaded through [`crate::decide::decide`].

use chrono::{DateTime, Utc};
use serde::Serialize;
use sre_core::ports::{LeaseRecord, Revision};
use sre_core::{Generation, MonoTime, RegionId};
use std::collections::{BTreeMap, BTreeSet};

/// Why this region acts as active: what its authority rests on decides when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Authority {
    /// It holds the lease; it may act until `deadline` on its own monotonic clock
    /// (last successful renewal *sent* + TTL - skew margin).
    Lease {
        /// When it must stop unless renewed.
        deadline: MonoTime,
    },
    /// It held the lease, the lease lapsed while the witness was unreachable, and a DNS
    /// quorum still says it is reachable, so no other region can take over.
    DnsAfterLease,
    /// It promoted without the lease (witness gone, `dns-quorum` policy) and holds on
    /// only while it is reachable and no region earlier in promotion order is.
    WitnessLoss,
}

/// Which rule a promotion took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromotionPath {
    /// Won the lease by compare-and-swap after it lapsed or was released.
    Lease,
    /// Wrote the very first lease record.
    Bootstrap,
    /// Took over without the lease under the `dns-quorum` witness-loss policy.
    WitnessLoss,
}

/// A region's role, the state machine's main state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "role")]
pub enum Role {
    /// Not active; watching for the moment it may promote.
    Standby,
    /// Sent a compare-and-swap for the lease; not active until it lands.
    Acquiring {
        /// The generation it asked for.
        generation: Generation,
    },
    /// Acting as active with this fencing token.
    Active {
        /// The fencing token every layer action carries.
        generation: Generation,
        /// What the authority rests on.
        authority: Authority,
    },
    /// Stopped acting as active because a rule said so; the demotion plan is running.
    Fenced {
        /// The generation it held.
        generation: Generation,
    },
    /// Stepping down on an operator command; releases the lease when done.
    Demoting {
        /// The generation it held.
        generation: Generation,
    },
}

impl Role {
    /// True while this region acts as active (the simulator's safety checker counts these).
    #[must_use]
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Active { .. })
    }

    /// The generation this role carries, if any.
    #[must_use]
    pub fn generation(&self) -> Option<Generation> {
        match self {
            Self::Standby => None,
            Self::Acquiring { generation }
            | Self::Active { generation, .. }
            | Self::Fenced { generation }
            | Self::Demoting { generation } => Some(*generation),
        }
    }

    /// Short name for logs and timelines.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Standby => "standby",
            Self::Acquiring { .. } => "acquiring",
            Self::Active { .. } => "active",
            Self::Fenced { .. } => "fenced",
            Self::Demoting { .. } => "demoting",
        }
    }
}

/// The lease record as last read, and when this revision was first seen.
///
/// `first_seen` is what makes takeover independent of wall clocks: a standby treats the
/// lease as lapsed only once the *same* revision has sat unchanged for TTL + skew margin
/// on its own monotonic clock, which is never earlier than the record's own expiry plus
/// the margin as long as clock *rates* agree within the drift bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseView {
    /// The record.
    pub record: LeaseRecord,
    /// Its revision.
    pub revision: Revision,
    /// Our monotonic time when we first read this revision.
    pub first_seen: MonoTime,
}

/// What kind of lease write is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteKind {
    /// Taking the lease (new generation).
    Acquire,
    /// Extending our own lease.
    Renew,
    /// Giving it up after fencing.
    Release,
}

/// A lease write sent and not yet answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingWrite {
    /// What it does.
    pub kind: WriteKind,
    /// The generation it carries.
    pub generation: Generation,
    /// Our monotonic time when it was sent: a successful renewal counts from here,
    /// never from when the answer came back.
    pub sent_at: MonoTime,
    /// The `renewed_at` stamp it wrote, to recognise it in a later read if the answer
    /// was lost.
    pub renewed_at: DateTime<Utc>,
}

/// One region's controller state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailoverState {
    /// The role.
    pub role: Role,
    /// The lease as last read (None: never read, absent, or unreadable).
    pub lease: Option<LeaseView>,
    /// The write in flight.
    pub pending: Option<PendingWrite>,
    /// When the last renewal or acquisition was sent (renewal cadence).
    pub last_write_at: Option<MonoTime>,
    /// Since when the witness has been unreachable, continuously.
    pub witness_lost_since: Option<MonoTime>,
    /// Whether a valid lease record has ever been read (an absent record after that is
    /// data loss, not a fresh start).
    pub seen_record: bool,
    /// Highest generation seen anywhere (record or own): the next one must exceed it.
    pub max_generation: Generation,
    /// Per other region, since when a DNS quorum has said it is unreachable, continuously.
    pub unreachable_since: BTreeMap<RegionId, MonoTime>,
    /// Regions a DNS quorum said were reachable in the latest sample.
    pub reachable_now: BTreeSet<RegionId>,
    /// Since when a DNS quorum has said *this* region is reachable, continuously.
    pub self_reachable_since: Option<MonoTime>,
    /// Last time a DNS quorum said this region is reachable.
    pub self_reachable_at: Option<MonoTime>,
    /// An approval has been requested for the promotion now pending (semi-automatic).
    pub approval_requested: bool,
    /// Pages already sent and whose condition still holds (so that each fires once).
    pub paged: BTreeSet<crate::model::PageReason>,
}

impl FailoverState {
    /// A fresh controller: standby, knowing nothing. Also what a restart looks like.
    #[must_use]
    pub fn new() -> Self {
        Self {
            role: Role::Standby,
            lease: None,
            pending: None,
            last_write_at: None,
            witness_lost_since: None,
            seen_record: false,
            max_generation: Generation::default(),
            unreachable_since: BTreeMap::new(),
            reachable_now: BTreeSet::new(),
            self_reachable_since: None,
            self_reachable_at: None,
            approval_requested: false,
            paged: BTreeSet::new(),
        }
    }

    /// True while this region acts as active.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.role.is_active()
    }
}

impl Default for FailoverState {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_counts_as_active() {
        let g = Generation(3);
        let roles = [
            Role::Standby,
            Role::Acquiring { generation: g },
            Role::Fenced { generation: g },
            Role::Demoting { generation: g },
        ];
        assert!(roles.iter().all(|r| !r.is_active()));
        let a = Role::Active {
            generation: g,
            authority: Authority::DnsAfterLease,
        };
        assert!(a.is_active());
        assert_eq!(a.generation(), Some(g));
        assert_eq!(Role::Standby.generation(), None);
    }

    #[test]
    fn a_fresh_state_is_a_standby_that_knows_nothing() {
        let s = FailoverState::default();
        assert_eq!(s.role, Role::Standby);
        assert!(s.lease.is_none() && !s.seen_record && s.max_generation == Generation(0));
    }
}
