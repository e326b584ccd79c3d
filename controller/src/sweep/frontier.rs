//! Throughput per GPU against interactivity, and its Pareto frontier (InferenceMAX's view; vLLM's
//! `plot_pareto`). Interactivity is tokens/s per user, `1000 / TPOT` (mean, median or p90 TPOT);
//! throughput is output (or total) tokens/s divided by the GPUs that served the test. A point is
//! on the frontier when no other point is at least as good on both axes and better on one:
//! a point tied on throughput but worse on interactivity is dominated (vLLM issue 55561). Of
//! exact duplicates (equal on both axes) only the lowest concurrency is on the frontier: the same
//! result with fewer requests in flight.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::axis::Level;

/// Which way is better on the y axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    /// Throughput.
    Higher,
    /// Cost, energy.
    Lower,
}

/// One point to judge: x is interactivity (higher is better), y per [`Better`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// The test's concurrency (or rate): its label, and the tie-break.
    pub level: Level,
    pub x: f64,
    pub y: f64,
}

/// Whether each candidate is on the Pareto frontier. Non-finite points never are.
pub fn pareto(points: &[Candidate], better: Better) -> Vec<bool> {
    let ok = |p: &Candidate| p.x.is_finite() && p.y.is_finite();
    // `a` at least as good as `b` on y
    let y_ge = |a: f64, b: f64| match better {
        Better::Higher => a >= b,
        Better::Lower => a <= b,
    };
    points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            ok(p)
                && !points.iter().enumerate().any(|(j, q)| {
                    if i == j || !ok(q) || q.x < p.x || !y_ge(q.y, p.y) {
                        return false;
                    }
                    let strictly = q.x > p.x || q.y != p.y;
                    // exact duplicates: the lowest concurrency (then the first) stays
                    strictly || (q.level, j) < (p.level, i)
                })
        })
        .collect()
}

/// The frontier's points in x order (the line through them).
pub fn line(points: &[Candidate], better: Better) -> Vec<Candidate> {
    let on = pareto(points, better);
    let mut v: Vec<Candidate> = points
        .iter()
        .zip(on)
        .filter(|(_, on)| *on)
        .map(|(p, _)| *p)
        .collect();
    v.sort_by(|a, b| a.x.total_cmp(&b.x));
    v
}

/// Tokens/s per user from a TPOT in ms.
pub fn interactivity(tpot_ms: Option<f64>) -> Option<f64> {
    tpot_ms.filter(|t| *t > 0.0).map(|t| 1000.0 / t)
}

/// Cost per million output tokens of `gpus` GPUs at `gpu_hour_cost` each, producing
/// `output_tok_s` output tokens per second.
pub fn cost_per_million(gpu_hour_cost: f64, gpus: f64, output_tok_s: f64) -> Option<f64> {
    (output_tok_s > 0.0).then(|| gpu_hour_cost * gpus / 3600.0 / output_tok_s * 1e6)
}

/// The GPUs the agents saw serve a test: those busy (utilisation max above 10 %, the seed's
/// filter) in its window; all it monitored when none was busy; `None` without telemetry.
pub fn gpus_serving(entry: &Value) -> Option<usize> {
    let nodes = entry.get("gpu_telemetry")?.as_array()?;
    let gpus: Vec<&Value> = nodes
        .iter()
        .filter_map(|n| n.get("gpus").and_then(Value::as_array))
        .flatten()
        .collect();
    if gpus.is_empty() {
        return None;
    }
    let busy = gpus
        .iter()
        .filter(|g| {
            g["utilization_pct"]["max"]
                .as_f64()
                .is_some_and(|u| u > 10.0)
        })
        .count();
    Some(if busy > 0 { busy } else { gpus.len() })
}

/// One tested concurrency (or rate) on the frontier's axes, for `summary.json` and
/// `frontier.csv`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FrontierPoint {
    /// `"concurrency": 32`, or `"rate": 2.5` in a rate sweep: the point's label.
    #[serde(flatten)]
    pub level: Level,
    pub gpus: f64,
    /// `telemetry` (the GPUs the agents saw busy) or `--tp`.
    pub gpus_from: String,
    pub output_tok_s_per_gpu: f64,
    pub total_tok_s_per_gpu: Option<f64>,
    /// 1000 / TPOT: mean, median, p90 TPOT.
    pub tok_s_per_user: Option<f64>,
    pub tok_s_per_user_median: Option<f64>,
    pub tok_s_per_user_p90: Option<f64>,
    pub joules_per_output_token: Option<f64>,
    /// With `--gpu-hour-cost`.
    pub cost_per_million_output_tokens: Option<f64>,
    /// `None` without thresholds.
    pub pass: Option<bool>,
    /// On the frontier of output tokens/s per GPU against mean tokens/s per user.
    pub on_frontier: bool,
}

