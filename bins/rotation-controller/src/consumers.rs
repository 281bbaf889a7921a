//! Moving the consumers of a promoted version: every ESO `ExternalSecret` of the secret
//! is force-synced at once, every Deployment is rolled out Reloader-compatibly, coalesced
//! by [`sre_rotation::restart::coalesce`] (one rollout per workload per window, however
//! many of its secrets changed in it).
//!
//! The plan (`sre_rotation::plan`) has no "consumers have moved" observation: it retires
//! the previous version once the overlap has passed. So the controller records the
//! refresh here ([`Refreshes`]) and does not drive a secret whose consumers have not
//! moved yet ([`Refreshes::holds`]): retirement happens after the overlap window *and*
//! after the refresh, whichever is later. The record lives in memory; after a restart
//! the controller re-derives it from the persisted state (a secret still inside its
//! overlap window is refreshed again: at most one extra rollout, never a missed one).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sre_adapter_kube::KubeReload;
use sre_core::PortError;
use sre_rotation::ManagedSecret;
use sre_rotation::config::KubernetesSettings;
use sre_rotation::model::{Consumer, ConsumerKind};
use sre_rotation::restart::{SecretChange, coalesce};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Tells consumers about a new version. A port so that the controller's refresh logic is
/// tested against an in-memory fake; production uses [`KubeConsumers`].
#[async_trait]
pub trait ConsumerRefresh: Send + Sync {
    /// Makes ESO re-read `external_secret` now (`at`: the promotion time, so a repeat
    /// after a crash writes the same value).
    async fn force_sync(
        &self,
        external_secret: &Consumer,
        at: DateTime<Utc>,
    ) -> Result<(), PortError>;
    /// Rolls `workload` out once for all of `secrets`.
    async fn restart(
        &self,
        workload: &Consumer,
        secrets: &BTreeSet<String>,
        at: DateTime<Utc>,
    ) -> Result<(), PortError>;
}

/// [`ConsumerRefresh`] through the Kubernetes API (`sre_adapter_kube::KubeReload`).
#[derive(Debug, Clone)]
pub struct KubeConsumers(KubeReload);

impl KubeConsumers {
    /// Works through `client` (in-cluster or `KUBECONFIG`, see [`client`]).
    #[must_use]
    pub fn new(client: kube::Client) -> Self {
        Self(KubeReload::new(client))
    }
}

#[async_trait]
impl ConsumerRefresh for KubeConsumers {
    async fn force_sync(&self, es: &Consumer, at: DateTime<Utc>) -> Result<(), PortError> {
        self.0.force_sync(&es.namespace, &es.name, at).await
    }

    async fn restart(
        &self,
        workload: &Consumer,
        secrets: &BTreeSet<String>,
        at: DateTime<Utc>,
    ) -> Result<(), PortError> {
        self.0
            .restart(&workload.namespace, &workload.name, secrets, at)
            .await
    }
}

/// The Kubernetes client `settings` ask for: `None` (with a warning, so nobody assumes
/// consumers move or cert-manager is read) when Kubernetes is disabled or no client can
/// be built.
pub async fn client(settings: &KubernetesSettings) -> Option<kube::Client> {
    if !settings.enabled {
        tracing::warn!(
            "consumers not refreshed: no kube client (kubernetes.enabled is false); \
             retirement follows the overlap window alone"
        );
        return None;
    }
    match kube::Client::try_default().await {
        Ok(c) => {
            tracing::info!(restart_window = ?settings.restart_window, "consumers refreshed through the Kubernetes API");
            Some(c)
        }
        Err(e) => {
            tracing::warn!(error = %e, "consumers not refreshed: no kube client \
                (neither in-cluster nor KUBECONFIG); retirement follows the overlap window alone");
            None
        }
    }
}

/// Where the consumers of one secret stand, for the metrics (`status` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerStatus {
    /// The secret has no consumers in the inventory.
    None,
    /// Every consumer was told about the current version (or nothing was promoted yet).
    Refreshed,
    /// A refresh waits for its coalescing window.
    Pending,
    /// The last refresh call failed; retried next tick, retirement held.
    Failed,
    /// No Kubernetes client: consumers are not refreshed by this controller.
    NoKubeClient,
}

impl ConsumerStatus {
    /// Every label value, for one-hot gauges.
    pub const ALL: [Self; 5] = [
        Self::None,
        Self::Refreshed,
        Self::Pending,
        Self::Failed,
        Self::NoKubeClient,
    ];

    /// The `status` label value.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Refreshed => "refreshed",
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::NoKubeClient => "no_kube_client",
        }
    }
}

