//! The controller loop: `observe -> decide -> execute` every tick, on an injected
//! [`Clock`], until a shutdown signal.
//!
//! One tick reads the witness and the resolvers ([`crate::observe`]), hands them with the
//! answer to the previous tick's lease write to [`decide`], carries out the actions
//! ([`crate::execute`]) and publishes a [`RuntimeStatus`] snapshot on a watch channel
//! (the binary turns it into `/metrics` and `/healthz`). Lease writes are answered
//! within the tick (under the witness timeout) and fed to the next decision, stamped
//! with the monotonic time the decision was taken: the core counts a lease from then.
//!
//! A layer plan that stopped at a failed step is run again on the following ticks, from
//! the start (every step is idempotent), for as long as the role still wants it.
//!
//! **Shutdown**: the loop stops between ticks; if this region holds the lease it releases
//! it with a compare-and-swap (so a successor need not wait out the TTL) and returns.
//! It does *not* run the demotion plan: layers stay as they are, and the successor's
//! promotion plan fences the old primary and takes the routes with a higher
//! generation, which the layers accept over ours. To step down with the layers withdrawn
//! first, demote before stopping.

use crate::control::{Control, ControlSettings};
use crate::decide::decide;
use crate::execute::{ExecutePorts, Tick, execute, run_plan};
use crate::model::{FailoverConfig, Observations, WitnessObservation, WriteResult};
use crate::observe::{ObservePorts, ResolverAnswer, observe};
use crate::plan::{Direction, LayerPlan};
use crate::state::{FailoverState, Role};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sre_core::ports::{CasOutcome, WitnessRead};
use sre_core::{Clock, Generation, RegionId};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;

/// How the loop paces itself, beyond the failover timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RunSettings {
    /// Time between two ticks. Must be shorter than the renew interval, or renewals
    /// happen late and the holder fences itself.
    pub tick: Duration,
    /// Limit for one layer-plan step, read-back included.
    pub step_timeout: Duration,
}

impl RunSettings {
    /// A one-second tick and a ten-second step timeout.
    #[must_use]
    pub fn standard() -> Self {
        Self {
            tick: Duration::from_secs(1),
            step_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the loop cannot start with this wiring.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RunError {
    /// The tick is zero or not below the renew interval.
    #[error("tick {tick:?} must be above zero and below the renew interval {renew:?}")]
    BadTick {
        /// The configured tick.
        tick: Duration,
        /// The renew interval.
        renew: Duration,
    },
    /// The quorum counts a different number of resolvers than are wired in.
    #[error("the quorum is {needed} of {of} but {got} resolvers are configured")]
    ResolverCount {
        /// Answers needed.
        needed: usize,
        /// Resolvers the quorum expects.
        of: usize,
        /// Resolvers configured.
        got: usize,
    },
    /// A region has no health name to ask the resolvers about.
    #[error("no health name for region {region}")]
    MissingHealthName {
        /// The region.
        region: RegionId,
    },
}

impl RunError {
    /// A stable label for metrics and exit-code mapping.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadTick { .. } => "bad_tick",
            Self::ResolverCount { .. } => "resolver_count",
            Self::MissingHealthName { .. } => "missing_health_name",
        }
    }
}

/// The witness as last read, summarised for metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaseSummary {
    /// Who holds (or last held) it.
    pub holder: RegionId,
    /// Its generation.
    pub generation: Generation,
    /// Whether the holder gave it up.
    pub released: bool,
    /// Wall seconds since its last renewal, by this host's clock (0 when in the future).
    pub age_seconds: f64,
}

/// What the controller is doing, published after every tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuntimeStatus {
    /// This region.
    pub region: RegionId,
    /// The core's role.
    pub role: Role,
    /// Active and the promotion plan complete (in lease-only mode: active).
    pub serving: bool,
    /// Whether the last witness read answered.
    pub witness_reachable: bool,
    /// The record at the witness, when one was read.
    pub lease: Option<LeaseSummary>,
    /// Every resolver's answer about every region at the last tick.
    pub answers: Vec<ResolverAnswer>,
    /// When this region last became active.
    pub last_failover_at: Option<DateTime<Utc>>,
    /// The last layer plan run, as it ended.
    pub plan: Option<LayerPlan>,
    /// True when no layers are wired (the controller only holds the lease).
    pub lease_only: bool,
    /// Pages raised, by reason.
    pub pages_total: BTreeMap<String, u64>,
    /// Approvals requested.
    pub approvals_requested_total: u64,
    /// Times this region fenced itself.
    pub fences_total: u64,
    /// Evidence appends that failed.
    pub evidence_failures_total: u64,
    /// Ticks run.
    pub ticks_total: u64,
}

