//! The `sre-core` secret-store contract against a real OpenBao dev server (started by
//! `cargo xtask services up`), plus the failures the suite cannot script: a wrong token,
//! an unreachable server and a bad address.

use sre_adapter_openbao::{BaoConfig, BaoSecretStore, Error};
use sre_core::PortError;
use sre_core::ports::{SecretData, SecretStore};
use sre_core::testing::{contract, test_env};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn config() -> BaoConfig {
    BaoConfig::new(
        test_env("SRE_TEST_BAO_ADDR"),
        test_env("SRE_TEST_BAO_TOKEN"),
    )
}

/// A path scope of its own per test and run: the dev server is shared.
fn scope(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("sre-test/{}-{nanos}/{tag}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_store_contract() {
    let store = BaoSecretStore::new(&config()).expect("client");
    contract::secret_store(&store, &scope("contract")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_metadata_is_replaced_and_keeps_the_versions() {
    let store = BaoSecretStore::new(&config()).expect("client");
    let p = format!("{}/meta", scope("meta"));
    store
        .write(&p, &SecretData::from_pairs([("k", "v")]), None)
        .await
        .expect("write");
    let one = std::collections::BTreeMap::from([
        ("a".to_owned(), "1".to_owned()),
        ("b".to_owned(), "2".to_owned()),
    ]);
    store.set_custom_metadata(&p, &one).await.expect("set");
    let two = std::collections::BTreeMap::from([("b".to_owned(), "3".to_owned())]);
    store.set_custom_metadata(&p, &two).await.expect("replace");
    let meta = store
        .metadata(&p)
        .await
        .expect("metadata")
        .expect("present");
    assert_eq!(
        meta.custom, two,
        "set_custom_metadata replaces, it does not merge"
    );
    assert_eq!((meta.current_version, meta.versions.len()), (1, 1));
    assert!(
        !meta.versions[0].deleted && !meta.versions[0].destroyed,
        "{meta:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_rejected_not_absent() {
    let mut cfg = config();
    cfg.token = "not-a-valid-token".into();
    let store = BaoSecretStore::new(&cfg).expect("client");
    let p = format!("{}/x", scope("denied"));
    let err = store
        .read(&p, None)
        .await
        .expect_err("a bad token must not read as a missing secret");
    assert!(
        matches!(
            err,
            PortError::Rejected {
                backend: "openbao",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        !format!("{err:?}").contains("not-a-valid-token"),
        "errors never carry the token: {err:?}"
    );
    let err = store
        .write(&p, &SecretData::from_pairs([("k", "v")]), Some(0))
        .await
        .expect_err("denied");
    assert!(matches!(err, PortError::Rejected { .. }), "{err:?}");
    let err = store.metadata(&p).await.expect_err("denied");
    assert!(matches!(err, PortError::Rejected { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port();
    let mut cfg = BaoConfig::new(format!("http://127.0.0.1:{port}"), "root");
    cfg.timeout = Duration::from_secs(2);
    let store = BaoSecretStore::new(&cfg).expect("client");
    let err = store
        .read("x", None)
        .await
        .expect_err("nothing listens there");
    assert!(
        matches!(
            err,
            PortError::Unavailable {
                backend: "openbao",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
}

#[test]
fn a_bad_address_is_a_config_error_not_a_panic() {
    for addr in ["not a url", "ftp://127.0.0.1:8200", ""] {
        let err = BaoSecretStore::new(&BaoConfig::new(addr, "t")).expect_err(addr);
        assert!(
            matches!(err, Error::InvalidAddress { .. }),
            "{addr}: {err:?}"
        );
        assert_eq!(err.kind(), "invalid_address");
    }
}
