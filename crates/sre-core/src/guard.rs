//! Guards that stop automation from doing too much, too often, or too expensively:
//! per-key cooldowns, exponential backoff with jitter, a circuit breaker, and a spend
//! budget, plus a [`Guard`] that combines the first three with the budget per key.
//!
//! Everything here is plain state with `now` passed in as a [`MonoTime`] (guards judge
//! elapsed time, which only a monotonic clock measures reliably) and randomness passed in
//! as an [`rand::Rng`], so a remediation run can be replayed exactly in a test.

use crate::MonoTime;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;
use thiserror::Error;

/// Refusal from a [`Cooldown`]: the key acted too recently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("in cooldown until {until:?}")]
pub struct Blocked {
    /// The earliest time the key may act again.
    pub until: MonoTime,
}

/// Minimum spacing between two actions on the same key (an alert fingerprint, a
/// deployment), so that a flapping alert cannot restart a workload in a loop.
#[derive(Debug, Clone)]
pub struct Cooldown<K> {
    period: Duration,
    last: BTreeMap<K, MonoTime>,
}

impl<K: Ord + Clone> Cooldown<K> {
    /// A cooldown of `period` per key; keys never recorded are free to act.
    #[must_use]
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: BTreeMap::new(),
        }
    }

    /// The configured period.
    #[must_use]
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Whether `key` may act at `now`; the action is allowed again exactly `period`
    /// after the last recorded one.
    pub fn check(&self, key: &K, now: MonoTime) -> Result<(), Blocked> {
        match self.last.get(key) {
            Some(&at) if now < at + self.period => Err(Blocked {
                until: at + self.period,
            }),
            _ => Ok(()),
        }
    }

    /// Records that `key` acted at `now`. An older `now` than the one already recorded
    /// is ignored, so a late-arriving record can never shorten a cooldown.
    pub fn record(&mut self, key: K, now: MonoTime) {
        let slot = self.last.entry(key).or_insert(now);
        *slot = (*slot).max(now);
    }

    /// Drops keys whose cooldown has passed, to bound memory in a long-running process.
    pub fn prune(&mut self, now: MonoTime) {
        let period = self.period;
        self.last.retain(|_, at| now < *at + period);
    }
}

/// How a [`Backoff`] randomises its delay, so that many clients retrying the same
/// failure do not retry in lock-step ("thundering herd").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Exactly the capped exponential delay: for tests and single clients.
    None,
    /// Uniform in `[0, cap]`: the best spread, some retries come almost at once.
    Full,
    /// Uniform in `[cap/2, cap]`: keeps at least half the delay.
    Equal,
}

/// Exponential backoff: attempt `n` waits about `base * factor^n`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    factor: NonZeroU32,
    max: Duration,
    jitter: Jitter,
}

impl Backoff {
    /// A backoff starting at `base`, multiplied by `factor` per attempt and never above
    /// `max` (a `base` above `max` is capped too).
    #[must_use]
    pub fn new(base: Duration, factor: NonZeroU32, max: Duration, jitter: Jitter) -> Self {
        Self {
            base,
            factor,
            max,
            jitter,
        }
    }

    /// The delay before jitter for `attempt` (0-based): `min(max, base * factor^attempt)`,
    /// non-decreasing in `attempt`.
    #[must_use]
    pub fn cap(&self, attempt: u32) -> Duration {
        let base = self.base.as_nanos();
        let max = self.max.as_nanos();
        let factor = u128::from(self.factor.get());
        let mut delay = base.min(max);
        for _ in 0..attempt {
            if delay >= max || factor == 1 {
                break;
            }
            delay = delay.saturating_mul(factor).min(max);
        }
        nanos_to_duration(delay)
    }

    /// The delay to wait before retry `attempt` (0-based), with jitter drawn from `rng`;
    /// never above `max`. Seed the `rng` (`StdRng::seed_from_u64`) to make it repeatable.
    pub fn delay<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let cap = duration_to_nanos(self.cap(attempt));
        let nanos = match self.jitter {
            Jitter::None => cap,
            Jitter::Full => rng.random_range(0..=cap),
            Jitter::Equal => {
                let half = cap / 2;
                half + rng.random_range(0..=cap - half)
            }
        };
        Duration::from_nanos(nanos)
    }
}

fn duration_to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn nanos_to_duration(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(u64::MAX))
}

