//! Retrying a webhook redelivery request with exponential backoff (`retry_with_backoff`):
//! the application may be down for the very reason its webhooks failed, so a refused
//! connection or a 5xx is asked again after `Backoff::cap(attempt)`, up to the rule's
//! `max_attempts`; a refusal (4xx) is final at once, because asking again cannot help.
//!
//! The wait goes through the injected [`Sleeper`] (as in `verify::until_holds`), so tests
//! run five attempts without sleeping and the binary passes tokio's timer. The delay is
//! the backoff's cap without jitter: one request per alert has no herd to spread, and
//! this crate draws no random numbers.

use std::fmt;
use std::sync::Arc;

use sre_core::PortError;
use sre_core::guard::Backoff;

use crate::actions::{ActionOutcome, Mode, WebhookRedelivery, WebhookRef};
use crate::verify::Sleeper;

/// The redelivery port with what its retries need.
#[derive(Clone)]
pub struct Redelivery {
    /// One request per call.
    pub port: Arc<dyn WebhookRedelivery>,
    /// Wait before retry `n` (0-based): `backoff.cap(n)`.
    pub backoff: Backoff,
    /// Waits between attempts.
    pub sleeper: Arc<dyn Sleeper>,
}

impl fmt::Debug for Redelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redelivery")
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl Redelivery {
    /// Asks for the redelivery of `webhook`'s failed deliveries, at most `max_attempts`
    /// times (at least once); the outcome's `after` and detail count the attempts. A dry
    /// run asks the port once in dry-run mode (it sends nothing) and never waits.
    ///
    /// # Errors
    /// The first non-retryable port error at once; after `max_attempts` retryable ones,
    /// `Unavailable` naming the attempts and the last error.
    pub async fn redeliver(
        &self,
        webhook: &WebhookRef,
        max_attempts: u32,
        mode: Mode,
    ) -> Result<ActionOutcome, PortError> {
        if mode.is_dry_run() {
            return self.port.redeliver(webhook, mode).await;
        }
        let max_attempts = max_attempts.max(1);
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            match self.port.redeliver(webhook, mode).await {
                Ok(mut out) => {
                    out.after = Some(format!("attempts={attempt}"));
                    out.detail = format!("{} (attempt {attempt} of {max_attempts})", out.detail);
                    return Ok(out);
                }
                Err(e) if e.is_retryable() && attempt < max_attempts => {
                    let wait = self.backoff.cap(attempt - 1);
                    tracing::info!(webhook = %webhook, attempt, max_attempts, error = %e,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "redelivery request failed; retrying");
                    self.sleeper.sleep(wait).await;
                }
                Err(PortError::Unavailable { backend, message }) => {
                    return Err(PortError::Unavailable {
                        backend,
                        message: format!(
                            "gave up after {attempt} attempt(s) asking to redeliver {webhook}: {message}"
                        ),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeRedelivery;
    use async_trait::async_trait;
    use sre_core::guard::Jitter;
    use std::num::NonZeroU32;
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct Recorded(Mutex<Vec<Duration>>);

    #[async_trait]
    impl Sleeper for Recorded {
        async fn sleep(&self, d: Duration) {
            self.0.lock().expect("lock").push(d);
        }
    }

    fn retry(fake: &Arc<FakeRedelivery>, sleeper: &Arc<Recorded>) -> Redelivery {
        Redelivery {
            port: fake.clone(),
            backoff: Backoff::new(
                Duration::from_secs(1),
                NonZeroU32::MIN.saturating_add(1),
                Duration::from_secs(5),
                Jitter::None,
            ),
            sleeper: sleeper.clone(),
        }
    }

    fn unavailable() -> PortError {
        PortError::Unavailable {
            backend: "billing",
            message: "HTTP 503".into(),
        }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_with_exponential_waits_until_one_succeeds() {
        let hook = WebhookRef::new(Some("bank"), "stripe");
        let fake = Arc::new(FakeRedelivery::default().failing_first(3, unavailable()));
        let sleeper = Arc::new(Recorded::default());
        let out = retry(&fake, &sleeper)
            .redeliver(&hook, 5, Mode::Apply)
            .await
            .expect("the fourth attempt succeeds");
        assert_eq!(out.after.as_deref(), Some("attempts=4"));
        assert!(out.detail.ends_with("(attempt 4 of 5)"), "{}", out.detail);
        assert_eq!(fake.requests(), 4);
        assert_eq!(fake.redelivered(), [hook]);
        assert_eq!(
            *sleeper.0.lock().expect("lock"),
            [1, 2, 4].map(Duration::from_secs),
            "base 1 s doubling, below the 5 s cap"
        );
    }

    #[tokio::test]
    async fn giving_up_names_the_attempts_and_a_refusal_is_not_retried() {
        let hook = WebhookRef::new(None, "stripe");
        let fake = Arc::new(FakeRedelivery::default().failing_first(9, unavailable()));
        let sleeper = Arc::new(Recorded::default());
        let err = retry(&fake, &sleeper)
            .redeliver(&hook, 4, Mode::Apply)
            .await
            .expect_err("never succeeds");
        assert!(
            matches!(&err, PortError::Unavailable { message, .. }
                if message.starts_with("gave up after 4 attempt(s)") && message.ends_with("HTTP 503")),
            "{err}"
        );
        assert_eq!(fake.requests(), 4);
        assert_eq!(
            *sleeper.0.lock().expect("lock"),
            [1, 2, 4].map(Duration::from_secs),
            "no wait after the last attempt"
        );

        let refused = PortError::Rejected {
            backend: "billing",
            message: "HTTP 401".into(),
        };
        let fake = Arc::new(FakeRedelivery::default().failing_first(1, refused.clone()));
        let sleeper = Arc::new(Recorded::default());
        assert_eq!(
            retry(&fake, &sleeper)
                .redeliver(&hook, 5, Mode::Apply)
                .await,
            Err(refused)
        );
        assert_eq!(fake.requests(), 1);
        assert!(sleeper.0.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn a_dry_run_asks_once_and_sends_nothing_and_zero_attempts_still_asks_once() {
        let hook = WebhookRef::new(Some("bank"), "stripe");
        let fake = Arc::new(FakeRedelivery::default().failing_first(1, unavailable()));
        let sleeper = Arc::new(Recorded::default());
        let r = retry(&fake, &sleeper);
        let dry = r.redeliver(&hook, 5, Mode::DryRun).await.expect("dry");
        assert!(dry.dry_run && fake.redelivered().is_empty() && fake.requests() == 0);
        assert!(matches!(
            r.redeliver(&hook, 0, Mode::Apply).await,
            Err(PortError::Unavailable { message, .. }) if message.starts_with("gave up after 1 attempt(s)")
        ));
        assert_eq!(fake.requests(), 1);
    }
}
