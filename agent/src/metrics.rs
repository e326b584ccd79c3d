//! The agent's own metrics (`benchctl-agent --metrics-addr`): samples taken, fields NVML could
//! not read, whether a controller session is open. `prometheus-client` atomics, counted by the
//! poller thread once per poll and by the session.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::source::{field, missing_bit};

/// The agent's metrics; cheap to clone (shared atomics).
#[derive(Clone, Debug, Default)]
pub struct AgentMetrics {
    /// GPU samples taken (one per monitored GPU per poll).
    pub samples_taken: Counter,
    /// GPU fields the source could not read (an NVML error or a field not supported), one per
    /// field per sample; the energy counter skipped between its reads is not counted.
    pub nvml_errors: Counter,
    /// 1 while a session with the controller is registered.
    pub connected: Gauge,
}

impl AgentMetrics {
    /// Registers every metric in `registry` (its names under `benchctl_`).
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "agent_samples_taken",
            "GPU samples taken (one per monitored GPU per poll)",
            self.samples_taken.clone(),
        );
        r.register(
            "agent_nvml_errors",
            "GPU fields that could not be read (NVML errors, fields not supported), per sample",
            self.nvml_errors.clone(),
        );
        r.register(
            "agent_connected",
            "1 while a session with the controller is registered",
            self.connected.clone(),
        );
    }

    /// One poll's samples: `missing` holds each sample's `missing_fields`.
    pub fn poll(&self, missing: impl Iterator<Item = u64>, read_energy: bool) {
        let skipped = if read_energy {
            0
        } else {
            missing_bit(field::ENERGY_MJ)
        };
        let mut n = 0;
        let mut errors = 0;
        for m in missing {
            n += 1;
            errors += u64::from((m & !skipped).count_ones());
        }
        self.samples_taken.inc_by(n);
        self.nvml_errors.inc_by(errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_energy_read_is_not_an_error() {
        let m = AgentMetrics::default();
        let energy = missing_bit(field::ENERGY_MJ);
        let power = missing_bit(field::POWER_W);
        m.poll([energy, energy | power].into_iter(), false);
        assert_eq!((m.samples_taken.get(), m.nvml_errors.get()), (2, 1));
        m.poll([energy].into_iter(), true);
        assert_eq!((m.samples_taken.get(), m.nvml_errors.get()), (3, 2));
    }
}
