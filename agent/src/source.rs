//! Where samples come from: NVML on a GPU node, or a simulated node for tests and demos.

use proto::{GpuInfo, GpuSample};

use crate::nvml::NvmlSource;
use crate::simulated::SimulatedSource;

/// Which sample source the agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// NVIDIA's management library (libnvidia-ml.so.1, shipped with the driver).
    Nvml,
    /// Plausible made-up values; every output derived from them is labelled simulated.
    Simulated,
}

/// Which GPUs to monitor (`--gpus` / `--gpu-num`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuSelection {
    /// Every GPU the source has (a simulated node has one).
    All,
    /// The first N GPUs (`--gpu-num N`).
    First(usize),
    /// These indices (`--gpus 0,2`).
    Indices(Vec<u32>),
}

impl GpuSelection {
    /// The indices selected out of `count` GPUs, or an error naming the flag and the count.
    pub fn resolve(&self, count: u32) -> Result<Vec<u32>, SourceError> {
        match self {
            GpuSelection::All => Ok((0..count).collect()),
            GpuSelection::First(n) => {
                let n32 = u32::try_from(*n).unwrap_or(u32::MAX);
                if *n == 0 || n32 > count {
                    return Err(SourceError::Selection(format!(
                        "--gpu-num {n}: this node has {count} GPU(s)"
                    )));
                }
                Ok((0..n32).collect())
            }
            GpuSelection::Indices(indices) => {
                if indices.is_empty() {
                    return Err(SourceError::Selection("--gpus: no index given".into()));
                }
                if let Some(bad) = indices.iter().find(|&&i| i >= count) {
                    return Err(SourceError::Selection(format!(
                        "--gpus: GPU index {bad} does not exist; this node has {count} GPU(s) (indices 0..{count})"
                    )));
                }
                let mut unique = indices.clone();
                unique.sort_unstable();
                unique.dedup();
                if unique.len() != indices.len() {
                    return Err(SourceError::Selection(format!(
                        "--gpus {}: an index is repeated",
                        join(indices)
                    )));
                }
                Ok(indices.clone())
            }
        }
    }

    /// How many GPUs a simulated node has for this selection.
    pub fn simulated_count(&self) -> u32 {
        match self {
            GpuSelection::All => 1,
            GpuSelection::First(n) => u32::try_from(*n).unwrap_or(u32::MAX),
            GpuSelection::Indices(indices) => indices.iter().max().map_or(1, |m| m + 1),
        }
    }
}

fn join(indices: &[u32]) -> String {
    indices
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a source could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// NVML could not be loaded or initialised.
    #[error(
        "cannot open NVML (libnvidia-ml.so.1): {0}; is the NVIDIA driver installed? use --source simulated for a demo"
    )]
    NvmlOpen(String),
    /// NVML opened but a query needed for the inventory failed.
    #[error("NVML: {0}")]
    Nvml(String),
    /// `--gpus` / `--gpu-num` selects GPUs that do not exist.
    #[error("{0}")]
    Selection(String),
}

impl SourceError {
    /// Stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::NvmlOpen(_) => "nvml_open",
            SourceError::Nvml(_) => "nvml",
            SourceError::Selection(_) => "gpu_selection",
        }
    }
}

/// A sampler of the monitored GPUs. Calls block (NVML serialises in the driver), so a source
/// lives on the poller thread.
pub trait Source: Send {
    /// The monitored GPUs, in sampling order.
    fn inventory(&self) -> Vec<GpuInfo>;
    /// Reads one GPU now. `seq` and `t_ns` are left 0 (the poller sets them); fields that could
    /// not be read are 0 with their bit set in `missing_fields`. Without `read_energy` the
    /// energy counter is skipped (it can cost milliseconds) and marked missing.
    fn sample(&mut self, gpu_index: u32, read_energy: bool) -> GpuSample;
    /// Whether the values are made up.
    fn simulated(&self) -> bool;
}

/// Opens a source for the selected GPUs. For NVML this loads the library and checks the
/// selection against the GPUs present, so a node without a driver fails here, at start.
pub fn open(kind: SourceKind, selection: &GpuSelection) -> Result<Box<dyn Source>, SourceError> {
    Ok(match kind {
        SourceKind::Nvml => Box::new(NvmlSource::open(selection)?),
        SourceKind::Simulated => Box::new(SimulatedSource::new(selection)?),
    })
}

/// The bit of `missing_fields` for a `GpuSample` field number.
pub const fn missing_bit(field_number: u32) -> u64 {
    1 << field_number
}

/// `GpuSample` field numbers (see benchctl.proto).
pub mod field {
    pub const UTILIZATION_PCT: u32 = 4;
    pub const MEMORY_UTILIZATION_PCT: u32 = 5;
    pub const MEMORY_USED_BYTES: u32 = 6;
    pub const MEMORY_TOTAL_BYTES: u32 = 7;
    pub const TEMPERATURE_C: u32 = 8;
    pub const POWER_W: u32 = 9;
    pub const SM_CLOCK_MHZ: u32 = 10;
    pub const ENERGY_MJ: u32 = 11;
    pub const THROTTLE_REASONS: u32 = 12;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_resolves_against_the_count() {
        assert_eq!(GpuSelection::All.resolve(3).unwrap(), vec![0, 1, 2]);
        assert_eq!(GpuSelection::First(2).resolve(3).unwrap(), vec![0, 1]);
        assert_eq!(
            GpuSelection::Indices(vec![2, 0]).resolve(3).unwrap(),
            vec![2, 0]
        );
        let e = GpuSelection::First(4).resolve(2).unwrap_err().to_string();
        assert!(e.contains("--gpu-num 4") && e.contains("2 GPU"), "{e}");
        let e = GpuSelection::Indices(vec![0, 5])
            .resolve(2)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--gpus") && e.contains('5') && e.contains("2 GPU"),
            "{e}"
        );
        let e = GpuSelection::Indices(vec![1, 1]).resolve(2).unwrap_err();
        assert_eq!(e.kind(), "gpu_selection");
    }

    #[test]
    fn nvml_open_failure_is_clear() {
        // This machine has no NVIDIA driver; on one that has, the open must succeed instead.
        match open(SourceKind::Nvml, &GpuSelection::All) {
            Err(e) => {
                let text = e.to_string();
                assert_eq!(e.kind(), "nvml_open", "{text}");
                assert!(text.contains("NVML"), "{text}");
                assert!(text.contains("--source simulated"), "{text}");
            }
            Ok(source) => {
                assert!(!source.simulated());
                assert!(!source.inventory().is_empty());
            }
        }
    }
}
