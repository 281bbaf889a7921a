//! Evidence: an append-only, hash-chained audit log of what automation did and why
//! (GDPR erasures, failovers, rotations, approvals), that an auditor can check without
//! trusting the process that wrote it.
//!
//! # Chain
//!
//! Record `n` carries `seq = n` (the first record has `seq = 1`), the hash of record
//! `n - 1` in `prev_hash` (64 zeros, [`GENESIS_HASH`], for the first), and its own `hash`:
//!
//! `hash = hex(sha256(canonical bytes))`, where the canonical bytes are the compact JSON
//! (no whitespace, UTF-8) of this object, keys in exactly this order:
//!
//! ```text
//! {"format":"sre.evidence/v1","seq":<u64>,"at":"<RFC 3339, UTC, 9 fraction digits, Z>",
//!  "actor":"..","action":"..","subject":"..","details":<JSON, object keys sorted>,
//!  "prev_hash":"<64 hex>"}
//! ```
//!
//! Object keys inside `details` are sorted by their UTF-8 bytes at every depth, so the
//! hash does not depend on how a map happened to be ordered; numbers and strings are
//! written as `serde_json` writes them. The `format` tag makes a record of a future
//! format never hash like a v1 record.
//!
//! [`verify`] detects an edited, dropped (not last), reordered or duplicated record and
//! names it. Dropping the *last* records leaves a shorter chain that is perfectly valid
//! by itself, and anybody able to rewrite the whole log can recompute every hash; both
//! are caught only by comparing with a head kept somewhere the writer cannot change
//! (another bucket, a ticket, a signed message): [`verify_against`].
//!
//! # Sinks
//!
//! [`FileEvidenceLog`] (JSON lines on local disk) and [`ObjectStoreEvidenceLog`] (one
//! object per record, written create-only) both implement [`EvidenceSink`].

use crate::PortError;
use crate::ports::{ObjectStore, PutCondition};
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use thiserror::Error;

/// `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Format tag included in every record's canonical bytes.
pub const EVIDENCE_FORMAT: &str = "sre.evidence/v1";

/// One entry of the evidence log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRecord {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When it happened (wall clock of the writer).
    pub at: DateTime<Utc>,
    /// Who did it: a controller, an operator.
    pub actor: String,
    /// What was done (`dsr.erase`, `failover.promote`).
    pub action: String,
    /// What it was done to: an opaque id, never personal data.
    pub subject: String,
    /// Anything else an auditor needs.
    pub details: Value,
    /// `hash` of the previous record, or [`GENESIS_HASH`].
    pub prev_hash: String,
    /// `hex(sha256(canonical bytes))` of all the fields above.
    pub hash: String,
}

/// The canonical form that is hashed; field order is part of the format.
#[derive(Serialize)]
struct Canonical<'a> {
    format: &'static str,
    seq: u64,
    at: String,
    actor: &'a str,
    action: &'a str,
    subject: &'a str,
    details: SortedJson<'a>,
    prev_hash: &'a str,
}

/// Serialises a JSON value with object keys sorted at every depth, whatever map type
/// `serde_json` was built with (`preserve_order` keeps insertion order).
struct SortedJson<'a>(&'a Value);

impl Serialize for SortedJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                let mut m = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    m.serialize_entry(k, &SortedJson(v))?;
                }
                m.end()
            }
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&SortedJson(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

fn compute_hash(
    seq: u64,
    at: DateTime<Utc>,
    actor: &str,
    action: &str,
    subject: &str,
    details: &Value,
    prev_hash: &str,
) -> String {
    let canonical = Canonical {
        format: EVIDENCE_FORMAT,
        seq,
        at: at.to_rfc3339_opts(SecondsFormat::Nanos, true),
        actor,
        action,
        subject,
        details: SortedJson(details),
        prev_hash,
    };
    // Serialising strings, integers and a JSON value into a Vec cannot fail.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

impl EvidenceRecord {
    /// The hash this record should carry, recomputed from its other fields.
    #[must_use]
    pub fn compute_hash(&self) -> String {
        compute_hash(
            self.seq,
            self.at,
            &self.actor,
            &self.action,
            &self.subject,
            &self.details,
            &self.prev_hash,
        )
    }
}

/// The last record of a verified chain: what to anchor elsewhere, and what the next
/// record links to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChainHead {
    /// `seq` of the last record; 0 for an empty chain.
    pub seq: u64,
    /// `hash` of the last record; [`GENESIS_HASH`] for an empty chain.
    pub hash: String,
}

impl ChainHead {
    /// The head of an empty chain.
    #[must_use]
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }

    /// The head a chain has after `record`.
    #[must_use]
    pub fn of(record: &EvidenceRecord) -> Self {
        Self {
            seq: record.seq,
            hash: record.hash.clone(),
        }
    }
}

impl fmt::Display for ChainHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {} hash {}", self.seq, self.hash)
    }
}

