//! The platform executors beyond Kubernetes: OpenBao unseal (`unseal:`), JetStream
//! consumer replicas (`jetstream:`), Milvus index rebuilds (`milvus:`) and webhook
//! redelivery requests (`redeliver:`). Each section is optional; without it the action is
//! reported as "no executor configured", never as done. Secrets (the key store's token,
//! the NATS token or password) come from files or the environment, never from the
//! config file, so the config can be kept in Git.

use crate::milvus::{IndexParams, MilvusIndexes, RawIndexParamsMap, check_index_params};
use crate::redeliver::{HttpRedelivery, check_template};
use crate::server::TokioSleeper;
use serde::Deserialize;
use sre_adapter_nats::{NatsConfig, NatsConsumers};
use sre_adapter_openbao::{BaoConfig, BaoSecretStore, BaoUnsealer, UnsealConfig};
use sre_core::config::ConfigError;
use sre_core::guard::{Backoff, Jitter};
use sre_core::ports::SecretStore;
use sre_remediation::execute::Executors;
use sre_remediation::retry::Redelivery;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Environment variable holding the key store's token when `unseal.keys.token_file` is
/// not set.
pub const UNSEAL_KEYS_TOKEN_ENV: &str = "SRE_REMEDIATION_UNSEAL_KEYS_TOKEN";
/// Environment variable holding the Milvus token when `milvus.token_file` is not set.
pub const MILVUS_TOKEN_ENV: &str = "SRE_REMEDIATION_MILVUS_TOKEN";
/// Environment variable holding the redelivery endpoint's token when
/// `redeliver.token_file` is not set.
pub const REDELIVER_TOKEN_ENV: &str = "SRE_REMEDIATION_REDELIVER_TOKEN";

fn d_timeout() -> Duration {
    Duration::from_secs(10)
}
fn d_nats_timeout() -> Duration {
    Duration::from_secs(5)
}
fn d_mount() -> String {
    "secret".to_owned()
}
fn d_keys_field() -> String {
    "keys".to_owned()
}
fn d_api_prefix() -> String {
    "$JS.API".to_owned()
}
fn d_db_name() -> String {
    "default".to_owned()
}
fn d_milvus_timeout() -> Duration {
    Duration::from_secs(30)
}
fn d_backoff_base() -> Duration {
    Duration::from_secs(1)
}
fn d_backoff_factor() -> u32 {
    2
}
fn d_backoff_max() -> Duration {
    Duration::from_mins(1)
}

/// `milvus:` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMilvus {
    /// Milvus' HTTP address (`http://milvus.ai-hub.svc:19530`).
    url: String,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default = "d_db_name")]
    db_name: String,
    #[serde(default = "d_milvus_timeout", with = "humantime_serde")]
    timeout: Duration,
    /// Build parameters of the indexes Milvus' describe does not report them for.
    #[serde(default)]
    index_params: RawIndexParamsMap,
}

/// `redeliver:` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedeliver {
    /// The application's redelivery endpoint, with `${namespace}` and `${name}`.
    url_template: String,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default = "d_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default)]
    backoff: RawBackoff,
}

/// The wait between redelivery attempts: `base * factor^n`, never above `max`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    #[serde(default = "d_backoff_base", with = "humantime_serde")]
    base: Duration,
    #[serde(default = "d_backoff_factor")]
    factor: u32,
    #[serde(default = "d_backoff_max", with = "humantime_serde")]
    max: Duration,
}

impl Default for RawBackoff {
    fn default() -> Self {
        Self {
            base: d_backoff_base(),
            factor: d_backoff_factor(),
            max: d_backoff_max(),
        }
    }
}

/// Validated `milvus:` settings (the token is still to be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilvusSettings {
    raw: RawMilvus,
    index_params: IndexParams,
}

/// Validated `redeliver:` settings (the token is still to be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeliverSettings {
    raw: RawRedeliver,
}

impl RedeliverSettings {
    /// The backoff between attempts (no jitter: see `sre_remediation::retry`).
    #[must_use]
    pub fn backoff(&self) -> Backoff {
        let b = &self.raw.backoff;
        Backoff::new(
            b.base,
            NonZeroU32::new(b.factor).unwrap_or(NonZeroU32::MIN),
            b.max,
            Jitter::None,
        )
    }
}

