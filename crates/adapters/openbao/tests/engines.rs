//! The database and transit engines against a real OpenBao dev server and a real
//! PostgreSQL 15 with scram authentication over TCP (both started by `cargo xtask
//! services up`): credentials the engine mints must log in, and stop logging in once
//! revoked; transit signatures must survive a key rotation until
//! `min_decryption_version` moves past their version.

use sre_adapter_openbao::{
    BaoConfig, BaoDatabase, BaoTransit, DynamicRole, PostgresConnection, SignatureCheck,
    signature_version,
};
use sre_core::PortError;
use sre_core::testing::test_env;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn config() -> BaoConfig {
    BaoConfig::new(
        test_env("SRE_TEST_BAO_ADDR"),
        test_env("SRE_TEST_BAO_TOKEN"),
    )
}

/// A mount of its own per test and run: the dev server is shared.
fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("sre-test-{tag}-{}-{nanos}", std::process::id())
}

/// Logs in to the test PostgreSQL over TCP (scram) and runs a query.
async fn login(user: &str, password: &str) -> Result<(), tokio_postgres::Error> {
    let port: u16 = test_env("SRE_TEST_PG_PORT")
        .parse()
        .expect("SRE_TEST_PG_PORT");
    let (client, conn) = tokio_postgres::Config::new()
        .host(test_env("SRE_TEST_PG_HOST"))
        .port(port)
        .user(user)
        .password(password)
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5))
        .connect(tokio_postgres::NoTls)
        .await?;
    let task = tokio::spawn(conn);
    let rows = client.simple_query("SELECT current_user").await;
    drop(client);
    let _ = task.await;
    rows.map(|_| ())
}

async fn database_engine(tag: &str) -> (BaoDatabase, String) {
    let db = BaoDatabase::new(&config(), unique(tag)).expect("client");
    db.enable().await.expect("enable database engine");
    db.enable().await.expect("enabling twice is fine");
    let role = "app".to_owned();
    db.configure_postgres(
        "pg",
        &PostgresConnection {
            connection_url: format!(
                "postgresql://{{{{username}}}}:{{{{password}}}}@{}:{}/postgres?sslmode=disable",
                test_env("SRE_TEST_PG_HOST"),
                test_env("SRE_TEST_PG_PORT")
            ),
            username: test_env("SRE_TEST_PG_USER"),
            password: test_env("SRE_TEST_PG_PASSWORD"),
            allowed_roles: vec![role.clone()],
        },
    )
    .await
    .expect("configure postgres connection");
    db.set_role(
        "pg",
        &DynamicRole {
            name: role.clone(),
            creation_statements: vec![
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';".into(),
            ],
            revocation_statements: vec![],
            default_ttl: Duration::from_hours(1),
            max_ttl: Duration::from_hours(2),
        },
    )
    .await
    .expect("set role");
    (db, role)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_credentials_log_in_renew_and_stop_working_after_revocation() {
    let (db, role) = database_engine("db").await;
    let cred = db.issue(&role).await.expect("issue");
    assert!(cred.lease.id.starts_with(db.mount()), "{cred:?}");
    assert_eq!(cred.lease.duration, Duration::from_hours(1));
    assert!(cred.lease.renewable);
    login(&cred.username, &cred.password)
        .await
        .expect("minted credentials log in over scram");
    login(&cred.username, "not-the-password")
        .await
        .expect_err("a wrong password must fail, or the login check proves nothing");

    let renewed = db
        .renew(&cred.lease.id, Duration::from_mins(30))
        .await
        .expect("renew");
    assert_eq!(renewed.id, cred.lease.id);
    assert!(
        renewed.duration > Duration::ZERO && renewed.duration <= Duration::from_mins(30),
        "{renewed:?}"
    );

    let other = db.issue(&role).await.expect("second credential");
    assert_ne!(other.username, cred.username);
    db.revoke(&cred.lease.id).await.expect("revoke");
    let err = login(&cred.username, &cred.password)
        .await
        .expect_err("revoked credentials must not log in");
    let code = err.as_db_error().map(|e| e.code().code().to_owned());
    // 28P01 invalid_password / 28000 invalid_authorization_specification (role gone).
    assert!(
        matches!(code.as_deref(), Some("28P01" | "28000")),
        "{err:?}"
    );
    db.revoke(&cred.lease.id)
        .await
        .expect("revoking again is harmless");
    login(&other.username, &other.password)
        .await
        .expect("revoking one lease leaves the others working");
    db.revoke(&other.lease.id).await.expect("revoke other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_connection_and_an_unknown_role_are_rejected() {
    let db = BaoDatabase::new(&config(), unique("dbbad")).expect("client");
    db.enable().await.expect("enable");
    let err = db
        .configure_postgres(
            "pg",
            &PostgresConnection {
                connection_url: format!(
                    "postgresql://{{{{username}}}}:{{{{password}}}}@{}:{}/postgres?sslmode=disable",
                    test_env("SRE_TEST_PG_HOST"),
                    test_env("SRE_TEST_PG_PORT")
                ),
                username: test_env("SRE_TEST_PG_USER"),
                password: "wrong-password".into(),
                allowed_roles: vec!["app".into()],
            },
        )
        .await
        .expect_err("the engine verifies the connection");
    assert!(matches!(err, PortError::Rejected { .. }), "{err:?}");
    assert!(
        !format!("{err:?}").contains("wrong-password"),
        "errors never carry the password: {err:?}"
    );
    let err = db.issue("nope").await.expect_err("no such role");
    assert!(
        matches!(err, PortError::Rejected { .. } | PortError::NotFound { .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transit_signatures_verify_until_min_decryption_version_passes_them() {
    let transit = BaoTransit::new(&config(), unique("transit")).expect("client");
    transit.enable().await.expect("enable transit");
    transit
        .create_signing_key("release")
        .await
        .expect("create key");
    let msg = b"release 1.2.3 manifest digest";
    let old = transit.sign("release", msg).await.expect("sign v1");
    assert_eq!(signature_version(&old), Some(1), "{old}");
    assert_eq!(
        transit.verify("release", msg, &old).await,
        Ok(SignatureCheck::Valid)
    );
    assert_eq!(
        transit.verify("release", b"tampered", &old).await,
        Ok(SignatureCheck::Invalid)
    );

    transit.rotate("release").await.expect("rotate");
    let new = transit.sign("release", msg).await.expect("sign v2");
    assert_eq!(signature_version(&new), Some(2), "{new}");
    // Overlap: old and new signatures both verify.
    assert_eq!(
        transit.verify("release", msg, &old).await,
        Ok(SignatureCheck::Valid)
    );
    assert_eq!(
        transit.verify("release", msg, &new).await,
        Ok(SignatureCheck::Valid)
    );

    // End of overlap: version 1 is retired.
    transit
        .set_min_decryption_version("release", 2)
        .await
        .expect("raise min_decryption_version");
    let after = transit.verify("release", msg, &old).await;
    assert!(
        matches!(
            after,
            Ok(SignatureCheck::Refused { .. } | SignatureCheck::Invalid)
        ),
        "a retired version must not verify: {after:?}"
    );
    assert_eq!(
        transit.verify("release", msg, &new).await,
        Ok(SignatureCheck::Valid)
    );
}
