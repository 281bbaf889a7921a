//! Verification: after an action, ask the metrics backend whether the rule's `PromQL`
//! now holds, and keep asking until it does or the rule's timeout passes.
//!
//! [`evaluate`] is the pure judgement of one answer. [`until_holds`] is the small shell
//! around it; it reads time from an injected [`Clock`] and waits through an injected
//! [`Sleeper`], so that a five-minute verification is tested on a `ManualClock` in
//! microseconds and the binary passes a tokio-backed sleeper.

use crate::plan::Outcome;
use crate::ports::{MetricsQuery, QueryValue};
use crate::rules::{Expect, VerifySpec};
use async_trait::async_trait;
use serde::Serialize;
use sre_core::Clock;
use std::time::Duration;

/// The judgement of one query answer against the rule's expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum Check {
    /// The expectation holds: the action helped.
    Holds,
    /// Not (yet): ask again until the timeout.
    NotYet,
    /// The query returns something no expectation can judge (a scalar, range vector or
    /// string); asking again gives the same type, so verification stops at once.
    WrongType {
        /// The `resultType` that came back.
        got: &'static str,
    },
}

/// Judges one answer. Only instant vectors are judged: `Empty` and `NonEmpty` speak of
/// series, and reading a scalar as "one series" would make `scalar(x)` always non-empty.
#[must_use]
pub fn evaluate(expect: Expect, value: &QueryValue) -> Check {
    let QueryValue::Vector(samples) = value else {
        return Check::WrongType { got: value.kind() };
    };
    let holds = match expect {
        Expect::Empty => samples.is_empty(),
        Expect::NonEmpty => !samples.is_empty(),
    };
    if holds { Check::Holds } else { Check::NotYet }
}

/// Waits between attempts. Injected so that tests move a manual clock instead of sleeping.
#[async_trait]
pub trait Sleeper: Send + Sync {
    /// Returns after `d` has passed on the clock the verify loop reads.
    async fn sleep(&self, d: Duration);
}

/// What the last attempt saw, kept for the run record and for escalation messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "seen", rename_all = "snake_case")]
pub enum LastSeen {
    /// An instant vector with this many series (the expectation did not hold).
    Series {
        /// Number of series returned.
        count: usize,
    },
    /// The backend could not be asked (retryable error); the message is the port's.
    Unavailable {
        /// What the port said.
        message: String,
    },
}

/// How verification ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
#[non_exhaustive]
pub enum VerifyOutcome {
    /// The expectation held.
    Holds {
        /// Queries sent, the successful one included.
        attempts: u32,
        /// Time from the start of verification to the answer that held.
        elapsed_ms: u64,
    },
    /// The timeout passed without the expectation holding: roll back and escalate.
    TimedOut {
        /// Queries sent.
        attempts: u32,
        /// What the last attempt saw.
        last: LastSeen,
    },
    /// Asking again cannot help: the backend refused the query (bad `PromQL`, auth),
    /// answered garbage, or the query returns a type no expectation judges. Treated like
    /// a timeout by the caller (the action is not known to have helped), but reported at
    /// once and with the reason, because a human must fix the rule.
    Failed {
        /// Queries sent.
        attempts: u32,
        /// Why, in words.
        reason: String,
    },
}

impl VerifyOutcome {
    /// What the engine records for the target: only a verification that held resets
    /// its failure count.
    #[must_use]
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::Holds { .. } => Outcome::Helped,
            Self::TimedOut { .. } | Self::Failed { .. } => Outcome::NotHelped,
        }
    }
}

