//! Deterministic simulator: N regions, each running [`crate::decide::decide`] on its own
//! monotonic clock (with drift) and wall clock (with skew), one witness with
//! compare-and-swap semantics, resolvers that can be down, slow or lying, message delay
//! on witness writes, partitions over any set of links, crashes and restarts — all on a
//! virtual clock advanced in fixed ticks.
//!
//! At every tick the checker records which regions act as active and with which
//! generation, and flags (a) two regions active at once, (c) a generation going
//! backwards; the report gives the data for (b), the time to promote. Given the same
//! [`SimSpec`] (and seed, for [`random_spec`]) a run is bit-for-bit the same.

use crate::decide::{Action, decide};
use crate::model::{
    FailoverConfig, Observations, Reachability, WitnessObservation, WriteOutcome, WriteResult,
};
use crate::state::{Authority, FailoverState, Role};
use chrono::{DateTime, Utc};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use sre_core::ports::{LeaseRecord, Revision};
use sre_core::{Generation, MonoTime, RegionId};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// One end of a link that can be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "index")]
pub enum Endpoint {
    /// A region, by index into the config's regions.
    Region(usize),
    /// The witness.
    Witness,
    /// A resolver, by index.
    Resolver(usize),
    /// The public internet: cutting `Region(i) <-> Internet` isolates the region from
    /// the witness and every resolver (and them from it).
    Internet,
}

/// A fault or repair injected at a point in simulated time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Cut the link between two endpoints.
    Partition(Endpoint, Endpoint),
    /// Restore it.
    Heal(Endpoint, Endpoint),
    /// The region's controller dies (it stops acting at once).
    Crash(usize),
    /// It starts again with a fresh state.
    Restart(usize),
    /// Set the region's wall-clock offset from true time, in milliseconds.
    Skew(usize, i64),
    /// Set the region's monotonic clock rate error in parts per million.
    Drift(usize, i32),
    /// The resolver stops answering (every lookup is unknown).
    ResolverDown(usize),
    /// It answers again.
    ResolverUp(usize),
    /// It answers every region "you are reachable, the others are not" (the worst lie).
    ResolverLie(usize),
    /// It tells the truth again.
    ResolverHonest(usize),
    /// Set the one-way delay of witness messages, in milliseconds.
    WitnessDelay(u64),
    /// Clear every fault: heal all links, resolvers up and honest, crashed regions restart.
    HealAll,
}

/// A fault at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimedFault {
    /// When, from the start of the run.
    pub at: Duration,
    /// What.
    pub fault: Fault,
}

/// Everything a run depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimSpec {
    /// The shared config (its `this_region` is ignored; every region gets its own).
    pub config: FailoverConfig,
    /// Resolver names, for timelines.
    pub resolvers: Vec<String>,
    /// Simulated time per step.
    pub tick: Duration,
    /// How long to run.
    pub duration: Duration,
    /// Initial one-way delay of witness messages.
    pub witness_delay: Duration,
    /// Faults, in any order (they are applied in time order, ties in list order).
    pub faults: Vec<TimedFault>,
    /// Whether to keep a readable timeline (the soak turns it off for speed).
    pub record_timeline: bool,
}

/// One line of a run's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEvent {
    /// Simulated seconds from the start.
    pub at_s: f64,
    /// The region it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// What happened.
    pub event: String,
}

/// A stretch of time during which one region acted as active.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuthorityInterval {
    /// The region.
    pub region: String,
    /// Its fencing token.
    pub generation: u64,
    /// Simulated seconds when it started acting as active.
    pub from_s: f64,
    /// When it stopped (None: still active at the end).
    pub until_s: Option<f64>,
}

/// What a run found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// Invariant (a) broken: two regions acted as active at the same time.
    pub split_brain: bool,
    /// When it first happened.
    pub split_brain_at_s: Option<f64>,
    /// Most regions active in the same tick.
    pub max_concurrent_active: usize,
    /// Invariant (c) broken: a newly active region carried a generation below one
    /// already used, or the witness's generation went down.
    pub generation_regressed: bool,
    /// For each time the active set became empty after having had a member: how long
    /// until a region was active again (None: never, within the run).
    pub outages: Vec<(f64, Option<f64>)>,
    /// Every authority interval.
    pub intervals: Vec<AuthorityInterval>,
    /// The timeline (empty unless `record_timeline`).
    pub timeline: Vec<TimelineEvent>,
}

