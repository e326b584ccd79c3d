//! Charts over the sweep's time: the GPUs' telemetry and the server's own metrics on one time
//! axis (seconds since the first test), each test's window shaded.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::draw::{color, empty, legend, legend_line, span, svg};
use crate::dashboard::data::SweepView;
use crate::dashboard::server_metrics::ServerSeries;

/// A line over time: its label, colour and pieces of `(unix_s, value)` (broken between tests).
struct TimeLine {
    label: String,
    color: RGBColor,
    pieces: Vec<Vec<(f64, f64)>>,
}

/// The span every chart over time shares, in unix seconds: from the first test's start (or the
/// first sample) to the last test's end (or the last sample).
fn axis(view: &SweepView) -> Option<(f64, f64)> {
    span(
        view.windows
            .iter()
            .flat_map(|w| [w.start, w.end])
            .chain(view.gpus.iter().flat_map(|g| g.points.iter().map(|p| p.0)))
            .chain(view.server.iter().flat_map(ServerSeries::times)),
    )
}

/// `lines` over the sweep's time from 0 to `y1`: the tests' windows shaded, a line at each start.
fn over_time(
    root: &DrawingArea<SVGBackend, Shift>,
    view: &SweepView,
    y1: f64,
    unit: &str,
    lines: &[TimeLine],
) -> Result<(), String> {
    let Some((t0, t1)) = axis(view) else {
        return empty(root, "no samples yet");
    };
    let mut chart = ChartBuilder::on(root)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..(t1 - t0).max(1.0), 0.0..y1)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("seconds since the first test")
        .y_desc(unit)
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, w) in view.windows.iter().enumerate() {
        let (a, b) = (w.start - t0, w.end - t0);
        let shade = if i % 2 == 0 {
            RGBColor(230, 236, 245)
        } else {
            RGBColor(242, 242, 242)
        };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, 0.0), (b, y1)],
                shade.filled(),
            )))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(a, 0.0), (a, y1)],
                RGBColor(120, 120, 120).stroke_width(1),
            )))
            .map_err(|e| e.to_string())?;
    }
    for line in lines {
        let style = line.color.stroke_width(2);
        for (k, piece) in line.pieces.iter().enumerate() {
            let drawn = chart
                .draw_series(LineSeries::new(
                    piece.iter().map(|&(t, v)| (t - t0, v)),
                    style,
                ))
                .map_err(|e| e.to_string())?;
            if k == 0 {
                drawn.label(line.label.clone()).legend(legend_line(style));
            }
        }
    }
    legend(&mut chart)
}

/// `points` in pieces, broken where the gap between two samples is over 3 times the usual
/// one (at least 5 s): between tests.
fn at_gaps(points: Vec<(f64, f64)>) -> Vec<Vec<(f64, f64)>> {
    let mut gaps: Vec<f64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_by(f64::total_cmp);
    let gap = gaps.get(gaps.len() / 2).map_or(5.0, |m| (3.0 * m).max(5.0));
    let mut pieces: Vec<Vec<(f64, f64)>> = vec![];
    let mut last = f64::NEG_INFINITY;
    for p in points {
        if p.0 - last > gap || pieces.is_empty() {
            pieces.push(vec![]);
        }
        last = p.0;
        pieces.last_mut().expect("pushed").push(p);
    }
    pieces
}

/// One GPU field (1 utilisation, 2 memory, 3 temperature, 4 power) over the sweep's time, a
/// line per node and GPU.
pub fn gpu_over_time(view: &SweepView, field: usize, unit: &str) -> String {
    svg(|root| {
        if view.gpus.is_empty() {
            return empty(
                root,
                if view.any_entry_has("gpu_utilization_mean_pct") {
                    "GPU statistics per test only (no samples.csv)"
                } else {
                    "no GPU statistics (no --gpu-num, or no driver)"
                },
            );
        }
        let pick = |p: &(f64, f64, f64, f64, f64)| match field {
            1 => p.1,
            2 => p.2,
            3 => p.3,
            _ => p.4,
        };
        let Some((_, top)) = span(view.gpus.iter().flat_map(|g| g.points.iter().map(pick))) else {
            return empty(root, "no GPU samples yet");
        };
        let y1 = if field == 1 {
            100.0
        } else {
            (top * 1.15).max(1.0)
        };
        let lines: Vec<TimeLine> = view
            .gpus
            .iter()
            .enumerate()
            .map(|(i, g)| TimeLine {
                label: format!("{} GPU {}", g.node, g.gpu),
                color: color(i),
                pieces: at_gaps(g.points.iter().map(|p| (p.0, pick(p))).collect()),
            })
            .collect();
        over_time(root, view, y1, unit, &lines)
    })
}

/// The server's charts over time.
#[derive(Clone, Copy, Debug)]
pub enum ServerChart {
    /// Requests running and waiting.
    Queue,
    /// KV-cache usage, %.
    KvCache,
    /// Prefix-cache hit rate, %.
    PrefixCache,
}

/// A piece per test of one of the server's series, scaled.
fn pieces(
    view: &SweepView,
    field: impl Fn(&ServerSeries) -> &[(f64, f64)],
    scale: f64,
) -> Vec<Vec<(f64, f64)>> {
    view.server
        .iter()
        .map(|s| field(s).iter().map(|&(t, v)| (t, v * scale)).collect())
        .filter(|p: &Vec<(f64, f64)>| !p.is_empty())
        .collect()
}

/// One of the server's charts over the sweep's time, a piece per test.
pub fn server_over_time(view: &SweepView, which: ServerChart) -> String {
    svg(|root| {
        if view.server.is_empty() {
            return empty(
                root,
                if view.any_entry_has("server_waiting_mean")
                    || view.any_entry_has("server_kv_cache_usage_max")
                {
                    "server statistics per test only (no samples.csv)"
                } else {
                    "no server metrics samples"
                },
            );
        }
        let line = |label: &str, i: usize, pieces| TimeLine {
            label: label.to_string(),
            color: color(i),
            pieces,
        };
        let (lines, unit, none) = match which {
            ServerChart::Queue => (
                vec![
                    line("running", 0, pieces(view, |s| &s.running, 1.0)),
                    line("waiting", 3, pieces(view, |s| &s.waiting, 1.0)),
                ],
                "requests",
                "no running/waiting gauges from this server",
            ),
            ServerChart::KvCache => (
                vec![line(
                    "KV-cache usage",
                    2,
                    pieces(view, |s| &s.kv_cache_usage, 100.0),
                )],
                "%",
                "no KV-cache gauge from this server",
            ),
            ServerChart::PrefixCache => (
                vec![line(
                    "prefix-cache hit rate",
                    4,
                    pieces(view, |s| &s.prefix_cache_hit_rate, 100.0),
                )],
                "%",
                "no prefix-cache metrics from this server",
            ),
        };
        let Some((_, top)) = span(
            lines
                .iter()
                .flat_map(|l| l.pieces.iter().flatten().map(|p| p.1)),
        ) else {
            return empty(root, none);
        };
        let y1 = if unit == "%" {
            top.max(100.0)
        } else {
            (top * 1.15).max(1.0)
        };
        over_time(root, view, y1, unit, &lines)
    })
}