/// Where a [`CircuitBreaker`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through; counts consecutive failures.
    Closed {
        /// Failures since the last success.
        consecutive_failures: u32,
    },
    /// Calls are refused until the cool-off has passed.
    Open {
        /// When a trial call may go through.
        until: MonoTime,
    },
    /// One trial call is out; its outcome closes or re-opens the breaker.
    HalfOpen {
        /// When the trial was let through; a trial that never reports is given up on
        /// after one cool-off, and another one is let through.
        probe_started: MonoTime,
    },
}

/// What a [`CircuitBreaker`] says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The breaker is closed: go ahead.
    Allow,
    /// The breaker is half-open and this call is its one trial: go ahead and report the
    /// outcome, which decides whether the breaker closes.
    Probe,
    /// Refused: the target failed too often; try again at `until`.
    Reject {
        /// When the next trial may go through.
        until: MonoTime,
    },
}

impl Decision {
    /// True for [`Decision::Allow`] and [`Decision::Probe`].
    #[must_use]
    pub fn is_allowed(self) -> bool {
        !matches!(self, Self::Reject { .. })
    }
}

/// Stops calling a target that keeps failing (an API that is down, a remediation that
/// does not help), and tries again with a single call after a cool-off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreaker {
    threshold: NonZeroU32,
    cool_off: Duration,
    state: BreakerState,
}

impl CircuitBreaker {
    /// A closed breaker that opens after `threshold` consecutive failures and stays open
    /// for `cool_off`.
    #[must_use]
    pub fn new(threshold: NonZeroU32, cool_off: Duration) -> Self {
        Self {
            threshold,
            cool_off,
            state: BreakerState::Closed {
                consecutive_failures: 0,
            },
        }
    }

    /// The current state, for metrics and status pages.
    #[must_use]
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether a call may go out at `now`. Letting the half-open trial through changes
    /// state (only one trial at a time), hence `&mut self`.
    pub fn allow(&mut self, now: MonoTime) -> Decision {
        match self.state {
            BreakerState::Closed { .. } => Decision::Allow,
            BreakerState::Open { until } if now < until => Decision::Reject { until },
            BreakerState::HalfOpen { probe_started } if now < probe_started + self.cool_off => {
                Decision::Reject {
                    until: probe_started + self.cool_off,
                }
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => {
                self.state = BreakerState::HalfOpen { probe_started: now };
                Decision::Probe
            }
        }
    }

    /// Reports a successful call. A success while open (a call let through before the
    /// breaker opened) changes nothing: only a trial may close an open breaker.
    pub fn on_success(&mut self, _now: MonoTime) {
        match self.state {
            BreakerState::Closed { .. } | BreakerState::HalfOpen { .. } => {
                self.state = BreakerState::Closed {
                    consecutive_failures: 0,
                };
            }
            BreakerState::Open { .. } => {}
        }
    }

    /// Reports a failed call. A failure while open does not extend the cool-off: it comes
    /// from a call let through before the breaker opened.
    pub fn on_failure(&mut self, now: MonoTime) {
        match self.state {
            BreakerState::Closed {
                consecutive_failures,
            } => {
                let failures = consecutive_failures.saturating_add(1);
                self.state = if failures >= self.threshold.get() {
                    BreakerState::Open {
                        until: now + self.cool_off,
                    }
                } else {
                    BreakerState::Closed {
                        consecutive_failures: failures,
                    }
                };
            }
            BreakerState::HalfOpen { .. } => {
                self.state = BreakerState::Open {
                    until: now + self.cool_off,
                };
            }
            BreakerState::Open { .. } => {}
        }
    }
}

/// An amount of money in minor currency units (cents). Integer so that "at or over the
/// limit" is decided exactly, never by a float rounding.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Cents(pub u64);

/// A percentage as a whole number (`80` = 80 %); may exceed 100 for a block threshold
/// above the nominal budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Percent(pub u32);

/// Invalid guard configuration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GuardConfigError {
    /// The warn threshold is above the block threshold, so a warning could never come
    /// before a block.
    #[error("budget warn threshold {warn}% is above the block threshold {block}%")]
    WarnAboveBlock {
        /// The warn threshold in percent.
        warn: u32,
        /// The block threshold in percent.
        block: u32,
    },
}

impl GuardConfigError {
    /// Stable label for metrics and logs.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::WarnAboveBlock { .. } => "warn_above_block",
        }
    }
}

