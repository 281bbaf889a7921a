//! Unit tests for the decision rules, one scenario per rule, driven tick by tick.

use super::*;
use crate::model::{Mode, Quorum, Reachability, Timings, WriteResult};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

const R: Reachability = Reachability::Reachable;
const U: Reachability = Reachability::Unreachable;
const K: Reachability = Reachability::Unknown;

fn cfg(regions: &[&str], me: &str) -> FailoverConfig {
    FailoverConfig {
        regions: regions.iter().map(|r| RegionId::from(*r)).collect(),
        this_region: RegionId::from(me),
        timings: Timings::handbook(),
        mode: Mode::Automatic,
        witness_loss: WitnessLossPolicy::DnsQuorum,
        quorum: Quorum::TWO_OF_THREE,
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn wall0() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default()
}

fn rec(holder: &str, generation: u64) -> LeaseRecord {
    LeaseRecord {
        format: LeaseFormat::V1,
        holder: RegionId::from(holder),
        generation: Generation(generation),
        acquired_at: wall0(),
        renewed_at: wall0(),
        ttl_ms: 30_000,
        released: false,
    }
}

fn present(holder: &str, generation: u64, rev: &str) -> WitnessObservation {
    WitnessObservation::Present {
        record: rec(holder, generation),
        revision: Revision(rev.into()),
    }
}

struct H {
    cfg: FailoverConfig,
    st: FailoverState,
    now: MonoTime,
    /// DNS answers per region, applied to every tick.
    dns: BTreeMap<RegionId, Vec<Reachability>>,
    witness: WitnessObservation,
}

impl H {
    fn new(regions: &[&str], me: &str) -> Self {
        let mut dns = BTreeMap::new();
        for r in regions {
            dns.insert(RegionId::from(*r), vec![R, R, R]);
        }
        Self {
            cfg: cfg(regions, me),
            st: FailoverState::new(),
            now: MonoTime::ZERO,
            dns,
            witness: WitnessObservation::Absent,
        }
    }
    fn set_dns(&mut self, region: &str, a: [Reachability; 3]) {
        self.dns.insert(RegionId::from(region), a.to_vec());
    }
    fn obs(&self) -> Observations {
        let mut o = Observations::new(
            wall0() + chrono::Duration::from_std(self.now.0).unwrap_or_default(),
            self.witness.clone(),
        );
        o.dns = self.dns.clone();
        o.demotion_complete = true;
        o
    }
    fn tick_with(&mut self, o: &Observations) -> Vec<Action> {
        let (st, actions) = decide(&self.cfg, &self.st, o, self.now);
        self.st = st;
        self.now = self.now + secs(1);
        actions
    }
    fn tick(&mut self) -> Vec<Action> {
        let o = self.obs();
        self.tick_with(&o)
    }
    /// Ticks until an action matches or `limit` seconds pass; returns the seconds taken.
    fn until(&mut self, limit: u64, f: impl Fn(&Action) -> bool) -> Option<u64> {
        (0..limit).find(|_| self.tick().iter().any(&f))
    }
    /// Answers the pending write with `outcome` on the next tick.
    fn answer(&mut self, outcome: WriteOutcome) -> Vec<Action> {
        let mut o = self.obs();
        let sent_at = self
            .st
            .pending
            .as_ref()
            .map(|p| p.sent_at)
            .unwrap_or_default();
        o.write = Some(WriteResult { sent_at, outcome });
        self.tick_with(&o)
    }
    /// Makes this region active at generation 1 through the bootstrap path.
    fn activate(&mut self) {
        self.witness = WitnessObservation::Absent;
        assert!(
            self.until(30, |a| matches!(a, Action::AcquireLease { .. }))
                .is_some()
        );
        let g = self.generation();
        self.witness = present(self.cfg.this_region.as_str(), g.0, "r1");
        let a = self.answer(WriteOutcome::Swapped(Revision("r1".into())));
        assert!(
            a.contains(&Action::RunPromotionPlan { generation: g }),
            "{a:?}"
        );
        assert!(self.st.is_active());
    }
    fn generation(&self) -> Generation {
        self.st.role.generation().unwrap_or_default()
    }
}

fn is_fence(a: &Action) -> bool {
    matches!(a, Action::Fence { .. })
}

#[test]
fn bootstrap_goes_to_the_first_region_after_a_confirm_window() {
    let mut a = H::new(&["a", "b"], "a");
    let t = a.until(60, |x| {
        matches!(x, Action::AcquireLease { expected: None, .. })
    });
    // Self must have been reachable for renew + dns timeout + skew = 17s.
    assert_eq!(t, Some(17));
    let mut b = H::new(&["a", "b"], "b");
    assert_eq!(
        b.until(120, |x| matches!(x, Action::AcquireLease { .. })),
        None,
        "b waits while a is reachable"
    );
}

#[test]
fn active_renews_on_cadence_and_fences_when_renewals_stop_landing() {
    let mut h = H::new(&["a", "b"], "a");
    h.activate();
    let mut renews = 0;
    let mut fenced_at = None;
    for s in 0..40 {
        let actions = h.tick(); // renewals are never answered (witness read still works)
        renews += actions
            .iter()
            .filter(|x| matches!(x, Action::RenewLease { .. }))
            .count();
        if actions.iter().any(is_fence) {
            fenced_at = Some(s);
            break;
        }
    }
    assert!(renews >= 2, "renewed {renews} times");
    // Acquire was sent 1s before activation; deadline = sent + 25s.
    assert_eq!(fenced_at, Some(23));
    assert!(matches!(h.st.role, Role::Fenced { .. }));
}

#[test]
fn successful_renewal_extends_the_lease_from_when_it_was_sent() {
    let mut h = H::new(&["a", "b"], "a");
    h.activate();
    for _ in 0..200 {
        let acts = h.tick();
        assert!(!acts.iter().any(is_fence));
        if h.st.pending.is_some() {
            let a = h.answer(WriteOutcome::Swapped(Revision("r2".into())));
            assert!(!a.iter().any(is_fence));
        }
    }
    assert!(h.st.is_active());
}

#[test]
fn witness_loss_keeps_active_while_two_of_three_say_reachable() {
    let mut h = H::new(&["a", "b"], "a");
    h.activate();
    h.witness = WitnessObservation::Unreachable;
    for _ in 0..120 {
        assert!(!h.tick().iter().any(is_fence));
    }
    assert!(matches!(
        h.st.role,
        Role::Active {
            authority: Authority::DnsAfterLease,
            ..
        }
    ));
    // One resolver says unreachable, one unknown: no reachable quorum any more.
    assert!(
        h.generation() > Generation(1_767_225_600_000),
        "generations are at least wall milliseconds"
    );
    h.set_dns("a", [R, U, K]);
    assert!(h.tick().iter().any(is_fence));
}

#[test]
fn two_of_three_unreachable_fences_even_with_a_valid_lease_and_releases_it() {
    let mut h = H::new(&["a", "b"], "a");
    h.activate();
    h.set_dns("a", [U, U, R]);
    let g = h.generation();
    let a = h.tick();
    assert!(a.contains(&Action::Fence {
        generation: g,
        reason: FenceReason::DnsUnreachable
    }));
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::ReleaseLease { record, .. } if record.released))
    );
}

