//! The flags `benchctl bench` and `benchctl sweep` share: the server, the requests' form, the
//! tokenizer, GPU telemetry and output. They stop here: [`CommonArgs::target`] turns them into
//! the plain [`Target`] the rest of the crate (and a submitted sweep) uses.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use loadgen::Backend;

use crate::local::{GpuSelection, TelemetrySpec};
use crate::metrics_source::MetricsSource;
use crate::target::Target;

/// The server, the requests' form, the tokenizer, GPU telemetry and output. (`Debug` is written
/// by hand below: it must not show the API key.)
#[derive(Clone, Args)]
pub struct CommonArgs {
    /// Server base URL (loopback or your own servers only). Several replicas, comma-separated:
    /// requests are spread round-robin over them; the first answers the model and tokenizer
    /// questions.
    #[arg(
        long,
        env = "BENCHCTL_BASE_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    pub base_url: String,
    /// Start an in-process `benchctl sim` (a SIMULATED server, default settings) on a free
    /// loopback port and benchmark it: a demo and self-test, never a real model's numbers.
    #[arg(long, env = "BENCHCTL_SIM", conflicts_with = "base_url")]
    pub sim: bool,
    /// API path; `…/chat/completions` switches to the chat format.
    #[arg(long, env = "BENCHCTL_ENDPOINT", default_value = "/v1/completions")]
    pub endpoint: String,
    /// Server family: decides which fields beyond the OpenAI standard are sent (`ignore_eos`
    /// only to vllm and sglang; strict servers answer 422 to unknown fields).
    #[arg(long, env = "BENCHCTL_BACKEND", value_enum, default_value = "vllm")]
    pub backend: Backend,
    /// Model directory: its tokenizer.json counts tokens; also the default model name.
    #[arg(long, env = "BENCHCTL_MODEL_PATH")]
    pub model_path: Option<PathBuf>,
    /// The `model` field sent (vLLM's --served-model-name). Default: the server's first model
    /// in /v1/models, else --model-path.
    #[arg(long, env = "BENCHCTL_MODEL_NAME")]
    pub model_name: Option<String>,
    /// A tokenizer.json file or a directory holding one (overrides --model-path's). Without
    /// either, the server's /tokenize endpoint is used.
    #[arg(long, env = "BENCHCTL_TOKENIZER")]
    pub tokenizer: Option<PathBuf>,
    /// Random lengths uniform in [len·(1−r), len·(1+r)].
    #[arg(long, env = "BENCHCTL_RANDOM_RANGE_RATIO", default_value_t = 0.0)]
    pub random_range_ratio: f64,
    /// Tokens of a prefix shared by all random prompts (added to --input-len); default 0.
    #[arg(long, env = "BENCHCTL_PREFIX_LEN")]
    pub prefix_len: Option<u32>,
    /// Distinct shared prefixes of --prefix-len tokens (system prompts); each request draws
    /// one with the seed, so the cache hits a prefix-caching server should report are known;
    /// default 1.
    #[arg(long, env = "BENCHCTL_PREFIX_GROUPS")]
    pub prefix_groups: Option<u32>,
    /// Empty the server's prefix cache before each test (vLLM `POST /reset_prefix_cache`,
    /// SGLang `POST /flush_cache`, llama.cpp `POST /slots/N?action=erase` with its
    /// --slot-save-path); says so when none of them works.
    #[arg(long, env = "BENCHCTL_RESET_PREFIX_CACHE")]
    pub reset_prefix_cache: bool,
    /// Limit for one request, send to end of stream (e.g. 10m, 90s). A server that accepts a
    /// request and never answers costs each request this long, unless --stall-timeout is set.
    #[arg(long, env = "BENCHCTL_TIMEOUT", default_value = "10m", value_parser = cluster::duration::parse)]
    pub timeout: Duration,
    /// Fail a request that receives nothing for this long, counted as `stall` [default: off:
    /// only --timeout ends a silent request].
    #[arg(long, env = "BENCHCTL_STALL_TIMEOUT", value_parser = cluster::duration::parse)]
    pub stall_timeout: Option<Duration>,
    /// Ask the server to ignore EOS so outputs have exactly --output-len tokens (sent only
    /// with --backend vllm or sglang).
    #[arg(long, env = "BENCHCTL_IGNORE_EOS", default_value_t = true, action = clap::ArgAction::Set)]
    pub ignore_eos: bool,
    /// Sampling temperature sent.
    #[arg(long, env = "BENCHCTL_TEMPERATURE", default_value_t = 0.0)]
    pub temperature: f64,
    /// A JSON object merged into every request body, e.g. '{"top_k": 5}'.
    #[arg(long, env = "BENCHCTL_EXTRA_BODY", value_parser = parse_extra_body)]
    pub extra_body: Option<serde_json::Map<String, serde_json::Value>>,
    /// Bearer token for the server; never printed or logged.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Percentiles reported for every latency metric.
    #[arg(long, env = "BENCHCTL_PERCENTILES", default_value = "50,90,95,99")]
    pub percentiles: String,
    /// Seed for prompts and arrival times.
    #[arg(long, env = "BENCHCTL_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Memory for the records a test keeps (every chunk's stamp, the generated text): past
    /// it, finished records spill to an unlinked file in the result directory (else $TMPDIR),
    /// removed at the end, and are read back for the metrics, which stay exact. Sizes like
    /// 512MiB or 2GB, at least 1MiB; `off`: no limit.
    #[arg(long, env = "BENCHCTL_MAX_MEMORY", default_value = "4GiB", value_parser = parse_max_memory)]
    pub max_memory: MaxMemory,
    /// Skip the single request sent before the run to catch a rejected payload.
    #[arg(long, env = "BENCHCTL_NO_PREFLIGHT")]
    pub no_preflight: bool,
    /// Limit for that preflight request (held under --timeout). Questions asked before it
    /// (GET /v1/models, the server's /tokenize) are limited to 30s each.
    #[arg(long, env = "BENCHCTL_PREFLIGHT_TIMEOUT", default_value = "60s", value_parser = cluster::duration::parse)]
    pub preflight_timeout: Duration,
    /// Record the first N GPUs of this machine during the run (NVML, through an in-process
    /// agent and controller) and add their statistics to the result, with the original scripts' raw.log
    /// and result.log.
    #[arg(long, env = "BENCHCTL_GPU_NUM", value_parser = clap::value_parser!(u32).range(1..))]
    pub gpu_num: Option<u32>,
    /// Record these GPUs (NVML indices, comma-separated) instead of the first N.
    #[arg(
        long,
        env = "BENCHCTL_GPUS",
        value_delimiter = ',',
        conflicts_with = "gpu_num"
    )]
    pub gpus: Option<Vec<u32>>,
    /// Where GPU samples come from: nvml, or simulated (made-up values for demos and tests,
    /// labelled simulated in every output).
    #[arg(
        long,
        env = "BENCHCTL_TELEMETRY_SOURCE",
        value_enum,
        default_value = "nvml"
    )]
    pub telemetry_source: agent::SourceKind,
    /// GPU sampling interval.
    #[arg(long, env = "BENCHCTL_TELEMETRY_INTERVAL", default_value = "500ms", value_parser = cluster::duration::parse)]
    pub telemetry_interval: Duration,
    /// No progress bar. What benchctl waits for, when nothing happens for a while, is still said
    /// on stderr (first after 5s instead of 3s, then after 30s instead of 5s).
    #[arg(long, env = "BENCHCTL_QUIET")]
    pub quiet: bool,
    /// Read the server's Prometheus metrics during each test (queue, KV cache, preemptions,
    /// prefix-cache hits, token counters): no value for the target's /metrics (each replica's),
    /// URLs (comma-separated, one per replica), "auto" (the target's /metrics if it answers;
    /// the default of `benchctl sweep`) or "off" (the default of `benchctl bench`).
    #[arg(long, env = "BENCHCTL_SERVER_METRICS", num_args = 0..=1, default_missing_value = "target", value_parser = MetricsSource::parse)]
    pub server_metrics: Option<MetricsSource>,
    /// Time between two scrapes of --server-metrics (plus one just before and one just after
    /// each test's measured run).
    #[arg(long, env = "BENCHCTL_SERVER_METRICS_INTERVAL", value_parser = cluster::duration::parse)]
    pub server_metrics_interval: Option<Duration>,
    /// Spread each test over this many load workers (its concurrency and prompts divided
    /// deterministically, each with its own seed) [default: every connected worker]. In local
    /// mode, starts this many in-process workers.
    #[arg(long, env = "BENCHCTL_WORKERS", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub workers: Option<u32>,
}

