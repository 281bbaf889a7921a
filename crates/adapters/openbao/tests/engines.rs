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

/// Signing-key rotation through the rotation port: the pending version passes a real
/// sign + verify, signatures made with the old version keep verifying during the overlap
/// (and the JWKS lists both keys), and are refused once the old version is retired.
#[tokio::test]
async fn signing_key_rotation_keeps_old_signatures_during_overlap_and_rejects_them_after() {
    use sre_adapter_openbao::{BaoKeyring, TransitSigningTarget, Verdict};
    use sre_rotation::{CredentialTarget, Verification};
    let keys = BaoKeyring::new(&config(), unique("signing")).expect("client");
    keys.enable().await.expect("enable transit");
    let target = TransitSigningTarget::new(
        BaoKeyring::new(&config(), keys_mount(&keys)).expect("client"),
        "jwt",
    );
    // First issue creates the key: version 1 becomes current.
    let v1 = target.issue().await.expect("issue v1");
    assert_eq!(v1.get("version"), Some("1"));
    assert_eq!(
        target.verify(&v1).await.expect("verify"),
        Verification::Accepted
    );
    let old_sig = keys.sign_with("jwt", 1, b"token").await.expect("sign v1");

    // Rotation: pending v2, set, tested by a real sign + verify with v2.
    let v2 = target.issue().await.expect("issue v2");
    assert_eq!(v2.get("version"), Some("2"));
    // A crash before the KV write repeats the issue: it reuses v2 instead of rotating again.
    assert_eq!(
        target.issue().await.expect("issue again").get("version"),
        Some("2")
    );
    target.install(&v2).await.expect("install");
    assert_eq!(
        target.verify(&v2).await.expect("verify"),
        Verification::Accepted
    );
    // Overlap: min_decryption_version still 1, both keys published.
    let info = keys.read("jwt").await.expect("read").expect("exists");
    assert_eq!((info.latest_version, info.min_decryption_version), (2, 1));
    let jwks = sre_rotation::jwks::render("jwt", &info.public_keys, info.min_decryption_version);
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2), "{jwks}");
    assert_eq!(
        keys.verify("jwt", b"token", &old_sig)
            .await
            .expect("verify"),
        Verdict::Valid
    );
    // A rejected pending version (the newest) cannot be disabled alone.
    assert!(target.revoke(&v2).await.is_err());

    // Retire v1: old signatures are refused, the JWKS lists v2 only.
    target.revoke(&v1).await.expect("retire v1");
    target.revoke(&v1).await.expect("retiring twice is fine");
    assert!(matches!(
        keys.verify("jwt", b"token", &old_sig)
            .await
            .expect("verify"),
        Verdict::Refused { .. }
    ));
    let info = keys.read("jwt").await.expect("read").expect("exists");
    let jwks = sre_rotation::jwks::render("jwt", &info.public_keys, info.min_decryption_version);
    assert_eq!(jwks["keys"][0]["kid"], "jwt-v2");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        target.verify(&v2).await.expect("verify"),
        Verification::Accepted
    );
}

fn keys_mount(keys: &sre_adapter_openbao::BaoKeyring) -> String {
    // The Debug output names the mount; the test keeps its own copy instead of parsing it.
    let text = format!("{keys:?}");
    text.split("mount: \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("mount in Debug")
        .to_owned()
}

/// KMS master-key rotation: every data key is re-wrapped from the old master version to
/// the new one; a crash halfway resumes with the keys not yet done, and the cut-over
/// refuses the old version only after all of them decrypt under the new one.
#[tokio::test]
async fn kms_rewrap_resumes_after_a_crash_halfway_and_cuts_over_last() {
    use sre_adapter_openbao::{BaoKeyring, BaoSecretStore, Envelope, rewrap_progress, rewrap_step};
    use sre_core::ports::{SecretData, SecretStore};
    use sre_rotation::rewrap::RewrapStep;
    let mount = unique("kms");
    let keys = BaoKeyring::new(&config(), mount.clone()).expect("client");
    keys.enable().await.expect("enable transit");
    keys.create("master", "aes256-gcm96").await.expect("create");
    let store = BaoSecretStore::new(&config()).expect("kv");
    let base = unique("kms-data");
    let mut paths = Vec::new();
    let mut plains = Vec::new();
    for i in 0..4 {
        let dk = keys.data_key("master").await.expect("data key");
        let path = format!("{base}/dk{i}");
        store
            .write(
                &path,
                &SecretData::from_pairs([("ciphertext", dk.ciphertext.clone())]),
                None,
            )
            .await
            .expect("store data key");
        assert!(dk.ciphertext.starts_with("vault:v1:"));
        paths.push(path);
        plains.push(dk.plaintext);
    }
    let progress_path = format!("{base}/progress");
    let env = Envelope {
        keys: &keys,
        master_key: "master",
        store: &store,
        progress_path: &progress_path,
    };
    // Start + two data keys, then the "crash": the process stops calling.
    assert_eq!(
        rewrap_step(env, &paths).await.expect("start"),
        RewrapStep::Start
    );
    for _ in 0..2 {
        assert!(matches!(
            rewrap_step(env, &paths).await.expect("rewrap"),
            RewrapStep::Rewrap { .. }
        ));
    }
    let p = rewrap_progress(env)
        .await
        .expect("progress")
        .expect("in flight");
    assert_eq!(p.target_version, 2);
    assert_eq!(p.done_through.as_deref(), Some(paths[1].as_str()));
    // Old version still decrypts during the re-wrap: nothing is cut over yet.
    let info = keys.read("master").await.expect("read").expect("exists");
    assert_eq!(info.min_decryption_version, 1);

    // A fresh "process" resumes from the persisted progress.
    let keys2 = BaoKeyring::new(&config(), mount).expect("client");
    let env2 = Envelope {
        keys: &keys2,
        ..env
    };
    let mut rest = Vec::new();
    loop {
        let s = rewrap_step(env2, &paths).await.expect("step");
        let done = matches!(s, RewrapStep::CutOver { .. });
        rest.push(s);
        if done {
            break;
        }
    }
    assert_eq!(rest.len(), 3, "two keys left, then the cut-over: {rest:?}");
    assert!(rewrap_progress(env2).await.expect("progress").is_none());
    let info = keys2.read("master").await.expect("read").expect("exists");
    assert_eq!(info.min_decryption_version, 2);
    for (path, plain) in paths.iter().zip(&plains) {
        let ct = store.read(path, None).await.expect("read").expect("exists");
        let ct = ct.data.get("ciphertext").expect("ciphertext").to_owned();
        assert!(ct.starts_with("vault:v2:"), "{path}: {ct}");
        assert_eq!(&keys2.decrypt("master", &ct).await.expect("decrypt"), plain);
    }
}
