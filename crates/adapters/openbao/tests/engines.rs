//! The database and transit engines against a real OpenBao dev server and a real
//! PostgreSQL 15 with scram authentication over TCP (both started by `cargo xtask
//! services up`): credentials the engine mints must log in, and stop logging in once
//! revoked; transit signatures must survive a key rotation until
//! `min_decryption_version` moves past their version. The unseal executor runs against
//! a dev server of its own (spawned here, sealed, unsealed again), because sealing the
//! shared one would break every other test.

use sre_adapter_openbao::testing::{
    DYNAMIC_ROLE, DevServer, dynamic_db_engine, free_port, shared_config, test_pg_connection,
    unique,
};
use sre_adapter_openbao::{
    BaoDatabase, BaoSecretStore, BaoTransit, BaoUnsealer, Change, DynamicRole, EngineChanges,
    PostgresConnection, SignatureCheck, UnsealConfig, UnsealError, signature_version,
};
use sre_core::PortError;
use sre_core::ports::{SecretData, SecretStore};
use sre_core::testing::test_env;
use sre_remediation::actions::{BaoInstance, Mode, Unsealer};
use std::sync::Arc;
use std::time::Duration;

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

/// The shared fixture, enabled a second time: enabling is idempotent.
async fn database_engine(tag: &str) -> (BaoDatabase, String) {
    let db = dynamic_db_engine(tag).await;
    db.enable().await.expect("enabling twice is fine");
    (db, DYNAMIC_ROLE.to_owned())
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

/// Logs in like [`login`] and returns who PostgreSQL says is logged in.
async fn whoami(user: &str, password: &str) -> Result<String, tokio_postgres::Error> {
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
    let row = client.query_one("SELECT current_user::text", &[]).await;
    drop(client);
    let _ = task.await;
    Ok(row?.get(0))
}

/// A role as the rotation config's defaults write it: a login user valid until its
/// lease ends, dropped on revocation.
fn product_role(default_ttl: Duration) -> DynamicRole {
    DynamicRole {
        name: "app".into(),
        creation_statements: vec![
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';".into(),
        ],
        revocation_statements: vec!["DROP ROLE IF EXISTS \"{{name}}\";".into()],
        default_ttl,
        max_ttl: Duration::from_hours(24),
    }
}

/// The product's ensure API from nothing: a mount that does not exist yet ends up
/// serving 1 h credentials that log in; a second call writes nothing but the connection
/// and leaves issued credentials working; a changed TTL is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_dynamic_configures_a_fresh_mount_and_is_idempotent() {
    let db = BaoDatabase::new(&shared_config(), unique("ensure")).expect("client");
    let err = db.issue("app").await.expect_err("nothing is mounted yet");
    assert!(
        matches!(err, PortError::NotFound { .. } | PortError::Rejected { .. }),
        "{err:?}"
    );
    let conn = test_pg_connection(&["app"]);
    let first = db
        .ensure_dynamic("pg", &conn, &product_role(Duration::from_hours(1)))
        .await
        .expect("configure from nothing");
    assert_eq!(
        first,
        EngineChanges {
            mount: Change::Created,
            connection: Change::Created,
            role: Change::Created
        }
    );
    let cred = db.issue("app").await.expect("issue");
    assert_eq!(cred.lease.duration, Duration::from_hours(1), "TTL 1h");
    assert!(cred.lease.renewable);
    assert_eq!(
        whoami(&cred.username, &cred.password).await.expect("login"),
        cred.username
    );

    let again = db
        .ensure_dynamic("pg", &conn, &product_role(Duration::from_hours(1)))
        .await
        .expect("a second call");
    assert_eq!(
        again,
        EngineChanges {
            mount: Change::Unchanged,
            connection: Change::Updated,
            role: Change::Unchanged
        },
        "only the connection (whose password cannot be compared) is written again"
    );
    whoami(&cred.username, &cred.password)
        .await
        .expect("credentials issued before the repeat still log in");
    let looked = db.lookup(&cred.lease.id).await.expect("lookup");
    assert!(looked.duration > Duration::from_mins(59), "{looked:?}");

    let shorter = db
        .ensure_dynamic("pg", &conn, &product_role(Duration::from_mins(30)))
        .await
        .expect("a changed role");
    assert_eq!(shorter.role, Change::Updated);
    let second = db.issue("app").await.expect("issue after the change");
    assert_eq!(second.lease.duration, Duration::from_mins(30));

    for c in [&cred, &second] {
        db.revoke(&c.lease.id).await.expect("revoke");
        whoami(&c.username, &c.password)
            .await
            .expect_err("the revocation statement dropped the user");
    }
}

