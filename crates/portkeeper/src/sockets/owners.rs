//! Who holds a socket: the processes with a file descriptor on it, and the user it belongs to.
//!
//! The kernel's socket tables name a socket only by its inode and its creator's uid. Linking an
//! inode to processes means looking at every process's open files, `/proc/<pid>/fd/*`, whose
//! links read `socket:[INODE]`; the uid becomes a name through `/etc/passwd`. The walk is the
//! expensive part of a snapshot, so it goes through directory file descriptors and reused buffers
//! (no path strings and no allocation per file descriptor), and it reads every process rather
//! than stopping at the first owner found: a socket inherited across `fork` (a pre-fork server)
//! has several owners, and all of them must be named.

use std::fs;
use std::mem::MaybeUninit;

use rustix::fd::OwnedFd;
use rustix::fs::{CWD, Mode, OFlags, RawDir, openat, readlinkat_raw};

use super::ScanError;
use super::procfs::decimal;

/// Room for a batch of directory entries; `/proc` and `fd` directories are read in batches.
const DIR_BUFFER: usize = 32 * 1024;

/// Finds every process holding one of `inodes` (sorted, without duplicates).
///
/// Returns `(inode, pid)` pairs, sorted and without duplicates. Processes we may not look into
/// (another user's, without privilege) and processes that exit during the walk are skipped.
pub(super) fn socket_owners(inodes: &[u64]) -> Result<Vec<(u64, u32)>, ScanError> {
    let mut found = Vec::new();
    if inodes.is_empty() {
        return Ok(found);
    }
    let proc_dir =
        open_dir(CWD, "/proc").map_err(|err| ScanError::Processes { source: err.into() })?;
    let mut proc_buf = vec![MaybeUninit::<u8>::uninit(); DIR_BUFFER];
    let mut fd_buf = vec![MaybeUninit::<u8>::uninit(); DIR_BUFFER];
    let mut processes = RawDir::new(&proc_dir, &mut proc_buf);
    while let Some(entry) = processes.next() {
        let entry = entry.map_err(|err| ScanError::Processes { source: err.into() })?;
        let name = entry.file_name().to_bytes();
        let Some(pid) = decimal(name).and_then(|pid| u32::try_from(pid).ok()) else {
            continue;
        };
        // "<pid>/fd", relative to /proc, built on the stack.
        let mut path = [0u8; 32];
        let Some(fd_path) = path.get_mut(..name.len() + 3) else {
            continue;
        };
        fd_path[..name.len()].copy_from_slice(name);
        fd_path[name.len()..].copy_from_slice(b"/fd");
        let Ok(fd_dir) = open_dir(&proc_dir, &*fd_path) else {
            continue;
        };
        scan_fds(&fd_dir, &mut fd_buf, inodes, pid, &mut found);
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

/// Opens a directory for reading its entries.
fn open_dir<Fd: rustix::fd::AsFd, P: rustix::path::Arg>(
    at: Fd,
    path: P,
) -> rustix::io::Result<OwnedFd> {
    openat(
        at,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Reads the links in one process's `fd` directory, recording `(inode, pid)` for each wanted
/// socket. Stops quietly at the first error: the process has exited or is not ours to read.
fn scan_fds(
    fd_dir: &OwnedFd,
    buf: &mut [MaybeUninit<u8>],
    inodes: &[u64],
    pid: u32,
    found: &mut Vec<(u64, u32)>,
) {
    // "socket:[" + at most 20 digits + "]" fits; longer links are not sockets.
    let mut link = [0u8; 40];
    let mut fds = RawDir::new(fd_dir, buf);
    while let Some(Ok(entry)) = fds.next() {
        let name = entry.file_name();
        if name.to_bytes().first() == Some(&b'.') {
            continue;
        }
        let Ok(len) = readlinkat_raw(fd_dir, name, &mut link[..]) else {
            continue;
        };
        if let Some(inode) = socket_inode(&link[..len])
            && inodes.binary_search(&inode).is_ok()
        {
            found.push((inode, pid));
        }
    }
}

/// The inode of a `socket:[INODE]` link target.
fn socket_inode(target: &[u8]) -> Option<u64> {
    decimal(target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?)
}

/// The name of process `pid` (its `comm`), or `None` once it has exited.
///
/// The kernel keeps the first 15 bytes of the executable's name, or whatever the process set;
/// bytes that are not UTF-8 are replaced.
pub(super) fn process_name(pid: u32) -> Option<String> {
    let bytes = fs::read(format!("/proc/{pid}/comm")).ok()?;
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// Names for `uids` (sorted, without duplicates), in the same order: from `/etc/passwd`, else the
/// uid as text.
pub(super) fn user_names(uids: &[u32]) -> Vec<String> {
    let passwd = fs::read("/etc/passwd").unwrap_or_default();
    names_from_passwd(&String::from_utf8_lossy(&passwd), uids)
}

/// Looks `uids` (sorted, without duplicates) up in the text of a passwd file; the first entry for
/// a uid wins, as with `getpwuid`.
fn names_from_passwd(passwd: &str, uids: &[u32]) -> Vec<String> {
    let mut names: Vec<Option<&str>> = vec![None; uids.len()];
    for line in passwd.lines() {
        let mut fields = line.split(':');
        let (Some(name), Some(_password), Some(uid)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(uid) = uid.parse::<u32>() else {
            continue;
        };
        if let Ok(index) = uids.binary_search(&uid)
            && names[index].is_none()
            && !name.is_empty()
        {
            names[index] = Some(name);
        }
    }
    names
        .iter()
        .zip(uids)
        .map(|(name, uid)| name.map_or_else(|| uid.to_string(), str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links_give_their_inode_and_other_links_nothing() {
        assert_eq!(socket_inode(b"socket:[12345]"), Some(12345));
        assert_eq!(socket_inode(b"pipe:[12345]"), None);
        assert_eq!(socket_inode(b"/dev/null"), None);
        assert_eq!(socket_inode(b"socket:[]"), None);
    }

    #[test]
    fn passwd_names_uids_and_unknown_uids_stay_numeric() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # comment\n\
                      daemon:x:1:1::/:/usr/sbin/nologin\n\
                      other-root:x:0:0::/:/bin/sh\n";
        assert_eq!(
            names_from_passwd(passwd, &[0, 1, 4242]),
            ["root", "daemon", "4242"]
        );
    }

    #[test]
    fn no_owners_are_looked_for_when_no_inodes_are_wanted() {
        assert_eq!(socket_owners(&[]).ok(), Some(Vec::new()));
    }
}
