//! In-memory fakes of the ports. Clones share state, so a test can hand one clone to
//! the code under test and inspect (or break) the backend through another.

use crate::PortError;
use crate::clock::{Clock, SystemClock};
use crate::ports::{
    CasOutcome, LeaseRecord, LookupOutcome, ObjectMeta, ObjectStore, ObjectVersion, PutCondition,
    RecordKind, Resolver, Revision, SecretData, SecretMetadata, SecretStore, SecretValue,
    SecretVersionInfo, StoredObject, Witness, WitnessRead,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned fake only means a test thread panicked; its data is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn etag_of(body: &[u8]) -> String {
    format!("\"{}\"", hex::encode(Sha256::digest(body)))
}

/// An outage switch shared by a fake and its clones.
#[derive(Debug, Clone, Default)]
struct Outage(Arc<AtomicBool>);

impl Outage {
    fn check(&self, backend: &'static str) -> Result<(), PortError> {
        if self.0.load(Ordering::SeqCst) {
            Err(PortError::Unavailable {
                backend,
                message: "injected outage".into(),
            })
        } else {
            Ok(())
        }
    }
}

#[derive(Debug, Clone)]
struct MemVersion {
    version_id: String,
    etag: String,
    body: Option<Vec<u8>>, // None: delete marker
}

#[derive(Debug, Default)]
struct ObjectState {
    keys: BTreeMap<String, Vec<MemVersion>>, // oldest first
    next_version: u64,
}

/// In-memory versioned object store with S3's conditional-write semantics.
#[derive(Debug, Clone, Default)]
pub struct MemObjectStore {
    state: Arc<Mutex<ObjectState>>,
    outage: Outage,
}

impl MemObjectStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail with [`PortError::Unavailable`] until switched back.
    pub fn set_unavailable(&self, down: bool) {
        self.outage.0.store(down, Ordering::SeqCst);
    }

    /// Overwrites a key unconditionally, bypassing the port: for tests that need to
    /// corrupt or tamper with stored data.
    pub fn tamper(&self, key: &str, body: Vec<u8>) {
        let mut s = lock(&self.state);
        s.next_version += 1;
        let v = MemVersion {
            version_id: format!("v{}", s.next_version),
            etag: etag_of(&body),
            body: Some(body),
        };
        s.keys.entry(key.to_owned()).or_default().push(v);
    }

    fn meta(key: &str, v: &MemVersion) -> ObjectMeta {
        ObjectMeta {
            key: key.to_owned(),
            etag: v.etag.clone(),
            version_id: Some(v.version_id.clone()),
            size: v.body.as_ref().map_or(0, |b| b.len() as u64),
        }
    }
}

fn current(versions: &[MemVersion]) -> Option<&MemVersion> {
    versions.last().filter(|v| v.body.is_some())
}

#[async_trait]
impl ObjectStore for MemObjectStore {
    async fn get(&self, key: &str) -> Result<Option<StoredObject>, PortError> {
        self.outage.check("mem-object-store")?;
        let s = lock(&self.state);
        Ok(s.keys
            .get(key)
            .and_then(|vs| current(vs))
            .map(|v| StoredObject {
                meta: Self::meta(key, v),
                body: v.body.clone().unwrap_or_default(),
            }))
    }

