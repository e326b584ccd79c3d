//! The command line: `benchctl bench`, `benchctl sim`. Every flag can also be set through a
//! `BENCHCTL_…` environment variable; flags win.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use loadgen::Backend;

/// benchctl: latency and throughput of OpenAI-compatible LLM inference servers (vLLM, SGLang, …),
/// measured exactly, from one machine or many.
#[derive(Debug, Parser)]
#[command(name = "benchctl", version, max_term_width = 110)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Benchmark one configuration (concurrency, input/output length) against a running server.
    Bench(Box<BenchArgs>),
    /// Sweep a grid of input/output lengths × concurrencies, find the largest concurrency that
    /// meets --threshold per combination, record the GPUs (the seed's vllm_bench_with_gpu.sh).
    Sweep(Box<SweepCmd>),
    /// The sweeps a controller runs or ran (distributed mode).
    Sweeps(crate::sweep::remote_cli::SweepsArgs),
    /// Serve the live dashboard of a result file (the seed's realtime page) or of every sweep in
    /// a directory.
    Dashboard(crate::dashboard::cmd::DashboardArgs),
    /// Write a sweep's report: one self-contained HTML file (opens offline) and SVG charts.
    Report(crate::dashboard::cmd::ReportArgs),
    /// Run a SIMULATED OpenAI-compatible server (continuous-batching latency model, no GPU,
    /// no model): a test instrument and demo target, never a stand-in for real numbers.
    Sim(Box<sim::SimConfig>),
    /// Run the controller service: agents (GPU telemetry) and load workers connect to it.
    Controller(Box<crate::agents_cmd::ControllerArgs>),
    /// List the agents connected to a controller, their GPUs and last samples.
    Agents(crate::agents_cmd::AgentsArgs),
}

/// `benchctl sweep [attach|cancel]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepCmd {
    #[command(subcommand)]
    pub action: Option<SweepAction>,
    #[command(flatten)]
    pub args: crate::sweep::SweepArgs,
}

