//! The decision core: `decide(config, state, observations, now) -> (state, actions)`.
//!
//! Pure and deterministic: no IO, no clock, no randomness. `now` is this region's
//! monotonic time; wall time in the observations is used only to stamp the records it
//! writes, never to judge a lease. The rules are listed in the crate README
//! ("Decision rules") and every one is named at the line that implements it.

use crate::model::{
    FailoverConfig, Observations, OperatorCommand, PageReason, WitnessLossPolicy,
    WitnessObservation, WriteOutcome,
};
use crate::state::{
    Authority, FailoverState, LeaseView, PendingWrite, PromotionPath, Role, WriteKind,
};
use serde::Serialize;
use sre_core::ports::{LeaseFormat, LeaseRecord, Revision};
use sre_core::{Generation, MonoTime, RegionId};
use std::collections::BTreeSet;
use std::time::Duration;

/// Why an active region stopped acting as active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FenceReason {
    /// Its lease may have lapsed (own clock, minus the skew margin) and it could not renew.
    LeaseLapsed,
    /// The witness shows another holder or generation, or refused our write.
    LeaseLost,
    /// A DNS quorum says this region is unreachable.
    DnsUnreachable,
    /// No DNS quorum says this region is reachable, and nothing else backs its authority.
    NoReachableQuorum,
    /// It promoted without the lease and another region is reachable again.
    PeerBack,
    /// An operator asked it to step down.
    Demoted,
}

/// Something the shell must carry out. Every action that changes the world carries the
/// generation, the fencing token that lets layers refuse a stale controller's writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action")]
pub enum Action {
    /// Compare-and-swap a new lease (a new generation) at the witness.
    AcquireLease {
        /// The new fencing token.
        generation: Generation,
        /// Revision it replaces (None: create).
        expected: Option<Revision>,
        /// The record to write.
        record: LeaseRecord,
    },
    /// Compare-and-swap our own lease with a fresh `renewed_at`.
    RenewLease {
        /// Our fencing token.
        generation: Generation,
        /// Revision it replaces.
        expected: Revision,
        /// The record to write.
        record: LeaseRecord,
    },
    /// Compare-and-swap our lease as released, so a successor need not wait out the TTL.
    ReleaseLease {
        /// Our fencing token.
        generation: Generation,
        /// Revision it replaces.
        expected: Revision,
        /// The record to write.
        record: LeaseRecord,
    },
    /// Run the ordered promotion plan ([`crate::plan::LayerPlan::promotion`]).
    RunPromotionPlan {
        /// The fencing token every step carries.
        generation: Generation,
    },
    /// Run the ordered demotion plan.
    RunDemotionPlan {
        /// The fencing token every step carries.
        generation: Generation,
    },
    /// Stop acting as active now (before any plan step: stop serving writes first).
    Fence {
        /// The token being given up.
        generation: Generation,
        /// Why.
        reason: FenceReason,
    },
    /// Ask for an approval to promote (semi-automatic mode).
    RequestApproval {
        /// The generation the promotion would take.
        generation: Generation,
    },
    /// Page a human.
    Page {
        /// Why.
        reason: PageReason,
    },
}

/// One decision step for the region `config.this_region`.
#[must_use]
pub fn decide(
    config: &FailoverConfig,
    state: &FailoverState,
    obs: &Observations,
    now: MonoTime,
) -> (FailoverState, Vec<Action>) {
    let mut st = state.clone();
    let mut step = Step {
        cfg: config,
        obs,
        now,
        actions: Vec::new(),
        pages: BTreeSet::new(),
    };
    let resolved = step.absorb(&mut st);
    match st.role {
        Role::Standby => step.standby(&mut st),
        Role::Acquiring { generation } => step.acquiring(&mut st, generation, resolved),
        Role::Active {
            generation,
            authority,
        } => step.active(&mut st, generation, authority, resolved),
        Role::Fenced { generation } | Role::Demoting { generation } => {
            if obs.demotion_complete {
                step.release_if_ours(&mut st, generation);
                st.role = Role::Standby;
            }
        }
    }
    let Step {
        mut actions, pages, ..
    } = step;
    for p in pages.difference(&st.paged) {
        actions.push(Action::Page { reason: *p });
    }
    st.paged = pages;
    (st, actions)
}

