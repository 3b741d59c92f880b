//! The machine's own figures, read the cheap way: CPU time from `/proc/stat`, memory and swap from
//! `/proc/meminfo`, and disk use of the models folder's filesystem from `statvfs(2)`. The parsers
//! are pure functions over the files' text so they can be tested with any kernel's output; the
//! [`ProcReader`] keeps its text buffer between samples, so a running sampler does not allocate.

use std::io::Read;
use std::path::Path;

/// Busy and total CPU time of all cores together, in clock ticks since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Ticks spent neither idle nor waiting for I/O.
    pub busy: u64,
    /// All ticks (user, nice, system, idle, iowait, irq, softirq, steal).
    pub total: u64,
}

/// Parses the aggregate `cpu ` line of `/proc/stat`.
///
/// Its first eight numbers are user, nice, system, idle, iowait, irq, softirq and steal; they are
/// summed for the total, and idle + iowait is the idle part. The guest and guest_nice columns that
/// follow are already counted inside user and nice, so they are not added again. Kernels older
/// than 2.6.11 print fewer columns: at least four are required, missing ones count as 0.
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let mut fields = [0u64; 8];
    let mut count = 0;
    for (slot, word) in fields.iter_mut().zip(line.split_ascii_whitespace().skip(1)) {
        *slot = word.parse().ok()?;
        count += 1;
    }
    if count < 4 {
        return None;
    }
    let total = fields.iter().fold(0u64, |sum, v| sum.saturating_add(*v));
    let idle = fields[3].saturating_add(fields[4]);
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// Reads `/proc/stat` now (allocating a buffer; a sampler uses [`ProcReader::cpu_times`]).
pub fn read_cpu_times() -> std::io::Result<CpuTimes> {
    ProcReader::default().cpu_times()
}

/// Percent of all cores busy between two readings: 0 when no tick passed (or the counters went
/// back), never outside `0..=100`.
pub fn cpu_percent(prev: CpuTimes, now: CpuTimes) -> f64 {
    let total = now.total.saturating_sub(prev.total);
    if total == 0 {
        return 0.0;
    }
    let busy = now.busy.saturating_sub(prev.busy);
    (busy as f64 / total as f64 * 100.0).clamp(0.0, 100.0)
}

/// Memory and swap, in KiB, from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub mem_total_kib: u64,
    /// `MemAvailable`, or on kernels before 3.14 `MemFree + Buffers + Cached`.
    pub mem_available_kib: u64,
    /// `SwapTotal`.
    pub swap_total_kib: u64,
    /// `SwapFree`.
    pub swap_free_kib: u64,
}

impl MemInfo {
    /// Percent of memory in use (not available); 0 when the total is 0.
    pub fn memory_percent(&self) -> f64 {
        percent_used(self.mem_total_kib, self.mem_available_kib)
    }

    /// Percent of swap in use; 0 when there is no swap.
    pub fn swap_percent(&self) -> f64 {
        percent_used(self.swap_total_kib, self.swap_free_kib)
    }
}

fn percent_used(total: u64, free: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    (total.saturating_sub(free) as f64 / total as f64 * 100.0).clamp(0.0, 100.0)
}

/// Parses `/proc/meminfo`; `None` when it has no `MemTotal`. Missing swap lines count as no swap.
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let mut total = None;
    let mut available = None;
    let (mut free, mut buffers, mut cached) = (0u64, 0u64, 0u64);
    let (mut swap_total, mut swap_free) = (0, 0);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "MemTotal" => total.insert(0),
            "MemAvailable" => available.insert(0),
            "MemFree" => &mut free,
            "Buffers" => &mut buffers,
            "Cached" => &mut cached,
            "SwapTotal" => &mut swap_total,
            "SwapFree" => &mut swap_free,
            _ => continue,
        };
        *slot = rest.split_ascii_whitespace().next()?.parse().ok()?;
    }
    Some(MemInfo {
        mem_total_kib: total?,
        mem_available_kib: available
            .unwrap_or_else(|| free.saturating_add(buffers).saturating_add(cached)),
        swap_total_kib: swap_total,
        swap_free_kib: swap_free,
    })
}

