//! GPU telemetry kept per node and GPU, and its summary over a test's window.
//!
//! Samples are stored as the agent stamped them (agent clock) and converted to the controller's
//! clock at query time with the agent's current offset estimate.

use std::collections::BTreeMap;

use loadgen::stats::Distribution;
use serde::Serialize;

use agent::source::{field, missing_bit};

use crate::clock::Offset;

/// One stored sample (proto GpuSample, without the wire types).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub seq: u64,
    /// Agent clock.
    pub t_ns: u64,
    pub gpu_index: u32,
    pub utilization_pct: f32,
    pub memory_utilization_pct: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub temperature_c: f32,
    pub power_w: f32,
    pub sm_clock_mhz: u32,
    pub energy_mj: u64,
    pub throttle_reasons: u64,
    /// The fields the agent could not read (bit `1 << field number`, as on the wire).
    pub missing_fields: u64,
}

impl From<&proto::GpuSample> for Sample {
    fn from(s: &proto::GpuSample) -> Self {
        Sample {
            seq: s.seq,
            t_ns: s.t_ns,
            gpu_index: s.gpu_index,
            utilization_pct: s.utilization_pct,
            memory_utilization_pct: s.memory_utilization_pct,
            memory_used_bytes: s.memory_used_bytes,
            memory_total_bytes: s.memory_total_bytes,
            temperature_c: s.temperature_c,
            power_w: s.power_w,
            sm_clock_mhz: s.sm_clock_mhz,
            energy_mj: s.energy_mj,
            throttle_reasons: s.throttle_reasons,
            missing_fields: s.missing_fields,
        }
    }
}

/// The gauges a read must carry at least one of to count: a sample missing all of them is a
/// failed read (NVML answered an error for the GPU), a gap, not a reading of zero.
const GAUGE_BITS: u64 = missing_bit(field::UTILIZATION_PCT)
    | missing_bit(field::MEMORY_USED_BYTES)
    | missing_bit(field::TEMPERATURE_C)
    | missing_bit(field::POWER_W)
    | missing_bit(field::SM_CLOCK_MHZ);

impl Sample {
    /// Whether the agent could read this field (a `field::` number).
    pub fn has(&self, field_number: u32) -> bool {
        self.missing_fields & missing_bit(field_number) == 0
    }

    /// Whether the agent could read none of the gauges: an NVML error for the whole GPU.
    pub fn failed(&self) -> bool {
        self.missing_fields & GAUGE_BITS == GAUGE_BITS
    }

    pub fn memory_used_pct(&self) -> f64 {
        if self.memory_total_bytes == 0 {
            return 0.0;
        }
        100.0 * self.memory_used_bytes as f64 / self.memory_total_bytes as f64
    }
}

/// Mean, max and p95 of a gauge over a window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Gauge {
    pub mean: f64,
    pub max: f64,
    pub p95: f64,
}

fn gauge(v: Vec<f64>) -> Option<Gauge> {
    let d = Distribution::of(v, &[95.0])?;
    Some(Gauge {
        mean: d.mean,
        max: d.max,
        p95: d.get(95.0).unwrap_or(d.max),
    })
}

/// One GPU over a window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GpuWindow {
    pub index: u32,
    /// Samples read (failed reads not counted).
    pub samples: usize,
    /// Samples the agent could not read (every gauge missing: NVML answered an error); they are
    /// left out of every statistic and count as gaps in `coverage`.
    pub failed_reads: usize,
    /// The fraction of the window this GPU's read samples cover (see [`NodeWindow::coverage`]).
    pub coverage: f64,
    pub utilization_pct: Option<Gauge>,
    pub memory_used_mib: Option<Gauge>,
    pub memory_used_pct: Option<Gauge>,
    pub temperature_c: Option<Gauge>,
    pub power_w: Option<Gauge>,
    pub sm_clock_mhz: Option<Gauge>,
    /// Energy counter delta between the first and last sample of the window, joules
    /// (`None` where the counter is unsupported).
    pub energy_j: Option<f64>,
    /// OR of the throttle reasons seen.
    pub throttle_reasons: u64,
    /// Every sample of the window, on the controller's clock (for charts over time).
    #[serde(skip)]
    pub series: Vec<GpuPoint>,
}

