//! The machine's own figures, read the cheap way: CPU time from `/proc/stat`, memory and swap from
//! `/proc/meminfo`, and disk use of the models folder's filesystem from `statvfs(2)`. The reader
//! keeps its text buffer between samples, so sampling does not allocate.

use std::io::Read;
use std::path::Path;

/// Busy and total CPU time of all cores, in clock ticks since boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Ticks not idle.
    pub busy: u64,
    /// All ticks.
    pub total: u64,
}

/// Parses the first `cpu ` line of `/proc/stat`: user nice system idle iowait irq softirq steal
/// (guest time is already inside user and nice, so it is not added again).
pub fn parse_proc_stat(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 4 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// Percent of all cores busy between two readings, 0 when no time passed.
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
    /// MemTotal.
    pub mem_total_kib: u64,
    /// MemAvailable (or, on kernels before 3.14, MemFree + Buffers + Cached).
    pub mem_available_kib: u64,
    /// SwapTotal.
    pub swap_total_kib: u64,
    /// SwapFree.
    pub swap_free_kib: u64,
}

impl MemInfo {
    /// Percent of memory in use.
    pub fn memory_percent(&self) -> f64 {
        percent_used(self.mem_total_kib, self.mem_available_kib)
    }

    /// Percent of swap in use.
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

/// Parses `/proc/meminfo`; `None` without MemTotal.
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let (mut total, mut available, mut free, mut buffers, mut cached) = (None, None, 0, 0, 0);
    let (mut swap_total, mut swap_free) = (0, 0);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(value) = rest
            .split_ascii_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        match key {
            "MemTotal" => total = Some(value),
            "MemAvailable" => available = Some(value),
            "MemFree" => free = value,
            "Buffers" => buffers = value,
            "Cached" => cached = value,
            "SwapTotal" => swap_total = value,
            "SwapFree" => swap_free = value,
            _ => {}
        }
    }
    Some(MemInfo {
        mem_total_kib: total?,
        mem_available_kib: available.unwrap_or(free + buffers + cached),
        swap_total_kib: swap_total,
        swap_free_kib: swap_free,
    })
}

/// Reads `/proc` files into one reused buffer.
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

    /// CPU times now.
    pub fn cpu_times(&mut self) -> std::io::Result<CpuTimes> {
        parse_proc_stat(self.read("/proc/stat")?).ok_or_else(|| invalid("/proc/stat"))
    }

    /// Memory and swap now.
    pub fn meminfo(&mut self) -> std::io::Result<MemInfo> {
        parse_meminfo(self.read("/proc/meminfo")?).ok_or_else(|| invalid("/proc/meminfo"))
    }
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{what} has no readable figures"),
    )
}

/// Percent of the filesystem holding `path` in use, as `df` counts it (blocks reserved for root
/// count as neither used nor available). A folder not created yet is measured at its nearest
/// existing parent.
pub fn disk_usage_percent(path: &Path) -> std::io::Result<f64> {
    let existing = path
        .ancestors()
        .find(|p| !p.as_os_str().is_empty() && p.exists())
        .unwrap_or(Path::new("/"));
    let st = rustix::fs::statvfs(existing)?;
    let used = st.f_blocks.saturating_sub(st.f_bfree);
    let denominator = used + st.f_bavail;
    if denominator == 0 {
        return Ok(0.0);
    }
    Ok((used as f64 / denominator as f64 * 100.0).clamp(0.0, 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  4705 356 584 3699176 23 0 123 7 11 0\n\
                        cpu0 1393 280 384 924600 23 0 123 0 0 0\nintr 114930548 113199788 3 0\n";

    #[test]
    fn proc_stat_counts_iowait_as_idle_and_guest_once() {
        let t = parse_proc_stat(STAT).unwrap();
        assert_eq!(t.total, 4705 + 356 + 584 + 3_699_176 + 23 + 123 + 7);
        assert_eq!(t.busy, t.total - 3_699_176 - 23);
        assert_eq!(parse_proc_stat("intr 1 2\n"), None);
        assert_eq!(parse_proc_stat("cpu  x y z\n"), None);
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
        assert_eq!(cpu_percent(a, a), 0.0);
        assert_eq!(
            cpu_percent(b, a),
            0.0,
            "a counter going back is not negative use"
        );
    }

    #[test]
    fn meminfo_with_and_without_mem_available() {
        let modern = "MemTotal:  16000000 kB\nMemFree: 1000000 kB\nMemAvailable: 4000000 kB\n\
                      Buffers: 1 kB\nCached: 2 kB\nSwapTotal: 2000000 kB\nSwapFree: 1500000 kB\n";
        let m = parse_meminfo(modern).unwrap();
        assert!((m.memory_percent() - 75.0).abs() < 1e-9);
        assert!((m.swap_percent() - 25.0).abs() < 1e-9);
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 350 kB\n";
        let m = parse_meminfo(old).unwrap();
        assert_eq!(m.mem_available_kib, 500);
        assert_eq!(m.swap_percent(), 0.0, "no swap is 0 %, not NaN");
        assert_eq!(parse_meminfo("SwapTotal: 1 kB\n"), None);
    }

    #[test]
    fn this_machine_reads_back_sane_figures() {
        let mut reader = ProcReader::default();
        let t = reader.cpu_times().unwrap();
        assert!(t.total > 0 && t.busy <= t.total);
        let m = reader.meminfo().unwrap();
        assert!(m.mem_total_kib > 0 && m.memory_percent() > 0.0);
    }

    #[test]
    fn disk_use_of_a_folder_not_made_yet_is_its_parents() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("models/not/yet");
        let p = disk_usage_percent(&missing).unwrap();
        assert!((0.0..=100.0).contains(&p));
        assert!((p - disk_usage_percent(dir.path()).unwrap()).abs() < 1.0);
    }
}