#[derive(Debug, Subcommand)]
pub enum SweepAction {
    /// Follow a sweep the controller runs: its progress, then its summary (Ctrl-C detaches).
    Attach(crate::sweep::remote_cli::AttachArgs),
    /// Stop a sweep the controller runs or has queued (finished tests are kept).
    Cancel(crate::sweep::remote_cli::AttachArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DatasetKind {
    /// Random token ids decoded to text of an exact token length (`--input-len`).
    Random,
    /// ShareGPT JSON (`--dataset-path`).
    Sharegpt,
    /// JSONL, one `{"prompt": …, "output_len": …}` a line (`--dataset-path`).
    Jsonl,
}

/// The server, the requests' form, the tokenizer, GPU telemetry and output: the flags `benchctl
/// bench` and `benchctl sweep` share. (`Debug` is written by hand below: it must not show the API
/// key.) Serialized into a sweep submitted to a controller, without the API key.
#[derive(Clone, Args, serde::Serialize, serde::Deserialize)]
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
    /// Tokens of a prefix shared by all random prompts (added to --input-len).
    #[arg(long, env = "BENCHCTL_PREFIX_LEN", default_value_t = 0)]
    pub prefix_len: u32,
    /// Limit for one request, send to end of stream (e.g. 10m, 90s).
    #[arg(long, env = "BENCHCTL_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Fail a request that receives nothing for this long (off by default).
    #[arg(long, env = "BENCHCTL_STALL_TIMEOUT", value_parser = humantime::parse_duration)]
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
    #[serde(skip)]
    pub api_key: Option<String>,
    /// Percentiles reported for every latency metric.
    #[arg(long, env = "BENCHCTL_PERCENTILES", default_value = "50,90,95,99")]
    pub percentiles: String,
    /// Seed for prompts and arrival times.
    #[arg(long, env = "BENCHCTL_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Skip the single request sent before the run to catch a rejected payload.
    #[arg(long, env = "BENCHCTL_NO_PREFLIGHT")]
    pub no_preflight: bool,
    /// Record the first N GPUs of this machine during the run (NVML, through an in-process
    /// agent and controller) and add their statistics to the result, with the seed's raw.log
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
    #[serde(skip, default = "nvml_source")]
    pub telemetry_source: agent::SourceKind,
    /// GPU sampling interval.
    #[arg(long, env = "BENCHCTL_TELEMETRY_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub telemetry_interval: Duration,
    /// No progress bar.
    #[arg(long, env = "BENCHCTL_QUIET")]
    #[serde(skip)]
    pub quiet: bool,
    /// Spread each test over this many load workers (its concurrency and prompts divided
    /// deterministically, each with its own seed) [default: every connected worker]. In local
    /// mode, starts this many in-process workers.
    #[arg(long, env = "BENCHCTL_WORKERS", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub workers: Option<u32>,
}

fn nvml_source() -> agent::SourceKind {
    agent::SourceKind::Nvml
}

/// `benchctl bench`: flags follow `vllm bench serve` and the seed's `vllm_bench.sh`.
#[derive(Clone, Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where prompts come from.
    #[arg(long, env = "BENCHCTL_DATASET", value_enum, default_value = "random")]
    pub dataset: DatasetKind,
    /// The ShareGPT or JSONL file.
    #[arg(long, env = "BENCHCTL_DATASET_PATH", required_if_eq_any = [("dataset", "sharegpt"), ("dataset", "jsonl")])]
    pub dataset_path: Option<PathBuf>,
    /// Prompt tokens of random prompts (exact, by the model's tokenizer).
    #[arg(long, env = "BENCHCTL_INPUT_LEN", default_value_t = 1024)]
    pub input_len: u32,
    /// Output tokens asked for (`max_tokens`); for ShareGPT, overrides the reply's length.
    #[arg(long, env = "BENCHCTL_OUTPUT_LEN")]
    pub output_len: Option<u32>,
    /// Requests in the measured run.
    #[arg(long, env = "BENCHCTL_NUM_PROMPTS", default_value_t = 1000)]
    pub num_prompts: usize,
    /// At most this many requests in flight (closed loop). Combinable with --request-rate.
    #[arg(long, env = "BENCHCTL_MAX_CONCURRENCY")]
    pub max_concurrency: Option<usize>,
    /// Open-loop arrivals per second ("inf": all at once, only --max-concurrency paces).
    #[arg(long, env = "BENCHCTL_REQUEST_RATE", default_value = "inf", value_parser = parse_rate)]
    pub request_rate: f64,
    /// Gamma shape of open-loop gaps: 1 = Poisson, < 1 burstier, > 1 more regular.
    #[arg(long, env = "BENCHCTL_BURSTINESS", default_value_t = 1.0)]
    pub burstiness: f64,
    /// Requests sent (closed loop) before the measured run, not counted.
    #[arg(long, env = "BENCHCTL_WARMUP_REQUESTS", default_value_t = 0)]
    pub warmup_requests: usize,
    /// Goodput bounds in ms, e.g. "ttft:400 tpot:50" (keys ttft, tpot, e2el).
    #[arg(long, env = "BENCHCTL_GOODPUT", num_args = 1.., value_delimiter = ' ')]
    pub goodput: Vec<String>,
    /// Write the vLLM-compatible result JSON here, and the per-request records beside it
    /// (`NAME.requests.jsonl`).
    #[arg(long, env = "BENCHCTL_SAVE_RESULT")]
    pub save_result: Option<PathBuf>,
    /// Also put per-request lists (input_lens, ttfts, itls, generated_texts…) in the JSON, and
    /// the generated text in the JSONL, as vLLM's --save-detailed.
    #[arg(long, env = "BENCHCTL_SAVE_DETAILED")]
    pub save_detailed: bool,
}

impl CommonArgs {
    /// `--base-url` split into its replicas, without trailing slashes.
    pub fn base_urls(&self) -> Vec<String> {
        self.base_url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_end_matches('/').to_string())
            .collect()
    }
}

