//! The charts, rendered to SVG on the server with `plotters` (no JavaScript chart library, no
//! CDN): the same SVG goes into the live page, the report and the report's `.svg` files.

mod concurrency;
mod draw;
pub mod frontier;
mod timeline;

use concurrency::{by_concurrency, max_passing, series};
use timeline::{ServerChart, gpu_over_time, server_over_time};

use super::data::SweepView;
use crate::sweep::axis::Axis;

/// Every chart of a sweep: `(file stem, title, svg)`.
pub fn all(view: &SweepView) -> Vec<(String, String, String)> {
    let axis = view.axis();
    let x = axis.label();
    let vs = match axis {
        Axis::Concurrency => "concurrency",
        Axis::Rate => "request rate",
    };
    let mut out = vec![(
        "throughput".to_string(),
        format!("Output throughput vs {vs}"),
        by_concurrency(
            &series(view, "output_throughput", 1.0),
            x,
            "output tokens/s",
            &[],
        ),
    )];
    out.extend(frontier::variants(view));
    for (m, title) in [("ttft", "TTFT"), ("tpot", "TPOT"), ("e2el", "E2E latency")] {
        // a chart per statistic the threshold bounds (mean when none), with that bound's line
        let mut stats: Vec<&str> = view
            .thresholds
            .iter()
            .filter(|l| l.metric == m)
            .map(|l| l.stat.as_str())
            .collect();
        stats.dedup();
        if stats.is_empty() {
            stats.push("mean");
        }
        for (k, stat) in stats.into_iter().enumerate() {
            let lines: Vec<(String, f64)> = view
                .thresholds
                .iter()
                .filter(|l| l.metric == m && l.stat == stat)
                .map(|l| (format!("threshold {stat}_{m} ≤ {} ms", l.max_ms), l.max_ms))
                .collect();
            let key = format!("{stat}_{m}_ms");
            out.push((
                if k == 0 {
                    m.to_string()
                } else {
                    format!("{m}_{stat}")
                },
                format!("{title} vs {vs} ({stat})"),
                by_concurrency(&series(view, &key, 1.0), x, "ms", &lines),
            ));
        }
        if m == "ttft" {
            out.extend(server_by_concurrency(view, vs, x));
        }
    }
    out.push((
        "max_passing".into(),
        format!("Largest {vs} within the thresholds"),
        max_passing(view, vs),
    ));
    for (k, title, unit) in [
        (1, "GPU utilisation", "%"),
        (2, "GPU memory used", "MiB"),
        (3, "GPU temperature", "°C"),
        (4, "GPU power", "W"),
    ] {
        out.push((
            format!(
                "gpu_{}",
                ["", "utilization", "memory", "temperature", "power"][k]
            ),
            if view.simulated_gpus {
                format!("{title} (SIMULATED telemetry)")
            } else {
                title.to_string()
            },
            gpu_over_time(view, k, unit),
        ));
    }
    if view.has_server_metrics() {
        for (id, title, which) in [
            (
                "server_queue",
                "Server queue depth (running and waiting)",
                ServerChart::Queue,
            ),
            (
                "server_kv_cache",
                "Server KV-cache usage",
                ServerChart::KvCache,
            ),
            (
                "server_prefix_cache",
                "Server prefix-cache hit rate",
                ServerChart::PrefixCache,
            ),
        ] {
            out.push((
                id.to_string(),
                title.to_string(),
                server_over_time(view, which),
            ));
        }
    }
    out
}

/// The server's per-test statistics against concurrency (or rate: `vs`, axis label `x`), where
/// the tests have them: mean requests waiting, max KV-cache usage.
fn server_by_concurrency(view: &SweepView, vs: &str, x: &str) -> Vec<(String, String, String)> {
    [
        (
            "server_waiting",
            "Server requests waiting (mean)",
            "server_waiting_mean",
            1.0,
            "requests waiting",
        ),
        (
            "server_kv_cache_max",
            "Server KV-cache usage (max)",
            "server_kv_cache_usage_max",
            100.0,
            "%",
        ),
    ]
    .into_iter()
    .filter(|(_, _, key, _, _)| view.any_entry_has(key))
    .map(|(id, title, key, scale, unit)| {
        (
            id.to_string(),
            format!("{title} vs {vs}"),
            by_concurrency(&series(view, key, scale), x, unit, &[]),
        )
    })
    .collect()
}
