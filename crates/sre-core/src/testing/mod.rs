//! Test support (feature `test-util`): in-memory fakes of every port, the contract
//! suites every implementation of a port must pass, and the lookup of the real test
//! servers started by `cargo xtask test`.
//!
//! The fakes are deliberately strict (conditional writes, versions, NXDOMAIN vs NODATA)
//! so that a domain test that passes against a fake means something against a real
//! backend; the contract suites keep the two honest.

pub mod contract;
pub mod fakes;

pub use fakes::{MemObjectStore, MemResolver, MemSecretStore, MemWitness};

use std::path::PathBuf;

/// Reads the endpoint of a real test server: the process environment first, then the
/// `target/test-servers.env` file that `cargo xtask services up` writes.
///
/// A missing variable panics with instructions instead of skipping: a test that needs a
/// server and silently passes without one proves nothing.
#[must_use]
pub fn test_env(var: &str) -> String {
    if let Ok(v) = std::env::var(var) {
        return v;
    }
    if let Some(v) = env_file_value(var) {
        return v;
    }
    panic!(
        "{var} is not set and target/test-servers.env does not define it: \
         run the suite with `cargo xtask test` (or `cargo xtask services up` first)"
    );
}

fn env_file_value(var: &str) -> Option<String> {
    let path = env_file_path()?;
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == var)
        .map(|(_, v)| v.trim().to_owned())
}

/// Finds `target/test-servers.env` by walking up from the current directory (tests run
/// in their package directory, the file lives at the workspace root).
fn env_file_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SRE_TEST_ENV_FILE") {
        return Some(PathBuf::from(p));
    }
    let mut dir = std::env::current_dir().ok()?;
    loop {
        let candidate = dir.join("target").join("test-servers.env");
        if candidate.is_file() {
            return Some(candidate);
        }
        if !dir.pop() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The fakes pass the same contract suites as the real adapters.
    use super::contract;
    use super::*;
    use crate::ports::{LeaseRecord, WitnessRead};

    #[tokio::test]
    async fn mem_object_store_passes_the_contract() {
        let s = MemObjectStore::new();
        contract::object_store(&s, "t1").await;
        contract::object_store_versions(&s, "t2").await;
        contract::object_store_race(&s, &s.clone(), "t3").await;
    }

    #[tokio::test]
    async fn mem_secret_store_passes_the_contract() {
        contract::secret_store(&MemSecretStore::new(), "kv").await;
    }

    #[tokio::test]
    async fn mem_resolver_passes_the_contract() {
        let r = MemResolver::with_sre_test_zone("fake");
        contract::resolver(&r, &contract::ResolverFixture::sre_test()).await;
    }

    #[tokio::test]
    async fn mem_witness_passes_the_contract() {
        let w = MemWitness::new();
        contract::witness(&w, &w.clone()).await;
    }

    #[tokio::test]
    async fn garbage_at_the_witness_reads_as_malformed_not_absent() {
        let w = MemWitness::new();
        w.put_raw(b"{\"holder\":\"region-a\"}".to_vec());
        let read = crate::ports::Witness::read(&w).await.expect("read");
        assert!(matches!(read, WitnessRead::Malformed { .. }), "{read:?}");
        assert!(LeaseRecord::from_bytes(b"not json").is_err());
    }

    #[tokio::test]
    async fn outages_are_retryable_errors() {
        let s = MemObjectStore::new();
        s.set_unavailable(true);
        let err = crate::ports::ObjectStore::get(&s, "k")
            .await
            .expect_err("down");
        assert!(err.is_retryable(), "{err}");
    }

    #[test]
    fn test_env_prefers_the_process_environment() {
        // SAFETY-free: reading a variable every test process has.
        assert!(!test_env("PATH").is_empty());
    }

    #[test]
    fn test_env_names_the_command_when_missing() {
        let err = std::panic::catch_unwind(|| test_env("SRE_TEST_DEFINITELY_NOT_SET_ANYWHERE"))
            .expect_err("must panic");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("cargo xtask test"), "{msg}");
    }
}
