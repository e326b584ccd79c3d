//! The common vocabulary of a server's state — [`Quantity`] — and, per [`ServerKind`], the metric
//! names each quantity comes from, looked up in each server's source (cited per table).
//!
//! A quantity's sources are alternatives in order of preference (a renamed metric keeps its old
//! name as a later alternative); the first alternative any of whose names a replica exposes is
//! used, and its names present are summed (each series, whatever its labels).

use serde::{Deserialize, Serialize};

/// Which server a `/metrics` page comes from, by its metric names' prefixes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    Vllm,
    Sglang,
    LlamaCpp,
    Tgi,
    /// No known prefix: the raw series are kept, no quantity is named.
    #[default]
    Unknown,
}

impl ServerKind {
    const KNOWN: [(ServerKind, &'static str); 4] = [
        (ServerKind::Vllm, "vllm:"),
        (ServerKind::Sglang, "sglang:"),
        (ServerKind::LlamaCpp, "llamacpp:"),
        (ServerKind::Tgi, "tgi_"),
    ];

    /// The kind most of the names belong to (a page also carries process and runtime series).
    pub fn detect<'a>(names: impl IntoIterator<Item = &'a str>) -> ServerKind {
        let mut counts = [0usize; 4];
        for name in names {
            if let Some(i) = Self::KNOWN.iter().position(|(_, p)| name.starts_with(p)) {
                counts[i] += 1;
            }
        }
        let (i, n) = (0..4)
            .map(|i| (i, counts[i]))
            .max_by_key(|&(i, n)| (n, 4 - i))
            .unwrap_or((0, 0));
        if n == 0 {
            ServerKind::Unknown
        } else {
            Self::KNOWN[i].0
        }
    }

    /// The name in results ("vllm", "sglang", "llamacpp", "tgi", "unknown").
    pub fn as_str(self) -> &'static str {
        match self {
            ServerKind::Vllm => "vllm",
            ServerKind::Sglang => "sglang",
            ServerKind::LlamaCpp => "llamacpp",
            ServerKind::Tgi => "tgi",
            ServerKind::Unknown => "unknown",
        }
    }

    fn table(self) -> Table {
        match self {
            ServerKind::Vllm => VLLM,
            ServerKind::Sglang => SGLANG,
            ServerKind::LlamaCpp => LLAMACPP,
            ServerKind::Tgi => TGI,
            ServerKind::Unknown => &[],
        }
    }
}

/// The common vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quantity {
    /// Requests in the running batch (gauge).
    Running,
    /// Requests queued, not yet scheduled (gauge).
    Waiting,
    /// KV-cache usage, a fraction 0..1 (gauge).
    KvCacheUsage,
    /// Sequences preempted (vLLM) or retracted (SGLang) (counter).
    Preemptions,
    /// Prompt tokens served from the prefix cache (counter).
    PrefixCacheHits,
    /// Prompt tokens looked up in the prefix cache (counter).
    PrefixCacheQueries,
    /// Prompt tokens (counter).
    PromptTokens,
    /// Generated tokens (counter).
    GenerationTokens,
    /// Finished requests (counter).
    Requests,
}

impl Quantity {
    pub const ALL: [Quantity; 9] = [
        Quantity::Running,
        Quantity::Waiting,
        Quantity::KvCacheUsage,
        Quantity::Preemptions,
        Quantity::PrefixCacheHits,
        Quantity::PrefixCacheQueries,
        Quantity::PromptTokens,
        Quantity::GenerationTokens,
        Quantity::Requests,
    ];

