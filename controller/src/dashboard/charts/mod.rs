//! The charts, rendered to SVG on the server with `plotters` (no JavaScript chart library, no
//! CDN): the same SVG goes into the live page, the report and the report's `.svg` files.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::data::SweepView;

const W: u32 = 640;
const H: u32 = 340;

/// Every chart of a sweep: `(file stem, title, svg)`.
pub fn all(view: &SweepView) -> Vec<(String, String, String)> {
    let mut out = vec![(
        "throughput".to_string(),
        "Output throughput vs concurrency".to_string(),
        by_concurrency(view, "output_throughput", "output tokens/s", &[]),
    )];
    for (m, title) in [
        ("ttft", "TTFT vs concurrency"),
        ("tpot", "TPOT vs concurrency"),
        ("e2el", "E2E latency vs concurrency"),
    ] {
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
                format!("{title} ({stat})"),
                by_concurrency(view, &key, "ms", &lines),
            ));
        }
    }
    out.push((
        "max_passing".into(),
        "Largest concurrency within the thresholds".into(),
        max_passing(view),
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
    out
}

fn svg(draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), String>) -> String {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (W, H)).into_drawing_area();
        let _ = root.fill(&WHITE);
        if let Err(e) = draw(&root) {
            let _ = root.draw(&Text::new(
                format!("chart error: {e}"),
                (20, 20),
                ("sans-serif", 14),
            ));
        }
        let _ = root.present();
    }
    s
}

fn empty(root: &DrawingArea<SVGBackend, Shift>, what: &str) -> Result<(), String> {
    root.draw(&Text::new(
        what.to_string(),
        (W as i32 / 2 - 120, H as i32 / 2),
        ("sans-serif", 15)
            .into_font()
            .color(&RGBColor(110, 110, 110)),
    ))
    .map_err(|e| e.to_string())
}

/// The series' legend, upper left.
fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| e.to_string())
}

/// A legend entry: a short line in the series' style.
fn legend_line(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style)
}

fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    C[i % C.len()]
}

fn span(v: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    v.filter(|x| x.is_finite()).fold(None, |acc, x| match acc {
        None => Some((x, x)),
        Some((a, b)) => Some((a.min(x), b.max(x))),
    })
}

/// `key` against concurrency, a line per input/output combination, log-scaled concurrency, with
/// horizontal threshold lines.
fn by_concurrency(view: &SweepView, key: &str, unit: &str, lines: &[(String, f64)]) -> String {
    let series: Vec<(super::data::Io, Vec<(f64, f64)>)> = view
        .combinations()
        .into_iter()
        .map(|io| (io, view.series(io, key)))
        .filter(|(_, s)| !s.is_empty())
        .collect();
    svg(|root| {
        let all = || series.iter().flat_map(|(_, s)| s.iter());
        let (Some((x0, x1)), Some((_, y1))) = (span(all().map(|p| p.0)), span(all().map(|p| p.1)))
        else {
            return empty(root, "no finished test yet");
        };
        let y1 = lines.iter().map(|l| l.1).fold(y1, f64::max) * 1.1;
        let (x0, x1) = if x1 > x0 {
            (x0, x1)
        } else {
            (x0 / 2.0, x1 * 2.0)
        };
        // ticks at the concurrencies tested, on a log scale, thinned so that labels do not touch
        // (each at least 15 % above the previous; the largest always kept)
        let mut tested: Vec<f64> = all().map(|p| p.0).collect();
        tested.sort_by(f64::total_cmp);
        tested.dedup();
        let mut ticks: Vec<f64> = vec![];
        for &t in &tested {
            match ticks.last() {
                Some(&l) if t < l * 1.15 => {}
                _ => ticks.push(t),
            }
        }
        if let (Some(&max), Some(last)) = (tested.last(), ticks.last_mut())
            && *last != max
        {
            if max >= *last * 1.15 {
                ticks.push(max);
            } else {
                *last = max;
            }
        }
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(
                (x0 * 0.9..x1 * 1.1).log_scale().with_key_points(ticks),
                0.0..y1.max(1e-9),
            )
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("concurrency")
            .y_desc(unit)
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&|x| format!("{}", x.round()))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (io, s)) in series.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(s.iter().copied(), c.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(io.to_string())
                .legend(legend_line(c.stroke_width(2)));
            chart
                .draw_series(s.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(|e| e.to_string())?;
        }
        for (label, y) in lines {
            let red = RGBColor(200, 0, 0);
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x0, *y), (x1, *y)],
                    6,
                    4,
                    red.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(label.clone())
                .legend(legend_line(red.stroke_width(2)));
        }
        legend(&mut chart)
    })
}

