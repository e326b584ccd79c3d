//! A sweep's summary written out: `summary.json`, `summary.csv`, `frontier.csv`, `summary.md`,
//! and the closing table printed at the end of a sweep.

use std::fmt::Write as _;
use std::path::Path;

use super::axis::{Axis, Level};
use super::frontier::FrontierPoint;
use super::summary::{ComboSummary, SweepSummary};
use crate::output::write_atomic;

impl SweepSummary {
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        write_atomic(&dir.join("summary.json"), &serde_json::to_vec_pretty(self)?)?;
        write_atomic(&dir.join("summary.csv"), self.csv().as_bytes())?;
        write_atomic(&dir.join("summary.md"), self.markdown().as_bytes())?;
        write_atomic(&dir.join("frontier.csv"), self.frontier_csv().as_bytes())?;
        Ok(())
    }

    /// The frontier's table: every point per GPU and per user, `*` on the frontier.
    fn frontier_markdown(&self, s: &mut String) {
        if self.combinations.iter().all(|c| c.frontier.is_empty()) {
            return;
        }
        let f = |v: Option<f64>, d: usize| v.map(|v| format!("{v:.d$}")).unwrap_or("–".into());
        let _ = writeln!(
            s,
            "\n## Throughput per GPU against interactivity (`*`: on the Pareto frontier)\n\n| input | output | {} | GPUs | output tok/s/GPU | total tok/s/GPU | tok/s/user (1000/mean TPOT) | J/output token | cost per M output tokens | verdict |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            self.axis.label()
        );
        for c in &self.combinations {
            for p in &c.frontier {
                let _ = writeln!(
                    s,
                    "| {} | {} | {}{} | {} ({}) | {:.1} | {} | {} | {} | {} | {} |",
                    c.input_len,
                    c.output_len,
                    p.level,
                    if p.on_frontier { " *" } else { "" },
                    p.gpus,
                    p.gpus_from,
                    p.output_tok_s_per_gpu,
                    f(p.total_tok_s_per_gpu, 1),
                    f(p.tok_s_per_user, 1),
                    f(p.joules_per_output_token, 3),
                    f(p.cost_per_million_output_tokens, 3),
                    match p.pass {
                        None => "–",
                        Some(true) => "pass",
                        Some(false) => "fail",
                    }
                );
            }
        }
    }

    /// One row per combination: the max passing concurrency (rate) and its pooled numbers.
    pub fn csv(&self) -> String {
        let (a, list) = match self.axis {
            Axis::Concurrency => ("concurrency", "concurrencies"),
            Axis::Rate => ("rate", "rates"),
        };
        let mut s = format!(
            "input_len,output_len,status,max_passing_{a},first_failing_{a},bound_by,limiter,tests_run,output_throughput_tok_s,request_throughput_req_s,mean_ttft_ms,p99_ttft_ms,mean_tpot_ms,p99_tpot_ms,mean_e2el_ms,gpus,output_tok_s_per_gpu,tok_s_per_user,joules_per_output_token,cost_per_million_output_tokens,frontier_{list}\n",
        );
        let o = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
        for c in &self.combinations {
            let p = self.at_max(c);
            let _ = writeln!(
                s,
                "{},{},{},{},{},\"{}\",\"{}\",{},{},{},{},{},{},{},{},{}",
                c.input_len,
                c.output_len,
                c.status,
                c.max_passing.map(|v| v.to_string()).unwrap_or_default(),
                c.first_failing.map(|v| v.to_string()).unwrap_or_default(),
                c.bound_by.join("; ").replace('"', "'"),
                c.limiter.as_deref().unwrap_or_default().replace('"', "'"),
                c.tests_run,
                o(p.map(|p| p.output_throughput)),
                o(p.map(|p| p.request_throughput)),
                o(p.and_then(|p| p.mean_ttft_ms)),
                o(p.and_then(|p| p.p99_ttft_ms)),
                o(p.and_then(|p| p.mean_tpot_ms)),
                o(p.and_then(|p| p.p99_tpot_ms)),
                o(p.and_then(|p| p.mean_e2el_ms)),
                frontier_columns(c),
            );
        }
        s
    }

    /// One row per tested point of every combination, on the frontier's axes.
    pub fn frontier_csv(&self) -> String {
        let mut s = format!(
            "input_len,output_len,{},gpus,gpus_from,output_tok_s_per_gpu,total_tok_s_per_gpu,tok_s_per_user,tok_s_per_user_median,tok_s_per_user_p90,joules_per_output_token,cost_per_million_output_tokens,pass,on_frontier\n",
            self.axis.name()
        );
        let o = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
        for c in &self.combinations {
            for p in &c.frontier {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{:.4},{},{},{},{},{},{},{},{}",
                    c.input_len,
                    c.output_len,
                    p.level,
                    p.gpus,
                    p.gpus_from,
                    p.output_tok_s_per_gpu,
                    o(p.total_tok_s_per_gpu),
                    o(p.tok_s_per_user),
                    o(p.tok_s_per_user_median),
                    o(p.tok_s_per_user_p90),
                    o(p.joules_per_output_token),
                    o(p.cost_per_million_output_tokens),
                    p.pass.map(|b| b.to_string()).unwrap_or_default(),
                    p.on_frontier,
                );
            }
        }
        s
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Sweep: {} (tp {}, dtype {})\n",
            self.model, self.tp, self.dtype
        );
        if self.target_is_simulator {
            let _ = writeln!(
                s,
                "> The target is `benchctl sim`, a SIMULATOR: these numbers describe no real model.\n"
            );
        }
        let _ = writeln!(
            s,
            "- threshold: {} (max error rate {})\n- search: {}, repeats {}\n- GPU telemetry: {}\n- status: {}",
            self.threshold
                .as_deref()
                .unwrap_or("none (every grid point)"),
            self.max_error_rate,
            self.search,
            self.repeats,
            self.gpu_telemetry,
            self.status
        );
        for (k, v) in &self.metadata {
            let _ = writeln!(s, "- {k}: {v}");
        }
        let f = |v: Option<f64>, d: usize| v.map(|v| format!("{v:.d$}")).unwrap_or("–".into());
        if self.threshold.is_some() {
            let _ = writeln!(
                s,
                "\n## Largest {} within the thresholds\n\n| input | output | max passing | first failing | bound by | likely limiter | output tok/s | mean TTFT ms | p99 TTFT ms | mean TPOT ms | tests |\n|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|",
                self.axis.label()
            );
            for c in &self.combinations {
                let p = self.at_max(c);
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    c.input_len,
                    c.output_len,
                    c.max_passing.map_or("none".into(), |v| v.to_string()),
                    c.first_failing.map_or("–".into(), |v| v.to_string()),
                    if c.bound_by.is_empty() {
                        "–".into()
                    } else {
                        c.bound_by.join("; ")
                    },
                    c.limiter.as_deref().unwrap_or("–"),
                    f(p.map(|p| p.output_throughput), 1),
                    f(p.and_then(|p| p.mean_ttft_ms), 1),
                    f(p.and_then(|p| p.p99_ttft_ms), 1),
                    f(p.and_then(|p| p.mean_tpot_ms), 2),
                    c.tests_run,
                );
            }
        } else if self.combinations.iter().any(|c| c.limiter.is_some()) {
            let _ = writeln!(
                s,
                "\n## Likely limiter at the largest {} tested\n",
                self.axis.name()
            );
            for c in &self.combinations {
                let _ = writeln!(
                    s,
                    "- {} x {}: {}",
                    c.input_len,
                    c.output_len,
                    c.limiter.as_deref().unwrap_or("–")
                );
            }
        }
        self.frontier_markdown(&mut s);
        // the server's columns where its metrics were scraped
        let server = self
            .combinations
            .iter()
            .flat_map(|c| &c.points)
            .any(|p| p.server_waiting_mean.is_some() || p.server_kv_cache_usage_max.is_some());
        // the cached-token column where the server's usage reported cached tokens
        let cached = self
            .combinations
            .iter()
            .flat_map(|c| &c.points)
            .any(|p| p.cached_token_fraction.is_some());
        let (cached_head, cached_rule) = if cached {
            (" cached % | expected cached % |", "---:|---:|")
        } else {
            ("", "")
        };
        let _ = writeln!(
            s,
            "\n## Every {} tested\n\n| input | output | {} | runs | verdict | ok/failed | output tok/s | mean TTFT ms | p99 TTFT ms | mean TPOT ms | p99 TPOT ms | mean E2EL ms | GPU util % |{}{cached_head}\n|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|{}{cached_rule}",
            self.axis.name(),
            self.axis.label(),
            if server {
                " server waiting | KV cache max % | preemptions | prefix hit % |"
            } else {
                ""
            },
            if server { "---:|---:|---:|---:|" } else { "" },
        );
        for c in &self.combinations {
            for p in &c.points {
                let verdict = match p.pass {
                    _ if p.invalid.is_some() => {
                        format!("INVALID: {}", p.invalid.as_deref().unwrap_or_default())
                    }
                    None => "–".to_string(),
                    Some(true) => "pass".into(),
                    Some(false) => format!("FAIL: {}", p.violations.join("; ")),
                };
                let _ = write!(
                    s,
                    "| {} | {} | {} | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} |",
                    c.input_len,
                    c.output_len,
                    p.level,
                    p.runs,
                    verdict,
                    p.completed,
                    p.failed,
                    f(Some(p.output_throughput), 1),
                    f(p.mean_ttft_ms, 1),
                    f(p.p99_ttft_ms, 1),
                    f(p.mean_tpot_ms, 2),
                    f(p.p99_tpot_ms, 2),
                    f(p.mean_e2el_ms, 1),
                    f(p.gpu_utilization_mean_pct, 1),
                );
                if server {
                    let _ = write!(
                        s,
                        " {} | {} | {} | {} |",
                        f(p.server_waiting_mean, 1),
                        f(p.server_kv_cache_usage_max.map(|v| v * 100.0), 1),
                        f(p.server_preemptions, 0),
                        f(p.server_prefix_cache_hit_rate.map(|v| v * 100.0), 1),
                    );
                }
                if cached {
                    let _ = write!(
                        s,
                        " {} | {} |",
                        f(p.cached_token_fraction.map(|v| v * 100.0), 1),
                        f(p.expected_cached_token_fraction.map(|v| v * 100.0), 1),
                    );
                }
                s.push('\n');
            }
        }
        if let Some(w) = warm_cache_line(self) {
            let _ = writeln!(s, "\n{w}");
        }
        s
    }
}

