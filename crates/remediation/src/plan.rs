//! The remediation engine: a pure function from what we remember ([`EngineState`]), what
//! Alertmanager just sent and `now` to a plan with a reason for every alert.
//!
//! No IO and no clock: the webhook shell passes `now` from its injected clock and carries
//! out the plan. The safety checks run in a fixed order so that the cheap, state-free
//! ones come first and the circuit breaker's single trial slot is only used by an action
//! that every other check allowed: dedupe, stale-after-resolve, rule match, labels,
//! per-batch coalescing, backoff, blast radius, replica share, budget source, then the
//! sre-core [`Guard`] (cooldown, budget, breaker).
//!
//! Accounting is pessimistic: a planned remediation counts as "did not help" (a breaker
//! failure) until the alert resolves or the shell reports a verified success. After
//! `escalate_after` such remediations of one target the breaker opens and the engine
//! escalates instead of acting again.

use crate::payload::{Alert, AlertStatus};
use crate::rules::{ActionSpec, Effect, ResolvedRule, RuleSet, Target, VerifySpec};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sre_core::MonoTime;
use sre_core::guard::{Backoff, Budget, Cents, CircuitBreaker, Cost, Decision, Guard, GuardBlock};
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::time::Duration;

/// Limits on how much the engine may change at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlastRadius {
    /// At most this many distinct targets changed per `window`.
    pub max_targets: NonZeroU32,
    /// The sliding window.
    pub window: Duration,
    /// At most this percentage of a workload's replicas taken down per `window` (at least
    /// one pod is always allowed, or a single-replica workload could never be healed).
    pub max_replica_pct: u32,
}

/// The engine's tuning, validated by the caller's config stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Minimum spacing of two actions on one target.
    pub cooldown: Duration,
    /// Spacing of retries that did not help: the n-th consecutive unhelpful remediation
    /// (n >= 2) waits `backoff.cap(n - 1)` after the previous one.
    pub backoff: Backoff,
    /// Escalate instead of acting after this many remediations of one target that did not
    /// help.
    pub escalate_after: NonZeroU32,
    /// How long a target stays escalated before one trial remediation is allowed again.
    pub escalation_cool_off: Duration,
    /// A re-delivery of an alert already handled within this window is a duplicate.
    pub dedupe_window: Duration,
    /// Blast-radius limits.
    pub blast_radius: BlastRadius,
    /// Spend budget for scale-ups; `None` means no budget gate is configured.
    pub budget: Option<Budget>,
    /// How long resolved alerts and attempt counters are remembered.
    pub retention: Duration,
}

/// Facts from outside the alert that some checks need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observations {
    /// Spend so far in the budget period; unknown spend blocks scale-ups when a budget is
    /// configured (fail closed).
    pub spend: Option<Cents>,
    /// Replica counts by workload key (`namespace/name`).
    pub replicas: BTreeMap<String, u32>,
}

#[derive(Debug, Clone)]
struct Handled {
    starts_at: DateTime<Utc>,
    at: MonoTime,
}

#[derive(Debug, Clone)]
struct Resolved {
    starts_at: DateTime<Utc>,
    at: MonoTime,
}

#[derive(Debug, Clone, Copy)]
struct Attempts {
    unhelped: u32,
    last: MonoTime,
}

#[derive(Debug, Clone)]
struct Pending {
    target: Target,
    /// The breaker's single trial: its failure is recorded on the outcome, not at plan
    /// time, because only the trial's own outcome may close or re-open the breaker.
    trial: bool,
}

#[derive(Debug, Clone)]
struct Change {
    at: MonoTime,
    target: Target,
    pod_group: Option<String>,
}

/// Everything the engine remembers between deliveries. Plain data, built from a
/// [`Policy`]; the shell keeps one per process.
#[derive(Debug, Clone)]
pub struct EngineState {
    guard: Guard<Target>,
    handled: BTreeMap<String, Handled>,
    resolved: BTreeMap<String, Resolved>,
    pending: BTreeMap<String, Pending>,
    attempts: BTreeMap<Target, Attempts>,
    changes: Vec<Change>,
    escalated: BTreeMap<Target, MonoTime>,
}

