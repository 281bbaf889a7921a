//! The schedule loop: every tick, each secret with a target is driven through as many
//! steps as it can take now ([`sre_rotation::drive::drive`], which does nothing while
//! the secret is not due), and every secret's status is refreshed into the metrics.
//! Time comes from the injected [`Clock`]; a failing secret backs off (doubling from one
//! tick, at most 10 ticks) without holding up the others.

use crate::metrics::RotationMetrics;
use chrono::{DateTime, Utc};
use sre_core::Clock;
use sre_core::guard::{Backoff, Jitter};
use sre_core::ports::SecretStore;
use sre_rotation::config::CertificateSpec;
use sre_rotation::drive::{self, StopAt, error_chain};
use sre_rotation::plan::Step;
use sre_rotation::run::Ports;
use sre_rotation::{CredentialTarget, ManagedSecret};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// One managed secret and the target that accepts its credential (`None`: a class with
/// no executor in this build; reported, not rotated).
pub struct Managed {
    /// The inventory entry.
    pub secret: ManagedSecret,
    /// Its target.
    pub target: Option<Arc<dyn CredentialTarget>>,
}

struct Slot {
    managed: Managed,
    failures: u32,
    not_before: DateTime<Utc>,
}

/// The controller: the ports, the secrets and what it knows between ticks (only
/// back-off; everything else is re-read from OpenBao each time).
pub struct Controller {
    store: Arc<dyn SecretStore>,
    slots: Vec<Slot>,
    clock: Arc<dyn Clock>,
    metrics: RotationMetrics,
    tick: Duration,
    backoff: Backoff,
    certificates: BTreeMap<String, CertificateSpec>,
}

impl Controller {
    /// A controller over `secrets`, looking at each one every `tick`.
    pub fn new(
        store: Arc<dyn SecretStore>,
        secrets: Vec<Managed>,
        clock: Arc<dyn Clock>,
        metrics: RotationMetrics,
        tick: Duration,
    ) -> Self {
        let slots = secrets
            .into_iter()
            .map(|managed| Slot {
                managed,
                failures: 0,
                not_before: DateTime::<Utc>::MIN_UTC,
            })
            .collect();
        let factor = NonZeroU32::MIN.saturating_add(1);
        Self {
            store,
            slots,
            clock,
            metrics,
            tick,
            backoff: Backoff::new(tick, factor, tick.saturating_mul(10), Jitter::None),
            certificates: BTreeMap::new(),
        }
    }

    /// Adds the expiry of observe-only secrets (svid, tls), exported every tick.
    #[must_use]
    pub fn with_certificates(mut self, certificates: BTreeMap<String, CertificateSpec>) -> Self {
        self.certificates = certificates;
        self
    }

    /// One pass over every secret; returns how long to sleep before the next one (a
    /// tick, or less when a wait ends sooner).
    pub async fn tick(&mut self) -> Duration {
        let now = self.clock.wall();
        let mut next = now + chrono::Duration::from_std(self.tick).unwrap_or_default();
        for slot in &mut self.slots {
            let s = &slot.managed.secret;
            if let Some(target) = &slot.managed.target
                && slot.not_before <= now
            {
                let ports = Ports {
                    store: self.store.as_ref(),
                    target: target.as_ref(),
                };
                match drive::drive(ports, s, now, StopAt::Quiet).await {
                    Ok(report) => {
                        slot.failures = 0;
                        for step in &report.steps {
                            match step {
                                Step::Promote { .. } => self.metrics.attempt(&s.name, "rotated"),
                                Step::DropPending { .. } => {
                                    self.metrics.attempt(&s.name, "aborted");
                                }
                                _ => {}
                            }
                        }
                        if let Some(w) = report.wake_at.filter(|w| *w > now) {
                            next = next.min(w);
                        }
                    }
                    Err(e) => {
                        slot.failures = slot.failures.saturating_add(1);
                        let wait = self.backoff.cap(slot.failures - 1);
                        slot.not_before =
                            now + chrono::Duration::from_std(wait).unwrap_or_default();
                        self.metrics.attempt(&s.name, "failed");
                        tracing::warn!(secret = %s.name, kind = e.kind(), error = %error_chain(&e),
                            retry_in = ?wait, "rotation step failed; backing off");
                    }
                }
            }
            let row = drive::status(self.store.as_ref(), s, now).await;
            self.metrics.observe(&row);
            if let Some(cert) = self.certificates.get(&s.name) {
                self.metrics.observe_certificate(&s.name, cert, now);
            }
        }
        (next - self.clock.wall())
            .to_std()
            .unwrap_or(Duration::ZERO)
    }