/// One sample of one GPU, on the controller's clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpuPoint {
    pub t_ns: u64,
    pub utilization_pct: f32,
    pub memory_used_mib: f64,
    pub temperature_c: f32,
    pub power_w: f32,
}

/// The original scripts' `result.log` statistic: polls whose mean utilisation over the monitored GPUs is
/// above 10 % and whose memory use differs little between GPUs (standard deviation across GPUs
/// below 2 percentage points of total memory), averaged over time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScriptFilter {
    pub polls: usize,
    pub kept: usize,
    pub memory_used_mib: Option<f64>,
    pub utilization_pct: Option<f64>,
    pub temperature_c: Option<f64>,
}

/// One poll: the mean over the monitored GPUs at one instant (a `raw.log` line).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Poll {
    /// Controller clock.
    pub t_ns: u64,
    pub gpus: usize,
    pub memory_used_mib: f64,
    pub memory_used_pct: f64,
    /// Standard deviation of memory used (% of total) across the GPUs.
    pub memory_used_pct_std: f64,
    pub utilization_pct: f64,
    pub temperature_c: f64,
    pub power_w: f64,
}

/// One node over a window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeWindow {
    pub node: String,
    pub simulated: bool,
    pub gpus: Vec<GpuWindow>,
    /// (named `seed_filter` in result files: "seed" was the original scripts' name)
    #[serde(rename = "seed_filter")]
    pub script_filter: ScriptFilter,
    /// Mean over GPUs at each poll, in time order.
    #[serde(skip)]
    pub polls: Vec<Poll>,
    /// Uncertainty of the clock conversion, ns.
    pub clock_uncertainty_ns: u64,
    /// The fraction of the window its samples cover, worst GPU: gaps longer than three sampling
    /// intervals (an agent lost or stalled, samples dropped) are not covered. 1 when whole.
    pub coverage: f64,
}

/// The samples of one node, by GPU, in sequence order.
#[derive(Debug, Default)]
pub struct NodeSeries {
    pub by_gpu: BTreeMap<u32, Vec<Sample>>,
}

impl NodeSeries {
    pub fn push(&mut self, s: Sample) {
        let v = self.by_gpu.entry(s.gpu_index).or_default();
        // samples arrive in seq order; a replay after reconnect may repeat some: keep one
        if v.last().is_some_and(|l| l.seq >= s.seq) {
            if v.iter().rev().take(4096).any(|x| x.seq == s.seq) {
                return;
            }
            let pos = v.partition_point(|x| x.seq < s.seq);
            v.insert(pos, s);
            return;
        }
        v.push(s);
    }