impl RuntimeStatus {
    /// The status before the first tick: standby, nothing observed.
    #[must_use]
    pub fn new(region: RegionId, lease_only: bool) -> Self {
        Self {
            region,
            role: Role::Standby,
            serving: false,
            witness_reachable: false,
            lease: None,
            answers: Vec::new(),
            last_failover_at: None,
            plan: None,
            lease_only,
            pages_total: BTreeMap::new(),
            approvals_requested_total: 0,
            fences_total: 0,
            evidence_failures_total: 0,
            ticks_total: 0,
        }
    }
}

/// What happened to the lease at shutdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseOutcome {
    /// This region did not hold the lease.
    NotHeld,
    /// The lease is marked released at the witness.
    Released,
    /// The record changed under us: someone else holds it now.
    Conflict,
    /// The witness could not be reached; the lease lapses after its TTL instead.
    Failed,
}

/// The ports of both halves of the shell.
#[derive(Debug, Clone)]
pub struct Ports {
    /// What observation reads.
    pub observe: ObservePorts,
    /// What execution drives (its witness is normally the same as `observe.witness`).
    pub execute: ExecutePorts,
}

/// One region's controller loop.
pub struct Runtime {
    config: FailoverConfig,
    settings: RunSettings,
    ports: Ports,
    clock: Arc<dyn Clock>,
    state: FailoverState,
    last_write: Option<WriteResult>,
    status: watch::Sender<RuntimeStatus>,
    control: Control,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("region", &self.config.this_region)
            .field("role", &self.state.role)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A loop for `config.this_region`, refusing wiring that cannot work.
    pub fn new(
        config: FailoverConfig,
        ports: Ports,
        clock: Arc<dyn Clock>,
        settings: RunSettings,
    ) -> Result<Self, RunError> {
        let renew = config.timings.renew_interval;
        if settings.tick.is_zero() || settings.tick >= renew {
            return Err(RunError::BadTick {
                tick: settings.tick,
                renew,
            });
        }
        let got = ports.observe.resolvers.len();
        if got != config.quorum.of() {
            return Err(RunError::ResolverCount {
                needed: config.quorum.needed(),
                of: config.quorum.of(),
                got,
            });
        }
        if let Some(region) = config
            .regions
            .iter()
            .find(|r| ports.observe.health.get(r).is_none())
        {
            return Err(RunError::MissingHealthName {
                region: region.clone(),
            });
        }
        let status = RuntimeStatus::new(config.this_region.clone(), ports.execute.layers.is_none());
        Ok(Self {
            settings,
            ports,
            clock,
            state: FailoverState::new(),
            last_write: None,
            status: watch::channel(status).0,
            control: Control::new(ControlSettings::for_region(&config.this_region)),
            config,
        })
    }

    /// Replaces the approval settings (requester, approvers, TTL).
    #[must_use]
    pub fn with_control(mut self, settings: ControlSettings) -> Self {
        self.control = Control::new(settings);
        self
    }

