//! What the metrics sampler costs: 2,000 samples timed by the wall clock and by this process's
//! CPU clock, next to 2,000 bare reads of `/proc/stat` (the least any sampler must do), and the
//! share of one core that sampling every 2 s takes (the brief's goal: under 1 %).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::time::{Duration, Instant};

use llama_dashboard::sampler::Sampler;
use rustix::time::{ClockId, clock_gettime};

const SAMPLES: u32 = 2_000;

fn cpu_time() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn measure(mut work: impl FnMut()) -> (Duration, Duration) {
    let (wall, cpu) = (Instant::now(), cpu_time());
    for _ in 0..SAMPLES {
        work();
    }
    (wall.elapsed() / SAMPLES, (cpu_time() - cpu) / SAMPLES)
}

fn main() {
    let dir = std::env::temp_dir();
    let mut buffer = String::new();
    let (raw_wall, raw_cpu) = measure(|| {
        buffer.clear();
        std::fs::File::open("/proc/stat")
            .unwrap()
            .read_to_string(&mut buffer)
            .unwrap();
    });
    let mut sampler = Sampler::new(dir);
    let gpu = if sampler.gpu().available() {
        "NVML loaded"
    } else {
        "no NVML (GPU figures 0)"
    };
    let (wall, cpu) = measure(|| {
        std::hint::black_box(sampler.sample(0));
    });
    let share = cpu.as_secs_f64() / 2.0 * 100.0;
    println!("metrics sampler, {SAMPLES} samples each ({gpu})");
    println!("| case | wall per sample | CPU per sample |");
    println!("|---|---|---|");
    println!(
        "| baseline: read /proc/stat | {:.1} µs | {:.1} µs |",
        raw_wall.as_secs_f64() * 1e6,
        raw_cpu.as_secs_f64() * 1e6
    );
    println!(
        "| Sampler::sample (CPU, memory, swap, disk, GPU) | {:.1} µs | {:.1} µs |",
        wall.as_secs_f64() * 1e6,
        cpu.as_secs_f64() * 1e6
    );
    println!("one sample every 2 s costs {share:.4} % of one core (goal < 1 %)");
}
