//! The metrics sampler: one reader of the machine's figures (CPU, memory, swap, disk of the
//! models folder, NVIDIA GPUs) that `serve` calls on an interval and shares with every open
//! dashboard, plus the Prometheus text format they are exported in.
//!
//! A source that cannot be read leaves its figure at 0; the sampler never fails, so it can never
//! stop the server.

pub mod gpu;
pub mod system;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use crate::db::metrics::Metrics;
use gpu::{Gpu, GpuSample};
use system::{CpuTimes, ProcReader};

/// Samples the machine.
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
    /// A sampler for the filesystem of `models_dir`, with NVML if installed. CPU use is measured
    /// from now, so the first sample already has an interval behind it.
    pub fn new(models_dir: PathBuf) -> Sampler {
        Sampler::with_gpu(models_dir, Gpu::open())
    }

    /// A sampler with a given GPU reader.
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

    /// Measures disk use of another folder from now on.
    pub fn set_models_dir(&mut self, dir: PathBuf) {
        self.models_dir = dir;
    }

    /// The GPU reader.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// GPUs read by the last sample.
    pub fn gpu_devices(&self) -> u32 {
        self.last_gpu.devices
    }

    /// Takes a sample; `active_models` is passed through. `id` and `timestamp` are left 0.
    pub fn sample(&mut self, active_models: i64) -> Metrics {
        let cpu_usage = match (self.prev_cpu, self.proc.cpu_times()) {
            (Some(prev), Ok(now)) => {
                self.prev_cpu = Some(now);
                system::cpu_percent(prev, now)
            }
            (None, Ok(now)) => {
                self.prev_cpu = Some(now);
                0.0
            }
            (_, Err(_)) => 0.0,
        };
        let memory = self.proc.meminfo().unwrap_or_default();
        self.last_gpu = self.gpu.sample();
        Metrics {
            id: 0,
            cpu_usage,
            memory_usage: memory.memory_percent(),
            disk_usage: system::disk_usage_percent(&self.models_dir).unwrap_or(0.0),
            active_models,
            uptime: self.started.elapsed().as_secs_f64(),
            gpu_usage: self.last_gpu.usage,
            gpu_memory_used: self.last_gpu.memory_used_mib,
            gpu_memory_total: self.last_gpu.memory_total_mib,
            swap_usage: memory.swap_percent(),
            timestamp: 0,
        }
    }
}

fn metric(out: &mut String, name: &str, help: &str, kind: &str, value: &dyn std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// Appends a gauge in Prometheus text format.
pub fn prometheus_gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let value = if value.is_finite() { value } else { 0.0 };
    metric(out, name, help, "gauge", &value);
}

/// Appends a counter (its name ends in `_total`) in Prometheus text format.
pub fn prometheus_counter(out: &mut String, name: &str, help: &str, value: u64) {
    metric(out, name, help, "counter", &value);
}

/// Appends a sample's figures as gauges.
pub fn prometheus_text(m: &Metrics, gpu_devices: u32, out: &mut String) {
    let gauges = [
        (
            "cpu_usage_percent",
            "CPU use across all cores.",
            m.cpu_usage,
        ),
        ("memory_usage_percent", "Memory in use.", m.memory_usage),
        ("swap_usage_percent", "Swap in use.", m.swap_usage),
        (
            "disk_usage_percent",
            "Use of the filesystem holding the models folder.",
            m.disk_usage,
        ),
        ("active_models", "Models loaded.", m.active_models as f64),
        ("uptime_seconds", "Seconds the dashboard has run.", m.uptime),
        (
            "gpu_devices",
            "NVIDIA GPUs read through NVML.",
            f64::from(gpu_devices),
        ),
        ("gpu_usage_percent", "Mean GPU utilisation.", m.gpu_usage),
        (
            "gpu_memory_used_bytes",
            "GPU memory in use, all devices.",
            m.gpu_memory_used * 1_048_576.0,
        ),
        (
            "gpu_memory_total_bytes",
            "GPU memory in total, all devices.",
            m.gpu_memory_total * 1_048_576.0,
        ),
    ];
    for (name, help, value) in gauges {
        prometheus_gauge(out, &format!("llama_dashboard_{name}"), help, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_in_range_and_uptime_grows() {
        let dir = tempfile::tempdir().unwrap();
        let mut sampler = Sampler::with_gpu(dir.path().to_path_buf(), Gpu::absent("test"));
        let a = sampler.sample(2);
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = sampler.sample(2);
        for m in [&a, &b] {
            assert!((0.0..=100.0).contains(&m.cpu_usage), "{m:?}");
            assert!(m.memory_usage > 0.0 && m.memory_usage <= 100.0, "{m:?}");
            assert!((0.0..=100.0).contains(&m.disk_usage), "{m:?}");
            assert_eq!(
                (m.active_models, m.gpu_usage, m.gpu_memory_total),
                (2, 0.0, 0.0)
            );
        }
        assert!(b.uptime > a.uptime);
        assert_eq!(sampler.gpu_devices(), 0);
    }

    #[test]
    fn prometheus_text_has_help_type_and_a_number_for_every_metric() {
        let m = Metrics {
            memory_usage: 42.5,
            gpu_memory_used: 2.0,
            uptime: f64::NAN,
            ..Metrics::default()
        };
        let mut out = String::new();
        prometheus_text(&m, 1, &mut out);
        prometheus_counter(&mut out, "llama_dashboard_scans_total", "Scans.", 3);
        let mut names = Vec::new();
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                names.push(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (name, value) = line.split_once(' ').unwrap();
            assert!(names.last().is_some_and(|n| n == name), "{line}");
            assert!(value.parse::<f64>().unwrap().is_finite(), "{line}");
        }
        assert_eq!(names.len(), 11);
        assert!(out.contains("llama_dashboard_memory_usage_percent 42.5\n"));
        assert!(out.contains("llama_dashboard_gpu_memory_used_bytes 2097152\n"));
        assert!(out.contains("# TYPE llama_dashboard_scans_total counter\n"));
    }
}
