//! The HTML of a sweep's page: the same sections in the live dashboard (refreshed in place by a
//! few lines of script) and in the self-contained report.

use std::fmt::Write as _;

use serde_json::Value;

use super::data::{Io, SweepView, io_of, level_of};

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:24px 0 8px}
.sim{background:#fff3cd;border:1px solid #e0c46c;padding:6px 10px;margin:8px 0;border-radius:4px}
table{border-collapse:collapse;background:#fff;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right} th{background:#f0f0f0}
td.l,th.l{text-align:left}
.pass{color:#176b1d;font-weight:600} .fail{color:#b00020;font-weight:600}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(660px,1fr));gap:12px}
.chart{background:#fff;border:1px solid #ddd;padding:6px}
.chart h3{font-size:14px;margin:2px 4px 4px}
.meta td{text-align:left}
.muted{color:#777;font-size:12px}
"#;

/// The metadata table.
pub fn meta(view: &SweepView) -> String {
    let mut s = String::from("<table class=\"meta\">");
    let _ = write!(
        s,
        "<tr><th class=\"l\">status</th><td id=\"status\">{}</td></tr><tr><th class=\"l\">tests finished</th><td id=\"tests-count\">{}</td></tr>",
        esc(&view.status()),
        view.entries.len()
    );
    if let Some(kind) = &view.server_kind {
        let _ = write!(
            s,
            "<tr><th class=\"l\">server kind</th><td id=\"server-kind\">{}</td></tr>",
            esc(kind)
        );
    }
    for (k, v) in &view.metadata {
        let _ = write!(
            s,
            "<tr><th class=\"l\">{}</th><td>{}</td></tr>",
            esc(k),
            esc(v)
        );
    }
    s.push_str("</table>");
    if view.simulated_target {
        s.push_str("<div class=\"sim\">The target is <b>benchctl sim</b>, a SIMULATOR: these numbers describe no real model.</div>");
    }
    if view.simulated_gpus {
        s.push_str("<div class=\"sim\">GPU statistics are SIMULATED (made-up values from --telemetry-source simulated).</div>");
    }
    s
}

/// Max passing concurrency per combination.
pub fn boundary(view: &SweepView) -> String {
    if view.thresholds.is_empty() {
        return "<p class=\"muted\">No threshold: every grid point is tested, nothing judged.</p>"
            .into();
    }
    let mut s = String::from(
        "<table id=\"boundary\"><tr><th>input</th><th>output</th><th>max passing</th><th>first failing</th></tr>",
    );
    for (io, max, first) in view.max_passing() {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            io.input_len,
            io.output_len,
            max.map_or("none".into(), |v| v.to_string()),
            first.map_or("-".into(), |v| v.to_string())
        );
    }
    s.push_str("</table>");
    s
}

/// Every test with its verdict; with the server's view (requests waiting, KV cache,
/// preemptions, its token counts against ours) where the tests scraped it.
pub fn tests(view: &SweepView) -> String {
    let server = view.has_server_metrics();
    let mut s = String::from(
        "<table id=\"tests\"><tr><th class=\"l\">test</th><th>input</th><th>output</th><th>concurrency / rate</th><th>run</th><th>ok</th><th>failed</th><th>output tok/s</th><th>mean TTFT ms</th><th>p99 TTFT ms</th><th>mean TPOT ms</th><th>mean E2EL ms</th><th>GPU util %</th>",
    );
    if server {
        s.push_str("<th>server waiting (mean)</th><th>KV cache max %</th><th>preemptions</th><th class=\"l\">server tokens</th>");
    }
    s.push_str("<th class=\"l\">verdict</th></tr>");
    let f = |e: &Value, k: &str, d: usize| {
        e.get(k)
            .and_then(Value::as_f64)
            .map_or("-".into(), |v| format!("{v:.d$}"))
    };
    for e in &view.entries {
        let io = io_of(e).unwrap_or(Io::new(0, 0));
        let invalid = e.get("invalid").and_then(Value::as_str);
        let verdict = match e.get("threshold_pass").and_then(Value::as_bool) {
            _ if invalid.is_some() => format!(
                "<td class=\"l fail invalid\">INVALID: {} (never a pass)</td>",
                esc(invalid.unwrap_or_default())
            ),
            None => "<td class=\"l\">-</td>".to_string(),
            Some(true) => "<td class=\"l pass\">pass</td>".into(),
            Some(false) => format!(
                "<td class=\"l fail\">FAIL {}</td>",
                esc(&e["threshold_violations"]
                    .as_array()
                    .map(|v| {
                        v.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default())
            ),
        };
        let _ = write!(
            s,
            "<tr class=\"test\"><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            esc(e.get("test_id").and_then(Value::as_str).unwrap_or("-")),
            io.input_len,
            io.output_len,
            level_of(e).map_or("-".into(), |c| c.spoken()),
            e.get("run").and_then(Value::as_u64).unwrap_or(1),
            e.get("completed").and_then(Value::as_u64).unwrap_or(0),
            e.get("failed").and_then(Value::as_u64).unwrap_or(0),
            f(e, "output_throughput", 1),
            f(e, "mean_ttft_ms", 1),
            f(e, "p99_ttft_ms", 1),
            f(e, "mean_tpot_ms", 2),
            f(e, "mean_e2el_ms", 1),
            f(e, "gpu_utilization_mean_pct", 1),
        );
        if server {
            let kv = e
                .get("server_kv_cache_usage_max")
                .and_then(Value::as_f64)
                .map_or("-".into(), |v| format!("{:.1}", v * 100.0));
            let _ = write!(
                s,
                "<td>{}</td><td>{kv}</td><td>{}</td>{}",
                f(e, "server_waiting_mean", 1),
                f(e, "server_preemptions", 0),
                tokens_check(e),
            );
        }
        s.push_str(&verdict);
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// The server's token and request counts against the client's: a mark, with both numbers,
/// where they differ (`server_tokens_mismatch`).
fn tokens_check(e: &Value) -> String {
    match e.get("server_tokens_mismatch") {
        Some(Value::Object(o)) => {
            let what: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{k}: server {} / client {}", v["server"], v["client"]))
                .collect();
            format!(
                "<td class=\"l fail mismatch\">≠ {}</td>",
                esc(&what.join("; "))
            )
        }
        Some(m) if !m.is_null() => format!(
            "<td class=\"l fail mismatch\">≠ {}</td>",
            esc(&m.to_string())
        ),
        _ => "<td class=\"l\">-</td>".into(),
    }
}

/// The charts' grid, each chart's SVG inline; the frontier's variants (`frontier_<y>_<stat>`)
/// in one box with a choice of axes.
pub fn charts(charts: &[(String, String, String)]) -> String {
    let mut s = String::from("<div class=\"charts\">");
    let variants: Vec<&(String, String, String)> = charts
        .iter()
        .filter(|c| c.0.starts_with("frontier_"))
        .collect();
    if !variants.is_empty() {
        s.push_str(&frontier_box(&variants));
    }
    for (id, title, svg) in charts.iter().filter(|c| !c.0.starts_with("frontier_")) {
        let _ = write!(
            s,
            "<div class=\"chart\" id=\"chart-{}\"><h3>{}</h3>{svg}</div>",
            esc(id),
            esc(title)
        );
    }
    s.push_str("</div>");
    s
}

/// The frontier's variants, one shown; two selects pick the y axis and the TPOT statistic
/// (an inline handler: it still works after the live page replaces the section).
fn frontier_box(variants: &[&(String, String, String)]) -> String {
    const PICK: &str = "var b=this.closest('.chart');var v='frontier_'+b.querySelector('.fy').value+'_'+b.querySelector('.fx').value;b.querySelectorAll('[data-v]').forEach(function(d){d.style.display=d.dataset.v===v?'':'none'})";
    let mut ys: Vec<&str> = vec![];
    for (id, _, _) in variants {
        let y = id
            .trim_start_matches("frontier_")
            .split('_')
            .next()
            .unwrap_or("");
        if !ys.contains(&y) {
            ys.push(y);
        }
    }
    let mut s = format!(
        "<div class=\"chart\" id=\"chart-frontier\"><h3>Throughput per GPU vs interactivity (Pareto frontier)</h3><select class=\"fy\" onchange=\"{PICK}\">"
    );
    for y in ys {
        let _ = write!(
            s,
            "<option value=\"{y}\">{}</option>",
            esc(&frontier_y_label(y))
        );
    }
    let _ = write!(s, "</select> <select class=\"fx\" onchange=\"{PICK}\">");
    for stat in super::charts::frontier::STATS {
        let _ = write!(s, "<option value=\"{stat}\">1000 / {stat} TPOT</option>");
    }
    s.push_str("</select>");
    for (k, (id, title, svg)) in variants.iter().enumerate() {
        let _ = write!(
            s,
            "<div data-v=\"{}\" title=\"{}\"{}>{svg}</div>",
            esc(id),
            esc(title),
            if k == 0 {
                ""
            } else {
                " style=\"display:none\""
            }
        );
    }
    s.push_str("</div>");
    s
}

fn frontier_y_label(id: &str) -> String {
    use super::charts::frontier::Y;
    Y::ALL
        .iter()
        .find(|y| y.id() == id)
        .map_or(id.to_string(), |y| y.label().to_string())
}

/// The page's sections, by element id.
pub fn sections(view: &SweepView) -> Vec<(&'static str, String)> {
    vec![
        ("meta", meta(view)),
        ("boundary-section", boundary(view)),
        ("charts", charts(&super::charts::all(view))),
        ("tests-section", tests(view)),
    ]
}

/// A whole page. `live`: the script that follows the sweep — its API URL and the version of the
/// files the page was rendered from.
pub fn page(view: &SweepView, live: Option<(&str, &str)>) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>benchctl: {}</title><style>{STYLE}</style></head><body>",
        esc(&view.name)
    );
    let _ = write!(
        s,
        "<h1>{}</h1><div class=\"muted\">benchctl sweep{}</div>",
        esc(&view.name),
        if live.is_some() {
            " — live: this page follows the result files"
        } else {
            " report"
        }
    );
    let secs = sections(view);
    let get = |id: &str| {
        secs.iter()
            .find(|(k, _)| *k == id)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let _ = write!(
        s,
        "<div id=\"meta\">{}</div><h2>Largest {} within the thresholds</h2><div id=\"boundary-section\">{}</div><h2>Charts</h2><div id=\"charts\">{}</div><h2>Tests</h2><div id=\"tests-section\">{}</div>",
        get("meta"),
        match view.axis() {
            crate::sweep::axis::Axis::Concurrency => "concurrency",
            crate::sweep::axis::Axis::Rate => "request rate (req/s)",
        },
        get("boundary-section"),
        get("charts"),
        get("tests-section")
    );
    if let Some((api, version)) = live {
        let _ = write!(
            s,
            r#"<script>
window.benchctlLoadedAt = Date.now();
(function () {{
  const api = {api};
  const token = new URLSearchParams(location.search).get("token");
  const headers = token ? {{ Authorization: "Bearer " + token }} : {{}};
  let version = {version};
  async function poll() {{
    try {{
      const v = await fetch(api + "/version", {{ headers, cache: "no-store" }});
      const now = await v.text();
      if (v.ok && now !== version) {{
        const r = await fetch(api + "/sections", {{ headers, cache: "no-store" }});
        if (r.ok) {{
          const sections = await r.json();
          for (const [id, html] of Object.entries(sections)) {{
            const el = document.getElementById(id);
            if (el) el.innerHTML = html;
          }}
          version = now;
          window.benchctlUpdates = (window.benchctlUpdates || 0) + 1;
        }}
      }}
    }} catch (e) {{ /* the controller may be restarting: try again */ }}
    setTimeout(poll, 1000);
  }}
  setTimeout(poll, 1000);
}})();
</script>"#,
            api = serde_json::to_string(api).unwrap_or_default(),
            version = serde_json::to_string(version).unwrap_or_default(),
        );
    }
    s.push_str("</body></html>");
    s
}
