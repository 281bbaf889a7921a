//! [`FileWitness`]: the failover lease as one local file, for the drill and single-host
//! setups where every contender runs on the same machine (or shares one POSIX
//! filesystem with working `flock`).

use crate::error::{Error, Result};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use sre_core::PortError;
use sre_core::ports::{CasOutcome, LeaseRecord, Revision, Witness, WitnessRead};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BACKEND: &str = "file-witness";

/// How often a writer retries a lock that another writer holds. Short, because a CAS
/// holds the lock only for one small read, write and two fsyncs.
const LOCK_POLL: Duration = Duration::from_millis(2);

/// The [`Witness`] port on one file.
///
/// A compare-and-swap takes an exclusive lock on the sidecar `<file>.lock`, reads the
/// record, compares its revision (SHA-256 hex of the bytes) with the expected one, writes
/// the new record to `<file>.tmp`, fsyncs it, renames it over the record and fsyncs the
/// directory. Readers take no lock: `rename` is atomic, so a read sees the old or the new
/// record, never a mix, and a half-written temp file never becomes the record.
///
/// The revision is a content hash, so writing byte-identical records gives the same
/// revision (as with S3 `ETag`s). That is harmless: every change of holder bumps the
/// generation and every renewal moves `renewed_at`.
///
/// Never delete the lock file while contenders run; the lock is re-checked against the
/// path after locking, so a deleted-and-recreated lock file costs a retry, not safety.
#[derive(Debug, Clone)]
pub struct FileWitness {
    path: PathBuf,
    lock_path: PathBuf,
    tmp_path: PathBuf,
    lock_timeout: Duration,
}

impl FileWitness {
    /// How long a compare-and-swap waits for another writer's lock before it reports the
    /// witness `Unavailable`: a stuck writer must not stall the failover loop forever.
    pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

    /// The witness stored at `path`. The lock and temp files live next to it (same
    /// directory, so that the rename is atomic); the directory must exist.
    pub fn new(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let Some(name) = path.file_name() else {
            return Err(Error::InvalidPath { path });
        };
        let sibling = |suffix: &str| {
            let mut n = name.to_os_string();
            n.push(suffix);
            path.with_file_name(n)
        };
        Ok(Self {
            lock_path: sibling(".lock"),
            tmp_path: sibling(".tmp"),
            path,
            lock_timeout: Self::DEFAULT_LOCK_TIMEOUT,
        })
    }

    /// Changes how long a writer waits for the lock before giving up with `Unavailable`.
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The record's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_blocking(&self) -> Result<WitnessRead, PortError> {
        Ok(match read_current(&self.path)? {
            None => WitnessRead::Absent,
            Some(bytes) => {
                let revision = revision_of(&bytes);
                match LeaseRecord::from_bytes(&bytes) {
                    Ok(record) => WitnessRead::Present { record, revision },
                    Err(error) => {
                        // Garbage must never read as "no lease": failover holds on Malformed.
                        tracing::warn!(%error, "witness record does not parse");
                        WitnessRead::Malformed { revision, error }
                    }
                }
            }
        })
    }

    fn cas_blocking(
        &self,
        expected: Option<&Revision>,
        bytes: &[u8],
    ) -> Result<CasOutcome, PortError> {
        let lock = self.lock()?;
        let outcome = self.cas_locked(expected, bytes);
        // Closing the file releases the lock too; unlocking first keeps the critical
        // section visibly bounded, and an unlock error changes nothing already written.
        if let Err(e) = lock.unlock() {
            tracing::debug!(error = %e, "unlocking the witness lock file failed");
        }
        outcome
    }

    /// Holds the exclusive lock; every write of the record happens under it.
    fn lock(&self) -> Result<File, PortError> {
        let deadline = Instant::now() + self.lock_timeout;
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.lock_path)
                .map_err(|e| io_error("open lock file", &self.lock_path, &e))?;
            match file.try_lock() {
                Ok(()) if self.lock_is_current(&file)? => return Ok(file),
                // Busy, or the lock file was replaced while we waited (then our lock
                // guards nothing): try again.
                Ok(()) | Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => {
                    return Err(io_error("lock", &self.lock_path, &e));
                }
            }
            if Instant::now() >= deadline {
                return Err(PortError::Unavailable {
                    backend: BACKEND,
                    message: format!(
                        "lock {} held by another writer for more than {:?}",
                        self.lock_path.display(),
                        self.lock_timeout
                    ),
                });
            }
            std::thread::sleep(LOCK_POLL);
        }
    }

    #[cfg(unix)]
    fn lock_is_current(&self, file: &File) -> Result<bool, PortError> {
        use std::os::unix::fs::MetadataExt;
        let held = file
            .metadata()
            .map_err(|e| io_error("stat lock file", &self.lock_path, &e))?;
        Ok(match fs::metadata(&self.lock_path) {
            Ok(now) => now.dev() == held.dev() && now.ino() == held.ino(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_error("stat lock file", &self.lock_path, &e)),
        })
    }

    #[cfg(not(unix))]
    #[allow(clippy::unused_self, clippy::unnecessary_wraps)] // same signature as on unix
    fn lock_is_current(&self, _file: &File) -> Result<bool, PortError> {
        Ok(true)
    }

    fn cas_locked(
        &self,
        expected: Option<&Revision>,
        bytes: &[u8],
    ) -> Result<CasOutcome, PortError> {
        let current = read_current(&self.path)?.map(|b| revision_of(&b));
        if current.as_ref() != expected {
            return Ok(CasOutcome::Conflict);
        }
        if let Err(e) = write_synced(&self.tmp_path, bytes) {
            // Best effort: a leftover temp file is harmless (never read, truncated by the
            // next writer), but tidy up when we can.
            let _ = fs::remove_file(&self.tmp_path);
            return Err(io_error("write temp file", &self.tmp_path, &e));
        }
        fs::rename(&self.tmp_path, &self.path)
            .map_err(|e| io_error("rename temp file over", &self.path, &e))?;
        // Without this the rename itself may not survive a crash, and a restarted holder
        // could see the previous record (with an older generation) come back.
        sync_dir(&self.path).map_err(|e| io_error("fsync directory of", &self.path, &e))?;
        Ok(CasOutcome::Swapped(revision_of(bytes)))
    }
}

