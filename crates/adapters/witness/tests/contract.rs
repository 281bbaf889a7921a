//! The `Witness` contract suite and the failure modes of both witnesses: the file
//! witness on a temp directory, the HTTP witness against the reference server started
//! in this process on 127.0.0.1.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use sre_adapter_witness::witness_server::{self, MAX_BODY_BYTES, MemLeaseStore};
use sre_adapter_witness::{BearerToken, FileWitness, HttpWitness, LeaseName};
use sre_core::ports::{CasOutcome, LeaseFormat, LeaseRecord, Revision, Witness, WitnessRead};
use sre_core::{Generation, PortError, RegionId};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "test-token_0123456789";
const TIMEOUT: Duration = Duration::from_secs(10);

fn lease(holder: &str, generation: u64) -> LeaseRecord {
    let t0 = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default();
    LeaseRecord {
        format: LeaseFormat::V1,
        holder: RegionId::new(holder),
        generation: Generation(generation),
        acquired_at: t0,
        renewed_at: t0,
        ttl_ms: 30_000,
        released: false,
    }
}

fn token(t: &str) -> BearerToken {
    BearerToken::new(t).expect("valid test token")
}

fn name(n: &str) -> LeaseName {
    LeaseName::new(n).expect("valid lease name")
}

// ---------------------------------------------------------------------------------------
// FileWitness