/// Marks `points`' frontier (output per GPU against mean interactivity).
pub fn mark(points: &mut [FrontierPoint]) {
    let c: Vec<Candidate> = points
        .iter()
        .map(|p| Candidate {
            level: p.level,
            x: p.tok_s_per_user.unwrap_or(f64::NAN),
            y: p.output_tok_s_per_gpu,
        })
        .collect();
    for (p, on) in points.iter_mut().zip(pareto(&c, Better::Higher)) {
        p.on_frontier = on;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(concurrency: u32, x: f64, y: f64) -> Candidate {
        Candidate {
            level: Level::Concurrency(concurrency),
            x,
            y,
        }
    }

    #[test]
    fn dominated_points_are_off_the_frontier() {
        // c=8 is beaten by c=4 on both axes; the rest trade interactivity for throughput
        let p = [
            c(1, 100.0, 50.0),
            c(4, 80.0, 150.0),
            c(8, 70.0, 140.0),
            c(16, 40.0, 300.0),
        ];
        assert_eq!(pareto(&p, Better::Higher), [true, true, false, true]);
        let xs: Vec<u32> = line(&p, Better::Higher)
            .iter()
            .filter_map(|p| p.level.concurrency())
            .collect();
        assert_eq!(xs, [16, 4, 1], "in interactivity order");
    }

    #[test]
    fn a_tie_on_one_axis_is_dominated_by_the_better_other() {
        // same throughput, worse interactivity: dominated (vLLM issue 55561)
        let p = [c(8, 60.0, 200.0), c(16, 50.0, 200.0)];
        assert_eq!(pareto(&p, Better::Higher), [true, false]);
        // same interactivity, less throughput: dominated
        let p = [c(8, 60.0, 190.0), c(16, 60.0, 200.0)];
        assert_eq!(pareto(&p, Better::Higher), [false, true]);
    }

    #[test]
    fn of_exact_duplicates_the_lowest_concurrency_stays() {
        let p = [c(32, 60.0, 200.0), c(16, 60.0, 200.0), c(64, 10.0, 210.0)];
        assert_eq!(pareto(&p, Better::Higher), [false, true, true]);
    }

    #[test]
    fn lower_is_better_for_cost_and_missing_values_are_off() {
        let p = [
            c(1, 100.0, 9.0),
            c(4, 80.0, 3.0),
            c(8, 70.0, 3.5),
            c(9, f64::NAN, 0.1),
        ];
        assert_eq!(pareto(&p, Better::Lower), [true, true, false, false]);
    }

    #[test]
    fn cost_and_interactivity_from_their_definitions() {
        assert_eq!(interactivity(Some(20.0)), Some(50.0));
        assert_eq!(interactivity(Some(0.0)), None);
        // 2 GPUs at 2.5/h = 5/h = 1/720 per second; 1000 tok/s → 1e6 tokens cost 1000/720
        let cost = cost_per_million(2.5, 2.0, 1000.0).unwrap();
        assert!((cost - 1000.0 / 720.0).abs() < 1e-9, "{cost}");
        assert_eq!(cost_per_million(2.5, 2.0, 0.0), None);
    }

    #[test]
    fn the_gpus_serving_are_the_busy_ones() {
        let e = serde_json::json!({"gpu_telemetry": [{"gpus": [
            {"utilization_pct": {"max": 95.0}}, {"utilization_pct": {"max": 90.0}},
            {"utilization_pct": {"max": 0.0}}]}]});
        assert_eq!(gpus_serving(&e), Some(2));
        let idle =
            serde_json::json!({"gpu_telemetry": [{"gpus": [{"utilization_pct": {"max": 1.0}}]}]});
        assert_eq!(gpus_serving(&idle), Some(1), "none busy: all monitored");
        assert_eq!(gpus_serving(&serde_json::json!({})), None);
    }
}