#[test]
fn dns_quorum_policy_fences_a_leaseholder_the_resolvers_cannot_reach() {
    let mut h = H::new(&["a", "b"], "a");
    h.activate();
    h.set_dns("a", [K, K, R]);
    let t = (0..60).find(|_| {
        let acts = h.tick();
        if h.st.pending.is_some() {
            h.answer(WriteOutcome::Swapped(Revision(format!(
                "x{}",
                h.now.0.as_secs()
            ))));
        }
        acts.iter().any(is_fence)
    });
    assert!(t.is_some_and(|t| t <= 25), "fenced after {t:?}");
    let mut hold = H::new(&["a", "b"], "a");
    hold.cfg.witness_loss = WitnessLossPolicy::Hold;
    hold.activate();
    hold.set_dns("a", [K, K, R]);
    for _ in 0..60 {
        assert!(!hold.tick().iter().any(is_fence));
        if hold.st.pending.is_some() {
            let n = hold.now.0.as_secs();
            assert!(
                !hold
                    .answer(WriteOutcome::Swapped(Revision(format!("y{n}"))))
                    .iter()
                    .any(is_fence)
            );
        }
    }
}

#[test]
fn standby_takes_over_only_after_ttl_plus_skew_and_a_confirmed_unreachable_holder() {
    let mut b = H::new(&["a", "b"], "b");
    b.witness = present("a", 4, "r9");
    b.set_dns("a", [U, U, R]);
    let t = b.until(100, |x| matches!(x, Action::AcquireLease { .. }));
    assert_eq!(
        t,
        Some(35),
        "TTL 30s + skew 5s after the revision was first seen"
    );
    let g = b.generation();
    assert!(matches!(b.st.role, Role::Acquiring { .. }) && g > Generation(4));
    b.witness = present("b", g.0, "r10");
    let a = b.answer(WriteOutcome::Swapped(Revision("r10".into())));
    assert!(a.contains(&Action::RunPromotionPlan { generation: g }));
}

