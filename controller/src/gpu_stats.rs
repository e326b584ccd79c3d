//! A test's GPU statistics: the telemetry of its window ([`NodeWindow`], from the registry)
//! turned into the result's flat `gpu_*` keys, the printed lines, and the original scripts' `raw.log` /
//! `result.log` files.

use serde::{Deserialize, Serialize};

use crate::telemetry::{Gauge, GpuWindow, NodeWindow};

/// The GPU keys of a result: flat statistics over every monitored GPU for scripts, and each
/// node's and GPU's window under `gpu_telemetry`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuStats {
    pub gpu_telemetry_simulated: bool,
    pub gpu_count: usize,
    /// The least coverage of any node's samples over the window (an agent lost or stalled
    /// leaves a gap).
    pub gpu_telemetry_coverage: f64,
    /// No node, or coverage below 90 %.
    pub gpu_telemetry_incomplete: bool,
    pub gpu_utilization_mean_pct: Option<f64>,
    pub gpu_utilization_max_pct: Option<f64>,
    pub gpu_memory_used_mean_mib: Option<f64>,
    pub gpu_memory_used_max_mib: Option<f64>,
    pub gpu_temperature_mean_c: Option<f64>,
    pub gpu_temperature_max_c: Option<f64>,
    pub gpu_power_mean_w: Option<f64>,
    /// A counter delta over the window, summed over the GPUs.
    pub gpu_energy_j: Option<f64>,
    pub gpu_joules_per_output_token: Option<f64>,
    /// The original scripts' filtered averages (samples with utilisation > 10 and a steady memory).
    pub gpu_seed_filter_utilization_pct: Option<f64>,
    pub gpu_seed_filter_memory_used_mib: Option<f64>,
    pub gpu_seed_filter_temperature_c: Option<f64>,
    /// Per node and GPU: gauges (mean, max, p95), energy, throttle reasons.
    pub gpu_telemetry: serde_json::Value,
}

impl GpuStats {
    /// The statistics of a window during which `output_tokens` were generated.
    pub fn of(nodes: &[NodeWindow], output_tokens: u64) -> GpuStats {
        let gpus: Vec<&GpuWindow> = nodes.iter().flat_map(|n| n.gpus.iter()).collect();
        let gauges = |f: fn(&GpuWindow) -> Option<Gauge>| -> Vec<Gauge> {
            gpus.iter().filter_map(|g| f(g)).collect()
        };
        let mean = |f: fn(&GpuWindow) -> Option<Gauge>| {
            let v = gauges(f);
            (!v.is_empty()).then(|| v.iter().map(|g| g.mean).sum::<f64>() / v.len() as f64)
        };
        let max =
            |f: fn(&GpuWindow) -> Option<Gauge>| gauges(f).iter().map(|g| g.max).reduce(f64::max);
        let energy: Option<f64> = gpus.iter().map(|g| g.energy_j).sum();
        let script = nodes.first().map(|n| &n.script_filter);
        let coverage = nodes.iter().map(|n| n.coverage).fold(1.0, f64::min);
        GpuStats {
            gpu_telemetry_simulated: nodes.iter().any(|n| n.simulated),
            gpu_count: gpus.len(),
            gpu_telemetry_coverage: coverage,
            gpu_telemetry_incomplete: nodes.is_empty() || coverage < 0.9,
            gpu_utilization_mean_pct: mean(|g| g.utilization_pct),
            gpu_utilization_max_pct: max(|g| g.utilization_pct),
            gpu_memory_used_mean_mib: mean(|g| g.memory_used_mib),
            gpu_memory_used_max_mib: max(|g| g.memory_used_mib),
            gpu_temperature_mean_c: mean(|g| g.temperature_c),
            gpu_temperature_max_c: max(|g| g.temperature_c),
            gpu_power_mean_w: mean(|g| g.power_w),
            gpu_energy_j: energy,
            gpu_joules_per_output_token: energy
                .filter(|_| output_tokens > 0)
                .map(|e| e / output_tokens as f64),
            gpu_seed_filter_utilization_pct: script.and_then(|s| s.utilization_pct),
            gpu_seed_filter_memory_used_mib: script.and_then(|s| s.memory_used_mib),
            gpu_seed_filter_temperature_c: script.and_then(|s| s.temperature_c),
            gpu_telemetry: serde_json::json!(nodes),
        }
    }

    /// Adds these keys to a result object.
    pub fn add_to(&self, json: &mut serde_json::Value) {
        crate::output::add_keys(json, self);
    }
}

/// The GPU part of the printed summary.
pub fn text(nodes: &[NodeWindow]) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    for n in nodes {
        let _ = writeln!(
            t,
            "{:-^50}",
            if n.simulated {
                " GPUs (SIMULATED telemetry) "
            } else {
                " GPUs "
            }
        );
        for g in &n.gpus {
            let f = |x: Option<Gauge>| {
                x.map(|x| format!("{:.0}/{:.0}", x.mean, x.max))
                    .unwrap_or("-".into())
            };
            let _ = writeln!(
                t,
                "{} GPU {}: util {}%  mem {} MiB  temp {}°C  power {} W (mean/max, {} samples){}",
                n.node,
                g.index,
                f(g.utilization_pct),
                f(g.memory_used_mib),
                f(g.temperature_c),
                f(g.power_w),
                g.samples,
                g.energy_j
                    .map(|e| format!("  energy {e:.0} J"))
                    .unwrap_or_default()
            );
        }
    }
    t
}

/// Writes the original scripts' `raw.log` and `result.log` of a test's window into `dir` (one pair per node;
/// with several nodes, suffixed `_<node>`).
pub fn write_logs(dir: &std::path::Path, nodes: &[NodeWindow], from: u64) -> anyhow::Result<()> {
    for w in nodes {
        let suffix = if nodes.len() > 1 {
            format!("_{}", w.node)
        } else {
            String::new()
        };
        crate::output::write_atomic(
            &dir.join(format!("raw{suffix}.log")),
            crate::telemetry::raw_log(w, from).as_bytes(),
        )?;
        crate::output::write_atomic(
            &dir.join(format!("result{suffix}.log")),
            crate::telemetry::result_log(w).as_bytes(),
        )?;
    }
    Ok(())
}

/// What the sweep's GPU statistics come from, from the agents the registry knows: NVML's product
/// names and driver (so that a result never depends on a hand-typed label), or SIMULATED.
pub async fn note(registry: &crate::service::Registry) -> String {
    let agents = registry.list().await;
    let gpus: usize = agents.iter().map(|a| a.gpus.len()).sum();
    let simulated = agents.iter().any(|a| a.simulated);
    // the product names NVML reports, so that a result never depends on a hand-typed label
    let mut names: Vec<String> = agents
        .iter()
        .flat_map(|a| a.gpus.iter())
        .map(|g| {
            if g.driver_version.is_empty() {
                g.name.clone()
            } else {
                format!("{}, driver {}", g.name, g.driver_version)
            }
        })
        .collect();
    names.dedup();
    let note = if simulated {
        format!("SIMULATED ({gpus} made-up GPUs, not measured)")
    } else {
        format!("nvml: {gpus} GPUs ({})", names.join("; "))
    };
    eprintln!("GPU statistics: {note}");
    note
}
