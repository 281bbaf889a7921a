//! `PgDynamicTarget` and `PgStaticTarget` against the real OpenBao dev server and
//! PostgreSQL from `cargo xtask services up`: a minted credential logs in, a wrong
//! password and a revoked credential are refused, revoking twice is fine, an unreachable
//! server is `Unavailable`; a static role rotated through the target (and through the
//! whole state machine on the real KV) logs in with the new password only; keeping a
//! dynamic credential alive extends its lease, reports the `max_ttl` cap, and says when
//! the lease is gone; a new dynamic user that PostgreSQL refuses at the test step aborts
//! the rotation, keeps the current credential and is revoked.

use sre_adapter_openbao::testing::{
    DYNAMIC_ROLE, dynamic_db_engine, shared_config, test_pg_connection, unique,
};
use sre_adapter_openbao::{BaoDatabase, BaoSecretStore, DynamicRole, StaticRole};
use sre_adapter_postgres::{PgDynamicTarget, PgEndpoint, PgStaticTarget, login};
use sre_core::PortError;
use sre_core::ports::SecretData;
use sre_core::testing::test_env;
use sre_rotation::config::{LeaseRenewal, TargetSpec};
use sre_rotation::{CredentialTarget, KeepAlive, Verification};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn pg_port() -> u16 {
    test_env("SRE_TEST_PG_PORT")
        .parse()
        .expect("SRE_TEST_PG_PORT is a port")
}

