//! The schedule loop: every tick, each secret with a target is driven through as many
//! steps as it can take now ([`sre_rotation::drive::drive`], which does nothing while
//! the secret is not due), and every secret's status is refreshed into the metrics.
//! Time comes from the injected [`Clock`]; a failing secret backs off (doubling from one
//! tick, at most 10 ticks) without holding up the others.
//!
//! After a promotion the consumers are moved through the optional [`ConsumerRefresh`]
//! (see [`crate::consumers`]): a secret whose consumers have not moved yet is not driven,
//! so its previous version is retired only after the overlap window *and* the refresh.
//! Without a refresher (no Kubernetes client) nothing is refreshed, retirement follows
//! the overlap alone, and the metrics say `no_kube_client`.
//!
//! Secrets whose target mints leased credentials (see [`Controller::with_lease_renewal`])
//! get their live credentials' leases renewed every tick they are due (see
//! [`crate::leases`]): the current version always, the previous one during its overlap.
//!
//! Secrets whose target has an `engine:` block (see [`Controller::with_engines`]) get
//! their database engine configured at the start of the first tick, before anything is
//! driven; while that fails (OpenBao down, password file missing) the secret is not
//! driven and the setup is retried with the same back-off as a failing step.

use crate::certs::{self, CertManager};
use crate::consumers::{ConsumerRefresh, ConsumerStatus, Refreshes};
use crate::engines::EngineSetup;
use crate::leases::{self, LeaseBook, Live, Renewed, Which};
use crate::metrics::RotationMetrics;
use chrono::{DateTime, Utc};
use sre_core::Clock;
use sre_core::guard::{Backoff, Jitter};
use sre_core::ports::SecretStore;
use sre_rotation::config::{CertificateSpec, LeaseRenewal};
use sre_rotation::drive::{self, StopAt, error_chain};
use sre_rotation::expiry::expiry_report;
use sre_rotation::plan::Step;
use sre_rotation::run::{self, Ports};
use sre_rotation::{CredentialTarget, KeepAlive, ManagedSecret};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

/// The restart coalescing window when none is configured.
pub const DEFAULT_RESTART_WINDOW: Duration = Duration::from_mins(1);

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
    /// Whether the persisted state was looked at for a refresh owed from before a restart.
    seen: bool,
}

/// A secret's database engine and whether it is configured yet (kept in memory: a
/// restarted controller configures it again, which changes nothing).
struct Engine {
    setup: Arc<dyn EngineSetup>,
    ready: bool,
    failures: u32,
    not_before: DateTime<Utc>,
}

