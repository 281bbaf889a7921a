//! The `rotation-controller` binary against the real OpenBao and PostgreSQL from `cargo
//! xtask services up`: with a 2 s `max_age` it rotates dynamic database credentials on
//! its own, `/metrics` shows the rotations per secret and the renewed lease of the
//! current credential, that credential logs in, a secret without consumers is warned
//! about in the JSON logs, and SIGTERM stops it cleanly. Every wait is bounded.

use sre_adapter_openbao::testing::{dynamic_db_engine, shared_config, unique};
use sre_adapter_openbao::{BaoDatabase, BaoSecretStore};
use sre_adapter_postgres::{PgEndpoint, login};
use sre_core::ports::SecretStore;
use sre_core::testing::test_env;
use sre_rotation::Verification;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn pg_port() -> u16 {
    test_env("SRE_TEST_PG_PORT")
        .parse()
        .expect("SRE_TEST_PG_PORT")
}

/// The shared fixture: a database engine of its own with role `app`, configured as an
/// operator would.
async fn engine() -> String {
    dynamic_db_engine("ctrl-db").await.mount().to_owned()
}

/// Kills the controller if the test fails before stopping it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the controller binary on `config` (no token or `RUST_LOG` from outside) and
/// drains its stderr on a thread while it runs: an unread pipe fills up and blocks the
/// controller on its next log line. Join the thread after the process ended for the logs.
fn start(config: &std::path::Path) -> (Running, Option<std::thread::JoinHandle<String>>) {
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_rotation-controller"))
            .arg("--config")
            .arg(config)
            .env_remove("SRE_ROTATION_BAO_TOKEN")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rotation-controller"),
    );
    let drained = child.0.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            use std::io::Read as _;
            let mut logs = String::new();
            let _ = err.read_to_string(&mut logs);
            logs
        })
    });
    (child, drained)
}

/// Sends SIGTERM, waits (at most 20 s) for the controller to exit and returns its exit
/// status (`None`: still running at the deadline) with everything it logged.
async fn terminate(
    child: &mut Running,
    drained: Option<std::thread::JoinHandle<String>>,
) -> (Option<std::process::ExitStatus>, String) {
    let pid = child.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            // Kill it so that the stderr pipe closes and the drain thread ends.
            let _ = child.0.kill();
            let _ = child.0.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    (
        status,
        drained.and_then(|t| t.join().ok()).unwrap_or_default(),
    )
}

/// The value of the sample whose line starts with `prefix`, if present.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

