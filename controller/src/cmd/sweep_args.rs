//! `benchctl sweep`'s flags (in one process, or submitted to a controller), `benchctl sweep
//! attach|cancel ID` and `benchctl sweeps`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::common::CommonArgs;
use crate::sweep::axis::Axis;
use crate::sweep::search::Mode;

/// `benchctl sweep [attach|cancel]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepCmd {
    #[command(subcommand)]
    pub action: Option<SweepAction>,
    #[command(flatten)]
    pub args: SweepArgs,
}

#[derive(Debug, Subcommand)]
pub enum SweepAction {
    /// Follow a sweep the controller runs: its progress, then its summary (Ctrl-C detaches).
    Attach(AttachArgs),
    /// Stop a sweep the controller runs or has queued (finished tests are kept).
    Cancel(AttachArgs),
    /// Copy a sweep's result directory from the controller to this machine (a running sweep
    /// as it is now), e.g. for `benchctl report` or `benchctl compare`.
    Fetch(FetchArgs),
}

/// What a sweep's tests send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SweepDataset {
    /// Random prompts of an exact length.
    Random,
    /// Multi-turn sessions with the server's real answers in the history.
    Conversations,
}

/// `benchctl sweep`: the original scripts' `vllm_bench_with_gpu.sh`. Grid flags override `--config`.
#[derive(Clone, Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// A TOML file with the grid and the search (see deploy/sweep.example.toml); flags win.
    #[arg(long, env = "BENCHCTL_SWEEP_CONFIG")]
    pub config: Option<PathBuf>,
    /// The model's dtype, for the result directory's name (the original scripts' `--dtype`). Default: auto.
    #[arg(long, env = "BENCHCTL_DTYPE")]
    pub dtype: Option<String>,
    /// Tensor parallelism of the server, for the directory name. Default: the number of GPUs
    /// monitored (--gpu-num / --gpus), else 1.
    #[arg(long, env = "BENCHCTL_TP", value_parser = clap::value_parser!(u32).range(1..))]
    pub tp: Option<u32>,
    /// Input/output token lengths to test, e.g. 1024x1024,2048x512.
    #[arg(long, env = "BENCHCTL_IO")]
    pub io: Option<String>,
    /// Concurrencies to test per combination, e.g. 1,2,4,8,16.
    #[arg(long, env = "BENCHCTL_CONCURRENCY")]
    pub concurrency: Option<String>,
    /// What the search varies: concurrency (closed loop, --concurrency) or rate (open loop,
    /// --rates: the largest request rate within the thresholds) [default: concurrency].
    #[arg(long, env = "BENCHCTL_SEARCH_AXIS", value_enum)]
    pub search_axis: Option<Axis>,
    /// Request rates (req/s) to test per combination with --search-axis rate, e.g. 1,2,4,8.
    /// Open loop: Poisson arrivals unless --burstiness.
    #[arg(long, env = "BENCHCTL_RATES")]
    pub rates: Option<String>,
    /// --search-axis rate with --search bisect: bisection stops once the first failing rate is
    /// within this fraction of the largest passing one [default: 0.05, i.e. 5 %].
    #[arg(long, env = "BENCHCTL_RATE_RESOLUTION")]
    pub rate_resolution: Option<f64>,
    /// --search-axis rate: gamma shape of the arrival gaps (1 = Poisson, < 1 burstier, > 1
    /// more regular) [default: 1].
    #[arg(long, env = "BENCHCTL_BURSTINESS")]
    pub burstiness: Option<f64>,
    /// --search-axis rate: at most this many requests in flight (default: no cap; a test the
    /// cap holds back queues in the client, and its TTFT shows it).
    #[arg(long, env = "BENCHCTL_MAX_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: Option<u32>,
    /// Requests per test (fixed). Default: max(--min-prompts, --prompts-per-concurrency × C)
    /// (a rate sweep: × its rate, that many seconds of arrivals).
    #[arg(long, env = "BENCHCTL_NUM_PROMPTS", value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "prompts_per_concurrency")]
    pub num_prompts: Option<u64>,
    /// Requests per test as a multiple of its concurrency [default: 4].
    #[arg(long, env = "BENCHCTL_PROMPTS_PER_CONCURRENCY", value_parser = clap::value_parser!(u64).range(1..))]
    pub prompts_per_concurrency: Option<u64>,
    /// The fewest requests in a test [default: 10].
    #[arg(long, env = "BENCHCTL_MIN_PROMPTS", value_parser = clap::value_parser!(u64).range(1..))]
    pub min_prompts: Option<u64>,
    /// Warm-up requests before each test (own prompts, not measured). Default: the test's
    /// concurrency (one wave); 0 turns it off.
    #[arg(long, env = "BENCHCTL_WARMUP_REQUESTS")]
    pub warmup_requests: Option<u64>,
    /// What the tests send: random prompts of the combination's input length, or
    /// conversations (sessions of --turns; --concurrency and the test's prompt count then count
    /// sessions, and each new user message has the input length) [default: random].
    #[arg(long, env = "BENCHCTL_DATASET", value_enum)]
    pub dataset: Option<SweepDataset>,
    /// Conversations: a JSONL of ShareGPT-style conversations whose user turns are replayed.
    #[arg(long, env = "BENCHCTL_DATASET_PATH", requires = "dataset")]
    pub dataset_path: Option<PathBuf>,
    #[command(flatten)]
    pub conversation: super::conversation_args::ConversationArgs,
    /// Latency bounds a test must meet, in ms: "ttft:400 tpot:50" (the original scripts'; mean), also
    /// p99_ttft:400, median_tpot:50, itl, e2el, ttfo (time to first visible output). Without it every
    /// grid point is tested.
    #[arg(long, env = "BENCHCTL_THRESHOLD")]
    pub threshold: Option<String>,
    /// The largest fraction of failed requests a passing test may have [default: 0].
    #[arg(long, env = "BENCHCTL_MAX_ERROR_RATE")]
    pub max_error_rate: Option<f64>,
    /// ascending: the original scripts' walk (stop after a pass then a fail); bisect: then halve the gap
    /// to the exact boundary [default: ascending].
    #[arg(long, env = "BENCHCTL_SEARCH", value_enum)]
    pub search: Option<Mode>,
    /// Runs of each boundary test (max passing, first failing), judged on the pooled requests;
    /// without --threshold, runs of every test [default: 1].
    #[arg(long, env = "BENCHCTL_REPEATS", value_parser = clap::value_parser!(u32).range(1..))]
    pub repeats: Option<u32>,
    /// Labels kept with the results: --metadata tp=8 dtype=fp16 (or comma-separated).
    #[arg(long, env = "BENCHCTL_METADATA", num_args = 1.., value_delimiter = ',', value_parser = super::parse_kv)]
    pub metadata: Vec<(String, String)>,
    /// One GPU's price per hour (any currency): the report's cost per million output tokens,
    /// e.g. --gpu-hour-cost 2.5.
    #[arg(long, env = "BENCHCTL_GPU_HOUR_COST", value_parser = super::parse_cost)]
    pub gpu_hour_cost: Option<f64>,
    /// Where result directories are made.
    #[arg(long, env = "BENCHCTL_RESULT_DIR", default_value = "bench_logs")]
    pub result_dir: PathBuf,
    /// Serve the live dashboard of --result-dir while the sweep runs ("off": none). Port 0
    /// picks a free port; the URL is printed.
    #[arg(long, env = "BENCHCTL_DASHBOARD_ADDR", default_value = "127.0.0.1:0")]
    pub dashboard_addr: String,
    /// Bearer token of the dashboard (required beyond loopback); never logged.
    #[arg(long, env = "BENCHCTL_DASHBOARD_TOKEN", hide_env_values = true)]
    pub dashboard_token: Option<String>,
    /// Continue the sweep in this result directory: its saved plan is used, finished tests are
    /// kept, the rest run. Server flags (--base-url, --model-path, API key…) come from this
    /// command line.
    #[arg(long, env = "BENCHCTL_RESUME", conflicts_with_all = [
        "config", "dtype", "tp", "io", "concurrency", "search_axis", "rates", "rate_resolution",
        "burstiness", "max_concurrency", "num_prompts", "prompts_per_concurrency",
        "min_prompts", "warmup_requests", "threshold", "max_error_rate", "search", "repeats",
        "metadata", "server_metrics", "server_metrics_interval", "dataset", "dataset_path",
        "gpu_hour_cost",
    ])]
    pub resume: Option<PathBuf>,
    /// Distributed mode: submit the sweep to the controller and follow it (Ctrl-C detaches;
    /// the sweep goes on there).
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// With --controller/--etcd: submit, print the sweep's id and return.
    #[arg(long, env = "BENCHCTL_DETACH", conflicts_with = "require_max_passing")]
    pub detach: bool,
    /// Gate on the verdict: exit 1 unless every IO combination's largest passing concurrency
    /// (under --threshold, which it needs) is at least N; the error names each combination that
    /// falls short (e.g. for a Kubernetes Job or CI).
    #[arg(
        long,
        env = "BENCHCTL_REQUIRE_MAX_PASSING",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub require_max_passing: Option<u32>,
}