impl std::fmt::Debug for CommonArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommonArgs")
            .field("base_url", &self.base_url)
            .field("endpoint", &self.endpoint)
            .field("backend", &self.backend)
            .field("model_path", &self.model_path)
            .field("model_name", &self.model_name)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("tokenizer", &self.tokenizer)
            .field("gpu_num", &self.gpu_num)
            .field("gpus", &self.gpus)
            .finish_non_exhaustive()
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = if s.eq_ignore_ascii_case("inf") {
        f64::INFINITY
    } else {
        s.parse()
            .map_err(|_| format!("{s:?} is not a number or \"inf\""))?
    };
    if v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{s} is not a positive rate"))
    }
}

fn parse_extra_body(s: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(format!("{s:?} is not a JSON object")),
        Err(e) => Err(format!("{s:?} is not JSON: {e}")),
    }
}

/// Logs to stderr. `benchctl bench` runs the controller, a worker and an agent in-process: their
/// routine INFO lines (registrations, job start/end) are shown only with `-v`; so are etcd's
/// (the leader followed) for the client commands.
pub fn init_tracing(cli: &Cli) {
    let local = matches!(
        cli.command,
        Command::Bench(_) | Command::Sweep(_) | Command::Sweeps(_)
    );
    let default = match (cli.verbose, local) {
        (0, true) => "info,controller::service=warn,loadgen::worker=warn,agent=warn,cluster=warn",
        (0, false) => "info",
        (1, _) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Runs a parsed command line; the exit code says whether the run succeeded.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Bench(args) => crate::bench::run(*args).await,
        Command::Sweep(cmd) => match cmd.action {
            Some(SweepAction::Attach(a)) => crate::sweep::remote_cli::attach(a).await,
            Some(SweepAction::Cancel(a)) => crate::sweep::remote_cli::cancel(a).await,
            None if cmd.args.remote.enabled() => crate::sweep::remote_cli::submit(cmd.args).await,
            None => crate::sweep::run::run(cmd.args).await,
        },
        Command::Sweeps(a) => crate::sweep::remote_cli::list(a).await,
        Command::Dashboard(a) => {
            crate::dashboard::cmd::dashboard(a).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(a) => {
            crate::dashboard::cmd::report(a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim(cfg) => {
            sim::run(*cfg).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Controller(a) => {
            crate::agents_cmd::serve(*a).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agents(a) => {
            crate::agents_cmd::list(a).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_a_benchctl_environment_variable() {
        use clap::CommandFactory;
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version", "verbose"].contains(&id) || arg.is_positional() {
                    continue;
                }
                let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
                let ok = env
                    .as_deref()
                    .is_some_and(|e| e.starts_with("BENCHCTL_") || e == "OPENAI_API_KEY");
                assert!(
                    ok,
                    "benchctl {} --{id} has no BENCHCTL_ variable ({env:?})",
                    sub.get_name()
                );
            }
        }
    }

    #[test]
    fn the_api_key_is_never_shown() {
        let cli =
            Cli::try_parse_from(["benchctl", "bench", "--api-key", "sk-very-secret"]).unwrap();
        let Command::Bench(b) = cli.command else {
            unreachable!()
        };
        assert!(!format!("{b:?}").contains("sk-very-secret"));
        use clap::CommandFactory;
        let help = Cli::command()
            .find_subcommand_mut("bench")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            help.contains("OPENAI_API_KEY"),
            "the variable is named, its value hidden (hide_env_values)"
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = Cli::try_parse_from(["benchctl", "bench", "--request-rate", "fast"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--request-rate") && e.contains("fast"), "{e}");
        let e = Cli::try_parse_from(["benchctl", "bench", "--extra-body", "[1]"])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--extra-body") && e.contains("not a JSON object"),
            "{e}"
        );
        let e = Cli::try_parse_from(["benchctl", "bench", "--dataset", "jsonl"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--dataset-path"), "{e}");
        let e = Cli::try_parse_from(["benchctl", "bench", "--timeout", "soon"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--timeout"), "{e}");
    }
}