    /// Ticks until `shutdown` resolves; a step in flight finishes first, so a shutdown
    /// never leaves a step done but unrecorded.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let sleep = self.tick().await;
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use sre_core::ManualClock;
    use sre_core::PortError;
    use sre_core::ports::SecretData;
    use sre_core::testing::MemSecretStore;
    use sre_rotation::SecretClass;
    use sre_rotation::Verification;
    use sre_rotation::model::{ApprovalPolicy, Cadence};

    struct Always;

    #[async_trait]
    impl CredentialTarget for Always {
        async fn issue(&self) -> Result<SecretData, PortError> {
            Ok(SecretData::from_pairs([("password", "pw")]))
        }
        async fn install(&self, _: &SecretData) -> Result<(), PortError> {
            Ok(())
        }
        async fn verify(&self, _: &SecretData) -> Result<Verification, PortError> {
            Ok(Verification::Accepted)
        }
        async fn revoke(&self, _: &SecretData) -> Result<(), PortError> {
            Ok(())
        }
    }

    fn secret(name: &str, class: SecretClass) -> ManagedSecret {
        ManagedSecret {
            name: name.into(),
            class,
            path: format!("apps/{name}"),
            cadence: Cadence::MaxAge(Duration::from_secs(100)),
            overlap: Duration::from_secs(10),
            owner: "o".into(),
            consumers: vec![],
            approval: ApprovalPolicy::NotRequired,
        }
    }

    fn render(reg: &sre_core::telemetry::Registry) -> String {
        sre_core::telemetry::render_metrics(reg).unwrap_or_default()
    }

    #[tokio::test]
    async fn ticks_rotate_due_secrets_report_the_rest_and_back_off_on_outage() {
        let store = Arc::new(MemSecretStore::new());
        let clock = ManualClock::at_epoch();
        let mut reg = sre_core::telemetry::metrics_registry();
        let metrics = RotationMetrics::register(&mut reg);
        let mut c = Controller::new(
            store.clone(),
            vec![
                Managed {
                    secret: secret("db", SecretClass::DynamicDb),
                    target: Some(Arc::new(Always)),
                },
                Managed {
                    secret: secret("tok", SecretClass::ApiToken),
                    target: None,
                },
            ],
            Arc::new(clock.clone()),
            metrics,
            Duration::from_secs(30),
        );
        assert_eq!(c.tick().await, Duration::from_secs(30));
        let text = render(&reg);
        assert!(
            text.contains("sre_rotation_attempts_total{secret=\"db\",result=\"rotated\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sre_rotation_current_version{secret=\"db\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sre_rotation_current_version{secret=\"tok\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("sre_rotation_last_result{secret=\"tok\",result=\"none\"} 1"),
            "a secret without target is reported: {text}"
        );

        clock.advance(Duration::from_secs(100));
        // Rotates again; the overlap (10 s) ends before the next tick, so it wakes early.
        assert_eq!(c.tick().await, Duration::from_secs(10));
        assert!(render(&reg).contains("sre_rotation_secret_age_seconds{secret=\"db\"} 0"));

        store.set_unavailable(true);
        clock.advance(Duration::from_secs(10));
        c.tick().await;
        let text = render(&reg);
        assert!(
            text.contains("sre_rotation_attempts_total{secret=\"db\",result=\"failed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sre_rotation_state_readable{secret=\"db\"} 0"),
            "{text}"
        );
        clock.advance(Duration::from_secs(1));
        c.tick().await;
        assert!(
            render(&reg).contains("sre_rotation_attempts_total{secret=\"db\",result=\"failed\"} 1"),
            "backing off: no second attempt within a tick"
        );
        store.set_unavailable(false);
        clock.advance(Duration::from_secs(30));
        c.tick().await;
        let text = render(&reg);
        assert!(
            text.contains("sre_rotation_state_readable{secret=\"db\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sre_rotation_current_version{secret=\"db\"} 2"),
            "{text}"
        );
    }
}
