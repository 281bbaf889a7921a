//! The real `sre` binary (feature `rotation`) against the shared OpenBao from `cargo
//! xtask services up`: config warnings reach the operator on stderr. A warning is not
//! an error, so nothing else would show it; only the process's stderr proves it is
//! printed, hence a binary test rather than a unit test.
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