#[test]
fn standby_never_takes_over_a_reachable_holder_nor_a_changing_record() {
    let mut b = H::new(&["a", "b"], "b");
    b.witness = present("a", 4, "r9");
    assert_eq!(
        b.until(200, |x| matches!(x, Action::AcquireLease { .. })),
        None
    );
    let mut c = H::new(&["a", "b"], "b");
    c.set_dns("a", [U, U, U]);
    for i in 0..200 {
        c.witness = present("a", 4, &format!("rev{}", i / 10));
        assert!(
            !c.tick()
                .iter()
                .any(|x| matches!(x, Action::AcquireLease { .. }))
        );
    }
}

#[test]
fn a_conflicting_acquire_returns_to_standby() {
    let mut b = H::new(&["a", "b"], "b");
    b.witness = present("a", 4, "r9");
    b.set_dns("a", [U, U, U]);
    assert!(
        b.until(100, |x| matches!(x, Action::AcquireLease { .. }))
            .is_some()
    );
    b.answer(WriteOutcome::Conflict);
    assert_eq!(b.st.role, Role::Standby);
}

#[test]
fn malformed_record_holds_and_pages_once() {
    let mut b = H::new(&["a", "b"], "b");
    b.witness = WitnessObservation::Malformed {
        revision: Revision("x".into()),
        error: "garbage".into(),
    };
    b.set_dns("a", [U, U, U]);
    let mut pages = 0;
    for _ in 0..200 {
        for a in b.tick() {
            assert!(!matches!(a, Action::AcquireLease { .. }));
            pages += usize::from(
                a == Action::Page {
                    reason: PageReason::MalformedLease,
                },
            );
        }
    }
    assert_eq!(pages, 1);
}

#[test]
fn witness_loss_promotes_under_dns_quorum_and_pages_under_hold() {
    let mut b = H::new(&["a", "b"], "b");
    b.witness = present("a", 7, "r1");
    b.tick();
    b.witness = WitnessObservation::Unreachable;
    b.set_dns("a", [U, U, K]);
    let t = b.until(100, |x| matches!(x, Action::RunPromotionPlan { .. }));
    assert_eq!(t, Some(35));
    let g = b.generation();
    assert_eq!(
        b.st.role,
        Role::Active {
            generation: g,
            authority: Authority::WitnessLoss
        }
    );
    // When the witness comes back it records the promotion with a compare-and-swap.
    b.witness = present("a", 7, "r1");
    assert!(
        b.tick()
            .iter()
            .any(|x| matches!(x, Action::AcquireLease { generation, .. } if *generation == g))
    );

    let mut h = H::new(&["a", "b"], "b");
    h.cfg.witness_loss = WitnessLossPolicy::Hold;
    h.witness = WitnessObservation::Unreachable;
    h.set_dns("a", [U, U, K]);
    assert_eq!(
        h.until(100, |x| *x
            == Action::Page {
                reason: PageReason::WitnessLostHold
            }),
        Some(35)
    );
    assert_eq!(h.st.role, Role::Standby);
}

