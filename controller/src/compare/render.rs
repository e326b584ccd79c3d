//! A comparison as a terminal table, as Markdown (for a pull request) and as a self-contained
//! HTML page (the report's style, the frontiers overlaid in one chart).

use std::fmt::Write as _;

use super::{Comparison, Report, Row, Verdict};
use crate::dashboard::charts::frontier::{Series, Y, chart, series_of};
use crate::dashboard::page::{STYLE, esc};

const HEAD: [&str; 8] = [
    "test",
    "metric",
    "A",
    "B",
    "B − A",
    "%",
    "CI of B − A",
    "verdict",
];

/// A row's cells, in [`HEAD`]'s order.
fn cells(r: &Row, confidence: f64) -> [String; 8] {
    let v = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.3}"));
    let (d, pct) = r.diff().map_or((None, None), |(d, p)| (Some(d), p));
    let mut verdict = r.verdict.to_string();
    for b in &r.failed {
        let _ = write!(verdict, " FAIL({b})");
    }
    [
        format!("{} {}", r.test.0, r.test.1.spoken()),
        format!("{} {}", r.metric, r.metric.unit()),
        v(r.a),
        v(r.b),
        d.map_or("-".into(), super::fmt_signed),
        pct.map_or("-".into(), |p| format!("{p:+.1}")),
        r.ci.map_or("-".into(), |(lo, hi)| {
            if r.single_runs() {
                format!("[{lo:+.3}, {hi:+.3}] ({:.0} %)", confidence * 100.0)
            } else {
                // over runs: how many on each side
                format!(
                    "[{lo:+.3}, {hi:+.3}] ({:.0} %, runs {}/{})",
                    confidence * 100.0,
                    r.runs.0,
                    r.runs.1
                )
            }
        }),
        verdict,
    ]
}

fn title(rep: &Report, c: &Comparison) -> String {
    format!(
        "{} (B) against {} (A, baseline)",
        rep.runs[c.other].name, rep.runs[c.baseline].name
    )
}

fn settings_line(rep: &Report) -> String {
    let s = &rep.settings;
    format!(
        "bootstrap over requests (over runs, then requests within each, where a side has several runs): {} resamples, seed {}, {:.0} % intervals; changes under {} % of A are noise{}",
        s.bootstrap.resamples,
        s.bootstrap.seed,
        s.bootstrap.confidence * 100.0,
        s.min_effect * 100.0,
        if s.fail_on.is_empty() {
            String::new()
        } else {
            let b: Vec<String> = s.fail_on.iter().map(ToString::to_string).collect();
            format!("; --fail-on {}", b.join(" "))
        }
    )
}

/// The boundaries (max passing concurrency) side by side: `(combination, per run)`.
fn boundaries(rep: &Report) -> Vec<(String, Vec<String>)> {
    let mut ios = vec![];
    for (_, v) in rep.runs.iter().flat_map(|r| &r.views) {
        for io in v.combinations() {
            if !ios.contains(&io) {
                ios.push(io);
            }
        }
    }
    ios.into_iter()
        .map(|io| {
            let per: Vec<String> = rep
                .runs
                .iter()
                .map(|r| {
                    // a side of several sources: each one's boundary, `64 / 64 / 128`
                    let each: Vec<String> = r.views.iter().map(|(_, v)| boundary(v, io)).collect();
                    each.join(" / ")
                })
                .collect();
            (io.to_string(), per)
        })
        .collect()
}

/// One sweep's boundary for `io`: `64`, `64 (fails at 96)`, `none (fails at 4)`, or `-`.
fn boundary(v: &crate::dashboard::data::SweepView, io: crate::dashboard::data::Io) -> String {
    v.max_passing()
        .into_iter()
        .find(|b| b.0 == io)
        .map_or("-".into(), |(_, max, first)| {
            format!(
                "{}{}",
                max.map_or("none".into(), |m| m.to_string()),
                first.map_or(String::new(), |f| format!(" (fails at {f})"))
            )
        })
}

