//! Test support (feature `test-util`): an OpenBao dev server of a test's own.
//!
//! The shared test server (`cargo xtask services up`) must never be sealed or stopped:
//! every other test uses it. A test that needs OpenBao sealed, unsealed again or gone
//! spawns a private `bao server -dev` here instead. The database-engine fixture that the
//! adapter, rotation and controller tests share lives here too, and [`FaultyStore`], a
//! `SecretStore` wrapper that makes the code using it crash at a chosen call. This is
//! test code: it panics with a message that says what is missing rather than returning
//! errors.

use crate::{BaoConfig, BaoDatabase, BaoSecretStore, DynamicRole, PostgresConnection};
use sre_core::PortError;
use sre_core::ports::{SecretData, SecretMetadata, SecretStore, SecretValue};
use sre_core::testing::test_env;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

/// The root token the private dev server is started with.
const ROOT_TOKEN: &str = "sre-dev-server-root";

/// How often and how long [`DevServer`] polls the server before giving up: starting a dev
/// server takes well under a second, a loaded 2-core CI machine a few.
const POLL: Duration = Duration::from_millis(100);
const POLLS: u32 = 300;

/// A `bao server -dev` of one test's own on a free loopback port, killed on drop, so that
/// a test can seal it, unseal it or stop it without disturbing the shared server.
///
/// The dev server keeps everything in memory: what a test wrote is gone once it is
/// dropped, and it has one unseal key share with threshold one.
pub struct DevServer {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// A root token (the dev server's `-dev-root-token-id`).
    pub root_token: String,
    /// The single unseal key share, read from the dev server's banner.
    pub unseal_key: String,
    // Behind a lock so that `&self` methods can ask whether it is still running.
    child: Mutex<Child>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for DevServer {
    // The key and token are test values, but tests print their fixtures: leave them out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevServer")
            .field("address", &self.address)
            .field("pid", &self.lock_child().id())
            .finish_non_exhaustive()
    }
}

