//! `benchctl sim`: a **SIMULATED** OpenAI-compatible LLM inference server.
//!
//! It is a test instrument and a demo target, not a model, and what is measured
//! against it is never a real number: the "generated" text is random tokens of
//! an embedded 4096-token byte-level BPE tokenizer, and its timing comes from a
//! simple continuous-batching model (below). It speaks vLLM's wire format (SSE
//! streaming of `/v1/completions` and `/v1/chat/completions`, `/tokenize`,
//! `/metrics` with vLLM's metric names) and can inject faults deterministically.
//!
//! The controller serves it as `benchctl sim` and starts it in-process for
//! `--sim` ([`start_announced`]); the end-to-end tests drive the client against it.
//!
//! # Timing model
//!
//! One scheduler task runs engine steps. A step lasts
//! `decode_step_base_ms + decode_step_per_seq_us × running + prefill_us_per_token × (prompt tokens admitted in this step)`;
//! at its end every running sequence gets one token. Requests are admitted
//! FIFO while `running < max_batch` and the KV reservations
//! (`prompt + max_tokens` each) fit in `kv_cache_tokens`. With identical
//! requests of `P` prompt and `M` output tokens, at most
//! `K = min(max_batch, floor(kv_cache_tokens / (P + M)))` run concurrently;
//! beyond `K` requests queue and TTFT jumps. Two options, off by default:
//! `--preempt` reserves KV as sequences grow and preempts (vLLM's recompute)
//! when it runs out; `--prefix-cache-tokens` caches 16-token prompt blocks
//! whose prefill then costs nothing (see `engine.rs`); each usage then carries
//! `prompt_tokens_details.cached_tokens` (the request's hits, summing to
//! `vllm:prefix_cache_hits_total`), and `POST /reset_prefix_cache` empties the cache.
//!
//! # Metrics
//!
//! `/metrics` exposes exact counts under vLLM's names (`vllm:num_requests_running`,
//! `vllm:num_requests_waiting`, `vllm:kv_cache_usage_perc`, `vllm:prompt_tokens_total`,
//! `vllm:generation_tokens_total`, `vllm:request_success_total{finished_reason}`,
//! `vllm:num_preemptions_total`, `vllm:prefix_cache_queries_total`,
//! `vllm:prefix_cache_hits_total`) and `benchctl_sim_*` counters; `metrics.rs`
//! says what each counts.
//!
//! # Token counts
//!
//! * Completions: `prompt_tokens = len(tokenizer.encode(prompt, add_special_tokens=false))`
//!   (a list of token ids counts its length).
//! * Chat: the messages are rendered with the ChatML template
//!   `<|im_start|>{role}\n{content}<|im_end|>\n` per message followed by
//!   `<|im_start|>assistant\n`, and `prompt_tokens` is the length of
//!   `tokenizer.encode(rendered, add_special_tokens=false)`, in which
//!   `<|im_start|>` and `<|im_end|>` are recognised as single special tokens.
//!   Content given as a list of parts uses the concatenation of the `text` parts.
//! * Output: always exactly `max_tokens` (or `max_completion_tokens`, default
//!   `--default-max-tokens`) tokens. The simulator never stops early, whether
//!   or not `ignore_eos` is set; `finish_reason` is always `"length"`.

mod api;
mod channels;
mod emission;
mod engine;
mod faults;
mod json;
mod metrics;
mod prefix_cache;
mod stream;
#[cfg(test)]
mod tests;
mod usage;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::faults::FaultRates;

/// The embedded tokenizer (HF `tokenizer.json`): a byte-level BPE of 4096
/// tokens; `<|endoftext|>` = 0, `<|im_start|>` = 1, `<|im_end|>` = 2.
pub const TOKENIZER_JSON: &str = include_str!("tokenizer.json");

/// The embedded tokenizer, parsed once.
pub fn tokenizer() -> &'static tokenizers::Tokenizer {
    static TOK: OnceLock<tokenizers::Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        TOKENIZER_JSON
            .parse()
            .expect("embedded benchctl sim tokenizer.json is valid")
    })
}

