//! Time as an injected value. Decisions take `now` as an argument; the loops that call
//! them read it from a [`Clock`], which is [`SystemClock`] in production and
//! [`ManualClock`] in tests and the simulator, so that a 30-second lease expiry is tested
//! in microseconds and the same schedule always gives the same answer.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::ops::{Add, Sub};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A point on a monotonic clock, measured from an arbitrary origin of that clock.
///
/// Monotonic time never jumps backwards and is not moved by NTP, which is why leases are
/// judged on it; it is meaningless across processes, which is why lease *records* carry
/// wall time instead.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct MonoTime(pub Duration);

impl MonoTime {
    /// The origin of the clock.
    pub const ZERO: Self = Self(Duration::ZERO);

    /// Time elapsed since `earlier`, zero if `earlier` is later (never panics).
    #[must_use]
    pub fn saturating_since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl Add<Duration> for MonoTime {
    type Output = Self;
    fn add(self, rhs: Duration) -> Self {
        Self(self.0.saturating_add(rhs))
    }
}

impl Sub<Duration> for MonoTime {
    type Output = Self;
    fn sub(self, rhs: Duration) -> Self {
        Self(self.0.saturating_sub(rhs))
    }
}

/// Source of wall and monotonic time.
pub trait Clock: Send + Sync {
    /// Wall-clock time: comparable across machines only as far as their clocks agree.
    fn wall(&self) -> DateTime<Utc>;
    /// Monotonic time: comparable only with other readings of this same clock.
    fn monotonic(&self) -> MonoTime;
}

/// The operating system's clocks.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose monotonic origin is now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn wall(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn monotonic(&self) -> MonoTime {
        MonoTime(self.origin.elapsed())
    }
}

#[derive(Debug)]
struct ManualState {
    wall: DateTime<Utc>,
    mono: MonoTime,
}

/// A clock that moves only when told to. Clones share the same time.
///
/// [`ManualClock::advance`] moves wall and monotonic time together, as real time does;
/// [`ManualClock::jump_wall`] moves only the wall clock, which is what an NTP step or a
/// skewed host looks like to a process.
#[derive(Debug, Clone)]
pub struct ManualClock {
    state: Arc<Mutex<ManualState>>,
}

impl ManualClock {
    /// A clock reading `wall`, with monotonic time at its origin.
    #[must_use]
    pub fn new(wall: DateTime<Utc>) -> Self {
        Self {
            state: Arc::new(Mutex::new(ManualState {
                wall,
                mono: MonoTime::ZERO,
            })),
        }
    }

    /// A clock at 2026-01-01T00:00:00Z, for tests that do not care about the date.
    #[must_use]
    pub fn at_epoch() -> Self {
        Self::new(DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default())
    }

    fn with<R>(&self, f: impl FnOnce(&mut ManualState) -> R) -> R {
        // A poisoned lock only means another test thread panicked; the time is still valid.
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Lets `d` pass on both clocks.
    pub fn advance(&self, d: Duration) {
        self.with(|s| {
            s.mono = s.mono + d;
            s.wall += chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        });
    }

    /// Steps the wall clock by `delta` (may be negative) without moving monotonic time.
    pub fn jump_wall(&self, delta: chrono::Duration) {
        self.with(|s| s.wall += delta);
    }
}

impl Clock for ManualClock {
    fn wall(&self) -> DateTime<Utc> {
        self.with(|s| s.wall)
    }
    fn monotonic(&self) -> MonoTime {
        self.with(|s| s.mono)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::at_epoch();
        let (w0, m0) = (c.wall(), c.monotonic());
        assert_eq!((c.wall(), c.monotonic()), (w0, m0));
        c.advance(Duration::from_secs(30));
        assert_eq!(c.monotonic().saturating_since(m0), Duration::from_secs(30));
        assert_eq!(c.wall() - w0, chrono::Duration::seconds(30));
    }

    #[test]
    fn wall_jump_leaves_monotonic_alone() {
        let c = ManualClock::at_epoch();
        let m0 = c.monotonic();
        let w0 = c.wall();
        c.jump_wall(chrono::Duration::seconds(-5));
        assert_eq!(c.monotonic(), m0);
        assert_eq!(c.wall() - w0, chrono::Duration::seconds(-5));
    }

    #[test]
    fn clones_share_time() {
        let a = ManualClock::at_epoch();
        let b = a.clone();
        a.advance(Duration::from_millis(1));
        assert_eq!(b.monotonic(), MonoTime(Duration::from_millis(1)));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = SystemClock::new();
        let a = c.monotonic();
        let b = c.monotonic();
        assert!(b >= a);
    }

    #[test]
    fn saturating_since_never_underflows() {
        assert_eq!(
            MonoTime::ZERO.saturating_since(MonoTime(Duration::from_secs(1))),
            Duration::ZERO
        );
    }
}