impl SimReport {
    /// Time from the first loss of an active to the next active region, if both happened.
    #[must_use]
    pub fn first_promotion_after_loss(&self) -> Option<f64> {
        self.outages.first().and_then(|(_, d)| *d)
    }
}

#[derive(Debug, Clone)]
struct SimRegion {
    id: RegionId,
    cfg: FailoverConfig,
    alive: bool,
    boot: u64,
    boot_at: Duration,
    drift_ppm: i32,
    wall_offset_ms: i64,
    state: FailoverState,
    inbox: Option<WriteResult>,
}

#[derive(Debug, Clone)]
struct InFlight {
    region: usize,
    boot: u64,
    sent_at: MonoTime,
    apply_at: Duration,
    expected: Option<Revision>,
    record: LeaseRecord,
    reply: Option<(Duration, WriteOutcome)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResolverMode {
    Honest,
    Lying,
}

/// The simulator's world.
#[derive(Debug)]
struct World {
    regions: Vec<SimRegion>,
    cuts: BTreeSet<(Endpoint, Endpoint)>,
    resolver_up: Vec<bool>,
    resolver_mode: Vec<ResolverMode>,
    witness: Option<(LeaseRecord, u64)>,
    next_rev: u64,
    delay: Duration,
    in_flight: Vec<InFlight>,
    epoch: DateTime<Utc>,
}

fn key(a: Endpoint, b: Endpoint) -> (Endpoint, Endpoint) {
    if a <= b { (a, b) } else { (b, a) }
}

impl World {
    fn cut(&self, a: Endpoint, b: Endpoint) -> bool {
        self.cuts.contains(&key(a, b))
    }
    fn region_to_witness(&self, i: usize) -> bool {
        let r = Endpoint::Region(i);
        !(self.cut(r, Endpoint::Witness)
            || self.cut(r, Endpoint::Internet)
            || self.cut(Endpoint::Witness, Endpoint::Internet))
    }
    fn region_to_resolver(&self, i: usize, k: usize) -> bool {
        let (r, s) = (Endpoint::Region(i), Endpoint::Resolver(k));
        !(self.cut(r, s) || self.cut(r, Endpoint::Internet) || self.cut(s, Endpoint::Internet))
    }
    fn mono(&self, i: usize, now: Duration) -> MonoTime {
        let r = &self.regions[i];
        let up = i128::try_from(now.saturating_sub(r.boot_at).as_nanos()).unwrap_or(i128::MAX);
        let skewed = up + up * i128::from(r.drift_ppm) / 1_000_000;
        MonoTime(Duration::from_nanos(
            u64::try_from(skewed.max(0)).unwrap_or(u64::MAX),
        ))
    }
    fn wall(&self, i: usize, now: Duration) -> DateTime<Utc> {
        let base = self.epoch + chrono::Duration::from_std(now).unwrap_or_default();
        base + chrono::Duration::milliseconds(self.regions[i].wall_offset_ms)
    }
    fn answer(&self, asker: usize, target: usize, k: usize) -> Reachability {
        if !self.resolver_up[k] || !self.region_to_resolver(asker, k) {
            return Reachability::Unknown;
        }
        match self.resolver_mode[k] {
            ResolverMode::Lying if asker == target => Reachability::Reachable,
            ResolverMode::Honest
                if self.regions[target].alive && self.region_to_resolver(target, k) =>
            {
                Reachability::Reachable
            }
            ResolverMode::Lying | ResolverMode::Honest => Reachability::Unreachable,
        }
    }
    fn read(&self, i: usize) -> WitnessObservation {
        if !self.region_to_witness(i) {
            return WitnessObservation::Unreachable;
        }
        match &self.witness {
            None => WitnessObservation::Absent,
            Some((record, rev)) => WitnessObservation::Present {
                record: record.clone(),
                revision: Revision(rev.to_string()),
            },
        }
    }
}

struct Checker {
    active: BTreeMap<usize, (Generation, usize)>, // region -> (generation, interval index)
    max_gen_used: Generation,
    report: SimReport,
    had_active: bool,
    outage_from: Option<Duration>,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Runs one simulation.
#[must_use]
#[allow(clippy::too_many_lines)]
pub fn run(spec: &SimSpec) -> SimReport {
    let n_res = spec.resolvers.len();
    let mut w = World {
        regions: spec
            .config
            .regions
            .iter()
            .map(|id| SimRegion {
                id: id.clone(),
                cfg: spec.config.for_region(id),
                alive: true,
                boot: 0,
                boot_at: Duration::ZERO,
                drift_ppm: 0,
                wall_offset_ms: 0,
                state: FailoverState::new(),
                inbox: None,
            })
            .collect(),
        cuts: BTreeSet::new(),
        resolver_up: vec![true; n_res],
        resolver_mode: vec![ResolverMode::Honest; n_res],
        witness: None,
        next_rev: 1,
        delay: spec.witness_delay,
        in_flight: Vec::new(),
        epoch: DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default(),
    };
    let mut faults = spec.faults.clone();
    faults.sort_by_key(|f| f.at); // stable: ties keep list order
    let mut next_fault = 0;
    let mut ck = Checker {
        active: BTreeMap::new(),
        max_gen_used: Generation(0),
        report: SimReport {
            split_brain: false,
            split_brain_at_s: None,
            max_concurrent_active: 0,
            generation_regressed: false,
            outages: Vec::new(),
            intervals: Vec::new(),
            timeline: Vec::new(),
        },
        had_active: false,
        outage_from: None,
    };
    let rec = spec.record_timeline;
    let log = |now: Duration,
               region: Option<&RegionId>,
               what: &dyn fmt::Display,
               tl: &mut Vec<TimelineEvent>| {
        if rec {
            tl.push(TimelineEvent {
                at_s: secs(now),
                region: region.map(ToString::to_string),
                event: what.to_string(),
            });
        }
    };
    let mut now = Duration::ZERO;
    let tick = spec.tick.max(Duration::from_millis(1));
    while now <= spec.duration {
        // 1. faults due
        while next_fault < faults.len() && faults[next_fault].at <= now {
            let f = faults[next_fault].fault;
            next_fault += 1;
            apply_fault(&mut w, f, now);
            let text = describe(&w, f, &spec.resolvers);
            log(now, None, &text, &mut ck.report.timeline);
            if let Fault::Crash(i) = f {
                end_authority(&mut ck, i, now);
            }
        }
        // 2. witness messages due
        let mut k = 0;
        while k < w.in_flight.len() {
            let m = &w.in_flight[k];
            if m.reply.is_none() && m.apply_at <= now {
                let outcome = if w.region_to_witness(m.region) {
                    let current = w.witness.as_ref().map(|(_, rev)| Revision(rev.to_string()));
                    if current == m.expected {
                        let old_gen = w.witness.as_ref().map(|(r, _)| r.generation);
                        if old_gen.is_some_and(|g| m.record.generation < g) {
                            ck.report.generation_regressed = true;
                        }
                        let rev = w.next_rev;
                        w.next_rev += 1;
                        w.witness = Some((m.record.clone(), rev));
                        WriteOutcome::Swapped(Revision(rev.to_string()))
                    } else {
                        WriteOutcome::Conflict
                    }
                } else {
                    WriteOutcome::Failed
                };
                let lost = outcome == WriteOutcome::Failed;
                let at = now + w.delay;
                if lost {
                    w.in_flight.swap_remove(k);
                    continue;
                }
                w.in_flight[k].reply = Some((at, outcome));
            }
            let m = &w.in_flight[k];
            if let Some((at, outcome)) = &m.reply
                && *at <= now
            {
                let r = &w.regions[m.region];
                if r.alive && r.boot == m.boot && w.region_to_witness(m.region) {
                    let res = WriteResult {
                        sent_at: m.sent_at,
                        outcome: outcome.clone(),
                    };
                    w.regions[m.region].inbox = Some(res);
                }
                w.in_flight.swap_remove(k);
                continue;
            }
            k += 1;
        }
        // 3. every live region decides
        for i in 0..w.regions.len() {
            if !w.regions[i].alive {
                continue;
            }
            let mono = w.mono(i, now);
            let mut obs = Observations::new(w.wall(i, now), w.read(i));
            obs.write = w.regions[i].inbox.take();
            obs.demotion_complete = true;
            for t in 0..w.regions.len() {
                let answers = (0..n_res).map(|k| w.answer(i, t, k)).collect();
                obs.dns.insert(w.regions[t].id.clone(), answers);
            }
            let (st, actions) = decide(&w.regions[i].cfg, &w.regions[i].state, &obs, mono);
            let before = w.regions[i].state.role;
            w.regions[i].state = st;
            for a in actions {
                let (expected, record) = match a {
                    Action::AcquireLease {
                        expected, record, ..
                    } => (expected, record),
                    Action::RenewLease {
                        expected, record, ..
                    }
                    | Action::ReleaseLease {
                        expected, record, ..
                    } => (Some(expected), record),
                    other => {
                        if rec && !matches!(other, Action::RunDemotionPlan { .. }) {
                            let text = action_text(&other);
                            log(now, Some(&w.regions[i].id), &text, &mut ck.report.timeline);
                        }
                        continue;
                    }
                };
                let r = &w.regions[i];
                w.in_flight.push(InFlight {
                    region: i,
                    boot: r.boot,
                    sent_at: mono,
                    apply_at: now + w.delay,
                    expected,
                    record,
                    reply: None,
                });
            }
            let after = w.regions[i].state.role;
            if before != after {
                if rec && before.name() != after.name() {
                    let text = role_text(&after);
                    log(now, Some(&w.regions[i].id), &text, &mut ck.report.timeline);
                }
                if before.is_active() && !after.is_active() {
                    end_authority(&mut ck, i, now);
                }
                if let (Role::Active { generation, .. }, false) = (after, before.is_active()) {
                    if generation < ck.max_gen_used {
                        ck.report.generation_regressed = true;
                    }
                    ck.max_gen_used = ck.max_gen_used.max(generation);
                    ck.report.intervals.push(AuthorityInterval {
                        region: w.regions[i].id.to_string(),
                        generation: generation.0,
                        from_s: secs(now),
                        until_s: None,
                    });
                    ck.active
                        .insert(i, (generation, ck.report.intervals.len() - 1));
                }
            }
        }
        // 4. the checker
        let n = ck.active.len();
        ck.report.max_concurrent_active = ck.report.max_concurrent_active.max(n);
        if n > 1 && !ck.report.split_brain {
            ck.report.split_brain = true;
            ck.report.split_brain_at_s = Some(secs(now));
            log(
                now,
                None,
                &"SPLIT BRAIN: two regions act as active",
                &mut ck.report.timeline,
            );
        }
        if n > 0 {
            if let Some(from) = ck.outage_from.take() {
                ck.report
                    .outages
                    .push((secs(from), Some(secs(now.saturating_sub(from)))));
            }
            ck.had_active = true;
        } else if ck.had_active && ck.outage_from.is_none() {
            ck.outage_from = Some(now);
        }
        now += tick;
    }
    if let Some(from) = ck.outage_from {
        ck.report.outages.push((secs(from), None));
    }
    ck.report
}

fn end_authority(ck: &mut Checker, i: usize, now: Duration) {
    if let Some((_, idx)) = ck.active.remove(&i)
        && let Some(iv) = ck.report.intervals.get_mut(idx)
    {
        iv.until_s = Some(secs(now));
    }
}

fn apply_fault(w: &mut World, f: Fault, now: Duration) {
    match f {
        Fault::Partition(a, b) => {
            w.cuts.insert(key(a, b));
        }
        Fault::Heal(a, b) => {
            w.cuts.remove(&key(a, b));
        }
        Fault::Crash(i) => {
            if let Some(r) = w.regions.get_mut(i) {
                r.alive = false;
                r.inbox = None;
            }
        }
        Fault::Restart(i) => {
            if let Some(r) = w.regions.get_mut(i).filter(|r| !r.alive) {
                r.alive = true;
                r.boot += 1;
                r.boot_at = now;
                r.state = FailoverState::new();
            }
        }
        Fault::Skew(i, ms) => {
            if let Some(r) = w.regions.get_mut(i) {
                r.wall_offset_ms = ms;
            }
        }
        Fault::Drift(i, ppm) => {
            // Re-base so that the monotonic clock stays continuous when its rate changes.
            let before = w.mono(i, now);
            if let Some(r) = w.regions.get_mut(i) {
                r.drift_ppm = ppm;
            }
            let after = w.mono(i, now);
            if let Some(r) = w.regions.get_mut(i) {
                // Shift the boot time so that mono(now) is unchanged (never moves backwards).
                if after > before {
                    r.boot_at += Duration::from_nanos(
                        u64::try_from(after.0.saturating_sub(before.0).as_nanos()).unwrap_or(0),
                    );
                } else {
                    r.boot_at = r.boot_at.saturating_sub(before.0.saturating_sub(after.0));
                }
            }
        }
        Fault::ResolverDown(k) => set(&mut w.resolver_up, k, false),
        Fault::ResolverUp(k) => set(&mut w.resolver_up, k, true),
        Fault::ResolverLie(k) => set(&mut w.resolver_mode, k, ResolverMode::Lying),
        Fault::ResolverHonest(k) => set(&mut w.resolver_mode, k, ResolverMode::Honest),
        Fault::WitnessDelay(ms) => w.delay = Duration::from_millis(ms),
        Fault::HealAll => {
            w.cuts.clear();
            w.resolver_up.iter_mut().for_each(|u| *u = true);
            w.resolver_mode
                .iter_mut()
                .for_each(|m| *m = ResolverMode::Honest);
            for i in 0..w.regions.len() {
                apply_fault(w, Fault::Restart(i), now);
            }
        }
    }
}

fn set<T>(v: &mut [T], k: usize, x: T) {
    if let Some(slot) = v.get_mut(k) {
        *slot = x;
    }
}

fn endpoint_name(w: &World, e: Endpoint, resolvers: &[String]) -> String {
    match e {
        Endpoint::Region(i) => w
            .regions
            .get(i)
            .map_or_else(|| format!("region#{i}"), |r| r.id.to_string()),
        Endpoint::Witness => "witness".into(),
        Endpoint::Internet => "internet".into(),
        Endpoint::Resolver(k) => resolvers
            .get(k)
            .cloned()
            .unwrap_or_else(|| format!("resolver#{k}")),
    }
}

fn describe(w: &World, f: Fault, res: &[String]) -> String {
    let region = |i: usize| endpoint_name(w, Endpoint::Region(i), res);
    let resolver = |k: usize| endpoint_name(w, Endpoint::Resolver(k), res);
    match f {
        Fault::Partition(a, b) => format!(
            "partition {} <-> {}",
            endpoint_name(w, a, res),
            endpoint_name(w, b, res)
        ),
        Fault::Heal(a, b) => format!(
            "heal {} <-> {}",
            endpoint_name(w, a, res),
            endpoint_name(w, b, res)
        ),
        Fault::Crash(i) => format!("crash {}", region(i)),
        Fault::Restart(i) => format!("restart {}", region(i)),
        Fault::Skew(i, ms) => format!("skew {} wall clock to {ms:+}ms", region(i)),
        Fault::Drift(i, ppm) => format!("drift {} monotonic clock {ppm:+}ppm", region(i)),
        Fault::ResolverDown(k) => format!("resolver {} down", resolver(k)),
        Fault::ResolverUp(k) => format!("resolver {} up", resolver(k)),
        Fault::ResolverLie(k) => format!("resolver {} starts lying", resolver(k)),
        Fault::ResolverHonest(k) => format!("resolver {} honest again", resolver(k)),
        Fault::WitnessDelay(ms) => format!("witness delay {ms}ms"),
        Fault::HealAll => "heal everything".into(),
    }
}

fn role_text(role: &Role) -> String {
    match role {
        Role::Active {
            generation,
            authority,
        } => {
            let why = match authority {
                Authority::Lease { .. } => "lease",
                Authority::DnsAfterLease => "dns quorum after lease",
                Authority::WitnessLoss => "witness loss + dns quorum",
            };
            format!("ACTIVE gen {generation} ({why})")
        }
        other => other.name().to_string(),
    }
}

fn action_text(a: &Action) -> String {
    match a {
        Action::RunPromotionPlan { generation } => format!("run promotion plan gen {generation}"),
        Action::Fence { generation, reason } => format!("fence gen {generation}: {reason:?}"),
        Action::RequestApproval { generation } => format!("request approval gen {generation}"),
        Action::Page { reason } => format!("page: {reason}"),
        other => format!("{other:?}"),
    }
}

/// The worst promotion time the rules promise once the active is gone and a standby can
/// reach the witness: TTL + renew interval + skew margin, plus the simulation's own
/// granularity (two ticks) and a witness round trip.
#[must_use]
pub fn promotion_bound(spec: &SimSpec, max_delay: Duration) -> Duration {
    let t = &spec.config.timings;
    t.lease_ttl + t.renew_interval + t.skew_margin + spec.tick * 2 + max_delay * 2
}

/// Knobs for [`random_spec`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomKnobs {
    /// Stay within the README's assumptions: at most one resolver ever lies or is
    /// partitioned from a region, monotonic drift within ±0.5%, wall skew within ±8s.
    pub within_assumptions: bool,
    /// Number of regions (2..=4).
    pub regions: usize,
    /// Keep the readable timeline (for replaying one failing seed).
    pub record_timeline: bool,
}

impl Default for RandomKnobs {
    fn default() -> Self {
        Self {
            within_assumptions: true,
            regions: 2,
            record_timeline: false,
        }
    }
}

/// What a random schedule is for: the soak and the property tests read these back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandomSchedule {
    /// The run.
    pub spec: SimSpec,
    /// When every fault is healed.
    pub healed_at: Duration,
    /// When the active of that moment is crashed (liveness probe).
    pub crash_at: Duration,
    /// The largest witness delay used.
    pub max_delay: Duration,
}

