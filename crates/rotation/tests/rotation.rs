//! Rotation of dynamic PostgreSQL credentials through the real OpenBao database engine,
//! with the state kept in real OpenBao KV v2 custom metadata (servers from `cargo xtask
//! services up`):
//! - zero failed logins: consumers log in continuously with whatever credentials they
//!   currently hold while the state machine rotates several times;
//! - a crash injected between every pair of steps resumes to a consistent state.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sre_adapter_openbao::BaoSecretStore;
use sre_adapter_openbao::testing::{DYNAMIC_ROLE, dynamic_db_engine, shared_config, unique};
use sre_adapter_postgres::{PgDynamicTarget, PgEndpoint};
use sre_core::PortError;
use sre_core::approval::Principal;
use sre_core::ports::{SecretData, SecretMetadata, SecretStore, SecretValue};
use sre_core::testing::test_env;
use sre_rotation::approvals;
use sre_rotation::drive::{self, StopAt};
use sre_rotation::model::{ApprovalPolicy, Cadence, ManagedSecret, SecretClass};
use sre_rotation::run::{self, Ports};
use sre_rotation::{Phase, Step, Verification};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// A real login over TCP with scram through the production target's check;
/// `Ok(Err(reason))` when PostgreSQL refused it.
async fn login(cred: &SecretData) -> Result<Result<(), String>, PortError> {
    let port: u16 = test_env("SRE_TEST_PG_PORT")
        .parse()
        .expect("SRE_TEST_PG_PORT");
    let endpoint = PgEndpoint::new(test_env("SRE_TEST_PG_HOST"), port, "postgres");
    let verdict = sre_adapter_postgres::login(
        &endpoint,
        cred.get("username").unwrap_or_default(),
        cred.get("password").unwrap_or_default(),
    )
    .await?;
    Ok(match verdict {
        Verification::Accepted => Ok(()),
        Verification::Refused { reason } => Err(reason),
    })
}

/// The production target over the shared fixture's engine (role `app`).
async fn pg_target(tag: &str) -> PgDynamicTarget {
    let db = dynamic_db_engine(tag).await;
    let port: u16 = test_env("SRE_TEST_PG_PORT")
        .parse()
        .expect("SRE_TEST_PG_PORT");
    PgDynamicTarget::new(
        db,
        DYNAMIC_ROLE,
        PgEndpoint::new(test_env("SRE_TEST_PG_HOST"), port, "postgres"),
    )
}

fn secret(path: String, max_age: Duration, overlap: Duration) -> ManagedSecret {
    ManagedSecret {
        name: "billing-db".into(),
        class: SecretClass::DynamicDb,
        path,
        cadence: Cadence::MaxAge(max_age),
        overlap,
        owner: "team-billing".into(),
        consumers: vec![],
        approval: ApprovalPolicy::NotRequired,
    }
}

/// What a consumer holds: the credential of the version the state calls current.
async fn current_credential(store: &dyn SecretStore, path: &str) -> Option<(u64, SecretData)> {
    let (state, _, _) = run::load(store, path).await.ok()?;
    let v = state.current?;
    store
        .read(path, Some(v))
        .await
        .ok()
        .flatten()
        .map(|s| (v, s.data))
}

