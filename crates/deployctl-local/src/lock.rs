//! The deploy lock of the local target: an `flock` on `local-<container>.lock` in the
//! runtime directory (`$XDG_RUNTIME_DIR/deployctl-locks`, else the temporary directory).
//!
//! The operating system makes it atomic and frees it when its holder dies, so it needs no
//! lease: a killed deploy never leaves it held. The file says who holds it (for the message
//! of a run that waits); it is truncated, never deleted, so every run locks the same inode.
//! The lock is per machine: an engine reached over `DOCKER_HOST` from several machines is
//! not covered.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use deployctl_core::{Acquire, DeployLock, LockHolder, LockOwner, StageError};

use crate::error::LocalError;

/// The file lock of one container.
#[derive(Debug, Clone)]
pub(crate) struct FileLock {
    path: PathBuf,
    /// The open, locked file while this run holds the lock, with the holder's id.
    held: Arc<Mutex<Option<(File, String)>>>,
}

impl FileLock {
    pub fn for_container(container: &str) -> Self {
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        Self::at(
            base.join("deployctl-locks")
                .join(format!("local-{container}.lock")),
        )
    }

    pub fn at(path: PathBuf) -> Self {
        Self {
            path,
            held: Arc::new(Mutex::new(None)),
        }
    }

    fn err(&self, what: &str, e: &dyn std::fmt::Display) -> StageError {
        LocalError::Missing(format!(
            "cannot {what} the lock file {}: {e}",
            self.path.display()
        ))
        .into()
    }

    fn open(&self) -> Result<File, StageError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.err("create the directory of", &e))?;
        }
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)
            .map_err(|e| self.err("open", &e))
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(File, String)>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Who the file says holds it.
    fn recorded(file: &mut File) -> Option<LockHolder> {
        let mut text = String::new();
        file.seek(SeekFrom::Start(0)).ok()?;
        file.take(4096).read_to_string(&mut text).ok()?;
        let mut lines = text.lines();
        let id = lines.next()?.to_owned();
        let who = lines.next().unwrap_or(&id).to_owned();
        let since = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
        Some(LockHolder::new(id, who, since, None))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[async_trait]
impl DeployLock for FileLock {
    fn describe(&self) -> String {
        format!("file lock {}", self.path.display())
    }

    async fn try_acquire(&self, owner: &LockOwner, _ttl: Duration) -> Result<Acquire, StageError> {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|(_, id)| *id == owner.id) {
            return Ok(Acquire::Taken);
        }
        let mut file = self.open()?;
        match file.try_lock() {
            Ok(()) => {
                let record = format!("{}\n{}\n{}\n", owner.id, owner.who, now_ms());
                file.set_len(0)
                    .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
                    .and_then(|()| file.write_all(record.as_bytes()))
                    .map_err(|e| self.err("write", &e))?;
                *slot = Some((file, owner.id.clone()));
                Ok(Acquire::Taken)
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = Self::recorded(&mut file).unwrap_or_else(|| {
                    LockHolder::new("unknown", "another process on this machine", now_ms(), None)
                });
                Ok(Acquire::Held(holder))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(self.err("lock", &e)),
        }
    }

    async fn renew(&self, owner: &LockOwner, _ttl: Duration) -> Result<(), StageError> {
        // The operating system holds it for as long as the file is open: nothing to extend.
        if self.slot().as_ref().is_some_and(|(_, id)| *id == owner.id) {
            Ok(())
        } else {
            Err(self.err("renew", &"this run does not hold it"))
        }
    }

    async fn release(&self, owner: &LockOwner) -> Result<(), StageError> {
        let mut slot = self.slot();
        if slot.as_ref().is_some_and(|(_, id)| *id == owner.id)
            && let Some((file, _)) = slot.take()
        {
            // Cleared first, so a later reader does not name a holder that has gone.
            let _ = file.set_len(0);
            file.unlock().map_err(|e| self.err("unlock", &e))?;
        }
        Ok(())
    }

    async fn holder(&self) -> Result<Option<LockHolder>, StageError> {
        let mut file = self.open()?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                Ok(None)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(Self::recorded(&mut file)),
            Err(std::fs::TryLockError::Error(e)) => Err(self.err("lock", &e)),
        }
    }

    async fn break_lock(&self) -> Result<Option<LockHolder>, StageError> {
        match self.holder().await? {
            None => Ok(None),
            // A file lock is only ever held by a live process: there is no stale one to break.
            Some(h) => Err(LocalError::Missing(format!(
                "the {} is held by a running process, {}: it is freed when that process ends; \
                 stop it rather than break the lock",
                self.describe(),
                h.who
            ))
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(n: u8) -> LockOwner {
        LockOwner::new(format!("run-{n}"), format!("me (run {n})"))
    }

    #[tokio::test]
    async fn one_holder_at_a_time_named_to_the_next_and_freed_on_release_or_drop() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("locks/local-web.lock");
        let a = FileLock::at(path.clone());
        let b = FileLock::at(path.clone());
        let ttl = Duration::from_secs(60);
        assert_eq!(
            a.try_acquire(&owner(1), ttl).await.ok(),
            Some(Acquire::Taken)
        );
        assert_eq!(
            a.try_acquire(&owner(1), ttl).await.ok(),
            Some(Acquire::Taken)
        );
        match b.try_acquire(&owner(2), ttl).await {
            Ok(Acquire::Held(h)) => {
                assert_eq!(h.id, "run-1");
                assert_eq!(h.who, "me (run 1)");
                assert_eq!(h.expires_at_ms, None, "the OS frees it; no lease");
            }
            other => panic!("{other:?}"),
        }
        assert!(a.renew(&owner(1), ttl).await.is_ok());
        assert!(b.renew(&owner(2), ttl).await.is_err());
        let err = b
            .break_lock()
            .await
            .err()
            .map(|e| e.message)
            .unwrap_or_default();
        assert!(
            err.contains("held by a running process, me (run 1)"),
            "{err}"
        );
        a.release(&owner(1)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.holder().await.ok(), Some(None));
        assert_eq!(
            b.try_acquire(&owner(2), ttl).await.ok(),
            Some(Acquire::Taken)
        );
        // A holder that goes away without releasing (a killed process closes its files).
        drop(b);
        let c = FileLock::at(path.clone());
        assert_eq!(
            c.try_acquire(&owner(3), ttl).await.ok(),
            Some(Acquire::Taken)
        );
        let seen = FileLock::at(path)
            .holder()
            .await
            .ok()
            .flatten()
            .map(|h| h.id);
        assert_eq!(seen.as_deref(), Some("run-3"));
    }
}