/// One promoted version whose consumers have not all moved yet.
#[derive(Debug, Clone)]
struct Pending {
    version: u64,
    changed_at: DateTime<Utc>,
    external_secrets: Vec<Consumer>,
    workloads: Vec<Consumer>,
    failed: bool,
}

/// What one [`Refreshes::run`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// `ExternalSecret`s force-synced.
    pub synced: Vec<Consumer>,
    /// Rollouts started, with the secrets each picks up.
    pub restarted: Vec<(Consumer, BTreeSet<String>)>,
    /// Calls that failed (`kind/namespace/name`, error), retried next time.
    pub failed: Vec<(String, String)>,
    /// When a held-back rollout becomes due.
    pub next_at: Option<DateTime<Utc>>,
}

/// The refreshes the controller owes, per secret (the newest promoted version only: a
/// newer version supersedes an older one, its rollout picks up both).
#[derive(Debug, Clone)]
pub struct Refreshes {
    window: Duration,
    pending: BTreeMap<String, Pending>,
    done: BTreeMap<String, u64>,
}

fn name(c: &Consumer) -> String {
    let kind = match c.kind {
        ConsumerKind::Deployment => "deployment",
        ConsumerKind::ExternalSecret => "externalsecret",
    };
    format!("{kind}/{}/{}", c.namespace, c.name)
}

impl Refreshes {
    /// Coalescing Deployment restarts over `window`.
    #[must_use]
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            pending: BTreeMap::new(),
            done: BTreeMap::new(),
        }
    }

    /// Records that `version` of `secret` became current at `changed_at`; a version
    /// already recorded (pending or done) is not recorded again.
    pub fn note(&mut self, secret: &ManagedSecret, version: u64, changed_at: DateTime<Utc>) {
        let known = self.done.get(&secret.name) == Some(&version)
            || self
                .pending
                .get(&secret.name)
                .is_some_and(|p| p.version == version);
        if known {
            return;
        }
        let of = |kind| {
            secret
                .consumers
                .iter()
                .filter(|c| c.kind == kind)
                .cloned()
                .collect::<Vec<_>>()
        };
        let p = Pending {
            version,
            changed_at,
            external_secrets: of(ConsumerKind::ExternalSecret),
            workloads: of(ConsumerKind::Deployment),
            failed: false,
        };
        if p.external_secrets.is_empty() && p.workloads.is_empty() {
            self.done.insert(secret.name.clone(), version);
        } else {
            self.pending.insert(secret.name.clone(), p);
        }
    }

    /// True while `secret` has consumers that have not moved to its current version: the
    /// controller does not drive it (no retirement) until they have.
    #[must_use]
    pub fn holds(&self, secret: &str) -> bool {
        self.pending.contains_key(secret)
    }

    /// Where the consumers of `secret` stand.
    #[must_use]
    pub fn status(&self, secret: &ManagedSecret) -> ConsumerStatus {
        match self.pending.get(&secret.name) {
            _ if secret.consumers.is_empty() => ConsumerStatus::None,
            Some(p) if p.failed => ConsumerStatus::Failed,
            Some(_) => ConsumerStatus::Pending,
            None => ConsumerStatus::Refreshed,
        }
    }

    /// Force-syncs every `ExternalSecret` owed and starts the rollouts that are due at
    /// `now`; a failed call is kept and retried on the next run.
    pub async fn run(
        &mut self,
        refresher: &dyn ConsumerRefresh,
        now: DateTime<Utc>,
    ) -> RefreshReport {
        let mut report = RefreshReport::default();
        for p in self.pending.values_mut() {
            p.failed = false;
            let mut left = Vec::new();
            for es in std::mem::take(&mut p.external_secrets) {
                match refresher.force_sync(&es, p.changed_at).await {
                    Ok(()) => report.synced.push(es),
                    Err(e) => {
                        report.failed.push((name(&es), e.to_string()));
                        p.failed = true;
                        left.push(es);
                    }
                }
            }
            p.external_secrets = left;
        }
        let changes: Vec<SecretChange> = self
            .pending
            .iter()
            .flat_map(|(secret, p)| {
                p.workloads.iter().map(|w| SecretChange {
                    secret: secret.clone(),
                    workload: w.clone(),
                    changed_at: p.changed_at,
                })
            })
            .collect();
        let due = coalesce(&changes, self.window, now);
        report.next_at = due.next_at;
        for r in due.restarts {
            // The newest change it picks up: a repeat after a crash writes the same value.
            let at = changes
                .iter()
                .filter(|c| c.workload == r.workload && r.secrets.contains(&c.secret))
                .map(|c| c.changed_at)
                .max()
                .unwrap_or(now);
            match refresher.restart(&r.workload, &r.secrets, at).await {
                Ok(()) => {
                    for s in &r.secrets {
                        if let Some(p) = self.pending.get_mut(s) {
                            p.workloads.retain(|w| *w != r.workload);
                        }
                    }
                    report.restarted.push((r.workload, r.secrets));
                }
                Err(e) => {
                    report.failed.push((name(&r.workload), e.to_string()));
                    for s in &r.secrets {
                        if let Some(p) = self.pending.get_mut(s) {
                            p.failed = true;
                        }
                    }
                }
            }
        }
        let moved: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.external_secrets.is_empty() && p.workloads.is_empty())
            .map(|(s, _)| s.clone())
            .collect();
        for s in moved {
            if let Some(p) = self.pending.remove(&s) {
                self.done.insert(s, p.version);
            }
        }
        report
    }
}