fn revision_of(bytes: &[u8]) -> Revision {
    Revision(hex::encode(Sha256::digest(bytes)))
}

fn read_current(path: &Path) -> Result<Option<Vec<u8>>, PortError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, &e)),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(unix)]
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
#[allow(clippy::unnecessary_wraps)] // same signature as on unix
fn sync_dir(_path: &Path) -> io::Result<()> {
    // Directories cannot be opened for fsync here; the rename is still atomic.
    Ok(())
}

fn io_error(op: &str, path: &Path, e: &io::Error) -> PortError {
    let message = format!("{op} {}: {e}", path.display());
    if e.kind() == io::ErrorKind::PermissionDenied {
        PortError::Rejected {
            backend: BACKEND,
            message,
        }
    } else {
        PortError::Unavailable {
            backend: BACKEND,
            message,
        }
    }
}

fn join_error(e: &tokio::task::JoinError) -> PortError {
    PortError::Unavailable {
        backend: BACKEND,
        message: format!("blocking file operation did not finish: {e}"),
    }
}

#[async_trait]
impl Witness for FileWitness {
    #[tracing::instrument(skip_all, fields(path = %self.path.display()))]
    async fn read(&self) -> Result<WitnessRead, PortError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_blocking())
            .await
            .map_err(|e| join_error(&e))?
    }

    /// Runs on a blocking thread. If the caller stops waiting (a timeout drops the
    /// future), the write still completes or fails on its own: like any witness call that
    /// timed out, the outcome is unknown until the next read.
    #[tracing::instrument(skip_all, fields(
        path = %self.path.display(),
        region = %record.holder,
        lease_epoch = %record.generation,
    ))]
    async fn compare_and_swap(
        &self,
        expected: Option<&Revision>,
        record: &LeaseRecord,
    ) -> Result<CasOutcome, PortError> {
        let this = self.clone();
        let expected = expected.cloned();
        let bytes = record.to_bytes();
        tokio::task::spawn_blocking(move || this.cas_blocking(expected.as_ref(), &bytes))
            .await
            .map_err(|e| join_error(&e))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_files_sit_next_to_the_record() {
        let w = FileWitness::new("/var/lib/sre/lease.json").expect("valid path");
        assert_eq!(w.lock_path, Path::new("/var/lib/sre/lease.json.lock"));
        assert_eq!(w.tmp_path, Path::new("/var/lib/sre/lease.json.tmp"));
    }

    #[test]
    fn a_path_without_file_name_is_rejected() {
        for p in ["", "/", "/tmp/.."] {
            assert!(
                matches!(FileWitness::new(p), Err(Error::InvalidPath { .. })),
                "{p:?}"
            );
        }
    }

    #[test]
    fn revision_is_the_sha256_hex_of_the_bytes() {
        assert_eq!(
            revision_of(b"abc").0,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
