//! What every chart shares: the SVG canvas, the empty-chart message, the legend, the colours.

use plotters::coord::Shift;
use plotters::prelude::*;

pub const W: u32 = 640;
pub const H: u32 = 340;

/// A chart drawn by `draw` as SVG text; an error is written on the chart.
pub fn svg(draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), String>) -> String {
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

/// A chart without data: why, in grey, in the middle.
pub fn empty(root: &DrawingArea<SVGBackend, Shift>, what: &str) -> Result<(), String> {
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
pub fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
) -> Result<(), String> {
    legend_at(chart, SeriesLabelPosition::UpperLeft)
}

/// The legend at `pos` (a chart whose points leave another corner empty).
pub fn legend_at<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    pos: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|e| e.to_string())
}

/// A legend entry: a short line in the series' style.
pub fn legend_line(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style)
}

pub fn color(i: usize) -> RGBColor {
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

/// The smallest and largest finite value.
pub fn span(v: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    v.filter(|x| x.is_finite()).fold(None, |acc, x| match acc {
        None => Some((x, x)),
        Some((a, b)) => Some((a.min(x), b.max(x))),
    })
}