/// How a chain fails verification. `index` is the position in the slice given, `seq`
/// what the record there claims.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The record's content does not match its hash: it was edited.
    #[error("evidence record seq {seq} (position {index}) does not match its hash: edited")]
    HashMismatch {
        /// Position in the slice.
        index: usize,
        /// The record's claimed seq.
        seq: u64,
    },
    /// A record is not the one expected at this position: one was dropped (seq too
    /// high), or records were reordered or duplicated (seq too low or repeated).
    #[error(
        "evidence record at position {index} has seq {found}, expected {expected}: dropped, reordered or duplicated records"
    )]
    UnexpectedSeq {
        /// Position in the slice.
        index: usize,
        /// The seq that should be there.
        expected: u64,
        /// The seq that is there.
        found: u64,
    },
    /// The record does not link to its predecessor's hash.
    #[error("evidence record seq {seq} (position {index}) does not link to the previous record")]
    BrokenLink {
        /// Position in the slice.
        index: usize,
        /// The record's seq.
        seq: u64,
    },
    /// The chain ends before the anchored head: records were cut off the end.
    #[error(
        "evidence chain ends at seq {found_seq}, but seq {expected_seq} was anchored: records missing at the end"
    )]
    TailMissing {
        /// The anchored seq.
        expected_seq: u64,
        /// The last seq present.
        found_seq: u64,
    },
    /// The record at the anchored seq is not the anchored one: the chain was rewritten.
    #[error("evidence record seq {seq} differs from the anchored head: the chain was rewritten")]
    AnchorMismatch {
        /// The anchored seq.
        seq: u64,
    },
}

impl ChainError {
    /// Stable label for metrics and logs.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::HashMismatch { .. } => "hash_mismatch",
            Self::UnexpectedSeq { .. } => "unexpected_seq",
            Self::BrokenLink { .. } => "broken_link",
            Self::TailMissing { .. } => "tail_missing",
            Self::AnchorMismatch { .. } => "anchor_mismatch",
        }
    }
}

/// Checks that `records` form a chain starting at the genesis head, and returns its head.
pub fn verify(records: &[EvidenceRecord]) -> Result<ChainHead, ChainError> {
    verify_from(&ChainHead::genesis(), records)
}

/// Checks that `records` continue the chain whose head was `anchor` (for logs whose
/// older part was archived or pruned under a retention policy), and returns the new head.
pub fn verify_from(
    anchor: &ChainHead,
    records: &[EvidenceRecord],
) -> Result<ChainHead, ChainError> {
    let mut head = anchor.clone();
    for (index, record) in records.iter().enumerate() {
        check_next(&head, index, record)?;
        head = ChainHead::of(record);
    }
    Ok(head)
}

/// Like [`verify`], and also checks that the chain contains the record `expected` names,
/// unchanged: a head anchored elsewhere earlier is the only defence against dropped
/// tail records and against a writer who rewrites the whole log. The log may have grown
/// since the anchor was taken; compare the returned head for an exact match.
pub fn verify_against(
    records: &[EvidenceRecord],
    expected: &ChainHead,
) -> Result<ChainHead, ChainError> {
    let head = verify(records)?;
    if expected.seq > head.seq {
        return Err(ChainError::TailMissing {
            expected_seq: expected.seq,
            found_seq: head.seq,
        });
    }
    let anchored_hash = match usize::try_from(expected.seq) {
        Ok(0) => GENESIS_HASH,
        // A verified chain from genesis holds seq n at index n - 1.
        Ok(n) => records.get(n - 1).map_or("", |r| r.hash.as_str()),
        Err(_) => "",
    };
    if anchored_hash != expected.hash {
        return Err(ChainError::AnchorMismatch { seq: expected.seq });
    }
    Ok(head)
}

fn check_next(head: &ChainHead, index: usize, record: &EvidenceRecord) -> Result<(), ChainError> {
    if record.compute_hash() != record.hash {
        return Err(ChainError::HashMismatch {
            index,
            seq: record.seq,
        });
    }
    let expected = head.seq.saturating_add(1);
    if record.seq != expected {
        return Err(ChainError::UnexpectedSeq {
            index,
            expected,
            found: record.seq,
        });
    }
    if record.prev_hash != head.hash {
        return Err(ChainError::BrokenLink {
            index,
            seq: record.seq,
        });
    }
    Ok(())
}

/// Builds records that link to each other: keeps the head and seals new records to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceChain {
    head: ChainHead,
}

impl Default for EvidenceChain {
    fn default() -> Self {
        Self::new()
    }
}

impl EvidenceChain {
    /// An empty chain.
    #[must_use]
    pub fn new() -> Self {
        Self::resume(ChainHead::genesis())
    }

    /// A chain continuing after `head` (taken from a verified log).
    #[must_use]
    pub fn resume(head: ChainHead) -> Self {
        Self { head }
    }

    /// The current head.
    #[must_use]
    pub fn head(&self) -> &ChainHead {
        &self.head
    }