/// A random schedule from `seed`: random faults for a while, then everything heals, then
/// after a settling period the active region is crashed (by [`run_random`]), so that
/// every run checks safety under faults and the promotion time after a clean loss.
#[must_use]
#[allow(clippy::many_single_char_names)] // i: region, k: resolver, r: endpoint, as in the paper notation of the README
pub fn random_spec(config: &FailoverConfig, seed: u64, knobs: RandomKnobs) -> RandomSchedule {
    let mut rng = SmallRng::seed_from_u64(seed);
    let n = config.regions.len();
    let resolvers = vec![
        "google".to_string(),
        "cloudflare".to_string(),
        "quad9".to_string(),
    ];
    let tick = Duration::from_millis([250, 500, 1000][rng.random_range(0..3)]);
    let fault_for = Duration::from_secs(rng.random_range(60..=240));
    let healed_at = Duration::from_secs(30) + fault_for;
    let crash_at = healed_at + Duration::from_mins(2);
    let duration = crash_at + Duration::from_secs(90);
    let mut max_delay = Duration::from_millis(rng.random_range(0..=400));
    let witness_delay = max_delay;
    // The one resolver allowed to be wrong (lie or be cut from a region) in this run.
    let wrong = rng.random_range(0..3);
    let mut faults = Vec::new();
    let mut crashed = vec![false; n];
    let count = rng.random_range(3..=30);
    for _ in 0..count {
        let at = Duration::from_millis(
            rng.random_range(30_000..u64::try_from(healed_at.as_millis()).unwrap_or(60_000)),
        );
        let i = rng.random_range(0..n);
        let k = rng.random_range(0..3);
        let r = Endpoint::Region(i);
        let fault = match rng.random_range(0..16) {
            0 => Fault::Partition(r, Endpoint::Witness),
            1 => Fault::Heal(r, Endpoint::Witness),
            2 => Fault::Partition(r, Endpoint::Internet),
            3 => Fault::Heal(r, Endpoint::Internet),
            4 => Fault::Partition(Endpoint::Witness, Endpoint::Internet),
            5 => Fault::Heal(Endpoint::Witness, Endpoint::Internet),
            6 => Fault::Partition(r, Endpoint::Region((i + 1) % n)),
            7 if !crashed[i] => {
                crashed[i] = true;
                Fault::Crash(i)
            }
            7 => {
                crashed[i] = false;
                Fault::Restart(i)
            }
            8 => Fault::Skew(
                i,
                if knobs.within_assumptions {
                    rng.random_range(-8_000..=8_000)
                } else {
                    rng.random_range(-60_000..=60_000)
                },
            ),
            9 => Fault::Drift(
                i,
                if knobs.within_assumptions {
                    rng.random_range(-5000..=5000)
                } else {
                    rng.random_range(-300_000..=300_000)
                },
            ),
            10 => Fault::ResolverDown(k),
            11 => Fault::ResolverUp(k),
            12 => Fault::ResolverLie(if knobs.within_assumptions { wrong } else { k }),
            13 => Fault::ResolverHonest(k),
            14 => Fault::Partition(
                r,
                Endpoint::Resolver(if knobs.within_assumptions { wrong } else { k }),
            ),
            _ => {
                let d = rng.random_range(0..=900);
                max_delay = max_delay.max(Duration::from_millis(d));
                Fault::WitnessDelay(d)
            }
        };
        faults.push(TimedFault { at, fault });
    }
    faults.push(TimedFault {
        at: healed_at,
        fault: Fault::HealAll,
    });
    faults.push(TimedFault {
        at: healed_at,
        fault: Fault::WitnessDelay(u64::try_from(witness_delay.as_millis()).unwrap_or(0)),
    });
    RandomSchedule {
        spec: SimSpec {
            config: config.clone(),
            resolvers,
            tick,
            duration,
            witness_delay,
            faults,
            record_timeline: knobs.record_timeline,
        },
        healed_at,
        crash_at,
        max_delay,
    }
}