impl CommonArgs {
    /// The server and the requests' form.
    pub fn target(&self) -> Target {
        Target {
            base_url: self.base_url.clone(),
            endpoint: self.endpoint.clone(),
            backend: self.backend,
            model_path: self.model_path.clone(),
            model_name: self.model_name.clone(),
            tokenizer: self.tokenizer.clone(),
            timeout: self.timeout,
            stall_timeout: self.stall_timeout,
            preflight_timeout: Some(self.preflight_timeout),
            ignore_eos: self.ignore_eos,
            temperature: self.temperature,
            extra_body: self.extra_body.clone(),
            api_key: self.api_key.clone(),
        }
    }

    /// The GPUs asked for (`--gpu-num N` or `--gpus LIST`), if any.
    pub fn gpus(&self) -> Option<GpuSelection> {
        match (&self.gpu_num, &self.gpus) {
            (Some(n), _) => Some(GpuSelection::First(*n as usize)),
            (None, Some(v)) => Some(GpuSelection::Indices(v.clone())),
            (None, None) => None,
        }
    }

    /// How many GPUs were asked for (the sweep's default tensor parallelism).
    pub fn gpu_count(&self) -> Option<u32> {
        match (&self.gpu_num, &self.gpus) {
            (Some(n), _) => Some(*n),
            (None, Some(v)) => Some(v.len() as u32),
            (None, None) => None,
        }
    }

