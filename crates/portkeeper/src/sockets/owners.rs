//! Who holds a socket: the processes with a file descriptor on it, and the user it belongs to.
//!
//! The kernel's socket tables name a socket only by its inode and its creator's uid. Linking an
//! inode to processes means looking at every process's open files, `/proc/<pid>/fd/*`, whose
//! links read `socket:[INODE]`; the uid becomes a name through `/etc/passwd`. The walk is the
//! expensive part of a snapshot: one `readlink` per open file on the machine, each a path lookup
//! and a permission check in the kernel. So it goes through directory file descriptors and reused
//! buffers (no path strings and no allocation per file descriptor), and when it has not finished
//! after a millisecond it spreads the rest over a few threads, down to slices of a single
//! process's files, so that a machine with many processes or one server with thousands of files
//! does not wait on one core. It reads every process rather than stopping at the first owner
//! found: a socket inherited across `fork` (a pre-fork server) has several owners, and all of
//! them must be named.

use std::ffi::CStr;
use std::fs;
use std::mem::MaybeUninit;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{CWD, Mode, OFlags, RawDir, openat, readlinkat_raw};

use super::ScanError;
use super::procfs::decimal;

/// Room for a batch of directory entries; `/proc` and `fd` directories are read in batches.
const DIR_BUFFER: usize = 32 * 1024;
/// How many of one process's files one job reads; a process with more is cut into several jobs,
/// which other threads can take.
const SLICE: usize = 256;
/// How long the walk runs on the calling thread alone before it starts helpers: long enough that
/// a small machine never pays for threads, short next to the walks that need them.
const SPREAD_AFTER: Duration = Duration::from_millis(1);
/// The most threads a walk uses, the calling one included.
const MAX_THREADS: usize = 8;