/// Reads `/proc/meminfo` now (allocating a buffer; a sampler uses [`ProcReader::meminfo`]).
pub fn read_meminfo() -> std::io::Result<MemInfo> {
    ProcReader::default().meminfo()
}

/// Reads `/proc` files into one buffer kept between reads, so repeated samples do not allocate.
#[derive(Debug, Default)]
pub struct ProcReader {
    buffer: String,
}

impl ProcReader {
    fn read(&mut self, path: &str) -> std::io::Result<&str> {
        self.buffer.clear();
        std::fs::File::open(path)?.read_to_string(&mut self.buffer)?;
        Ok(&self.buffer)
    }

    /// CPU times now, from `/proc/stat`.
    pub fn cpu_times(&mut self) -> std::io::Result<CpuTimes> {
        parse_proc_stat(self.read("/proc/stat")?).ok_or_else(|| unreadable("/proc/stat"))
    }

    /// Memory and swap now, from `/proc/meminfo`.
    pub fn meminfo(&mut self) -> std::io::Result<MemInfo> {
        parse_meminfo(self.read("/proc/meminfo")?).ok_or_else(|| unreadable("/proc/meminfo"))
    }
}

fn unreadable(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{what} has no figures we can read"),
    )
}

/// Percent of the filesystem holding `path` in use, counted as `df` does: used = blocks − free,
/// over used + available to unprivileged users (so root's reserved blocks count as neither).
/// A folder not created yet is measured at its nearest existing ancestor; a relative path with no
/// existing ancestor is measured at the current directory.
pub fn disk_usage_percent(path: &Path) -> std::io::Result<f64> {
    let existing = path
        .ancestors()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .find(|p| p.exists())
        .unwrap_or(Path::new("."));
    let st = rustix::fs::statvfs(existing)?;
    let used = st.f_blocks.saturating_sub(st.f_bfree);
    let counted = used.saturating_add(st.f_bavail);
    if counted == 0 {
        return Ok(0.0);
    }
    Ok((used as f64 / counted as f64 * 100.0).clamp(0.0, 100.0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// A 2-core machine with guest time, as a 6.x kernel prints it (the intr line shortened).
    const STAT: &str = "\
cpu  1738559 120 471680 1940120 29915 0 8570 3416 700 5
cpu0 807536 60 220954 1052155 10024 0 3014 1650 350 5
cpu1 931023 60 250726 887965 19891 0 5556 1766 350 0
intr 18312690 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 1 14 0 0 0 0 4218 2963
ctxt 30752079
btime 1763930000
processes 91234
procs_running 2
procs_blocked 0
softirq 9123456 0 123 4 5 6 0 7 8 0 9
";

    #[test]
    fn proc_stat_counts_iowait_as_idle_and_guest_once() {
        let t = parse_proc_stat(STAT).unwrap();
        let total = 1_738_559 + 120 + 471_680 + 1_940_120 + 29_915 + 8_570 + 3_416;
        assert_eq!(t.total, total);
        assert_eq!(t.busy, total - 1_940_120 - 29_915);
    }

    #[test]
    fn proc_stat_from_an_old_kernel_and_garbage() {
        // Linux 2.4 printed four columns.
        let t = parse_proc_stat("cpu  10 20 30 940\ncpu0 10 20 30 940\n").unwrap();
        assert_eq!((t.busy, t.total), (60, 1000));
        assert_eq!(parse_proc_stat("cpu  1 2 3\n"), None);
        assert_eq!(parse_proc_stat("intr 1 2\n"), None);
        assert_eq!(
            parse_proc_stat("cpu0 1 2 3 4 5\n"),
            None,
            "only the aggregate line"
        );
        assert_eq!(parse_proc_stat("cpu  x y z w\n"), None);
        assert_eq!(parse_proc_stat(""), None);
    }

    #[test]
    fn cpu_percent_is_the_busy_share_of_elapsed_ticks() {
        let a = CpuTimes {
            busy: 100,
            total: 1000,
        };
        let b = CpuTimes {
            busy: 150,
            total: 1200,
        };
        assert!((cpu_percent(a, b) - 25.0).abs() < 1e-9);
        assert_eq!(cpu_percent(a, a), 0.0, "no ticks passed");
        assert_eq!(
            cpu_percent(b, a),
            0.0,
            "counters going back are not negative use"
        );
        let all_busy = CpuTimes {
            busy: 300,
            total: 1200,
        };
        assert_eq!(cpu_percent(a, all_busy), 100.0);
        let odd = CpuTimes {
            busy: 900,
            total: 1100,
        };
        assert_eq!(cpu_percent(a, odd), 100.0, "clamped");
        // Derived from parsed text: 2 of 4 new ticks busy.
        let before = parse_proc_stat("cpu  10 0 10 70 10 0 0 0 0 0\n").unwrap();
        let after = parse_proc_stat("cpu  11 0 11 71 11 0 0 0 0 0\n").unwrap();
        assert!((cpu_percent(before, after) - 50.0).abs() < 1e-9);
    }

    const MEMINFO: &str = "\
MemTotal:       16000000 kB
MemFree:         1000000 kB
MemAvailable:    4000000 kB
Buffers:            7428 kB
Cached:          3241968 kB
SwapCached:            0 kB
Active:           963608 kB
Inactive(file):  2278472 kB
SwapTotal:       2000000 kB
SwapFree:        1500000 kB
Dirty:            180448 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
DirectMap1G:    19922944 kB
";

    #[test]
    fn meminfo_of_a_current_kernel() {
        let m = parse_meminfo(MEMINFO).unwrap();
        assert_eq!(
            m,
            MemInfo {
                mem_total_kib: 16_000_000,
                mem_available_kib: 4_000_000,
                swap_total_kib: 2_000_000,
                swap_free_kib: 1_500_000,
            }
        );
        assert!((m.memory_percent() - 75.0).abs() < 1e-9);
        assert!((m.swap_percent() - 25.0).abs() < 1e-9);
    }

    #[test]
    fn meminfo_of_an_old_kernel_without_mem_available() {
        let old = "MemTotal:  1000 kB\nMemFree:  100 kB\nBuffers:  50 kB\nCached:  350 kB\n\
                   SwapCached:  0 kB\nSwapTotal:  0 kB\nSwapFree:  0 kB\n";
        let m = parse_meminfo(old).unwrap();
        assert_eq!(m.mem_available_kib, 500, "MemFree + Buffers + Cached");
        assert!((m.memory_percent() - 50.0).abs() < 1e-9);
        assert_eq!(m.swap_percent(), 0.0, "no swap is 0 %, not NaN");
        assert_eq!(parse_meminfo("SwapTotal: 1 kB\n"), None, "no MemTotal");
        assert_eq!(parse_meminfo("MemTotal: lots\n"), None);
        assert_eq!(MemInfo::default().memory_percent(), 0.0);
    }

    #[test]
    fn this_machine_reads_back_sane_figures() {
        let t = read_cpu_times().unwrap();
        assert!(t.total > 0 && t.busy <= t.total);
        let m = read_meminfo().unwrap();
        assert!(m.mem_total_kib > 0 && m.mem_available_kib <= m.mem_total_kib);
        assert!(m.memory_percent() > 0.0 && m.memory_percent() <= 100.0);
        assert!((0.0..=100.0).contains(&m.swap_percent()));
        let mut reader = ProcReader::default();
        let first = reader.cpu_times().unwrap();
        let again = reader.cpu_times().unwrap();
        assert!(again.total >= first.total);
    }

    #[test]
    fn disk_use_of_a_folder_not_made_yet_is_its_parents() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("models/not/yet");
        let p = disk_usage_percent(&missing).unwrap();
        assert!((0.0..=100.0).contains(&p), "{p}");
        assert!((p - disk_usage_percent(dir.path()).unwrap()).abs() < 1.0);
        let relative = disk_usage_percent(Path::new("no-such-folder/models")).unwrap();
        assert!((0.0..=100.0).contains(&relative), "{relative}");
    }
}
