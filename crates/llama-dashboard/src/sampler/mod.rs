//! The metrics sampler: the one reader of the machine's figures (CPU, memory, swap, disk of the
//! models folder, NVIDIA GPUs) that `serve` calls on an interval and shares with every open
//! dashboard, plus the Prometheus text format the figures and the crate's counters are exported
//! in.
//!
//! A source that cannot be read leaves its figure at 0; the sampler never returns an error, so it
//! can never stop the server.

pub mod gpu;
pub mod process;
pub mod system;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use crate::db::metrics::Metrics;
use gpu::{Gpu, GpuSample};
use system::{CpuTimes, ProcReader};

/// Samples the machine; keep one for the life of the server (it holds the previous CPU reading,
/// the read buffer and NVML).
#[derive(Debug)]
pub struct Sampler {
    proc: ProcReader,
    prev_cpu: Option<CpuTimes>,
    gpu: Gpu,
    last_gpu: GpuSample,
    models_dir: PathBuf,
    started: Instant,
}

impl Sampler {
    /// A sampler measuring the filesystem of `models_dir`, with NVML if it is installed. CPU use
    /// is measured from now, so the first sample already has an interval behind it, and uptime
    /// counts from now.
    pub fn new(models_dir: PathBuf) -> Sampler {
        Sampler::with_gpu(models_dir, Gpu::open())
    }

    /// As [`Sampler::new`], with a given GPU reader (e.g. [`Gpu::absent`]).
    pub fn with_gpu(models_dir: PathBuf, gpu: Gpu) -> Sampler {
        let mut proc = ProcReader::default();
        let prev_cpu = proc.cpu_times().ok();
        Sampler {
            proc,
            prev_cpu,
            gpu,
            last_gpu: GpuSample::default(),
            models_dir,
            started: Instant::now(),
        }
    }

    /// Measures the disk use of another folder from the next sample on.
    pub fn set_models_dir(&mut self, dir: PathBuf) {
        self.models_dir = dir;
    }

    /// The GPU reader (to tell whether NVML was found, and if not, why).
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// GPUs that answered in the last sample (0 before the first).
    pub fn gpu_devices(&self) -> u32 {
        self.last_gpu.devices
    }

    /// Takes a sample. `active_models` is passed through; `id` and `timestamp` are left 0 for the
    /// database to set; CPU use is over the time since the previous sample (or since
    /// [`Sampler::new`]). A figure whose source cannot be read is 0.
    pub fn sample(&mut self, active_models: i64) -> Metrics {
        let cpu_usage = match self.proc.cpu_times() {
            Ok(now) => {
                let usage = self
                    .prev_cpu
                    .map_or(0.0, |prev| system::cpu_percent(prev, now));
                self.prev_cpu = Some(now);
                usage
            }
            Err(_) => 0.0,
        };
        let memory = self.proc.meminfo().unwrap_or_default();
        let disk_usage = system::disk_usage_percent(&self.models_dir).unwrap_or(0.0);
        self.last_gpu = self.gpu.sample();
        Metrics {
            id: 0,
            cpu_usage,
            memory_usage: memory.memory_percent(),
            disk_usage,
            active_models,
            uptime: self.started.elapsed().as_secs_f64(),
            gpu_usage: self.last_gpu.usage,
            gpu_memory_used: self.last_gpu.memory_used_mib,
            gpu_memory_total: self.last_gpu.memory_total_mib,
            swap_usage: memory.swap_percent(),
            timestamp: 0,
            ..Metrics::default()
        }
    }
}

/// Writes one metric family with a single unlabelled sample.
fn family(out: &mut String, name: &str, help: &str, kind: &str, value: &dyn std::fmt::Display) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    // The format's only escapes in HELP text: backslash and line feed.
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    let _ = write!(out, "\n# TYPE {name} {kind}\n{name} {value}\n");
}