/// A consumer: logs in continuously with the credential it holds, refreshing it from the
/// store every 200 ms (as ESO would); returns the versions it used.
async fn consume(
    store: Arc<BaoSecretStore>,
    path: String,
    stop: Arc<AtomicBool>,
    logins: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
) -> BTreeSet<u64> {
    let mut held = current_credential(store.as_ref(), &path)
        .await
        .expect("current");
    let mut seen = BTreeSet::from([held.0]);
    let mut refreshed = tokio::time::Instant::now();
    // Bounded: stops when the controller is done, or after 4000 logins.
    for _ in 0..4000 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if refreshed.elapsed() >= Duration::from_millis(200) {
            if let Some(c) = current_credential(store.as_ref(), &path).await {
                held = c;
                seen.insert(held.0);
            }
            refreshed = tokio::time::Instant::now();
        }
        logins.fetch_add(1, Ordering::SeqCst);
        match login(&held.1).await {
            Ok(Ok(())) => {}
            other => {
                failures.fetch_add(1, Ordering::SeqCst);
                eprintln!("login with version {} failed: {other:?}", held.0);
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_under_load_causes_zero_failed_logins() {
    const ROTATIONS: u64 = 4;
    const CONSUMERS: usize = 2;
    let store = Arc::new(BaoSecretStore::new(&shared_config()).expect("store"));
    let target = pg_target("load").await;
    // Consumers refresh every 200 ms; the overlap is several refreshes long.
    let s = secret(
        format!("{}/db", unique("load")),
        Duration::from_millis(1500),
        Duration::from_millis(1200),
    );
    let ports = Ports {
        store: store.as_ref(),
        target: &target,
    };
    // Bootstrap: the first version, before anybody consumes it.
    while run::load(store.as_ref(), &s.path)
        .await
        .expect("load")
        .0
        .current
        .is_none()
    {
        run::step(ports, &s, None, Utc::now())
            .await
            .expect("bootstrap step");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let logins = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        consumers.push(tokio::spawn(consume(
            Arc::clone(&store),
            s.path.clone(),
            Arc::clone(&stop),
            Arc::clone(&logins),
            Arc::clone(&failures),
        )));
    }

    // The controller: one step at a time, sleeping only as long as the plan says.
    let mut labels = Vec::new();
    let mut done = false;
    for _ in 0..2000 {
        let report = run::step(ports, &s, None, Utc::now()).await.expect("step");
        labels.push(report.step.label());
        if report.state.rotations > ROTATIONS && report.state.previous.is_none() {
            done = true;
            break;
        }
        if let Step::Wait { until, .. } = report.step {
            let left = until
                .and_then(|u| (u - Utc::now()).to_std().ok())
                .unwrap_or(Duration::ZERO);
            tokio::time::sleep(left.min(Duration::from_millis(100))).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut versions_seen = BTreeSet::new();
    for c in consumers {
        versions_seen.extend(c.await.expect("consumer"));
    }
    let (logins, failures) = (
        logins.load(Ordering::SeqCst),
        failures.load(Ordering::SeqCst),
    );
    assert!(done, "did not finish {ROTATIONS} rotations: {labels:?}");
    assert_eq!(failures, 0, "{failures} of {logins} logins failed");
    assert!(logins >= 20, "the load loop barely ran: {logins} logins");
    assert!(
        versions_seen.len() as u64 > ROTATIONS,
        "consumers followed the rotations: saw {versions_seen:?}"
    );
    let promotes = labels.iter().filter(|l| **l == "promote").count();
    let retires = labels.iter().filter(|l| **l == "retire_previous").count();
    assert!(
        promotes as u64 >= ROTATIONS && retires as u64 >= ROTATIONS,
        "{labels:?}"
    );
    // Every retired version is revoked at the target and destroyed in the store.
    let (state, _, _) = run::load(store.as_ref(), &s.path).await.expect("load");
    let current = state.current.expect("current");
    for v in 1..current {
        assert_eq!(store.read(&s.path, Some(v)).await, Ok(None), "version {v}");
    }
}

/// A KV store whose n-th state write fails: the controller dies after a step's work and
/// before recording it.
struct CrashingStore {
    inner: BaoSecretStore,
    persist_countdown: AtomicUsize,
}

#[async_trait]
impl SecretStore for CrashingStore {
    async fn read(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<SecretValue>, PortError> {
        self.inner.read(path, version).await
    }
    async fn write(
        &self,
        path: &str,
        data: &SecretData,
        cas: Option<u64>,
    ) -> Result<u64, PortError> {
        self.inner.write(path, data, cas).await
    }
    async fn metadata(&self, path: &str) -> Result<Option<SecretMetadata>, PortError> {
        self.inner.metadata(path).await
    }
    async fn set_custom_metadata(
        &self,
        path: &str,
        custom: &BTreeMap<String, String>,
    ) -> Result<(), PortError> {
        let left = self.persist_countdown.load(Ordering::SeqCst);
        if left == 1 {
            self.persist_countdown.store(0, Ordering::SeqCst);
            return Err(PortError::Unavailable {
                backend: "crash",
                message: "controller killed before recording the step".into(),
            });
        }
        self.persist_countdown
            .store(left.saturating_sub(1), Ordering::SeqCst);
        self.inner.set_custom_metadata(path, custom).await
    }
    async fn destroy_versions(&self, path: &str, versions: &[u64]) -> Result<(), PortError> {
        self.inner.destroy_versions(path, versions).await
    }
}

/// Steps at `now` until the plan says wait; returns the labels.
async fn drive(ports: Ports<'_>, s: &ManagedSecret, now: DateTime<Utc>) -> Vec<&'static str> {
    let mut labels = Vec::new();
    for _ in 0..12 {
        let report = run::step(ports, s, None, now).await.expect("step");
        labels.push(report.step.label());
        if !report.step.acts() {
            return labels;
        }
    }
    panic!("no quiescence: {labels:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_any_two_steps_resumes_to_a_consistent_state() {
    let target = pg_target("crash").await;
    let t0 = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("t0");
    // Past the 30 min overlap, before the next rotation is due (1 h).
    let (rotate_at, retire_at) = (
        t0 + chrono::Duration::hours(2),
        t0 + chrono::Duration::minutes(160),
    );
    // The acting steps of the second rotation: create, set, test, promote, retire.
    for crash_at in 1..=5 {
        let s = secret(
            format!("{}/db", unique(&format!("crash{crash_at}"))),
            Duration::from_hours(1),
            Duration::from_mins(30),
        );
        let plain = BaoSecretStore::new(&shared_config()).expect("store");
        let ports = Ports {
            store: &plain,
            target: &target,
        };
        drive(ports, &s, t0).await;
        let (before, _, _) = run::load(&plain, &s.path).await.expect("load");
        let first = before.current.expect("bootstrapped");
        let first_cred = plain
            .read(&s.path, Some(first))
            .await
            .expect("read")
            .expect("v1")
            .data;

        // Run until the injected crash.
        let crashing = CrashingStore {
            inner: BaoSecretStore::new(&shared_config()).expect("store"),
            persist_countdown: AtomicUsize::new(crash_at),
        };
        let doomed = Ports {
            store: &crashing,
            target: &target,
        };
        let mut crashed = false;
        for now in [rotate_at, rotate_at, rotate_at, rotate_at, retire_at] {
            if let Err(e) = run::step(doomed, &s, None, now).await {
                assert!(e.is_retryable(), "{e}");
                crashed = true;
                break;
            }
        }
        assert!(crashed, "crash point {crash_at} was never reached");

        // A new controller resumes from what OpenBao holds.
        let fresh = BaoSecretStore::new(&shared_config()).expect("store");
        let ports = Ports {
            store: &fresh,
            target: &target,
        };
        let mut labels = drive(ports, &s, rotate_at).await;
        labels.extend(drive(ports, &s, retire_at).await);
        let (state, latest, _) = run::load(&fresh, &s.path).await.expect("load");
        assert_eq!(state.phase, Phase::Idle, "crash at {crash_at}: {labels:?}");
        assert_eq!(state.previous, None, "crash at {crash_at}: {labels:?}");
        assert_eq!(state.rotations, 2, "crash at {crash_at}: {labels:?}");
        let current = state.current.expect("current");
        assert!(current > first);
        if crash_at == 1 {
            assert_eq!(labels.first(), Some(&"adopt_pending"), "{labels:?}");
        }
        let cred = fresh
            .read(&s.path, Some(current))
            .await
            .expect("read")
            .expect("current data")
            .data;
        assert_eq!(
            login(&cred).await,
            Ok(Ok(())),
            "crash at {crash_at}: current logs in"
        );
        assert!(
            matches!(login(&first_cred).await, Ok(Err(_))),
            "crash at {crash_at}: the retired version no longer logs in"
        );
        for v in 1..=latest {
            let data = fresh.read(&s.path, Some(v)).await.expect("read");
            assert_eq!(
                data.is_some(),
                v == current,
                "crash at {crash_at}: version {v} of {latest}"
            );
        }
    }
}

fn jwt_secret(officer: &sre_core::approval::Principal) -> ManagedSecret {
    ManagedSecret {
        name: unique("jwt-secret"),
        class: SecretClass::JwtKey,
        path: unique("keys/jwt"),
        cadence: Cadence::MaxAge(Duration::from_hours(24 * 30)),
        overlap: Duration::from_hours(24),
        owner: "security".into(),
        consumers: vec![],
        approval: ApprovalPolicy::Required {
            approvers: BTreeSet::from([officer.clone()]),
            expires_after: Duration::from_hours(24),
        },
    }
}

/// Approves the request `gated` made (it must have made one) and drives on.
async fn approve_and_drive(
    ports: Ports<'_>,
    secret: &ManagedSecret,
    gated: drive::DriveReport,
    officer: &sre_core::approval::Principal,
    now: DateTime<Utc>,
) -> drive::DriveReport {
    let id = gated.requested.expect("an approval request").id.0;
    approvals::approve(
        ports.store,
        std::slice::from_ref(secret),
        &id,
        officer.clone(),
        now,
    )
    .await
    .expect("approve");
    drive::drive(ports, secret, now, StopAt::Quiet)
        .await
        .expect("drive")
}

/// A JWT signing key in real OpenBao transit, rotated through the production shell
/// (`drive`) with the approval gate: nothing rotates before a security officer approves;
/// during the overlap a token signed with the old key still verifies and the JWKS lists
/// both keys; once the previous version is retired old signatures are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_key_rotation_waits_for_approval_and_keeps_old_tokens_valid_during_overlap() {
    use sre_adapter_openbao::{BaoKeyring, TransitSigningTarget, Verdict};

    let mount = unique("jwt");
    let keys = BaoKeyring::new(&shared_config(), mount.clone()).expect("client");
    keys.enable().await.expect("enable transit");
    let target = TransitSigningTarget::new(
        BaoKeyring::new(&shared_config(), mount).expect("client"),
        "jwt",
    );
    let store = BaoSecretStore::new(&shared_config()).expect("kv");
    let officer = Principal::new("security-officer");
    let secret = jwt_secret(&officer);
    let ports = Ports {
        store: &store,
        target: &target,
    };
    let t0 = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("t0");
    let at = |h: i64| t0 + chrono::Duration::hours(h);

    // Rotation 1 (the key does not exist yet): gated, then v1.
    let gated = drive::drive(ports, &secret, at(0), StopAt::Quiet)
        .await
        .expect("drive");
    assert_eq!(
        gated.state.current, None,
        "nothing rotates before the approval"
    );
    assert!(keys.read("jwt").await.expect("read").is_none());
    let r1 = approve_and_drive(ports, &secret, gated, &officer, at(1)).await;
    assert_eq!(r1.state.current, Some(1));
    let token = keys
        .sign_with("jwt", 1, b"header.payload")
        .await
        .expect("sign with v1");

    // Rotation 2 is due after 30 days and needs a fresh approval.
    let due = at(24 * 31);
    let gated = drive::drive(ports, &secret, due, StopAt::Quiet)
        .await
        .expect("drive");
    assert_eq!(
        gated.state.current,
        Some(1),
        "the earlier approval does not carry over"
    );
    let r2 = approve_and_drive(ports, &secret, gated, &officer, due).await;
    assert_eq!(r2.state.current, Some(2));
    assert!(r2.state.previous.is_some(), "v1 stays for the overlap");
    assert!(
        r2.steps
            .iter()
            .any(|s| matches!(s, Step::TestPending { .. })),
        "{:?}",
        r2.steps
    );
    let info = keys.read("jwt").await.expect("read").expect("key");
    assert_eq!((info.latest_version, info.min_decryption_version), (2, 1));
    let jwks = sre_rotation::jwks::render("jwt", &info.public_keys, info.min_decryption_version);
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2), "{jwks}");
    assert_eq!(
        keys.verify("jwt", b"header.payload", &token)
            .await
            .expect("verify"),
        Verdict::Valid
    );

    // After the overlap the previous version is retired: old tokens are refused.
    let after = due + chrono::Duration::hours(25);
    let r3 = drive::drive(ports, &secret, after, StopAt::Quiet)
        .await
        .expect("drive");
    assert!(
        r3.steps
            .iter()
            .any(|s| matches!(s, Step::RetirePrevious { .. })),
        "{:?}",
        r3.steps
    );
    assert!(matches!(
        keys.verify("jwt", b"header.payload", &token)
            .await
            .expect("verify"),
        Verdict::Refused { .. }
    ));
    let info = keys.read("jwt").await.expect("read").expect("key");
    let jwks = sre_rotation::jwks::render("jwt", &info.public_keys, info.min_decryption_version);
    assert_eq!(jwks["keys"][0]["kid"], "jwt-v2");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
}

/// The `PortError` a drive failed with, wherever it sits in the error's sources.
fn port_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a PortError> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(p) = err.downcast_ref::<PortError>() {
            return Some(p);
        }
        cur = err.source();
    }
    None
}

/// What a half-applied step would change: the newest KV version and the custom metadata
/// that holds the rotation state (phase, stage, current, previous).
async fn kv_state(store: &dyn SecretStore, path: &str) -> (u64, BTreeMap<String, String>) {
    let meta = store
        .metadata(path)
        .await
        .expect("metadata")
        .expect("the secret exists");
    (meta.current_version, meta.custom)
}

/// Asserts that `result` is the retryable "OpenBao not available" failure.
fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, drive::DriveError>, what: &str) {
    let err = result.expect_err(what);
    assert!(err.is_retryable(), "{what}: {err:?}");
    assert_eq!(err.kind(), "store", "{what}: {err:?}");
    assert!(
        matches!(port_error(&err), Some(PortError::Unavailable { .. })),
        "{what}: {}",
        drive::error_chain(&err)
    );
}

/// OpenBao sealed or unreachable in the middle of a rotation (the issue's "back off,
/// report, never half-rotate silently"): on a private dev server, a generated API token
/// takes the first step of its second rotation, then the server is sealed. Driving fails
/// with a retryable `Unavailable`, the status row says so, and after unsealing the KV
/// state is exactly what it was; a controller that cannot reach OpenBao at all fails the
/// same way. The rotation then resumes with the pending token and retires the previous
/// one after the overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario read in order: step, seal, unreachable, resume
async fn a_sealed_or_unreachable_openbao_fails_retryably_and_leaves_the_state_intact() {
    use sre_adapter_openbao::GeneratedTokenTarget;
    use sre_adapter_openbao::testing::{DevServer, free_port};
    use sre_rotation::config::TokenEncoding;

    let bao = DevServer::spawn().await;
    let store = BaoSecretStore::new(&bao.config()).expect("kv");
    let target = GeneratedTokenTarget::new(32, TokenEncoding::Base64Url, None).expect("target");
    let s = ManagedSecret {
        name: "partner-api".into(),
        class: SecretClass::ApiToken,
        path: "apps/partner-api/token".into(),
        cadence: Cadence::MaxAge(Duration::from_hours(1)),
        overlap: Duration::from_mins(10),
        owner: "team-partners".into(),
        consumers: vec![],
        approval: ApprovalPolicy::NotRequired,
    };
    let ports = Ports {
        store: &store,
        target: &target,
    };
    let t0 = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("t0");
    // Rotation 2 is due after an hour; its previous version retires 10 min after that.
    let (rotate_at, retire_at) = (
        t0 + chrono::Duration::hours(1),
        t0 + chrono::Duration::minutes(71),
    );
    let r1 = drive::drive(ports, &s, t0, StopAt::Quiet)
        .await
        .expect("rotation 1");
    assert_eq!(r1.state.current, Some(1));

    // One step of rotation 2: the new token is written as the pending version.
    let first = run::step(ports, &s, None, rotate_at)
        .await
        .expect("create pending");
    assert_eq!(first.step, Step::CreatePending);
    assert_eq!(first.state.pending(), Some(2), "{:?}", first.state);
    let before = kv_state(&store, &s.path).await;
    assert_eq!(before.0, 2, "the pending version is the newest");
    assert_eq!(
        sre_rotation::state::decode(&before.1).map(|st| st.pending()),
        Ok(Some(2)),
        "the custom metadata records the rotation in flight"
    );
    let pending_token = store
        .read(&s.path, Some(2))
        .await
        .expect("read")
        .expect("pending version")
        .data;

    // Sealed: the drive, a single step and the status all report it; nothing moves.
    bao.seal().await;
    assert_unavailable(
        drive::drive(ports, &s, rotate_at, StopAt::Quiet).await,
        "drive while sealed",
    );
    let step = run::step(ports, &s, None, rotate_at)
        .await
        .expect_err("step while sealed");
    assert!(
        step.is_retryable() && matches!(port_error(&step), Some(PortError::Unavailable { .. })),
        "{}",
        drive::error_chain(&step)
    );
    let row = drive::status(&store, &s, rotate_at).await;
    assert!(
        row.error.is_some() && row.current.is_none(),
        "the outage shows in the status row: {row:?}"
    );
    bao.unseal().await;
    assert_eq!(
        kv_state(&store, &s.path).await,
        before,
        "the sealed attempt changed nothing"
    );

    // Unreachable: a controller whose OpenBao address answers nothing.
    let gone = BaoSecretStore::new(&sre_adapter_openbao::BaoConfig::new(
        format!("http://127.0.0.1:{}", free_port()),
        bao.root_token.clone(),
    ))
    .expect("kv");
    let unreachable = Ports {
        store: &gone,
        target: &target,
    };
    assert_unavailable(
        drive::drive(unreachable, &s, rotate_at, StopAt::Quiet).await,
        "drive while unreachable",
    );
    assert_eq!(
        kv_state(&store, &s.path).await,
        before,
        "the unreachable attempt changed nothing"
    );

    // Back: the rotation resumes with the token written before the seal.
    let r2 = drive::drive(ports, &s, rotate_at, StopAt::Quiet)
        .await
        .expect("resume");
    assert!(
        !r2.steps.contains(&Step::CreatePending),
        "the pending token is reused, not replaced: {:?}",
        r2.steps
    );
    assert_eq!(r2.state.current, Some(2), "{:?}", r2.steps);
    assert_eq!(r2.state.previous.as_ref().map(|p| p.version), Some(1));
    assert_eq!(r2.state.rotations, 2);
    assert_eq!(
        store
            .read(&s.path, Some(2))
            .await
            .expect("read")
            .map(|v| v.data),
        Some(pending_token.clone()),
        "the current version is the new token"
    );
    assert!(
        store.read(&s.path, Some(1)).await.expect("read").is_some(),
        "the previous token stays during the overlap"
    );
    let r3 = drive::drive(ports, &s, retire_at, StopAt::Quiet)
        .await
        .expect("retire");
    assert_eq!(r3.state.previous, None, "{:?}", r3.steps);
    assert_eq!(r3.state.current, Some(2));
    assert_eq!(
        store.read(&s.path, Some(1)).await.expect("read"),
        None,
        "the retired token is destroyed"
    );

    // Stopped for good: the same store fails the same retryable way.
    drop(bao);
    assert_unavailable(
        drive::drive(ports, &s, retire_at, StopAt::Quiet).await,
        "drive after the server stopped",
    );
}