/// A bar per combination: its largest passing concurrency.
fn max_passing(view: &SweepView) -> String {
    let bars = view.max_passing();
    svg(|root| {
        if view.thresholds.is_empty() {
            return empty(root, "no --threshold: nothing judged");
        }
        if bars.is_empty() {
            return empty(root, "no finished test yet");
        }
        let top = bars.iter().filter_map(|b| b.1.or(b.2)).max().unwrap_or(1) as f64 * 1.2;
        let n = bars.len();
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..n as f64, 0.0..top.max(1.0))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(0)
            .x_desc("input x output")
            .y_desc("max passing concurrency")
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (_, max, first)) in bars.iter().enumerate() {
            let x = i as f64;
            if let Some(m) = max {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x + 0.2, 0.0), (x + 0.8, *m as f64)],
                        color(i).filled(),
                    )))
                    .map_err(|e| e.to_string())?;
            }
            let io = bars[i].0.to_string();
            let label = match (max, first) {
                (Some(m), Some(f)) => format!("{io}: {m} (fails at {f})"),
                (Some(m), None) => format!("{io}: {m} (all passed)"),
                (None, Some(f)) => format!("{io}: none (fails at {f})"),
                (None, None) => format!("{io}: -"),
            };
            chart
                .draw_series(std::iter::once(Text::new(
                    label,
                    (x + 0.22, max.unwrap_or(0) as f64 + top * 0.04),
                    ("sans-serif", 13),
                )))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

/// One GPU field over the sweep's time, a line per node and GPU, the tests' windows shaded.
fn gpu_over_time(view: &SweepView, field: usize, unit: &str) -> String {
    svg(|root| {
        if view.gpus.is_empty() {
            let summarised = view.entries.iter().any(|e| {
                e.get("gpu_utilization_mean_pct")
                    .is_some_and(|v| !v.is_null())
            });
            return empty(
                root,
                if summarised {
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
        let t0 = view
            .windows
            .iter()
            .map(|w| w.start)
            .chain(view.gpus.iter().flat_map(|g| g.points.iter().map(|p| p.0)))
            .fold(f64::INFINITY, f64::min);
        let pts = || view.gpus.iter().flat_map(|g| g.points.iter());
        let (Some((_, x1)), Some((_, y1))) = (span(pts().map(|p| p.0 - t0)), span(pts().map(pick)))
        else {
            return empty(root, "no GPU samples yet");
        };
        let x1 = view
            .windows
            .iter()
            .map(|w| w.end - t0)
            .fold(x1, f64::max)
            .max(1.0);
        let y1 = if field == 1 {
            100.0
        } else {
            (y1 * 1.15).max(1.0)
        };
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x1, 0.0..y1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_desc("seconds since the first test")
            .y_desc(unit)
            .draw()
            .map_err(|e| e.to_string())?;
        // the tests' windows: shaded spans, a line at each start
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
        for (i, g) in view.gpus.iter().enumerate() {
            let c = color(i);
            // a gap between tests breaks the line
            let mut gaps: Vec<f64> = g.points.windows(2).map(|w| w[1].0 - w[0].0).collect();
            gaps.sort_by(f64::total_cmp);
            let gap = gaps.get(gaps.len() / 2).map_or(5.0, |m| (3.0 * m).max(5.0));
            let mut segments: Vec<Vec<(f64, f64)>> = vec![];
            let mut last = f64::NEG_INFINITY;
            for p in &g.points {
                if p.0 - last > gap || segments.is_empty() {
                    segments.push(vec![]);
                }
                last = p.0;
                segments
                    .last_mut()
                    .expect("pushed")
                    .push((p.0 - t0, pick(p)));
            }
            for (k, s) in segments.into_iter().enumerate() {
                let drawn = chart
                    .draw_series(LineSeries::new(s, c.stroke_width(2)))
                    .map_err(|e| e.to_string())?;
                if k == 0 {
                    drawn
                        .label(format!("{} GPU {}", g.node, g.gpu))
                        .legend(legend_line(c.stroke_width(2)));
                }
            }
        }
        legend(&mut chart)
    })
}