impl EngineState {
    /// Empty state for `policy` (its cooldown, breaker and budget live in the guard).
    #[must_use]
    pub fn new(policy: &Policy) -> Self {
        Self {
            guard: Guard::new(
                policy.cooldown,
                CircuitBreaker::new(policy.escalate_after, policy.escalation_cool_off),
                policy.budget,
            ),
            handled: BTreeMap::new(),
            resolved: BTreeMap::new(),
            pending: BTreeMap::new(),
            attempts: BTreeMap::new(),
            changes: Vec::new(),
            escalated: BTreeMap::new(),
        }
    }

    /// Fingerprints with a planned action that has not been reported done.
    #[must_use]
    pub fn pending(&self) -> Vec<&str> {
        self.pending.keys().map(String::as_str).collect()
    }
}

/// What the shell reports after carrying out (or not) a planned action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Executed and the verification held: resets the target's failure count.
    Helped,
    /// Executed but verification timed out: stays counted towards escalation.
    NotHelped,
    /// Never executed (dry run, no executor): the work is no longer pending.
    NotExecuted,
}

/// Records the outcome of the action planned for `fingerprint`.
pub fn record_outcome(state: &mut EngineState, fingerprint: &str, outcome: Outcome, now: MonoTime) {
    let Some(Pending { target, trial }) = state.pending.remove(fingerprint) else {
        return;
    };
    match outcome {
        Outcome::Helped => {
            state.guard.record_success(&target, now);
            state.attempts.remove(&target);
        }
        // A normal action was already counted as a failure when it was planned.
        Outcome::NotHelped if trial => state.guard.record_failure(&target, now),
        // An unexecuted trial leaves the breaker half-open; the next one comes after the
        // cool-off.
        Outcome::NotHelped | Outcome::NotExecuted => {}
    }
}

/// Why an alert led to no action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Skip {
    /// Same alert (fingerprint and start) handled within the dedupe window: an
    /// at-least-once re-delivery.
    Duplicate,
    /// This alert instance already resolved; a late firing delivery must not act.
    StaleAfterResolve,
    /// The rule needs a label the alert lacks.
    MissingLabel {
        /// The label.
        label: String,
    },
    /// Another alert of this batch already acts on the same target.
    Coalesced,
    /// Earlier remediations did not help; retries are spaced out.
    Backoff {
        /// Seconds until the next try.
        wait_secs: u64,
    },
    /// Too many distinct targets changed in the window.
    BlastRadius {
        /// Targets changed in the window.
        changed: usize,
        /// The limit.
        max: u32,
    },
    /// Too many pods of one workload taken down in the window.
    ReplicaLimit {
        /// Pods already changed.
        changed: usize,
        /// Pods allowed.
        allowed: u32,
    },
    /// A budget is configured but today's spend is not known.
    BudgetUnknown,
    /// The scale-up would reach the budget's block threshold.
    Budget {
        /// Resulting spend in percent of the limit.
        pct: u64,
    },
    /// The target acted too recently.
    Cooldown {
        /// Seconds until it may act again.
        wait_secs: u64,
    },
    /// Escalated already; waiting for humans or the cool-off.
    Escalated {
        /// Seconds until one trial remediation is allowed.
        wait_secs: u64,
    },
    /// A resolved alert with no pending work.
    NothingPending,
}

impl Skip {
    /// Stable label for metrics (`sre_remediation_blocked_total{reason}`).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::StaleAfterResolve => "stale_after_resolve",
            Self::MissingLabel { .. } => "missing_label",
            Self::Coalesced => "coalesced",
            Self::Backoff { .. } => "backoff",
            Self::BlastRadius { .. } => "blast_radius",
            Self::ReplicaLimit { .. } => "replica_limit",
            Self::BudgetUnknown => "budget_unknown",
            Self::Budget { .. } => "budget",
            Self::Cooldown { .. } => "cooldown",
            Self::Escalated { .. } => "escalated",
            Self::NothingPending => "nothing_pending",
        }
    }
}

