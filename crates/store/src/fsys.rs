//! The filesystem around the database file.
//!
//! SQLite is only as safe as the file it sits on, so before SQLite touches anything we: refuse
//! filesystems whose locking or fsync is not real (network and memory filesystems, recognised by
//! their `statfs` magic number); create directories 0700 and the database file 0600 ourselves (so
//! `-wal` and `-shm`, which SQLite creates with the database file's mode, are private too); and give
//! backup/restore the primitives they need to publish a file atomically without ever overwriting one.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, RenameFlags};

use crate::error::{Error, Result};

/// The first 16 bytes of every SQLite 3 database file.
pub const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Filesystems we refuse, by `statfs` `f_type` magic (values from Linux's `magic.h` and the
/// filesystems' own sources).
pub const UNSUPPORTED_FILESYSTEMS: &[(u32, &str)] = &[
    (0x0000_6969, "NFS"),
    (0x0000_517B, "SMB"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x0102_1997, "9p"),
    (0x6573_5546, "FUSE"),
    (0x00C3_6400, "Ceph"),
    (0x0102_1994, "tmpfs"),
    (0x8584_58F6, "ramfs"),
    (0x5346_414F, "AFS"),
    (0x0BD0_0BD0, "Lustre"),
    (0x7375_7245, "Coda"),
];

/// Names the filesystem behind a `statfs` magic number if we refuse it.
pub fn unsupported_filesystem(magic: u64) -> Option<&'static str> {
    // `f_type` is a signed word on some targets; only the low 32 bits carry the magic.
    let magic = (magic & 0xFFFF_FFFF) as u32;
    UNSUPPORTED_FILESYSTEMS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

/// Refuses `dir` if it is (or would be created) on a filesystem from [`UNSUPPORTED_FILESYSTEMS`].
/// A directory that does not exist yet is judged by its nearest existing ancestor, so a refusal
/// creates nothing.
pub(crate) fn check_filesystem(dir: &Path, opt_out: &str) -> Result<()> {
    let mut dir = dir;
    while !dir.exists() {
        match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => dir = parent,
            _ => {
                dir = Path::new(".");
                break;
            }
        }
    }
    let stat = rustix::fs::statfs(dir)
        .map_err(|e| Error::io("inspect the filesystem of", dir, e.into()))?;
    #[allow(clippy::unnecessary_cast)] // `f_type`'s width differs between targets.
    let magic = stat.f_type as u64;
    match unsupported_filesystem(magic) {
        Some(filesystem) => Err(Error::UnsupportedFilesystem {
            path: dir.to_path_buf(),
            filesystem,
            opt_out: opt_out.to_string(),
        }),
        None => Ok(()),
    }
}

/// Creates `dir` and any missing parents with mode 0700. Existing directories keep their mode.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))
}

/// Creates an empty file with mode 0600 if none exists. Returns whether it created one.
pub(crate) fn create_private_file(path: &Path) -> Result<bool> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::io("create", path, e)),
    }
}

/// The parent directory of a file path (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// `path` with `suffix` appended to its file name: `state.db` + `-wal` is `state.db-wal`.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A hidden sibling of `path` for work in progress: `.state.db.<tag>-<pid>`.
pub(crate) fn temp_sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    parent_dir(path).join(format!(".{name}.{tag}-{}", std::process::id()))
}

/// Removes leftovers of [`temp_sibling`], and SQLite's companion files of them, whose writing process
/// no longer runs (a crash mid-backup).
pub(crate) fn remove_stale_siblings(path: &Path, tag: &str) {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let prefix = format!(".{name}.{tag}-");
    let Ok(entries) = fs::read_dir(parent_dir(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        // The temp file itself, or SQLite's companions of it (`-journal`, `-wal`, `-shm`).
        let Some(pid) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .map(|rest| rest.split('-').next().unwrap_or(rest))
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if !process_alive(pid) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether a process with this id exists (it may belong to another user).
pub(crate) fn process_alive(pid: i32) -> bool {
    match rustix::process::Pid::from_raw(pid) {
        Some(pid) => match rustix::process::test_kill_process(pid) {
            Ok(()) => true,
            Err(e) => e != rustix::io::Errno::SRCH,
        },
        None => false,
    }
}

/// Moves `from` to `to` atomically, failing with `AlreadyExists` instead of replacing `to`.
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    match rustix::fs::renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // Filesystems without RENAME_NOREPLACE: a hard link also refuses an existing target.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Flushes a file's contents to stable storage.
pub(crate) fn fsync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|e| Error::io("flush", path, e))
}

/// Flushes a directory, making renames and removals in it durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(|e| Error::io("flush directory", dir, e))
}