    /// The telemetry of these GPUs, from `--telemetry-source` every `--telemetry-interval`.
    pub fn telemetry(&self, gpus: GpuSelection) -> TelemetrySpec {
        TelemetrySpec {
            gpus,
            source: self.telemetry_source,
            interval: self.telemetry_interval,
        }
    }
}

impl std::fmt::Debug for CommonArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommonArgs")
            .field("target", &self.target())
            .field("gpu_num", &self.gpu_num)
            .field("gpus", &self.gpus)
            .finish_non_exhaustive()
    }
}

/// `--max-memory`: a byte budget, or none (`off`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxMemory(pub Option<u64>);

/// The smallest `--max-memory`: below it nearly every record would go to disk.
const MIN_MAX_MEMORY: u64 = 1 << 20;

fn parse_max_memory(s: &str) -> Result<MaxMemory, String> {
    if matches!(s.trim().to_ascii_lowercase().as_str(), "off" | "none") {
        return Ok(MaxMemory(None));
    }
    let b = loadgen::store::parse_size(s).map_err(|e| format!("--max-memory: {e}"))?;
    if b < MIN_MAX_MEMORY {
        return Err(format!(
            "--max-memory: {s:?} is below the least budget, 1MiB (or `off` for no limit)"
        ));
    }
    Ok(MaxMemory(Some(b)))
}

impl CommonArgs {
    /// The records' budget, their spill file in `dir` (the result file's directory; none:
    /// `$TMPDIR`).
    pub fn memory(&self, dir: Option<&std::path::Path>) -> loadgen::MemoryBudget {
        loadgen::MemoryBudget {
            max_bytes: self.max_memory.0,
            spill_dir: match dir {
                // `--save-result r.json`: the current directory
                Some(d) if d.as_os_str().is_empty() => ".".into(),
                Some(d) => d.to_path_buf(),
                None => std::env::temp_dir(),
            },
        }
    }
}

fn parse_extra_body(s: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(format!("{s:?} is not a JSON object")),
        Err(e) => Err(format!("{s:?} is not JSON: {e}")),
    }
}