// One scenario, start to shutdown, reads best as one function.
#[allow(clippy::too_many_lines)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_rotates_on_schedule_and_exports_metrics() {
    let mount = engine().await;
    let path = format!("{}/db", unique("ctrl"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, test_env("SRE_TEST_BAO_TOKEN")).expect("token file");
    // An SVID as spiffe-helper would leave it: a real certificate, valid for one day,
    // so inside the 2-day alert lead time.
    let svid = dir.path().join("svid.pem");
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ed25519", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=console", "-keyout"])
        .arg(dir.path().join("svid-key.pem"))
        .arg("-out")
        .arg(&svid)
        .stderr(Stdio::null())
        .status()
        .expect("openssl (installed by cargo xtask test)");
    assert!(made.success(), "openssl made the SVID");
    let config = dir.path().join("rotation.yaml");
    std::fs::write(
        &config,
        format!(
            "
openbao: {{ address: '{addr}', token_file: '{token}' }}
listen: 127.0.0.1:{port}
tick: 200ms
inventory:
  secrets:
    - name: billing-db
      class: dynamic_db
      path: {path}
      max_age: 2s
      overlap: 1s
      owner: team-billing
      consumers: [deployment/billing/api]
    - {{ name: console-svid, class: svid, path: spire/console, overlap: 0s, owner: platform }}
    # No consumers and no target: only reported, and warned about at start.
    - {{ name: orphan-token, class: api_token, path: {path}-orphan, max_age: 30d, overlap: 1h,
        owner: team-api }}
targets:
  billing-db: {{ kind: postgres_dynamic, database_mount: {mount}, role: app, host: '{host}', port: {pg},
                lease_increment: 90m }}
certificates:
  console-svid: {{ pem_file: '{svid}', alert_before: 2d }}
",
            svid = svid.display(),
            addr = test_env("SRE_TEST_BAO_ADDR"),
            token = token_file.display(),
            host = test_env("SRE_TEST_PG_HOST"),
            pg = pg_port(),
        ),
    )
    .expect("config");
    let (mut child, drained) = start(&config);

    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    let rotated = "sre_rotation_attempts_total{secret=\"billing-db\",result=\"rotated\"} ";
    let deadline = Instant::now() + Duration::from_mins(1);
    let mut text = String::new();
    // Bounded: two rotations take about 2 x max_age; the deadline only stops a hang.
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{url}/metrics")).send().await {
            text = r.text().await.unwrap_or_default();
            if sample(&text, rotated).is_some_and(|n| n >= 2.0) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        sample(&text, rotated).is_some_and(|n| n >= 2.0),
        "two rotations by the controller:\n{text}"
    );
    assert_eq!(
        sample(
            &text,
            "sre_rotation_last_result{secret=\"billing-db\",result=\"rotated\"} "
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "sre_rotation_state_readable{secret=\"billing-db\"} "),
        Some(1.0)
    );
    let age = sample(
        &text,
        "sre_rotation_secret_age_seconds{secret=\"billing-db\"} ",
    );
    assert!(
        age.is_some_and(|a| (0.0..=3.0).contains(&a)),
        "age {age:?}:\n{text}"
    );
    let next = sample(
        &text,
        "sre_rotation_next_rotation_timestamp_seconds{secret=\"billing-db\"} ",
    )
    .expect("next rotation");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    assert!(
        (now - 5.0..=now + 5.0).contains(&next),
        "next {next} vs now {now}"
    );
    // Every new current credential has its lease renewed at once (a scrape may come
    // just before the newest one's), by 90 m: past the role's 1 h TTL and within its
    // 2 h max_ttl, so not capped.
    assert!(
        sample(
            &text,
            "sre_rotation_lease_renewals_total{secret=\"billing-db\",result=\"ok\"} "
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    let left = sample(
        &text,
        "sre_rotation_lease_remaining_seconds{secret=\"billing-db\",version=\"current\"} ",
    );
    assert!(
        left.is_some_and(|s| s > 3600.0 && s <= 5400.0),
        "lease left {left:?}:\n{text}"
    );
    // The SVID was read from its file: expiry about a day from now, inside the lead time.
    let expiry = sample(
        &text,
        "sre_rotation_certificate_expiry_timestamp_seconds{secret=\"console-svid\"} ",
    )
    .expect("svid expiry");
    assert!(
        (now + 86_300.0..=now + 86_500.0).contains(&expiry),
        "svid expiry {expiry} vs now {now}"
    );
    assert_eq!(
        sample(
            &text,
            "sre_rotation_certificate_expiry_status{secret=\"console-svid\",status=\"warn\"} "
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains(&test_env("SRE_TEST_BAO_TOKEN")),
        "no token in metrics"
    );
    let health = http
        .get(format!("{url}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert!(health.status().is_success());
    // No `kubernetes` section: the metrics say nobody refreshes the consumers.
    assert_eq!(
        sample(
            &text,
            "sre_rotation_consumers_status{secret=\"billing-db\",status=\"no_kube_client\"} "
        ),
        Some(1.0),
        "{text}"
    );
    let jwks = http
        .get(format!("{url}/jwks/billing-db"))
        .send()
        .await
        .expect("jwks");
    assert_eq!(jwks.status().as_u16(), 404, "a database secret has no JWKS");

    // What the controller left in OpenBao: a current version that logs in.
    let store = BaoSecretStore::new(&shared_config()).expect("store");
    let (state, _, _) = sre_rotation::run::load(&store, &path).await.expect("state");
    assert!(state.rotations >= 2, "{state:?}");
    let current = state.current.expect("current");
    let cred = store
        .read(&path, Some(current))
        .await
        .expect("read")
        .expect("current data")
        .data;
    let endpoint = PgEndpoint::new(test_env("SRE_TEST_PG_HOST"), pg_port(), "postgres");
    assert_eq!(
        login(
            &endpoint,
            cred.get("username").unwrap_or_default(),
            cred.get("password").unwrap_or_default()
        )
        .await,
        Ok(Verification::Accepted)
    );

    // Graceful shutdown on SIGTERM: exit 0, bounded.
    let (status, logs) = terminate(&mut child, drained).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}:\n{logs}"
    );
    assert!(
        !logs.contains(&test_env("SRE_TEST_BAO_TOKEN")),
        "no token in logs"
    );
    let first = logs.lines().next().unwrap_or_default();
    assert!(first.starts_with('{'), "JSON logs: {first}");
    // The config warning for the secret without consumers, as a JSON WARN line that
    // names it; the SVID (observe-only) and billing-db (has consumers) get none.
    let no_consumers: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("has no consumers listed"))
        })
        .collect();
    assert_eq!(no_consumers.len(), 1, "one warning:\n{logs}");
    let warn = &no_consumers[0];
    assert_eq!(warn["level"], "WARN", "{warn}");
    assert_eq!(warn["fields"]["path"], "secrets[2].consumers", "{warn}");
    assert!(
        warn["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("secret \"orphan-token\" has no consumers listed")),
        "{warn}"
    );
}