/// Outcome of one random schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomOutcome {
    /// The seed.
    pub seed: u64,
    /// The run's report.
    pub report: SimReport,
    /// Seconds from crashing the active to the next active (None: none was active at the
    /// crash, or none took over).
    pub promotion_s: Option<f64>,
    /// Whether a region was active when the probe crashed it.
    pub active_at_crash: bool,
    /// The bound the promotion must meet, in seconds.
    pub bound_s: f64,
}

/// Runs a random schedule: first to find who is active at `crash_at`, then again with
/// that region crashed there (same seed, so the runs agree up to the crash).
#[must_use]
pub fn run_random(config: &FailoverConfig, seed: u64, knobs: RandomKnobs) -> RandomOutcome {
    let sched = random_spec(config, seed, knobs);
    let bound_s = secs(promotion_bound(&sched.spec, sched.max_delay));
    let mut probe = sched.spec.clone();
    probe.duration = sched.crash_at;
    let first = run(&probe);
    let active = first
        .intervals
        .iter()
        .find(|iv| iv.until_s.is_none())
        .and_then(|iv| config.regions.iter().position(|r| r.as_str() == iv.region));
    let Some(victim) = active else {
        return RandomOutcome {
            seed,
            report: first,
            promotion_s: None,
            active_at_crash: false,
            bound_s,
        };
    };
    let mut spec = sched.spec;
    spec.faults.push(TimedFault {
        at: sched.crash_at,
        fault: Fault::Crash(victim),
    });
    let report = run(&spec);
    let crash_s = secs(sched.crash_at);
    let promotion_s = report
        .intervals
        .iter()
        .find(|iv| iv.from_s >= crash_s)
        .map(|iv| iv.from_s - crash_s);
    RandomOutcome {
        seed,
        report,
        promotion_s,
        active_at_crash: true,
        bound_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Mode, Quorum, Timings, WitnessLossPolicy};

    pub(crate) fn cfg(regions: &[&str]) -> FailoverConfig {
        FailoverConfig {
            regions: regions.iter().map(|r| RegionId::from(*r)).collect(),
            this_region: RegionId::from(regions[0]),
            timings: Timings::handbook(),
            mode: Mode::Automatic,
            witness_loss: WitnessLossPolicy::DnsQuorum,
            quorum: Quorum::TWO_OF_THREE,
        }
    }

    fn spec(faults: Vec<TimedFault>) -> SimSpec {
        SimSpec {
            config: cfg(&["a", "b"]),
            resolvers: vec!["r1".into(), "r2".into(), "r3".into()],
            tick: Duration::from_millis(500),
            duration: Duration::from_secs(200),
            witness_delay: Duration::from_millis(50),
            faults,
            record_timeline: true,
        }
    }

    #[test]
    fn quiet_run_bootstraps_one_active_and_keeps_it() {
        let r = run(&spec(vec![]));
        assert!(!r.split_brain);
        assert_eq!(r.intervals.len(), 1, "{:?}", r.intervals);
        assert_eq!(r.intervals[0].region, "a");
        assert!(r.intervals[0].until_s.is_none());
    }

    #[test]
    fn crash_of_the_active_promotes_the_standby_within_the_bound() {
        let s = spec(vec![TimedFault {
            at: Duration::from_mins(1),
            fault: Fault::Crash(0),
        }]);
        let r = run(&s);
        assert!(!r.split_brain);
        let took = r.first_promotion_after_loss();
        assert!(
            took.is_some_and(|t| t <= secs(promotion_bound(&s, Duration::from_millis(50)))),
            "{took:?} {:#?}",
            r.timeline
        );
        assert_eq!(r.intervals.last().map(|i| i.region.as_str()), Some("b"));
    }

    #[test]
    fn same_spec_same_report() {
        let c = cfg(&["a", "b", "c"]);
        let a = run_random(&c, 42, RandomKnobs::default());
        let b = run_random(&c, 42, RandomKnobs::default());
        assert_eq!(a, b);
    }
}