/// The decision for one alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Carry out `action` on the entry's target, then verify.
    Act {
        /// The action with its parameters.
        action: ActionSpec,
        /// How to check it helped.
        verify: Option<VerifySpec>,
        /// What to undo if it did not.
        rollback: Option<ActionSpec>,
        /// Who hears about it when it did not help (the rule's `escalate_to`, else
        /// [`DEFAULT_ESCALATION`]): the shell escalates right after a failed
        /// verification, not only once the breaker opens.
        escalate_to: String,
        /// Set when the budget passed its warn threshold (log a warning).
        budget_warning_pct: Option<u64>,
        /// True when this is the single trial after an escalation cool-off.
        trial: bool,
    },
    /// Remediation kept failing: tell a human instead of acting again.
    Escalate {
        /// Channel or team.
        to: String,
        /// Remediations that did not help.
        attempts: u32,
    },
    /// The alert resolved: drop the pending action for it.
    Cancel,
    /// No action, for the reason given.
    Skip {
        /// Why.
        skip: Skip,
    },
    /// No rule handles this alert: accepted and logged for analysis.
    Unmatched,
}

/// One line of a plan: one alert and what happens about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanEntry {
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The alert's name.
    pub alertname: String,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// The matching rule, if any.
    pub rule: Option<String>,
    /// The target, when the rule resolved.
    pub target: Option<Target>,
    /// The decision.
    #[serde(flatten)]
    pub verdict: Verdict,
}

impl PlanEntry {
    /// The planned action, when the verdict is [`Verdict::Act`].
    #[must_use]
    pub fn action(&self) -> Option<&ActionSpec> {
        match &self.verdict {
            Verdict::Act { action, .. } => Some(action),
            _ => None,
        }
    }
}

/// Escalation channel when a rule names none.
pub const DEFAULT_ESCALATION: &str = "sre-oncall";

/// Decides what to do about a batch of alerts at `now`, updating `state`.
///
/// Pure: the same state, rules, policy, observations, alerts and `now` give the same plan.
pub fn decide(
    state: &mut EngineState,
    rules: &RuleSet,
    policy: &Policy,
    obs: &Observations,
    alerts: &[Alert],
    now: MonoTime,
) -> Vec<PlanEntry> {
    prune(state, policy, now);
    let mut batch_targets = BTreeSet::new();
    alerts
        .iter()
        .map(|a| {
            let rule = rules.find(a);
            let mut entry = PlanEntry {
                fingerprint: a.fingerprint.clone(),
                alertname: a.alertname().to_owned(),
                status: a.status,
                rule: rule.map(|r| r.name.clone()),
                target: None,
                verdict: Verdict::Unmatched,
            };
            entry.verdict = match a.status {
                AlertStatus::Resolved => on_resolved(state, a, now, &mut entry),
                AlertStatus::Firing => {
                    let resolved = rule.map(|r| r.resolve(&a.labels));
                    if let Some(Ok(r)) = &resolved {
                        entry.target = Some(r.target.clone());
                    }
                    on_firing(state, policy, obs, a, resolved, &mut batch_targets, now)
                }
            };
            entry
        })
        .collect()
}

fn prune(state: &mut EngineState, policy: &Policy, now: MonoTime) {
    let keep = |at: MonoTime, d: Duration| now < at + d;
    state
        .changes
        .retain(|c| keep(c.at, policy.blast_radius.window));
    state.handled.retain(|_, h| keep(h.at, policy.retention));
    state.resolved.retain(|_, r| keep(r.at, policy.retention));
    state.attempts.retain(|_, a| keep(a.last, policy.retention));
}

fn on_resolved(
    state: &mut EngineState,
    a: &Alert,
    now: MonoTime,
    entry: &mut PlanEntry,
) -> Verdict {
    let slot = state
        .resolved
        .entry(a.fingerprint.clone())
        .or_insert(Resolved {
            starts_at: a.starts_at,
            at: now,
        });
    slot.starts_at = slot.starts_at.max(a.starts_at);
    slot.at = now;
    match state.pending.remove(&a.fingerprint) {
        Some(Pending { target, .. }) => {
            // The problem went away: that is what verification would have checked.
            state.guard.record_success(&target, now);
            state.attempts.remove(&target);
            entry.target = Some(target);
            Verdict::Cancel
        }
        None => Verdict::Skip {
            skip: Skip::NothingPending,
        },
    }
}

