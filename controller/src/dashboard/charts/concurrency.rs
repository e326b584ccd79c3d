//! Charts against concurrency: a line per input/output combination (throughput, latencies,
//! the server's queue and KV cache) and the boundary's bars.

use plotters::prelude::*;

use super::draw::{color, empty, legend, legend_line, span, svg};
use crate::dashboard::data::{Io, SweepView};

/// `(concurrency, key × scale)` per combination that has any value of `key`.
pub fn series(view: &SweepView, key: &str, scale: f64) -> Vec<(Io, Vec<(f64, f64)>)> {
    view.combinations()
        .into_iter()
        .map(|io| {
            let s = view.series(io, key);
            (io, s.into_iter().map(|(c, v)| (c, v * scale)).collect())
        })
        .filter(|(_, s): &(Io, Vec<(f64, f64)>)| !s.is_empty())
        .collect()
}

/// `series` against concurrency (or rate: the x axis' label `x`), a line per input/output
/// combination, log-scaled, with horizontal threshold lines.
pub fn by_concurrency(
    series: &[(Io, Vec<(f64, f64)>)],
    x: &str,
    unit: &str,
    lines: &[(String, f64)],
) -> String {
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
            .x_desc(x)
            .y_desc(unit)
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&|x| {
                // concurrencies are integers; rates may not be
                let r = (x * 1000.0).round() / 1000.0;
                format!("{r}")
            })
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

/// A bar per combination: its largest passing concurrency (or rate: `vs`).
pub fn max_passing(view: &SweepView, vs: &str) -> String {
    let bars = view.max_passing();
    svg(|root| {
        if view.thresholds.is_empty() {
            return empty(root, "no --threshold: nothing judged");
        }
        if bars.is_empty() {
            return empty(root, "no finished test yet");
        }
        let top = bars.iter().filter_map(|b| b.1.or(b.2)).fold(1.0, f64::max) * 1.2;
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
            .y_desc(format!("max passing {vs}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (_, max, first)) in bars.iter().enumerate() {
            let x = i as f64;
            if let Some(m) = max {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x + 0.2, 0.0), (x + 0.8, *m)],
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
                    (x + 0.22, max.unwrap_or(0.0) + top * 0.04),
                    ("sans-serif", 13),
                )))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}
