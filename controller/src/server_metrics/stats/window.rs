//! The arithmetic of a window over one replica's samples and over replicas: which samples a
//! window uses, counter deltas across restarts, gauge values per round, coverage.

use loadgen::stats::Distribution;
use serde::Serialize;

use super::super::log::Sample;

/// A gauge over a window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(super) struct GaugeStats {
    pub mean: f64,
    pub max: f64,
    pub p95: f64,
    pub samples: usize,
}

/// A counter over a window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(super) struct CounterStats {
    pub delta: f64,
    /// Per second over the before → after span.
    pub rate: Option<f64>,
}

/// The last sample at or before `from` through the first at or after `to` (or the nearest ones
/// inside the window where those are missing).
pub(super) fn select<'a>(all: &[&'a Sample], from: u64, to: u64) -> Vec<&'a Sample> {
    if all.is_empty() {
        return Vec::new();
    }
    let before = all.iter().rposition(|s| s.t_ns <= from).unwrap_or(0);
    let after = all
        .iter()
        .position(|s| s.t_ns >= to)
        .unwrap_or(all.len() - 1);
    all[before.min(after)..=before.max(after)].to_vec()
}

/// A counter's increase over the samples: a drop is a restart (counted from 0), and a series
/// absent from the first sample appeared later (counted from 0). `None` if never present.
pub(super) fn counter_delta(samples: &[&Sample], id: u32) -> Option<f64> {
    let mut prev: Option<f64> = None;
    let mut delta = 0.0;
    for (i, s) in samples.iter().enumerate() {
        let Some(v) = s.get(id).filter(|v| v.is_finite()) else {
            continue;
        };
        delta += match prev {
            Some(p) if v >= p => v - p,
            Some(_) => v,
            None if i > 0 => v,
            None => 0.0,
        };
        prev = Some(v);
    }
    prev.map(|_| delta)
}

/// A gauge quantity's value at each sample: its series summed (or averaged).
pub(super) fn gauge_points(samples: &[&Sample], ids: &[u32], averaged: bool) -> Vec<(u64, f64)> {
    let mut points: Vec<(u64, f64)> = samples
        .iter()
        .filter_map(|s| {
            let v: Vec<f64> = ids
                .iter()
                .filter_map(|&id| s.get(id))
                .filter(|v| v.is_finite())
                .collect();
            (!v.is_empty()).then(|| (s.round, mean_or_sum(&v, averaged)))
        })
        .collect();
    points.sort_by_key(|p| p.0);
    points
}

pub(super) fn mean_or_sum(v: &[f64], averaged: bool) -> f64 {
    let sum: f64 = v.iter().sum();
    if averaged { sum / v.len() as f64 } else { sum }
}

/// Replicas' gauge points combined per round, each replica at its latest value so far.
pub(super) fn combine(replicas: &[&[(u64, f64)]], averaged: bool) -> Vec<f64> {
    let mut rounds: Vec<u64> = replicas
        .iter()
        .flat_map(|p| p.iter().map(|x| x.0))
        .collect();
    rounds.sort_unstable();
    rounds.dedup();
    let mut latest: Vec<Option<f64>> = vec![None; replicas.len()];
    let mut next = vec![0; replicas.len()];
    rounds
        .iter()
        .map(|&round| {
            for (i, p) in replicas.iter().enumerate() {
                while next[i] < p.len() && p[next[i]].0 <= round {
                    latest[i] = Some(p[next[i]].1);
                    next[i] += 1;
                }
            }
            let v: Vec<f64> = latest.iter().flatten().copied().collect();
            mean_or_sum(&v, averaged)
        })
        .collect()
}

pub(super) fn gauge(values: Vec<f64>) -> Option<GaugeStats> {
    let samples = values.len();
    let d = Distribution::of(values, &[95.0])?;
    Some(GaugeStats {
        mean: d.mean,
        max: d.max,
        p95: d.get(95.0).unwrap_or(d.max),
        samples,
    })
}

/// The fraction of `[from, to]` within `max_gap` of successful samples at `times` (sorted).
pub(super) use crate::telemetry::window_coverage as coverage;
