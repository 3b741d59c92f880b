//! Writing private files so that a crash or a concurrent reader never sees half of one.
//!
//! The client keeps two files that matter: the credential bundle (a bearer token) and the last
//! applied rule set (what keeps forwarding alive across restarts). Both are written the same
//! way: a temporary file next to the destination, created exclusively with mode 0600 (so the
//! secret is never readable by others, not even for a moment), written and fsynced, then moved
//! into place and the directory fsynced. Missing parent directories are created with mode 0700.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// What to do when the destination exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it.
    Replace,
    /// Fail with [`io::ErrorKind::AlreadyExists`] and leave it alone.
    Keep,
}

/// Creates `dir` and any missing parents with mode 0700 (existing ones are left as they are).
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

fn temp_path(dest: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = dest
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = format!(
        ".{name}.tmp-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    dest.with_file_name(tmp)
}

/// Atomically writes `bytes` to `dest` with mode 0600, creating its directory (0700) if needed.
/// With [`Existing::Keep`], an existing `dest` is an [`io::ErrorKind::AlreadyExists`] error, and
/// the check cannot race with another writer (the file is linked into place, which fails rather
/// than replaces).
pub fn write_private(dest: &Path, bytes: &[u8], existing: Existing) -> io::Result<()> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    private_dir(parent)?;
    let tmp = temp_path(dest);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        match existing {
            Existing::Replace => fs::rename(&tmp, dest)?,
            Existing::Keep => {
                fs::hard_link(&tmp, dest)?;
                fs::remove_file(&tmp)?;
            }
        }
        // Make the new directory entry durable too.
        if let Ok(dir) = File::open(parent) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_are_private_and_directories_too() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a/b/file.json");
        write_private(&dest, b"one", Existing::Keep).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"one");
        assert_eq!(mode(&dest), 0o600);
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    }

    #[test]
    fn keep_refuses_to_overwrite_and_replace_does() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("file");
        write_private(&dest, b"one", Existing::Keep).unwrap();
        let err = write_private(&dest, b"two", Existing::Keep).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&dest).unwrap(), b"one");
        write_private(&dest, b"three", Existing::Replace).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"three");
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file"]);
    }
}