/// The handbook's budget control: warn at 80 % of the budget, block scale-up at 100 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    limit: Cents,
    warn: Percent,
    block: Percent,
}

/// What a [`Budget`] says about a requested increase in spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetVerdict {
    /// Below the warn threshold.
    Allow,
    /// Allowed, but the resulting spend reaches the warn threshold: log it.
    Warn {
        /// Resulting spend in percent of the limit, rounded down.
        pct: u64,
    },
    /// Refused: the resulting spend would reach the block threshold.
    Block {
        /// Resulting spend in percent of the limit, rounded down (`u64::MAX` for a zero
        /// limit).
        pct: u64,
    },
}

impl Budget {
    /// The default warn threshold.
    pub const DEFAULT_WARN: Percent = Percent(80);
    /// The default block threshold.
    pub const DEFAULT_BLOCK: Percent = Percent(100);

    /// A budget of `limit` with the handbook's thresholds (warn 80 %, block 100 %).
    #[must_use]
    pub fn new(limit: Cents) -> Self {
        Self {
            limit,
            warn: Self::DEFAULT_WARN,
            block: Self::DEFAULT_BLOCK,
        }
    }

    /// A budget with custom thresholds; `warn` must not be above `block`.
    pub fn with_thresholds(
        limit: Cents,
        warn: Percent,
        block: Percent,
    ) -> Result<Self, GuardConfigError> {
        if warn > block {
            return Err(GuardConfigError::WarnAboveBlock {
                warn: warn.0,
                block: block.0,
            });
        }
        Ok(Self { limit, warn, block })
    }

    /// The budget's limit.
    #[must_use]
    pub fn limit(&self) -> Cents {
        self.limit
    }

    /// Judges spending `requested_increase` more on top of `current_spend`. A request
    /// whose resulting spend reaches the block threshold is blocked, even if the spend
    /// before it was fine: the guard is about what the action would cause.
    ///
    /// Callers evaluate only actions that add spend (scale-up); a scale-down is never
    /// blocked by a budget. A zero increase is judged like any other, so once spend is at
    /// the block threshold nothing that costs money passes.
    #[must_use]
    pub fn evaluate(&self, current_spend: Cents, requested_increase: Cents) -> BudgetVerdict {
        // u128 holds u64 * 100 * u32 without overflow, so the comparisons are exact.
        let resulting = u128::from(current_spend.0) + u128::from(requested_increase.0);
        let scaled = resulting * 100;
        let limit = u128::from(self.limit.0);
        // A zero limit has no percentage: any spend is over it.
        let pct = scaled
            .checked_div(limit)
            .map_or(u64::MAX, |p| u64::try_from(p).unwrap_or(u64::MAX));
        if scaled >= limit * u128::from(self.block.0) {
            BudgetVerdict::Block { pct }
        } else if scaled >= limit * u128::from(self.warn.0) {
            BudgetVerdict::Warn { pct }
        } else {
            BudgetVerdict::Allow
        }
    }
}

/// What an action would cost, for the budget part of [`Guard::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// The action adds no spend (restart, scale-down, notify).
    Free,
    /// The action adds spend (scale-up).
    Spend {
        /// Spend so far in the budget period.
        current: Cents,
        /// What the action adds.
        increase: Cents,
    },
}

/// Why [`Guard::check`] refused an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GuardBlock {
    /// The key acted too recently.
    #[error("in cooldown until {until:?}")]
    Cooldown {
        /// When the cooldown ends.
        until: MonoTime,
    },
    /// The key's actions kept failing; the circuit breaker is open.
    #[error("circuit open until {until:?}")]
    CircuitOpen {
        /// When a trial may go through.
        until: MonoTime,
    },
    /// The action would take spend to the block threshold.
    #[error("budget would reach {pct}% of the limit")]
    Budget {
        /// Resulting spend in percent of the limit.
        pct: u64,
    },
}

impl GuardBlock {
    /// Stable label for metrics (`sre_remediation_actions_blocked_total{reason}`).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Cooldown { .. } => "cooldown",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Budget { .. } => "budget",
        }
    }
}

/// Permission from [`Guard::check`], with what the caller should note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleared {
    /// The breaker's decision: [`Decision::Probe`] means this is a trial call.
    pub decision: Decision,
    /// Resulting spend in percent when it reached the warn threshold: log a warning.
    pub budget_warning: Option<u64>,
}