/// Checks `milvus:`: an http(s) URL, a database name, a timeout above zero, and
/// `index_params` entries a rebuild can use (see [`check_index_params`]).
pub fn check_milvus(mut raw: RawMilvus, errs: &mut Vec<ConfigError>) -> MilvusSettings {
    http_url("milvus.url", &raw.url, errs);
    if raw.db_name.trim().is_empty() {
        errs.push(ConfigError::new("milvus.db_name", "must not be empty"));
    }
    if raw.timeout.is_zero() {
        errs.push(ConfigError::new("milvus.timeout", "must be above zero"));
    }
    let index_params = check_index_params(std::mem::take(&mut raw.index_params), errs);
    MilvusSettings { raw, index_params }
}

/// Checks `redeliver:`: a template with known placeholders that makes an http(s) URL, a
/// timeout above zero, a backoff that grows (`factor` at least 1) within `max`.
pub fn check_redeliver(raw: RawRedeliver, errs: &mut Vec<ConfigError>) -> RedeliverSettings {
    if let Err(e) = check_template(&raw.url_template) {
        errs.push(ConfigError::new("redeliver.url_template", e.to_string()));
    }
    if raw.timeout.is_zero() {
        errs.push(ConfigError::new("redeliver.timeout", "must be above zero"));
    }
    let b = &raw.backoff;
    if b.base.is_zero() {
        errs.push(ConfigError::new(
            "redeliver.backoff.base",
            "must be above zero",
        ));
    }
    if b.factor == 0 {
        errs.push(ConfigError::new(
            "redeliver.backoff.factor",
            "must be at least 1",
        ));
    }
    if b.max < b.base {
        errs.push(ConfigError::new(
            "redeliver.backoff.max",
            "must be at least redeliver.backoff.base",
        ));
    }
    RedeliverSettings { raw }
}

/// `unseal:` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnseal {
    /// Instance address with `{name}` and `{namespace}`.
    #[serde(default)]
    address_template: Option<String>,
    /// Fixed addresses by instance name.
    #[serde(default)]
    addresses: BTreeMap<String, String>,
    /// The store that holds the key shares.
    keys: RawKeyStore,
    /// Path of the shares in the key store, with `{name}` and `{namespace}`.
    keys_path: String,
    #[serde(default = "d_keys_field")]
    keys_field: String,
    #[serde(default = "d_timeout", with = "humantime_serde")]
    timeout: Duration,
}

/// The attested key store (an OpenBao KV v2 mount that only this webhook may read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyStore {
    address: String,
    #[serde(default = "d_mount")]
    mount: String,
    #[serde(default)]
    token_file: Option<PathBuf>,
}

/// `jetstream:` as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJetStream {
    /// `host:port` or `nats://host:port`.
    address: String,
    #[serde(default)]
    token_file: Option<PathBuf>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default = "d_nats_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default = "d_api_prefix")]
    api_prefix: String,
}

/// Validated `unseal:` settings (the token is still to be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsealSettings {
    raw: RawUnseal,
}

/// Validated `jetstream:` settings (credentials still to be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamSettings {
    raw: RawJetStream,
}

fn http_url(path: &str, url: &str, errs: &mut Vec<ConfigError>) {
    let ok = url.starts_with("http://") || url.starts_with("https://");
    if !ok {
        errs.push(ConfigError::new(
            path,
            format!("{url}: must start with http:// or https://"),
        ));
    }
}

