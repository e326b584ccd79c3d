//! A simulated GPU node for tests and demos: plausible, smoothly varying values. The agent
//! registers with `simulated = true`, so every output derived from these samples says so.

use std::time::Instant;

use proto::{GpuInfo, GpuSample};

use crate::source::{GpuSelection, Source, SourceError, field, missing_bit};

/// Product name of every simulated GPU.
pub const SIMULATED_GPU_NAME: &str = "SIMULATED GPU (benchctl-agent --source simulated)";
/// 80 GiB, like an H100.
const MEMORY_TOTAL_BYTES: u64 = 80 << 30;
/// Period of the utilisation wave, seconds.
const PERIOD_S: f64 = 60.0;
/// `nvmlClocksEventReasonGpuIdle`.
const THROTTLE_GPU_IDLE: u64 = 0x1;

/// Simulated GPUs: utilisation follows a slow sine (phase-shifted per GPU) plus a small
/// deterministic ripple; memory, temperature, power and clock follow utilisation; energy
/// integrates power.
#[derive(Debug)]
pub struct SimulatedSource {
    gpus: Vec<GpuInfo>,
    start: Instant,
    /// Per monitored GPU: (last sample time since start in s, energy in mJ).
    energy: Vec<(f64, f64)>,
}

impl SimulatedSource {
    /// A simulated node with the selected GPUs (`--gpu-num N`: N GPUs; default: one).
    pub fn new(selection: &GpuSelection) -> Result<Self, SourceError> {
        let indices = selection.resolve(selection.simulated_count())?;
        let gpus: Vec<GpuInfo> = indices
            .iter()
            .map(|&index| GpuInfo {
                index,
                uuid: format!("SIM-GPU-{index}"),
                name: SIMULATED_GPU_NAME.into(),
                memory_total_bytes: MEMORY_TOTAL_BYTES,
                driver_version: "simulated".into(),
            })
            .collect();
        let energy = indices
            .iter()
            .map(|&i| (0.0, 1.0e9 * f64::from(i + 1)))
            .collect();
        Ok(Self {
            gpus,
            start: Instant::now(),
            energy,
        })
    }

    /// The values of GPU `index` at `t_s` seconds after start (energy excluded).
    pub fn values_at(index: u32, t_s: f64) -> GpuSample {
        let phase = f64::from(index) * 0.9;
        let wave = (std::f64::consts::TAU * t_s / PERIOD_S + phase).sin();
        let ripple = 3.0 * (t_s * 1.7 + phase * 3.1).sin() * (t_s * 0.31).cos();
        let util = (55.0 + 40.0 * wave + ripple).clamp(0.0, 100.0);
        let frac = util / 100.0;
        GpuSample {
            gpu_index: index,
            utilization_pct: util as f32,
            memory_utilization_pct: (util * 0.6) as f32,
            memory_used_bytes: ((0.08 + 0.8 * frac) * MEMORY_TOTAL_BYTES as f64) as u64,
            memory_total_bytes: MEMORY_TOTAL_BYTES,
            temperature_c: (32.0 + 45.0 * frac) as f32,
            power_w: (70.0 + 580.0 * frac) as f32,
            sm_clock_mhz: if util < 5.0 {
                345
            } else {
                1755 + (225.0 * frac) as u32
            },
            throttle_reasons: if util < 5.0 { THROTTLE_GPU_IDLE } else { 0 },
            ..GpuSample::default()
        }
    }
}

impl Source for SimulatedSource {
    fn inventory(&self) -> Vec<GpuInfo> {
        self.gpus.clone()
    }

    fn sample(&mut self, gpu_index: u32, read_energy: bool) -> GpuSample {
        let t_s = self.start.elapsed().as_secs_f64();
        let mut s = Self::values_at(gpu_index, t_s);
        if let Some(slot) = self.gpus.iter().position(|g| g.index == gpu_index) {
            let (last_t, energy_mj) = &mut self.energy[slot];
            *energy_mj += f64::from(s.power_w) * (t_s - *last_t).max(0.0) * 1000.0;
            *last_t = t_s;
            if read_energy {
                s.energy_mj = *energy_mj as u64;
            } else {
                s.missing_fields |= missing_bit(field::ENERGY_MJ);
            }
        }
        s
    }

    fn simulated(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_in_range() {
        for index in 0..4 {
            for step in 0..2_000 {
                let s = SimulatedSource::values_at(index, f64::from(step) * 0.1);
                assert!((0.0..=100.0).contains(&s.utilization_pct), "{s:?}");
                assert!((0.0..=100.0).contains(&s.memory_utilization_pct), "{s:?}");
                assert!(s.memory_used_bytes <= s.memory_total_bytes, "{s:?}");
                assert!((20.0..=90.0).contains(&s.temperature_c), "{s:?}");
                assert!((50.0..=700.0).contains(&s.power_w), "{s:?}");
                assert!((300..=2000).contains(&s.sm_clock_mhz), "{s:?}");
                assert_eq!(s.missing_fields, 0);
            }
        }
    }

    #[test]
    fn inventory_is_labelled_simulated() {
        let source = SimulatedSource::new(&GpuSelection::First(3)).unwrap();
        assert!(source.simulated());
        let inv = source.inventory();
        assert_eq!(inv.len(), 3);
        assert_eq!(inv[2].uuid, "SIM-GPU-2");
        assert_eq!(inv[2].name, SIMULATED_GPU_NAME);
        assert_eq!(inv[2].driver_version, "simulated");
        let picked = SimulatedSource::new(&GpuSelection::Indices(vec![3, 1])).unwrap();
        let idx: Vec<u32> = picked.inventory().iter().map(|g| g.index).collect();
        assert_eq!(idx, vec![3, 1]);
        assert_eq!(
            SimulatedSource::new(&GpuSelection::All)
                .unwrap()
                .inventory()
                .len(),
            1
        );
    }

    #[test]
    fn energy_is_monotone_and_consistent_with_power() {
        let mut source = SimulatedSource::new(&GpuSelection::First(2)).unwrap();
        let mut last = [0u64; 2];
        let first = std::array::from_fn::<u64, 2, _>(|i| source.sample(i as u32, true).energy_mj);
        let started = Instant::now();
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(5));
            for i in 0..2 {
                let s = source.sample(i, true);
                assert!(s.energy_mj >= last[i as usize]);
                last[i as usize] = s.energy_mj;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        for i in 0..2 {
            let delta_j = (last[i] - first[i]) as f64 / 1000.0;
            // 50..700 W over the elapsed time (some slack for timing).
            assert!(
                delta_j >= 50.0 * elapsed * 0.8,
                "{delta_j} J in {elapsed} s"
            );
            assert!(
                delta_j <= 700.0 * elapsed * 1.2,
                "{delta_j} J in {elapsed} s"
            );
        }
    }

    #[test]
    fn skipped_energy_is_marked_missing() {
        let mut source = SimulatedSource::new(&GpuSelection::First(1)).unwrap();
        let s = source.sample(0, false);
        assert_eq!(s.energy_mj, 0);
        assert_eq!(s.missing_fields, missing_bit(field::ENERGY_MJ));
        let s = source.sample(0, true);
        assert!(s.energy_mj > 0);
        assert_eq!(s.missing_fields, 0);
    }
}