/// Cooldown, circuit breaker and budget for a set of keys, checked together before an
/// automated action.
#[derive(Debug, Clone)]
pub struct Guard<K> {
    cooldown: Cooldown<K>,
    breaker: CircuitBreaker,
    breakers: BTreeMap<K, CircuitBreaker>,
    budget: Option<Budget>,
}

impl<K: Ord + Clone> Guard<K> {
    /// A guard with a per-key cooldown, a per-key breaker built from `breaker` (as a
    /// template), and an optional shared budget.
    #[must_use]
    pub fn new(cooldown: Duration, breaker: CircuitBreaker, budget: Option<Budget>) -> Self {
        Self {
            cooldown: Cooldown::new(cooldown),
            breaker,
            breakers: BTreeMap::new(),
            budget,
        }
    }

    /// Whether an action on `key` costing `cost` may run at `now`.
    ///
    /// Checks run cheapest and state-free first (cooldown, budget) and the breaker last,
    /// because letting a half-open trial through uses up the trial slot and must not
    /// happen for an action another check refuses.
    pub fn check(&mut self, key: &K, now: MonoTime, cost: Cost) -> Result<Cleared, GuardBlock> {
        self.cooldown
            .check(key, now)
            .map_err(|b| GuardBlock::Cooldown { until: b.until })?;
        let budget_warning = match (cost, self.budget) {
            (Cost::Spend { current, increase }, Some(budget)) => {
                match budget.evaluate(current, increase) {
                    BudgetVerdict::Allow => None,
                    BudgetVerdict::Warn { pct } => Some(pct),
                    BudgetVerdict::Block { pct } => return Err(GuardBlock::Budget { pct }),
                }
            }
            _ => None,
        };
        let decision = self.breaker_for(key).allow(now);
        if let Decision::Reject { until } = decision {
            return Err(GuardBlock::CircuitOpen { until });
        }
        Ok(Cleared {
            decision,
            budget_warning,
        })
    }

    /// Records that the action on `key` ran and worked: starts the cooldown, resets the
    /// breaker.
    pub fn record_success(&mut self, key: &K, now: MonoTime) {
        self.cooldown.record(key.clone(), now);
        self.breaker_for(key).on_success(now);
    }

    /// Records that the action on `key` ran and failed: starts the cooldown, counts
    /// towards opening the breaker.
    pub fn record_failure(&mut self, key: &K, now: MonoTime) {
        self.cooldown.record(key.clone(), now);
        self.breaker_for(key).on_failure(now);
    }

    /// The breaker state of `key`, for status pages.
    #[must_use]
    pub fn breaker_state(&self, key: &K) -> BreakerState {
        self.breakers.get(key).unwrap_or(&self.breaker).state()
    }