#[test]
fn witness_loss_needs_every_other_region_gone() {
    let mut b = H::new(&["a", "b", "c"], "b");
    b.witness = WitnessObservation::Unreachable;
    b.set_dns("a", [U, U, U]);
    assert_eq!(
        b.until(200, |x| matches!(x, Action::RunPromotionPlan { .. })),
        None,
        "c is reachable"
    );
}

#[test]
fn on_the_lease_path_every_standby_competes_and_the_cas_decides() {
    for (me, expect) in [("b", true), ("c", true)] {
        let mut h = H::new(&["a", "b", "c"], me);
        h.witness = present("a", 1, "r1");
        h.set_dns("a", [U, U, U]);
        let got = h
            .until(100, |x| matches!(x, Action::AcquireLease { .. }))
            .is_some();
        assert_eq!(got, expect, "{me}");
    }
}

#[test]
fn a_witness_loss_active_yields_to_any_region_that_comes_back() {
    let mut b = H::new(&["a", "b"], "b");
    b.witness = WitnessObservation::Unreachable;
    b.set_dns("a", [U, U, U]);
    assert!(
        b.until(100, |x| matches!(x, Action::RunPromotionPlan { .. }))
            .is_some()
    );
    b.set_dns("a", [R, R, U]);
    let a = b.tick();
    assert!(a.iter().any(|x| matches!(
        x,
        Action::Fence {
            reason: FenceReason::PeerBack,
            ..
        }
    )));
}

#[test]
fn another_holder_in_the_record_fences_the_active() {
    let mut h = H::new(&["a", "b"], "a");
    h.activate();
    h.witness = present("b", h.generation().0 + 1, "r5");
    let g = h.generation();
    assert!(h.tick().contains(&Action::Fence {
        generation: g,
        reason: FenceReason::LeaseLost
    }));
}

#[test]
fn semi_automatic_waits_for_approval_and_manual_for_the_operator() {
    let mut h = H::new(&["a", "b"], "b");
    h.cfg.mode = Mode::SemiAutomatic;
    h.witness = present("a", 1, "r1");
    h.set_dns("a", [U, U, U]);
    let mut requests = 0;
    for _ in 0..100 {
        for a in h.tick() {
            assert!(!matches!(a, Action::AcquireLease { .. }));
            requests += usize::from(matches!(a, Action::RequestApproval { .. }));
        }
    }
    assert_eq!(requests, 1);
    let mut o = h.obs();
    o.approval_granted = true;
    assert!(
        h.tick_with(&o)
            .iter()
            .any(|x| matches!(x, Action::AcquireLease { .. }))
    );

    let mut m = H::new(&["a", "b"], "b");
    m.cfg.mode = Mode::Manual;
    m.witness = present("a", 1, "r1");
    m.set_dns("a", [U, U, U]);
    assert_eq!(
        m.until(100, |x| matches!(x, Action::AcquireLease { .. })),
        None
    );
    let mut o = m.obs();
    o.operator = Some(OperatorCommand::Promote);
    assert!(
        m.tick_with(&o)
            .iter()
            .any(|x| matches!(x, Action::AcquireLease { .. }))
    );
}

#[test]
fn operator_demote_steps_down_and_releases() {
    let mut h = H::new(&["a", "b"], "a");
    h.activate();
    let mut o = h.obs();
    o.operator = Some(OperatorCommand::Demote);
    o.demotion_complete = false;
    let g = h.generation();
    let a = h.tick_with(&o);
    assert!(a.contains(&Action::Fence {
        generation: g,
        reason: FenceReason::Demoted
    }));
    assert_eq!(h.st.role, Role::Demoting { generation: g });
    let a = h.tick();
    assert!(a.iter().any(|x| matches!(x, Action::ReleaseLease { .. })));
    assert_eq!(h.st.role, Role::Standby);
}
