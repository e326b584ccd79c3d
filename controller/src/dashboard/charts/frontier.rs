//! Throughput per GPU against interactivity (tokens/s per user), a colour per input/output
//! combination: every tested concurrency as a labelled point (hollow where it failed the
//! thresholds), the Pareto frontier as a line through the non-dominated ones, the region the
//! TPOT threshold allows shaded. Variants: the y axis (output or total tokens/s per GPU, J per
//! output token, cost per million output tokens) × the TPOT statistic (mean, median, p90).

use plotters::prelude::*;

use super::draw::{color, empty, legend_at, legend_line, span, svg};
use crate::dashboard::data::{Io, SweepView};
use crate::sweep::frontier::{Better, Candidate, FrontierPoint, line, pareto};

/// The y axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Y {
    Output,
    Total,
    Energy,
    Cost,
}

impl Y {
    pub const ALL: [Y; 4] = [Y::Output, Y::Total, Y::Energy, Y::Cost];

    pub fn id(self) -> &'static str {
        ["output", "total", "energy", "cost"][self as usize]
    }

    pub fn label(self) -> &'static str {
        [
            "output tokens/s per GPU",
            "total (input + output) tokens/s per GPU",
            "joules per output token",
            "cost per million output tokens",
        ][self as usize]
    }

    fn better(self) -> Better {
        match self {
            Y::Output | Y::Total => Better::Higher,
            Y::Energy | Y::Cost => Better::Lower,
        }
    }

    fn of(self, p: &FrontierPoint) -> Option<f64> {
        match self {
            Y::Output => Some(p.output_tok_s_per_gpu),
            Y::Total => p.total_tok_s_per_gpu,
            Y::Energy => p.joules_per_output_token,
            Y::Cost => p.cost_per_million_output_tokens,
        }
    }
}

/// The TPOT statistic of the x axis.
pub const STATS: [&str; 3] = ["mean", "median", "p90"];

fn x_of(stat: &str, p: &FrontierPoint) -> Option<f64> {
    match stat {
        "median" => p.tok_s_per_user_median,
        "p90" => p.tok_s_per_user_p90,
        _ => p.tok_s_per_user,
    }
}

/// One series: a combination's points on these axes, and whether each passed.
pub struct Series {
    pub label: String,
    pub points: Vec<(Candidate, Option<bool>)>,
}