/// Appends a gauge in the Prometheus text exposition format (`# HELP`, `# TYPE`, the sample).
/// A value that is not finite is written as 0.
pub fn prometheus_gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let value = if value.is_finite() { value } else { 0.0 };
    family(out, name, help, "gauge", &value);
}

/// Appends a counter in the Prometheus text exposition format; by convention `name` ends in
/// `_total`.
pub fn prometheus_counter(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, help, "counter", &value);
}

/// Appends a sample's figures as gauges, GPU memory in bytes, `gpu_devices` as
/// `llama_dashboard_gpu_devices`.
pub fn prometheus_text(m: &Metrics, gpu_devices: u32, out: &mut String) {
    const MIB: f64 = 1_048_576.0;
    let gauges = [
        (
            "llama_dashboard_cpu_usage_percent",
            "CPU use across all cores, percent.",
            m.cpu_usage,
        ),
        (
            "llama_dashboard_memory_usage_percent",
            "Memory in use, percent.",
            m.memory_usage,
        ),
        (
            "llama_dashboard_swap_usage_percent",
            "Swap in use, percent.",
            m.swap_usage,
        ),
        (
            "llama_dashboard_disk_usage_percent",
            "Use of the filesystem holding the models folder, percent.",
            m.disk_usage,
        ),
        (
            "llama_dashboard_active_models",
            "Models loaded.",
            m.active_models as f64,
        ),
        (
            "llama_dashboard_uptime_seconds",
            "Seconds llama-server has run (0 while it is not running).",
            m.uptime,
        ),
        (
            "llama_dashboard_tokens_per_second",
            "Tokens llama-server generated per second (from its /metrics).",
            m.tokens_per_second,
        ),
        (
            "llama_dashboard_llama_server_cpu_usage_percent",
            "CPU use of llama-server and its model processes, percent of all cores.",
            m.llama_cpu_usage,
        ),
        (
            "llama_dashboard_llama_server_memory_bytes",
            "Resident memory of llama-server and its model processes.",
            m.llama_memory_used * MIB,
        ),
        (
            "llama_dashboard_gpu_devices",
            "NVIDIA GPUs read through NVML.",
            f64::from(gpu_devices),
        ),
        (
            "llama_dashboard_gpu_usage_percent",
            "Mean GPU utilisation, percent.",
            m.gpu_usage,
        ),
        (
            "llama_dashboard_gpu_memory_used_bytes",
            "GPU memory in use, all devices.",
            m.gpu_memory_used * MIB,
        ),
        (
            "llama_dashboard_gpu_memory_total_bytes",
            "GPU memory in total, all devices.",
            m.gpu_memory_total * MIB,
        ),
    ];
    for (name, help, value) in gauges {
        prometheus_gauge(out, name, help, value);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn samples_are_in_range_and_uptime_grows() {
        let dir = tempfile::tempdir().unwrap();
        let mut sampler = Sampler::new(dir.path().join("models"));
        let a = sampler.sample(2);
        std::thread::sleep(std::time::Duration::from_millis(30));
        sampler.set_models_dir(dir.path().to_path_buf());
        let b = sampler.sample(3);
        for m in [&a, &b] {
            for percent in [m.cpu_usage, m.memory_usage, m.disk_usage, m.swap_usage] {
                assert!((0.0..=100.0).contains(&percent), "{m:?}");
            }
            assert!(m.memory_usage > 0.0, "{m:?}");
            assert!((0.0..=100.0).contains(&m.gpu_usage), "{m:?}");
            assert!(m.gpu_memory_used <= m.gpu_memory_total, "{m:?}");
            assert_eq!((m.id, m.timestamp), (0, 0));
            if !sampler.gpu().available() {
                assert_eq!((m.gpu_usage, m.gpu_memory_total), (0.0, 0.0));
            }
        }
        assert_eq!((a.active_models, b.active_models), (2, 3));
        assert!(a.uptime >= 0.0 && b.uptime > a.uptime, "{a:?} {b:?}");
        assert!(b.uptime - a.uptime >= 0.03);
        if !sampler.gpu().available() {
            assert_eq!(sampler.gpu_devices(), 0);
        }
    }

    /// Parses exposition text: every family has HELP then TYPE then one `name value` line.
    fn parse(text: &str) -> BTreeMap<String, (String, f64)> {
        let mut families = BTreeMap::new();
        let mut help: Option<&str> = None;
        let mut kind: Option<(&str, &str)> = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                help = Some(rest.split_once(' ').unwrap().0);
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, k) = rest.split_once(' ').unwrap();
                assert_eq!(help, Some(name), "HELP before TYPE: {line}");
                assert!(matches!(k, "gauge" | "counter"), "{line}");
                kind = Some((name, k));
            } else {
                assert!(!line.starts_with('#'), "{line}");
                let (name, value) = line.split_once(' ').unwrap();
                let (typed, k) = kind.take().unwrap();
                assert_eq!(typed, name, "TYPE before the sample: {line}");
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                    "{line}"
                );
                let value: f64 = value.parse().unwrap();
                assert!(value.is_finite(), "{line}");
                let fresh = families.insert(name.to_owned(), (k.to_owned(), value));
                assert!(fresh.is_none(), "{name} twice");
                help = None;
            }
        }
        families
    }

    #[test]
    fn prometheus_text_has_help_type_and_a_number_for_every_metric() {
        let m = Metrics {
            cpu_usage: 12.25,
            memory_usage: 42.5,
            active_models: 2,
            gpu_memory_used: 2.0,
            gpu_memory_total: 80.5,
            uptime: f64::NAN,
            tokens_per_second: 88.5,
            llama_memory_used: 100.0,
            ..Metrics::default()
        };
        let mut out = String::new();
        prometheus_text(&m, 1, &mut out);
        prometheus_counter(&mut out, "llama_dashboard_scans_total", "Scans run.", 3);
        prometheus_gauge(&mut out, "odd_help", "a \\ and a\nline", f64::INFINITY);
        assert!(out.ends_with('\n'));
        assert!(out.contains("# HELP odd_help a \\\\ and a\\nline\n"));
        let families = parse(&out);
        assert_eq!(families.len(), 15);
        let value = |name: &str| families[name].1;
        assert_eq!(value("llama_dashboard_cpu_usage_percent"), 12.25);
        assert_eq!(value("llama_dashboard_memory_usage_percent"), 42.5);
        assert_eq!(value("llama_dashboard_active_models"), 2.0);
        assert_eq!(value("llama_dashboard_uptime_seconds"), 0.0, "NaN is 0");
        assert_eq!(value("llama_dashboard_gpu_devices"), 1.0);
        assert_eq!(value("llama_dashboard_gpu_memory_used_bytes"), 2_097_152.0);
        assert_eq!(
            value("llama_dashboard_gpu_memory_total_bytes"),
            80.5 * 1_048_576.0
        );
        assert_eq!(value("odd_help"), 0.0, "infinity is 0");
        assert_eq!(value("llama_dashboard_tokens_per_second"), 88.5);
        assert_eq!(
            value("llama_dashboard_llama_server_memory_bytes"),
            100.0 * 1_048_576.0
        );
        assert_eq!(
            families["llama_dashboard_scans_total"],
            ("counter".into(), 3.0)
        );
        for name in [
            "llama_dashboard_swap_usage_percent",
            "llama_dashboard_disk_usage_percent",
            "llama_dashboard_gpu_usage_percent",
        ] {
            assert_eq!(families[name], ("gauge".into(), 0.0));
        }
    }

    #[test]
    fn a_live_sample_exports_cleanly() {
        let mut sampler = Sampler::with_gpu(std::env::temp_dir(), Gpu::absent("test"));
        let m = sampler.sample(0);
        let mut out = String::new();
        prometheus_text(&m, sampler.gpu_devices(), &mut out);
        assert_eq!(parse(&out).len(), 13);
    }
}