    /// Summary of `[from, to]` (controller clock), restricted to `gpus` when given.
    pub fn window(
        &self,
        node: &str,
        simulated: bool,
        offset: Offset,
        from: u64,
        to: u64,
        gpus: Option<&[u32]>,
    ) -> NodeWindow {
        let (a, b) = (offset.to_peer(from), offset.to_peer(to));
        // per GPU: the window's samples that were read, and how many reads failed
        let read: Vec<(u32, Vec<Sample>, usize)> = self
            .by_gpu
            .iter()
            .filter(|(i, _)| gpus.is_none_or(|g| g.contains(i)))
            .map(|(i, v)| {
                let lo = v.partition_point(|s| s.t_ns < a);
                let hi = v.partition_point(|s| s.t_ns <= b);
                let (failed, ok): (Vec<Sample>, Vec<Sample>) =
                    v[lo..hi].iter().partition(|s| s.failed());
                (*i, ok, failed.len())
            })
            .collect();
        let selected: Vec<(u32, &[Sample])> =
            read.iter().map(|(i, v, _)| (*i, v.as_slice())).collect();
        let gpus_out: Vec<GpuWindow> = read
            .iter()
            .map(|(i, v, failed_reads)| {
                let f = |n: u32, g: fn(&Sample) -> f64| {
                    gauge(v.iter().filter(|s| s.has(n)).map(g).collect())
                };
                // the agent may read energy less often than the gauges (--energy-interval):
                // the delta runs between the first and last samples that carry it
                let with_energy = || v.iter().filter(|s| s.energy_mj > 0);
                let energy = match (with_energy().next(), with_energy().next_back()) {
                    (Some(x), Some(y)) if y.seq > x.seq && y.energy_mj >= x.energy_mj => {
                        Some((y.energy_mj - x.energy_mj) as f64 / 1000.0)
                    }
                    _ => None,
                };
                GpuWindow {
                    index: *i,
                    samples: v.len(),
                    failed_reads: *failed_reads,
                    coverage: coverage(v, a, b),
                    utilization_pct: f(field::UTILIZATION_PCT, |s| s.utilization_pct as f64),
                    memory_used_mib: f(field::MEMORY_USED_BYTES, |s| {
                        s.memory_used_bytes as f64 / (1 << 20) as f64
                    }),
                    memory_used_pct: f(field::MEMORY_USED_BYTES, Sample::memory_used_pct),
                    temperature_c: f(field::TEMPERATURE_C, |s| s.temperature_c as f64),
                    power_w: f(field::POWER_W, |s| s.power_w as f64),
                    sm_clock_mhz: f(field::SM_CLOCK_MHZ, |s| s.sm_clock_mhz as f64),
                    energy_j: energy,
                    throttle_reasons: v.iter().fold(0, |acc, s| acc | s.throttle_reasons),
                    series: v
                        .iter()
                        .map(|s| GpuPoint {
                            t_ns: offset.to_controller(s.t_ns),
                            utilization_pct: s.utilization_pct,
                            memory_used_mib: s.memory_used_bytes as f64 / (1 << 20) as f64,
                            temperature_c: s.temperature_c,
                            power_w: s.power_w,
                        })
                        .collect(),
                }
            })
            .collect();
        let node_coverage = gpus_out
            .iter()
            .map(|g| g.coverage)
            .fold(if gpus_out.is_empty() { 0.0 } else { 1.0 }, f64::min);
        let polls = polls(&selected, offset);
        let kept: Vec<&Poll> = polls
            .iter()
            .filter(|p| p.utilization_pct > 10.0 && p.memory_used_pct_std < 2.0)
            .collect();
        let mean = |g: fn(&Poll) -> f64| {
            (!kept.is_empty()).then(|| kept.iter().map(|p| g(p)).sum::<f64>() / kept.len() as f64)
        };
        let script_filter = ScriptFilter {
            polls: polls.len(),
            kept: kept.len(),
            memory_used_mib: mean(|p| p.memory_used_mib),
            utilization_pct: mean(|p| p.utilization_pct),
            temperature_c: mean(|p| p.temperature_c),
        };
        NodeWindow {
            node: node.to_string(),
            simulated,
            gpus: gpus_out,
            script_filter,
            polls,
            clock_uncertainty_ns: offset.uncertainty_ns,
            coverage: node_coverage,
        }
    }
}

/// The fraction of `[a, b]` that `v`'s samples cover: a gap (from `a`, between samples, to `b`)
/// longer than three times the median sampling interval counts as uncovered.
fn coverage(v: &[Sample], a: u64, b: u64) -> f64 {
    if b <= a {
        return 1.0;
    }
    if v.is_empty() {
        return 0.0;
    }
    let mut gaps: Vec<u64> = v
        .windows(2)
        .map(|w| w[1].t_ns.saturating_sub(w[0].t_ns))
        .collect();
    gaps.sort_unstable();
    // with one sample, no interval is known: the window is judged by its ends only
    let interval = gaps.get(gaps.len() / 2).copied().unwrap_or(b - a);
    let times: Vec<u64> = v.iter().map(|s| s.t_ns).collect();
    window_coverage(&times, a, b, interval.saturating_mul(3))
}

/// The fraction of `[from, to]` within `max_gap` of samples at `times` (sorted): a gap (from
/// `from`, between samples, to `to`) longer than `max_gap` counts as uncovered. The GPU
/// telemetry's and the server metrics' coverage.
pub fn window_coverage(times: &[u64], from: u64, to: u64, max_gap: u64) -> f64 {
    if times.is_empty() {
        return 0.0;
    }
    if to <= from {
        return 1.0;
    }
    let mut edges = vec![from];
    edges.extend(times.iter().map(|t| (*t).clamp(from, to)));
    edges.push(to);
    let uncovered: u64 = edges
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .filter(|&g| g > max_gap)
        .sum();
    1.0 - uncovered as f64 / (to - from) as f64
}

