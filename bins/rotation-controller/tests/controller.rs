//! The `rotation-controller` binary against the real OpenBao and PostgreSQL from `cargo
//! xtask services up`: with a 2 s `max_age` it rotates dynamic database credentials on
//! its own, `/metrics` shows the rotations per secret, the current credential logs in,
//! and SIGTERM stops it cleanly. Every wait is bounded.

use sre_adapter_openbao::{
    BaoConfig, BaoDatabase, BaoSecretStore, DynamicRole, PostgresConnection,
};
use sre_adapter_postgres::{PgEndpoint, login};
use sre_core::ports::SecretStore;
use sre_core::testing::test_env;
use sre_rotation::Verification;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("sre-test-{tag}-{}-{nanos}", std::process::id())
}

fn pg_port() -> u16 {
    test_env("SRE_TEST_PG_PORT")
        .parse()
        .expect("SRE_TEST_PG_PORT")
}

fn bao() -> BaoConfig {
    BaoConfig::new(
        test_env("SRE_TEST_BAO_ADDR"),
        test_env("SRE_TEST_BAO_TOKEN"),
    )
}

/// A database engine of its own with role `app`, configured as an operator would.
async fn engine() -> String {
    let mount = unique("ctrl-db");
    let db = BaoDatabase::new(&bao(), mount.clone()).expect("client");
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

/// Kills the controller if the test fails before stopping it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
targets:
  billing-db: {{ kind: postgres_dynamic, database_mount: {mount}, role: app, host: '{host}', port: {pg} }}
",
            addr = test_env("SRE_TEST_BAO_ADDR"),
            token = token_file.display(),
            host = test_env("SRE_TEST_PG_HOST"),
            pg = pg_port(),
        ),
    )
    .expect("config");
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_rotation-controller"))
            .arg("--config")
            .arg(&config)
            .env_remove("SRE_ROTATION_BAO_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rotation-controller"),
    );

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

    // What the controller left in OpenBao: a current version that logs in.
    let store = BaoSecretStore::new(&bao()).expect("store");
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
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut logs = String::new();
    if let Some(mut err) = child.0.stderr.take() {
        use std::io::Read as _;
        let _ = err.read_to_string(&mut logs);
    }
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
}