    /// The record that would come next, without advancing: sinks write it first and
    /// [`EvidenceChain::accept`] it only once it is durable.
    #[must_use]
    pub fn seal(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: Value,
        at: DateTime<Utc>,
    ) -> EvidenceRecord {
        // 2^64 records cannot be written; were it reached, verify would reject the repeat.
        let seq = self.head.seq.saturating_add(1);
        let prev_hash = self.head.hash.clone();
        let hash = compute_hash(seq, at, actor, action, subject, &details, &prev_hash);
        EvidenceRecord {
            seq,
            at,
            actor: actor.to_owned(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            details,
            prev_hash,
            hash,
        }
    }

    /// Advances the head to `record` after checking that it is the valid next record.
    pub fn accept(&mut self, record: &EvidenceRecord) -> Result<(), ChainError> {
        check_next(&self.head, 0, record)?;
        self.head = ChainHead::of(record);
        Ok(())
    }

    /// Seals the next record and advances to it, for in-memory chains.
    pub fn append(
        &mut self,
        actor: &str,
        action: &str,
        subject: &str,
        details: Value,
        at: DateTime<Utc>,
    ) -> EvidenceRecord {
        let record = self.seal(actor, action, subject, details, at);
        self.head = ChainHead::of(&record);
        record
    }
}

/// Why an evidence log could not be read or appended to.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// The stored records do not form a valid chain.
    #[error("evidence chain is invalid")]
    Chain(#[from] ChainError),
    /// Reading or writing the log file failed.
    #[error("evidence log {path}: i/o error")]
    Io {
        /// The log file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another writer holds the log file: one writer per file, or seqs would collide.
    #[error("evidence log {path} is locked by another writer")]
    Locked {
        /// The log file.
        path: PathBuf,
    },
    /// The file ends in a partial line: a write was cut short (crash, full disk). Never
    /// dropped silently: an operator inspects it and truncates the file to `valid_len`.
    #[error(
        "evidence log {path} ends in an incomplete line {line}; the complete part is {valid_len} bytes"
    )]
    TruncatedTail {
        /// The log file.
        path: PathBuf,
        /// 1-based number of the incomplete line.
        line: usize,
        /// Length in bytes of the complete lines before it.
        valid_len: u64,
    },
    /// A stored record does not parse.
    #[error("evidence record at {location} does not parse: {message}")]
    Malformed {
        /// `file:line` or object key.
        location: String,
        /// The parse error.
        message: String,
    },
    /// An earlier append failed after it may have written part of a line; the log must
    /// be reopened (which checks the tail) before anything else is appended.
    #[error("evidence log {path} had a failed append; reopen it")]
    Poisoned {
        /// The log file.
        path: PathBuf,
    },
    /// An object-store call failed.
    #[error("evidence store access to {key} failed")]
    Store {
        /// The key involved (or the prefix for a listing).
        key: String,
        /// The port's error.
        #[source]
        source: PortError,
    },
    /// Another writer appended `seq` first. The log has been reloaded to `head`; seal
    /// the entry again to append it after that.
    #[error("evidence seq {seq} was written by another writer; head is now {head}")]
    Conflict {
        /// The seq that was lost.
        seq: u64,
        /// The head after reloading.
        head: ChainHead,
    },
    /// An object under the log's prefix is not a record key.
    #[error("unexpected object {key} under the evidence prefix")]
    UnexpectedKey {
        /// The key.
        key: String,
    },
    /// An object holds a record whose seq differs from its key: it was copied or moved.
    #[error("evidence object {key} holds seq {seq}")]
    KeyMismatch {
        /// The key.
        key: String,
        /// The seq inside.
        seq: u64,
    },
    /// A listed record disappeared before it could be read.
    #[error("evidence object {key} vanished while loading")]
    Vanished {
        /// The key.
        key: String,
    },
}

impl EvidenceError {
    /// Stable label for metrics and logs.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Chain(e) => e.kind(),
            Self::Io { .. } => "io",
            Self::Locked { .. } => "locked",
            Self::TruncatedTail { .. } => "truncated_tail",
            Self::Malformed { .. } => "malformed",
            Self::Poisoned { .. } => "poisoned",
            Self::Store { .. } => "store",
            Self::Conflict { .. } => "conflict",
            Self::UnexpectedKey { .. } => "unexpected_key",
            Self::KeyMismatch { .. } => "key_mismatch",
            Self::Vanished { .. } => "vanished",
        }
    }
}

/// Somewhere evidence is durably appended.
#[async_trait]
pub trait EvidenceSink: Send + Sync {
    /// Appends one record and returns it once it is durable.
    async fn append(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: Value,
        at: DateTime<Utc>,
    ) -> Result<EvidenceRecord, EvidenceError>;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a half-advanced head: the head moves
    // only after a write succeeded, and a failed write sets `poisoned` first.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn encode_line(record: &EvidenceRecord) -> Vec<u8> {
    // Compact JSON escapes newlines inside strings, so a record is exactly one line.
    // Serialising plain data with string keys cannot fail.
    let mut line = serde_json::to_vec(record).unwrap_or_default();
    line.push(b'\n');
    line
}