/// Groups the GPUs' samples into polls: the k-th sample of every GPU in the window.
fn polls(selected: &[(u32, &[Sample])], offset: Offset) -> Vec<Poll> {
    let n = selected.iter().map(|(_, v)| v.len()).min().unwrap_or(0);
    (0..n)
        .map(|k| {
            let at: Vec<&Sample> = selected.iter().map(|(_, v)| &v[k]).collect();
            let g = at.len() as f64;
            let mean = |f: fn(&Sample) -> f64| at.iter().map(|s| f(s)).sum::<f64>() / g;
            let mem_pct = mean(Sample::memory_used_pct);
            let var = at
                .iter()
                .map(|s| (s.memory_used_pct() - mem_pct).powi(2))
                .sum::<f64>()
                / g;
            Poll {
                t_ns: offset.to_controller(at.iter().map(|s| s.t_ns).min().unwrap_or(0)),
                gpus: at.len(),
                memory_used_mib: mean(|s| s.memory_used_bytes as f64 / (1 << 20) as f64),
                memory_used_pct: mem_pct,
                memory_used_pct_std: var.sqrt(),
                utilization_pct: mean(|s| s.utilization_pct as f64),
                temperature_c: mean(|s| s.temperature_c as f64),
                power_w: mean(|s| s.power_w as f64),
            }
        })
        .collect()
}

/// The original scripts' `raw.log`: one line per poll, the mean over the monitored GPUs.
pub fn raw_log(w: &NodeWindow, start_ns: u64) -> String {
    let mut s = String::from(
        "# time_s\tmemory_used_mib\tgpu_utilization_pct\ttemperature_c\tmemory_used_pct\tpower_w\n",
    );
    if w.simulated {
        s.insert_str(
            0,
            "# SIMULATED telemetry (benchctl-agent --source simulated), not a GPU\n",
        );
    }
    let at = if w.simulated {
        s.find('\n').map_or(0, |i| i + 1)
    } else {
        0
    };
    s.insert_str(at, &gpus_line(w));
    for p in &w.polls {
        s.push_str(&format!(
            "{:.3}\t{:.1}\t{:.1}\t{:.1}\t{:.2}\t{:.1}\n",
            p.t_ns.saturating_sub(start_ns) as f64 / 1e9,
            p.memory_used_mib,
            p.utilization_pct,
            p.temperature_c,
            p.memory_used_pct,
            p.power_w
        ));
    }
    s
}

/// The comment line of `raw.log` and `result.log` that names the GPUs their columns average, as the
/// original scripts averaged the first `--gpu-num` GPUs: `# node gpu-node: mean of 2 GPUs: 0, 1`.
/// Per-GPU statistics are in the result JSON's `gpu_telemetry`, per-GPU samples (a sweep) in
/// `samples.csv` beside the logs.
fn gpus_line(w: &NodeWindow) -> String {
    let names: Vec<String> = w.gpus.iter().map(|g| g.index.to_string()).collect();
    format!(
        "# node {}: mean of {} GPU{}: {}\n",
        w.node,
        w.gpus.len(),
        if w.gpus.len() == 1 { "" } else { "s" },
        names.join(", ")
    )
}

/// The original scripts' `result.log`: the filtered average.
pub fn result_log(w: &NodeWindow) -> String {
    let f = &w.script_filter;
    let v = |x: Option<f64>| x.map(|x| format!("{x:.2}")).unwrap_or_else(|| "NA".into());
    let mut s = String::new();
    if w.simulated {
        s.push_str("# SIMULATED telemetry (benchctl-agent --source simulated), not a GPU\n");
    }
    s.push_str(&gpus_line(w));
    s.push_str("# filter: gpu_utilization_pct > 10 and std of memory_used_pct across GPUs < 2\n");
    s.push_str("# polls\tkept\tmemory_used_mib\tgpu_utilization_pct\ttemperature_c\n");
    s.push_str(&format!(
        "{}\t{}\t{}\t{}\t{}\n",
        f.polls,
        f.kept,
        v(f.memory_used_mib),
        v(f.utilization_pct),
        v(f.temperature_c)
    ));
    s
}

