//! The JWKS publisher: `GET /jwks/<secret>` (and `/.well-known/jwks.json`) serve the
//! public keys of every transit key version that still verifies, rendered by
//! [`sre_rotation::jwks::render`] from what OpenBao returns now. A document is cached
//! for the configured TTL (relying parties poll; OpenBao is not asked per request), and
//! the same TTL is sent as `Cache-Control: max-age`, so after a retirement the old key
//! disappears within two TTLs at most.

use async_trait::async_trait;
use sre_adapter_openbao::{BaoConfig, BaoKeyring, TransitKeyInfo};
use sre_core::clock::MonoTime;
use sre_core::{Clock, PortError};
use sre_rotation::config::{RotationConfig, TargetSpec};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;

/// Reads a transit key's versions. A port so the publisher's caching and error mapping
/// are tested without OpenBao; production uses [`BaoKeyring`].
#[async_trait]
pub trait TransitKeys: Send + Sync {
    /// The key's versions and public keys; `None` when the key does not exist (yet).
    async fn read(&self, key: &str) -> Result<Option<TransitKeyInfo>, PortError>;
}

#[async_trait]
impl TransitKeys for BaoKeyring {
    async fn read(&self, key: &str) -> Result<Option<TransitKeyInfo>, PortError> {
        BaoKeyring::read(self, key).await
    }
}

/// Why no document was served.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum JwksError {
    /// No secret of that name has a `transit_signing` target (HTTP 404).
    #[error("no JWKS named {0:?}")]
    Unknown(String),
    /// OpenBao could not be read (HTTP 503).
    #[error("openbao unavailable: {0}")]
    Unavailable(#[source] PortError),
}

struct Source {
    keys: Arc<dyn TransitKeys>,
    key: String,
}

/// The documents the controller serves, by secret name.
pub struct JwksPublisher {
    sources: BTreeMap<String, Source>,
    well_known: Option<String>,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    cache: Mutex<BTreeMap<String, (MonoTime, Arc<String>)>>,
}

impl std::fmt::Debug for JwksPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksPublisher")
            .field("secrets", &self.sources.keys().collect::<Vec<_>>())
            .field("well_known", &self.well_known)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl JwksPublisher {
    /// A publisher with no documents, caching each for `ttl`.
    #[must_use]
    pub fn new(ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            sources: BTreeMap::new(),
            well_known: None,
            ttl,
            clock,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    /// Serves transit key `key` (read through `keys`) as `/jwks/<secret>`.
    #[must_use]
    pub fn with_key(mut self, secret: &str, keys: Arc<dyn TransitKeys>, key: &str) -> Self {
        self.sources.insert(
            secret.to_owned(),
            Source {
                keys,
                key: key.to_owned(),
            },
        );
        self
    }

    /// Serves `secret` at `/.well-known/jwks.json` too.
    #[must_use]
    pub fn with_well_known(mut self, secret: Option<String>) -> Self {
        self.well_known = secret;
        self
    }

    /// Every secret with a `transit_signing` target, as `cfg` says.
    pub fn from_config(
        cfg: &RotationConfig,
        bao: &BaoConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, sre_adapter_openbao::Error> {
        let mut p = Self::new(cfg.jwks.ttl, clock).with_well_known(cfg.jwks.well_known.clone());
        let mut rings: BTreeMap<&str, Arc<dyn TransitKeys>> = BTreeMap::new();
        for (secret, spec) in &cfg.targets {
            if let TargetSpec::TransitSigning { transit_mount, key } = spec {
                let ring = if let Some(r) = rings.get(transit_mount.as_str()) {
                    Arc::clone(r)
                } else {
                    let r: Arc<dyn TransitKeys> =
                        Arc::new(BaoKeyring::new(bao, transit_mount.clone())?);
                    rings.insert(transit_mount, Arc::clone(&r));
                    r
                };
                p = p.with_key(secret, ring, key);
            }
        }
        Ok(p)
    }

    /// The `Cache-Control: max-age` to send, in seconds.
    #[must_use]
    pub fn max_age(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// The secret behind `/.well-known/jwks.json`, if any.
    #[must_use]
    pub fn well_known(&self) -> Option<&str> {
        self.well_known.as_deref()
    }

    /// The JWKS of `secret` as JSON text: from the cache while it is fresh, else from
    /// OpenBao. A key that does not exist yet has an empty key set.
    pub async fn document(&self, secret: &str) -> Result<Arc<String>, JwksError> {
        let source = self
            .sources
            .get(secret)
            .ok_or_else(|| JwksError::Unknown(secret.to_owned()))?;
        let now = self.clock.monotonic();
        if let Ok(cache) = self.cache.lock()
            && let Some((at, doc)) = cache.get(secret)
            && now.saturating_since(*at) < self.ttl
        {
            return Ok(Arc::clone(doc));
        }
        let info = source
            .keys
            .read(&source.key)
            .await
            .map_err(JwksError::Unavailable)?;
        let doc = match info {
            Some(i) => {
                sre_rotation::jwks::render(&source.key, &i.public_keys, i.min_decryption_version)
            }
            None => serde_json::json!({ "keys": [] }),
        };
        let doc = Arc::new(doc.to_string());
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(secret.to_owned(), (now, Arc::clone(&doc)));
        }
        Ok(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sre_core::ManualClock;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// One key whose versions the test changes; counts reads, can be made unreachable.
    #[derive(Default)]
    struct FakeTransit {
        min: AtomicUsize,
        reads: AtomicUsize,
        down: AtomicBool,
    }

    #[async_trait]
    impl TransitKeys for FakeTransit {
        async fn read(&self, key: &str) -> Result<Option<TransitKeyInfo>, PortError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(PortError::Unavailable {
                    backend: "openbao",
                    message: "connection refused".into(),
                });
            }
            if key == "missing" {
                return Ok(None);
            }
            Ok(Some(TransitKeyInfo {
                latest_version: 2,
                min_decryption_version: self.min.load(Ordering::SeqCst) as u64,
                public_keys: BTreeMap::from([(1, "AAAA".into()), (2, "BBBB".into())]),
            }))
        }
    }

    #[tokio::test]
    async fn documents_are_cached_for_the_ttl_and_errors_are_typed() {
        let clock = ManualClock::at_epoch();
        let transit = Arc::new(FakeTransit::default());
        transit.min.store(1, Ordering::SeqCst);
        let p = JwksPublisher::new(Duration::from_secs(10), Arc::new(clock.clone()))
            .with_key("jwt", transit.clone(), "jwt")
            .with_key("fresh", transit.clone(), "missing");
        let doc = p.document("jwt").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(doc.contains("jwt-v1") && doc.contains("jwt-v2"), "{doc}");
        transit.min.store(2, Ordering::SeqCst);
        let cached = p.document("jwt").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cached, doc, "served from the cache within the TTL");
        assert_eq!(transit.reads.load(Ordering::SeqCst), 1);
        clock.advance(Duration::from_secs(10));
        let doc = p.document("jwt").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(!doc.contains("jwt-v1") && doc.contains("jwt-v2"), "{doc}");
        assert_eq!(
            p.document("fresh").await.map(|d| d.to_string()).ok(),
            Some("{\"keys\":[]}".to_owned())
        );
        assert!(matches!(
            p.document("nope").await,
            Err(JwksError::Unknown(_))
        ));
        transit.down.store(true, Ordering::SeqCst);
        clock.advance(Duration::from_secs(10));
        assert!(matches!(
            p.document("jwt").await,
            Err(JwksError::Unavailable(_))
        ));
    }
}