/// The combinations' series on `y` against `stat`; a series per sweep and combination.
pub fn series_of(view: &SweepView, prefix: &str, y: Y, stat: &str) -> Vec<Series> {
    view.combinations()
        .into_iter()
        .map(|io: Io| Series {
            label: format!("{prefix}{io}"),
            points: view
                .frontier(io)
                .iter()
                .filter_map(|p| {
                    let c = Candidate {
                        level: p.level,
                        x: x_of(stat, p)?,
                        y: y.of(p)?,
                    };
                    Some((c, p.pass))
                })
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// Whether any point has a value on `y`.
pub fn has(view: &SweepView, y: Y) -> bool {
    view.combinations()
        .into_iter()
        .any(|io| view.frontier(io).iter().any(|p| y.of(p).is_some()))
}

/// The GPUs behind the "per GPU": `2 GPUs (telemetry)`, or a list where tests differ.
pub fn gpus_note(view: &SweepView) -> String {
    let mut v: Vec<String> = view
        .combinations()
        .into_iter()
        .flat_map(|io| view.frontier(io))
        .map(|p| {
            format!(
                "{} GPU{} ({})",
                p.gpus,
                if p.gpus == 1.0 { "" } else { "s" },
                p.gpus_from
            )
        })
        .collect();
    v.sort();
    v.dedup();
    v.join(", ")
}

/// The chart. `bound`: the TPOT threshold of this statistic (ms), shaded as the region right of
/// `1000 / bound`; `note`: printed in the corner (the GPU count).
pub fn chart(series: &[Series], y: Y, stat: &str, bound: Option<f64>, note: &str) -> String {
    svg(|root| {
        let all = || series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let (Some((x0, x1)), Some((y0, y1))) = (span(all().map(|p| p.x)), span(all().map(|p| p.y)))
        else {
            return empty(root, "no test with a TPOT yet");
        };
        let shade_from = bound.filter(|b| *b > 0.0).map(|b| 1000.0 / b);
        let x1 = shade_from.map_or(x1, |s| x1.max(s)) * 1.15;
        let y_lo = if y.better() == Better::Lower {
            y0 * 0.8
        } else {
            0.0
        };
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d((x0 * 0.85).min(x1 * 0.5)..x1, y_lo..(y1 * 1.15).max(1e-9))
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(format!("tokens/s per user (1000 / {stat} TPOT)"))
            .y_desc(y.label())
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(|e| e.to_string())?;
        if let Some(s) = shade_from {
            let green = RGBColor(44, 160, 44);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(s, y_lo), (x1, y1 * 1.15)],
                    green.mix(0.12).filled(),
                )))
                .map_err(|e| e.to_string())?
                .label(format!("{stat} TPOT ≤ {} ms", bound.unwrap_or_default()))
                .legend(legend_line(green.mix(0.4).stroke_width(8)));
        }
        for (i, s) in series.iter().enumerate() {
            draw_series(&mut chart, i, s, y.better())?;
        }
        chart
            .draw_series(std::iter::once(Text::new(
                note.to_string(),
                (x1 * 0.55, y1 * 1.1),
                ("sans-serif", 12),
            )))
            .map_err(|e| e.to_string())?;
        // throughput falls as interactivity rises, so the lower left (y from zero) is empty;
        // a cost rises with it, so the upper left is
        legend_at(
            &mut chart,
            if y.better() == Better::Lower {
                SeriesLabelPosition::UpperLeft
            } else {
                SeriesLabelPosition::LowerLeft
            },
        )
    })
}

type Chart<'a> = ChartContext<
    'a,
    SVGBackend<'a>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// One combination: its frontier line, its points (hollow: failed), each labelled `c<N>`.
fn draw_series(chart: &mut Chart<'_>, i: usize, s: &Series, better: Better) -> Result<(), String> {
    let c = color(i);
    let cands: Vec<Candidate> = s.points.iter().map(|p| p.0).collect();
    let front = line(&cands, better);
    chart
        .draw_series(LineSeries::new(
            front.iter().map(|p| (p.x, p.y)),
            c.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?
        .label(format!("{} (frontier)", s.label))
        .legend(legend_line(c.stroke_width(2)));
    let on = pareto(&cands, better);
    for ((p, pass), on) in s.points.iter().zip(on) {
        let style = if *pass == Some(false) {
            c.stroke_width(2)
        } else {
            c.filled()
        };
        chart
            .draw_series(std::iter::once(Circle::new(
                (p.x, p.y),
                if on { 5 } else { 3 },
                style,
            )))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(Text::new(
                p.level.tag(),
                (p.x, p.y),
                ("sans-serif", 11).into_font().color(&c),
            )))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Every variant of a sweep's frontier chart: `(id, title, svg)`, `frontier_output_mean` first.
pub fn variants(view: &SweepView) -> Vec<(String, String, String)> {
    let note = gpus_note(view);
    let mut out = vec![];
    for y in Y::ALL {
        if !has(view, y) {
            continue;
        }
        for stat in STATS {
            let bound = view
                .thresholds
                .iter()
                .find(|l| l.metric == "tpot" && l.stat == stat)
                .map(|l| l.max_ms);
            out.push((
                format!("frontier_{}_{stat}", y.id()),
                format!("{} vs tokens/s per user ({stat} TPOT)", y.label()),
                chart(&series_of(view, "", y, stat), y, stat, bound, &note),
            ));
        }
    }
    out
}