impl DevServer {
    /// Starts `bao server -dev` on a free loopback port and waits (bounded) until it has
    /// printed its unseal key and answers as unsealed and active.
    ///
    /// # Panics
    ///
    /// When `bao` is not on `PATH`, the server exits, or it is not ready in 30 s.
    pub async fn spawn() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir for the dev server");
        let log_path = dir.path().join("bao.log");
        let log = std::fs::File::create(&log_path).expect("the dev server's log file");
        let port = free_port();
        let child = Command::new("bao")
            .args(["server", "-dev"])
            .arg(format!("-dev-root-token-id={ROOT_TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            // The dev server writes its token under $HOME: keep it in the temp dir.
            .env("HOME", dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a second handle on the log file"))
            .stderr(log)
            .spawn()
            .expect("`bao` on PATH (cargo xtask services up installs it)");
        let mut server = Self {
            address: format!("http://127.0.0.1:{port}"),
            root_token: ROOT_TOKEN.to_owned(),
            unseal_key: String::new(),
            child: Mutex::new(child),
            _dir: dir,
        };
        server.unseal_key = server.banner_unseal_key(&log_path).await;
        server.wait_active("start").await;
        server
    }

    /// A client configuration for this server with the root token.
    #[must_use]
    pub fn config(&self) -> BaoConfig {
        BaoConfig::new(self.address.clone(), self.root_token.clone())
    }

    /// Seals the server: from now on every KV call answers 503 until [`Self::unseal`].
    ///
    /// # Panics
    ///
    /// When the seal call fails.
    pub async fn seal(&self) {
        vaultrs::sys::seal(&self.root_client())
            .await
            .expect("seal the dev server");
        let probe = self.kv_probe().await;
        assert!(
            matches!(probe, Err(PortError::Unavailable { .. })),
            "the dev server did not seal: a KV read gave {probe:?}"
        );
    }

    /// Submits the unseal key and waits (bounded) until the server is active again.
    ///
    /// # Panics
    ///
    /// When the key is refused or the server does not become active in 30 s.
    pub async fn unseal(&self) {
        vaultrs::sys::unseal(
            &self.root_client(),
            Some(self.unseal_key.clone()),
            None,
            None,
        )
        .await
        .expect("unseal the dev server");
        self.wait_active("unseal").await;
    }

    /// A raw `vaultrs` client with the root token, for calls no adapter makes.
    ///
    /// # Panics
    ///
    /// Never for the loopback address this server has.
    #[must_use]
    pub fn root_client(&self) -> VaultClient {
        let settings = VaultClientSettingsBuilder::default()
            .address(&self.address)
            .token(&self.root_token)
            .verify(true)
            .ca_certs(Vec::new())
            .identity(None)
            .namespace(None)
            .build()
            .expect("dev server client settings");
        VaultClient::new(settings).expect("dev server client")
    }

    async fn banner_unseal_key(&self, log_path: &Path) -> String {
        for _ in 0..POLLS {
            let text = std::fs::read_to_string(log_path).unwrap_or_default();
            if let Some(key) = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("Unseal Key:"))
            {
                return key.trim().to_owned();
            }
            self.assert_running(&text);
            tokio::time::sleep(POLL).await;
        }
        panic!(
            "no unseal key in the dev server's banner after {:?}",
            POLL * POLLS
        );
    }

    /// Polls a KV read until it answers: unsealed, active, the `secret/` mount up (what
    /// the tests need, and what the dev server's `sys/health` shape does not tell vaultrs).
    async fn wait_active(&self, what: &str) {
        let mut last = None;
        for _ in 0..POLLS {
            match self.kv_probe().await {
                Ok(_) => return,
                Err(e) => last = Some(e),
            }
            self.assert_running("");
            tokio::time::sleep(POLL).await;
        }
        panic!(
            "the dev server at {} was not active {:?} after {what}: last answer {last:?}",
            self.address,
            POLL * POLLS
        );
    }

    async fn kv_probe(&self) -> Result<Option<SecretMetadata>, PortError> {
        BaoSecretStore::new(&self.config())
            .expect("a KV client for the dev server")
            .metadata("sre-dev-server-probe")
            .await
    }

    fn lock_child(&self) -> std::sync::MutexGuard<'_, Child> {
        // A test that panicked while holding it still wants the process killed.
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn assert_running(&self, log: &str) {
        let exited = self.lock_child().try_wait();
        if let Ok(Some(status)) = exited {
            panic!("bao server -dev exited with {status}: {log}");
        }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A loopback port nobody listens on right now: for a dev server, or for an address that
/// must be unreachable.
///
/// # Panics
///
/// When no port can be bound.
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The shared test server from `cargo xtask services up` (`SRE_TEST_BAO_ADDR`/`TOKEN`).
///
/// # Panics
///
/// When neither the environment nor `target/test-servers.env` names it.
#[must_use]
pub fn shared_config() -> BaoConfig {
    BaoConfig::new(
        test_env("SRE_TEST_BAO_ADDR"),
        test_env("SRE_TEST_BAO_TOKEN"),
    )
}

/// A name of its own per test and run (`sre-test-<tag>-<pid>-<nanos>`): the shared server
/// outlives every test process, so mounts and KV paths must never collide.
#[must_use]
pub fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("sre-test-{tag}-{}-{nanos}", std::process::id())
}

/// The dynamic role [`dynamic_db_engine`] creates.
pub const DYNAMIC_ROLE: &str = "app";

/// The database engine's connection to the shared test PostgreSQL (scram over TCP, as
/// its superuser), allowed to serve `allowed_roles`.
///
/// # Panics
///
/// When the `SRE_TEST_PG_*` values are missing.
#[must_use]
pub fn test_pg_connection(allowed_roles: &[&str]) -> PostgresConnection {
    PostgresConnection {
        connection_url: format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@{}:{}/postgres?sslmode=disable",
            test_env("SRE_TEST_PG_HOST"),
            test_env("SRE_TEST_PG_PORT")
        ),
        username: test_env("SRE_TEST_PG_USER"),
        password: test_env("SRE_TEST_PG_PASSWORD"),
        allowed_roles: allowed_roles.iter().map(|r| (*r).to_owned()).collect(),
    }
}

/// A database engine on the shared server at a mount of its own (`unique(tag)`), set up
/// through the product's own [`BaoDatabase::ensure_dynamic`] (what `rotation-controller`
/// runs for an `engine:` block): connection `pg` to the test PostgreSQL and the dynamic
/// role [`DYNAMIC_ROLE`] (login users valid for 1 h, at most 2 h, no revocation
/// statements).
///
/// # Panics
///
/// When the engine cannot be enabled or configured.
pub async fn dynamic_db_engine(tag: &str) -> BaoDatabase {
    let db = BaoDatabase::new(&shared_config(), unique(tag)).expect("a database engine client");
    db.ensure_dynamic(
        "pg",
        &test_pg_connection(&[DYNAMIC_ROLE]),
        &DynamicRole {
            name: DYNAMIC_ROLE.into(),
            creation_statements: vec![
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';".into(),
            ],
            revocation_statements: vec![],
            default_ttl: Duration::from_hours(1),
            max_ttl: Duration::from_hours(2),
        },
    )
    .await
    .expect("configure the database engine (mount, connection, role)");
    db
}

/// A [`SecretStore`] call, as [`FaultyStore`] counts and logs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// `read`.
    Read,
    /// `write`.
    Write,
    /// `metadata`.
    Metadata,
    /// `set_custom_metadata`.
    SetCustomMetadata,
    /// `destroy_versions`.
    DestroyVersions,
}

/// A [`SecretStore`] over `inner` that makes whatever uses it crash at a chosen call:
/// the `nth` call (1-based) of one [`StoreOp`] and every call after it, of any kind,
/// fail with a retryable `PortError::Unavailable` without reaching `inner`, so nothing
/// after that point is persisted, as if the process had died there. Calls before it
/// pass through. Either way it logs each call that reached `inner` and succeeded, so a
/// test can tell exactly what was written.
pub struct FaultyStore<S> {
    inner: S,
    crash_at: Option<(StoreOp, u32)>,
    state: Mutex<FaultState>,
}

