//! The real `sre` binary (feature `rotation`) against the shared OpenBao and PostgreSQL
//! from `cargo xtask services up`: config warnings reach the operator on stderr (a
//! warning is not an error, so only the process's stderr proves it is printed), `rotate`
//! configures a secret's database engine first, and `status` shows observed
//! certificates read from their files.
#![cfg(feature = "rotation")]

use sre_core::testing::test_env;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Removes the test's directory even when an assertion fails.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sre(config: &Path, rotation_args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sre"))
        .arg("rotation")
        .arg("--config")
        .arg(config)
        .args(rotation_args)
        // Only the config file decides: no token, config path or override from outside.
        .env_remove("SRE_ROTATION_BAO_TOKEN")
        .env_remove("SRE_ROTATION_CONFIG")
        .output()
        .expect("run the sre binary")
}

/// `sre rotation status` and `sre rotation rotate` both print the warning for a secret
/// without consumers: it names the secret and says it has no consumers, and a secret
/// with consumers gets none. The rotation itself still runs (a warning, not an error).
#[test]
fn status_and_rotate_warn_about_a_secret_without_consumers() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tag = format!("sre-test-cli-warn-{}-{nanos}", std::process::id());
    let dir = TempDir(std::env::temp_dir().join(&tag));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let token = dir.0.join("token");
    std::fs::write(&token, test_env("SRE_TEST_BAO_TOKEN")).expect("token file");
    let config = dir.0.join("rotation.yaml");
    std::fs::write(
        &config,
        format!(
            "
openbao: {{ address: '{addr}', token_file: '{token}' }}
inventory:
  secrets:
    - {{ name: watched-token, class: api_token, path: {tag}/watched, max_age: 30d, overlap: 1h,
        owner: o, consumers: [deployment/a/b] }}
    - {{ name: orphan-token, class: api_token, path: {tag}/orphan, max_age: 30d, overlap: 1h,
        owner: o }}
targets:
  orphan-token: {{ kind: generated }}
",
            addr = test_env("SRE_TEST_BAO_ADDR"),
            token = token.display(),
        ),
    )
    .expect("config");
    let warning = "warning: secrets[1].consumers: secret \"orphan-token\" has no consumers listed";

    for cmd in [&["status"][..], &["rotate", "orphan-token"][..]] {
        let out = sre(&config, cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{cmd:?}: {:?}\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        assert_eq!(
            stderr.lines().filter(|l| l.starts_with(warning)).count(),
            1,
            "{cmd:?} prints the warning once on stderr:\n{stderr}"
        );
        if cmd[0] == "rotate" {
            assert!(
                stdout.contains("rotated orphan-token: version 1 is current"),
                "a warning does not stop the rotation:\n{stdout}"
            );
        }
        assert!(
            !stderr
                .lines()
                .any(|l| l.contains("watched-token") && l.contains("no consumers"))
                && !stdout.contains("no consumers"),
            "{cmd:?}: only the secret without consumers is warned about, on stderr only:\n\
             stdout: {stdout}\nstderr: {stderr}"
        );
    }
}

/// `sre rotation rotate` configures the secret's database engine from its `engine:`
/// block first (a mount no fixture touched), then rotates; `sre rotation status` reads
/// an observed SVID from its PEM file and shows its expiry.
#[test]
fn rotate_configures_the_engine_and_status_reads_observed_certificates() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tag = format!("sre-test-cli-eng-{}-{nanos}", std::process::id());
    let dir = TempDir(std::env::temp_dir().join(&tag));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let token = dir.0.join("token");
    std::fs::write(&token, test_env("SRE_TEST_BAO_TOKEN")).expect("token file");
    let password = dir.0.join("pg-admin");
    std::fs::write(&password, format!("{}\n", test_env("SRE_TEST_PG_PASSWORD"))).expect("pw");
    let svid = dir.0.join("svid.pem");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "ed25519", "-nodes", "-days", "30",
        ])
        .args(["-subj", "/CN=console", "-keyout"])
        .arg(dir.0.join("svid-key.pem"))
        .arg("-out")
        .arg(&svid)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (installed by cargo xtask test)");
    assert!(made.success());
    let config = dir.0.join("rotation.yaml");
    std::fs::write(
        &config,
        format!(
            "
openbao: {{ address: '{addr}', token_file: '{token}' }}
inventory:
  secrets:
    - {{ name: billing-db, class: dynamic_db, path: {tag}/db, max_age: 1h, overlap: 5m,
        owner: o, consumers: [deployment/a/b] }}
    - {{ name: console-svid, class: svid, path: {tag}/svid, overlap: 0s, owner: o }}
targets:
  billing-db:
    kind: postgres_dynamic
    database_mount: {tag}-db
    role: app
    host: '{host}'
    port: {pg}
    engine:
      connection: billing-pg
      connection_url: 'postgresql://{{{{username}}}}:{{{{password}}}}@{host}:{pg}/postgres?sslmode=disable'
      username: {user}
      password_file: '{password}'
certificates:
  console-svid: {{ pem_file: '{svid}', alert_before: 7d }}
",
            addr = test_env("SRE_TEST_BAO_ADDR"),
            token = token.display(),
            host = test_env("SRE_TEST_PG_HOST"),
            pg = test_env("SRE_TEST_PG_PORT"),
            user = test_env("SRE_TEST_PG_USER"),
            password = password.display(),
            svid = svid.display(),
        ),
    )
    .expect("config");

    let out = sre(&config, &["rotate", "billing-db"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    assert!(
        stdout.contains(
            "database engine of billing-db: mount Created, connection Created, role Created"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("rotated billing-db: version 1 is current"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&test_env("SRE_TEST_PG_PASSWORD"))
            && !stderr.contains(&test_env("SRE_TEST_PG_PASSWORD")),
        "the admin password is never printed"
    );

    let out = sre(&config, &["status"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?}\n{stdout}", out.status);
    let svid_line = stdout
        .lines()
        .find(|l| l.starts_with("console-svid"))
        .unwrap_or_default();
    assert!(svid_line.contains("expires "), "{stdout}");
    assert!(svid_line.contains("(in 29d 23h): ok"), "{stdout}");
    let db_line = stdout
        .lines()
        .find(|l| l.starts_with("billing-db"))
        .unwrap_or_default();
    assert!(db_line.contains("rotated"), "{stdout}");
}