/// Configuration of `benchctl sim`, the simulated OpenAI-compatible server
/// (a test instrument: it serves random tokens with modelled timing, not a model).
#[derive(Clone, Debug, clap::Args)]
pub struct SimConfig {
    /// Address to listen on.
    #[arg(long, env = "BENCHCTL_SIM_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 = pick a free port).
    #[arg(long, env = "BENCHCTL_SIM_PORT", default_value_t = 8000)]
    pub port: u16,
    /// Model name served (and required in requests, if they name one).
    #[arg(long, env = "BENCHCTL_SIM_MODEL_NAME", default_value = "benchctl-sim")]
    pub model_name: String,
    /// Seed of the generated text and of the fault decisions (combined with each request's arrival index).
    #[arg(long, env = "BENCHCTL_SIM_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Simulated prefill cost per prompt token admitted in a step, in microseconds.
    #[arg(
        long,
        env = "BENCHCTL_SIM_PREFILL_US_PER_TOKEN",
        default_value_t = 20.0
    )]
    pub prefill_us_per_token: f64,
    /// Simulated decode step time with one running sequence, in milliseconds.
    #[arg(long, env = "BENCHCTL_SIM_DECODE_STEP_BASE_MS", default_value_t = 8.0)]
    pub decode_step_base_ms: f64,
    /// Extra step time per running sequence, in microseconds.
    #[arg(
        long,
        env = "BENCHCTL_SIM_DECODE_STEP_PER_SEQ_US",
        default_value_t = 150.0
    )]
    pub decode_step_per_seq_us: f64,
    /// Maximum number of running sequences (the batch size).
    #[arg(long, env = "BENCHCTL_SIM_MAX_BATCH", default_value_t = 256)]
    pub max_batch: usize,
    /// Simulated KV-cache capacity in tokens; a request reserves prompt + max_tokens at admission (unless --preempt) and requests that do not fit wait (FIFO).
    #[arg(long, env = "BENCHCTL_SIM_KV_CACHE_TOKENS", default_value_t = 262144)]
    pub kv_cache_tokens: usize,
    /// Reserve KV as sequences grow (prompt + generated tokens) instead of prompt + max_tokens at admission, and preempt the most recently admitted sequences when the next step's tokens do not fit (vLLM's recompute: back to the queue's front, prompt and generated tokens prefilled again).
    #[arg(long, env = "BENCHCTL_SIM_PREEMPT")]
    pub preempt: bool,
    /// Simulated prefix cache in tokens (0 = off): an LRU of 16-token blocks of prompt tokens; a cached block's prefill cost is skipped.
    #[arg(long, env = "BENCHCTL_SIM_PREFIX_CACHE_TOKENS", default_value_t = 0)]
    pub prefix_cache_tokens: usize,
    /// Maximum prompt + max_tokens of one request (longer requests get HTTP 400).
    #[arg(long, env = "BENCHCTL_SIM_MAX_MODEL_LEN", default_value_t = 32768)]
    pub max_model_len: usize,
    /// Output tokens of a request that sets no max_tokens.
    #[arg(long, env = "BENCHCTL_SIM_DEFAULT_MAX_TOKENS", default_value_t = 256)]
    pub default_max_tokens: usize,
    /// Chat streams: the first N generated tokens of each answer are reasoning, sent as `delta.reasoning_content` before the content (counted in `completion_tokens` and in `usage.completion_tokens_details.reasoning_tokens`), so TTFT and TTFO differ by N decode steps.
    #[arg(
        long,
        alias = "sim-reasoning-tokens",
        env = "BENCHCTL_SIM_REASONING_TOKENS",
        default_value_t = 0
    )]
    pub reasoning_tokens: usize,
    /// Chat streams: the tokens after the reasoning are one tool call's arguments (`delta.tool_calls`, finish_reason `tool_calls`) instead of content, so an answer has no visible output.
    #[arg(long, env = "BENCHCTL_SIM_TOOL_CALLS")]
    pub tool_calls: bool,
    /// Tokens per streamed content chunk (>1 exercises clients' per-token inter-token latency).
    #[arg(long, env = "BENCHCTL_SIM_TOKENS_PER_CHUNK", default_value_t = 1)]
    pub tokens_per_chunk: usize,
    /// Reject request fields outside the OpenAI standard set with HTTP 422, like `transformers serve`.
    #[arg(long, env = "BENCHCTL_SIM_STRICT")]
    pub strict: bool,
    /// End streams after the usage chunk without `data: [DONE]` (like `transformers serve`).
    #[arg(long, env = "BENCHCTL_SIM_NO_DONE")]
    pub no_done: bool,
    /// Fault injection: fraction of requests answered HTTP 500 with an OpenAI-style error.
    #[arg(long, env = "BENCHCTL_SIM_FAULT_ERROR_RATE", default_value_t = 0.0)]
    pub fault_error_rate: f64,
    /// Fault injection: fraction of streaming requests whose 2nd content event is invalid JSON (the stream then continues).
    #[arg(long, env = "BENCHCTL_SIM_FAULT_MALFORMED_RATE", default_value_t = 0.0)]
    pub fault_malformed_rate: f64,
    /// Fault injection: fraction of streaming requests whose connection is cut after half the tokens (unterminated chunked body).
    #[arg(long, env = "BENCHCTL_SIM_FAULT_TRUNCATE_RATE", default_value_t = 0.0)]
    pub fault_truncate_rate: f64,
    /// Fault injection: fraction of streaming requests that go silent forever after their first content chunk (the rates of the four faults are exclusive and must sum to ≤ 1).
    #[arg(long, env = "BENCHCTL_SIM_FAULT_STALL_RATE", default_value_t = 0.0)]
    pub fault_stall_rate: f64,
    /// Write a JSONL line per emitted SSE event (request_id, seq, kind, tokens, t_mono_ns = CLOCK_MONOTONIC at hand-off to the HTTP stack).
    #[arg(long, env = "BENCHCTL_SIM_EMISSION_LOG")]
    pub emission_log: Option<PathBuf>,
}

