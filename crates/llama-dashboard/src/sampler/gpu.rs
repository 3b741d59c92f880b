//! NVIDIA GPUs through NVML. The library (`libnvidia-ml.so`, installed with the driver) is loaded
//! at run time, so the dashboard runs on machines without it: there every GPU figure is zero, the
//! reason is kept for the log and the API, and nothing fails.

use nvml_wrapper::Nvml;

/// One reading across every GPU: mean utilisation, summed memory. All zeros without GPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GpuSample {
    /// Mean utilisation of the devices read, percent.
    pub usage: f64,
    /// Memory in use on the devices read, MiB.
    pub memory_used_mib: f64,
    /// Memory in total on the devices read, MiB.
    pub memory_total_mib: f64,
    /// Devices that answered.
    pub devices: u32,
}

/// NVML when it could be loaded, else why not.
pub struct Gpu {
    nvml: Option<Nvml>,
    reason: Option<String>,
}

// `Nvml` is not `Debug`.
impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("available", &self.nvml.is_some())
            .field("reason", &self.reason)
            .finish()
    }
}

const BYTES_PER_MIB: f64 = 1024.0 * 1024.0;

impl Gpu {
    /// Loads and initialises NVML if it is installed; never fails (without it the reader is
    /// absent, with the reason kept).
    pub fn open() -> Gpu {
        match Nvml::init() {
            Ok(nvml) => Gpu {
                nvml: Some(nvml),
                reason: None,
            },
            Err(e) => Gpu::absent(&format!("NVML not available: {e}")),
        }
    }

    /// A reader that reads nothing, for tests and for machines told not to look for GPUs.
    pub fn absent(reason: &str) -> Gpu {
        Gpu {
            nvml: None,
            reason: Some(reason.to_owned()),
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

    /// Reads every device. A device that fails to answer is left out of the mean and the sums;
    /// without NVML (or without devices) the sample is all zeros.
    pub fn sample(&self) -> GpuSample {
        let mut out = GpuSample::default();
        let Some(nvml) = &self.nvml else {
            return out;
        };
        let mut usage_sum = 0.0;
        for index in 0..nvml.device_count().unwrap_or(0) {
            let Ok(device) = nvml.device_by_index(index) else {
                continue;
            };
            let (Ok(rates), Ok(memory)) = (device.utilization_rates(), device.memory_info()) else {
                continue;
            };
            usage_sum += f64::from(rates.gpu);
            out.memory_used_mib += memory.used as f64 / BYTES_PER_MIB;
            out.memory_total_mib += memory.total as f64 / BYTES_PER_MIB;
            out.devices += 1;
        }
        if out.devices > 0 {
            out.usage = (usage_sum / f64::from(out.devices)).clamp(0.0, 100.0);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn an_absent_reader_samples_zeros_and_keeps_its_reason() {
        let gpu = Gpu::absent("told not to look");
        assert!(!gpu.available());
        assert_eq!(gpu.sample(), GpuSample::default());
        assert_eq!(gpu.unavailable_reason(), Some("told not to look"));
        assert!(format!("{gpu:?}").contains("available: false"));
    }

    /// Without a driver (as on the machines this is developed on) NVML is absent and the sample
    /// is zeros; with one, the figures are in range. Either way nothing fails.
    #[test]
    fn opening_never_fails() {
        let gpu = Gpu::open();
        let sample = gpu.sample();
        if gpu.available() {
            assert_eq!(gpu.unavailable_reason(), None);
            assert!(sample.memory_total_mib >= sample.memory_used_mib);
            assert!((0.0..=100.0).contains(&sample.usage));
        } else {
            assert_eq!(sample, GpuSample::default());
            let reason = gpu.unavailable_reason().unwrap();
            assert!(reason.starts_with("NVML not available: "), "{reason}");
        }
    }
}