/// Every GPU sample of a window as CSV, times in Unix seconds: `unix_s,node,gpu,utilization_pct,
/// memory_used_mib,temperature_c,power_w`. `unix_of` converts the controller's clock.
pub fn samples_csv(nodes: &[NodeWindow], unix_of: impl Fn(u64) -> f64) -> String {
    let mut s =
        String::from("unix_s,node,gpu,utilization_pct,memory_used_mib,temperature_c,power_w\n");
    for n in nodes {
        for g in &n.gpus {
            for p in &g.series {
                s.push_str(&format!(
                    "{:.3},{},{},{:.1},{:.1},{:.1},{:.1}\n",
                    unix_of(p.t_ns),
                    n.node.replace(',', "_"),
                    g.index,
                    p.utilization_pct,
                    p.memory_used_mib,
                    p.temperature_c,
                    p.power_w
                ));
            }
        }
    }
    s
}

/// Converts this process's `CLOCK_MONOTONIC` (ns) to Unix seconds, anchored now.
pub fn unix_clock() -> impl Fn(u64) -> f64 {
    let mono_now = loadgen::clock::mono_ns();
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    move |t_ns| unix_now - (mono_now as f64 - t_ns as f64) / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(seq: u64, t: u64, gpu: u32, util: f32, mem_gib: u64, energy: u64) -> Sample {
        Sample {
            seq,
            t_ns: t,
            gpu_index: gpu,
            utilization_pct: util,
            memory_utilization_pct: 0.0,
            memory_used_bytes: mem_gib << 30,
            memory_total_bytes: 80 << 30,
            temperature_c: 50.0,
            power_w: 300.0,
            sm_clock_mhz: 1980,
            energy_mj: energy,
            throttle_reasons: 0,
            missing_fields: 0,
        }
    }

    const NONE: Offset = Offset {
        offset_ns: 0,
        uncertainty_ns: 0,
        samples: 1,
    };

    #[test]
    fn coverage_counts_the_gaps_of_a_lost_agent() {
        let mut n = NodeSeries::default();
        // 100 ms samples over 10 s, with nothing between 4 s and 7 s (the agent was away)
        let mut seq = 0;
        for k in 0..=100u64 {
            let t = k * 100_000_000;
            if (40..70).contains(&k) {
                continue;
            }
            n.push(s(seq, t, 0, 50.0, 40, 0));
            seq += 1;
        }
        let w = n.window("node", false, NONE, 0, 10_000_000_000, None);
        assert!((w.coverage - 0.7).abs() < 0.02, "{}", w.coverage);
        let whole = n.window("node", false, NONE, 0, 3_000_000_000, None);
        assert_eq!(whole.coverage, 1.0);
    }

    #[test]
    fn window_gauges_energy_and_the_seed_filter() {
        let mut n = NodeSeries::default();
        // two GPUs, 4 polls 1 s apart: idle, busy, busy, busy-but-unbalanced
        let polls = [
            (5.0, 40, 40, 5_000_000),
            (90.0, 40, 40, 6_000_000),
            (80.0, 41, 40, 7_000_000),
            (95.0, 60, 20, 8_000_000),
        ];
        for (k, (u, m0, m1, e)) in polls.iter().enumerate() {
            let t = k as u64 * 1_000_000_000;
            n.push(s(2 * k as u64, t, 0, *u, *m0, *e));
            n.push(s(2 * k as u64 + 1, t + 1000, 1, *u, *m1, *e));
        }
        let w = n.window("node", false, NONE, 0, 10_000_000_000, None);
        assert_eq!(w.gpus.len(), 2);
        let g0 = &w.gpus[0];
        assert_eq!(g0.samples, 4);
        assert_eq!(g0.utilization_pct.unwrap().max, 95.0);
        assert_eq!(g0.energy_j, Some(3000.0));
        assert_eq!(w.polls.len(), 4);
        // kept: polls 1 and 2 (poll 0 idle, poll 3 unbalanced: 75 % vs 25 %)
        assert_eq!((w.script_filter.polls, w.script_filter.kept), (4, 2));
        assert!((w.script_filter.utilization_pct.unwrap() - 85.0).abs() < 1e-9);
        // a window that holds only the first two polls
        let w = n.window("node", false, NONE, 0, 1_500_000_000, Some(&[0]));
        assert_eq!(w.gpus.len(), 1);
        assert_eq!(w.gpus[0].samples, 2);
        // the GPUs line, the column header and the two polls
        let raw = raw_log(&w, 0);
        assert_eq!(raw.lines().count(), 4, "{raw}");
        assert!(raw.starts_with("# node node: mean of 1 GPU: 0\n"), "{raw}");
        assert!(result_log(&w).contains("\t1\t"));
    }

    #[test]
    fn the_window_is_in_controller_time() {
        let mut n = NodeSeries::default();
        // the agent's clock is 1 s ahead: its samples at 1.5 s and 2.5 s are 0.5 s and 1.5 s here
        n.push(s(0, 1_500_000_000, 0, 50.0, 1, 0));
        n.push(s(1, 2_500_000_000, 0, 70.0, 1, 0));
        let ahead = Offset {
            offset_ns: 1_000_000_000,
            uncertainty_ns: 10,
            samples: 1,
        };
        let w = n.window("n", false, ahead, 0, 1_000_000_000, None);
        assert_eq!(w.gpus[0].samples, 1);
        assert_eq!(w.gpus[0].utilization_pct.unwrap().mean, 50.0);
        assert_eq!(w.polls[0].t_ns, 500_000_000);
    }

    #[test]
    fn failed_reads_are_gaps_not_zeros() {
        let mut n = NodeSeries::default();
        // two GPUs every 100 ms over 10 s; GPU 1's reads fail from 3 s to 6 s (NVML errors: the
        // agent sends samples with every field missing, values 0)
        for k in 0..=100u64 {
            let t = k * 100_000_000;
            n.push(s(2 * k, t, 0, 50.0, 40, 0));
            let mut b = s(2 * k + 1, t, 1, 60.0, 40, 0);
            if (30..60).contains(&k) {
                b = Sample {
                    utilization_pct: 0.0,
                    memory_used_bytes: 0,
                    temperature_c: 0.0,
                    power_w: 0.0,
                    sm_clock_mhz: 0,
                    missing_fields: u64::MAX,
                    ..b
                };
            }
            n.push(b);
        }
        let w = n.window("node", false, NONE, 0, 10_000_000_000, None);
        let (g0, g1) = (&w.gpus[0], &w.gpus[1]);
        assert_eq!((g0.failed_reads, g0.coverage), (0, 1.0));
        assert_eq!((g1.failed_reads, g1.samples), (30, 71));
        assert!((g1.coverage - 0.7).abs() < 0.02, "{}", g1.coverage);
        assert_eq!(
            w.coverage, g1.coverage,
            "the node's coverage is its worst GPU's"
        );
        // the failed reads' zeros are in no statistic
        assert_eq!(g1.utilization_pct.unwrap().mean, 60.0);
        assert_eq!(g1.power_w.unwrap().mean, 300.0);
        assert!(w.polls.iter().all(|p| p.utilization_pct >= 50.0));
        // one field missing leaves that field's gauge only
        let mut m = NodeSeries::default();
        m.push(s(0, 0, 0, 40.0, 1, 0));
        m.push(Sample {
            power_w: 0.0,
            missing_fields: missing_bit(field::POWER_W),
            ..s(1, 100, 0, 80.0, 1, 0)
        });
        let w = m.window("node", false, NONE, 0, 100, None);
        assert_eq!(w.gpus[0].failed_reads, 0);
        assert_eq!(w.gpus[0].utilization_pct.unwrap().mean, 60.0);
        assert_eq!(w.gpus[0].power_w.unwrap().mean, 300.0);
    }

    #[test]
    fn replayed_samples_are_kept_once() {
        let mut n = NodeSeries::default();
        for seq in [0, 1, 2, 1, 2, 3] {
            n.push(s(seq, seq * 10, 0, 1.0, 1, 0));
        }
        let seqs: Vec<u64> = n.by_gpu[&0].iter().map(|s| s.seq).collect();
        assert_eq!(seqs, vec![0, 1, 2, 3]);
    }
}