/// Removes a temporary database and any companion files SQLite made beside it.
pub(crate) fn remove_temp_database(path: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let _ = fs::remove_file(with_suffix(path, suffix));
    }
}

/// Removes a file if it exists.
pub(crate) fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// The size of a file, 0 if it does not exist.
pub(crate) fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// What the first bytes of a file say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Header {
    /// A zero-length file: SQLite treats it as an empty database.
    Empty,
    /// An SQLite 3 database, with the page count and page size its header declares, when valid.
    Sqlite {
        /// The file's length in bytes.
        len: u64,
        /// `(page_size, page_count)` when the header's in-header size is valid.
        declared: Option<(u64, u64)>,
        /// The `application_id` field (offset 68).
        application_id: i32,
    },
    /// Something else; the string describes it for the user.
    Other(String),
}

/// Reads the 100-byte database header of `path`.
pub(crate) fn read_header(path: &Path) -> Result<Header> {
    let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("inspect", path, e))?
        .len();
    if len == 0 {
        return Ok(Header::Empty);
    }
    let mut header = [0u8; 100];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("read", path, e)),
        }
    }
    if read < 16 || &header[..16] != SQLITE_HEADER {
        let shown = String::from_utf8_lossy(&header[..read.min(16)])
            .chars()
            .map(|c| if c.is_control() { '.' } else { c })
            .collect::<String>();
        return Ok(Header::Other(format!("its first bytes are {shown:?}")));
    }
    if read < 100 {
        return Ok(Header::Other(format!(
            "it is only {len} bytes long, shorter than an SQLite header"
        )));
    }
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    // The in-header page count is trusted only when "version-valid-for" matches the change counter.
    let declared = (be32(92) == be32(24) && be32(28) > 0).then(|| (page_size, u64::from(be32(28))));
    let application_id = i32::from_be_bytes([header[68], header[69], header[70], header[71]]);
    Ok(Header::Sqlite {
        len,
        declared,
        application_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn magic_table_names_each_refused_filesystem() {
        let cases: &[(u64, Option<&str>)] = &[
            (0x6969, Some("NFS")),
            (0xFF53_4D42, Some("CIFS")),
            // Sign-extended, as a signed 64-bit f_type delivers it on some targets.
            (0xFFFF_FFFF_FF53_4D42, Some("CIFS")),
            (0xFE53_4D42, Some("SMB2")),
            (0x517B, Some("SMB")),
            (0x0102_1997, Some("9p")),
            (0x6573_5546, Some("FUSE")),
            (0x00C3_6400, Some("Ceph")),
            (0x0102_1994, Some("tmpfs")),
            (0x8584_58F6, Some("ramfs")),
            // Local disk filesystems are accepted.
            (0xEF53, None),      // ext2/3/4
            (0x5846_5342, None), // XFS
            (0x9123_683E, None), // Btrfs
            (0x2FC1_2FC1, None), // ZFS
            (0x794C_7630, None), // overlayfs
        ];
        for (magic, expected) in cases {
            assert_eq!(
                unsupported_filesystem(*magic),
                *expected,
                "magic {magic:#x}"
            );
        }
    }

    #[test]
    fn private_files_and_dirs_get_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        ensure_private_dir(&dir).unwrap();
        for d in [tmp.path().join("a"), dir.clone()] {
            assert_eq!(
                fs::metadata(&d).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
        let file = dir.join("x.db");
        assert!(create_private_file(&file).unwrap());
        assert!(!create_private_file(&file).unwrap());
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn rename_no_replace_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        fs::write(&a, "new").unwrap();
        fs::write(&b, "old").unwrap();
        let error = rename_no_replace(&a, &b).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&b).unwrap(), "old");
        fs::remove_file(&b).unwrap();
        rename_no_replace(&a, &b).unwrap();
        assert_eq!(fs::read_to_string(&b).unwrap(), "new");
        assert!(!a.exists());
    }

    #[test]
    fn header_tells_sqlite_from_other_files() {
        let tmp = tempfile::tempdir().unwrap();
        let text = tmp.path().join("notes.txt");
        fs::write(&text, "hello, this is not a database at all").unwrap();
        assert!(matches!(read_header(&text).unwrap(), Header::Other(_)));

        let empty = tmp.path().join("empty.db");
        fs::write(&empty, "").unwrap();
        assert_eq!(read_header(&empty).unwrap(), Header::Empty);

        let db = tmp.path().join("real.db");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(conn);
        match read_header(&db).unwrap() {
            Header::Sqlite { len, declared, .. } => {
                let (page_size, pages) = declared.unwrap();
                assert_eq!(page_size * pages, len);
            }
            other => panic!("expected an SQLite header, got {other:?}"),
        }
    }
}