/// Finds every process holding one of `inodes` (sorted, without duplicates).
///
/// Returns `(inode, pid)` pairs, sorted and without duplicates. Processes we may not look into
/// (another user's, without privilege) and processes that exit during the walk are skipped.
pub(super) fn socket_owners(inodes: &[u64]) -> Result<Vec<(u64, u32)>, ScanError> {
    if inodes.is_empty() {
        return Ok(Vec::new());
    }
    let started = Instant::now();
    let walk = Walk::new(inodes)?;
    let mut worker = Worker::new();
    std::thread::scope(|scope| {
        let mut helpers = Vec::new();
        let mut spread = false;
        while let Some(job) = walk.next_job() {
            worker.run(&walk, job);
            if !spread && started.elapsed() >= SPREAD_AFTER {
                spread = true;
                let wanted = thread_count().saturating_sub(1).min(walk.jobs_left());
                for _ in 0..wanted {
                    let helper = std::thread::Builder::new()
                        .name("portman-owners".into())
                        .spawn_scoped(scope, || {
                            let mut helper = Worker::new();
                            while let Some(job) = walk.next_job() {
                                helper.run(&walk, job);
                            }
                            helper.found
                        });
                    // Without a thread, the ones we have (at least this one) do the work.
                    let Ok(helper) = helper else { break };
                    helpers.push(helper);
                }
            }
        }
        for helper in helpers {
            match helper.join() {
                Ok(found) => worker.found.extend(found),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    let mut found = worker.found;
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

/// How many threads the machine can run at once, at most [`MAX_THREADS`].
fn thread_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(MAX_THREADS)
}

/// The shared state of one walk: the processes to read and the slices of large ones waiting.
#[derive(Debug)]
struct Walk<'a> {
    proc_dir: OwnedFd,
    pids: Vec<u32>,
    /// The index in `pids` of the next process to read.
    next_pid: AtomicUsize,
    /// Slices of processes with many files, read before any further process.
    slices: Mutex<Vec<Slice>>,
    inodes: &'a [u64],
}

/// Some of the file descriptors of one process.
#[derive(Debug)]
struct Slice {
    fd_dir: Arc<OwnedFd>,
    pid: u32,
    fds: Vec<u32>,
}

/// One unit of work.
#[derive(Debug)]
enum Job {
    /// A process, not yet opened.
    Process(u32),
    /// Part of a process's files.
    Slice(Slice),
}

impl<'a> Walk<'a> {
    /// Lists the processes in `/proc`.
    fn new(inodes: &'a [u64]) -> Result<Walk<'a>, ScanError> {
        let unreadable = |err: rustix::io::Errno| ScanError::Processes { source: err.into() };
        let proc_dir = open_dir(CWD, c"/proc").map_err(unreadable)?;
        let mut buf = vec![MaybeUninit::<u8>::uninit(); DIR_BUFFER];
        let mut pids = Vec::with_capacity(512);
        let mut entries = RawDir::new(&proc_dir, &mut buf);
        while let Some(entry) = entries.next() {
            let entry = entry.map_err(unreadable)?;
            if let Some(pid) =
                decimal(entry.file_name().to_bytes()).and_then(|pid| u32::try_from(pid).ok())
            {
                pids.push(pid);
            }
        }
        Ok(Walk {
            proc_dir,
            pids,
            next_pid: AtomicUsize::new(0),
            slices: Mutex::new(Vec::new()),
            inodes,
        })
    }

    /// The next job: a waiting slice, else the next process; `None` when all are taken.
    fn next_job(&self) -> Option<Job> {
        if let Some(slice) = lock(&self.slices).pop() {
            return Some(Job::Slice(slice));
        }
        let index = self.next_pid.fetch_add(1, Ordering::Relaxed);
        self.pids.get(index).map(|&pid| Job::Process(pid))
    }

    /// About how many jobs are left.
    fn jobs_left(&self) -> usize {
        let taken = self.next_pid.load(Ordering::Relaxed);
        self.pids.len().saturating_sub(taken) + lock(&self.slices).len()
    }
}

/// Locks `mutex`, ignoring poisoning: a panicking holder leaves only whole entries behind.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One thread's buffers and findings.
#[derive(Debug)]
struct Worker {
    dir_buf: Vec<MaybeUninit<u8>>,
    fds: Vec<u32>,
    found: Vec<(u64, u32)>,
}

impl Worker {
    fn new() -> Worker {
        Worker {
            dir_buf: vec![MaybeUninit::uninit(); DIR_BUFFER],
            fds: Vec::new(),
            found: Vec::new(),
        }
    }

    fn run(&mut self, walk: &Walk<'_>, job: Job) {
        match job {
            Job::Slice(slice) => {
                read_links(
                    &slice.fd_dir,
                    slice.pid,
                    &slice.fds,
                    walk.inodes,
                    &mut self.found,
                );
            }
            Job::Process(pid) => {
                let mut path = [0u8; 24];
                let Some(path) = decimal_c_str(pid, b"/fd", &mut path) else {
                    return;
                };
                // Not ours to read, or gone: skipped before any other work.
                let Ok(fd_dir) = open_dir(&walk.proc_dir, path) else {
                    return;
                };
                list_fds(&fd_dir, &mut self.dir_buf, &mut self.fds);
                if self.fds.len() <= SLICE {
                    read_links(&fd_dir, pid, &self.fds, walk.inodes, &mut self.found);
                    return;
                }
                let fd_dir = Arc::new(fd_dir);
                let (first, rest) = self.fds.split_at(SLICE);
                lock(&walk.slices).extend(rest.chunks(SLICE).map(|fds| Slice {
                    fd_dir: Arc::clone(&fd_dir),
                    pid,
                    fds: fds.to_vec(),
                }));
                read_links(&fd_dir, pid, first, walk.inodes, &mut self.found);
            }
        }
    }
}

/// Opens a directory for reading its entries.
fn open_dir<Fd: AsFd>(at: Fd, path: &CStr) -> rustix::io::Result<OwnedFd> {
    openat(
        at,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Replaces `fds` with the file descriptor numbers in a process's `fd` directory. Stops quietly
/// at the first error: the process has exited.
fn list_fds(fd_dir: &OwnedFd, buf: &mut [MaybeUninit<u8>], fds: &mut Vec<u32>) {
    fds.clear();
    let mut entries = RawDir::new(fd_dir, buf);
    while let Some(Ok(entry)) = entries.next() {
        if let Some(fd) =
            decimal(entry.file_name().to_bytes()).and_then(|fd| u32::try_from(fd).ok())
        {
            fds.push(fd);
        }
    }
}

/// Reads the links of `fds` in one process's `fd` directory, recording `(inode, pid)` for each
/// wanted socket. A file closed meanwhile is skipped.
fn read_links(
    fd_dir: &OwnedFd,
    pid: u32,
    fds: &[u32],
    inodes: &[u64],
    found: &mut Vec<(u64, u32)>,
) {
    let (Some(&lowest), Some(&highest)) = (inodes.first(), inodes.last()) else {
        return;
    };
    let mut name = [0u8; 24];
    // "socket:[" + at most 20 digits + "]" fits; longer links are not sockets.
    let mut link = [0u8; 40];
    for &fd in fds {
        let Some(name) = decimal_c_str(fd, b"", &mut name) else {
            continue;
        };
        let Ok(len) = readlinkat_raw(fd_dir, name, &mut link[..]) else {
            continue;
        };
        if let Some(inode) = link.get(..len).and_then(socket_inode)
            && (lowest..=highest).contains(&inode)
            && inodes.binary_search(&inode).is_ok()
        {
            found.push((inode, pid));
        }
    }
}

/// Writes `number` in decimal, then `suffix` and a NUL, into `buf`: a path without allocating.
fn decimal_c_str<'b>(number: u32, suffix: &[u8], buf: &'b mut [u8; 24]) -> Option<&'b CStr> {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    let mut rest = number;
    loop {
        start -= 1;
        // A digit: the remainder is below 10.
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let digits = &digits[start..];
    let end = digits.len() + suffix.len();
    buf.get_mut(..end + 1)?;
    buf[..digits.len()].copy_from_slice(digits);
    buf[digits.len()..end].copy_from_slice(suffix);
    buf[end] = 0;
    CStr::from_bytes_with_nul(&buf[..=end]).ok()
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

/// The name of user `uid` from `/etc/passwd` (the first entry for it, as with `getpwuid`), else
/// the uid as text.
///
/// Names found are remembered for the life of the process, so asking again costs no file read;
/// a uid without an entry is looked up again each time.
pub fn user_name(uid: u32) -> String {
    user_names(&[uid]).pop().unwrap_or_else(|| uid.to_string())
}

/// The names found so far, sorted by uid.
static KNOWN_USERS: Mutex<Vec<(u32, String)>> = Mutex::new(Vec::new());

/// Names for `uids` (sorted, without duplicates), in the same order: from `/etc/passwd`, else the
/// uid as text. `/etc/passwd` is read only when some uid has not been named before.
pub(super) fn user_names(uids: &[u32]) -> Vec<String> {
    let mut known = KNOWN_USERS.lock().unwrap_or_else(PoisonError::into_inner);
    let lookup = |known: &[(u32, String)], uid: u32| {
        known
            .binary_search_by_key(&uid, |&(known_uid, _)| known_uid)
            .ok()
            .and_then(|index| known.get(index))
            .map(|(_, name)| name.clone())
    };
    let unknown: Vec<u32> = uids
        .iter()
        .copied()
        .filter(|&uid| lookup(&known, uid).is_none())
        .collect();
    if !unknown.is_empty() {
        let passwd = fs::read("/etc/passwd").unwrap_or_default();
        let passwd = String::from_utf8_lossy(&passwd);
        for (uid, name) in unknown.iter().zip(names_from_passwd(&passwd, &unknown)) {
            if let Some(name) = name {
                known.push((*uid, name.to_owned()));
            }
        }
        known.sort_unstable_by_key(|&(uid, _)| uid);
    }
    uids.iter()
        .map(|&uid| lookup(&known, uid).unwrap_or_else(|| uid.to_string()))
        .collect()
}

/// Looks `uids` (sorted, without duplicates) up in the text of a passwd file, giving each uid's
/// name in the same order, or `None`; the first entry for a uid wins, as with `getpwuid`.
fn names_from_passwd<'a>(passwd: &'a str, uids: &[u32]) -> Vec<Option<&'a str>> {
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
    fn passwd_names_uids_and_the_first_entry_wins() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # comment\n\
                      daemon:x:1:1::/:/usr/sbin/nologin\n\
                      other-root:x:0:0::/:/bin/sh\n";
        assert_eq!(
            names_from_passwd(passwd, &[0, 1, 4242]),
            [Some("root"), Some("daemon"), None]
        );
    }

    #[test]
    fn a_uid_without_a_passwd_entry_is_named_by_its_number() {
        assert_eq!(user_name(4_000_000_123), "4000000123");
        assert_eq!(user_names(&[4_000_000_123]), ["4000000123"]);
    }

    #[test]
    fn numbers_become_c_paths_without_allocating() {
        let mut buf = [0u8; 24];
        assert_eq!(decimal_c_str(0, b"", &mut buf), Some(c"0"));
        assert_eq!(decimal_c_str(1234, b"/fd", &mut buf), Some(c"1234/fd"));
        assert_eq!(
            decimal_c_str(u32::MAX, b"/fd", &mut buf),
            Some(c"4294967295/fd")
        );
    }

    #[test]
    fn no_owners_are_looked_for_when_no_inodes_are_wanted() {
        assert_eq!(socket_owners(&[]).ok(), Some(Vec::new()));
    }
}