/// Polls `/metrics` at `url` (bounded by `within`) until `done` holds; the last text.
async fn metrics_until(url: &str, within: Duration, done: impl Fn(&str) -> bool) -> String {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + within;
    let mut text = String::new();
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{url}/metrics")).send().await {
            text = r.text().await.unwrap_or_default();
            if done(&text) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    text
}

/// An `engine:` block and nothing else: no fixture has touched the mount, so the
/// controller itself mounts the engine, writes the connection and the role (TTL 1 h),
/// and only then rotates. The admin password file is missing at start: the set-up
/// fails, nothing is rotated, and once the file appears the retry (with back-off)
/// configures the engine and the secret rotates.
// One scenario, start to shutdown, reads best as one function.
#[allow(clippy::too_many_lines)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_configures_its_engine_block_then_rotates() {
    let mount = unique("ctrl-engine");
    let path = format!("{}/db", unique("ctrl-eng"));
    let port = sre_adapter_openbao::testing::free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, test_env("SRE_TEST_BAO_TOKEN")).expect("token file");
    let password_file = dir.path().join("pg-admin");
    let config = dir.path().join("rotation.yaml");
    std::fs::write(
        &config,
        format!(
            "
openbao: {{ address: '{addr}', token_file: '{token}' }}
listen: 127.0.0.1:{port}
tick: 200ms
inventory:
  secrets:
    - {{ name: billing-db, class: dynamic_db, path: {path}, max_age: 2s, overlap: 1s, owner: team-billing }}
targets:
  billing-db:
    kind: postgres_dynamic
    database_mount: {mount}
    role: app
    host: '{host}'
    port: {pg}
    engine:
      connection: billing-pg
      connection_url: 'postgresql://{{{{username}}}}:{{{{password}}}}@{host}:{pg}/postgres?sslmode=disable'
      username: {user}
      password_file: '{password_file}'
      default_ttl: 1h
      max_ttl: 2h
",
            addr = test_env("SRE_TEST_BAO_ADDR"),
            token = token_file.display(),
            host = test_env("SRE_TEST_PG_HOST"),
            pg = pg_port(),
            user = test_env("SRE_TEST_PG_USER"),
            password_file = password_file.display(),
        ),
    )
    .expect("config");
    let (mut child, drained) = start(&config);
    let url = format!("http://127.0.0.1:{port}");
    let failed = "sre_rotation_engine_setups_total{secret=\"billing-db\",result=\"failed\"} ";
    let text = metrics_until(&url, Duration::from_secs(30), |t| {
        sample(t, failed).is_some_and(|n| n >= 2.0)
    })
    .await;
    assert!(
        sample(&text, failed).is_some_and(|n| n >= 2.0),
        "set-up failed and was retried while the password file is missing:\n{text}"
    );
    assert_eq!(
        sample(
            &text,
            "sre_rotation_engine_configured{secret=\"billing-db\"} "
        ),
        Some(0.0),
        "{text}"
    );
    assert!(
        !text.contains("sre_rotation_attempts_total{secret=\"billing-db\""),
        "not driven before its engine is configured:\n{text}"
    );

    std::fs::write(
        &password_file,
        format!("{}\n", test_env("SRE_TEST_PG_PASSWORD")),
    )
    .expect("password file");
    let rotated = "sre_rotation_attempts_total{secret=\"billing-db\",result=\"rotated\"} ";
    let text = metrics_until(&url, Duration::from_mins(1), |t| {
        sample(t, rotated).is_some_and(|n| n >= 1.0)
    })
    .await;
    assert!(
        sample(&text, rotated).is_some_and(|n| n >= 1.0),
        "rotated once the engine was configured:\n{text}"
    );
    assert_eq!(
        sample(
            &text,
            "sre_rotation_engine_configured{secret=\"billing-db\"} "
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "sre_rotation_attempts_total{secret=\"billing-db\",result=\"failed\"} "
        ),
        None,
        "no step failed against a missing role:\n{text}"
    );

    // What the controller configured: the role mints 1 h credentials that log in.
    let endpoint = PgEndpoint::new(test_env("SRE_TEST_PG_HOST"), pg_port(), "postgres");
    let db = BaoDatabase::new(&shared_config(), mount).expect("client");
    let minted = db
        .issue("app")
        .await
        .expect("the controller created role app");
    assert_eq!(minted.lease.duration, Duration::from_hours(1));
    assert_eq!(
        login(&endpoint, &minted.username, &minted.password).await,
        Ok(Verification::Accepted)
    );
    db.revoke(&minted.lease.id).await.expect("revoke");
    // And the rotated current version logs in.
    let store = BaoSecretStore::new(&shared_config()).expect("store");
    let (state, _, _) = sre_rotation::run::load(&store, &path).await.expect("state");
    let cred = store
        .read(&path, state.current)
        .await
        .expect("read")
        .expect("current data")
        .data;
    assert_eq!(
        login(
            &endpoint,
            cred.get("username").unwrap_or_default(),
            cred.get("password").unwrap_or_default()
        )
        .await,
        Ok(Verification::Accepted)
    );

    let (_, logs) = terminate(&mut child, drained).await;
    assert!(
        logs.contains("database engine not configured") && logs.contains("pg-admin"),
        "the failure is logged, naming the file:\n{logs}"
    );
    assert!(logs.contains("database engine configured"), "{logs}");
    assert!(
        !logs.contains(&test_env("SRE_TEST_PG_PASSWORD")),
        "the admin password is never logged"
    );
}