fn skip(skip: Skip) -> Verdict {
    Verdict::Skip { skip }
}

fn wait(until: MonoTime, now: MonoTime) -> u64 {
    until.saturating_since(now).as_secs()
}

fn on_firing(
    state: &mut EngineState,
    policy: &Policy,
    obs: &Observations,
    a: &Alert,
    resolved: Option<Result<ResolvedRule, crate::rules::MissingLabel>>,
    batch_targets: &mut BTreeSet<Target>,
    now: MonoTime,
) -> Verdict {
    if state
        .resolved
        .get(&a.fingerprint)
        .is_some_and(|r| a.starts_at <= r.starts_at)
    {
        return skip(Skip::StaleAfterResolve);
    }
    if state
        .handled
        .get(&a.fingerprint)
        .is_some_and(|h| h.starts_at == a.starts_at && now < h.at + policy.dedupe_window)
    {
        return skip(Skip::Duplicate);
    }
    let r = match resolved {
        None => return Verdict::Unmatched,
        Some(Err(m)) => return skip(Skip::MissingLabel { label: m.label }),
        Some(Ok(r)) => r,
    };
    if batch_targets.contains(&r.target) {
        return skip(Skip::Coalesced);
    }
    if let Some(att) = state.attempts.get(&r.target)
        && att.unhelped >= 2
    {
        let until = att.last + policy.backoff.cap(att.unhelped - 1);
        if now < until {
            return skip(Skip::Backoff {
                wait_secs: wait(until, now),
            });
        }
    }
    let pod_group = r.action.is_pod_level().then(|| {
        let ns = r.target.namespace.clone().unwrap_or_default();
        format!("{ns}/{}", r.workload.clone().unwrap_or_default())
    });
    if r.action.effect() == Effect::Mutating
        && let Some(v) = blast_radius(state, policy, obs, &r.target, pod_group.as_deref())
    {
        return v;
    }
    let cost = match (r.action.added_spend_cents(), policy.budget, obs.spend) {
        (None, _, _) | (Some(_), None, _) => Cost::Free,
        (Some(_), Some(_), None) => return skip(Skip::BudgetUnknown),
        (Some(inc), Some(_), Some(current)) => Cost::Spend {
            current,
            increase: Cents(inc),
        },
    };
    let cleared = match state.guard.check(&r.target, now, cost) {
        Ok(c) => c,
        Err(GuardBlock::Cooldown { until }) => {
            return skip(Skip::Cooldown {
                wait_secs: wait(until, now),
            });
        }
        Err(GuardBlock::Budget { pct }) => return skip(Skip::Budget { pct }),
        Err(GuardBlock::CircuitOpen { until }) => {
            if state.escalated.get(&r.target) == Some(&until) {
                return skip(Skip::Escalated {
                    wait_secs: wait(until, now),
                });
            }
            state.escalated.insert(r.target.clone(), until);
            mark_handled(state, a, now);
            return Verdict::Escalate {
                to: r
                    .escalate_to
                    .clone()
                    .unwrap_or_else(|| DEFAULT_ESCALATION.to_owned()),
                attempts: state.attempts.get(&r.target).map_or(0, |x| x.unhelped),
            };
        }
        // GuardBlock is non_exhaustive: a new refusal reason is still a refusal.
        Err(_) => {
            return skip(Skip::Cooldown { wait_secs: 0 });
        }
    };
    let trial = cleared.decision == Decision::Probe;
    commit(state, a, &r, pod_group, trial, now);
    batch_targets.insert(r.target.clone());
    Verdict::Act {
        action: r.action,
        verify: r.verify,
        rollback: r.rollback,
        escalate_to: r
            .escalate_to
            .unwrap_or_else(|| DEFAULT_ESCALATION.to_owned()),
        budget_warning_pct: cleared.budget_warning,
        trial,
    }
}