    /// The handle through which approvals and operator commands reach the loop.
    #[must_use]
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// A receiver of the status published after every tick.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<RuntimeStatus> {
        self.status.subscribe()
    }

    /// The core's state as of the last tick.
    #[must_use]
    pub fn state(&self) -> &FailoverState {
        &self.state
    }

    /// The status as of the last tick.
    #[must_use]
    pub fn status(&self) -> RuntimeStatus {
        self.status.borrow().clone()
    }

    fn tick_facts(&self) -> Tick {
        Tick {
            region: self.config.this_region.clone(),
            now: self.clock.monotonic(),
            wall: self.clock.wall(),
            witness_timeout: self.config.timings.witness_timeout,
            step_timeout: self.settings.step_timeout,
        }
    }

    /// One round: observe, decide, execute, publish.
    #[tracing::instrument(skip_all, fields(region = %self.config.this_region))]
    pub async fn tick(&mut self) {
        let observed = observe(&self.ports.observe, &self.config).await;
        let tick = self.tick_facts();
        let prev = self.status.borrow().clone();
        let mut obs = Observations::new(tick.wall, observed.witness.clone());
        obs.dns = observed.dns;
        obs.write = self.last_write.take();
        obs.approval_granted = self.control.approval_granted(tick.wall);
        obs.operator = self.control.pending_command(tick.wall);
        // The core leaves Fenced/Demoting only once the layers are withdrawn.
        obs.demotion_complete = prev
            .plan
            .as_ref()
            .is_none_or(|p| p.direction == Direction::Promotion || p.is_complete());
        let before = self.state.role;
        let (state, actions) = decide(&self.config, &self.state, &obs, tick.now);
        self.state = state;
        let after = self.state.role;
        if before.name() != after.name() {
            tracing::info!(
                from = before.name(),
                to = after.name(),
                lease_epoch = after.generation().map(|g| g.0),
                "role changed"
            );
        }
        let mut executed = execute(&self.ports.execute, &tick, actions).await;
        let again = self
            .control
            .settle(after, self.state.approval_requested, tick.wall);
        for generation in executed.approvals.iter().copied().chain(again) {
            let id = self.control.request(generation, tick.wall);
            tracing::warn!(plan_id = %id, lease_epoch = generation.0, "approval requested: sre failover approve {id}");
        }
        self.last_write = executed.write.take();
        let mut plan = executed.plans.pop().or(prev.plan.clone());
        // Retry a plan that stopped, while the role still wants it.
        if let Some(p) = plan.as_ref().filter(|p| self.wants_again(p)) {
            let fresh = match p.direction {
                Direction::Promotion => LayerPlan::promotion(p.generation),
                Direction::Demotion => LayerPlan::demotion(p.generation),
            };
            let (p, failures) = run_plan(&self.ports.execute, &tick, fresh).await;
            executed.evidence_failures += failures;
            plan = Some(p);
        }
        self.publish(
            prev,
            &observed.witness,
            observed.answers,
            plan,
            &executed,
            before,
            tick.wall,
        );
    }

    /// True when `plan` did not finish and the current role still asks for it.
    fn wants_again(&self, plan: &LayerPlan) -> bool {
        if plan.is_complete() {
            return false;
        }
        match (plan.direction, self.state.role) {
            (Direction::Promotion, Role::Active { generation, .. }) => {
                generation == plan.generation
            }
            (Direction::Demotion, Role::Fenced { .. } | Role::Demoting { .. }) => true,
            _ => false,
        }
    }

    #[allow(clippy::too_many_arguments)] // one snapshot from the pieces of one tick
    fn publish(
        &self,
        prev: RuntimeStatus,
        witness: &WitnessObservation,
        answers: Vec<ResolverAnswer>,
        plan: Option<LayerPlan>,
        executed: &crate::execute::Executed,
        before: Role,
        wall: DateTime<Utc>,
    ) {
        let role = self.state.role;
        let mut s = prev;
        if role.is_active() && !before.is_active() {
            s.last_failover_at = Some(wall);
        }
        s.role = role;
        s.serving = match (role, &plan) {
            (Role::Active { generation, .. }, Some(p)) => {
                p.direction == Direction::Promotion && p.generation == generation && p.is_complete()
            }
            _ => false,
        };
        s.witness_reachable = *witness != WitnessObservation::Unreachable;
        s.lease = match witness {
            WitnessObservation::Present { record, .. } => Some(LeaseSummary {
                holder: record.holder.clone(),
                generation: record.generation,
                released: record.released,
                age_seconds: (wall - record.renewed_at)
                    .to_std()
                    .map_or(0.0, |d| d.as_secs_f64()),
            }),
            WitnessObservation::Unreachable => s.lease,
            WitnessObservation::Absent | WitnessObservation::Malformed { .. } => None,
        };
        s.answers = answers;
        s.plan = plan;
        for p in &executed.pages {
            *s.pages_total.entry(p.to_string()).or_default() += 1;
        }
        s.approvals_requested_total += executed.approvals.len() as u64;
        s.fences_total += u64::from(executed.fenced.is_some());
        s.evidence_failures_total += executed.evidence_failures;
        s.ticks_total += 1;
        self.status.send_replace(s);
    }

    /// Runs ticks every [`RunSettings::tick`] until `shutdown` completes, then releases
    /// the lease if this region holds it (see the module docs for why only that).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> ReleaseOutcome {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            self.tick().await;
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.settings.tick) => {}
            }
        }
        let outcome = self.release().await;
        tracing::info!(?outcome, "controller stopped");
        outcome
    }

    /// Releases the lease by compare-and-swap if the witness shows this region holding
    /// it at the generation of its current role. Stops acting as active either way.
    pub async fn release(&mut self) -> ReleaseOutcome {
        let Some(generation) = self.state.role.generation() else {
            return ReleaseOutcome::NotHeld;
        };
        let t = &self.config.timings;
        let tick = self.tick_facts();
        let read = tokio::time::timeout(t.witness_timeout, self.ports.execute.witness.read()).await;
        let (mut record, revision) = match read {
            Ok(Ok(WitnessRead::Present { record, revision }))
                if record.holder == self.config.this_region
                    && record.generation == generation
                    && !record.released =>
            {
                (record, revision)
            }
            Ok(Ok(_)) => return ReleaseOutcome::NotHeld,
            _ => return ReleaseOutcome::Failed,
        };
        record.released = true;
        record.renewed_at = tick.wall;
        let cas = self
            .ports
            .execute
            .witness
            .compare_and_swap(Some(&revision), &record);
        let outcome = match tokio::time::timeout(t.witness_timeout, cas).await {
            Ok(Ok(CasOutcome::Swapped(_))) => ReleaseOutcome::Released,
            Ok(Ok(CasOutcome::Conflict)) => ReleaseOutcome::Conflict,
            _ => ReleaseOutcome::Failed,
        };
        self.state.role = Role::Fenced { generation };
        let mut s = self.status();
        s.role = self.state.role;
        s.serving = false;
        self.status.send_replace(s);
        if let Some(sink) = &self.ports.execute.evidence {
            let d = serde_json::json!({ "generation": generation.0, "reason": "shutdown", "outcome": outcome });
            let actor = format!("failover-controller/{}", tick.region);
            let subject = format!("generation/{}", generation.0);
            if let Err(e) = sink
                .append(&actor, "failover.lease.release", &subject, d, tick.wall)
                .await
            {
                tracing::warn!(error = %e, "evidence append failed");
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::execute::Layers;
    use crate::model::{OperatorCommand, RawFailoverConfig};
    use crate::observe::HealthNames;
    use crate::testing::{CutWitness, MemLayers};
    use sre_core::ports::{LookupOutcome, RecordKind, Resolver, Witness};
    use sre_core::testing::{MemResolver, MemWitness};
    use sre_core::{ManualClock, MonoTime};

    fn config(this: &str) -> FailoverConfig {
        config_in(this, "automatic")
    }

    fn config_in(this: &str, mode: &str) -> FailoverConfig {
        let raw: RawFailoverConfig = serde_json::from_value(serde_json::json!({
            "regions": ["eu", "us"],
            "this_region": this,
            "mode": mode,
            "timings": {
                "renew_interval": "2s", "lease_ttl": "6s", "skew_margin": "1s",
                "witness_timeout": "500ms", "dns_timeout": "500ms", "retries": 1
            }
        }))
        .unwrap_or_else(|e| panic!("fixture: {e}"));
        let c = raw.validate().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(crate::lint::check(&c), vec![], "test timings pass the lint");
        c
    }

    struct Region {
        rt: Runtime,
        link: CutWitness,
        layers: MemLayers,
    }

    fn region(
        this: &str,
        witness: &MemWitness,
        resolvers: &[MemResolver],
        clock: Arc<dyn Clock>,
    ) -> Region {
        region_in(config(this), witness, resolvers, clock)
    }

    fn region_in(
        cfg: FailoverConfig,
        witness: &MemWitness,
        resolvers: &[MemResolver],
        clock: Arc<dyn Clock>,
    ) -> Region {
        let link = CutWitness::new(Arc::new(witness.clone()));
        let layers = MemLayers::new();
        let w: Arc<dyn Witness> = Arc::new(link.clone());
        let ports = Ports {
            observe: ObservePorts {
                witness: w.clone(),
                resolvers: resolvers
                    .iter()
                    .map(|r| Arc::new(r.clone()) as Arc<dyn Resolver>)
                    .collect(),
                health: HealthNames::for_zone(&cfg.regions, "example.com", &BTreeMap::new()),
            },
            execute: ExecutePorts {
                witness: w,
                layers: Some(layers.layers()),
                evidence: None,
            },
        };
        let settings = RunSettings {
            tick: Duration::from_millis(500),
            step_timeout: Duration::from_secs(1),
        };
        let rt = Runtime::new(cfg, ports, clock, settings).unwrap_or_else(|e| panic!("{e}"));
        Region { rt, link, layers }
    }

    fn resolvers() -> Vec<MemResolver> {
        let rs: Vec<MemResolver> = ["r1", "r2", "r3"]
            .into_iter()
            .map(MemResolver::new)
            .collect();
        for r in &rs {
            for n in ["eu.health.example.com", "us.health.example.com"] {
                r.set_addr(n, [192, 0, 2, 1].into());
            }
        }
        rs
    }

    fn gone(rs: &[MemResolver], name: &str) {
        for r in rs {
            r.set(name, RecordKind::A, LookupOutcome::NxDomain);
        }
    }

    #[tokio::test]
    async fn the_other_region_promotes_within_the_bound_and_never_both_are_active() {
        let clock = ManualClock::at_epoch();
        let (w, rs) = (MemWitness::new(), resolvers());
        let c: Arc<dyn Clock> = Arc::new(clock.clone());
        let mut eu = region("eu", &w, &rs, c.clone());
        let mut us = region("us", &w, &rs, c);
        let step = Duration::from_millis(500);
        let mut cut_at: Option<MonoTime> = None;
        let mut us_active_at = None;
        for i in 0..120 {
            eu.rt.tick().await;
            us.rt.tick().await;
            let (a, b) = (eu.rt.state().is_active(), us.rt.state().is_active());
            assert!(!(a && b), "split brain at tick {i}");
            if cut_at.is_none() && eu.rt.status().serving && i > 20 {
                // eu is active and serving: cut it off the witness and the internet.
                assert!(eu.layers.serving());
                eu.link.set_cut(true);
                gone(&rs, "eu.health.example.com");
                cut_at = Some(clock.monotonic());
            }
            if b && us_active_at.is_none() {
                us_active_at = Some(clock.monotonic());
                break;
            }
            clock.advance(step);
        }
        let (Some(cut), Some(active)) = (cut_at, us_active_at) else {
            panic!("eu never served ({cut_at:?}) or us never promoted ({us_active_at:?})");
        };
        let t = config("us").timings;
        let bound = t.lease_ttl + t.renew_interval + t.skew_margin + step * 2;
        let took = active.saturating_since(cut);
        assert!(took <= bound, "us promoted after {took:?}, bound {bound:?}");
        assert!(eu.rt.status().fences_total >= 1);
        assert!(
            !eu.layers.external.serving("routes"),
            "eu withdrew its routes"
        );
        // us finishes its plan on the next tick and serves with a higher generation.
        us.rt.tick().await;
        assert!(us.rt.status().serving && us.layers.serving());
        let (ge, gu) = (
            eu.layers.stateful.generation(),
            us.layers.stateful.generation(),
        );
        assert!(gu > ge, "generations grow: eu {ge:?}, us {gu:?}");
    }

    /// Monotonic time that follows tokio's (paused) clock, so `run` can be tested.
    struct TokioClock(tokio::time::Instant, ManualClock);
    impl Clock for TokioClock {
        fn wall(&self) -> DateTime<Utc> {
            self.1.wall() + chrono::Duration::from_std(self.0.elapsed()).unwrap_or_default()
        }
        fn monotonic(&self) -> MonoTime {
            MonoTime(self.0.elapsed())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn run_takes_the_lease_and_releases_it_on_shutdown() {
        let (w, rs) = (MemWitness::new(), resolvers());
        let clock = Arc::new(TokioClock(
            tokio::time::Instant::now(),
            ManualClock::at_epoch(),
        ));
        let eu = region("eu", &w, &rs, clock);
        let status = eu.rt.subscribe();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(eu.rt.run(async {
            let _ = rx.await;
        }));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(status.borrow().serving, "{:?}", status.borrow());
        assert!(status.borrow().last_failover_at.is_some());
        let _ = tx.send(());
        let outcome = task.await.unwrap_or(ReleaseOutcome::Failed);
        assert_eq!(outcome, ReleaseOutcome::Released);
        let released =
            matches!(w.read().await, Ok(WitnessRead::Present { record, .. }) if record.released);
        assert!(released);
        assert!(!status.borrow().serving);
    }

    /// Ticks `n` times, `step` apart.
    async fn ticks(rt: &mut Runtime, clock: &ManualClock, n: usize) {
        for _ in 0..n {
            rt.tick().await;
            clock.advance(Duration::from_millis(500));
        }
    }

    #[tokio::test]
    async fn semi_automatic_promotes_only_after_an_unexpired_approval() {
        use sre_core::approval::Principal;
        let clock = ManualClock::at_epoch();
        let (w, rs) = (MemWitness::new(), resolvers());
        let c: Arc<dyn Clock> = Arc::new(clock.clone());
        let mut eu = region_in(config_in("eu", "semi-automatic"), &w, &rs, c);
        let mut settings = ControlSettings::for_region(&RegionId::new("eu"));
        settings.ttl = Duration::from_secs(30);
        eu.rt = eu.rt.with_control(settings);
        let control = eu.rt.control();
        ticks(&mut eu.rt, &clock, 40).await;
        assert_eq!(
            eu.rt.state().role,
            Role::Standby,
            "no promotion without approval"
        );
        let first = control.status(clock.wall()).approval.map(|a| a.plan_id);
        let Some(first) = first else {
            panic!(
                "an approval was requested: {:?}",
                control.status(clock.wall())
            )
        };
        // The controller cannot approve its own request (four eyes).
        let own = control.approve(
            &first,
            Principal::new("failover-controller/eu"),
            clock.wall(),
        );
        assert_eq!(own.err().map(|e| e.kind()), Some("self_approval"));
        // Let it expire: a late approval is refused and the region stays standby.
        ticks(&mut eu.rt, &clock, 70).await;
        let late = control.approve(&first, Principal::new("ana"), clock.wall());
        assert!(
            late.is_err(),
            "an expired or superseded request cannot be approved"
        );
        ticks(&mut eu.rt, &clock, 2).await;
        assert_eq!(eu.rt.state().role, Role::Standby);
        // The loop asked again with a new plan id; approving that one promotes.
        let second = control.status(clock.wall()).approval.map(|a| a.plan_id);
        let Some(second) = second.filter(|s| *s != first) else {
            panic!("a new request after expiry")
        };
        let ok = control.approve(&second, Principal::new("ana"), clock.wall());
        assert!(ok.is_ok(), "{ok:?}");
        ticks(&mut eu.rt, &clock, 6).await;
        assert!(eu.rt.state().is_active(), "{:?}", eu.rt.state());
        assert!(eu.rt.status().serving && eu.layers.serving());
    }

    #[tokio::test]
    async fn manual_mode_promotes_only_on_the_promote_command() {
        use sre_core::approval::Principal;
        let clock = ManualClock::at_epoch();
        let (w, rs) = (MemWitness::new(), resolvers());
        let c: Arc<dyn Clock> = Arc::new(clock.clone());
        let mut eu = region_in(config_in("eu", "manual"), &w, &rs, c);
        let control = eu.rt.control();
        ticks(&mut eu.rt, &clock, 60).await;
        assert_eq!(
            eu.rt.state().role,
            Role::Standby,
            "manual: never on its own"
        );
        control.command(
            OperatorCommand::Promote,
            Principal::new("ana"),
            clock.wall(),
        );
        ticks(&mut eu.rt, &clock, 6).await;
        assert!(eu.rt.state().is_active(), "{:?}", eu.rt.state());
        assert!(control.status(clock.wall()).promote.is_none(), "consumed");
        control.command(OperatorCommand::Demote, Principal::new("ana"), clock.wall());
        ticks(&mut eu.rt, &clock, 2).await;
        assert!(!eu.rt.state().is_active(), "{:?}", eu.rt.state());
        assert!(
            !eu.layers.external.serving("routes"),
            "demotion withdrew the routes"
        );
    }

    #[test]
    fn wiring_that_cannot_work_is_refused() {
        let (w, rs) = (MemWitness::new(), resolvers());
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::at_epoch());
        let ok = region("eu", &w, &rs, clock.clone());
        let mut ports = ok.rt.ports.clone();
        let settings = RunSettings {
            tick: Duration::from_secs(2),
            step_timeout: Duration::from_secs(1),
        };
        let e = Runtime::new(config("eu"), ports.clone(), clock.clone(), settings).err();
        assert_eq!(e.map(|e| e.kind()), Some("bad_tick"));
        ports.observe.resolvers.pop();
        let e = Runtime::new(config("eu"), ports, clock, RunSettings::standard()).err();
        assert_eq!(e.map(|e| e.kind()), Some("resolver_count"));
        let _: Option<Layers> = None;
    }
}
