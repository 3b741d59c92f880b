//! NVIDIA GPUs through NVML. The library (`libnvidia-ml.so.1`, installed with the driver) is
//! loaded at run time, so the dashboard runs on machines without it: then every figure is zero,
//! with the reason kept for the log, and nothing fails.

use nvml_wrapper::Nvml;

/// Figures across every GPU: mean utilisation, summed memory.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuSample {
    /// Mean utilisation of the devices read, percent.
    pub usage: f64,
    /// Memory in use, MiB.
    pub memory_used_mib: f64,
    /// Memory in total, MiB.
    pub memory_total_mib: f64,
    /// Devices read.
    pub devices: u32,
}

/// NVML, when it could be loaded.
pub struct Gpu {
    nvml: Option<Nvml>,
    reason: Option<String>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("available", &self.nvml.is_some())
            .field("reason", &self.reason)
            .finish()
    }
}

const MIB: f64 = 1024.0 * 1024.0;

impl Gpu {
    /// Loads NVML if it is installed; never fails.
    pub fn open() -> Gpu {
        match Nvml::init() {
            Ok(nvml) => Gpu {
                nvml: Some(nvml),
                reason: None,
            },
            Err(e) => Gpu {
                nvml: None,
                reason: Some(format!("NVML not available ({e}); GPU figures are 0")),
            },
        }
    }

    /// A GPU reader that reads nothing (for tests and machines told not to look).
    pub fn absent(reason: &str) -> Gpu {
        Gpu {
            nvml: None,
            reason: Some(reason.to_string()),
        }
    }

    /// Whether NVML was loaded.
    pub fn available(&self) -> bool {
        self.nvml.is_some()
    }

    /// Why there are no GPU figures, when there are none.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Reads every device; a device that fails to answer is left out.
    pub fn sample(&self) -> GpuSample {
        let Some(nvml) = &self.nvml else {
            return GpuSample::default();
        };
        let mut out = GpuSample::default();
        let mut usage_sum = 0.0;
        for index in 0..nvml.device_count().unwrap_or(0) {
            let Ok(device) = nvml.device_by_index(index) else {
                continue;
            };
            let (Ok(rates), Ok(memory)) = (device.utilization_rates(), device.memory_info()) else {
                continue;
            };
            usage_sum += f64::from(rates.gpu);
            out.memory_used_mib += memory.used as f64 / MIB;
            out.memory_total_mib += memory.total as f64 / MIB;
            out.devices += 1;
        }
        if out.devices > 0 {
            out.usage = usage_sum / f64::from(out.devices);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_nvml_every_figure_is_zero_and_the_reason_is_kept() {
        let gpu = Gpu::absent("no driver here");
        assert!(!gpu.available());
        assert_eq!(gpu.sample(), GpuSample::default());
        assert_eq!(gpu.unavailable_reason(), Some("no driver here"));
    }

    #[test]
    fn opening_never_fails() {
        let gpu = Gpu::open();
        let sample = gpu.sample();
        if gpu.available() {
            assert!(sample.memory_total_mib >= sample.memory_used_mib);
            assert!((0.0..=100.0).contains(&sample.usage));
        } else {
            assert_eq!(sample, GpuSample::default());
            assert!(gpu.unavailable_reason().unwrap().contains("NVML"));
        }
    }
}