/// An in-memory [`ConsumerRefresh`] for the controller's tests.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use sre_rotation::SecretClass;
    use sre_rotation::model::{ApprovalPolicy, Cadence};
    use std::sync::Mutex;

    /// Records every call; fails the ones named in `fail`.
    #[derive(Default)]
    pub(crate) struct FakeKube {
        pub(crate) calls: Mutex<Vec<String>>,
        pub(crate) fail: Mutex<BTreeSet<String>>,
    }

    impl FakeKube {
        pub(crate) fn calls(&self) -> Vec<String> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
        fn call(&self, what: &str) -> Result<(), PortError> {
            let failing = self
                .fail
                .lock()
                .is_ok_and(|f| f.iter().any(|n| what.contains(n.as_str())));
            if let Ok(mut c) = self.calls.lock() {
                c.push(what.to_owned());
            }
            if failing {
                Err(PortError::Unavailable {
                    backend: "kube",
                    message: format!("{what}: api down"),
                })
            } else {
                Ok(())
            }
        }
    }

    #[async_trait]
    impl ConsumerRefresh for FakeKube {
        async fn force_sync(&self, es: &Consumer, at: DateTime<Utc>) -> Result<(), PortError> {
            self.call(&format!("force-sync {} @{}", name(es), at.timestamp()))
        }
        async fn restart(
            &self,
            w: &Consumer,
            secrets: &BTreeSet<String>,
            at: DateTime<Utc>,
        ) -> Result<(), PortError> {
            let s: Vec<&str> = secrets.iter().map(String::as_str).collect();
            self.call(&format!(
                "restart {} {} @{}",
                name(w),
                s.join(","),
                at.timestamp()
            ))
        }
    }

    pub(crate) fn secret_with(name: &str, consumers: &[&str]) -> ManagedSecret {
        ManagedSecret {
            name: name.into(),
            class: SecretClass::ApiToken,
            path: format!("apps/{name}"),
            cadence: Cadence::MaxAge(Duration::from_secs(100)),
            overlap: Duration::from_mins(1),
            owner: "o".into(),
            consumers: consumers
                .iter()
                .map(|c| {
                    let mut p = c.split('/');
                    let kind = match p.next() {
                        Some("externalsecret") => ConsumerKind::ExternalSecret,
                        _ => ConsumerKind::Deployment,
                    };
                    Consumer {
                        kind,
                        namespace: p.next().unwrap_or_default().into(),
                        name: p.next().unwrap_or_default().into(),
                    }
                })
                .collect(),
            approval: ApprovalPolicy::NotRequired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeKube, secret_with};
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + s, 0).unwrap_or_default()
    }

    #[tokio::test]
    async fn two_secrets_of_one_workload_in_a_window_cost_one_rollout_and_es_sync_at_once() {
        let kube = FakeKube::default();
        let mut r = Refreshes::new(Duration::from_secs(30));
        let db = secret_with(
            "db",
            &["deployment/billing/api", "externalsecret/billing/db"],
        );
        let tok = secret_with(
            "tok",
            &["deployment/billing/api", "externalsecret/billing/tok"],
        );
        r.note(&db, 2, t(0));
        let first = r.run(&kube, t(0)).await;
        assert_eq!(first.synced.len(), 1);
        assert!(first.restarted.is_empty(), "held for the window");
        assert_eq!(first.next_at, Some(t(30)));
        r.note(&tok, 5, t(10));
        r.note(&tok, 5, t(10));
        r.run(&kube, t(10)).await;
        assert!(r.holds("db") && r.holds("tok"));
        assert_eq!(r.status(&db), ConsumerStatus::Pending);
        let due = r.run(&kube, t(30)).await;
        assert_eq!(due.restarted.len(), 1);
        assert_eq!(
            kube.calls(),
            [
                "force-sync externalsecret/billing/db @1767225600",
                "force-sync externalsecret/billing/tok @1767225610",
                "restart deployment/billing/api db,tok @1767225610",
            ]
        );
        assert!(!r.holds("db") && !r.holds("tok"));
        assert_eq!(r.status(&tok), ConsumerStatus::Refreshed);
        r.note(&db, 2, t(0));
        assert!(
            !r.holds("db"),
            "a version already refreshed is not refreshed again"
        );
        assert_eq!(r.run(&kube, t(100)).await, RefreshReport::default());
    }

    #[tokio::test]
    async fn a_failed_call_holds_the_secret_and_is_retried() {
        let kube = FakeKube::default();
        if let Ok(mut f) = kube.fail.lock() {
            f.insert("deployment/billing/api".into());
        }
        let mut r = Refreshes::new(Duration::ZERO);
        let db = secret_with("db", &["deployment/billing/api"]);
        r.note(&db, 1, t(0));
        let out = r.run(&kube, t(0)).await;
        assert_eq!(out.failed.len(), 1, "{out:?}");
        assert_eq!(r.status(&db), ConsumerStatus::Failed);
        assert!(r.holds("db"));
        if let Ok(mut f) = kube.fail.lock() {
            f.clear();
        }
        let out = r.run(&kube, t(1)).await;
        assert_eq!(out.restarted.len(), 1);
        assert!(!r.holds("db"));
        let none = secret_with("lonely", &[]);
        r.note(&none, 1, t(0));
        assert!(!r.holds("lonely"));
        assert_eq!(r.status(&none), ConsumerStatus::None);
    }

    /// `KubeConsumers` wired to kube's tower-test mock API server: the refresh of one
    /// promotion is exactly an ESO merge patch, then one Deployment template patch.
    #[tokio::test]
    async fn kube_consumers_patch_the_external_secret_then_the_deployment() {
        use http::{Method, Request, Response};
        use kube::client::Body;
        use serde_json::{Value, json};
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..2 {
                let Some((request, respond)) = handle.next_request().await else {
                    break;
                };
                assert_eq!(request.method(), Method::PATCH);
                assert_eq!(request.uri().query(), Some("&fieldManager=sre-rotation"));
                // The shipped RBAC (deploy/rbac/rotation-controller.yaml) must grant it.
                assert!(
                    sre_adapter_kube::rbac::permits(
                        sre_adapter_kube::rbac::Binary::RotationController,
                        request.method().as_str(),
                        &request.uri().to_string(),
                    ),
                    "{} {} is not granted to rotation-controller",
                    request.method(),
                    request.uri()
                );
                let path = request.uri().path().to_owned();
                let patch_body: Value = request
                    .into_body()
                    .collect_bytes()
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                seen.push((path.clone(), patch_body));
                let reply = if path.contains("/deployments/") {
                    json!({"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": "api", "namespace": "billing"},
                           "spec": {"selector": {"matchLabels": {"app": "api"}},
                                    "template": {"metadata": {"labels": {"app": "api"}},
                                                 "spec": {"containers": [{"name": "api", "image": "api:1"}]}}}})
                } else {
                    json!({"apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                           "metadata": {"name": "db", "namespace": "billing"}})
                };
                // 200 OK.
                respond.send_response(Response::new(Body::from(reply.to_string().into_bytes())));
            }
            seen
        });
        let kube = KubeConsumers::new(kube::Client::new(service, "default"));
        let mut r = Refreshes::new(Duration::ZERO);
        r.note(
            &secret_with(
                "db",
                &["deployment/billing/api", "externalsecret/billing/db"],
            ),
            3,
            t(0),
        );
        let out = tokio::time::timeout(Duration::from_secs(5), r.run(&kube, t(0)))
            .await
            .unwrap_or_else(|_| panic!("a scripted call was not made"));
        assert!(out.failed.is_empty(), "{out:?}");
        let seen = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap_or_else(|_| panic!("server hung"))
            .unwrap_or_default();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(
            seen[0],
            (
                "/apis/external-secrets.io/v1/namespaces/billing/externalsecrets/db".to_owned(),
                json!({"metadata": {"annotations": {"force-sync": "1767225600"}}})
            )
        );
        assert_eq!(
            seen[1].0,
            "/apis/apps/v1/namespaces/billing/deployments/api"
        );
        let annotation = seen[1].1["spec"]["template"]["metadata"]["annotations"]
            ["reloader.stakater.com/last-reloaded-from"]
            .as_str()
            .unwrap_or_default();
        assert!(annotation.contains("\"names\":[\"db\"]"), "{annotation}");
        assert!(!r.holds("db"));
    }
}