/// The NOTEs of a comparison: tests with one run per side (their interval covers only within-run
/// noise), and sides whose several runs all come from one sweep (one server start, most likely).
fn notes(rep: &Report, c: &Comparison) -> Vec<String> {
    let mut tests: Vec<_> = c.rows.iter().map(|r| (r.test, r.single_runs())).collect();
    tests.dedup();
    let single = tests.iter().filter(|t| t.1).count();
    let mut v = vec![];
    if single > 0 {
        v.push(format!(
            "NOTE: {single} of {} tests have one run per side: their interval covers only within-run noise (a run's requests share batches), so a rerun may not reproduce the difference. Compare several runs per side (a sweep with --repeats N, or A1,A2,A3) for an interval over runs.",
            tests.len()
        ));
    }
    let one_sweep = |k: usize, runs: fn(&super::Row) -> usize| {
        rep.runs[k].views.len() == 1 && c.rows.iter().any(|r| runs(r) >= 2)
    };
    if one_sweep(c.baseline, |r| r.runs.0) || one_sweep(c.other, |r| r.runs.1) {
        v.push(
            "NOTE: a side's runs all come from one sweep: the interval covers how runs vary on one running server, not between server starts, which on a real server can be the larger part (llama.cpp: 17 % in TPOT between two starts, a few % between runs, docs/compare-gpu.md). To judge a server build or setting, take each run on its own server start and give them as A1,A2,A3.".into(),
        );
    }
    v
}

/// What the boundaries count: the baseline sweep's axis.
fn boundary_axis(rep: &Report) -> &'static str {
    match rep.runs[0].view().axis() {
        crate::sweep::axis::Axis::Concurrency => "concurrency",
        crate::sweep::axis::Axis::Rate => "request rate (req/s)",
    }
}

fn judged(rep: &Report) -> bool {
    rep.runs
        .iter()
        .flat_map(|r| &r.views)
        .any(|(_, v)| !v.thresholds.is_empty())
}

/// The terminal table.
pub fn table(rep: &Report) -> String {
    let mut s = format!("{}\n", settings_line(rep));
    for c in &rep.comparisons {
        let rows: Vec<[String; 8]> = c
            .rows
            .iter()
            .map(|r| cells(r, rep.settings.bootstrap.confidence))
            .collect();
        let mut w = HEAD.map(|h| h.chars().count());
        for r in &rows {
            for (k, cell) in r.iter().enumerate() {
                w[k] = w[k].max(cell.chars().count());
            }
        }
        let _ = writeln!(s, "\n== {} ==", title(rep, c));
        let line = |cells: &[String]| {
            let mut l = String::new();
            for (k, cell) in cells.iter().enumerate() {
                let pad = w[k] - cell.chars().count();
                if k < 2 || k == 7 {
                    let _ = write!(l, "{cell}{}  ", " ".repeat(pad));
                } else {
                    let _ = write!(l, "{}{cell}  ", " ".repeat(pad));
                }
            }
            l.trim_end().to_string()
        };
        let _ = writeln!(s, "{}", line(&HEAD.map(String::from)));
        for r in &rows {
            let _ = writeln!(s, "{}", line(r));
        }
        for note in notes(rep, c) {
            let _ = writeln!(s, "{note}");
        }
        unmatched(&mut s, rep, c);
    }
    if judged(rep) {
        let _ = writeln!(s, "\nlargest {} within the thresholds:", boundary_axis(rep));
        for (io, per) in boundaries(rep) {
            let _ = writeln!(s, "  {io}: {}", per.join("  |  "));
        }
    }
    s
}

fn unmatched(s: &mut String, rep: &Report, c: &Comparison) {
    for (id, k) in &c.unmatched {
        let _ = writeln!(
            s,
            "only in {}: {} {}",
            rep.runs[*k].name,
            id.0,
            id.1.spoken()
        );
    }
}

/// Markdown, for a pull request.
pub fn markdown(rep: &Report) -> String {
    let mut s = format!("_{}_\n", settings_line(rep));
    for c in &rep.comparisons {
        let _ = writeln!(s, "\n### {}\n", title(rep, c));
        let _ = writeln!(s, "| {} |", HEAD.join(" | "));
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---|");
        for r in &c.rows {
            let mut cells = cells(r, rep.settings.bootstrap.confidence);
            if r.verdict == Verdict::Worse {
                cells[7] = format!("**{}**", cells[7]);
            }
            let _ = writeln!(s, "| {} |", cells.join(" | "));
        }
        for note in notes(rep, c) {
            let _ = writeln!(s, "\n> **{note}**");
        }
        let mut u = String::new();
        unmatched(&mut u, rep, c);
        for l in u.lines() {
            let _ = writeln!(s, "\n- {l}");
        }
    }
    if judged(rep) {
        let names: Vec<&str> = rep.runs.iter().map(|r| r.name.as_str()).collect();
        let _ = writeln!(
            s,
            "\n### Largest {} within the thresholds\n\n| input x output | {} |\n|---|{}",
            boundary_axis(rep),
            names.join(" | "),
            "---|".repeat(names.len())
        );
        for (io, per) in boundaries(rep) {
            let _ = writeln!(s, "| {io} | {} |", per.join(" | "));
        }
    }
    s
}