/// Where the controller is: `--controller URL`, or `--etcd URLS` (the elected one).
#[derive(Clone, Debug, Default, Args)]
pub struct RemoteArgs {
    /// Distributed mode: the controller's gRPC URL (`benchctl controller --listen`).
    #[arg(long, env = "BENCHCTL_CONTROLLER")]
    pub controller: Option<String>,
    /// Distributed mode: find the elected controller through etcd.
    #[command(flatten)]
    pub etcd: cluster::EtcdArgs,
    /// mTLS towards the controller (an https:// URL).
    #[command(flatten)]
    pub tls: cluster::TlsArgs,
}

impl RemoteArgs {
    pub fn enabled(&self) -> bool {
        self.controller.is_some() || self.etcd.enabled()
    }
}

/// `benchctl sweep attach ID` / `benchctl sweep cancel ID`.
#[derive(Clone, Debug, Args)]
pub struct AttachArgs {
    /// The sweep's id (`benchctl sweeps` lists them).
    pub id: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// No progress bar.
    #[arg(long, env = "BENCHCTL_QUIET")]
    pub quiet: bool,
}

/// `benchctl sweep fetch ID`.
#[derive(Clone, Debug, Args)]
pub struct FetchArgs {
    /// The sweep's id (`benchctl sweeps` lists them).
    pub id: String,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// The directory to write `<ID>/` in (an earlier copy there is replaced).
    #[arg(long, short, env = "BENCHCTL_FETCH_OUT", default_value = ".")]
    pub out: PathBuf,
}

/// `benchctl sweeps`.
#[derive(Clone, Debug, Args)]
pub struct SweepsArgs {
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Print JSON instead of a table.
    #[arg(long, env = "BENCHCTL_JSON")]
    pub json: bool,
}