/// Checks `unseal:`: an address for every instance (template or map), a key store URL,
/// a non-empty key path, a timeout above zero.
pub fn check_unseal(raw: RawUnseal, errs: &mut Vec<ConfigError>) -> UnsealSettings {
    match &raw.address_template {
        Some(t) => {
            http_url("unseal.address_template", t, errs);
            if !t.contains("{name}") && raw.addresses.is_empty() {
                errs.push(ConfigError::new(
                    "unseal.address_template",
                    "has no {name}: every pod would get the same address; unseal each pod on its own",
                ));
            }
        }
        None if raw.addresses.is_empty() => errs.push(ConfigError::new(
            "unseal",
            "needs address_template or addresses: where the sealed pods are",
        )),
        None => {}
    }
    for (name, addr) in &raw.addresses {
        http_url(&format!("unseal.addresses.{name}"), addr, errs);
    }
    http_url("unseal.keys.address", &raw.keys.address, errs);
    if raw.keys_path.trim().is_empty() {
        errs.push(ConfigError::new("unseal.keys_path", "must not be empty"));
    }
    if raw.keys_field.trim().is_empty() {
        errs.push(ConfigError::new("unseal.keys_field", "must not be empty"));
    }
    if raw.timeout.is_zero() {
        errs.push(ConfigError::new("unseal.timeout", "must be above zero"));
    }
    UnsealSettings { raw }
}

/// Checks `jetstream:`: a plain `host:port` address, user and password together, a
/// timeout above zero, and not both token and user.
pub fn check_jetstream(raw: RawJetStream, errs: &mut Vec<ConfigError>) -> JetStreamSettings {
    let hp = raw.address.strip_prefix("nats://").unwrap_or(&raw.address);
    if hp
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        errs.push(ConfigError::new(
            "jetstream.address",
            format!("{}: want host:port or nats://host:port", raw.address),
        ));
    }
    if raw.user.is_some() != raw.password_file.is_some() {
        errs.push(ConfigError::new(
            "jetstream.user",
            "user and password_file go together",
        ));
    }
    if raw.token_file.is_some() && raw.user.is_some() {
        errs.push(ConfigError::new(
            "jetstream.token_file",
            "use either token_file or user + password_file",
        ));
    }
    if raw.timeout.is_zero() {
        errs.push(ConfigError::new("jetstream.timeout", "must be above zero"));
    }
    if raw.api_prefix.trim().is_empty() {
        errs.push(ConfigError::new(
            "jetstream.api_prefix",
            "must not be empty",
        ));
    }
    JetStreamSettings { raw }
}

fn read_secret(path: &Path, what: &str) -> anyhow::Result<String> {
    use anyhow::Context as _;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{what} {}", path.display()))?;
    let t = text.trim().to_owned();
    anyhow::ensure!(!t.is_empty(), "{what} {} is empty", path.display());
    Ok(t)
}

/// Adds the unsealer and the JetStream executor the config names to `ex`.
///
/// # Errors
/// A token or password file that cannot be read, or a client the adapter refuses.
pub fn add_executors(
    ex: &mut Executors,
    unseal: Option<&UnsealSettings>,
    jetstream: Option<&JetStreamSettings>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    if let Some(u) = unseal.map(|u| &u.raw) {
        let token = match &u.keys.token_file {
            Some(p) => read_secret(p, "unseal.keys.token_file")?,
            None => std::env::var(UNSEAL_KEYS_TOKEN_ENV).with_context(|| {
                format!("unseal: set {UNSEAL_KEYS_TOKEN_ENV} or unseal.keys.token_file")
            })?,
        };
        let mut kc = BaoConfig::new(&u.keys.address, token);
        kc.mount.clone_from(&u.keys.mount);
        let keys: Arc<dyn SecretStore> =
            Arc::new(BaoSecretStore::new(&kc).context("unseal key store client")?);
        let mut uc =
            UnsealConfig::new(u.address_template.clone().unwrap_or_default(), &u.keys_path);
        uc.addresses.clone_from(&u.addresses);
        uc.keys_field.clone_from(&u.keys_field);
        uc.timeout = u.timeout;
        ex.unsealer = Some(Arc::new(BaoUnsealer::new(uc, keys)));
    }
    if let Some(j) = jetstream.map(|j| &j.raw) {
        let mut nc = NatsConfig::new(&j.address);
        if let Some(p) = &j.token_file {
            nc.token = Some(read_secret(p, "jetstream.token_file")?);
        }
        if let (Some(user), Some(p)) = (&j.user, &j.password_file) {
            nc.user = Some(user.clone());
            nc.password = Some(read_secret(p, "jetstream.password_file")?);
        }
        nc.timeout = j.timeout;
        nc.api_prefix.clone_from(&j.api_prefix);
        ex.jetstream = Some(Arc::new(NatsConsumers::new(nc)));
    }
    Ok(())
}