/// Records a planned action: cooldown/breaker accounting, attempts, blast-radius window,
/// pending work and dedupe.
fn commit(
    state: &mut EngineState,
    a: &Alert,
    r: &ResolvedRule,
    pod_group: Option<String>,
    trial: bool,
    now: MonoTime,
) {
    // Pessimistic: counts as not helped until the alert resolves or verification passes.
    // A trial is judged by its own outcome; the half-open breaker holds the target until
    // then (escalation_cool_off >= cooldown keeps the cooldown invariant).
    if !trial {
        state.guard.record_failure(&r.target, now);
    }
    let att = state.attempts.entry(r.target.clone()).or_insert(Attempts {
        unhelped: 0,
        last: now,
    });
    att.unhelped = att.unhelped.saturating_add(1);
    att.last = now;
    if r.action.effect() == Effect::Mutating {
        state.changes.push(Change {
            at: now,
            target: r.target.clone(),
            pod_group,
        });
    }
    state.pending.insert(
        a.fingerprint.clone(),
        Pending {
            target: r.target.clone(),
            trial,
        },
    );
    mark_handled(state, a, now);
}

fn mark_handled(state: &mut EngineState, a: &Alert, now: MonoTime) {
    state.handled.insert(
        a.fingerprint.clone(),
        Handled {
            starts_at: a.starts_at,
            at: now,
        },
    );
}