struct Step<'a> {
    cfg: &'a FailoverConfig,
    obs: &'a Observations,
    now: MonoTime,
    actions: Vec<Action>,
    pages: BTreeSet<PageReason>,
}

impl Step<'_> {
    fn me(&self) -> &RegionId {
        &self.cfg.this_region
    }

    fn held(&self, since: Option<MonoTime>, window: Duration) -> bool {
        since.is_some_and(|t| self.now.saturating_since(t) >= window)
    }

    /// True when a DNS quorum has said `region` is unreachable for at least `window`.
    fn gone_for(&self, st: &FailoverState, region: &RegionId, window: Duration) -> bool {
        self.held(st.unreachable_since.get(region).copied(), window)
    }

    /// Folds the observations into the trackers and returns the answered write, if any.
    fn absorb(&self, st: &mut FailoverState) -> Option<(PendingWrite, WriteOutcome)> {
        let (obs, now, q) = (self.obs, self.now, &self.cfg.quorum);
        // DNS trackers: "since when, continuously" on our own clock.
        st.reachable_now.clear();
        for r in self.cfg.others() {
            if obs.quorum_unreachable(q, r) {
                st.unreachable_since.entry(r.clone()).or_insert(now);
            } else {
                st.unreachable_since.remove(r);
            }
            if obs.quorum_reachable(q, r) {
                st.reachable_now.insert(r.clone());
            }
        }
        if obs.quorum_reachable(q, self.me()) {
            st.self_reachable_at = Some(now);
            st.self_reachable_since.get_or_insert(now);
        } else {
            st.self_reachable_since = None;
        }
        // Witness trackers.
        match &obs.witness {
            WitnessObservation::Unreachable => {
                st.witness_lost_since.get_or_insert(now);
            }
            WitnessObservation::Present { record, revision } => {
                st.witness_lost_since = None;
                st.seen_record = true;
                st.max_generation = st.max_generation.max(record.generation);
                // Invariant: first_seen moves only when the revision changes, so that
                // "unchanged for TTL + margin" is measured from our first sight of it.
                if st.lease.as_ref().is_none_or(|l| l.revision != *revision) {
                    st.lease = Some(LeaseView {
                        record: record.clone(),
                        revision: revision.clone(),
                        first_seen: now,
                    });
                }
            }
            WitnessObservation::Absent | WitnessObservation::Malformed { .. } => {
                st.witness_lost_since = None;
                st.lease = None;
            }
        }
        // The answer to our write, or its timeout.
        let pending = st.pending.take()?;
        match &obs.write {
            Some(w) if w.sent_at == pending.sent_at => Some((pending, w.outcome.clone())),
            _ if now.saturating_since(pending.sent_at) >= self.cfg.timings.witness_timeout => {
                Some((pending, WriteOutcome::Failed))
            }
            _ => {
                st.pending = Some(pending);
                None
            }
        }
    }

    /// The next fencing token: above the record's and every one we used, and at least
    /// our wall clock in milliseconds. The wall floor is what orders a witness-loss
    /// promotion (never written to the witness) before a later lease acquisition by a
    /// region that never saw it: the two are at least a confirm window apart, more than
    /// the wall-clock skew the README assumes.
    fn next_generation(&self, st: &FailoverState, record: Generation) -> Generation {
        let wall = u64::try_from(self.obs.wall.timestamp_millis()).unwrap_or(0);
        record.max(st.max_generation).next().max(Generation(wall))
    }

    fn record(
        &self,
        generation: Generation,
        acquired_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> LeaseRecord {
        LeaseRecord {
            format: LeaseFormat::V1,
            holder: self.me().clone(),
            generation,
            acquired_at: acquired_at.unwrap_or(self.obs.wall),
            renewed_at: self.obs.wall,
            ttl_ms: u64::try_from(self.cfg.timings.lease_ttl.as_millis()).unwrap_or(u64::MAX),
            released: false,
        }
    }

    fn write(
        &mut self,
        st: &mut FailoverState,
        kind: WriteKind,
        generation: Generation,
        expected: Option<Revision>,
        record: LeaseRecord,
    ) {
        st.pending = Some(PendingWrite {
            kind,
            generation,
            sent_at: self.now,
            renewed_at: record.renewed_at,
        });
        let action = match (kind, expected) {
            (WriteKind::Acquire, expected) => Action::AcquireLease {
                generation,
                expected,
                record,
            },
            (WriteKind::Renew, Some(expected)) => Action::RenewLease {
                generation,
                expected,
                record,
            },
            (WriteKind::Release, Some(expected)) => Action::ReleaseLease {
                generation,
                expected,
                record,
            },
            // Renew and release always replace a record we read; without one there is
            // nothing to replace, so nothing is sent.
            (WriteKind::Renew | WriteKind::Release, None) => {
                st.pending = None;
                return;
            }
        };
        if matches!(kind, WriteKind::Acquire | WriteKind::Renew) {
            st.last_write_at = Some(self.now);
        }
        self.actions.push(action);
    }

    /// The witness's record as last read, if it is ours at `generation`.
    fn our_lease(&self, st: &FailoverState, generation: Generation) -> Option<LeaseView> {
        if !matches!(self.obs.witness, WitnessObservation::Present { .. }) {
            return None;
        }
        st.lease
            .as_ref()
            .filter(|l| l.record.holder == *self.me() && l.record.generation == generation)
            .cloned()
    }

    fn release_if_ours(&mut self, st: &mut FailoverState, generation: Generation) {
        if st.pending.is_some() {
            return;
        }
        if let Some(l) = self
            .our_lease(st, generation)
            .filter(|l| !l.record.released)
        {
            let mut record = l.record.clone();
            record.released = true;
            record.renewed_at = self.obs.wall;
            self.write(st, WriteKind::Release, generation, Some(l.revision), record);
        }
    }

    fn fence(&mut self, st: &mut FailoverState, generation: Generation, reason: FenceReason) {
        self.actions.push(Action::Fence { generation, reason });
        self.actions.push(Action::RunDemotionPlan { generation });
        st.role = Role::Fenced { generation };
        // "releases the lease when it can": only after it stopped acting, so a successor
        // that sees `released` may start at once.
        self.release_if_ours(st, generation);
    }

    fn acquiring(
        &mut self,
        st: &mut FailoverState,
        generation: Generation,
        resolved: Option<(PendingWrite, WriteOutcome)>,
    ) {
        match resolved {
            Some((p, WriteOutcome::Swapped(_))) if p.kind == WriteKind::Acquire => {
                // A lease counts from when the write was *sent*: the witness stamped it
                // later, so everyone else's TTL starts later than ours.
                st.role = Role::Active {
                    generation,
                    authority: Authority::Lease {
                        deadline: p.sent_at + self.cfg.timings.hold_for(),
                    },
                };
                st.max_generation = st.max_generation.max(generation);
                self.actions.push(Action::RunPromotionPlan { generation });
            }
            Some(_) => st.role = Role::Standby,
            None if st.pending.is_none() => st.role = Role::Standby,
            None => {}
        }
    }

    #[allow(clippy::too_many_lines)]
    fn active(
        &mut self,
        st: &mut FailoverState,
        generation: Generation,
        mut authority: Authority,
        resolved: Option<(PendingWrite, WriteOutcome)>,
    ) {
        let cfg = self.cfg;
        let t = &cfg.timings;
        let me = self.me().clone();
        if self.obs.operator == Some(OperatorCommand::Demote) {
            self.actions.push(Action::Fence {
                generation,
                reason: FenceReason::Demoted,
            });
            self.actions.push(Action::RunDemotionPlan { generation });
            st.role = Role::Demoting { generation };
            return;
        }
        // Answers to our writes: a success extends the lease from when it was sent; a
        // conflict means somebody else wrote, so the lease is no longer ours.
        if let Some((p, outcome)) = resolved {
            match outcome {
                WriteOutcome::Swapped(_)
                    if p.generation == generation && p.kind != WriteKind::Release =>
                {
                    authority = Authority::Lease {
                        deadline: p.sent_at + t.hold_for(),
                    };
                }
                WriteOutcome::Conflict if p.kind != WriteKind::Release => {
                    return self.fence(st, generation, FenceReason::LeaseLost);
                }
                _ => {}
            }
        }
        // Rule A1: the record is the truth about who holds the lease. A region that
        // promoted without the lease may replace an older generation; anything else
        // that is not ours means we lost it.
        match &self.obs.witness {
            WitnessObservation::Present { record, .. }
                if !(record.holder == me && record.generation == generation) =>
            {
                let takeover =
                    authority == Authority::WitnessLoss && record.generation < generation;
                if !takeover {
                    return self.fence(st, generation, FenceReason::LeaseLost);
                }
            }
            WitnessObservation::Absent if authority != Authority::WitnessLoss => {
                self.pages.insert(PageReason::LeaseRecordVanished);
                return self.fence(st, generation, FenceReason::LeaseLost);
            }
            WitnessObservation::Malformed { .. } => {
                self.pages.insert(PageReason::MalformedLease);
            }
            _ => {}
        }
        let q = &cfg.quorum;
        // Rule A2: a DNS quorum saying we are unreachable fences us, whatever the lease says.
        if self.obs.quorum_unreachable(q, &me) {
            return self.fence(st, generation, FenceReason::DnsUnreachable);
        }
        // Rule A3 (dns-quorum policy only): a standby that lost the witness may promote
        // TTL + margin after the resolvers stopped reaching us, so we stop TTL - margin
        // after they last did, even with a valid lease.
        if cfg.witness_loss == WitnessLossPolicy::DnsQuorum
            && st
                .self_reachable_at
                .is_none_or(|at| self.now.saturating_since(at) >= t.hold_for())
        {
            return self.fence(st, generation, FenceReason::NoReachableQuorum);
        }
        let reachable = self.obs.quorum_reachable(q, &me);
        let witness_down = self.obs.witness == WitnessObservation::Unreachable;
        match authority {
            // Rule A4: the lease holds until last renewal sent + TTL - margin (own clock);
            // after that only the DNS quorum can carry it, and only while the witness is
            // unreachable (a reachable witness that did not renew us is a lost lease).
            Authority::Lease { deadline } if self.now >= deadline => {
                if witness_down && reachable {
                    authority = Authority::DnsAfterLease;
                } else {
                    return self.fence(st, generation, FenceReason::LeaseLapsed);
                }
            }
            // Rule A5: without a valid lease, we keep serving only while 2 of 3 say we
            // are reachable.
            Authority::DnsAfterLease if !reachable => {
                return self.fence(st, generation, FenceReason::NoReachableQuorum);
            }
            Authority::Lease { .. } | Authority::DnsAfterLease => {}
            // Rule A6: a witness-loss promotion keeps its authority only while the
            // quorum that allowed it (rule S2: every other region unreachable) still
            // holds, and yields as soon as it does not: another region may win the
            // lease at a witness we cannot see (it first waits a confirm window of
            // being reachable, rule S3). Waiting for "reachable" instead is not enough:
            // with one resolver down, a liar could hide the returning region from us
            // while vouching for it to itself (soak seed 30511, 3 regions).
            Authority::WitnessLoss => {
                if !reachable {
                    return self.fence(st, generation, FenceReason::NoReachableQuorum);
                }
                if cfg.others().any(|r| !self.obs.quorum_unreachable(q, r)) {
                    return self.fence(st, generation, FenceReason::PeerBack);
                }
            }
        }
        st.role = Role::Active {
            generation,
            authority,
        };
        if st.pending.is_some() {
            return;
        }
        // Writes: renew on cadence (or at once when the lease had lapsed), and record a
        // witness-loss promotion at the witness as soon as it is back.
        match (&self.obs.witness, authority) {
            (WitnessObservation::Present { record, revision }, Authority::WitnessLoss) => {
                let (rev, rec) = (revision.clone(), self.record(generation, None));
                debug_assert!(record.generation < generation);
                self.write(st, WriteKind::Acquire, generation, Some(rev), rec);
            }
            (WitnessObservation::Absent, Authority::WitnessLoss) => {
                let rec = self.record(generation, None);
                self.write(st, WriteKind::Acquire, generation, None, rec);
            }
            (WitnessObservation::Present { .. }, _) => {
                let due = match authority {
                    Authority::Lease { .. } => st
                        .last_write_at
                        .is_none_or(|at| self.now.saturating_since(at) >= t.renew_interval),
                    _ => true,
                };
                if let Some(l) = self.our_lease(st, generation).filter(|_| due) {
                    let rec = self.record(generation, Some(l.record.acquired_at));
                    self.write(st, WriteKind::Renew, generation, Some(l.revision), rec);
                }
            }
            _ => {}
        }
    }

    fn standby(&mut self, st: &mut FailoverState) {
        if st.pending.is_some() {
            return; // a release is still in flight
        }
        let cfg = self.cfg;
        let t = &cfg.timings;
        let me = self.me().clone();
        let candidate: Option<(PromotionPath, Generation, Option<Revision>)> =
            match &self.obs.witness {
                // Rule S5: garbage at the witness is unknown, never expired: hold and page.
                WitnessObservation::Malformed { .. } => {
                    self.pages.insert(PageReason::MalformedLease);
                    None
                }
                WitnessObservation::Absent if st.seen_record => {
                    self.pages.insert(PageReason::LeaseRecordVanished);
                    None
                }
                // Rule S4: the very first lease goes to the first region in promotion order
                // that the resolvers reach.
                WitnessObservation::Absent => cfg
                    .earlier()
                    .all(|r| self.gone_for(st, r, t.confirm_window()))
                    .then(|| {
                        (
                            PromotionPath::Bootstrap,
                            self.next_generation(st, Generation(0)),
                            None,
                        )
                    }),
                // Rule S1: the lease path. The record must have lapsed (unchanged for TTL +
                // margin on our clock) or been released, and a DNS quorum must have said the
                // holder is unreachable for a confirm window (a holder serving on DNS
                // authority is reachable, so it is never taken over). Several standbys may
                // get here at once: the compare-and-swap picks one.
                WitnessObservation::Present { record, revision } => {
                    let first_seen = st.lease.as_ref().map_or(self.now, |l| l.first_seen);
                    let lapsed = record.released
                        || self.now.saturating_since(first_seen) >= t.takeover_after();
                    let holder_gone = record.released
                        || record.holder == me
                        || self.gone_for(st, &record.holder, t.confirm_window());
                    (lapsed && holder_gone).then(|| {
                        let generation = self.next_generation(st, record.generation);
                        (PromotionPath::Lease, generation, Some(revision.clone()))
                    })
                }
                // Rule S2: the witness-loss path. Witness unreachable for TTL + margin and a
                // quorum saying every other region is unreachable for as long. This is the
                // strict form of "only the first standby in promotion order that the
                // resolvers still reach": a reachable later standby may have won the lease at
                // a witness we cannot see, so it must be gone too. Under `hold`, page instead.
                WitnessObservation::Unreachable => {
                    let all_gone = self.held(st.witness_lost_since, t.takeover_after())
                        && cfg
                            .others()
                            .all(|r| self.gone_for(st, r, t.takeover_after()));
                    match (all_gone, cfg.witness_loss) {
                        (true, WitnessLossPolicy::DnsQuorum) => Some((
                            PromotionPath::WitnessLoss,
                            self.next_generation(st, Generation(0)),
                            None,
                        )),
                        (true, WitnessLossPolicy::Hold) => {
                            self.pages.insert(PageReason::WitnessLostHold);
                            None
                        }
                        (false, _) => None,
                    }
                }
            };
        // Rule S3: we must ourselves have been reachable for a confirm window, so that a
        // region holding on DNS authority has seen us and yielded (rule A6).
        let Some((path, generation, expected)) =
            candidate.filter(|_| self.held(st.self_reachable_since, t.confirm_window()))
        else {
            st.approval_requested = false;
            return;
        };
        // Modes: the rules above must allow it in every mode; the mode only adds a gate.
        match cfg.mode {
            crate::model::Mode::Automatic => {}
            crate::model::Mode::SemiAutomatic if self.obs.approval_granted => {}
            crate::model::Mode::SemiAutomatic => {
                if !st.approval_requested {
                    self.actions.push(Action::RequestApproval { generation });
                    st.approval_requested = true;
                }
                self.pages.insert(PageReason::ApprovalNeeded);
                return;
            }
            crate::model::Mode::Manual if self.obs.operator == Some(OperatorCommand::Promote) => {}
            crate::model::Mode::Manual => return,
        }
        st.approval_requested = false;
        match path {
            PromotionPath::Lease | PromotionPath::Bootstrap => {
                st.max_generation = generation;
                let rec = self.record(generation, None);
                self.write(st, WriteKind::Acquire, generation, expected, rec);
                st.role = Role::Acquiring { generation };
            }
            PromotionPath::WitnessLoss => {
                st.max_generation = generation;
                st.role = Role::Active {
                    generation,
                    authority: Authority::WitnessLoss,
                };
                self.actions.push(Action::RunPromotionPlan { generation });
            }
        }
    }
}

#[cfg(test)]
mod tests;