#[tokio::test]
async fn file_witness_passes_the_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("lease.json");
    let a = FileWitness::new(&path).expect("path");
    let b = FileWitness::new(&path).expect("path");
    sre_core::testing::contract::witness(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_witness_eight_writers_one_winner_per_round() {
    const WRITERS: u64 = 8;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("lease.json");
    let reader = FileWitness::new(&path).expect("path");
    let mut expected: Option<Revision> = None;
    for round in 0..20u64 {
        let barrier = Arc::new(tokio::sync::Barrier::new(
            usize::try_from(WRITERS).expect("small"),
        ));
        let mut tasks = Vec::new();
        for i in 0..WRITERS {
            // A separate handle per writer: each opens and locks the lock file itself.
            let w = FileWitness::new(&path).expect("path");
            let rec = lease(&format!("region-{i}"), round + 1);
            let exp = expected.clone();
            let barrier = Arc::clone(&barrier);
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let out = w
                    .compare_and_swap(exp.as_ref(), &rec)
                    .await
                    .expect("cas on a local file");
                (rec, out)
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (rec, out) = t.await.expect("writer task");
            if let CasOutcome::Swapped(rev) = out {
                winners.push((rec, rev));
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one writer wins");
        let (rec, rev) = winners.remove(0);
        assert_eq!(
            reader.read().await.expect("read"),
            WitnessRead::Present {
                record: rec,
                revision: rev.clone()
            },
            "round {round}: the stored record is the winner's"
        );
        expected = Some(rev);
    }
}

#[tokio::test]
async fn file_witness_reads_garbage_as_malformed_and_never_as_absent() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("lease.json");
    std::fs::write(&path, b"{\"holder\": \"region-a\"").expect("plant garbage");
    let w = FileWitness::new(&path).expect("path");
    let WitnessRead::Malformed { revision, .. } = w.read().await.expect("read") else {
        panic!("garbage must read as Malformed");
    };
    assert_eq!(
        w.compare_and_swap(None, &lease("region-b", 1))
            .await
            .expect("cas"),
        CasOutcome::Conflict,
        "garbage is a record: creating over it must lose"
    );
    // An operator-approved overwrite is still a compare-and-swap on the garbage's revision.
    let fresh = lease("region-b", 1);
    let CasOutcome::Swapped(_) = w
        .compare_and_swap(Some(&revision), &fresh)
        .await
        .expect("cas")
    else {
        panic!("overwriting at the malformed record's revision must succeed");
    };
    assert!(
        matches!(w.read().await.expect("read"), WitnessRead::Present { record, .. } if record == fresh)
    );
}

#[tokio::test]
async fn file_witness_ignores_a_half_written_temp_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("lease.json");
    // What a writer that crashed between write and rename leaves behind.
    std::fs::write(dir.path().join("lease.json.tmp"), b"{\"format\":\"sre.le").expect("tmp");
    let w = FileWitness::new(&path).expect("path");
    assert_eq!(w.read().await.expect("read"), WitnessRead::Absent);
    let rec = lease("region-a", 1);
    assert!(matches!(
        w.compare_and_swap(None, &rec).await.expect("cas"),
        CasOutcome::Swapped(_)
    ));
    assert!(
        matches!(w.read().await.expect("read"), WitnessRead::Present { record, .. } if record == rec)
    );
}

#[tokio::test]
async fn file_witness_in_a_missing_directory_is_unavailable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let w = FileWitness::new(dir.path().join("no-such-dir").join("lease.json")).expect("path");
    assert_eq!(w.read().await.expect("read"), WitnessRead::Absent);
    let err = w
        .compare_and_swap(None, &lease("region-a", 1))
        .await
        .expect_err("cannot lock in a missing directory");
    assert!(matches!(err, PortError::Unavailable { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------
// HttpWitness against the reference server

struct Server {
    addr: SocketAddr,
    store: MemLeaseStore,
}

impl Server {
    async fn start() -> Self {
        // Bound before the task starts, so no request can beat the server to the port.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let store = MemLeaseStore::new();
        let serve = witness_server::serve(listener, store.clone(), token(TOKEN));
        tokio::spawn(async move {
            if let Err(e) = serve.await {
                panic!("witness server failed: {e}");
            }
        });
        Self { addr, store }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn client(&self, lease: &str, tok: &str) -> HttpWitness {
        HttpWitness::new(&self.endpoint(), name(lease), &token(tok), TIMEOUT).expect("valid client")
    }

    fn url(&self, lease: &str) -> String {
        format!("{}/v1/leases/{lease}", self.endpoint())
    }
}

#[tokio::test]
async fn http_witness_passes_the_contract() {
    let server = Server::start().await;
    let a = server.client("failover", TOKEN);
    let b = server.client("failover", TOKEN);
    sre_core::testing::contract::witness(&a, &b).await;
}

#[tokio::test]
async fn http_leases_are_independent_by_name() {
    let server = Server::start().await;
    let one = server.client("one", TOKEN);
    let two = server.client("two", TOKEN);
    assert!(matches!(
        one.compare_and_swap(None, &lease("region-a", 1))
            .await
            .expect("cas"),
        CasOutcome::Swapped(_)
    ));
    assert_eq!(two.read().await.expect("read"), WitnessRead::Absent);
}

#[tokio::test]
async fn http_wrong_token_is_rejected() {
    let server = Server::start().await;
    let w = server.client("failover", "not-the-token");
    let read = w.read().await;
    assert!(matches!(read, Err(PortError::Rejected { .. })), "{read:?}");
    let cas = w.compare_and_swap(None, &lease("region-a", 1)).await;
    assert!(matches!(cas, Err(PortError::Rejected { .. })), "{cas:?}");
    assert_eq!(
        server.client("failover", TOKEN).read().await.expect("read"),
        WitnessRead::Absent,
        "a rejected write changes nothing"
    );
}

#[tokio::test]
async fn http_server_down_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener); // nothing listens there any more: connection refused
    let w = HttpWitness::new(
        &format!("http://{addr}"),
        name("failover"),
        &token(TOKEN),
        TIMEOUT,
    )
    .expect("valid client");
    let read = w.read().await;
    assert!(
        matches!(read, Err(PortError::Unavailable { .. })),
        "{read:?}"
    );
    let cas = w.compare_and_swap(None, &lease("region-a", 1)).await;
    assert!(matches!(cas, Err(PortError::Unavailable { .. })), "{cas:?}");
}

#[tokio::test]
async fn http_garbage_at_the_server_reads_as_malformed() {
    let server = Server::start().await;
    server
        .store
        .put_raw(&name("failover"), b"not a lease".to_vec());
    let w = server.client("failover", TOKEN);
    let WitnessRead::Malformed { revision, .. } = w.read().await.expect("read") else {
        panic!("garbage must read as Malformed");
    };
    // A huge body is garbage too, and the client does not buffer all of it.
    server.store.put_raw(&name("huge"), vec![b'x'; 1024 * 1024]);
    let huge = server.client("huge", TOKEN).read().await.expect("read");
    assert!(
        matches!(huge, WitnessRead::Malformed { .. }),
        "an oversized record must read as Malformed: {huge:?}"
    );
    let fresh = lease("region-a", 1);
    assert!(matches!(
        w.compare_and_swap(Some(&revision), &fresh)
            .await
            .expect("cas"),
        CasOutcome::Swapped(_)
    ));
}

#[tokio::test]
async fn http_generation_rules_are_enforced() {
    let server = Server::start().await;
    let w = server.client("failover", TOKEN);
    let CasOutcome::Swapped(rev) = w
        .compare_and_swap(None, &lease("region-a", 5))
        .await
        .expect("create")
    else {
        panic!("create must win");
    };
    for bad in [lease("region-a", 4), lease("region-b", 5)] {
        let got = w.compare_and_swap(Some(&rev), &bad).await;
        assert!(
            matches!(got, Err(PortError::Invalid(_))),
            "{bad:?}: {got:?}"
        );
    }
    assert!(matches!(
        w.compare_and_swap(Some(&rev), &lease("region-b", 6))
            .await
            .expect("takeover"),
        CasOutcome::Swapped(_)
    ));
}

/// Raw protocol checks that the client never produces by itself.
#[tokio::test]
async fn http_protocol_status_codes() {
    let server = Server::start().await;
    let http = reqwest::Client::new();
    let valid = lease("region-a", 1).to_bytes();
    let put = |lease: &str| {
        http.put(server.url(lease))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
    };
    let check = |what: &str, got: StatusCode, want: StatusCode| {
        assert_eq!(got, want, "{what}");
    };

    let r = put("failover")
        .header("if-none-match", "*")
        .body("this is not a lease")
        .send()
        .await
        .expect("send");
    check("garbage body", r.status(), StatusCode::BAD_REQUEST);

    let r = put("failover")
        .body(valid.clone())
        .send()
        .await
        .expect("send");
    check(
        "no precondition",
        r.status(),
        StatusCode::PRECONDITION_REQUIRED,
    );

    let r = put("failover")
        .header("if-match", "*")
        .body(valid.clone())
        .send()
        .await
        .expect("send");
    check("If-Match: *", r.status(), StatusCode::PRECONDITION_REQUIRED);

    let r = put("failover")
        .header("if-none-match", "*")
        .body(vec![b' '; MAX_BODY_BYTES + 1])
        .send()
        .await
        .expect("send");
    check("oversize body", r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let r = http
        .put(server.url("failover"))
        .header("if-none-match", "*")
        .body(valid.clone())
        .send()
        .await
        .expect("send");
    check("no token", r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));

    let r = put("bad..name%2F")
        .header("if-none-match", "*")
        .body(valid.clone())
        .send()
        .await
        .expect("send");
    check("bad lease name", r.status(), StatusCode::BAD_REQUEST);

    let r = http
        .delete(server.url("failover"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("send");
    check("DELETE", r.status(), StatusCode::METHOD_NOT_ALLOWED);

    // None of the rejected requests stored anything; a valid create still works.
    let r = put("failover")
        .header("if-none-match", "*")
        .body(valid)
        .send()
        .await
        .expect("send");
    check("valid create", r.status(), StatusCode::CREATED);
    let etag = r.headers().get("etag").expect("etag on create").clone();
    let r = http
        .get(server.url("failover"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("send");
    check("read back", r.status(), StatusCode::OK);
    assert_eq!(r.headers().get("etag"), Some(&etag));
    assert_eq!(
        r.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
}