#[derive(Debug)]
struct FileState {
    file: File,
    chain: EvidenceChain,
    poisoned: bool,
}

/// Evidence as JSON lines in a local file, one record per line.
///
/// Opening reads and verifies the whole file, so appends always continue a valid chain.
/// The file is locked (advisory, `flock`) for as long as the log is open: two writers on
/// one file would both write the same seq. Each append is a single `write_all` of one
/// line followed by `fdatasync`, so a crash leaves at most one partial last line, which
/// the next open reports as [`EvidenceError::TruncatedTail`]. Appends block on disk I/O;
/// call them from a blocking-friendly task if that matters.
#[derive(Debug)]
pub struct FileEvidenceLog {
    path: PathBuf,
    state: Mutex<FileState>,
}

impl FileEvidenceLog {
    /// Opens (creating if missing) and verifies the log at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, EvidenceError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| EvidenceError::Io {
            path: path.clone(),
            source,
        };
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(EvidenceError::Locked { path }),
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        if !existed {
            sync_parent_dir(&path).map_err(io_err)?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err)?;
        let records = parse_lines(&path, &bytes)?;
        let head = verify(&records)?;
        Ok(Self {
            path,
            state: Mutex::new(FileState {
                file,
                chain: EvidenceChain::resume(head),
                poisoned: false,
            }),
        })
    }

    /// Reads and verifies a log without opening it for writing (for audits and
    /// `sre evidence verify`).
    pub fn read_records(path: impl AsRef<Path>) -> Result<Vec<EvidenceRecord>, EvidenceError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| EvidenceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let records = parse_lines(path, &bytes)?;
        verify(&records)?;
        Ok(records)
    }

    /// The head after the last durable append: what to anchor elsewhere.
    #[must_use]
    pub fn head(&self) -> ChainHead {
        lock(&self.state).chain.head().clone()
    }

    /// The log file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append_sync(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: Value,
        at: DateTime<Utc>,
    ) -> Result<EvidenceRecord, EvidenceError> {
        let mut state = lock(&self.state);
        if state.poisoned {
            return Err(EvidenceError::Poisoned {
                path: self.path.clone(),
            });
        }
        let record = state.chain.seal(actor, action, subject, details, at);
        let line = encode_line(&record);
        // Poison before writing: if the write fails or panics part-way, the file may end
        // in a partial line and nothing may be appended after it.
        state.poisoned = true;
        // fdatasync also flushes the file size, which is all the metadata an append needs.
        let written = state
            .file
            .write_all(&line)
            .and_then(|()| state.file.sync_data());
        written.map_err(|source| EvidenceError::Io {
            path: self.path.clone(),
            source,
        })?;
        state.poisoned = false;
        state.chain.accept(&record)?;
        Ok(record)
    }
}

#[async_trait]
impl EvidenceSink for FileEvidenceLog {
    async fn append(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: Value,
        at: DateTime<Utc>,
    ) -> Result<EvidenceRecord, EvidenceError> {
        self.append_sync(actor, action, subject, details, at)
    }
}

/// Makes a newly created file's directory entry durable, so a crash right after the
/// first append cannot lose the whole file.
#[cfg(unix)]
fn sync_parent_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

#[cfg(not(unix))]
fn sync_parent_dir(_path: &Path) -> io::Result<()> {
    // Directories cannot be opened for syncing on this platform; NTFS journals the entry.
    Ok(())
}

fn parse_lines(path: &Path, bytes: &[u8]) -> Result<Vec<EvidenceRecord>, EvidenceError> {
    let complete_len = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    let complete = &bytes[..complete_len];
    let lines: Vec<&[u8]> = if complete.is_empty() {
        Vec::new()
    } else {
        complete[..complete.len() - 1]
            .split(|&b| b == b'\n')
            .collect()
    };
    if complete_len < bytes.len() {
        return Err(EvidenceError::TruncatedTail {
            path: path.to_path_buf(),
            line: lines.len() + 1,
            valid_len: complete_len as u64,
        });
    }
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_slice(line).map_err(|e| EvidenceError::Malformed {
                location: format!("{}:{}", path.display(), i + 1),
                message: e.to_string(),
            })
        })
        .collect()
}

/// Evidence in an object store: one object per record at `<prefix>/<seq, 20 digits>.json`.
///
/// Each record is written create-only ([`PutCondition::IfAbsent`]), so two writers can
/// never both append the same seq: the loser gets [`EvidenceError::Conflict`] after its
/// head was caught up, and appends again. A write whose outcome is unknown (timeout) is
/// found on the next append the same way; at worst the caller records the event twice,
/// never breaks the chain.
pub struct ObjectStoreEvidenceLog {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    head: Mutex<ChainHead>,
}

impl fmt::Debug for ObjectStoreEvidenceLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreEvidenceLog")
            .field("prefix", &self.prefix)
            .field("head", &*lock(&self.head))
            .finish_non_exhaustive()
    }
}