/// Serves `router` on a free local port; the server task ends with the test runtime.
async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

fn kids(doc: &serde_json::Value) -> Vec<String> {
    doc["keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The JWKS endpoint over real HTTP against a real transit key: both versions while the
/// old one still verifies, only the new one once `min_decryption_version` is raised (after
/// the cache TTL), 404 for an unknown name, 503 with a JSON error when OpenBao is down.
// One scenario, rotation to retirement to outage, reads best as one function.
#[allow(clippy::too_many_lines)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwks_endpoint_serves_the_transit_key_versions_that_still_verify() {
    use rotation_controller::jwks::{JwksPublisher, TransitKeys};
    use sre_adapter_openbao::BaoKeyring;
    use sre_core::ManualClock;
    use std::sync::Arc;

    let mount = unique("jwks-transit");
    let ring = BaoKeyring::new(&shared_config(), mount.clone()).expect("client");
    ring.enable().await.expect("enable transit");
    let key = unique("jwt");
    ring.create(&key, "ed25519").await.expect("create key");
    ring.rotate(&key).await.expect("rotate");
    let clock = ManualClock::at_epoch();
    let ring: Arc<dyn TransitKeys> = Arc::new(ring);
    let publisher = JwksPublisher::new(Duration::from_secs(30), Arc::new(clock.clone()))
        .with_key("auth-jwt", Arc::clone(&ring), &key)
        .with_well_known(Some("auth-jwt".into()));
    let registry = Arc::new(sre_core::telemetry::metrics_registry());
    let url = serve(rotation_controller::server::router(
        registry.clone(),
        Arc::new(publisher),
    ))
    .await;
    let http = reqwest::Client::new();

    let r = http
        .get(format!("{url}/jwks/auth-jwt"))
        .send()
        .await
        .expect("GET jwks");
    assert_eq!(r.status().as_u16(), 200);
    let header = |r: &reqwest::Response, h: &str| {
        r.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header(&r, "cache-control"), "public, max-age=30");
    assert_eq!(header(&r, "content-type"), "application/jwk-set+json");
    let doc: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(
        kids(&doc),
        [format!("{key}-v2"), format!("{key}-v1")],
        "{doc}"
    );
    assert_eq!(doc["keys"][0]["kty"], "OKP");
    assert_eq!(doc["keys"][0]["crv"], "Ed25519");
    assert!(
        doc["keys"][0]["x"].as_str().is_some_and(|x| x.len() == 43),
        "32-byte key in unpadded base64url: {doc}"
    );
    let well_known: serde_json::Value = http
        .get(format!("{url}/.well-known/jwks.json"))
        .send()
        .await
        .expect("GET well-known")
        .json()
        .await
        .expect("JSON");
    assert_eq!(well_known, doc);

    // Retire version 1 the way the signing target does.
    BaoKeyring::new(&shared_config(), mount.clone())
        .expect("client")
        .set_min_decryption_version(&key, 2)
        .await
        .expect("min_decryption_version");
    let cached: serde_json::Value = http
        .get(format!("{url}/jwks/auth-jwt"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(kids(&cached).len(), 2, "still cached within the TTL");
    clock.advance(Duration::from_secs(30));
    let doc: serde_json::Value = http
        .get(format!("{url}/jwks/auth-jwt"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        kids(&doc),
        [format!("{key}-v2")],
        "the retired key is gone: {doc}"
    );

    let missing = http
        .get(format!("{url}/jwks/nope"))
        .send()
        .await
        .expect("GET");
    assert_eq!(missing.status().as_u16(), 404);
    let err: serde_json::Value = missing.json().await.expect("JSON error");
    assert!(
        err["error"].as_str().is_some_and(|e| e.contains("nope")),
        "{err}"
    );

    // OpenBao unreachable: 503 with a JSON error, nothing cached is passed off as fresh.
    let down = sre_adapter_openbao::BaoConfig::new("http://127.0.0.1:1", "t");
    let dead: Arc<dyn TransitKeys> = Arc::new(BaoKeyring::new(&down, "transit").expect("client"));
    let url = serve(rotation_controller::server::router(
        registry,
        Arc::new(
            JwksPublisher::new(Duration::from_secs(30), Arc::new(clock.clone()))
                .with_key("auth-jwt", dead, &key),
        ),
    ))
    .await;
    let r = http
        .get(format!("{url}/jwks/auth-jwt"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(header(&r, "cache-control"), "no-store");
    let err: serde_json::Value = r.json().await.expect("JSON error");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("openbao unavailable")),
        "{err}"
    );
    let r = http
        .get(format!("{url}/.well-known/jwks.json"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status().as_u16(), 404, "no well-known key configured");
}
