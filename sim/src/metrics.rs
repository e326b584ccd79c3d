//! Prometheus metrics of the simulator, with vLLM's names and types where vLLM has one
//! (vLLM's `PrometheusStatLogger` in `vllm/v1/metrics/loggers.py`: counters are exposed
//! with the `_total` suffix, every series has a `model_name` label; the simulator leaves
//! out vLLM's `engine` label, having one engine).
//!
//! Every value is an exact count kept by the scheduler (or, for
//! `benchctl_sim_requests_total`, the handlers), so a test can difference two scrapes:
//!
//! | series | kind | what it counts |
//! |---|---|---|
//! | `vllm:num_requests_running` | gauge | sequences in the running batch |
//! | `vllm:num_requests_waiting` | gauge | sequences queued for admission (preempted ones included) |
//! | `vllm:kv_cache_usage_perc`, `vllm:gpu_cache_usage_perc` (v0's name) | gauge | reserved KV tokens / `--kv-cache-tokens`, 0..1 |
//! | `vllm:prompt_tokens_total` | counter | prompt tokens of the requests admitted, once per request (a readmission after a preemption recomputes them but is not counted again, like vLLM) |
//! | `vllm:generation_tokens_total` | counter | tokens generated: one per running sequence per step (as `benchctl_sim_tokens_generated_total`) |
//! | `vllm:request_success_total{finished_reason}` | counter | sequences finished by the scheduler: `length` (reached `max_tokens`), `stop` (always 0: the simulator never stops early), `abort` (dropped because the client had gone: disconnected, or the truncate and stall faults) |
//! | `vllm:num_preemptions_total` | counter | preemptions (only with `--preempt`; otherwise KV is reserved at admission and nothing is ever preempted) |
//! | `vllm:prefix_cache_queries_total` | counter | tokens looked up in the prefix cache: prompt + already generated tokens of every admission (0 when the cache is off, like vLLM) |
//! | `vllm:prefix_cache_hits_total` | counter | of those, the tokens found cached |
//! | `benchctl_sim_requests_total` | counter | generation requests accepted (submitted to the scheduler) |
//! | `benchctl_sim_tokens_generated_total` | counter | the same count as `vllm:generation_tokens_total` |

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters and gauges shared by the handlers (writers of `requests_total`)
/// and the scheduler (writer of everything else). Plain relaxed atomics: the
/// values are only ever read for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub running: AtomicU64,
    pub waiting: AtomicU64,
    pub kv_reserved_tokens: AtomicU64,
    pub requests_total: AtomicU64,
    pub prompt_tokens_total: AtomicU64,
    pub tokens_generated_total: AtomicU64,
    pub finished_length_total: AtomicU64,
    pub aborted_total: AtomicU64,
    pub preemptions_total: AtomicU64,
    pub prefix_cache_queries_total: AtomicU64,
    pub prefix_cache_hits_total: AtomicU64,
}

/// The text being rendered, and the `model_name` label every series carries.
struct Exposition {
    out: String,
    model_label: String,
}

impl Exposition {
    /// A metric family's `# HELP` and `# TYPE` lines.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = write!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// One sample; `extra` is more labels (`k="v"`), or empty.
    fn sample(&mut self, name: &str, extra: &str, value: impl Display) {
        let sep = if extra.is_empty() { "" } else { "," };
        let _ = writeln!(
            self.out,
            "{name}{{{}{sep}{extra}}} {value}",
            self.model_label
        );
    }

    /// A family of one sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, "", value);
    }
}

/// Appended to the help of vLLM's names.
const SIM: &str = "(benchctl sim, simulator)";

impl Metrics {
    /// Renders the Prometheus text exposition format.
    pub(crate) fn render(&self, model_name: &str, kv_cache_tokens: usize) -> String {
        let get = |c: &AtomicU64| c.load(Relaxed);
        let usage = if kv_cache_tokens == 0 {
            0.0
        } else {
            get(&self.kv_reserved_tokens) as f64 / kv_cache_tokens as f64
        };
        let mut e = Exposition {
            out: String::with_capacity(4096),
            model_label: format!("model_name=\"{}\"", escape_label(model_name)),
        };
        let usage_help = format!("Simulated KV-cache usage, 0..1 (1 = 100%) {SIM}.");
        let gauges = [
            (
                "vllm:num_requests_running",
                format!("Number of requests in the running batch {SIM}."),
                get(&self.running) as f64,
            ),
            (
                "vllm:num_requests_waiting",
                format!("Number of requests waiting for admission, preempted ones included {SIM}."),
                get(&self.waiting) as f64,
            ),
            ("vllm:gpu_cache_usage_perc", usage_help.clone(), usage),
            ("vllm:kv_cache_usage_perc", usage_help, usage),
        ];
        for (name, help, value) in gauges {
            e.single(name, "gauge", &help, value);
        }
        e.family(
            "vllm:request_success_total",
            "counter",
            &format!("Sequences finished by the scheduler, by finished_reason {SIM}."),
        );
        for (reason, n) in [
            ("stop", 0),
            ("length", get(&self.finished_length_total)),
            ("abort", get(&self.aborted_total)),
        ] {
            let label = format!("finished_reason=\"{reason}\"");
            e.sample("vllm:request_success_total", &label, n);
        }
        let counters = [
            (
                "vllm:prompt_tokens_total",
                format!("Prompt tokens of the requests admitted, once per request {SIM}."),
                &self.prompt_tokens_total,
            ),
            (
                "vllm:generation_tokens_total",
                format!("Tokens generated by the scheduler {SIM}."),
                &self.tokens_generated_total,
            ),
            (
                "vllm:num_preemptions_total",
                format!("Preemptions (only with --preempt) {SIM}."),
                &self.preemptions_total,
            ),
            (
                "vllm:prefix_cache_queries_total",
                format!("Prefix cache queries, in tokens looked up {SIM}."),
                &self.prefix_cache_queries_total,
            ),
            (
                "vllm:prefix_cache_hits_total",
                format!("Prefix cache hits, in tokens found cached {SIM}."),
                &self.prefix_cache_hits_total,
            ),
            (
                "benchctl_sim_requests_total",
                "Generation requests accepted by the simulator.".to_owned(),
                &self.requests_total,
            ),
            (
                "benchctl_sim_tokens_generated_total",
                "Tokens generated by the simulator's scheduler.".to_owned(),
                &self.tokens_generated_total,
            ),
        ];
        for (name, help, value) in counters {
            e.single(name, "counter", &help, get(value));
        }
        e.out
    }
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