/// Shortest wait between attempts, so that a zero interval cannot spin.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Queries `spec.query` every `interval` until [`evaluate`] says it holds, it cannot be
/// judged, the backend refuses it, or `spec.timeout` has passed on `clock`.
///
/// The last attempt is made at the deadline itself (the wait before it is shortened), so
/// a recovery that happens just before the timeout still counts. Retryable errors
/// ([`sre_core::PortError::Unavailable`]) are retried like a "not yet".
pub async fn until_holds(
    query: &dyn MetricsQuery,
    spec: &VerifySpec,
    clock: &dyn Clock,
    sleeper: &dyn Sleeper,
    interval: Duration,
) -> VerifyOutcome {
    let interval = interval.max(MIN_INTERVAL);
    let start = clock.monotonic();
    let deadline = start + spec.timeout;
    let mut attempts: u32 = 0;
    loop {
        attempts = attempts.saturating_add(1);
        let last = match query.instant(spec.query.as_str()).await {
            Ok(value) => match evaluate(spec.expect, &value) {
                Check::Holds => {
                    let elapsed = clock.monotonic().saturating_since(start);
                    return VerifyOutcome::Holds {
                        attempts,
                        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                    };
                }
                Check::WrongType { got } => {
                    return VerifyOutcome::Failed {
                        attempts,
                        reason: format!(
                            "the verify query returns a {got}; it must return an instant vector"
                        ),
                    };
                }
                Check::NotYet => LastSeen::Series {
                    count: match &value {
                        QueryValue::Vector(s) => s.len(),
                        _ => 0,
                    },
                },
            },
            Err(e) if e.is_retryable() => {
                tracing::debug!(error = %e, attempts, "verify query failed; retrying");
                LastSeen::Unavailable {
                    message: e.to_string(),
                }
            }
            Err(e) => {
                return VerifyOutcome::Failed {
                    attempts,
                    reason: e.to_string(),
                };
            }
        };
        let now = clock.monotonic();
        if now >= deadline {
            return VerifyOutcome::TimedOut { attempts, last };
        }
        sleeper
            .sleep(interval.min(deadline.saturating_since(now)))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Sample;
    use crate::rules::Template;
    use sre_core::{ManualClock, PortError};
    use std::collections::{BTreeMap, VecDeque};
    use std::sync::Mutex;

    fn vector(n: usize) -> QueryValue {
        QueryValue::Vector(
            (0..n)
                .map(|i| Sample {
                    labels: BTreeMap::from([("pod".to_owned(), format!("p{i}"))]),
                    value: 1.0,
                })
                .collect(),
        )
    }

    #[test]
    fn evaluate_judges_instant_vectors_only() {
        let check = |expect, value: QueryValue, want: Check| {
            assert_eq!(evaluate(expect, &value), want, "{expect:?} {value:?}");
        };
        check(Expect::Empty, vector(0), Check::Holds);
        check(Expect::Empty, vector(2), Check::NotYet);
        check(Expect::NonEmpty, vector(1), Check::Holds);
        check(Expect::NonEmpty, vector(0), Check::NotYet);
        check(
            Expect::NonEmpty,
            QueryValue::Scalar(1.0),
            Check::WrongType { got: "scalar" },
        );
        check(
            Expect::Empty,
            QueryValue::Matrix(Vec::new()),
            Check::WrongType { got: "matrix" },
        );
        check(
            Expect::Empty,
            QueryValue::String("x".into()),
            Check::WrongType { got: "string" },
        );
    }

    /// Answers from a script (the last answer repeats) and counts the calls.
    struct Scripted {
        answers: Mutex<VecDeque<Result<QueryValue, PortError>>>,
        asked: Mutex<Vec<String>>,
    }

    impl Scripted {
        fn new(answers: Vec<Result<QueryValue, PortError>>) -> Self {
            Self {
                answers: Mutex::new(answers.into()),
                asked: Mutex::new(Vec::new()),
            }
        }
        fn calls(&self) -> usize {
            self.asked.lock().map(|a| a.len()).unwrap_or_default()
        }
    }

    #[async_trait]
    impl MetricsQuery for Scripted {
        async fn instant(&self, promql: &str) -> Result<QueryValue, PortError> {
            self.asked.lock().expect("lock").push(promql.to_owned());
            let mut a = self.answers.lock().expect("lock");
            if a.len() > 1 {
                a.pop_front().expect("non-empty")
            } else {
                a.front().cloned().expect("script has an answer")
            }
        }
    }

    /// Sleeping moves the manual clock and records the waits.
    struct ClockSleeper {
        clock: ManualClock,
        waits: Mutex<Vec<Duration>>,
    }

    #[async_trait]
    impl Sleeper for ClockSleeper {
        async fn sleep(&self, d: Duration) {
            self.waits.lock().expect("lock").push(d);
            self.clock.advance(d);
        }
    }

    fn spec(expect: Expect, timeout: Duration) -> VerifySpec {
        VerifySpec {
            query: Template::new(r#"up{job="x"} == 0"#),
            expect,
            timeout,
        }
    }

    fn unavailable() -> PortError {
        PortError::Unavailable {
            backend: "prometheus",
            message: "connection refused".into(),
        }
    }

    async fn run(
        answers: Vec<Result<QueryValue, PortError>>,
        expect: Expect,
        timeout: Duration,
    ) -> (VerifyOutcome, Vec<Duration>, usize, ManualClock) {
        let clock = ManualClock::at_epoch();
        let q = Scripted::new(answers);
        let sleeper = ClockSleeper {
            clock: clock.clone(),
            waits: Mutex::new(Vec::new()),
        };
        let out = until_holds(
            &q,
            &spec(expect, timeout),
            &clock,
            &sleeper,
            Duration::from_secs(10),
        )
        .await;
        let waits = sleeper.waits.into_inner().expect("lock");
        (out, waits, q.calls(), clock)
    }

    #[tokio::test]
    async fn holds_after_recovery_with_retried_outages() {
        let (out, waits, calls, _) = run(
            vec![
                Ok(vector(2)),
                Err(unavailable()),
                Ok(vector(1)),
                Ok(vector(0)),
            ],
            Expect::Empty,
            Duration::from_mins(5),
        )
        .await;
        assert_eq!(
            out,
            VerifyOutcome::Holds {
                attempts: 4,
                elapsed_ms: 30_000
            }
        );
        assert_eq!(out.outcome(), Outcome::Helped);
        assert_eq!(waits, [Duration::from_secs(10); 3]);
        assert_eq!(calls, 4);
    }

    #[tokio::test]
    async fn times_out_with_a_last_attempt_at_the_deadline() {
        let (out, waits, calls, clock) =
            run(vec![Ok(vector(3))], Expect::Empty, Duration::from_secs(25)).await;
        assert_eq!(
            out,
            VerifyOutcome::TimedOut {
                attempts: 4,
                last: LastSeen::Series { count: 3 }
            }
        );
        assert_eq!(out.outcome(), Outcome::NotHelped);
        // 10 s, 10 s, then the remaining 5 s: the fourth query runs at the deadline.
        assert_eq!(
            waits,
            [
                Duration::from_secs(10),
                Duration::from_secs(10),
                Duration::from_secs(5)
            ]
        );
        assert_eq!(calls, 4);
        assert_eq!(clock.monotonic().0, Duration::from_secs(25));

        let (out, ..) = run(
            vec![Err(unavailable())],
            Expect::Empty,
            Duration::from_secs(5),
        )
        .await;
        assert!(
            matches!(&out, VerifyOutcome::TimedOut { last: LastSeen::Unavailable { message }, .. }
                if message.contains("connection refused")),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn refused_queries_and_wrong_types_stop_at_once() {
        let (out, waits, calls, _) = run(
            vec![Err(PortError::Invalid("parse error at char 3".into()))],
            Expect::Empty,
            Duration::from_mins(5),
        )
        .await;
        assert!(
            matches!(&out, VerifyOutcome::Failed { attempts: 1, reason } if reason.contains("parse error")),
            "{out:?}"
        );
        assert!(waits.is_empty());
        assert_eq!(calls, 1);
        let (out, ..) = run(
            vec![Ok(vector(1)), Ok(QueryValue::Scalar(0.0))],
            Expect::Empty,
            Duration::from_mins(5),
        )
        .await;
        assert!(
            matches!(&out, VerifyOutcome::Failed { attempts: 2, reason } if reason.contains("scalar")),
            "{out:?}"
        );
        assert_eq!(out.outcome(), Outcome::NotHelped);
    }

    #[tokio::test]
    async fn a_zero_interval_still_makes_progress() {
        let clock = ManualClock::at_epoch();
        let q = Scripted::new(vec![Ok(vector(1))]);
        let sleeper = ClockSleeper {
            clock: clock.clone(),
            waits: Mutex::new(Vec::new()),
        };
        let out = until_holds(
            &q,
            &spec(Expect::Empty, Duration::from_millis(3)),
            &clock,
            &sleeper,
            Duration::ZERO,
        )
        .await;
        assert!(
            matches!(out, VerifyOutcome::TimedOut { attempts: 4, .. }),
            "{out:?}"
        );
    }
}
