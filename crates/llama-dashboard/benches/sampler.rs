//! What the metrics sampler costs, so the dashboard's own load stays out of the figures it shows:
//! 2,000 calls of `Sampler::sample`, timed by the wall clock and by this process's CPU clock, next
//! to 2,000 bare reads of `/proc/stat` into a `String` (the least any sampler must do) and each
//! source on its own, with the share of one core that sampling every 2 s takes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::time::{Duration, Instant};

use llama_dashboard::sampler::Sampler;
use llama_dashboard::sampler::gpu::Gpu;
use llama_dashboard::sampler::system::{ProcReader, disk_usage_percent};
use rustix::time::{ClockId, clock_gettime};

const RUNS: u32 = 2_000;
/// The interval `serve` samples at.
const INTERVAL_S: f64 = 2.0;

/// CPU time this process has used, user and system.
fn process_cpu() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap(),
        u32::try_from(t.tv_nsec).unwrap(),
    )
}

/// Wall and CPU time per call of `work`, over `RUNS` calls after a few to warm up.
fn measure(mut work: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..10 {
        work();
    }
    let (wall, cpu) = (Instant::now(), process_cpu());
    for _ in 0..RUNS {
        work();
    }
    (wall.elapsed() / RUNS, (process_cpu() - cpu) / RUNS)
}

fn row(case: &str, (wall, cpu): (Duration, Duration)) {
    let share = cpu.as_secs_f64() / INTERVAL_S * 100.0;
    println!(
        "| {case:<44} | {:>9.1} | {:>8.1} | {share:>11.5} |",
        wall.as_secs_f64() * 1e6,
        cpu.as_secs_f64() * 1e6,
    );
}

fn main() {
    let started = Instant::now();
    let models = std::env::temp_dir().join("llama-dashboard-bench/models-not-made");

    let mut text = String::new();
    let baseline = measure(|| {
        text.clear();
        std::fs::File::open("/proc/stat")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        std::hint::black_box(&text);
    });

    let mut reader = ProcReader::default();
    let cpu = measure(|| {
        std::hint::black_box(reader.cpu_times().unwrap());
    });
    let memory = measure(|| {
        std::hint::black_box(reader.meminfo().unwrap());
    });
    let disk = measure(|| {
        std::hint::black_box(disk_usage_percent(&models).unwrap());
    });
    let gpu = Gpu::open();
    let gpu_only = measure(|| {
        std::hint::black_box(gpu.sample());
    });

    let mut sampler = Sampler::new(models.clone());
    let nvml = match sampler.gpu().unavailable_reason() {
        None => format!("NVML loaded, {} GPU(s)", gpu.sample().devices),
        Some(reason) => reason.to_owned(),
    };
    let whole = measure(|| {
        std::hint::black_box(sampler.sample(0));
    });

    println!("metrics sampler: {RUNS} calls per case; {nvml}");
    println!(
        "| {:<44} | {:>9} | {:>8} | {:>11} |",
        "case", "wall µs", "CPU µs", "% core @2 s"
    );
    println!("|{:-<46}|{:->11}|{:->10}|{:->13}|", "", "", "", "");
    row("baseline: read /proc/stat into a String", baseline);
    row("  CPU times (/proc/stat, parsed)", cpu);
    row("  memory and swap (/proc/meminfo, parsed)", memory);
    row("  disk (statvfs, missing folder walked up)", disk);
    row("  GPU (NVML)", gpu_only);
    row("Sampler::sample (all of the above)", whole);
    println!(
        "sampling every {INTERVAL_S} s costs {:.5} % of one core; bench ran {:.2} s",
        whole.1.as_secs_f64() / INTERVAL_S * 100.0,
        started.elapsed().as_secs_f64()
    );
}