    async fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        condition: PutCondition,
    ) -> Result<ObjectMeta, PortError> {
        self.outage.check("mem-object-store")?;
        if key.is_empty() {
            return Err(PortError::Invalid("object key must not be empty".into()));
        }
        let mut s = lock(&self.state);
        let existing = s
            .keys
            .get(key)
            .and_then(|vs| current(vs))
            .map(|v| v.etag.clone());
        let ok = match (&condition, &existing) {
            (PutCondition::Always, _) | (PutCondition::IfAbsent, None) => true,
            (PutCondition::IfMatch(want), Some(have)) => want == have,
            (PutCondition::IfAbsent, Some(_)) | (PutCondition::IfMatch(_), None) => false,
        };
        if !ok {
            return Err(PortError::PreconditionFailed {
                what: key.to_owned(),
            });
        }
        s.next_version += 1;
        let v = MemVersion {
            version_id: format!("v{}", s.next_version),
            etag: etag_of(&body),
            body: Some(body),
        };
        let meta = Self::meta(key, &v);
        s.keys.entry(key.to_owned()).or_default().push(v);
        Ok(meta)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, PortError> {
        self.outage.check("mem-object-store")?;
        let s = lock(&self.state);
        Ok(s.keys
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, vs)| current(vs).map(|v| Self::meta(k, v)))
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.outage.check("mem-object-store")?;
        let mut s = lock(&self.state);
        if s.keys.get(key).and_then(|vs| current(vs)).is_none() {
            return Ok(());
        }
        s.next_version += 1;
        let marker = MemVersion {
            version_id: format!("v{}", s.next_version),
            etag: String::new(),
            body: None,
        };
        s.keys.entry(key.to_owned()).or_default().push(marker);
        Ok(())
    }

    async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, PortError> {
        self.outage.check("mem-object-store")?;
        let s = lock(&self.state);
        let mut out = Vec::new();
        for (k, vs) in s
            .keys
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            let n = vs.len();
            for (i, v) in vs.iter().enumerate().rev() {
                out.push(ObjectVersion {
                    key: k.clone(),
                    version_id: v.version_id.clone(),
                    is_latest: i + 1 == n,
                    is_delete_marker: v.body.is_none(),
                });
            }
        }
        Ok(out)
    }

    async fn delete_version(&self, key: &str, version_id: &str) -> Result<(), PortError> {
        self.outage.check("mem-object-store")?;
        let mut s = lock(&self.state);
        if let Some(vs) = s.keys.get_mut(key) {
            vs.retain(|v| v.version_id != version_id);
            if vs.is_empty() {
                s.keys.remove(key);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct MemSecretVersion {
    created_at: DateTime<Utc>,
    data: Option<SecretData>, // None: destroyed
    deleted: bool,
}

#[derive(Debug, Default)]
struct SecretEntry {
    versions: Vec<MemSecretVersion>, // index = version - 1
    custom: BTreeMap<String, String>,
}

/// In-memory KV v2 secret store with versions, check-and-set and custom metadata.
#[derive(Clone)]
pub struct MemSecretStore {
    state: Arc<Mutex<HashMap<String, SecretEntry>>>,
    clock: Arc<dyn Clock>,
    outage: Outage,
}

impl std::fmt::Debug for MemSecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemSecretStore").finish_non_exhaustive()
    }
}

impl Default for MemSecretStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemSecretStore {
    /// An empty store stamping versions with the system clock.
    #[must_use]
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock::new()))
    }

    /// An empty store stamping versions with `clock` (use a `ManualClock` for
    /// deterministic ages).
    #[must_use]
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Arc::default(),
            clock,
            outage: Outage::default(),
        }
    }

    /// Makes every call fail with [`PortError::Unavailable`] (a sealed or unreachable
    /// OpenBao) until switched back.
    pub fn set_unavailable(&self, down: bool) {
        self.outage.0.store(down, Ordering::SeqCst);
    }
}

#[async_trait]
impl SecretStore for MemSecretStore {
    async fn read(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<SecretValue>, PortError> {
        self.outage.check("mem-secret-store")?;
        let s = lock(&self.state);
        let Some(entry) = s.get(path) else {
            return Ok(None);
        };
        let n = version.unwrap_or(entry.versions.len() as u64);
        let Some(idx) = n.checked_sub(1).and_then(|i| usize::try_from(i).ok()) else {
            return Ok(None);
        };
        Ok(entry.versions.get(idx).and_then(|v| {
            if v.deleted {
                return None;
            }
            v.data.clone().map(|data| SecretValue { version: n, data })
        }))
    }

    async fn write(
        &self,
        path: &str,
        data: &SecretData,
        cas: Option<u64>,
    ) -> Result<u64, PortError> {
        self.outage.check("mem-secret-store")?;
        if path.is_empty() || path.starts_with('/') {
            return Err(PortError::Invalid(format!("bad secret path {path:?}")));
        }
        let now = self.clock.wall();
        let mut s = lock(&self.state);
        let entry = s.entry(path.to_owned()).or_default();
        let current = entry.versions.len() as u64;
        if cas.is_some_and(|want| want != current) {
            return Err(PortError::PreconditionFailed {
                what: path.to_owned(),
            });
        }
        entry.versions.push(MemSecretVersion {
            created_at: now,
            data: Some(data.clone()),
            deleted: false,
        });
        Ok(current + 1)
    }

    async fn metadata(&self, path: &str) -> Result<Option<SecretMetadata>, PortError> {
        self.outage.check("mem-secret-store")?;
        let s = lock(&self.state);
        Ok(s.get(path).map(|e| SecretMetadata {
            current_version: e.versions.len() as u64,
            versions: e
                .versions
                .iter()
                .zip(1u64..)
                .map(|(v, n)| SecretVersionInfo {
                    version: n,
                    created_at: v.created_at,
                    deleted: v.deleted,
                    destroyed: v.data.is_none(),
                })
                .collect(),
            custom: e.custom.clone(),
        }))
    }

    async fn set_custom_metadata(
        &self,
        path: &str,
        custom: &BTreeMap<String, String>,
    ) -> Result<(), PortError> {
        self.outage.check("mem-secret-store")?;
        let mut s = lock(&self.state);
        s.entry(path.to_owned()).or_default().custom = custom.clone();
        Ok(())
    }

    async fn destroy_versions(&self, path: &str, versions: &[u64]) -> Result<(), PortError> {
        self.outage.check("mem-secret-store")?;
        let mut s = lock(&self.state);
        if let Some(e) = s.get_mut(path) {
            for &n in versions {
                if let Some(v) = n
                    .checked_sub(1)
                    .and_then(|i| usize::try_from(i).ok())
                    .and_then(|i| e.versions.get_mut(i))
                {
                    v.data = None;
                }
            }
        }
        Ok(())
    }
}

/// A resolver that answers from a table; anything not in it is NXDOMAIN.
#[derive(Debug, Clone)]
pub struct MemResolver {
    name: String,
    answers: Arc<Mutex<HashMap<(String, RecordKind), LookupOutcome>>>,
    down: Arc<Mutex<Option<LookupOutcome>>>,
}

impl MemResolver {
    /// An empty resolver named `name`.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            answers: Arc::default(),
            down: Arc::default(),
        }
    }

    /// A resolver serving the `sre.test.` zone that `cargo xtask services up` also serves,
    /// so the resolver contract suite runs unchanged against fake and real DNS.
    #[must_use]
    pub fn with_sre_test_zone(name: impl Into<String>) -> Self {
        let r = Self::new(name);
        let z = super::contract::ResolverFixture::sre_test();
        r.set(
            &z.a_name,
            RecordKind::A,
            LookupOutcome::Answer(vec![z.a_addr]),
        );
        r.set(
            &z.nodata_name,
            RecordKind::A,
            LookupOutcome::Answer(vec![z.nodata_a_addr]),
        );
        r.set(&z.nodata_name, RecordKind::Aaaa, LookupOutcome::NoData);
        r.set(
            &z.dual_name,
            RecordKind::A,
            LookupOutcome::Answer(vec![z.dual_a_addr]),
        );
        r.set(
            &z.dual_name,
            RecordKind::Aaaa,
            LookupOutcome::Answer(vec![z.dual_aaaa_addr]),
        );
        r
    }

    /// Sets the outcome for one name and record kind (names are matched without a
    /// trailing dot, case-insensitively, as DNS does).
    pub fn set(&self, name: &str, kind: RecordKind, outcome: LookupOutcome) {
        lock(&self.answers).insert((normalise(name), kind), outcome);
    }

    /// Sets one address for a name, choosing A or AAAA by the address family.
    pub fn set_addr(&self, name: &str, addr: IpAddr) {
        let kind = if addr.is_ipv4() {
            RecordKind::A
        } else {
            RecordKind::Aaaa
        };
        self.set(name, kind, LookupOutcome::Answer(vec![addr]));
    }

    /// Makes every lookup return `outcome` (e.g. `Timeout`), or restores answers with `None`.
    pub fn set_failure(&self, outcome: Option<LookupOutcome>) {
        *lock(&self.down) = outcome;
    }
}

fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[async_trait]
impl Resolver for MemResolver {
    fn name(&self) -> &str {
        &self.name
    }

    async fn lookup(&self, name: &str, kind: RecordKind) -> LookupOutcome {
        if let Some(o) = lock(&self.down).clone() {
            return o;
        }
        let n = normalise(name);
        let answers = lock(&self.answers);
        if let Some(o) = answers.get(&(n.clone(), kind)) {
            return o.clone();
        }
        // A name that exists with another record kind is NODATA, not NXDOMAIN.
        if answers.keys().any(|(k, _)| *k == n) {
            LookupOutcome::NoData
        } else {
            LookupOutcome::NxDomain
        }
    }
}

#[derive(Debug, Default)]
struct WitnessState {
    stored: Option<(Vec<u8>, u64)>,
    revisions: u64,
}

/// In-memory witness with compare-and-swap on a revision counter. It stores bytes, not
/// records, so that tests can plant a malformed record with [`MemWitness::put_raw`].
#[derive(Debug, Clone, Default)]
pub struct MemWitness {
    state: Arc<Mutex<WitnessState>>,
    outage: Outage,
}

impl MemWitness {
    /// A witness that has never held a lease.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores arbitrary bytes as the record (e.g. garbage, or another tool's JSON).
    pub fn put_raw(&self, bytes: Vec<u8>) {
        let mut s = lock(&self.state);
        s.revisions += 1;
        let rev = s.revisions;
        s.stored = Some((bytes, rev));
    }

    /// Makes the witness unreachable (every call fails with `Unavailable`) or reachable.
    pub fn set_unavailable(&self, down: bool) {
        self.outage.0.store(down, Ordering::SeqCst);
    }
}

#[async_trait]
impl Witness for MemWitness {
    async fn read(&self) -> Result<WitnessRead, PortError> {
        self.outage.check("mem-witness")?;
        let s = lock(&self.state);
        Ok(match &s.stored {
            None => WitnessRead::Absent,
            Some((bytes, rev)) => {
                let revision = Revision(rev.to_string());
                match LeaseRecord::from_bytes(bytes) {
                    Ok(record) => WitnessRead::Present { record, revision },
                    Err(error) => WitnessRead::Malformed { revision, error },
                }
            }
        })
    }

    async fn compare_and_swap(
        &self,
        expected: Option<&Revision>,
        record: &LeaseRecord,
    ) -> Result<CasOutcome, PortError> {
        self.outage.check("mem-witness")?;
        let mut s = lock(&self.state);
        let current = s.stored.as_ref().map(|(_, r)| Revision(r.to_string()));
        if current.as_ref() != expected {
            return Ok(CasOutcome::Conflict);
        }
        s.revisions += 1;
        let rev = s.revisions;
        s.stored = Some((record.to_bytes(), rev));
        Ok(CasOutcome::Swapped(Revision(rev.to_string())))
    }
}