    /// The name in results and in `samples.csv`.
    pub fn name(self) -> &'static str {
        match self {
            Quantity::Running => "running",
            Quantity::Waiting => "waiting",
            Quantity::KvCacheUsage => "kv_cache_usage",
            Quantity::Preemptions => "preemptions",
            Quantity::PrefixCacheHits => "prefix_cache_hits",
            Quantity::PrefixCacheQueries => "prefix_cache_queries",
            Quantity::PromptTokens => "prompt_tokens",
            Quantity::GenerationTokens => "generation_tokens",
            Quantity::Requests => "requests",
        }
    }

    /// Differenced over a window (else a gauge, summarised by mean, max, p95).
    pub fn is_counter(self) -> bool {
        !matches!(
            self,
            Quantity::Running | Quantity::Waiting | Quantity::KvCacheUsage
        )
    }

    /// A gauge's replicas (and a replica's several series, e.g. one per engine) are averaged at
    /// one sample time, not summed: the KV-cache usage is a fraction.
    pub fn averaged(self) -> bool {
        self == Quantity::KvCacheUsage
    }

    /// The metric names of this quantity on `kind`: alternatives, in order of preference.
    pub fn sources(self, kind: ServerKind) -> &'static [&'static [&'static str]] {
        kind.table()
            .iter()
            .find(|(q, _)| *q == self)
            .map_or(&[], |(_, s)| *s)
    }

    /// The quantities a metric name feeds on `kind` (for `samples.csv`; llama.cpp's prompt
    /// counters feed two).
    pub fn of_metric(kind: ServerKind, name: &str) -> impl Iterator<Item = Quantity> {
        Quantity::ALL.into_iter().filter(move |q| {
            q.sources(kind)
                .iter()
                .any(|alternative| alternative.contains(&name))
        })
    }
}

type Table = &'static [(Quantity, &'static [&'static [&'static str]])];

use Quantity::*;

/// vLLM. V1: `vllm/v1/metrics/loggers.py`, `PrometheusStatLogger.__init__`; V0:
/// `vllm/engine/metrics.py`, `Metrics.__init__`. prometheus_client exports a counter `x` as
/// `x_total`; `vllm:request_success_total` carries a `finished_reason` label (summed).
/// `gpu_cache_usage_perc` is V0's name and V1's deprecated alias (a fraction despite "perc");
/// `gpu_prefix_cache_*` are V1's deprecated names (tokens).
const VLLM: Table = &[
    (Running, &[&["vllm:num_requests_running"]]),
    (Waiting, &[&["vllm:num_requests_waiting"]]),
    (
        KvCacheUsage,
        &[
            &["vllm:kv_cache_usage_perc"],
            &["vllm:gpu_cache_usage_perc"],
        ],
    ),
    (Preemptions, &[&["vllm:num_preemptions_total"]]),
    (
        PrefixCacheHits,
        &[
            &["vllm:prefix_cache_hits_total"],
            &["vllm:gpu_prefix_cache_hits_total"],
        ],
    ),
    (
        PrefixCacheQueries,
        &[
            &["vllm:prefix_cache_queries_total"],
            &["vllm:gpu_prefix_cache_queries_total"],
        ],
    ),
    (PromptTokens, &[&["vllm:prompt_tokens_total"]]),
    (GenerationTokens, &[&["vllm:generation_tokens_total"]]),
    (Requests, &[&["vllm:request_success_total"]]),
];

/// SGLang: `python/sglang/srt/metrics/collector.py`. Gauges and retractions:
/// `SchedulerMetricsCollector.__init__` (`token_usage` is the KV pool's used fraction); token and
/// request counters: `TokenizerMetricsCollector.__init__`, counted per finished request in
/// `observe_one_finished_request` (so they move when a request ends; `prompt_tokens` includes the
/// cached ones, `cached_tokens` are the prefix-cache hits).
const SGLANG: Table = &[
    (Running, &[&["sglang:num_running_reqs"]]),
    (Waiting, &[&["sglang:num_queue_reqs"]]),
    (KvCacheUsage, &[&["sglang:token_usage"]]),
    (Preemptions, &[&["sglang:num_retracted_requests_total"]]),
    (PrefixCacheHits, &[&["sglang:cached_tokens_total"]]),
    (PrefixCacheQueries, &[&["sglang:prompt_tokens_total"]]),
    (PromptTokens, &[&["sglang:prompt_tokens_total"]]),
    (GenerationTokens, &[&["sglang:generation_tokens_total"]]),
    (Requests, &[&["sglang:num_requests_total"]]),
];