    fn breaker_for(&mut self, key: &K) -> &mut CircuitBreaker {
        self.breakers
            .entry(key.clone())
            .or_insert_with(|| self.breaker.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn t(secs: u64) -> MonoTime {
        MonoTime(Duration::from_secs(secs))
    }

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }

    #[test]
    fn cooldown_blocks_until_period_has_passed() {
        let mut c = Cooldown::new(Duration::from_mins(5));
        assert_eq!(c.check(&"a", t(0)), Ok(()));
        c.record("a", t(100));
        assert_eq!(c.check(&"a", t(100)), Err(Blocked { until: t(400) }));
        assert_eq!(c.check(&"a", t(399)), Err(Blocked { until: t(400) }));
        assert_eq!(c.check(&"a", t(400)), Ok(()));
        assert_eq!(c.check(&"b", t(100)), Ok(()), "keys are independent");
        c.record("a", t(50));
        assert_eq!(
            c.check(&"a", t(399)),
            Err(Blocked { until: t(400) }),
            "older record ignored"
        );
        c.prune(t(400));
        assert_eq!(c.last.len(), 0);
    }

    #[test]
    fn backoff_caps_grow_then_stop_at_max() {
        let b = Backoff::new(
            Duration::from_secs(1),
            nz(2),
            Duration::from_mins(1),
            Jitter::None,
        );
        let caps: Vec<u64> = (0..9).map(|a| b.cap(a).as_secs()).collect();
        assert_eq!(caps, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(b.cap(u32::MAX), Duration::from_mins(1));
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(b.delay(3, &mut rng), Duration::from_secs(8));
    }

    #[test]
    fn backoff_jitter_is_seeded_and_bounded() {
        let full = Backoff::new(
            Duration::from_secs(1),
            nz(3),
            Duration::from_secs(30),
            Jitter::Full,
        );
        let equal = Backoff::new(
            Duration::from_secs(1),
            nz(3),
            Duration::from_secs(30),
            Jitter::Equal,
        );
        let draw = |b: &Backoff, seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..10).map(|a| b.delay(a, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(&full, 1), draw(&full, 1), "same seed, same delays");
        assert_ne!(draw(&full, 1), draw(&full, 2));
        for (a, d) in (0..).zip(draw(&equal, 3)) {
            assert!(
                d >= equal.cap(a) / 2 && d <= equal.cap(a),
                "attempt {a}: {d:?}"
            );
        }
    }

    #[test]
    fn breaker_opens_half_opens_and_closes() {
        let mut b = CircuitBreaker::new(nz(3), Duration::from_mins(1));
        b.on_failure(t(0));
        b.on_failure(t(1));
        assert_eq!(b.allow(t(2)), Decision::Allow);
        b.on_success(t(2));
        b.on_failure(t(3));
        b.on_failure(t(4));
        assert_eq!(b.allow(t(5)), Decision::Allow, "success reset the count");
        b.on_failure(t(5));
        assert_eq!(b.state(), BreakerState::Open { until: t(65) });
        assert_eq!(b.allow(t(64)), Decision::Reject { until: t(65) });
        assert_eq!(b.allow(t(65)), Decision::Probe);
        assert_eq!(
            b.allow(t(66)),
            Decision::Reject { until: t(125) },
            "one trial at a time"
        );
        b.on_failure(t(70));
        assert_eq!(
            b.state(),
            BreakerState::Open { until: t(130) },
            "failed trial re-opens"
        );
        assert_eq!(b.allow(t(130)), Decision::Probe);
        b.on_success(t(131));
        assert_eq!(b.allow(t(131)), Decision::Allow, "successful trial closes");
    }

    #[test]
    fn breaker_retries_a_trial_that_never_reported() {
        let mut b = CircuitBreaker::new(nz(1), Duration::from_secs(10));
        b.on_failure(t(0));
        assert_eq!(b.allow(t(10)), Decision::Probe);
        assert_eq!(b.allow(t(19)), Decision::Reject { until: t(20) });
        assert_eq!(b.allow(t(20)), Decision::Probe);
    }

    #[test]
    fn budget_warns_at_80_and_blocks_at_100() {
        let b = Budget::new(Cents(10_000));
        let cases = [
            (0, 7_999, BudgetVerdict::Allow),
            (7_000, 1_000, BudgetVerdict::Warn { pct: 80 }),
            (9_000, 999, BudgetVerdict::Warn { pct: 99 }),
            (9_000, 1_000, BudgetVerdict::Block { pct: 100 }),
            (5_000, 6_000, BudgetVerdict::Block { pct: 110 }),
            (10_000, 0, BudgetVerdict::Block { pct: 100 }),
            // No overflow: (2^65 - 2) * 100 / 10_000.
            (
                u64::MAX,
                u64::MAX,
                BudgetVerdict::Block {
                    pct: 368_934_881_474_191_032,
                },
            ),
        ];
        for (current, inc, want) in cases {
            assert_eq!(
                b.evaluate(Cents(current), Cents(inc)),
                want,
                "{current}+{inc}"
            );
        }
        let zero = Budget::new(Cents(0));
        assert_eq!(
            zero.evaluate(Cents(0), Cents(1)),
            BudgetVerdict::Block { pct: u64::MAX }
        );
        assert_eq!(
            Budget::with_thresholds(Cents(1), Percent(90), Percent(80)),
            Err(GuardConfigError::WarnAboveBlock {
                warn: 90,
                block: 80
            })
        );
        let generous = Budget::with_thresholds(Cents(100), Percent(100), Percent(120));
        assert_eq!(
            generous.map(|b| b.evaluate(Cents(100), Cents(10))),
            Ok(BudgetVerdict::Warn { pct: 110 })
        );
    }

    #[test]
    fn guard_reports_the_first_reason_and_spares_the_trial() {
        let breaker = CircuitBreaker::new(nz(2), Duration::from_mins(10));
        let mut g = Guard::new(
            Duration::from_mins(1),
            breaker,
            Some(Budget::new(Cents(1_000))),
        );
        let key = "deploy/api";
        let spend = |current, increase| Cost::Spend {
            current: Cents(current),
            increase: Cents(increase),
        };
        assert_eq!(
            g.check(&key, t(0), spend(700, 100)),
            Ok(Cleared {
                decision: Decision::Allow,
                budget_warning: Some(80)
            })
        );
        assert_eq!(
            g.check(&key, t(0), spend(900, 100)),
            Err(GuardBlock::Budget { pct: 100 })
        );
        g.record_failure(&key, t(0));
        assert_eq!(
            g.check(&key, t(30), Cost::Free),
            Err(GuardBlock::Cooldown { until: t(60) })
        );
        g.record_failure(&key, t(60));
        assert_eq!(
            g.check(&key, t(120), Cost::Free),
            Err(GuardBlock::CircuitOpen { until: t(660) })
        );
        // Blocked by budget while the breaker could probe: the trial slot stays unused.
        assert_eq!(
            g.check(&key, t(660), spend(1_000, 1)),
            Err(GuardBlock::Budget { pct: 100 })
        );
        assert_eq!(g.breaker_state(&key), BreakerState::Open { until: t(660) });
        assert_eq!(
            g.check(&key, t(660), Cost::Free).map(|c| c.decision),
            Ok(Decision::Probe)
        );
        g.record_success(&key, t(661));
        assert_eq!(
            g.breaker_state(&key),
            BreakerState::Closed {
                consecutive_failures: 0
            }
        );
        assert_eq!(
            g.check(&"other", t(661), Cost::Free).map(|c| c.decision),
            Ok(Decision::Allow)
        );
    }

    proptest! {
        #[test]
        fn no_action_within_cooldown_after_record(
            period in 1u64..10_000, at in 0u64..1_000_000, dt in 0u64..20_000,
        ) {
            let mut c = Cooldown::new(Duration::from_millis(period));
            c.record(1u8, MonoTime(Duration::from_millis(at)));
            let now = MonoTime(Duration::from_millis(at + dt));
            prop_assert_eq!(c.check(&1, now).is_ok(), dt >= period);
        }

        #[test]
        fn breaker_open_after_n_failures_until_cool_off(
            n in 1u32..10, cool in 1u64..10_000, gaps in proptest::collection::vec(0u64..100, 10),
            probe_at in 0u64..20_000,
        ) {
            let mut b = CircuitBreaker::new(nz(n), Duration::from_millis(cool));
            let mut now = 0;
            for gap in gaps.iter().take(n as usize) {
                now += gap;
                prop_assert!(b.allow(MonoTime(Duration::from_millis(now))).is_allowed());
                b.on_failure(MonoTime(Duration::from_millis(now)));
            }
            let later = now + probe_at;
            let d = b.allow(MonoTime(Duration::from_millis(later)));
            if probe_at < cool {
                prop_assert_eq!(d, Decision::Reject { until: MonoTime(Duration::from_millis(now + cool)) });
            } else {
                prop_assert_eq!(d, Decision::Probe);
            }
        }

        #[test]
        fn budget_never_allows_reaching_block(
            limit in 0u64..1_000_000, current in 0u64..2_000_000, inc in 0u64..2_000_000,
            warn in 0u32..150, extra in 0u32..100,
        ) {
            let block = warn + extra;
            let b = Budget::with_thresholds(Cents(limit), Percent(warn), Percent(block));
            prop_assert!(b.is_ok());
            let Ok(b) = b else { return Ok(()) };
            let verdict = b.evaluate(Cents(current), Cents(inc));
            // Threshold in exact rational form: resulting / limit >= block / 100.
            let reaches_block = u128::from(current + inc) * 100 >= u128::from(limit) * u128::from(block);
            prop_assert_eq!(matches!(verdict, BudgetVerdict::Block { .. }), reaches_block);
        }

        #[test]
        fn backoff_delay_within_non_decreasing_cap(
            base_ms in 0u64..10_000, factor in 1u32..10, max_ms in 0u64..1_000_000,
            attempt in 0u32..100, seed: u64, jitter in prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)],
        ) {
            let max = Duration::from_millis(max_ms);
            let b = Backoff::new(Duration::from_millis(base_ms), nz(factor), max, jitter);
            let mut rng = StdRng::seed_from_u64(seed);
            let d = b.delay(attempt, &mut rng);
            prop_assert!(d <= b.cap(attempt) && b.cap(attempt) <= max);
            prop_assert!(b.cap(attempt) <= b.cap(attempt + 1));
        }
    }
}