/// A token from `file`, else from the environment variable `env`.
fn token(file: Option<&PathBuf>, env: &str, what: &str) -> anyhow::Result<String> {
    use anyhow::Context as _;
    match file {
        Some(p) => read_secret(p, &format!("{what}.token_file")),
        None => {
            std::env::var(env).with_context(|| format!("{what}: set {env} or {what}.token_file"))
        }
    }
}

/// Adds the Milvus and the redelivery executors the config names to `ex`; redelivery
/// waits on tokio's timer between attempts.
///
/// # Errors
/// A token that cannot be read, or a client that cannot be built.
pub fn add_app_executors(
    ex: &mut Executors,
    milvus: Option<&MilvusSettings>,
    redeliver: Option<&RedeliverSettings>,
) -> anyhow::Result<()> {
    if let Some(s) = milvus {
        let m = &s.raw;
        let t = token(m.token_file.as_ref(), MILVUS_TOKEN_ENV, "milvus")?;
        ex.vector_indexes = Some(Arc::new(
            MilvusIndexes::new(&m.url, &t, &m.db_name, m.timeout)?
                .with_index_params(s.index_params.clone()),
        ));
    }
    if let Some(r) = redeliver {
        let t = token(r.raw.token_file.as_ref(), REDELIVER_TOKEN_ENV, "redeliver")?;
        ex.redelivery = Some(Redelivery {
            port: Arc::new(HttpRedelivery::new(&r.raw.url_template, &t, r.raw.timeout)?),
            backoff: r.backoff(),
            sleeper: Arc::new(TokioSleeper),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unseal(yaml: &str) -> Vec<String> {
        let raw: RawUnseal = serde_norway::from_str(yaml).expect("parses");
        let mut errs = Vec::new();
        check_unseal(raw, &mut errs);
        errs.iter().map(|e| e.path.clone()).collect()
    }

    fn jetstream(yaml: &str) -> Vec<String> {
        let raw: RawJetStream = serde_norway::from_str(yaml).expect("parses");
        let mut errs = Vec::new();
        check_jetstream(raw, &mut errs);
        errs.iter().map(|e| e.path.clone()).collect()
    }

    #[test]
    fn a_good_unseal_section_passes_and_bad_ones_name_the_field() {
        let good = "address_template: 'http://{name}.openbao-internal.{namespace}.svc:8200'\n\
                    keys: {address: 'https://keys:8200'}\nkeys_path: 'openbao-unseal/{namespace}'\n";
        assert!(unseal(good).is_empty());
        assert_eq!(
            unseal("keys: {address: 'https://keys:8200'}\nkeys_path: x\n"),
            ["unseal"]
        );
        assert_eq!(
            unseal(
                "address_template: 'http://bao:8200'\nkeys: {address: 'ftp://k'}\nkeys_path: ''\ntimeout: 0s\n"
            ),
            [
                "unseal.address_template",
                "unseal.keys.address",
                "unseal.keys_path",
                "unseal.timeout"
            ]
        );
    }

    #[test]
    fn a_good_jetstream_section_passes_and_bad_ones_name_the_field() {
        assert!(jetstream("address: nats://nats:4222\n").is_empty());
        assert!(jetstream("address: 'nats:4222'\nuser: u\npassword_file: /p\n").is_empty());
        assert_eq!(
            jetstream("address: nats\nuser: u\ntimeout: 0s\n"),
            ["jetstream.address", "jetstream.user", "jetstream.timeout"]
        );
        assert_eq!(
            jetstream("address: 'n:1'\ntoken_file: /t\nuser: u\npassword_file: /p\n"),
            ["jetstream.token_file"]
        );
    }

    #[test]
    fn milvus_and_redeliver_sections_pass_or_name_the_field_and_wire_from_token_files() {
        let milvus = |yaml: &str| {
            let raw: RawMilvus = serde_norway::from_str(yaml).expect("parses");
            let mut errs = Vec::new();
            let s = check_milvus(raw, &mut errs);
            (s, errs.iter().map(|e| e.path.clone()).collect::<Vec<_>>())
        };
        let redeliver = |yaml: &str| {
            let raw: RawRedeliver = serde_norway::from_str(yaml).expect("parses");
            let mut errs = Vec::new();
            let s = check_redeliver(raw, &mut errs);
            (s, errs.iter().map(|e| e.path.clone()).collect::<Vec<_>>())
        };
        let (m, errs) = milvus("url: 'http://milvus:19530'\n");
        assert!(errs.is_empty());
        assert_eq!(
            (m.raw.db_name.as_str(), m.raw.timeout),
            ("default", Duration::from_secs(30))
        );
        assert_eq!(
            milvus("url: 'grpc://milvus:19530'\ndb_name: ' '\ntimeout: 0s\n").1,
            ["milvus.url", "milvus.db_name", "milvus.timeout"]
        );
        let (r, errs) = redeliver(
            "url_template: 'http://billing.${namespace}.svc:8080/internal/webhooks/${name}/redeliver'\n\
             backoff: {base: 2s, factor: 3}\n",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(r.backoff().cap(2), Duration::from_secs(18));
        assert_eq!(
            r.backoff().cap(9),
            Duration::from_mins(1),
            "capped at the default max"
        );
        assert_eq!(
            redeliver(
                "url_template: 'http://a/${webhook}'\ntimeout: 0s\nbackoff: {base: 0s, factor: 0, max: 0s}\n"
            )
            .1,
            [
                "redeliver.url_template",
                "redeliver.timeout",
                "redeliver.backoff.base",
                "redeliver.backoff.factor"
            ]
        );
        assert_eq!(
            redeliver("url_template: 'http://a/${name}'\nbackoff: {base: 10s, max: 1s}\n").1,
            ["redeliver.backoff.max"]
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let tok = dir.path().join("t");
        std::fs::write(&tok, "s3cr3t\n").expect("write");
        let (m, _) = milvus(&format!(
            "url: 'http://127.0.0.1:19530'\ntoken_file: {}\n",
            tok.display()
        ));
        let (r, _) = redeliver(&format!(
            "url_template: 'http://127.0.0.1:1/${{name}}'\ntoken_file: {}\n",
            tok.display()
        ));
        let mut ex = Executors::default();
        add_app_executors(&mut ex, Some(&m), Some(&r)).expect("wires");
        assert!(ex.vector_indexes.is_some() && ex.redelivery.is_some());
        assert!(ex.workloads.is_none());
        let (missing, _) = milvus(&format!(
            "url: 'http://127.0.0.1:19530'\ntoken_file: {}\n",
            dir.path().join("missing").display()
        ));
        let err = add_app_executors(&mut Executors::default(), Some(&missing), None)
            .expect_err("a missing token file is an error");
        assert!(err.to_string().contains("milvus.token_file"), "{err}");
    }

    #[test]
    fn executors_are_added_only_for_configured_sections_and_secrets_come_from_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tok = dir.path().join("t");
        std::fs::write(&tok, "s3cr3t\n").expect("write");
        let raw: RawJetStream = serde_norway::from_str(&format!(
            "address: '127.0.0.1:4222'\ntoken_file: {}\n",
            tok.display()
        ))
        .expect("parses");
        let mut errs = Vec::new();
        let js = check_jetstream(raw, &mut errs);
        assert!(errs.is_empty());
        let mut ex = Executors::default();
        add_executors(&mut ex, None, Some(&js)).expect("wires");
        assert!(ex.jetstream.is_some() && ex.unsealer.is_none());

        let raw: RawUnseal = serde_norway::from_str(&format!(
            "addresses: {{openbao-0: 'http://127.0.0.1:8200'}}\nkeys: {{address: 'http://127.0.0.1:1', token_file: {}}}\nkeys_path: k\n",
            dir.path().join("missing").display()
        ))
        .expect("parses");
        let u = check_unseal(raw, &mut errs);
        assert!(errs.is_empty());
        let err = add_executors(&mut Executors::default(), Some(&u), None)
            .expect_err("a missing token file is an error");
        assert!(err.to_string().contains("unseal.keys.token_file"), "{err}");
    }
}