fn blast_radius(
    state: &EngineState,
    policy: &Policy,
    obs: &Observations,
    target: &Target,
    pod_group: Option<&str>,
) -> Option<Verdict> {
    let limits = policy.blast_radius;
    let others: BTreeSet<&Target> = state
        .changes
        .iter()
        .map(|c| &c.target)
        .filter(|t| *t != target)
        .collect();
    let max = limits.max_targets.get();
    if others.len() >= usize::try_from(max).unwrap_or(usize::MAX) {
        return Some(skip(Skip::BlastRadius {
            changed: others.len(),
            max,
        }));
    }
    let group = pod_group?;
    let pods: BTreeSet<&Target> = state
        .changes
        .iter()
        .filter(|c| c.pod_group.as_deref() == Some(group) && &c.target != target)
        .map(|c| &c.target)
        .collect();
    // Unknown replica count: one pod per window, the most cautious share that still heals.
    let allowed = obs.replicas.get(group).map_or(1, |&n| {
        u32::try_from(u64::from(n) * u64::from(limits.max_replica_pct) / 100)
            .unwrap_or(u32::MAX)
            .max(1)
    });
    if pods.len() >= usize::try_from(allowed).unwrap_or(usize::MAX) {
        return Some(skip(Skip::ReplicaLimit {
            changed: pods.len(),
            allowed,
        }));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Labels;
    use sre_core::config::{Format, Source};
    use sre_core::guard::Jitter;

    const RULES: &str = "rules:\n\
      - {name: mem, alert: Mem, action: {kind: scale_up, step: 1, max_replicas: 9, cost_per_replica_cents: 100}, target: {kind: deployment, namespace: ns, name: '${d}'}}\n\
      - {name: crash, alert: Crash, action: {kind: delete_pod}, target: {kind: pod, namespace: ns, name: '${p}', workload: '${d}'}}\n\
      - {name: note, alert: Note, action: {kind: notify, channel: team}, target: {kind: service, name: '${d}'}, escalate_to: humans}\n";

    fn rules() -> RuleSet {
        RuleSet::load(&Source::Text {
            name: "t".into(),
            text: RULES.into(),
            format: Format::Yaml,
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }

    fn policy() -> Policy {
        Policy {
            cooldown: Duration::from_mins(1),
            backoff: Backoff::new(
                Duration::from_mins(1),
                nz(2),
                Duration::from_mins(10),
                Jitter::None,
            ),
            escalate_after: nz(3),
            escalation_cool_off: Duration::from_hours(1),
            dedupe_window: Duration::from_mins(5),
            blast_radius: BlastRadius {
                max_targets: nz(3),
                window: Duration::from_mins(10),
                max_replica_pct: 50,
            },
            budget: Some(Budget::new(Cents(1000))),
            retention: Duration::from_hours(24),
        }
    }

    fn t(s: u64) -> MonoTime {
        MonoTime(Duration::from_secs(s))
    }

    fn alert(
        name: &str,
        fp: &str,
        status: AlertStatus,
        start: i64,
        labels: &[(&str, &str)],
    ) -> Alert {
        let mut l: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        l.insert("alertname".into(), name.into());
        Alert {
            status,
            labels: l,
            annotations: Labels::new(),
            starts_at: DateTime::from_timestamp(start, 0).unwrap_or_default(),
            ends_at: DateTime::UNIX_EPOCH,
            generator_url: String::new(),
            fingerprint: fp.into(),
            extra: BTreeMap::new(),
        }
    }

    fn fire(name: &str, fp: &str, start: i64, labels: &[(&str, &str)]) -> Alert {
        alert(name, fp, AlertStatus::Firing, start, labels)
    }

    fn spend(c: u64) -> Observations {
        Observations {
            spend: Some(Cents(c)),
            replicas: BTreeMap::new(),
        }
    }

    /// Runs one batch and returns a short code per entry: `act:<kind>`, `skip:<kind>`, ...
    fn run(
        s: &mut EngineState,
        p: &Policy,
        obs: &Observations,
        alerts: &[Alert],
        now: u64,
    ) -> Vec<String> {
        decide(s, &rules(), p, obs, alerts, t(now))
            .iter()
            .map(|e| match &e.verdict {
                Verdict::Act { action, .. } => format!("act:{}", action.kind()),
                Verdict::Skip { skip } => format!("skip:{}", skip.kind()),
                Verdict::Escalate { to, attempts } => format!("escalate:{to}:{attempts}"),
                Verdict::Cancel => "cancel".into(),
                Verdict::Unmatched => "unmatched".into(),
            })
            .collect()
    }

    #[test]
    fn dedupe_cooldown_and_resolve_cancel() {
        let p = policy();
        let mut s = EngineState::new(&p);
        let a = fire("Mem", "f1", 100, &[("d", "api")]);
        assert_eq!(
            run(&mut s, &p, &spend(0), std::slice::from_ref(&a), 0),
            ["act:scale_up"]
        );
        assert_eq!(s.pending(), ["f1"]);
        assert_eq!(
            run(&mut s, &p, &spend(0), std::slice::from_ref(&a), 10),
            ["skip:duplicate"]
        );
        let other = fire("Mem", "f2", 100, &[("d", "api"), ("x", "y")]);
        assert_eq!(run(&mut s, &p, &spend(0), &[other], 30), ["skip:cooldown"]);
        let mut r = a.clone();
        r.status = AlertStatus::Resolved;
        assert_eq!(run(&mut s, &p, &spend(0), &[r.clone()], 40), ["cancel"]);
        assert!(s.pending().is_empty());
        assert_eq!(
            run(&mut s, &p, &spend(0), &[r], 41),
            ["skip:nothing_pending"]
        );
        assert_eq!(
            run(&mut s, &p, &spend(0), std::slice::from_ref(&a), 1000),
            ["skip:stale_after_resolve"],
            "a late firing delivery of a resolved alert never acts"
        );
        let refired = fire("Mem", "f1", 5000, &[("d", "api")]);
        assert_eq!(
            run(&mut s, &p, &spend(0), &[refired], 1000),
            ["act:scale_up"],
            "a new incident acts"
        );
    }

    #[test]
    fn unmatched_missing_label_and_coalesced() {
        let p = policy();
        let mut s = EngineState::new(&p);
        let got = run(
            &mut s,
            &p,
            &spend(0),
            &[
                fire("Nope", "a", 1, &[]),
                fire("Mem", "b", 1, &[]),
                fire("Mem", "c", 1, &[("d", "x")]),
                fire("Mem", "d", 1, &[("d", "x"), ("pod", "2")]),
            ],
            0,
        );
        assert_eq!(
            got,
            [
                "unmatched",
                "skip:missing_label",
                "act:scale_up",
                "skip:coalesced"
            ]
        );
    }

    #[test]
    fn budget_warns_blocks_and_fails_closed_without_spend() {
        let p = policy();
        let mut s = EngineState::new(&p);
        let d = decide(
            &mut s,
            &rules(),
            &p,
            &spend(750),
            &[fire("Mem", "a", 1, &[("d", "a")])],
            t(0),
        );
        assert!(
            matches!(
                d[0].verdict,
                Verdict::Act {
                    budget_warning_pct: Some(85),
                    ..
                }
            ),
            "{d:?}"
        );
        assert_eq!(
            run(
                &mut s,
                &p,
                &spend(900),
                &[fire("Mem", "b", 1, &[("d", "b")])],
                0
            ),
            ["skip:budget"]
        );
        assert_eq!(
            run(
                &mut s,
                &p,
                &Observations::default(),
                &[fire("Mem", "c", 1, &[("d", "c")])],
                0
            ),
            ["skip:budget_unknown"]
        );
        assert_eq!(
            run(
                &mut s,
                &p,
                &Observations::default(),
                &[fire("Crash", "e", 1, &[("d", "c"), ("p", "c-1")])],
                0
            ),
            ["act:delete_pod"],
            "the budget gates scale-ups only"
        );
        let no_budget = Policy {
            budget: None,
            ..policy()
        };
        let mut s = EngineState::new(&no_budget);
        assert_eq!(
            run(
                &mut s,
                &no_budget,
                &Observations::default(),
                &[fire("Mem", "c", 1, &[("d", "c")])],
                0
            ),
            ["act:scale_up"]
        );
    }

    #[test]
    fn blast_radius_and_replica_share() {
        let p = policy();
        let mut s = EngineState::new(&p);
        let mem = |i: usize| fire("Mem", &format!("m{i}"), 1, &[("d", &format!("d{i}"))]);
        let got = run(&mut s, &p, &spend(0), &[mem(1), mem(2), mem(3), mem(4)], 0);
        assert_eq!(
            got,
            [
                "act:scale_up",
                "act:scale_up",
                "act:scale_up",
                "skip:blast_radius"
            ]
        );
        assert_eq!(
            run(
                &mut s,
                &p,
                &spend(0),
                &[fire("Note", "n", 1, &[("d", "z")])],
                0
            ),
            ["act:notify"],
            "notifications change nothing and are not limited"
        );
        assert_eq!(
            run(&mut s, &p, &spend(0), &[mem(4)], 600),
            ["act:scale_up"],
            "window slid"
        );

        let mut s = EngineState::new(&p);
        let crash = |i: usize| {
            fire(
                "Crash",
                &format!("c{i}"),
                1,
                &[("d", "web"), ("p", &format!("web-{i}"))],
            )
        };
        let mut obs = spend(0);
        obs.replicas.insert("ns/web".into(), 4);
        let got = run(&mut s, &p, &obs, &[crash(1), crash(2), crash(3)], 0);
        assert_eq!(
            got,
            ["act:delete_pod", "act:delete_pod", "skip:replica_limit"],
            "50% of 4"
        );
        let mut s = EngineState::new(&p);
        let got = run(&mut s, &p, &spend(0), &[crash(1), crash(2)], 0);
        assert_eq!(
            got,
            ["act:delete_pod", "skip:replica_limit"],
            "unknown replicas: one pod"
        );
    }

    #[test]
    fn unhelpful_remediations_back_off_then_escalate_once() {
        let p = policy();
        let mut s = EngineState::new(&p);
        // A new incident of the same problem every time (new startsAt): nothing resolves.
        let inc = |start: i64| fire("Note", "n", start, &[("d", "api")]);
        assert_eq!(run(&mut s, &p, &spend(0), &[inc(1)], 0), ["act:notify"]);
        assert_eq!(
            run(&mut s, &p, &spend(0), &[inc(2)], 60),
            ["act:notify"],
            "cooldown passed"
        );
        assert_eq!(
            run(&mut s, &p, &spend(0), &[inc(3)], 120),
            ["skip:backoff"],
            "2nd retry waits 120s"
        );
        assert_eq!(run(&mut s, &p, &spend(0), &[inc(3)], 180), ["act:notify"]);
        assert_eq!(
            run(&mut s, &p, &spend(0), &[inc(4)], 1000),
            ["escalate:humans:3"]
        );
        assert_eq!(
            run(&mut s, &p, &spend(0), &[inc(5)], 1100),
            ["skip:escalated"]
        );
        let d = decide(&mut s, &rules(), &p, &spend(0), &[inc(6)], t(180 + 3600));
        assert!(
            matches!(d[0].verdict, Verdict::Act { trial: true, .. }),
            "{d:?}"
        );
        record_outcome(&mut s, "n", Outcome::Helped, t(3800));
        assert_eq!(
            run(&mut s, &p, &spend(0), &[inc(7)], 3900),
            ["act:notify"],
            "success closed the breaker"
        );
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// One delivery: which alert (0-5), firing or resolved, which incident (start),
        /// seconds since the previous delivery, and the spend observed.
        fn event() -> impl Strategy<Value = (usize, bool, i64, u64, u64)> {
            (0usize..6, any::<bool>(), 0i64..3, 0u64..90, 0u64..1200)
        }

        fn alert_for(i: usize, firing: bool, start: i64) -> Alert {
            let status = if firing {
                AlertStatus::Firing
            } else {
                AlertStatus::Resolved
            };
            let (name, labels): (&str, Vec<(&str, String)>) = match i {
                0..=2 => ("Mem", vec![("d", format!("d{}", i % 2))]),
                3 | 4 => (
                    "Crash",
                    vec![("d", "web".into()), ("p", format!("web-{i}"))],
                ),
                _ => ("Note", vec![("d", "api".into())]),
            };
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            alert(name, &format!("fp{i}"), status, start, &labels)
        }

        proptest! {
            #[test]
            fn safety_invariants_hold_for_any_delivery_sequence(
                events in proptest::collection::vec(event(), 1..60),
            ) {
                let p = policy();
                let rules = rules();
                let mut s = EngineState::new(&p);
                let mut now = 0u64;
                let mut last_act: BTreeMap<Target, u64> = BTreeMap::new();
                let mut resolved: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
                let mut mutated: Vec<(u64, Target)> = Vec::new();
                for (i, firing, start, dt, spent) in events {
                    now += dt;
                    let a = alert_for(i, firing, start);
                    let obs = spend(spent);
                    let plan = decide(&mut s, &rules, &p, &obs, std::slice::from_ref(&a), t(now));
                    for e in &plan {
                        let Some(action) = e.action() else { continue };
                        let target = e.target.clone().expect("an action has a target");
                        if let Some(prev) = last_act.insert(target.clone(), now) {
                            prop_assert!(now - prev >= p.cooldown.as_secs(),
                                "{target} acted at {prev} and {now}");
                        }
                        if let Some(inc) = action.added_spend_cents() {
                            prop_assert!(spent + inc < 1000, "scale-up at spend {spent}+{inc}");
                        }
                        if let Some(r) = resolved.get(&e.fingerprint) {
                            prop_assert!(a.starts_at > *r, "acted on resolved {}", e.fingerprint);
                        }
                        if action.effect() == Effect::Mutating {
                            mutated.push((now, target));
                        }
                    }
                    if !firing {
                        let r = resolved.entry(a.fingerprint.clone()).or_insert(a.starts_at);
                        *r = (*r).max(a.starts_at);
                    }
                    let window: BTreeSet<&Target> = mutated
                        .iter()
                        .filter(|(at, _)| now < at + p.blast_radius.window.as_secs())
                        .map(|(_, t)| t)
                        .collect();
                    prop_assert!(window.len() <= 3, "{} targets changed in one window", window.len());
                }
            }
        }
    }
}
