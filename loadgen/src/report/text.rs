//! The printed summary of a run, laid out like `vllm bench serve`'s.

use std::fmt::Write;

use super::RunInfo;
use super::metric::Metric;
use super::summary::Summary;
use crate::stats::percentile_label;

/// The printed summary, laid out like `vllm bench serve`'s.
pub fn render_text(info: &RunInfo, s: &Summary) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "{:=^50}", " Serving Benchmark Result ");
    if info.target_is_simulator {
        let _ = writeln!(
            t,
            "TARGET IS `benchctl sim`, A SIMULATOR: not a real model's numbers"
        );
    }
    write_requests(&mut t, info, s);
    write_sessions(&mut t, s);
    write_throughputs(&mut t, s);
    write_length_checks(&mut t, s);
    write_metrics(&mut t, info, s);
    let _ = writeln!(t, "{}", "=".repeat(50));
    t
}

/// One `key   value` line.
fn line(t: &mut String, k: &str, v: String) {
    let _ = writeln!(t, "{k:<40} {v}");
}

/// Requests (with failures by kind), the configured concurrency and rate, duration and tokens.
fn write_requests(t: &mut String, info: &RunInfo, s: &Summary) {
    line(t, "Successful requests:", s.completed.to_string());
    line(t, "Failed requests:", s.failed.to_string());
    for (k, n) in &s.failed_by_kind {
        line(
            t,
            &format!("  {k}:"),
            format!(
                "{n}  ({})",
                s.first_error.get(k).map(String::as_str).unwrap_or("")
            ),
        );
    }
    if let Some(c) = info.max_concurrency {
        line(t, "Maximum request concurrency:", c.to_string());
    }
    if info.request_rate.is_finite() {
        line(
            t,
            "Request rate configured (RPS):",
            format!("{:.2}", info.request_rate),
        );
    }
    line(t, "Benchmark duration (s):", format!("{:.2}", s.duration_s));
    line(t, "Total input tokens:", s.total_input_tokens.to_string());
    line(
        t,
        "Total generated tokens:",
        s.total_output_tokens.to_string(),
    );
}

/// A conversation run's sessions and the growth of TTFT and the prompt by turn.
fn write_sessions(t: &mut String, s: &Summary) {
    let Some(c) = &s.sessions else { return };
    let list = |v: &[Option<f64>], digits: usize| {
        v.iter()
            .map(|x| x.map_or("-".into(), |x| format!("{x:.digits$}")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    line(
        t,
        "Sessions completed / started:",
        format!("{} / {}", c.completed, c.started),
    );
    line(
        t,
        "Mean prompt tokens by turn:",
        list(&c.mean_prompt_tokens_by_turn, 0),
    );
    line(
        t,
        "Mean TTFT by turn (ms):",
        list(&c.mean_ttft_ms_by_turn, 2),
    );
}

/// Throughputs, goodput and peaks.
fn write_throughputs(t: &mut String, s: &Summary) {
    line(
        t,
        "Request throughput (req/s):",
        format!("{:.2}", s.request_throughput),
    );
    if let Some(g) = s.request_goodput {
        line(t, "Request goodput (req/s):", format!("{g:.2}"));
    }
    line(
        t,
        "Output token throughput (tok/s):",
        format!("{:.2}", s.output_throughput),
    );
    line(
        t,
        "Peak output token throughput (tok/s):",
        format!("{:.2}", s.max_output_tokens_per_s),
    );
    line(
        t,
        "Peak concurrent requests:",
        s.max_concurrent_requests.to_string(),
    );
    line(
        t,
        "Total Token throughput (tok/s):",
        format!("{:.2}", s.total_token_throughput),
    );
}

/// Prompt and output lengths that are not what was asked (only when some are off).
fn write_length_checks(t: &mut String, s: &Summary) {
    if s.input_len_mismatches > 0 {
        line(
            t,
            "Prompts off their target length:",
            format!(
                "{} (max deviation {} tokens)",
                s.input_len_mismatches, s.input_len_max_deviation
            ),
        );
    }
    if let Some(f) = s.cache.fraction() {
        line(
            t,
            "Cached prompt tokens (server usage):",
            format!(
                "{} ({:.1} % of prompt tokens)",
                s.cache.cached_tokens,
                f * 100.0
            ),
        );
    }
    if s.output_len_mismatches > 0 {
        line(
            t,
            "Server/client output count mismatches:",
            s.output_len_mismatches.to_string(),
        );
    }
}

/// One section per metric with samples: mean, median and the percentiles.
fn write_metrics(t: &mut String, info: &RunInfo, s: &Summary) {
    for m in Metric::ALL {
        let Some(d) = s.metrics.get(&m) else { continue };
        if m == Metric::DispatchLag && !info.request_rate.is_finite() {
            continue;
        }
        // Without reasoning or tool calls TTFO is TTFT: print it once.
        if m == Metric::Ttfo && s.metrics.get(&Metric::Ttft) == Some(d) {
            continue;
        }
        // With one token per chunk the per-token ITL is the ITL: print it once.
        if m == Metric::ItlPerToken && s.metrics.get(&Metric::Itl) == Some(d) {
            continue;
        }
        let _ = writeln!(t, "{:-^50}", title(m));
        line(
            t,
            &format!("Mean {} (ms):", short(m)),
            format!("{:.2}", d.mean),
        );
        line(
            t,
            &format!("Median {} (ms):", short(m)),
            format!("{:.2}", d.median),
        );
        for (p, v) in d.percentiles.iter().filter(|(p, _)| *p != 50.0) {
            line(
                t,
                &format!("P{} {} (ms):", percentile_label(*p), short(m)),
                format!("{v:.2}"),
            );
        }
    }
}

/// A metric's section title.
fn title(m: Metric) -> &'static str {
    match m {
        Metric::Ttft => "Time to First Token",
        Metric::Ttfo => "Time to First visible Output",
        Metric::Tpot => "Time per Output Token (excl. 1st token)",
        Metric::Itl => "Inter-token Latency",
        Metric::E2el => "End-to-end Latency",
        Metric::ItlPerToken => "Inter-token Latency per token",
        Metric::Queue => "Client queue time",
        Metric::DispatchLag => "Dispatch lag (open loop)",
    }
}

/// A metric's name in its lines (`Mean TTFT (ms):`).
fn short(m: Metric) -> &'static str {
    match m {
        Metric::Ttft => "TTFT",
        Metric::Ttfo => "TTFO",
        Metric::Tpot => "TPOT",
        Metric::Itl => "ITL",
        Metric::E2el => "E2EL",
        Metric::ItlPerToken => "ITL/token",
        Metric::Queue => "queue",
        Metric::DispatchLag => "lag",
    }
}