/// The controller: the ports, the secrets and what it knows between ticks (back-off,
/// configured engines and the last lease renewals; everything else is re-read from
/// OpenBao each time).
pub struct Controller {
    store: Arc<dyn SecretStore>,
    slots: Vec<Slot>,
    clock: Arc<dyn Clock>,
    metrics: RotationMetrics,
    tick: Duration,
    backoff: Backoff,
    certificates: BTreeMap<String, CertificateSpec>,
    cert_manager: Option<Arc<dyn CertManager>>,
    /// What was last logged per certificate, so a change is logged once.
    cert_said: BTreeMap<String, String>,
    refresher: Option<Arc<dyn ConsumerRefresh>>,
    refreshes: Refreshes,
    leases: BTreeMap<String, LeaseRenewal>,
    book: LeaseBook,
    engines: BTreeMap<String, Engine>,
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
                seen: false,
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
            cert_manager: None,
            cert_said: BTreeMap::new(),
            refresher: None,
            refreshes: Refreshes::new(DEFAULT_RESTART_WINDOW),
            leases: BTreeMap::new(),
            book: LeaseBook::new(),
            engines: BTreeMap::new(),
        }
    }

    /// Configures, per secret name, the database engine its target needs before the
    /// secret is driven for the first time: an operator no longer has to. A secret
    /// whose engine is not configured yet is not rotated (every issue would fail
    /// against a missing role) and its setup is retried with back-off.
    #[must_use]
    pub fn with_engines(mut self, engines: BTreeMap<String, Arc<dyn EngineSetup>>) -> Self {
        self.engines = engines
            .into_iter()
            .map(|(name, setup)| {
                let engine = Engine {
                    setup,
                    ready: false,
                    failures: 0,
                    not_before: DateTime::<Utc>::MIN_UTC,
                };
                (name, engine)
            })
            .collect();
        self
    }

    /// Tries every engine not configured yet whose back-off has passed, and exports
    /// where each one stands.
    async fn configure_engines(&mut self, now: DateTime<Utc>) {
        for (name, e) in &mut self.engines {
            if e.ready || e.not_before > now {
                continue;
            }
            match e.setup.ensure().await {
                Ok(changes) => {
                    e.ready = true;
                    e.failures = 0;
                    self.metrics.engine_setup(name, true);
                    tracing::info!(secret = %name, mount = ?changes.mount,
                        connection = ?changes.connection, role = ?changes.role,
                        "database engine configured");
                }
                Err(err) => {
                    e.failures = e.failures.saturating_add(1);
                    let wait = self.backoff.cap(e.failures - 1);
                    e.not_before = now + chrono::Duration::from_std(wait).unwrap_or_default();
                    self.metrics.engine_setup(name, false);
                    tracing::warn!(secret = %name, kind = err.kind(), error = %error_chain(&err),
                        retry_in = ?wait, "database engine not configured; the secret is not \
                        rotated until it is");
                }
            }
        }
    }

    /// Renews the leases of the live credentials of the secrets named in `leases`
    /// (those whose target mints leased credentials), each as its [`LeaseRenewal`] says:
    /// without it a minted credential dies at the role's TTL, current version or not.
    #[must_use]
    pub fn with_lease_renewal(mut self, leases: BTreeMap<String, LeaseRenewal>) -> Self {
        self.leases = leases;
        self
    }

    /// Moves consumers through `refresher` after each promotion, coalescing Deployment
    /// restarts over `restart_window`. `None`: no Kubernetes client (reported).
    #[must_use]
    pub fn with_consumers(
        mut self,
        refresher: Option<Arc<dyn ConsumerRefresh>>,
        restart_window: Duration,
    ) -> Self {
        self.refresher = refresher;
        self.refreshes = Refreshes::new(restart_window);
        self
    }

    /// Observes the certificates of observe-only secrets (svid, tls): each is read
    /// again from its source every tick (see [`crate::certs`]) and exported;
    /// `cert_manager` reads `cert_manager` sources (`None`: no Kubernetes client, those
    /// sources are reported unreadable).
    #[must_use]
    pub fn with_certificates(
        mut self,
        certificates: BTreeMap<String, CertificateSpec>,
        cert_manager: Option<Arc<dyn CertManager>>,
    ) -> Self {
        self.certificates = certificates;
        self.cert_manager = cert_manager;
        self
    }

    /// Reads every observed certificate and exports it; logs when one becomes
    /// unreadable, reaches its alert lead time or expires (once per change, not every
    /// tick).
    async fn observe_certificates(&mut self, now: DateTime<Utc>) {
        for (name, spec) in &self.certificates {
            let observed = certs::read(spec, self.cert_manager.as_deref()).await;
            self.metrics
                .observe_certificate(name, &observed, spec.alert_before, now);
            let said = match &observed {
                Ok(v) => expiry_report(now, v.not_after, spec.alert_before)
                    .label()
                    .to_owned(),
                Err(e) => format!("unreadable: {e}"),
            };
            if self.cert_said.get(name) == Some(&said) {
                continue;
            }
            match &observed {
                Ok(v) if said == "ok" => {
                    tracing::info!(secret = %name, not_after = %v.not_after, "certificate ok");
                }
                Ok(v) => tracing::warn!(secret = %name, not_after = %v.not_after, status = %said,
                    "certificate close to or past its expiry: is its renewer (SPIRE, cert-manager) stuck?"),
                Err(e) => tracing::warn!(secret = %name, error = %e, "certificate unreadable"),
            }
            self.cert_said.insert(name.clone(), said);
        }
    }

    /// One pass over every secret; returns how long to sleep before the next one (a
    /// tick, or less when a wait ends sooner).
    pub async fn tick(&mut self) -> Duration {
        let now = self.clock.wall();
        let mut next = now + chrono::Duration::from_std(self.tick).unwrap_or_default();
        let refreshing = self.refresher.is_some();
        self.configure_engines(now).await;
        for slot in &mut self.slots {
            let s = &slot.managed.secret;
            let engine_ready = self.engines.get(&s.name).is_none_or(|e| e.ready);
            if !engine_ready {
                tracing::debug!(secret = %s.name, "not driven: its database engine is not configured");
            }
            if let Some(target) = &slot.managed.target
                && engine_ready
                && slot.not_before <= now
            {
                if refreshing && !slot.seen {
                    // A refresh owed from before a restart: the persisted state is still
                    // inside its overlap window.
                    if let Ok((state, _, _)) = run::load(self.store.as_ref(), &s.path).await {
                        slot.seen = true;
                        if let (Some(cur), Some(at), Some(_)) =
                            (state.current, state.rotated_at, &state.previous)
                        {
                            self.refreshes.note(s, cur, at);
                        }
                    }
                }
                let ports = Ports {
                    store: self.store.as_ref(),
                    target: target.as_ref(),
                };
                if refreshing && self.refreshes.holds(&s.name) {
                    tracing::debug!(secret = %s.name, "held until its consumers have moved");
                } else {
                    match drive::drive(ports, s, now, StopAt::Quiet).await {
                        Ok(report) => {
                            slot.failures = 0;
                            let mut promoted = false;
                            for step in &report.steps {
                                match step {
                                    Step::Promote { .. } => {
                                        promoted = true;
                                        self.metrics.attempt(&s.name, "rotated");
                                    }
                                    Step::DropPending { version, reason } => {
                                        self.metrics.attempt(&s.name, "aborted");
                                        tracing::warn!(secret = %s.name, pending = version,
                                            current = ?report.state.current, %reason,
                                            "rotation aborted: the target refused the new \
                                             credential; the current one stays in use");
                                    }
                                    _ => {}
                                }
                            }
                            let st = &report.state;
                            if refreshing
                                && (promoted || st.previous.is_some())
                                && let (Some(cur), Some(at)) = (st.current, st.rotated_at)
                            {
                                self.refreshes.note(s, cur, at);
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
            }
            let row = drive::status(self.store.as_ref(), s, now).await;
            self.metrics.observe(&row);
        }
        self.observe_certificates(now).await;
        if let Some(at) = self.keep_leases_alive(now).await {
            next = next.min(at);
        }
        if let Some(at) = self.refresh_consumers(now).await {
            next = next.min(at.max(now));
        }
        (next - self.clock.wall())
            .to_std()
            .unwrap_or(Duration::ZERO)
    }

    /// Renews the leases due at `now` of every secret with lease renewal, exports the
    /// time left on each live lease, and returns when the next renewal falls due (only
    /// times after `now`: a failed renewal is retried at the next tick, not at once).
    async fn keep_leases_alive(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut next: Option<DateTime<Utc>> = None;
        for slot in &self.slots {
            let s = &slot.managed.secret;
            let (Some(target), Some(lease)) = (&slot.managed.target, self.leases.get(&s.name))
            else {
                continue;
            };
            // An unreadable state is already in the status metrics; retried next tick.
            let Ok((state, _, _)) = run::load(self.store.as_ref(), &s.path).await else {
                continue;
            };
            let live = leases::live(state.current, state.previous.as_ref().map(|p| p.version));
            self.book.retain_live(&s.name, &live);
            let last = self.book.of(&s.name);
            for l in leases::due(&live, &last, now, lease.every) {
                let result = renew(self.store.as_ref(), target.as_ref(), s, l, now).await;
                if let Some(label) = result.label {
                    self.metrics.lease_renewal(&s.name, label);
                }
                if let Some(r) = result.renewed {
                    self.book.record(&s.name, l.version, r);
                }
            }
            let last = self.book.of(&s.name);
            for which in [Which::Current, Which::Previous] {
                match live.iter().find(|l| l.which == which) {
                    None => self.metrics.forget_lease(&s.name, which.label()),
                    Some(l) => {
                        if let Some(r) = last.get(&l.version) {
                            let left = leases::remaining_at(r, now);
                            self.metrics.lease_remaining(&s.name, which.label(), left);
                        }
                    }
                }
            }
            if let Some(at) = leases::next_due(&live, &last, lease.every).filter(|at| *at > now) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        next
    }

    /// Moves the consumers owed a refresh (when there is a refresher) and exports where
    /// every secret's consumers stand; returns when a held-back rollout becomes due.
    async fn refresh_consumers(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut next_at = None;
        if let Some(refresher) = &self.refresher {
            let report = self.refreshes.run(refresher.as_ref(), now).await;
            self.metrics
                .refreshes("externalsecret", "ok", report.synced.len());
            self.metrics
                .refreshes("deployment", "ok", report.restarted.len());
            for (what, error) in &report.failed {
                let kind = if what.starts_with("deployment/") {
                    "deployment"
                } else {
                    "externalsecret"
                };
                self.metrics.refreshes(kind, "failed", 1);
                tracing::warn!(consumer = %what, error = %error, "consumer refresh failed; retirement held, retrying next tick");
            }
            next_at = report.next_at;
        }
        for slot in &self.slots {
            let s = &slot.managed.secret;
            let status = match &self.refresher {
                _ if s.consumers.is_empty() => ConsumerStatus::None,
                None => ConsumerStatus::NoKubeClient,
                Some(_) => self.refreshes.status(s),
            };
            self.metrics.observe_consumers(&s.name, status);
        }
        next_at
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

/// How one renewal went: the metric label (none when there was nothing to renew), and
/// what to remember (nothing when the renewal could not be made, so that it is retried
/// at the next tick).
struct RenewResult {
    label: Option<&'static str>,
    renewed: Option<Renewed>,
}

/// Renews the lease of one live credential: reads its KV version and asks the target to
/// keep it alive. A capped or gone lease is logged as a warning: consumers of that
/// version will see failed logins unless the secret rotates (or retires) first.
async fn renew(
    store: &dyn SecretStore,
    target: &dyn CredentialTarget,
    s: &ManagedSecret,
    l: Live,
    now: DateTime<Utc>,
) -> RenewResult {
    let failed = |error: String| {
        tracing::warn!(secret = %s.name, version = l.which.label(), kv_version = l.version,
            %error, "lease renewal failed; retrying next tick");
        RenewResult {
            label: Some("failed"),
            renewed: None,
        }
    };
    let data = match store.read(&s.path, Some(l.version)).await {
        Ok(Some(v)) => v.data,
        Ok(None) => return failed(format!("KV version {} is gone", l.version)),
        Err(e) => return failed(error_chain(&e)),
    };
    let (label, remaining) = match target.keep_alive(&data).await {
        Ok(KeepAlive::Extended { remaining }) => ("ok", remaining),
        Ok(KeepAlive::Capped { remaining }) => {
            tracing::warn!(secret = %s.name, version = l.which.label(), kv_version = l.version,
                remaining = ?remaining, "lease cannot be extended past the role's max_ttl: the \
                credential stops working then unless the secret rotates first");
            ("capped", remaining)
        }
        Ok(KeepAlive::Gone) => {
            tracing::warn!(secret = %s.name, version = l.which.label(), kv_version = l.version,
                "lease is gone (revoked or expired): this credential no longer logs in");
            ("gone", Duration::ZERO)
        }
        // Nothing to renew (a target without leases): nothing to remember or count.
        Ok(_) => {
            return RenewResult {
                label: None,
                renewed: None,
            };
        }
        Err(e) => return failed(error_chain(&e)),
    };
    tracing::debug!(secret = %s.name, version = l.which.label(), kv_version = l.version,
        remaining = ?remaining, result = label, "lease renewed");
    RenewResult {
        label: Some(label),
        renewed: Some(Renewed { at: now, remaining }),
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
    use sre_rotation::expiry::Validity;
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

    fn has(reg: &sre_core::telemetry::Registry, line: &str) -> bool {
        let text = render(reg);
        assert!(text.contains(line), "missing {line}:\n{text}");
        true
    }

    // One scenario, promotion to retirement, reads best as one function.
    #[allow(clippy::too_many_lines)]
    #[tokio::test]
    async fn consumers_move_once_per_workload_and_retirement_waits_for_them() {
        use crate::consumers::fake::{FakeKube, secret_with};
        let store = Arc::new(MemSecretStore::new());
        let clock = ManualClock::at_epoch();
        let mut reg = sre_core::telemetry::metrics_registry();
        let metrics = RotationMetrics::register(&mut reg);
        let kube = Arc::new(FakeKube::default());
        let db = secret_with(
            "db",
            &["deployment/billing/api", "externalsecret/billing/db"],
        );
        let tok = secret_with(
            "tok",
            &["deployment/billing/api", "externalsecret/billing/tok"],
        );
        let mut c = Controller::new(
            store.clone(),
            [db.clone(), tok]
                .into_iter()
                .map(|secret| Managed {
                    secret,
                    target: Some(Arc::new(Always) as Arc<dyn CredentialTarget>),
                })
                .collect(),
            Arc::new(clock.clone()),
            metrics,
            Duration::from_secs(30),
        )
        .with_consumers(Some(kube.clone()), Duration::from_secs(20));
        let t0 = clock.wall().timestamp();
        // Both secrets promoted in one tick: ESO syncs at once, the rollout waits 20 s.
        assert_eq!(c.tick().await, Duration::from_secs(20));
        assert_eq!(kube.calls().len(), 2, "{:?}", kube.calls());
        assert!(has(
            &reg,
            "sre_rotation_consumers_status{secret=\"db\",status=\"pending\"} 1"
        ));
        clock.advance(Duration::from_secs(20));
        c.tick().await;
        assert_eq!(
            kube.calls(),
            [
                format!("force-sync externalsecret/billing/db @{t0}"),
                format!("force-sync externalsecret/billing/tok @{t0}"),
                format!("restart deployment/billing/api db,tok @{t0}"),
            ],
            "one rollout for two secrets"
        );
        assert!(has(
            &reg,
            "sre_rotation_consumer_refreshes_total{kind=\"deployment\",result=\"ok\"} 1"
        ));
        assert!(has(
            &reg,
            "sre_rotation_consumer_refreshes_total{kind=\"externalsecret\",result=\"ok\"} 2"
        ));
        assert!(has(
            &reg,
            "sre_rotation_consumers_status{secret=\"tok\",status=\"refreshed\"} 1"
        ));

        // The second rotation (t=100) leaves version 1 in its overlap until t=160; the
        // rollout fails, so version 1 is not retired at t=170.
        if let Ok(mut f) = kube.fail.lock() {
            f.insert("deployment/billing/api".into());
        }
        clock.advance(Duration::from_secs(80));
        c.tick().await;
        clock.advance(Duration::from_secs(70));
        c.tick().await;
        assert!(has(
            &reg,
            "sre_rotation_consumers_status{secret=\"db\",status=\"failed\"} 1"
        ));
        assert!(has(
            &reg,
            "sre_rotation_consumer_refreshes_total{kind=\"deployment\",result=\"failed\"} 1"
        ));
        let previous = |store: Arc<MemSecretStore>, path: String| async move {
            run::load(store.as_ref(), &path)
                .await
                .map_or_else(|e| panic!("{e}"), |(s, _, _)| s.previous.map(|p| p.version))
        };
        assert_eq!(
            previous(store.clone(), db.path.clone()).await,
            Some(1),
            "retirement held"
        );
        if let Ok(mut f) = kube.fail.lock() {
            f.clear();
        }
        clock.advance(Duration::from_secs(1));
        c.tick().await;
        clock.advance(Duration::from_secs(1));
        c.tick().await;
        assert_eq!(
            previous(store.clone(), db.path.clone()).await,
            None,
            "retired after the rollout"
        );
        let restarts = kube
            .calls()
            .iter()
            .filter(|c| c.starts_with("restart"))
            .count();
        assert_eq!(restarts, 3, "first, failed, retried: {:?}", kube.calls());
    }

    #[tokio::test]
    async fn without_a_kube_client_the_metrics_say_consumers_are_not_refreshed() {
        let store = Arc::new(MemSecretStore::new());
        let mut reg = sre_core::telemetry::metrics_registry();
        let metrics = RotationMetrics::register(&mut reg);
        let mut c = Controller::new(
            store,
            vec![Managed {
                secret: crate::consumers::fake::secret_with("db", &["deployment/a/b"]),
                target: Some(Arc::new(Always)),
            }],
            Arc::new(ManualClock::at_epoch()),
            metrics,
            Duration::from_secs(30),
        );
        c.tick().await;
        assert!(has(
            &reg,
            "sre_rotation_consumers_status{secret=\"db\",status=\"no_kube_client\"} 1"
        ));
        assert!(has(
            &reg,
            "sre_rotation_consumers_status{secret=\"db\",status=\"refreshed\"} 0"
        ));
    }

    /// A cert-manager whose `Certificate` status the test changes between ticks.
    struct FakeCertManager(std::sync::Mutex<Result<Validity, PortError>>);

    #[async_trait]
    impl CertManager for FakeCertManager {
        async fn validity(&self, _: &str, _: &str) -> Result<Validity, PortError> {
            self.0
                .lock()
                .map_err(|_| PortError::Invalid("poisoned".into()))?
                .clone()
        }
    }

    #[tokio::test]
    async fn observed_certificates_follow_their_source_every_tick() {
        use sre_rotation::config::{CertSource, CertificateSpec};
        let store = Arc::new(MemSecretStore::new());
        let clock = Arc::new(ManualClock::at_epoch());
        let now = clock.wall();
        let mut reg = sre_core::telemetry::metrics_registry();
        let metrics = RotationMetrics::register(&mut reg);
        let valid = |days: i64| Validity {
            not_before: Some(now),
            not_after: now + chrono::Duration::days(days),
        };
        let cm = Arc::new(FakeCertManager(std::sync::Mutex::new(Ok(valid(3)))));
        let certs = BTreeMap::from([(
            "ingress".to_owned(),
            CertificateSpec {
                source: CertSource::CertManager {
                    namespace: "ns".into(),
                    name: "ingress".into(),
                },
                alert_before: Duration::from_hours(7 * 24),
            },
        )]);
        let mut c = Controller::new(
            store,
            vec![Managed {
                secret: ManagedSecret {
                    cadence: Cadence::Never,
                    ..secret("ingress", SecretClass::Tls)
                },
                target: None,
            }],
            clock.clone(),
            metrics,
            Duration::from_secs(30),
        )
        .with_certificates(certs, Some(cm.clone() as Arc<dyn CertManager>));
        c.tick().await;
        let expiry = (now + chrono::Duration::days(3)).timestamp();
        assert!(has(
            &reg,
            &format!(
                "sre_rotation_certificate_expiry_timestamp_seconds{{secret=\"ingress\"}} {expiry}"
            )
        ));
        assert!(has(
            &reg,
            "sre_rotation_certificate_expiry_status{secret=\"ingress\",status=\"warn\"} 1"
        ));
        // cert-manager renews: the next tick sees the new certificate.
        *cm.0.lock().expect("lock") = Ok(valid(90));
        clock.advance(Duration::from_secs(30));
        c.tick().await;
        assert!(has(
            &reg,
            "sre_rotation_certificate_expiry_status{secret=\"ingress\",status=\"ok\"} 1"
        ));
        assert!(has(
            &reg,
            "sre_rotation_secret_age_seconds{secret=\"ingress\"} 30"
        ));
        // The API server stops answering: unreadable, not the last good date.
        *cm.0.lock().expect("lock") = Err(PortError::Unavailable {
            backend: "kubernetes",
            message: "connection refused".into(),
        });
        c.tick().await;
        assert!(has(
            &reg,
            "sre_rotation_certificate_expiry_status{secret=\"ingress\",status=\"unreadable\"} 1"
        ));
        assert!(!render(&reg).contains("sre_rotation_certificate_expiry_timestamp_seconds{"));
    }

    /// Mints `pw1`, `pw2`, ... with leases: `keep_alive` records which password it kept
    /// alive and answers what `script` says for it (default: extended by 120 s); a
    /// revoked password's lease is gone.
    #[derive(Default)]
    struct Leased {
        issued: std::sync::Mutex<u32>,
        kept: std::sync::Mutex<Vec<String>>,
        script: std::sync::Mutex<BTreeMap<String, Result<KeepAlive, PortError>>>,
        revoked: std::sync::Mutex<Vec<String>>,
    }

    impl Leased {
        fn kept(&self) -> Vec<String> {
            self.kept.lock().map(|k| k.clone()).unwrap_or_default()
        }
        fn answer(&self, password: &str, outcome: Result<KeepAlive, PortError>) {
            if let Ok(mut s) = self.script.lock() {
                s.insert(password.into(), outcome);
            }
        }
    }

    #[async_trait]
    impl CredentialTarget for Leased {
        async fn issue(&self) -> Result<SecretData, PortError> {
            let mut n = self
                .issued
                .lock()
                .map_err(|e| PortError::Invalid(e.to_string()))?;
            *n += 1;
            Ok(SecretData::from_pairs([("password", format!("pw{n}"))]))
        }
        async fn install(&self, _: &SecretData) -> Result<(), PortError> {
            Ok(())
        }
        async fn verify(&self, _: &SecretData) -> Result<Verification, PortError> {
            Ok(Verification::Accepted)
        }
        async fn revoke(&self, c: &SecretData) -> Result<(), PortError> {
            if let Ok(mut r) = self.revoked.lock() {
                r.push(c.get("password").unwrap_or_default().to_owned());
            }
            Ok(())
        }
        async fn keep_alive(&self, c: &SecretData) -> Result<KeepAlive, PortError> {
            let pw = c.get("password").unwrap_or_default().to_owned();
            if let Ok(mut k) = self.kept.lock() {
                k.push(pw.clone());
            }
            if self.revoked.lock().is_ok_and(|r| r.contains(&pw)) {
                return Ok(KeepAlive::Gone);
            }
            let scripted = self.script.lock().ok().and_then(|s| s.get(&pw).cloned());
            scripted.unwrap_or(Ok(KeepAlive::Extended {
                remaining: Duration::from_mins(2),
            }))
        }
    }

    fn sample(reg: &sre_core::telemetry::Registry, prefix: &str) -> Option<i64> {
        render(reg)
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    fn remaining(reg: &sre_core::telemetry::Registry, version: &str) -> Option<i64> {
        sample(
            reg,
            &format!(
                "sre_rotation_lease_remaining_seconds{{secret=\"db\",version=\"{version}\"}} "
            ),
        )
    }

    fn renewals(reg: &sre_core::telemetry::Registry, result: &str) -> i64 {
        sample(
            reg,
            &format!("sre_rotation_lease_renewals_total{{secret=\"db\",result=\"{result}\"}} "),
        )
        .unwrap_or(0)
    }

    /// Current always, previous during its overlap, each at most every 40 s; capped,
    /// failed and gone renewals are counted, and a failed one is retried next tick.
    // One scenario across two rotations reads best as one function.
    #[allow(clippy::too_many_lines)]
    #[tokio::test]
    async fn live_leases_are_renewed_at_most_every_renew_every_until_retired() {
        let store = Arc::new(MemSecretStore::new());
        let clock = ManualClock::at_epoch();
        let mut reg = sre_core::telemetry::metrics_registry();
        let metrics = RotationMetrics::register(&mut reg);
        let target = Arc::new(Leased::default());
        let mut db = secret("db", SecretClass::DynamicDb);
        db.overlap = Duration::from_secs(50);
        let mut c = Controller::new(
            store,
            vec![
                Managed {
                    secret: db,
                    target: Some(target.clone()),
                },
                Managed {
                    secret: secret("tok", SecretClass::ApiToken),
                    target: Some(Arc::new(Always)),
                },
            ],
            Arc::new(clock.clone()),
            metrics,
            Duration::from_secs(30),
        )
        .with_lease_renewal(BTreeMap::from([(
            "db".to_owned(),
            LeaseRenewal {
                increment: Duration::from_mins(2),
                every: Duration::from_secs(40),
            },
        )]));
        let step = |s: u64| clock.advance(Duration::from_secs(s));

        // t=0: v1 promoted and renewed at once; the next tick is the usual 30 s.
        assert_eq!(c.tick().await, Duration::from_secs(30));
        assert_eq!(target.kept(), ["pw1"]);
        assert_eq!(remaining(&reg, "current"), Some(120));
        assert_eq!(remaining(&reg, "previous"), None);
        assert_eq!(renewals(&reg, "ok"), 1);
        // t=30: not due yet, the gauge counts down; the wake-up is the renewal at 40.
        step(30);
        assert_eq!(c.tick().await, Duration::from_secs(10));
        assert_eq!(target.kept(), ["pw1"]);
        assert_eq!(remaining(&reg, "current"), Some(90));
        // t=40: due. OpenBao caps it this time.
        target.answer(
            "pw1",
            Ok(KeepAlive::Capped {
                remaining: Duration::from_secs(70),
            }),
        );
        step(10);
        c.tick().await;
        assert_eq!(target.kept(), ["pw1", "pw1"]);
        assert_eq!(renewals(&reg, "capped"), 1);
        assert_eq!(remaining(&reg, "current"), Some(70));

        // t=100: v2 promoted, v1 is previous until 150. Both are due: v2 is new, v1 was
        // renewed 60 s ago. v2's renewal fails once.
        target.answer(
            "pw2",
            Err(PortError::Unavailable {
                backend: "test",
                message: "sealed".into(),
            }),
        );
        step(60);
        c.tick().await;
        assert_eq!(target.kept(), ["pw1", "pw1", "pw2", "pw1"]);
        assert_eq!(renewals(&reg, "failed"), 1);
        assert_eq!(remaining(&reg, "previous"), Some(70), "pw1 is still capped");
        // t=110: the failed renewal of v2 is retried at the next tick; v1 is not due.
        if let Ok(mut s) = target.script.lock() {
            s.clear();
        }
        step(10);
        c.tick().await;
        assert_eq!(target.kept(), ["pw1", "pw1", "pw2", "pw1", "pw2"]);
        assert_eq!(remaining(&reg, "current"), Some(120));
        assert_eq!(remaining(&reg, "previous"), Some(60));
        assert_eq!((renewals(&reg, "ok"), renewals(&reg, "capped")), (2, 2));

        // t=150: the overlap ends, v1 is revoked and no longer renewed nor exported.
        step(40);
        c.tick().await;
        assert_eq!(
            target.revoked.lock().map(|r| r.clone()).unwrap_or_default(),
            ["pw1"]
        );
        assert_eq!(target.kept(), ["pw1", "pw1", "pw2", "pw1", "pw2", "pw2"]);
        assert_eq!(remaining(&reg, "previous"), None);
        assert_eq!(renewals(&reg, "gone"), 0);

        // A lease revoked behind the controller's back is reported as gone.
        if let Ok(mut r) = target.revoked.lock() {
            r.push("pw2".into());
        }
        step(40);
        c.tick().await;
        assert_eq!(renewals(&reg, "gone"), 1);
        assert_eq!(remaining(&reg, "current"), Some(0));
        assert!(
            !render(&reg).contains("lease_remaining_seconds{secret=\"tok\""),
            "a target without leases is not renewed"
        );
    }

    /// An engine set-up that fails with what `script` says, in order, then succeeds;
    /// once it has succeeded, `configured` is set (what a real engine's role would be).
    struct ScriptedEngine {
        script: std::sync::Mutex<Vec<crate::engines::EngineError>>,
        calls: std::sync::atomic::AtomicU32,
        configured: Arc<std::sync::atomic::AtomicBool>,
    }

    #[async_trait]
    impl EngineSetup for ScriptedEngine {
        async fn ensure(
            &self,
        ) -> Result<sre_adapter_openbao::EngineChanges, crate::engines::EngineError> {
            use sre_adapter_openbao::Change;
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if let Some(e) = self.script.lock().ok().and_then(|mut s| s.pop()) {
                return Err(e);
            }
            self.configured
                .store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(sre_adapter_openbao::EngineChanges {
                mount: Change::Created,
                connection: Change::Created,
                role: Change::Created,
            })
        }
    }

    /// A target whose credentials exist only once its engine is configured: before
    /// that, issue fails as OpenBao does for a role that does not exist.
    struct NeedsEngine(Arc<std::sync::atomic::AtomicBool>);

    #[async_trait]
    impl CredentialTarget for NeedsEngine {
        async fn issue(&self) -> Result<SecretData, PortError> {
            if !self.0.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(PortError::Rejected {
                    backend: "openbao",
                    message: "unknown role: app".into(),
                });
            }
            Always.issue().await
        }
        async fn install(&self, c: &SecretData) -> Result<(), PortError> {
            Always.install(c).await
        }
        async fn verify(&self, c: &SecretData) -> Result<Verification, PortError> {
            Always.verify(c).await
        }
        async fn revoke(&self, c: &SecretData) -> Result<(), PortError> {
            Always.revoke(c).await
        }
    }

    /// The engine is configured before the first drive; while OpenBao is down the
    /// secret is not driven (no failed attempts against a missing role), the set-up is
    /// retried after one tick then two, and once it succeeds the secret rotates in the
    /// same tick and the set-up is not repeated. A secret without an engine block
    /// rotates from the first tick regardless.
    #[tokio::test]
    async fn a_secret_is_rotated_only_once_its_engine_is_configured_with_back_off() {
        use std::sync::atomic::Ordering::SeqCst;
        let store = Arc::new(MemSecretStore::new());
        let clock = ManualClock::at_epoch();
        let mut reg = sre_core::telemetry::metrics_registry();
        let metrics = RotationMetrics::register(&mut reg);
        let down = || {
            crate::engines::EngineError::OpenBao(PortError::Unavailable {
                backend: "openbao",
                message: "connection refused".into(),
            })
        };
        let configured = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let engine = Arc::new(ScriptedEngine {
            script: std::sync::Mutex::new(vec![down(), down()]),
            calls: std::sync::atomic::AtomicU32::new(0),
            configured: configured.clone(),
        });
        let mut c = Controller::new(
            store,
            vec![
                Managed {
                    secret: secret("db", SecretClass::DynamicDb),
                    target: Some(Arc::new(NeedsEngine(configured.clone()))),
                },
                Managed {
                    secret: secret("tok", SecretClass::ApiToken),
                    target: Some(Arc::new(Always)),
                },
            ],
            Arc::new(clock.clone()),
            metrics,
            Duration::from_secs(30),
        )
        .with_engines(BTreeMap::from([(
            "db".to_owned(),
            engine.clone() as Arc<dyn EngineSetup>,
        )]));
        let step = |s: u64| clock.advance(Duration::from_secs(s));

        c.tick().await;
        assert_eq!(engine.calls.load(SeqCst), 1);
        assert!(has(&reg, "sre_rotation_engine_configured{secret=\"db\"} 0"));
        assert!(has(
            &reg,
            "sre_rotation_engine_setups_total{secret=\"db\",result=\"failed\"} 1"
        ));
        assert!(has(&reg, "sre_rotation_current_version{secret=\"db\"} 0"));
        assert_eq!(attempts(&reg, "db", "failed"), 0, "not driven at all");
        assert_eq!(
            attempts(&reg, "tok", "rotated"),
            1,
            "others are not held up"
        );

        step(30);
        c.tick().await;
        assert_eq!(engine.calls.load(SeqCst), 2, "retried after one tick");
        step(30);
        c.tick().await;
        assert_eq!(engine.calls.load(SeqCst), 2, "then after two");
        step(30);
        c.tick().await;
        assert_eq!(engine.calls.load(SeqCst), 3);
        assert!(has(&reg, "sre_rotation_engine_configured{secret=\"db\"} 1"));
        assert!(has(
            &reg,
            "sre_rotation_engine_setups_total{secret=\"db\",result=\"ok\"} 1"
        ));
        assert_eq!(
            attempts(&reg, "db", "rotated"),
            1,
            "rotated in the same tick"
        );
        assert_eq!(attempts(&reg, "db", "failed"), 0);
        step(30);
        c.tick().await;
        assert_eq!(engine.calls.load(SeqCst), 3, "configured once per process");
    }

    /// A KV store in which one secret's paths are down (a policy denial or a broken
    /// mount affects one path, not the server): everything else is served.
    struct OnePathDown {
        inner: MemSecretStore,
        down: String,
    }

    impl OnePathDown {
        fn check(&self, path: &str) -> Result<(), PortError> {
            if path.starts_with(&self.down) {
                return Err(PortError::Unavailable {
                    backend: "test",
                    message: format!("{path} is down"),
                });
            }
            Ok(())
        }
    }

    #[async_trait]
    impl SecretStore for OnePathDown {
        async fn read(
            &self,
            path: &str,
            version: Option<u64>,
        ) -> Result<Option<sre_core::ports::SecretValue>, PortError> {
            self.check(path)?;
            self.inner.read(path, version).await
        }
        async fn write(
            &self,
            path: &str,
            data: &SecretData,
            cas: Option<u64>,
        ) -> Result<u64, PortError> {
            self.check(path)?;
            self.inner.write(path, data, cas).await
        }
        async fn metadata(
            &self,
            path: &str,
        ) -> Result<Option<sre_core::ports::SecretMetadata>, PortError> {
            self.check(path)?;
            self.inner.metadata(path).await
        }
        async fn set_custom_metadata(
            &self,
            path: &str,
            custom: &BTreeMap<String, String>,
        ) -> Result<(), PortError> {
            self.check(path)?;
            self.inner.set_custom_metadata(path, custom).await
        }
        async fn destroy_versions(&self, path: &str, versions: &[u64]) -> Result<(), PortError> {
            self.check(path)?;
            self.inner.destroy_versions(path, versions).await
        }
    }

    fn attempts(reg: &sre_core::telemetry::Registry, secret: &str, result: &str) -> u64 {
        let prefix =
            format!("sre_rotation_attempts_total{{secret=\"{secret}\",result=\"{result}\"}} ");
        render(reg)
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// A secret whose path keeps failing is retried after one tick, then two, four, eight,
    /// and then every ten ticks, never sooner; the secret after it in the same pass
    /// rotates on its own schedule all along.
    #[tokio::test]
    async fn a_failing_secret_backs_off_doubling_to_ten_ticks_without_holding_up_others() {
        let store = Arc::new(OnePathDown {
            inner: MemSecretStore::new(),
            down: "apps/bad".into(),
        });
        let clock = ManualClock::at_epoch();
        let mut reg = sre_core::telemetry::metrics_registry();
        let metrics = RotationMetrics::register(&mut reg);
        let tick = Duration::from_secs(30);
        // The failing secret comes first: a pass must not stop at it.
        let mut c = Controller::new(
            store,
            vec![
                Managed {
                    secret: secret("bad", SecretClass::ApiToken),
                    target: Some(Arc::new(Always)),
                },
                Managed {
                    secret: secret("good", SecretClass::ApiToken),
                    target: Some(Arc::new(Always)),
                },
            ],
            Arc::new(clock.clone()),
            metrics,
            tick,
        );
        assert_eq!(c.tick().await, tick, "a failure does not shorten the tick");
        assert_eq!(attempts(&reg, "bad", "failed"), 1);
        assert_eq!(
            attempts(&reg, "good", "rotated"),
            1,
            "rotated in the same pass"
        );

        // Retry after 1, 2, 4, 8 ticks, then capped at 10 ticks.
        let mut failures = 1;
        for ticks in [1, 2, 4, 8, 10, 10] {
            let wait = tick * ticks;
            clock.advance(wait.saturating_sub(Duration::from_secs(1)));
            c.tick().await;
            assert_eq!(
                attempts(&reg, "bad", "failed"),
                failures,
                "no retry before {ticks} ticks"
            );
            clock.advance(Duration::from_secs(1));
            c.tick().await;
            failures += 1;
            assert_eq!(
                attempts(&reg, "bad", "failed"),
                failures,
                "retried after {ticks} ticks"
            );
        }
        assert_eq!(attempts(&reg, "bad", "rotated"), 0);
        // Meanwhile "good" (due every 100 s, overlap 10 s) rotated whenever a pass found it
        // due: at 0, 209, 449, 749 and 1049 s.
        assert_eq!(attempts(&reg, "good", "rotated"), 5);
        assert_eq!(attempts(&reg, "good", "failed"), 0);
    }
}