#[derive(Default)]
struct FaultState {
    seen: u32,
    crashed: bool,
    log: Vec<(StoreOp, String)>,
}

impl<S> std::fmt::Debug for FaultyStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyStore")
            .field("crash_at", &self.crash_at)
            .field("crashed", &self.lock().crashed)
            .finish_non_exhaustive()
    }
}

impl<S> FaultyStore<S> {
    /// Passes every call through to `inner` (and logs it) until [`Self::crash_at`].
    #[must_use]
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            crash_at: None,
            state: Mutex::default(),
        }
    }

    /// Crashes at the `nth` call (1-based) of `op`.
    #[must_use]
    pub fn crash_at(mut self, op: StoreOp, nth: u32) -> Self {
        self.crash_at = Some((op, nth));
        self
    }

    /// Whether the crash has happened.
    #[must_use]
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// The calls that reached the inner store and succeeded, in order, with their path.
    #[must_use]
    pub fn log(&self) -> Vec<(StoreOp, String)> {
        self.lock().log.clone()
    }

    /// The paths of the successful `write`s, in order.
    #[must_use]
    pub fn written(&self) -> Vec<String> {
        self.lock()
            .log
            .iter()
            .filter(|(op, _)| *op == StoreOp::Write)
            .map(|(_, p)| p.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts the call; `Err` from the crash on.
    fn enter(&self, op: StoreOp, path: &str) -> Result<(), PortError> {
        let mut s = self.lock();
        if !s.crashed
            && let Some((at, nth)) = self.crash_at
            && at == op
        {
            s.seen += 1;
            s.crashed = s.seen >= nth;
        }
        if s.crashed {
            return Err(PortError::Unavailable {
                backend: crate::error::BACKEND,
                message: format!("injected crash: {op:?} {path} and everything after it"),
            });
        }
        Ok(())
    }

    fn done<T>(&self, op: StoreOp, path: &str, r: Result<T, PortError>) -> Result<T, PortError> {
        if r.is_ok() {
            self.lock().log.push((op, path.to_owned()));
        }
        r
    }
}

#[async_trait::async_trait]
impl<S: SecretStore> SecretStore for FaultyStore<S> {
    async fn read(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<SecretValue>, PortError> {
        self.enter(StoreOp::Read, path)?;
        let r = self.inner.read(path, version).await;
        self.done(StoreOp::Read, path, r)
    }

    async fn write(
        &self,
        path: &str,
        data: &SecretData,
        cas: Option<u64>,
    ) -> Result<u64, PortError> {
        self.enter(StoreOp::Write, path)?;
        let r = self.inner.write(path, data, cas).await;
        self.done(StoreOp::Write, path, r)
    }

    async fn metadata(&self, path: &str) -> Result<Option<SecretMetadata>, PortError> {
        self.enter(StoreOp::Metadata, path)?;
        let r = self.inner.metadata(path).await;
        self.done(StoreOp::Metadata, path, r)
    }

    async fn set_custom_metadata(
        &self,
        path: &str,
        custom: &BTreeMap<String, String>,
    ) -> Result<(), PortError> {
        self.enter(StoreOp::SetCustomMetadata, path)?;
        let r = self.inner.set_custom_metadata(path, custom).await;
        self.done(StoreOp::SetCustomMetadata, path, r)
    }

    async fn destroy_versions(&self, path: &str, versions: &[u64]) -> Result<(), PortError> {
        self.enter(StoreOp::DestroyVersions, path)?;
        let r = self.inner.destroy_versions(path, versions).await;
        self.done(StoreOp::DestroyVersions, path, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sre_core::testing::MemSecretStore;

    #[tokio::test]
    async fn faulty_store_crashes_at_the_nth_call_and_stays_down() {
        let s = FaultyStore::new(MemSecretStore::new()).crash_at(StoreOp::Write, 2);
        let d = SecretData::from_pairs([("k", "v")]);
        assert_eq!(s.write("a", &d, None).await, Ok(1));
        assert!(s.read("a", None).await.is_ok_and(|v| v.is_some()));
        assert!(!s.crashed());
        let e = s.write("b", &d, None).await;
        assert!(matches!(&e, Err(e) if e.is_retryable()), "{e:?}");
        assert!(s.crashed());
        // Down for good, every kind of call, and nothing more reaches the store.
        assert!(s.read("a", None).await.is_err());
        assert!(s.metadata("a").await.is_err());
        assert_eq!(s.written(), ["a"]);
        assert_eq!(
            s.log(),
            [
                (StoreOp::Write, "a".to_owned()),
                (StoreOp::Read, "a".to_owned())
            ]
        );
        assert_eq!(s.inner.read("b", None).await, Ok(None));
    }
}
