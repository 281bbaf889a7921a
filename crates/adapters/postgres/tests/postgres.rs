//! `PgDynamicTarget` against the real OpenBao dev server and PostgreSQL from `cargo xtask
//! services up`: a minted credential logs in, a wrong password and a revoked credential
//! are refused, revoking twice is fine, an unreachable server is `Unavailable`.

use sre_adapter_openbao::{BaoConfig, BaoDatabase, DynamicRole, PostgresConnection};
use sre_adapter_postgres::{PgDynamicTarget, PgEndpoint, login};
use sre_core::PortError;
use sre_core::ports::SecretData;
use sre_core::testing::test_env;
use sre_rotation::config::TargetSpec;
use sre_rotation::{CredentialTarget, Verification};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn config() -> BaoConfig {
    BaoConfig::new(
        test_env("SRE_TEST_BAO_ADDR"),
        test_env("SRE_TEST_BAO_TOKEN"),
    )
}

fn pg_port() -> u16 {
    test_env("SRE_TEST_PG_PORT")
        .parse()
        .expect("SRE_TEST_PG_PORT is a port")
}

/// A database engine at a mount of its own (the dev server is shared), with role `app`.
async fn engine() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mount = format!("sre-test-pgtarget-{}-{nanos}", std::process::id());
    let db = BaoDatabase::new(&config(), mount.clone()).expect("client");
    db.enable().await.expect("enable");
    db.configure_postgres(
        "pg",
        &PostgresConnection {
            connection_url: format!(
                "postgresql://{{{{username}}}}:{{{{password}}}}@{}:{}/postgres?sslmode=disable",
                test_env("SRE_TEST_PG_HOST"),
                pg_port()
            ),
            username: test_env("SRE_TEST_PG_USER"),
            password: test_env("SRE_TEST_PG_PASSWORD"),
            allowed_roles: vec!["app".into()],
        },
    )
    .await
    .expect("configure");
    db.set_role(
        "pg",
        &DynamicRole {
            name: "app".into(),
            creation_statements: vec![
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';".into(),
            ],
            revocation_statements: vec![],
            default_ttl: Duration::from_hours(1),
            max_ttl: Duration::from_hours(2),
        },
    )
    .await
    .expect("role");
    mount
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
    };
    let target = PgDynamicTarget::from_spec(&config(), &spec)
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