impl Default for SimConfig {
    /// The CLI defaults, except `port` = 0 (ephemeral), for tests.
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            model_name: "benchctl-sim".into(),
            seed: 0,
            prefill_us_per_token: 20.0,
            decode_step_base_ms: 8.0,
            decode_step_per_seq_us: 150.0,
            max_batch: 256,
            kv_cache_tokens: 262_144,
            preempt: false,
            prefix_cache_tokens: 0,
            max_model_len: 32_768,
            default_max_tokens: 256,
            reasoning_tokens: 0,
            tool_calls: false,
            tokens_per_chunk: 1,
            strict: false,
            no_done: false,
            fault_error_rate: 0.0,
            fault_malformed_rate: 0.0,
            fault_truncate_rate: 0.0,
            fault_stall_rate: 0.0,
            emission_log: None,
        }
    }
}

impl SimConfig {
    fn fault_rates(&self) -> FaultRates {
        FaultRates {
            error: self.fault_error_rate,
            malformed: self.fault_malformed_rate,
            truncate: self.fault_truncate_rate,
            stall: self.fault_stall_rate,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_batch >= 1, "--max-batch must be at least 1");
        anyhow::ensure!(
            self.tokens_per_chunk >= 1,
            "--tokens-per-chunk must be at least 1"
        );
        anyhow::ensure!(
            self.kv_cache_tokens >= 1,
            "--kv-cache-tokens must be at least 1"
        );
        let (cache, block) = (self.prefix_cache_tokens, prefix_cache::BLOCK_TOKENS);
        anyhow::ensure!(
            cache == 0 || cache >= block,
            "--prefix-cache-tokens must be 0 (off) or at least one block of {block} tokens, got {cache}"
        );
        anyhow::ensure!(
            self.default_max_tokens >= 1,
            "--default-max-tokens must be at least 1"
        );
        for (name, v) in [
            ("--prefill-us-per-token", self.prefill_us_per_token),
            ("--decode-step-base-ms", self.decode_step_base_ms),
            ("--decode-step-per-seq-us", self.decode_step_per_seq_us),
        ] {
            anyhow::ensure!(
                v.is_finite() && v >= 0.0,
                "{name} must be a finite number ≥ 0, got {v}"
            );
        }
        self.fault_rates().validate()
    }
}

/// A running simulator; stop it with [`SimServer::shutdown`].
#[derive(Debug)]
pub struct SimServer {
    /// The bound address (the real port when 0 was asked for).
    pub addr: SocketAddr,
    cancel: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
    engine: JoinHandle<()>,
    emission: Option<emission::EmissionWriter>,
}