/// The shared fixture: a database engine at a mount of its own, with role `app`.
async fn engine() -> String {
    dynamic_db_engine("pgtarget").await.mount().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_verify_revoke_against_real_openbao_and_postgres() {
    let mount = engine().await;
    let spec = TargetSpec::PostgresDynamic {
        database_mount: mount,
        role: "app".into(),
        host: test_env("SRE_TEST_PG_HOST"),
        port: pg_port(),
        dbname: "postgres".into(),
        lease: LeaseRenewal::with_increment(LeaseRenewal::DEFAULT_INCREMENT),
    };
    let target = PgDynamicTarget::from_spec(&shared_config(), &spec)
        .expect("client")
        .expect("a postgres spec");
    let cred = target.issue().await.expect("issue");
    assert!(cred.get("lease_id").is_some_and(|l| !l.is_empty()));
    target.install(&cred).await.expect("install is a no-op");
    assert_eq!(target.verify(&cred).await, Ok(Verification::Accepted));

    let mut wrong = cred.clone();
    wrong.0.insert("password".into(), "not-the-password".into());
    let refused = target.verify(&wrong).await.expect("postgres answered");
    assert!(
        matches!(&refused, Verification::Refused { reason } if reason.starts_with("28P01")),
        "{refused:?}"
    );

    target.revoke(&cred).await.expect("revoke");
    let after = target.verify(&cred).await.expect("postgres answered");
    assert!(
        matches!(&after, Verification::Refused { reason } if reason.starts_with("28")),
        "a revoked credential must not log in: {after:?}"
    );
    target.revoke(&cred).await.expect("revoking twice is fine");
    let no_lease = target
        .revoke(&SecretData::from_pairs([("username", "x")]))
        .await;
    assert!(
        matches!(no_lease, Err(PortError::Invalid(_))),
        "{no_lease:?}"
    );
}

/// The Rotation issue's role (TTL 1 h, renewable up to 3 h): renewing by 2 h extends
/// the lease past the TTL, asking beyond `max_ttl` is reported as capped, and a revoked
/// lease is `Gone` rather than an error. The lease is read back through
/// `sys/leases/lookup`, not taken from the renewal's own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_extends_the_lease_reports_the_cap_and_a_gone_lease() {
    let db = dynamic_db_engine("pglease").await;
    db.set_role(
        "pg",
        &DynamicRole {
            name: DYNAMIC_ROLE.into(),
            creation_statements: vec![
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';".into(),
            ],
            revocation_statements: vec![],
            default_ttl: Duration::from_hours(1),
            max_ttl: Duration::from_hours(3),
        },
    )
    .await
    .expect("a role with TTL 1h, max TTL 3h");
    let mount = db.mount().to_owned();
    let engine = || BaoDatabase::new(&shared_config(), mount.clone()).expect("client");
    let lookup = engine();
    let target = PgDynamicTarget::new(db, DYNAMIC_ROLE, endpoint())
        .with_lease_increment(Duration::from_hours(2));

    let cred = target.issue().await.expect("issue");
    let lease_id = cred.get("lease_id").expect("lease_id").to_owned();
    let issued = lookup.lookup(&lease_id).await.expect("lookup");
    assert!(issued.duration <= Duration::from_hours(1), "{issued:?}");
    assert!(issued.renewable, "{issued:?}");

    let kept = target.keep_alive(&cred).await;
    assert_eq!(
        kept,
        Ok(KeepAlive::Extended {
            remaining: Duration::from_hours(2)
        })
    );
    let renewed = lookup.lookup(&lease_id).await.expect("lookup");
    assert!(
        renewed.duration > Duration::from_hours(1) && renewed.duration <= Duration::from_hours(2),
        "the remaining TTL grew past the role's TTL: {renewed:?}"
    );
    assert_eq!(target.verify(&cred).await, Ok(Verification::Accepted));

    // 4 h more would pass max_ttl (3 h from issue): OpenBao grants what is left.
    let greedy = PgDynamicTarget::new(engine(), DYNAMIC_ROLE, endpoint())
        .with_lease_increment(Duration::from_hours(4));
    let capped = greedy.keep_alive(&cred).await;
    assert!(
        matches!(capped, Ok(KeepAlive::Capped { remaining })
            if remaining > Duration::from_hours(2) && remaining <= Duration::from_hours(3)),
        "{capped:?}"
    );
    let at_cap = lookup.lookup(&lease_id).await.expect("lookup");
    assert!(at_cap.duration > Duration::from_hours(2), "{at_cap:?}");

    target.revoke(&cred).await.expect("revoke");
    assert_eq!(target.keep_alive(&cred).await, Ok(KeepAlive::Gone));
    let gone = lookup.lookup(&lease_id).await;
    assert!(matches!(gone, Err(PortError::NotFound { .. })), "{gone:?}");
    let no_lease = target
        .keep_alive(&SecretData::from_pairs([("username", "x")]))
        .await;
    assert!(
        matches!(no_lease, Err(PortError::Invalid(_))),
        "{no_lease:?}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_not_refused() {
    // Bind and drop a listener: a loopback port that nothing serves.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let mut endpoint = PgEndpoint::new("127.0.0.1", port, "postgres");
    endpoint.connect_timeout = Duration::from_secs(2);
    let res = login(&endpoint, "u", "p").await;
    assert!(
        matches!(
            res,
            Err(PortError::Unavailable {
                backend: "postgres",
                ..
            })
        ),
        "{res:?}"
    );
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn endpoint() -> PgEndpoint {
    PgEndpoint::new(test_env("SRE_TEST_PG_HOST"), pg_port(), "postgres")
}

/// A fresh PostgreSQL login role (the service account) and a database engine at a mount
/// of its own whose static role `svc` owns that account's password.
async fn static_engine(tag: &str) -> (String, String) {
    let user = format!("svc_{tag}_{}_{}", std::process::id(), nanos());
    let admin = tokio_postgres::Config::new()
        .host(test_env("SRE_TEST_PG_HOST"))
        .port(pg_port())
        .user(test_env("SRE_TEST_PG_USER"))
        .password(test_env("SRE_TEST_PG_PASSWORD"))
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await;
    let (client, conn) = admin.expect("admin login");
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE ROLE \"{user}\" WITH LOGIN PASSWORD 'initial-Pw-1'"
        ))
        .await
        .expect("create service account");
    drop(client);
    let _ = task.await;
    assert_eq!(
        login(&endpoint(), &user, "initial-Pw-1").await,
        Ok(Verification::Accepted)
    );

    let mount = unique(&format!("pgstatic-{tag}"));
    let db = BaoDatabase::new(&shared_config(), mount.clone()).expect("client");
    db.enable().await.expect("enable");
    db.configure_postgres("pg", &test_pg_connection(&["svc"]))
        .await
        .expect("configure");
    db.set_static_role(
        "pg",
        &StaticRole {
            name: "svc".into(),
            username: user.clone(),
            rotation_period: Duration::from_hours(24 * 30),
            rotation_statements: vec![],
        },
    )
    .await
    .expect("static role");
    (mount, user)
}

