//! The `sre-core` contract suites against a real S3 server (moto, started by
//! `cargo xtask services up`), plus the failure modes the suites cannot script: a
//! malformed lease, an endpoint that refuses connections and a missing bucket.

use sre_adapter_s3::{S3Config, S3ObjectStore, S3Witness, Versioning};
use sre_core::PortError;
use sre_core::ports::{
    CasOutcome, LeaseFormat, LeaseRecord, ObjectStore, PutCondition, Witness, WitnessRead,
};
use sre_core::testing::{contract, test_env};
use sre_core::{Generation, RegionId};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn config() -> S3Config {
    let mut c = S3Config::new(
        test_env("SRE_TEST_S3_REGION"),
        "unset",
        test_env("SRE_TEST_S3_ACCESS_KEY"),
        test_env("SRE_TEST_S3_SECRET_KEY"),
    );
    c.endpoint = Some(test_env("SRE_TEST_S3_ENDPOINT"));
    c.force_path_style = true;
    c
}

/// A valid, unique bucket name per test and run, so runs against a shared server never
/// see each other's objects.
fn bucket_name(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "sre-{tag}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn fresh_store(tag: &str, versioning: Versioning) -> (S3Config, S3ObjectStore) {
    let cfg = config().with_bucket(bucket_name(tag));
    let store = S3ObjectStore::new(&cfg);
    store
        .ensure_bucket(versioning)
        .await
        .expect("create the test bucket");
    (cfg, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_contract() {
    let (_, store) = fresh_store("objects", Versioning::Unchanged).await;
    contract::object_store(&store, "run").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_versions_contract() {
    let (_, store) = fresh_store("versions", Versioning::Enabled).await;
    store
        .ensure_bucket(Versioning::Enabled)
        .await
        .expect("ensure_bucket is idempotent");
    contract::object_store_versions(&store, "run").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_race_between_two_clients() {
    let (cfg, a) = fresh_store("race", Versioning::Unchanged).await;
    let b = S3ObjectStore::new(&cfg);
    contract::object_store_race(&a, &b, "run").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn witness_contract_with_two_racing_clients() {
    let (cfg, a) = fresh_store("witness", Versioning::Unchanged).await;
    let w1 = S3Witness::new(a, "failover/lease.json");
    let w2 = S3Witness::new(S3ObjectStore::new(&cfg), "failover/lease.json");
    contract::witness(&w1, &w2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_garbage_record_reads_as_malformed_and_is_replaced_only_by_cas() {
    let (_, store) = fresh_store("malformed", Versioning::Unchanged).await;
    let planted = store
        .put(
            "lease",
            br#"{"holder":"region-a"}"#.to_vec(),
            PutCondition::Always,
        )
        .await
        .expect("raw put");
    let w = S3Witness::new(store.clone(), "lease");
    let WitnessRead::Malformed { revision, error } = w.read().await.expect("read") else {
        panic!("garbage must read as Malformed");
    };
    assert_eq!(
        revision.0, planted.etag,
        "the revision of the garbage is its etag"
    );
    assert!(!error.0.is_empty());

    let at = chrono::DateTime::<chrono::Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default();
    let rec = LeaseRecord {
        format: LeaseFormat::V1,
        holder: RegionId::new("region-b"),
        generation: Generation(1),
        acquired_at: at,
        renewed_at: at,
        ttl_ms: 30_000,
        released: false,
    };
    assert_eq!(
        w.compare_and_swap(None, &rec).await.expect("cas"),
        CasOutcome::Conflict,
        "garbage is still a record: creating over it must lose"
    );
    assert!(
        matches!(
            w.compare_and_swap(Some(&revision), &rec)
                .await
                .expect("cas"),
            CasOutcome::Swapped(_)
        ),
        "an approved overwrite at the garbage's revision wins"
    );
    assert!(
        matches!(w.read().await.expect("read"), WitnessRead::Present { record, .. } if record == rec)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_unavailable_not_absent() {
    // Bind to learn a free port, then close it: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port();
    let mut cfg = config().with_bucket("sre-nowhere");
    cfg.endpoint = Some(format!("http://127.0.0.1:{port}"));
    cfg.timeout = Duration::from_secs(2);
    cfg.max_attempts = 1;
    let store = S3ObjectStore::new(&cfg);
    let err = store.get("k").await.expect_err("nothing listens there");
    assert!(
        matches!(err, PortError::Unavailable { backend: "s3", .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let w = S3Witness::new(store, "lease");
    let err = w
        .read()
        .await
        .expect_err("an unreachable witness is not an absent lease");
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_an_error_not_an_empty_store() {
    let store = S3ObjectStore::new(&config().with_bucket(bucket_name("absent")));
    let err = store.get("k").await.expect_err("no bucket");
    assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");
    let err = store.list("").await.expect_err("no bucket");
    assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");
}