/// What the ensure API refuses, and that a refused call leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_dynamic_refuses_other_mount_types_bad_passwords_and_unallowed_roles() {
    let kv = BaoDatabase::new(&shared_config(), "secret").expect("client");
    let err = kv
        .ensure_dynamic(
            "pg",
            &test_pg_connection(&["app"]),
            &product_role(Duration::from_hours(1)),
        )
        .await
        .expect_err("the dev server's KV mount is no database engine");
    assert!(
        matches!(&err, PortError::Rejected { message, .. } if message.contains("kv")),
        "{err:?}"
    );

    let db = BaoDatabase::new(&shared_config(), unique("ensurebad")).expect("client");
    let err = db
        .ensure_dynamic(
            "pg",
            &test_pg_connection(&["other"]),
            &product_role(Duration::from_hours(1)),
        )
        .await
        .expect_err("role app is not allowed on the connection");
    assert!(matches!(err, PortError::Invalid(_)), "{err:?}");
    assert_eq!(
        db.ensure_mount().await,
        Ok(Change::Created),
        "the refused call mounted nothing"
    );

    let secret = "Wr0ng-but-secret-pa55word";
    let err = db
        .ensure_dynamic(
            "pg",
            &PostgresConnection {
                password: secret.into(),
                ..test_pg_connection(&["app"])
            },
            &product_role(Duration::from_hours(1)),
        )
        .await
        .expect_err("PostgreSQL refuses the admin password");
    assert!(matches!(err, PortError::Rejected { .. }), "{err:?}");
    assert!(
        !format!("{err:?} {err}").contains(secret),
        "the password is never returned: {err:?}"
    );
    let err = db
        .issue("app")
        .await
        .expect_err("no role was written after the connection failed");
    assert!(
        matches!(err, PortError::NotFound { .. } | PortError::Rejected { .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_connection_and_an_unknown_role_are_rejected() {
    let db = BaoDatabase::new(&shared_config(), unique("dbbad")).expect("client");
    db.enable().await.expect("enable");
    let err = db
        .configure_postgres(
            "pg",
            &PostgresConnection {
                password: "wrong-password".into(),
                ..test_pg_connection(&["app"])
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
    let transit = BaoTransit::new(&shared_config(), unique("transit")).expect("client");
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
    let keys = BaoKeyring::new(&shared_config(), unique("signing")).expect("client");
    keys.enable().await.expect("enable transit");
    let target = TransitSigningTarget::new(
        BaoKeyring::new(&shared_config(), keys_mount(&keys)).expect("client"),
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
    let keys = BaoKeyring::new(&shared_config(), mount.clone()).expect("client");
    keys.enable().await.expect("enable transit");
    keys.create("master", "aes256-gcm96").await.expect("create");
    let store = BaoSecretStore::new(&shared_config()).expect("kv");
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
    let keys2 = BaoKeyring::new(&shared_config(), mount).expect("client");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseal_submits_attested_shares_only_when_sealed_and_enough() {
    let bao = DevServer::spawn().await;
    let instance = BaoInstance::new(Some("vault"), "openbao-0");
    // The key source: the shared dev server's KV (in production a SPIRE-gated store).
    let keys: Arc<dyn SecretStore> =
        Arc::new(BaoSecretStore::new(&shared_config()).expect("client"));
    let scope = unique("unseal");
    let unsealer = |keys_path: &str| {
        let mut cfg = UnsealConfig::new(
            "http://{name}.openbao-internal.{namespace}.svc:8200",
            format!("{scope}/{keys_path}/{{namespace}}"),
        );
        cfg.addresses
            .insert("openbao-0".into(), bao.address.clone());
        BaoUnsealer::new(cfg, keys.clone())
    };
    let good = unsealer("good");
    keys.write(
        &format!("{scope}/good/vault"),
        &SecretData::from_pairs([("keys", format!("[\"{}\"]", bao.unseal_key))]),
        None,
    )
    .await
    .expect("store the share");

    // Ready and unsealed: nothing to do, nothing submitted.
    let mut ready = false;
    for _ in 0..100 {
        if good.seal_status(&instance).await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the dev server never answered seal-status");
    let idle = good
        .unseal(&instance, Mode::Apply)
        .await
        .expect("unsealed already");
    assert!(!idle.changed, "{idle:?}");

    bao.seal().await;
    let sealed = good.seal_status(&instance).await.expect("status");
    assert!(sealed.sealed && sealed.threshold == 1, "{sealed:?}");

    // No shares at the path: a typed error, and the server stays sealed.
    let none = unsealer("missing")
        .unseal_instance(&instance, Mode::Apply)
        .await;
    assert!(
        matches!(
            none,
            Err(UnsealError::NotEnoughShares {
                available: 0,
                threshold: 1,
                ..
            })
        ),
        "{none:?}"
    );
    // A share that is not this server's: rejected, still sealed.
    let wrong = unsealer("wrong");
    keys.write(
        &format!("{scope}/wrong/vault"),
        &SecretData::from_pairs([("keys", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")]),
        None,
    )
    .await
    .expect("store a wrong share");
    let rejected = wrong.unseal_instance(&instance, Mode::Apply).await;
    assert!(
        matches!(&rejected, Err(UnsealError::SharesRejected { .. })),
        "{rejected:?}"
    );
    assert!(
        !format!("{rejected:?}").contains("AAAAAAAA"),
        "an error must not quote the share: {rejected:?}"
    );
    assert!(good.seal_status(&instance).await.expect("status").sealed);

    // A dry run reports shares against the threshold and submits nothing.
    let dry = good.unseal(&instance, Mode::DryRun).await.expect("dry run");
    assert!(dry.changed && dry.dry_run, "{dry:?}");
    assert!(
        dry.detail.contains("1 key shares available, threshold 1"),
        "{}",
        dry.detail
    );
    let after_dry = good.seal_status(&instance).await.expect("status");
    assert!(after_dry.sealed && after_dry.progress == 0, "{after_dry:?}");

    // The real thing, then idempotence.
    let done = good.unseal(&instance, Mode::Apply).await.expect("unseal");
    assert!(done.changed && !done.dry_run, "{done:?}");
    assert_eq!(done.after.as_deref(), Some("sealed=false"));
    assert!(!done.detail.contains(&bao.unseal_key), "{}", done.detail);
    assert!(!good.seal_status(&instance).await.expect("status").sealed);
    let again = good.unseal(&instance, Mode::Apply).await.expect("again");
    assert!(!again.changed, "{again:?}");

    // An instance nobody listens for: unavailable (retryable), through the port.
    let mut cfg = UnsealConfig::new("http://{name}:1", format!("{scope}/good/{{namespace}}"));
    cfg.addresses
        .insert("gone".into(), format!("http://127.0.0.1:{}", free_port()));
    let gone = BaoUnsealer::new(cfg, keys.clone())
        .unseal(&BaoInstance::new(Some("vault"), "gone"), Mode::Apply)
        .await;
    assert!(
        matches!(&gone, Err(e @ PortError::Unavailable { .. }) if e.is_retryable()),
        "{gone:?}"
    );
    drop(bao);
}

/// Where the injected crash stops the real `KmsRewrapTarget::install` of the second
/// rotation. Install re-wraps `dk0`, `dk1`, `dk2` in that order, writing each and then
/// saving the cursor (folder custom metadata) after it; the target's KV goes through a
/// `FaultyStore` that fails the `nth` call of `op` and every call after it.
struct Crash {
    op: sre_adapter_openbao::testing::StoreOp,
    nth: u32,
    /// Data keys re-wrapped and written before the crash.
    written: usize,
    /// Data keys the persisted cursor counts as done: fewer than `written` when the
    /// crash falls between a key's write and its cursor save.
    cursor: usize,
}

/// k = 1 of n = 3: the crash hits the second data key's write.
#[tokio::test]
async fn kms_master_key_rotates_through_the_state_machine_and_resumes_a_crashed_rewrap() {
    use sre_adapter_openbao::testing::StoreOp;
    kms_crash_and_resume(Crash {
        op: StoreOp::Write,
        nth: 2,
        written: 1,
        cursor: 1,
    })
    .await;
}

/// k = 0: the crash hits the first data key's write, after the cursor was started.
#[tokio::test]
async fn kms_master_key_rewrap_crashed_before_the_first_key_resumes_from_the_first() {
    use sre_adapter_openbao::testing::StoreOp;
    kms_crash_and_resume(Crash {
        op: StoreOp::Write,
        nth: 1,
        written: 0,
        cursor: 0,
    })
    .await;
}

/// k = n - 1: the crash hits the last data key's write.
#[tokio::test]
async fn kms_master_key_rewrap_crashed_at_the_last_key_resumes_with_it() {
    use sre_adapter_openbao::testing::StoreOp;
    kms_crash_and_resume(Crash {
        op: StoreOp::Write,
        nth: 3,
        written: 2,
        cursor: 2,
    })
    .await;
}

/// The crash hits the cursor save after `dk0` was written (the second
/// `set_custom_metadata`; the first starts the cursor): the resume re-wraps `dk0`
/// once more, which is harmless (it stays at the new version, same plaintext).
#[tokio::test]
async fn kms_master_key_rewrap_crashed_before_a_cursor_save_rewraps_that_key_again_harmlessly() {
    use sre_adapter_openbao::testing::StoreOp;
    kms_crash_and_resume(Crash {
        op: StoreOp::SetCustomMetadata,
        nth: 2,
        written: 1,
        cursor: 0,
    })
    .await;
}

/// `KmsRewrapTarget` through the real state machine on the real OpenBao: the first
/// rotation re-wraps every data key to the new master version (install); in the second,
/// a fault injected into the target's KV store makes the real install stop as
/// [`Crash`] says, the state machine records a retryable failure (not an abort), and a
/// fresh target (a restarted controller) resumes from the persisted cursor without
/// re-wrapping the keys it records as done. The old version is retired only after the
/// overlap.
#[allow(clippy::too_many_lines)] // one scenario, two rotations and a crash, read in order
async fn kms_crash_and_resume(crash: Crash) {
    use chrono::{DateTime, Utc};
    use sre_adapter_openbao::KmsRewrapTarget;
    use sre_adapter_openbao::testing::FaultyStore;
    use sre_rotation::config::TargetSpec;
    use sre_rotation::drive::{StopAt, drive};
    use sre_rotation::model::{ApprovalPolicy, Cadence, ManagedSecret, SecretClass};
    use sre_rotation::run::{Ports, step};
    use sre_rotation::{CredentialTarget, Outcome, Phase, Verification};

    let (mount, keys, folder, plains) = kms_fixture().await;
    let store = BaoSecretStore::new(&shared_config()).expect("kv");
    let spec = TargetSpec::KmsRewrap {
        transit_mount: mount.clone(),
        key: "master".into(),
        data_keys_path: folder.clone(),
    };
    let new_target = || {
        KmsRewrapTarget::from_spec(&shared_config(), &spec)
            .expect("client")
            .expect("a kms spec")
    };
    let dk = |i: usize| format!("{folder}/dk{i}");
    let target = new_target();
    assert_eq!(target.data_keys().await.expect("list").len(), 3);
    // The approval gate is the plan's (tested elsewhere); this secret skips it.
    let secret = ManagedSecret {
        name: "kms".into(),
        class: SecretClass::KmsMasterKey,
        path: format!("{folder}-state"),
        cadence: Cadence::MaxAge(std::time::Duration::from_hours(1)),
        overlap: std::time::Duration::from_mins(1),
        owner: "sec".into(),
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
        .expect("rotation 1");
    assert_eq!(r.state.current, Some(1));
    let v2 = ciphertexts(&store, &folder).await;
    assert!(v2.iter().all(|c| c.starts_with("vault:v2:")), "{v2:?}");

    // Rotation 2: create the pending version (transit v3) ...
    let t1 = t0 + chrono::Duration::hours(1);
    let created = step(ports, &secret, None, t1).await.expect("create");
    assert_eq!(created.step.label(), "create_pending");
    let pending = store
        .read(&secret.path, Some(2))
        .await
        .expect("read")
        .expect("pending");
    assert_eq!(pending.data.get("version"), Some("3"));

    // ... then install on a controller whose KV store "dies" at the chosen call.
    let faulty = Arc::new(
        FaultyStore::new(BaoSecretStore::new(&shared_config()).expect("kv"))
            .crash_at(crash.op, crash.nth),
    );
    let crashing = new_target().with_store(faulty.clone());
    let crashed = step(
        Ports {
            store: &store,
            target: &crashing,
        },
        &secret,
        None,
        t1,
    )
    .await
    .expect("the state machine records the failure");
    assert_eq!(crashed.step.label(), "set_at_target");
    assert!(faulty.crashed(), "the fault fired inside install");
    assert!(
        matches!(&crashed.outcome, Outcome::Failed { message } if message.contains("injected crash")),
        "a crash is a retryable failure, not an abort: {:?}",
        crashed.outcome
    );
    assert!(
        matches!(crashed.state.phase, Phase::Pending { version: 2, .. }),
        "{:?}",
        crashed.state
    );
    assert_eq!(
        faulty.written(),
        (0..crash.written).map(dk).collect::<Vec<_>>(),
        "install stopped after {} of 3 data keys",
        crash.written
    );
    let mid = ciphertexts(&store, &folder).await;
    for (i, ct) in mid.iter().enumerate() {
        let want = if i < crash.written {
            "vault:v3:"
        } else {
            "vault:v2:"
        };
        assert!(ct.starts_with(want), "dk{i}: {ct}");
    }
    let cursor = kms_cursor(&keys, &store, &folder)
        .await
        .expect("a re-wrap in flight");
    assert_eq!(cursor.target_version, 3);
    assert_eq!(cursor.done_through, crash.cursor.checked_sub(1).map(dk));
    // Not all re-wrapped yet: the new version is refused by the test step.
    let early = target.verify(&pending.data).await.expect("verify");
    let first_left = dk(crash.written);
    assert!(
        matches!(&early, Verification::Refused { reason } if reason.contains(&first_left)),
        "{early:?}"
    );

    // A fresh target (a restarted controller) resumes from the cursor; its store only
    // logs, so the keys it re-wraps are exactly the ones after the cursor.
    let logged = Arc::new(FaultyStore::new(
        BaoSecretStore::new(&shared_config()).expect("kv"),
    ));
    let target2 = new_target().with_store(logged.clone());
    let ports2 = Ports {
        store: &store,
        target: &target2,
    };
    let r = drive(ports2, &secret, t1, StopAt::Quiet)
        .await
        .expect("rotation 2");
    let labels: Vec<&str> = r.steps.iter().map(sre_rotation::Step::label).collect();
    assert_eq!(labels, ["set_at_target", "test_pending", "promote", "wait"]);
    assert_eq!(
        logged.written(),
        (crash.cursor..3).map(dk).collect::<Vec<_>>(),
        "the resume starts after the cursor"
    );
    let after = ciphertexts(&store, &folder).await;
    for i in 0..3 {
        assert!(after[i].starts_with("vault:v3:"), "dk{i}: {}", after[i]);
        assert_eq!(
            keys.decrypt("master", &after[i]).await.expect("decrypt"),
            plains[i],
            "dk{i} unwraps to the same data key"
        );
        if i < crash.cursor {
            assert_eq!(
                after[i], mid[i],
                "dk{i} was done before the crash: untouched"
            );
        }
    }
    assert!(
        kms_cursor(&keys, &store, &folder).await.is_none(),
        "the cursor is cleared once every key is done"
    );

    // Overlap: version 2 still decrypts (a consumer may hold a v2 ciphertext) ...
    let r = drive(
        ports2,
        &secret,
        t1 + chrono::Duration::seconds(30),
        StopAt::Quiet,
    )
    .await
    .expect("inside the overlap");
    let labels: Vec<&str> = r.steps.iter().map(sre_rotation::Step::label).collect();
    assert_eq!(labels, ["wait"]);
    let info = keys.read("master").await.expect("read").expect("exists");
    assert_eq!(info.min_decryption_version, 1);
    assert_eq!(
        keys.decrypt("master", &v2[2])
            .await
            .expect("v2 during the overlap"),
        plains[2]
    );
    // ... and after it the retirement cuts over.
    let r = drive(
        ports2,
        &secret,
        t1 + chrono::Duration::minutes(2),
        StopAt::Quiet,
    )
    .await
    .expect("retire");
    let labels: Vec<&str> = r.steps.iter().map(sre_rotation::Step::label).collect();
    assert_eq!(labels, ["retire_previous", "wait"]);
    let info = keys.read("master").await.expect("read").expect("exists");
    assert_eq!(
        info.min_decryption_version, 3,
        "version 2 is refused from now on"
    );
    for (ct, plain) in after.iter().zip(&plains) {
        assert_eq!(&keys.decrypt("master", ct).await.expect("decrypt"), plain);
    }
    assert!(
        keys.decrypt("master", &v2[0]).await.is_err(),
        "a v2 ciphertext is refused"
    );
    assert!(kms_cursor(&keys, &store, &folder).await.is_none());
    assert_eq!(
        target2.verify(&pending.data).await.expect("verify"),
        Verification::Accepted
    );
}

/// The persisted re-wrap cursor of `folder` (`None`: no re-wrap in flight).
async fn kms_cursor(
    keys: &sre_adapter_openbao::BaoKeyring,
    store: &BaoSecretStore,
    folder: &str,
) -> Option<sre_rotation::rewrap::RewrapProgress> {
    sre_adapter_openbao::rewrap_progress(sre_adapter_openbao::Envelope {
        keys,
        master_key: "master",
        store,
        progress_path: folder,
    })
    .await
    .expect("progress")
}

/// `GeneratedTokenTarget` through the real state machine on the real OpenBao KV: each
/// rotation stores a fresh token as a new KV version, the previous one stays readable
/// for the overlap and is destroyed after it.
#[tokio::test]
async fn generated_api_tokens_rotate_as_kv_versions_with_overlap() {
    use chrono::{DateTime, Utc};
    use sre_adapter_openbao::{BaoSecretStore, GeneratedTokenTarget};
    use sre_rotation::config::TokenEncoding;
    use sre_rotation::drive::{StopAt, drive};
    use sre_rotation::model::{ApprovalPolicy, Cadence, ManagedSecret, SecretClass};
    use sre_rotation::run::Ports;

    let store = BaoSecretStore::new(&shared_config()).expect("kv");
    let target = GeneratedTokenTarget::new(32, TokenEncoding::Base64Url, None).expect("target");
    let secret = ManagedSecret {
        name: "api".into(),
        class: SecretClass::ApiToken,
        path: unique("api-token"),
        cadence: Cadence::MaxAge(std::time::Duration::from_hours(1)),
        overlap: std::time::Duration::from_mins(1),
        owner: "team".into(),
        consumers: vec![],
        approval: ApprovalPolicy::NotRequired,
    };
    let ports = Ports {
        store: &store,
        target: &target,
    };
    let t0 = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("time");
    drive(ports, &secret, t0, StopAt::Quiet)
        .await
        .expect("rotation 1");
    let r = drive(
        ports,
        &secret,
        t0 + chrono::Duration::hours(1),
        StopAt::Quiet,
    )
    .await
    .expect("rotation 2");
    assert_eq!((r.state.current, r.state.rotations), (Some(2), 2));
    let (t1, t2) = (
        token(&store, &secret.path, 1).await,
        token(&store, &secret.path, 2).await,
    );
    assert!(
        t1.is_some() && t2.is_some() && t1 != t2,
        "two distinct tokens"
    );
    assert_eq!(
        t2.as_deref().map(str::len),
        Some(43),
        "32 bytes in base64url"
    );
    let r = drive(
        ports,
        &secret,
        t0 + chrono::Duration::minutes(62),
        StopAt::Quiet,
    )
    .await
    .expect("retire");
    assert_eq!(r.state.previous, None);
    assert_eq!(
        token(&store, &secret.path, 1).await,
        None,
        "the retired token is destroyed"
    );
    assert_eq!(token(&store, &secret.path, 2).await, t2);
}

async fn ciphertexts(store: &sre_adapter_openbao::BaoSecretStore, folder: &str) -> Vec<String> {
    use sre_core::ports::SecretStore;
    let mut out = Vec::new();
    for i in 0..3 {
        let v = store
            .read(&format!("{folder}/dk{i}"), None)
            .await
            .expect("read")
            .expect("exists");
        out.push(v.data.get("ciphertext").expect("ciphertext").to_owned());
    }
    out
}

async fn token(store: &sre_adapter_openbao::BaoSecretStore, path: &str, v: u64) -> Option<String> {
    use sre_core::ports::SecretStore;
    store
        .read(path, Some(v))
        .await
        .expect("read")
        .and_then(|s| s.data.get("token").map(str::to_owned))
}

/// A transit master key at a mount of its own and three data keys wrapped by its
/// version 1 in a KV folder of their own: (mount, keyring, folder, plaintexts).
async fn kms_fixture() -> (String, sre_adapter_openbao::BaoKeyring, String, Vec<String>) {
    use sre_core::ports::{SecretData, SecretStore};
    let mount = unique("kmst");
    let keys =
        sre_adapter_openbao::BaoKeyring::new(&shared_config(), mount.clone()).expect("client");
    keys.enable().await.expect("enable transit");
    keys.create("master", "aes256-gcm96").await.expect("create");
    let store = sre_adapter_openbao::BaoSecretStore::new(&shared_config()).expect("kv");
    let folder = unique("kmst-data");
    let mut plains = Vec::new();
    for i in 0..3 {
        let dk = keys.data_key("master").await.expect("data key");
        store
            .write(
                &format!("{folder}/dk{i}"),
                &SecretData::from_pairs([("ciphertext", dk.ciphertext)]),
                None,
            )
            .await
            .expect("store data key");
        plains.push(dk.plaintext);
    }
    (mount, keys, folder, plains)
}