/// A self-contained page: the tables, the boundaries side by side, the frontiers overlaid.
pub fn html(rep: &Report) -> String {
    let names: Vec<&str> = rep.runs.iter().map(|r| r.name.as_str()).collect();
    let mut s = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>benchctl compare</title><style>{STYLE}</style></head><body><h1>benchctl compare</h1><div class=\"muted\">{}</div><p class=\"muted\">{}</p>",
        esc(&names.join(" vs ")),
        esc(&settings_line(rep))
    );
    if rep
        .runs
        .iter()
        .flat_map(|r| &r.views)
        .any(|(_, v)| v.simulated_target)
    {
        s.push_str("<div class=\"sim\">A target is <b>benchctl sim</b>, a SIMULATOR: its numbers describe no real model.</div>");
    }
    if judged(rep) {
        let _ = write!(
            s,
            "<h2>Largest {} within the thresholds</h2><table id=\"boundaries\"><tr><th class=\"l\">input x output</th>",
            boundary_axis(rep)
        );
        for n in &names {
            let _ = write!(s, "<th>{}</th>", esc(n));
        }
        s.push_str("</tr>");
        for (io, per) in boundaries(rep) {
            let _ = write!(s, "<tr><td class=\"l\">{}</td>", esc(&io));
            for p in per {
                let _ = write!(s, "<td>{}</td>", esc(&p));
            }
            s.push_str("</tr>");
        }
        s.push_str("</table>");
    }
    let _ = write!(
        s,
        "<h2>Frontiers</h2><div class=\"chart\" id=\"chart-frontier\">{}</div>",
        overlay(rep)
    );
    for c in &rep.comparisons {
        table_html(&mut s, rep, c);
    }
    s.push_str("</body></html>");
    s
}

fn table_html(s: &mut String, rep: &Report, c: &Comparison) {
    let _ = write!(
        s,
        "<h2>{}</h2><table class=\"compare\"><tr>",
        esc(&title(rep, c))
    );
    for (k, h) in HEAD.iter().enumerate() {
        let l = if k < 2 || k == 7 { " class=\"l\"" } else { "" };
        let _ = write!(s, "<th{l}>{}</th>", esc(h));
    }
    s.push_str("</tr>");
    for r in &c.rows {
        let cells = cells(r, rep.settings.bootstrap.confidence);
        s.push_str("<tr>");
        for (k, cell) in cells.iter().enumerate() {
            let class = match (k, r.verdict) {
                (7, Verdict::Worse) => " class=\"l fail\"",
                (7, Verdict::Better) => " class=\"l pass\"",
                (0 | 1 | 7, _) => " class=\"l\"",
                _ => "",
            };
            let _ = write!(s, "<td{class}>{}</td>", esc(cell));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    for note in notes(rep, c) {
        let _ = write!(s, "<p class=\"note\"><b>{}</b></p>", esc(&note));
    }
}

/// Every run's frontier (output tokens/s per GPU against 1000 / mean TPOT) in one chart.
fn overlay(rep: &Report) -> String {
    let mut series: Vec<Series> = vec![];
    let mut key = vec![];
    for (k, r) in rep.runs.iter().enumerate() {
        let side = side_letter(k);
        for (j, (name, view)) in r.views.iter().enumerate() {
            // short labels in the legend, spelled out under the chart
            let label = if r.views.len() > 1 {
                format!("{side}{}", j + 1)
            } else {
                side.to_string()
            };
            series.extend(series_of(view, &format!("{label}: "), Y::Output, "mean"));
            key.push(format!("{label} = {name}"));
        }
    }
    let bound = rep.runs[0]
        .view()
        .thresholds
        .iter()
        .find(|l| l.metric == "tpot" && l.stat == "mean")
        .map(|l| l.max_ms);
    format!(
        "{}<p class=\"muted\">{}</p>",
        chart(&series, Y::Output, "mean", bound, ""),
        esc(&key.join("; "))
    )
}

/// The side's letter on the chart: A the baseline, then B, C…
fn side_letter(k: usize) -> char {
    char::from(b'A' + (k % 26) as u8)
}