impl SimServer {
    /// Binds `host:port` (port 0 = ephemeral), spawns the scheduler and the
    /// HTTP server on the current runtime, and returns at once.
    pub async fn start(cfg: SimConfig) -> anyhow::Result<SimServer> {
        cfg.validate()?;
        let _ = tokenizer();
        let _ = stream::vocab();
        let addr = tokio::net::lookup_host((cfg.host.as_str(), cfg.port))
            .await
            .with_context(|| format!("resolving {}:{}", cfg.host, cfg.port))?
            .next()
            .with_context(|| format!("{} resolves to no address", cfg.host))?;
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket
            .bind(addr)
            .with_context(|| format!("benchctl sim: binding {addr}"))?;
        // A deep accept backlog: benchmarks open thousands of connections at once.
        let listener = socket.listen(8192)?;
        let addr = listener.local_addr()?;

        let cancel = CancellationToken::new();
        let (emission_log, emission) = match &cfg.emission_log {
            Some(p) => {
                let (l, w) = emission::open(p)?;
                (Some(l), Some(w))
            }
            None => (None, None),
        };
        let metrics = Arc::new(metrics::Metrics::default());
        let (engine_handle, engine) = engine::spawn(
            engine::EngineParams {
                prefill_us_per_token: cfg.prefill_us_per_token,
                decode_step_base_ms: cfg.decode_step_base_ms,
                decode_step_per_seq_us: cfg.decode_step_per_seq_us,
                max_batch: cfg.max_batch,
                kv_cache_tokens: cfg.kv_cache_tokens,
                tokens_per_chunk: cfg.tokens_per_chunk,
                preempt: cfg.preempt,
                prefix_cache_tokens: cfg.prefix_cache_tokens,
            },
            metrics.clone(),
            cancel.clone(),
        );
        let app = api::router(api::AppState::new(
            cfg,
            engine_handle,
            metrics,
            emission_log,
            cancel.clone(),
        ));
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(cancel.clone().cancelled_owned())
                .into_future(),
        );
        Ok(SimServer {
            addr,
            cancel,
            server,
            engine,
            emission,
        })
    }

    /// `http://HOST:PORT` of the bound address.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, ends the scheduler (open streams are aborted), and
    /// flushes the emission log.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        let _ = (&mut self.engine).await;
        match tokio::time::timeout(Duration::from_secs(5), &mut self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!("benchctl sim: server error: {e}"),
            Ok(Err(e)) => tracing::warn!("benchctl sim: server task: {e}"),
            Err(_) => {
                tracing::warn!("benchctl sim: connections still open after 5 s; aborting");
                self.server.abort();
            }
        }
        if let Some(w) = self.emission.take() {
            w.finish().await;
        }
        tracing::info!("benchctl sim (SIMULATOR) stopped");
    }
}

impl Drop for SimServer {
    /// A server dropped without [`SimServer::shutdown`] still stops (its
    /// tasks end on their own; the emission log is flushed when the last
    /// stream is gone).
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// `--sim`: starts a simulator with the defaults (an ephemeral loopback port) and says so on
/// stderr, so that no run against it passes for a real model's.
pub async fn start_announced() -> anyhow::Result<SimServer> {
    let sim = SimServer::start(SimConfig::default()).await?;
    eprintln!(
        "started benchctl sim (a SIMULATOR, not a model) at {}",
        sim.base_url()
    );
    Ok(sim)
}

/// `benchctl sim`: starts the simulator, logs where it listens, and runs
/// until ctrl-c or SIGTERM.
pub async fn run(cfg: SimConfig) -> anyhow::Result<()> {
    raise_nofile_limit();
    let model = cfg.model_name.clone();
    let server = SimServer::start(cfg).await?;
    tracing::info!(
        "benchctl sim (SIMULATOR) listening on {} (model {model:?}; simulated timing and random tokens, not a real model)",
        server.base_url()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    tracing::info!("benchctl sim: shutting down");
    server.shutdown().await;
    Ok(())
}

/// Raises the soft open-files limit to the hard limit (10,000 streams need
/// 10,000 sockets; the usual soft default is 1024).
fn raise_nofile_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        let new = rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, new) {
            tracing::warn!("benchctl sim: could not raise the open-files limit: {e}");
        }
    }
}
