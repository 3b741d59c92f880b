//! CPU and memory of one process tree: llama-server and the model processes it starts (in
//! router mode each loaded model runs in a child of the router). Read from `/proc/<pid>/stat`
//! (user and system ticks, parent pid) and `/proc/<pid>/status` (`VmRSS`); the tree is found by
//! walking parent links, so a model process started after the last sample is counted at once.

use std::collections::HashMap;
use std::time::Instant;

/// What `/proc/<pid>/stat` says that we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The parent's pid.
    pub ppid: u32,
    /// User plus system time, in clock ticks.
    pub ticks: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may hold spaces and parentheses, so
/// the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the name: state (3), ppid (4), …, utime (14), stime (15).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Stat {
        ppid,
        ticks: utime.saturating_add(stime),
    })
}

/// The `VmRSS` line of `/proc/<pid>/status`, in KiB (absent for a zombie).
pub fn parse_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `root` and every process descending from it, given each process's parent.
pub fn descendants(root: u32, parents: &HashMap<u32, u32>) -> Vec<u32> {
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|&(&pid, &ppid)| ppid == parent && pid != parent)
                .map(|(&pid, _)| pid),
        );
        i += 1;
    }
    tree
}

fn all_stats() -> HashMap<u32, Stat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parse_stat(&text)?))
        })
        .collect()
}

/// Figures of a process tree.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TreeSample {
    /// CPU use since the previous sample of the same root, percent of all cores.
    pub cpu_percent: f64,
    /// Resident memory of all its processes, MiB.
    pub memory_mib: f64,
}

/// Samples one process tree; keeps the previous CPU reading to measure use between samples.
#[derive(Debug, Default)]
pub struct TreeSampler {
    previous: Option<(u32, Instant, u64)>,
}

impl TreeSampler {
    /// The tree under `root` now; zeros without a root. CPU use is 0 on the first sample of a
    /// root (there is no interval yet).
    pub fn sample(&mut self, root: Option<u32>) -> TreeSample {
        let Some(root) = root else {
            self.previous = None;
            return TreeSample::default();
        };
        let stats = all_stats();
        if !stats.contains_key(&root) {
            self.previous = None;
            return TreeSample::default();
        }
        let parents: HashMap<u32, u32> = stats.iter().map(|(&p, s)| (p, s.ppid)).collect();
        let tree = descendants(root, &parents);
        let ticks: u64 = tree
            .iter()
            .filter_map(|p| stats.get(p))
            .map(|s| s.ticks)
            .sum();
        let rss_kib: u64 = tree
            .iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            .filter_map(|s| parse_rss_kib(&s))
            .sum();
        let now = Instant::now();
        let cpu_percent = match self.previous {
            Some((pid, at, before)) if pid == root => {
                let seconds = now.duration_since(at).as_secs_f64();
                let per_second = rustix::param::clock_ticks_per_second() as f64;
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
                if seconds > 0.0 {
                    (ticks.saturating_sub(before) as f64 / per_second / seconds / cores * 100.0)
                        .clamp(0.0, 100.0)
                } else {
                    0.0
                }
            }
            _ => 0.0,
        };
        self.previous = Some((root, now, ticks));
        TreeSample {
            cpu_percent,
            memory_mib: rss_kib as f64 / 1024.0,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn stat_lines_with_odd_names_are_read_from_the_last_parenthesis() {
        let line = "4242 (llama (server) x) S 4200 4242 4200 0 -1 4194560 100 0 0 0 \
                    1500 250 0 0 20 0 3 0 12345 1000000 2000 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                ppid: 4200,
                ticks: 1750
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }

    #[test]
    fn rss_comes_from_vmrss() {
        let status = "Name:\tllama-server\nVmPeak:\t  900 kB\nVmRSS:\t  204800 kB\n";
        assert_eq!(parse_rss_kib(status), Some(204_800));
        assert_eq!(parse_rss_kib("Name:\tzombie\n"), None);
    }

    #[test]
    fn the_tree_holds_children_and_grandchildren_only() {
        let parents = HashMap::from([(10, 1), (11, 10), (12, 11), (13, 1), (14, 12)]);
        let mut tree = descendants(10, &parents);
        tree.sort_unstable();
        assert_eq!(tree, [10, 11, 12, 14]);
    }

    #[test]
    fn this_process_is_measured() {
        let mut sampler = TreeSampler::default();
        let me = std::process::id();
        let first = sampler.sample(Some(me));
        assert!(first.memory_mib > 1.0, "{first:?}");
        assert_eq!(first.cpu_percent, 0.0);
        // Burn some CPU, then the second sample sees it.
        let started = Instant::now();
        let mut x = 0u64;
        while started.elapsed().as_millis() < 200 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let second = sampler.sample(Some(me));
        assert!(second.cpu_percent > 0.0, "{second:?}");
        assert_eq!(sampler.sample(None), TreeSample::default());
    }
}
