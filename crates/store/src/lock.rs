//! The single-instance lock: `<db>.lock`, held for a server's lifetime.
//!
//! Servers take an exclusive, non-blocking `flock` on a file beside the database (never on the
//! database itself, whose locks belong to SQLite). A second server, or a `restore`/`reset` run while a
//! server is up, finds it held and stops with exit 75 instead of pulling files out from under it. The
//! holder writes its pid into the file so the refusal can say who holds it. CLIs that many processes
//! run at once do not take it; SQLite's own locking serialises them.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsys;

/// An acquired instance lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// The lock file that guards `db`.
    pub fn path_for(db: &Path) -> PathBuf {
        fsys::with_suffix(db, ".lock")
    }

    /// Takes the lock guarding `db`, creating the lock file (0600) if needed.
    pub fn acquire(db: &Path) -> Result<InstanceLock> {
        let path = Self::path_for(db);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io("open lock file", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(in_use(&path, &mut file)),
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        // Record who holds it; a failure here only costs the holder's name in others' messages.
        let _ = file
            .set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush());
        Ok(InstanceLock { file, path })
    }

    /// Fails with [`Error::InUse`] if someone holds the lock guarding `db`; creates nothing.
    pub fn ensure_free(db: &Path) -> Result<()> {
        let path = Self::path_for(db);
        let mut file = match OpenOptions::new().read(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("open lock file", &path, e)),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(()),
            Err(TryLockError::WouldBlock) => Err(in_use(&path, &mut file)),
            Err(TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

fn in_use(path: &Path, file: &mut File) -> Error {
    let mut content = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.take(32).read_to_string(&mut content);
    let holder = match content.trim().parse::<u32>() {
        Ok(pid) => format!("pid {pid}"),
        Err(_) => "another process".to_string(),
    };
    Error::InUse {
        lock: path.to_path_buf(),
        holder,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_holders_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("state.db");
        let first = InstanceLock::acquire(&db).unwrap();
        // A second open file description conflicts even within one process, like a second server.
        let error = InstanceLock::acquire(&db).unwrap_err();
        assert_eq!(error.exit_code(), 75);
        assert!(
            error
                .to_string()
                .contains(&format!("held by pid {}", std::process::id())),
            "{error}"
        );
        assert!(InstanceLock::ensure_free(&db).is_err());
        drop(first);
        InstanceLock::ensure_free(&db).unwrap();
        InstanceLock::acquire(&db).unwrap();
    }

    #[test]
    fn probing_a_missing_lock_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("state.db");
        InstanceLock::ensure_free(&db).unwrap();
        assert!(!InstanceLock::path_for(&db).exists());
    }
}