impl ObjectStoreEvidenceLog {
    /// Loads and verifies the log under `prefix` (no trailing slash) and opens it for
    /// appending after its head.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        prefix: impl Into<String>,
    ) -> Result<Self, EvidenceError> {
        let prefix = prefix.into();
        let records = Self::load(store.as_ref(), &prefix).await?;
        let head = records
            .last()
            .map_or_else(ChainHead::genesis, ChainHead::of);
        Ok(Self {
            store,
            prefix,
            head: Mutex::new(head),
        })
    }

    /// Lists, reads and verifies every record under `prefix`.
    pub async fn load(
        store: &dyn ObjectStore,
        prefix: &str,
    ) -> Result<Vec<EvidenceRecord>, EvidenceError> {
        let list_prefix = format!("{prefix}/");
        let metas = store
            .list(&list_prefix)
            .await
            .map_err(|source| EvidenceError::Store {
                key: list_prefix.clone(),
                source,
            })?;
        let mut records = Vec::with_capacity(metas.len());
        for meta in metas {
            let seq = seq_of_key(&list_prefix, &meta.key).ok_or_else(|| {
                EvidenceError::UnexpectedKey {
                    key: meta.key.clone(),
                }
            })?;
            let record = read_record(store, &meta.key)
                .await?
                .ok_or(EvidenceError::Vanished {
                    key: meta.key.clone(),
                })?;
            if record.seq != seq {
                return Err(EvidenceError::KeyMismatch {
                    key: meta.key,
                    seq: record.seq,
                });
            }
            records.push(record);
        }
        verify(&records)?;
        Ok(records)
    }

    /// The object key of record `seq`.
    #[must_use]
    pub fn key_for(&self, seq: u64) -> String {
        record_key(&self.prefix, seq)
    }

    /// The head after the last append this log knows of.
    #[must_use]
    pub fn head(&self) -> ChainHead {
        lock(&self.head).clone()
    }

    /// Reads records written by others after our head, verifying each link, and moves
    /// the head to the last one.
    async fn catch_up(&self) -> Result<ChainHead, EvidenceError> {
        let mut chain = EvidenceChain::resume(self.head());
        loop {
            let key = self.key_for(chain.head().seq.saturating_add(1));
            let Some(record) = read_record(self.store.as_ref(), &key).await? else {
                break;
            };
            chain.accept(&record)?;
        }
        let head = chain.head().clone();
        let mut shared = lock(&self.head);
        if shared.seq < head.seq {
            *shared = head.clone();
        }
        Ok(shared.clone())
    }
}

#[async_trait]
impl EvidenceSink for ObjectStoreEvidenceLog {
    async fn append(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: Value,
        at: DateTime<Utc>,
    ) -> Result<EvidenceRecord, EvidenceError> {
        let record = EvidenceChain::resume(self.head()).seal(actor, action, subject, details, at);
        let key = self.key_for(record.seq);
        let body = encode_line(&record);
        match self.store.put(&key, body, PutCondition::IfAbsent).await {
            Ok(_) => {
                let mut head = lock(&self.head);
                if head.seq < record.seq {
                    *head = ChainHead::of(&record);
                }
                Ok(record)
            }
            Err(PortError::PreconditionFailed { .. }) => {
                let head = self.catch_up().await?;
                Err(EvidenceError::Conflict {
                    seq: record.seq,
                    head,
                })
            }
            Err(source) => Err(EvidenceError::Store { key, source }),
        }
    }
}

fn record_key(prefix: &str, seq: u64) -> String {
    format!("{prefix}/{seq:020}.json")
}