/// The summary CSV's frontier columns at the max passing concurrency (else the frontier's
/// highest throughput), and the concurrencies on the frontier (`1 4 16`).
fn frontier_columns(c: &ComboSummary) -> String {
    let on: Vec<&FrontierPoint> = c.frontier.iter().filter(|p| p.on_frontier).collect();
    let at = c
        .max_passing
        .and_then(|m| c.frontier.iter().find(|p| p.level == m))
        .or_else(|| {
            on.iter()
                .max_by(|a, b| a.output_tok_s_per_gpu.total_cmp(&b.output_tok_s_per_gpu))
                .copied()
        });
    let o = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_default();
    let mut cs: Vec<Level> = on.iter().map(|p| p.level).collect();
    cs.sort_unstable();
    format!(
        "{},{},{},{},{},{}",
        o(at.map(|p| p.gpus)),
        o(at.map(|p| p.output_tok_s_per_gpu)),
        o(at.and_then(|p| p.tok_s_per_user)),
        o(at.and_then(|p| p.joules_per_output_token)),
        o(at.and_then(|p| p.cost_per_million_output_tokens)),
        cs.iter()
            .map(Level::to_string)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The closing table printed to stderr.
pub fn final_table(s: &SweepSummary) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{:=^72}", " Sweep summary ");
    if s.target_is_simulator {
        let _ = writeln!(t, "target: benchctl sim (a SIMULATOR, not a model)");
    }
    let _ = writeln!(
        t,
        "threshold: {}   search: {}{}   status: {}",
        s.threshold.as_deref().unwrap_or("none"),
        s.search,
        match s.axis {
            Axis::Concurrency => "",
            Axis::Rate => " over the request rate (req/s)",
        },
        s.status
    );
    // the likely limiter's column only where the server's metrics name one
    let width = s
        .combinations
        .iter()
        .filter_map(|c| c.limiter.as_ref().map(|l| l.chars().count()))
        .max()
        .map(|w| w.max("likely limiter".len()));
    let limiter = |l: &str| width.map_or(String::new(), |w| format!("  {l:<w$}"));
    let _ = writeln!(
        t,
        "{:>7} {:>7}  {:>11} {:>13}{}  bound by",
        "input",
        "output",
        "max passing",
        "first failing",
        limiter("likely limiter")
    );
    let invalid: Vec<String> = s
        .combinations
        .iter()
        .flat_map(|c| {
            c.points.iter().filter_map(move |p| {
                let why = p.invalid.as_ref()?;
                Some(format!(
                    "{}x{} {}: {why}",
                    c.input_len,
                    c.output_len,
                    p.level.spoken()
                ))
            })
        })
        .collect();
    for c in &s.combinations {
        let _ = writeln!(
            t,
            "{:>7} {:>7}  {:>11} {:>13}{}  {}",
            c.input_len,
            c.output_len,
            c.max_passing.map_or("-".into(), |v| v.to_string()),
            c.first_failing.map_or("-".into(), |v| v.to_string()),
            limiter(c.limiter.as_deref().unwrap_or("-")),
            c.bound_by.join("; ")
        );
    }
    if let Some(w) = warm_cache_line(s) {
        let _ = writeln!(t, "{w}");
    }
    for line in &invalid {
        let _ = writeln!(
            t,
            "INVALID (the client could not hold the load; never a pass): {line}"
        );
    }
    t
}

/// A warning naming the tests served from a warm prefix cache, if any.
fn warm_cache_line(s: &SweepSummary) -> Option<String> {
    let warm: Vec<String> = s
        .combinations
        .iter()
        .flat_map(|c| {
            c.points
                .iter()
                .filter(|p| p.warm_cache)
                .map(move |p| format!("{}x{} {}", c.input_len, c.output_len, p.level.spoken()))
        })
        .collect();
    (!warm.is_empty()).then(|| {
        format!(
            "WARNING: served from a warm prefix cache (more cached prompt tokens than the workload shares; TTFT reads low): {}",
            warm.join(", ")
        )
    })
}