/// llama.cpp's `llama-server` (the kit's source): `tools/server/server-task.cpp`,
/// `server_task_result_metrics::to_metrics()`, over `server_metrics` in
/// `tools/server/server-common.h`. `prompt_tokens_total` excludes the tokens reused from the
/// cache, counted in `prompt_tokens_cached_total`: the prompt tokens are their sum. No request
/// counter and no preemption counter; `kv_cache_usage_ratio` only in older builds (the kit's has
/// none). Values are C++ `double`s streamed with the default precision: from 10^6 on a counter
/// reads with 6 significant digits (`1.23457e+06`), so its deltas are exact only to ±5·10^-6 of it.
const LLAMACPP: Table = &[
    (Running, &[&["llamacpp:requests_processing"]]),
    (Waiting, &[&["llamacpp:requests_deferred"]]),
    (KvCacheUsage, &[&["llamacpp:kv_cache_usage_ratio"]]),
    (PrefixCacheHits, &[&["llamacpp:prompt_tokens_cached_total"]]),
    (
        PrefixCacheQueries,
        &[&[
            "llamacpp:prompt_tokens_total",
            "llamacpp:prompt_tokens_cached_total",
        ]],
    ),
    (
        PromptTokens,
        &[&[
            "llamacpp:prompt_tokens_total",
            "llamacpp:prompt_tokens_cached_total",
        ]],
    ),
    (GenerationTokens, &[&["llamacpp:tokens_predicted_total"]]),
];

/// TGI (metrics-exporter-prometheus: counters without `_total`): `tgi_batch_current_size` in
/// `backends/v3/src/backend.rs`, `batching_task`; `tgi_queue_size` in `backends/v3/src/queue.rs`,
/// `queue_task`; `tgi_request_input_length` (a histogram of each validated request's input length;
/// its `_sum` is the prompt tokens) in `router/src/validation.rs`, `Validation::validate_input`;
/// `tgi_request_success` and `tgi_request_generated_tokens` (histogram, `_sum`) in
/// `router/src/server.rs`, `generate_internal` / `generate_stream_internal`. No KV-cache,
/// preemption or prefix-cache metric.
const TGI: Table = &[
    (Running, &[&["tgi_batch_current_size"]]),
    (Waiting, &[&["tgi_queue_size"]]),
    (PromptTokens, &[&["tgi_request_input_length_sum"]]),
    (GenerationTokens, &[&["tgi_request_generated_tokens_sum"]]),
    (Requests, &[&["tgi_request_success"]]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_serialize_lowercase_and_detect_by_majority() {
        assert_eq!(
            serde_json::to_string(&ServerKind::LlamaCpp).unwrap(),
            "\"llamacpp\""
        );
        let kind: ServerKind = serde_json::from_str("\"tgi\"").unwrap();
        assert_eq!(kind, ServerKind::Tgi);
        let sim = [
            "vllm:num_requests_running",
            "vllm:kv_cache_usage_perc",
            "benchctl_sim_requests_total",
        ];
        assert_eq!(ServerKind::detect(sim), ServerKind::Vllm);
        assert_eq!(
            ServerKind::detect(["llamacpp:n_decode_total", "process_cpu_seconds_total"]),
            ServerKind::LlamaCpp
        );
        assert_eq!(ServerKind::detect(["foo_total"]), ServerKind::Unknown);
    }

    #[test]
    fn every_counter_quantity_is_named_by_a_counter_and_every_gauge_by_a_gauge() {
        for kind in [
            ServerKind::Vllm,
            ServerKind::Sglang,
            ServerKind::LlamaCpp,
            ServerKind::Tgi,
        ] {
            for q in Quantity::ALL {
                for name in q.sources(kind).iter().flat_map(|a| a.iter()) {
                    let counter_name = ["_total", "_sum"].iter().any(|s| name.ends_with(s))
                        || *name == "tgi_request_success";
                    assert_eq!(counter_name, q.is_counter(), "{kind:?} {q:?} {name}");
                }
            }
        }
        assert!(Quantity::Requests.sources(ServerKind::LlamaCpp).is_empty());
        let of = |kind, name| Quantity::of_metric(kind, name).collect::<Vec<_>>();
        assert_eq!(
            of(ServerKind::LlamaCpp, "llamacpp:prompt_tokens_cached_total"),
            [
                Quantity::PrefixCacheHits,
                Quantity::PrefixCacheQueries,
                Quantity::PromptTokens
            ]
        );
        assert_eq!(
            of(ServerKind::Vllm, "vllm:gpu_cache_usage_perc"),
            [Quantity::KvCacheUsage]
        );
        assert!(of(ServerKind::Unknown, "x").is_empty());
    }
}