fn static_target(mount: String) -> PgStaticTarget {
    let spec = TargetSpec::PostgresStatic {
        database_mount: mount,
        role: "svc".into(),
        host: test_env("SRE_TEST_PG_HOST"),
        port: pg_port(),
        dbname: "postgres".into(),
    };
    PgStaticTarget::from_spec(&shared_config(), &spec)
        .expect("client")
        .expect("a postgres_static spec")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_role_rotates_in_place_and_the_old_password_stops_working() {
    let (mount, user) = static_engine("target").await;
    // Creating the static role already replaced the initial password.
    let refused = login(&endpoint(), &user, "initial-Pw-1").await;
    assert!(
        matches!(&refused, Ok(Verification::Refused { .. })),
        "{refused:?}"
    );

    let target = static_target(mount.clone());
    let first = target.issue().await.expect("issue");
    assert_eq!(first.get("username"), Some(user.as_str()));
    target.install(&first).await.expect("install is a no-op");
    assert_eq!(target.verify(&first).await, Ok(Verification::Accepted));

    let second = target.issue().await.expect("issue again");
    assert_ne!(first.get("password"), second.get("password"));
    assert_eq!(target.verify(&second).await, Ok(Verification::Accepted));
    let old = target.verify(&first).await.expect("openbao answered");
    assert!(
        matches!(&old, Verification::Refused { reason } if reason.contains("changed its password")),
        "{old:?}"
    );
    // And PostgreSQL itself refuses the old password (28P01), not only the engine check.
    let old_login = login(&endpoint(), &user, first.get("password").expect("password"))
        .await
        .expect("postgres answered");
    assert!(
        matches!(&old_login, Verification::Refused { reason } if reason.starts_with("28P01")),
        "{old_login:?}"
    );
    target.revoke(&first).await.expect("revoke is a no-op");
    assert_eq!(
        target.verify(&second).await,
        Ok(Verification::Accepted),
        "revoke kept current"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_role_through_the_state_machine_retires_the_dead_version_at_once() {
    use chrono::{DateTime, Utc};
    use sre_core::ports::SecretStore;
    use sre_rotation::drive::{StopAt, drive};
    use sre_rotation::model::{ApprovalPolicy, Cadence, ManagedSecret, SecretClass};
    use sre_rotation::run::Ports;

    let (mount, user) = static_engine("drive").await;
    let target = static_target(mount);
    let store = BaoSecretStore::new(&shared_config()).expect("kv");
    let secret = ManagedSecret {
        name: "svc".into(),
        class: SecretClass::StaticDb,
        path: format!("sre-test/static/{user}"),
        cadence: Cadence::MaxAge(Duration::from_hours(1)),
        overlap: Duration::ZERO,
        owner: "team".into(),
        consumers: vec![],
        approval: ApprovalPolicy::NotRequired,
    };
    let ports = Ports {
        store: &store,
        target: &target,
    };
    let t0 = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("time");
    let r = drive(ports, &secret, t0, StopAt::Quiet)
        .await
        .expect("first rotation");
    let labels: Vec<&str> = r.steps.iter().map(sre_rotation::Step::label).collect();
    assert_eq!(
        labels,
        [
            "create_pending",
            "set_at_target",
            "test_pending",
            "promote",
            "wait"
        ]
    );
    let v1 = store
        .read(&secret.path, Some(1))
        .await
        .expect("read")
        .expect("version 1");

    let t1 = t0 + chrono::Duration::hours(1);
    let r = drive(ports, &secret, t1, StopAt::Quiet)
        .await
        .expect("second rotation");
    let labels: Vec<&str> = r.steps.iter().map(sre_rotation::Step::label).collect();
    assert_eq!(
        labels,
        [
            "create_pending",
            "set_at_target",
            "test_pending",
            "promote",
            "retire_previous",
            "wait"
        ],
        "no overlap for a static role"
    );
    assert_eq!((r.state.current, r.state.previous), (Some(2), None));
    assert_eq!(
        store.read(&secret.path, Some(1)).await,
        Ok(None),
        "dead version destroyed"
    );
    let v2 = store
        .read(&secret.path, Some(2))
        .await
        .expect("read")
        .expect("version 2");
    let pw = |d: &SecretData| d.get("password").expect("password").to_owned();
    assert_eq!(
        login(&endpoint(), &user, &pw(&v2.data)).await,
        Ok(Verification::Accepted)
    );
    let old = login(&endpoint(), &user, &pw(&v1.data)).await;
    assert!(matches!(&old, Ok(Verification::Refused { .. })), "{old:?}");
}

/// Whether PostgreSQL has a role `name`, asked as the superuser: the check that a
/// revoked dynamic user was dropped, not just that its login fails.
async fn role_exists(name: &str) -> bool {
    let (client, conn) = tokio_postgres::Config::new()
        .host(test_env("SRE_TEST_PG_HOST"))
        .port(pg_port())
        .user(test_env("SRE_TEST_PG_USER"))
        .password(test_env("SRE_TEST_PG_PASSWORD"))
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .expect("admin login");
    let task = tokio::spawn(conn);
    let rows = client
        .query("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
        .await
        .expect("query pg_roles");
    drop(client);
    let _ = task.await;
    !rows.is_empty()
}

/// The issue's "a target that rejects the new credential in the test step (abort, keep
/// current, alert)" on the real servers: a dynamic secret rotates once through
/// `PgDynamicTarget` and the real database engine, then the operator changes the role so
/// that new users are `NOLOGIN`. The next rotation's test step is a real login that
/// PostgreSQL refuses: the rotation is aborted with PostgreSQL's reason in the state and
/// the status row, the current KV version stays and still logs in, and the refused user
/// is revoked (lease gone, role dropped, KV version destroyed) instead of left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::too_many_lines)] // one scenario read in order: rotate, break the role, abort
async fn a_new_credential_refused_at_login_aborts_keeps_current_and_is_revoked() {
    use chrono::{DateTime, Utc};
    use sre_core::ports::SecretStore;
    use sre_rotation::drive::{self, StopAt};
    use sre_rotation::model::{ApprovalPolicy, Cadence, ManagedSecret, SecretClass};
    use sre_rotation::run::{self, Ports};
    use sre_rotation::state::LastResult;
    use sre_rotation::{Phase, Step};

    let db = dynamic_db_engine("pgrefuse").await;
    let mount = db.mount().to_owned();
    let engine = BaoDatabase::new(&shared_config(), mount).expect("client");
    let target = PgDynamicTarget::new(db, DYNAMIC_ROLE, endpoint());
    let store = BaoSecretStore::new(&shared_config()).expect("kv");
    let secret = ManagedSecret {
        name: "billing-db".into(),
        class: SecretClass::DynamicDb,
        path: format!("{}/db", unique("pgrefuse")),
        cadence: Cadence::MaxAge(Duration::from_hours(1)),
        overlap: Duration::from_mins(30),
        owner: "team-billing".into(),
        consumers: vec![],
        approval: ApprovalPolicy::NotRequired,
    };
    let ports = Ports {
        store: &store,
        target: &target,
    };
    let t0 = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("time");
    let r1 = drive::drive(ports, &secret, t0, StopAt::Quiet)
        .await
        .expect("first rotation");
    assert_eq!(r1.state.current, Some(1), "{:?}", r1.steps);
    let current = store
        .read(&secret.path, Some(1))
        .await
        .expect("read")
        .expect("version 1")
        .data;
    let log_in = |c: &SecretData| {
        let (user, pw) = (
            c.get("username").unwrap_or_default().to_owned(),
            c.get("password").unwrap_or_default().to_owned(),
        );
        async move { login(&endpoint(), &user, &pw).await }
    };
    assert_eq!(log_in(&current).await, Ok(Verification::Accepted));

    // The operator's change: users the role creates from now on cannot log in.
    engine
        .set_role(
            "pg",
            &DynamicRole {
                name: DYNAMIC_ROLE.into(),
                creation_statements: vec![
                    "CREATE ROLE \"{{name}}\" WITH NOLOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';".into(),
                ],
                revocation_statements: vec![],
                default_ttl: Duration::from_hours(1),
                max_ttl: Duration::from_hours(2),
            },
        )
        .await
        .expect("a role whose users cannot log in");

    // Rotation 2 is due; its first step mints the user, read before it is dropped.
    let t1 = t0 + chrono::Duration::hours(2);
    let created = run::step(ports, &secret, None, t1)
        .await
        .expect("create pending");
    assert_eq!(created.step, Step::CreatePending);
    assert_eq!(created.state.pending(), Some(2), "{:?}", created.state);
    let refused = store
        .read(&secret.path, Some(2))
        .await
        .expect("read")
        .expect("pending version")
        .data;
    let refused_user = refused.get("username").expect("username").to_owned();
    let refused_lease = refused.get("lease_id").expect("lease_id").to_owned();
    assert!(
        role_exists(&refused_user).await,
        "the engine created the pending user"
    );
    assert!(
        engine.lookup(&refused_lease).await.is_ok(),
        "its lease is live"
    );

    let r2 = drive::drive(ports, &secret, t1, StopAt::RotationEnd)
        .await
        .expect("second rotation");
    let labels: Vec<&str> = r2.steps.iter().map(Step::label).collect();
    assert_eq!(
        labels,
        ["set_at_target", "test_pending", "drop_pending"],
        "the test step's refusal aborts"
    );
    // PostgreSQL's own answer (28000: not permitted to log in) is the recorded reason.
    let reason = match r2.steps.last() {
        Some(Step::DropPending { version: 2, reason }) => reason.clone(),
        other => panic!("not an abort of version 2: {other:?}"),
    };
    assert!(
        reason.starts_with("28000") && reason.contains("not permitted to log in"),
        "{reason}"
    );

    // Aborted, current kept: in what the drive returned and in what OpenBao holds.
    let (state, latest, _) = run::load(&store, &secret.path).await.expect("load");
    assert_eq!(state, r2.state, "the persisted state is the reported one");
    assert_eq!(state.phase, Phase::Idle);
    assert_eq!(state.current, Some(1));
    assert_eq!(state.previous, None);
    assert_eq!(state.rotations, 1, "an abort is not a rotation");
    assert_eq!(
        state.last_result,
        Some(LastResult::Aborted {
            reason: reason.clone()
        })
    );
    assert_eq!(latest, 2, "the refused version was written, then destroyed");
    let row = drive::status(&store, &secret, t1).await;
    assert_eq!(row.current, Some(1), "{row:?}");
    assert_eq!(row.last_result, "aborted", "{row:?}");
    assert!(
        row.last_message
            .as_deref()
            .is_some_and(|m| m.contains(&reason)),
        "the status row carries the reason: {row:?}"
    );
    assert_eq!(
        store
            .read(&secret.path, Some(1))
            .await
            .expect("read")
            .map(|v| v.data),
        Some(current.clone()),
        "the current version is untouched"
    );
    assert_eq!(
        log_in(&current).await,
        Ok(Verification::Accepted),
        "the current credential still logs in"
    );

    // The refused credential is revoked, not left to its TTL.
    assert_eq!(
        store.read(&secret.path, Some(2)).await,
        Ok(None),
        "the refused version is destroyed"
    );
    let gone = engine.lookup(&refused_lease).await;
    assert!(
        matches!(gone, Err(PortError::NotFound { .. })),
        "the refused lease is revoked: {gone:?}"
    );
    assert!(
        !role_exists(&refused_user).await,
        "revoking the lease dropped the refused user"
    );
    let again = log_in(&refused).await;
    assert!(
        matches!(&again, Ok(Verification::Refused { reason }) if reason.starts_with("28")),
        "{again:?}"
    );
}
