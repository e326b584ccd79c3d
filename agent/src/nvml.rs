//! The NVML source (nvml-wrapper). Opened once at start; a field the driver cannot read sets its
//! bit in `missing_fields` instead of failing the sample.

use std::ffi::OsStr;

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use proto::{GpuInfo, GpuSample};

use crate::source::{GpuSelection, Source, SourceError, field, missing_bit};

/// The soname the driver installs (the unversioned name exists only with development packages).
const LIB_NAME: &str = "libnvidia-ml.so.1";

/// Samples GPUs through NVML.
pub struct NvmlSource {
    nvml: Nvml,
    gpus: Vec<GpuInfo>,
}

impl std::fmt::Debug for NvmlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlSource")
            .field("gpus", &self.gpus)
            .finish_non_exhaustive()
    }
}

impl NvmlSource {
    /// Loads NVML and reads the inventory of the selected GPUs.
    pub fn open(selection: &GpuSelection) -> Result<Self, SourceError> {
        let nvml = Nvml::builder()
            .lib_path(OsStr::new(LIB_NAME))
            .init()
            .map_err(|e| SourceError::NvmlOpen(e.to_string()))?;
        let count = nvml
            .device_count()
            .map_err(|e| SourceError::Nvml(format!("counting GPUs: {e}")))?;
        if count == 0 {
            return Err(SourceError::Nvml(
                "the driver reports no GPUs on this node".into(),
            ));
        }
        let indices = selection.resolve(count)?;
        let driver_version = nvml.sys_driver_version().unwrap_or_default();
        let mut gpus = Vec::with_capacity(indices.len());
        for index in indices {
            let device = nvml
                .device_by_index(index)
                .map_err(|e| SourceError::Nvml(format!("opening GPU {index}: {e}")))?;
            gpus.push(GpuInfo {
                index,
                uuid: device.uuid().unwrap_or_default(),
                name: device.name().unwrap_or_default(),
                memory_total_bytes: device.memory_info().map(|m| m.total).unwrap_or(0),
                driver_version: driver_version.clone(),
            });
        }
        Ok(Self { nvml, gpus })
    }
}

impl Source for NvmlSource {
    fn inventory(&self) -> Vec<GpuInfo> {
        self.gpus.clone()
    }

    fn sample(&mut self, gpu_index: u32, read_energy: bool) -> GpuSample {
        let mut s = GpuSample {
            gpu_index,
            ..GpuSample::default()
        };
        let device = match self.nvml.device_by_index(gpu_index) {
            Ok(device) => device,
            Err(_) => {
                s.missing_fields = ALL_FIELDS;
                return s;
            }
        };
        let mut missing = 0;
        match device.utilization_rates() {
            Ok(u) => {
                s.utilization_pct = u.gpu as f32;
                s.memory_utilization_pct = u.memory as f32;
            }
            Err(_) => {
                missing |= missing_bit(field::UTILIZATION_PCT)
                    | missing_bit(field::MEMORY_UTILIZATION_PCT);
            }
        }
        match device.memory_info() {
            Ok(m) => {
                s.memory_used_bytes = m.used;
                s.memory_total_bytes = m.total;
            }
            Err(_) => {
                missing |=
                    missing_bit(field::MEMORY_USED_BYTES) | missing_bit(field::MEMORY_TOTAL_BYTES);
            }
        }
        match device.temperature(TemperatureSensor::Gpu) {
            Ok(t) => s.temperature_c = t as f32,
            Err(_) => missing |= missing_bit(field::TEMPERATURE_C),
        }
        match device.power_usage() {
            Ok(mw) => s.power_w = mw as f32 / 1000.0,
            Err(_) => missing |= missing_bit(field::POWER_W),
        }
        match device.clock_info(Clock::SM) {
            Ok(mhz) => s.sm_clock_mhz = mhz,
            Err(_) => missing |= missing_bit(field::SM_CLOCK_MHZ),
        }
        // About 4 ms of CPU per call on an H100 (driver 580), ten times the rest of the poll.
        match read_energy.then(|| device.total_energy_consumption()) {
            Some(Ok(mj)) => s.energy_mj = mj,
            Some(Err(_)) | None => missing |= missing_bit(field::ENERGY_MJ),
        }
        match device.current_throttle_reasons() {
            Ok(reasons) => s.throttle_reasons = reasons.bits(),
            Err(_) => missing |= missing_bit(field::THROTTLE_REASONS),
        }
        s.missing_fields = missing;
        s
    }

    fn simulated(&self) -> bool {
        false
    }
}

/// Every field a sample carries (a GPU that cannot even be opened).
const ALL_FIELDS: u64 = missing_bit(field::UTILIZATION_PCT)
    | missing_bit(field::MEMORY_UTILIZATION_PCT)
    | missing_bit(field::MEMORY_USED_BYTES)
    | missing_bit(field::MEMORY_TOTAL_BYTES)
    | missing_bit(field::TEMPERATURE_C)
    | missing_bit(field::POWER_W)
    | missing_bit(field::SM_CLOCK_MHZ)
    | missing_bit(field::ENERGY_MJ)
    | missing_bit(field::THROTTLE_REASONS);