fn seq_of_key(list_prefix: &str, key: &str) -> Option<u64> {
    let digits = key.strip_prefix(list_prefix)?.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

async fn read_record(
    store: &dyn ObjectStore,
    key: &str,
) -> Result<Option<EvidenceRecord>, EvidenceError> {
    let Some(object) = store
        .get(key)
        .await
        .map_err(|source| EvidenceError::Store {
            key: key.to_owned(),
            source,
        })?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&object.body)
        .map(Some)
        .map_err(|e| EvidenceError::Malformed {
            location: key.to_owned(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemObjectStore;
    use proptest::prelude::*;
    use proptest::sample::Index;
    use serde_json::json;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + secs, 0).unwrap_or_default()
    }

    fn chain_of(n: usize) -> Vec<EvidenceRecord> {
        let mut chain = EvidenceChain::new();
        (0..n)
            .map(|i| {
                let i64i = i64::try_from(i).unwrap_or(0);
                chain.append(
                    "gdpr-controller",
                    "dsr.erase",
                    &format!("dsr-{i}"),
                    json!({"n": i}),
                    t(i64i),
                )
            })
            .collect()
    }

    #[test]
    fn genesis_and_links() {
        let records = chain_of(3);
        assert_eq!(records[0].seq, 1);
        assert_eq!(records[0].prev_hash, GENESIS_HASH);
        assert_eq!(records[1].prev_hash, records[0].hash);
        assert_eq!(records[2].prev_hash, records[1].hash);
        assert_eq!(verify(&records), Ok(ChainHead::of(&records[2])));
        assert_eq!(verify(&[]), Ok(ChainHead::genesis()));
    }

    #[test]
    fn canonical_bytes_are_pinned() {
        // A change of the canonical form would orphan every stored log: pin one hash.
        let mut chain = EvidenceChain::new();
        let r = chain.append("a", "b", "c", json!({"z": 1, "a": [true, null, "x"]}), t(0));
        let canonical = "{\"format\":\"sre.evidence/v1\",\"seq\":1,\"at\":\"2026-01-01T00:00:00.000000000Z\",\
                         \"actor\":\"a\",\"action\":\"b\",\"subject\":\"c\",\
                         \"details\":{\"a\":[true,null,\"x\"],\"z\":1},\"prev_hash\":\"";
        let expected = hex::encode(Sha256::digest(
            format!("{canonical}{GENESIS_HASH}\"}}").as_bytes(),
        ));
        assert_eq!(r.hash, expected);
    }

    #[test]
    fn details_key_order_does_not_change_the_hash() {
        let mut a = serde_json::Map::new();
        a.insert("b".into(), json!(1));
        a.insert("a".into(), json!({"y": 2, "x": 3}));
        let mut b = serde_json::Map::new();
        b.insert("a".into(), json!({"x": 3, "y": 2}));
        b.insert("b".into(), json!(1));
        let ra = EvidenceChain::new().seal("x", "y", "z", Value::Object(a), t(0));
        let rb = EvidenceChain::new().seal("x", "y", "z", Value::Object(b), t(0));
        assert_eq!(ra.hash, rb.hash);
    }

    #[test]
    fn verify_names_the_broken_record() {
        let records = chain_of(4);
        let mut edited = records.clone();
        edited[2].subject = "someone-else".into();
        assert_eq!(
            verify(&edited),
            Err(ChainError::HashMismatch { index: 2, seq: 3 })
        );
        let mut dropped = records.clone();
        dropped.remove(1);
        assert_eq!(
            verify(&dropped),
            Err(ChainError::UnexpectedSeq {
                index: 1,
                expected: 2,
                found: 3
            })
        );
        let mut swapped = records.clone();
        swapped.swap(0, 3);
        assert_eq!(
            verify(&swapped),
            Err(ChainError::UnexpectedSeq {
                index: 0,
                expected: 1,
                found: 4
            })
        );
        let mut duplicated = records.clone();
        duplicated.insert(2, records[1].clone());
        assert_eq!(
            verify(&duplicated),
            Err(ChainError::UnexpectedSeq {
                index: 2,
                expected: 3,
                found: 2
            })
        );
        // A record re-sealed onto another chain keeps a valid hash but not the link.
        let mut foreign = records.clone();
        let mut other = EvidenceChain::resume(ChainHead {
            seq: 2,
            hash: "ab".repeat(32),
        });
        foreign[2] = other.append("x", "y", "z", json!(null), t(9));
        assert_eq!(
            verify(&foreign),
            Err(ChainError::BrokenLink { index: 2, seq: 3 })
        );
    }

    #[test]
    fn dropped_tail_is_caught_only_against_an_anchor() {
        let records = chain_of(5);
        let anchor = ChainHead::of(&records[4]);
        let cut = &records[..3];
        assert!(verify(cut).is_ok(), "a cut chain is valid by itself");
        assert_eq!(
            verify_against(cut, &anchor),
            Err(ChainError::TailMissing {
                expected_seq: 5,
                found_seq: 3
            })
        );
        assert_eq!(verify_against(&records, &anchor), Ok(anchor.clone()));
        // An older anchor still holds after the log grew.
        let old = ChainHead::of(&records[1]);
        assert_eq!(verify_against(&records, &old), Ok(anchor));
        assert_eq!(
            verify_against(&records, &ChainHead::genesis()).map(|h| h.seq),
            Ok(5)
        );
        // A rewritten chain (all hashes recomputed) does not match the anchor.
        let mut rewritten = EvidenceChain::new();
        let forged: Vec<_> = records
            .iter()
            .map(|r| {
                rewritten.append(
                    &r.actor,
                    "nothing.happened",
                    &r.subject,
                    r.details.clone(),
                    r.at,
                )
            })
            .collect();
        assert!(verify(&forged).is_ok());
        assert_eq!(
            verify_against(&forged, &old),
            Err(ChainError::AnchorMismatch { seq: 2 })
        );
    }

    #[test]
    fn verify_from_continues_a_pruned_chain() {
        let records = chain_of(6);
        let anchor = ChainHead::of(&records[2]);
        assert_eq!(
            verify_from(&anchor, &records[3..]),
            Ok(ChainHead::of(&records[5]))
        );
        assert!(verify(&records[3..]).is_err());
    }

    #[test]
    fn accept_refuses_a_record_that_does_not_follow() {
        let records = chain_of(3);
        let mut chain = EvidenceChain::new();
        assert_eq!(chain.accept(&records[0]), Ok(()));
        assert_eq!(
            chain.accept(&records[2]),
            Err(ChainError::UnexpectedSeq {
                index: 0,
                expected: 2,
                found: 3
            })
        );
        assert_eq!(chain.head(), &ChainHead::of(&records[0]));
    }

    fn edit(record: &mut EvidenceRecord, field: u8) {
        fn flip(hex: &mut String) {
            let first = if hex.starts_with('0') { "1" } else { "0" };
            hex.replace_range(0..1, first);
        }
        match field {
            0 => record.seq = record.seq.wrapping_add(1),
            1 => record.at += chrono::Duration::nanoseconds(1),
            2 => record.actor.push('x'),
            3 => record.action.push('x'),
            4 => record.subject.push('x'),
            5 => record.details = json!({"edited": true}),
            6 => flip(&mut record.prev_hash),
            _ => flip(&mut record.hash),
        }
    }

    fn arb_chain() -> impl Strategy<Value = Vec<EvidenceRecord>> {
        proptest::collection::vec(
            (
                "[a-z-]{0,8}",
                "[a-z.]{0,8}",
                "\\PC{0,8}",
                any::<i64>(),
                0i64..1_000_000,
            ),
            1..20,
        )
        .prop_map(|entries| {
            let mut chain = EvidenceChain::new();
            entries
                .into_iter()
                .map(|(actor, action, subject, n, secs)| {
                    chain.append(
                        &actor,
                        &action,
                        &subject,
                        json!({"n": n, "s": subject}),
                        t(secs),
                    )
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn untouched_chain_verifies(records in arb_chain()) {
            let last = records.last().map(ChainHead::of);
            prop_assert_eq!(verify(&records).ok(), last);
        }

        #[test]
        fn any_single_edit_is_detected(records in arb_chain(), at: Index, field in 0u8..8) {
            let mut tampered = records.clone();
            let i = at.index(tampered.len());
            edit(&mut tampered[i], field);
            prop_assert_ne!(&tampered[i], &records[i]);
            prop_assert!(verify(&tampered).is_err());
        }

        #[test]
        fn dropping_a_non_last_record_is_detected(records in arb_chain(), at: Index) {
            prop_assume!(records.len() >= 2);
            let mut tampered = records.clone();
            tampered.remove(at.index(records.len() - 1));
            prop_assert!(verify(&tampered).is_err());
        }

        #[test]
        fn swapping_two_records_is_detected(records in arb_chain(), a: Index, b: Index) {
            let (i, j) = (a.index(records.len()), b.index(records.len()));
            prop_assume!(i != j);
            let mut tampered = records.clone();
            tampered.swap(i, j);
            prop_assert!(verify(&tampered).is_err());
        }

        #[test]
        fn duplicating_a_record_is_detected(records in arb_chain(), a: Index, b: Index) {
            let mut tampered = records.clone();
            let dup = records[a.index(records.len())].clone();
            tampered.insert(b.index(records.len() + 1), dup);
            prop_assert!(verify(&tampered).is_err());
        }

        #[test]
        fn records_survive_a_json_round_trip(records in arb_chain()) {
            let lines: Vec<u8> = records.iter().flat_map(encode_line).collect();
            let parsed = parse_lines(Path::new("mem"), &lines);
            prop_assert!(matches!(parsed, Ok(ref p) if *p == records));
        }
    }

    async fn append_n(sink: &dyn EvidenceSink, from: i64, n: i64) -> Vec<EvidenceRecord> {
        let mut out = Vec::new();
        for i in from..from + n {
            let r = sink
                .append(
                    "rotation-controller",
                    "secret.rotate",
                    &format!("db/{i}"),
                    json!({"i": i}),
                    t(i),
                )
                .await;
            out.push(r.unwrap_or_else(|e| panic!("append {i}: {e}")));
        }
        out
    }

    #[tokio::test]
    async fn file_log_reopens_and_continues() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("evidence.jsonl");
        {
            let log = FileEvidenceLog::open(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(log.head(), ChainHead::genesis());
            append_n(&log, 0, 3).await;
            assert_eq!(log.head().seq, 3);
        }
        let log = FileEvidenceLog::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(log.head().seq, 3);
        let more = append_n(&log, 3, 2).await;
        assert_eq!(more[0].seq, 4);
        drop(log);
        let records = FileEvidenceLog::read_records(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(records.len(), 5);
        assert_eq!(records[3], more[0]);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(text.lines().count(), 5);
    }

    #[tokio::test]
    async fn file_log_reports_a_truncated_last_line() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("evidence.jsonl");
        {
            let log = FileEvidenceLog::open(&path).unwrap_or_else(|e| panic!("{e}"));
            append_n(&log, 0, 3).await;
        }
        let bytes = std::fs::read(&path).unwrap_or_default();
        let two_lines = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(1)
            .map_or(0, |(i, _)| i + 1);
        // Cut mid-record, and also just the final newline: both are incomplete writes.
        for cut in [bytes.len() - 10, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap_or_else(|e| panic!("{e}"));
            match FileEvidenceLog::open(&path) {
                Err(EvidenceError::TruncatedTail {
                    line, valid_len, ..
                }) => {
                    assert_eq!((line, valid_len), (3, two_lines as u64));
                }
                other => panic!("cut at {cut}: expected TruncatedTail, got {other:?}"),
            }
            assert_eq!(
                std::fs::read(&path).unwrap_or_default(),
                &bytes[..cut],
                "open never rewrites"
            );
        }
    }

    #[tokio::test]
    async fn file_log_rejects_edits_garbage_and_second_writer() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("evidence.jsonl");
        let log = FileEvidenceLog::open(&path).unwrap_or_else(|e| panic!("{e}"));
        append_n(&log, 0, 3).await;
        assert_eq!(
            FileEvidenceLog::open(&path).err().map(|e| e.kind()),
            Some("locked")
        );
        drop(log);

        let text = std::fs::read_to_string(&path).unwrap_or_default();
        std::fs::write(&path, text.replace("db/1", "db/9")).unwrap_or_else(|e| panic!("{e}"));
        let err = FileEvidenceLog::open(&path).err();
        assert!(
            matches!(
                err,
                Some(EvidenceError::Chain(ChainError::HashMismatch {
                    seq: 2,
                    ..
                }))
            ),
            "{err:?}"
        );

        std::fs::write(&path, format!("{text}not json\n")).unwrap_or_else(|e| panic!("{e}"));
        let err = FileEvidenceLog::open(&path).err();
        assert!(
            matches!(&err, Some(EvidenceError::Malformed { location, .. }) if location.ends_with(":4")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn object_log_appends_create_only_and_loads() {
        let mem = MemObjectStore::new();
        let store: Arc<dyn ObjectStore> = Arc::new(mem.clone());
        let log = ObjectStoreEvidenceLog::open(store.clone(), "evidence/gdpr")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let written = append_n(&log, 0, 3).await;
        assert_eq!(log.key_for(2), "evidence/gdpr/00000000000000000002.json");
        let keys: Vec<_> = store
            .list("evidence/gdpr/")
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys.len(), 3);
        let loaded = ObjectStoreEvidenceLog::load(store.as_ref(), "evidence/gdpr")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(loaded, written);
        let reopened = ObjectStoreEvidenceLog::open(store, "evidence/gdpr")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(reopened.head(), ChainHead::of(&written[2]));
    }

    #[tokio::test]
    async fn object_log_second_writer_gets_a_conflict_then_continues() {
        let store: Arc<dyn ObjectStore> = Arc::new(MemObjectStore::new());
        let a = ObjectStoreEvidenceLog::open(store.clone(), "ev")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let b = ObjectStoreEvidenceLog::open(store.clone(), "ev")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let first = append_n(&a, 0, 2).await;
        let err = b
            .append("other", "failover.promote", "region-b", json!({}), t(5))
            .await;
        match err {
            Err(EvidenceError::Conflict { seq, head }) => {
                assert_eq!(seq, 1);
                assert_eq!(head, ChainHead::of(&first[1]), "caught up to a's head");
            }
            other => panic!("expected a conflict, got {other:?}"),
        }
        let third = b
            .append("other", "failover.promote", "region-b", json!({}), t(5))
            .await;
        assert_eq!(third.map(|r| r.seq).ok(), Some(3));
        let loaded = ObjectStoreEvidenceLog::load(store.as_ref(), "ev").await;
        assert_eq!(loaded.map(|r| r.len()).ok(), Some(3));
    }

    #[tokio::test]
    async fn object_log_load_detects_tampering() {
        let mem = MemObjectStore::new();
        let store: Arc<dyn ObjectStore> = Arc::new(mem.clone());
        let log = ObjectStoreEvidenceLog::open(store.clone(), "ev")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let written = append_n(&log, 0, 3).await;
        let load = || ObjectStoreEvidenceLog::load(store.as_ref(), "ev");

        let mut edited = written[1].clone();
        edited.action = "nothing.happened".into();
        mem.tamper(&log.key_for(2), encode_line(&edited));
        assert_eq!(load().await.err().map(|e| e.kind()), Some("hash_mismatch"));
        mem.tamper(&log.key_for(2), encode_line(&written[1]));
        assert!(load().await.is_ok());

        mem.tamper(&log.key_for(2), encode_line(&written[2]));
        assert_eq!(load().await.err().map(|e| e.kind()), Some("key_mismatch"));
        store
            .delete(&log.key_for(2))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            load().await,
            Err(EvidenceError::Chain(ChainError::UnexpectedSeq {
                expected: 2,
                found: 3,
                ..
            }))
        ));
        mem.tamper(&log.key_for(2), encode_line(&written[1]));
        mem.tamper("ev/notes.txt", b"hello".to_vec());
        assert_eq!(load().await.err().map(|e| e.kind()), Some("unexpected_key"));
    }
}
