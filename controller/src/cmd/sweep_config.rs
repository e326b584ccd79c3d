//! `benchctl sweep`'s grid settings: the flags over its `--config sweep.toml` file over the
//! defaults, checked and resolved into the [`Plan`] before anything runs.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::sweep_args::{SweepArgs, SweepDataset};
use crate::metrics_source::MetricsSource;
use crate::sweep::axis::{self, Axis, Rate, parse_rates};
use crate::sweep::grid::{parse_concurrency, parse_io};
use crate::sweep::plan::{PLAN_VERSION, Plan, Prompts};
use crate::sweep::search::Mode;
use crate::sweep::threshold::{self, Threshold};

/// `--config sweep.toml`: every key optional; unknown keys are errors.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    pub io: Option<Vec<String>>,
    pub concurrency: Option<Vec<u32>>,
    /// `--search-axis`: "concurrency" or "rate".
    pub search_axis: Option<Axis>,
    /// `--rates` (req/s).
    pub rates: Option<Vec<f64>>,
    pub rate_resolution: Option<f64>,
    pub burstiness: Option<f64>,
    pub max_concurrency: Option<u32>,
    pub num_prompts: Option<u64>,
    pub prompts_per_concurrency: Option<u64>,
    pub min_prompts: Option<u64>,
    pub warmup_requests: Option<u64>,
    pub threshold: Option<String>,
    pub max_error_rate: Option<f64>,
    pub search: Option<String>,
    pub repeats: Option<u32>,
    /// `--server-metrics`: "auto", "off", "target" or URLs.
    pub server_metrics: Option<String>,
    /// `--server-metrics-interval`, e.g. "1s".
    pub server_metrics_interval: Option<String>,
    pub dtype: Option<String>,
    pub tp: Option<u32>,
    /// `--prefix-len`, `--prefix-groups`, `--reset-prefix-cache`.
    pub prefix_len: Option<u32>,
    pub prefix_groups: Option<u32>,
    pub reset_prefix_cache: Option<bool>,
    /// `--dataset` ("random" or "conversations"), `--dataset-path`, `--turns`, `--think-time`.
    pub dataset: Option<SweepDataset>,
    pub dataset_path: Option<std::path::PathBuf>,
    pub turns: Option<String>,
    pub think_time: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, toml::Value>,
}

impl SweepFile {
    pub fn load(path: &Path) -> anyhow::Result<SweepFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--config {}: cannot read it", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("--config {}: {e}", path.display()))
    }
}

/// The original scripts' default grid (its script's lines 72–100 in spirit): three input/output
/// combinations, concurrency doubling from 1 to 128.
pub const DEFAULT_IO: &str = "1024x1024,2048x1024,4096x1024";
pub const DEFAULT_CONCURRENCY: &str = "1,2,4,8,16,32,64,128";
/// Prompts per test: max(`DEFAULT_MIN_PROMPTS`, `DEFAULT_PROMPTS_PER_CONCURRENCY` × concurrency).
pub const DEFAULT_PROMPTS_PER_CONCURRENCY: usize = 4;
pub const DEFAULT_MIN_PROMPTS: usize = 10;
/// The settings of a new sweep, checked before anything runs: flags, then `--config`, then the
/// defaults. `served_model`/`model_label`/`tp` are filled in once the server has answered.
pub fn resolve(args: &SweepArgs) -> anyhow::Result<Plan> {
    let file = match &args.config {
        Some(p) => SweepFile::load(p)?,
        None => SweepFile::default(),
    };
    let io = match (&args.io, &file.io) {
        (Some(s), _) => parse_io(s).map_err(anyhow::Error::msg)?,
        (None, Some(v)) => parse_io(&v.join(","))
            .map_err(|e| anyhow::anyhow!("--config io: {}", e.trim_start_matches("--io: ")))?,
        (None, None) => parse_io(DEFAULT_IO).expect("the default grid parses"),
    };
    let concurrency = match (&args.concurrency, &file.concurrency) {
        (Some(s), _) => parse_concurrency(s).map_err(anyhow::Error::msg)?,
        (None, Some(v)) => {
            let s: Vec<String> = v.iter().map(u32::to_string).collect();
            parse_concurrency(&s.join(",")).map_err(|e| {
                anyhow::anyhow!(
                    "--config concurrency: {}",
                    e.trim_start_matches("--concurrency: ")
                )
            })?
        }
        (None, None) => parse_concurrency(DEFAULT_CONCURRENCY).expect("the default grid parses"),
    };
    let rate = rate_settings(args, &file)?;
    let positive = |v: Option<u64>, key: &str| -> anyhow::Result<Option<usize>> {
        match v {
            Some(0) => bail!("--config {key}: must be at least 1, got 0"),
            v => Ok(v.map(|v| v as usize)),
        }
    };
    let min = args
        .min_prompts
        .map(|n| n as usize)
        .or(positive(file.min_prompts, "min_prompts")?)
        .unwrap_or(DEFAULT_MIN_PROMPTS);
    let file_fixed = positive(file.num_prompts, "num_prompts")?;
    let file_k = positive(file.prompts_per_concurrency, "prompts_per_concurrency")?;
    if file_fixed.is_some() && file_k.is_some() {
        bail!("--config: num_prompts and prompts_per_concurrency cannot both be set");
    }
    let prompts = match (args.num_prompts, args.prompts_per_concurrency) {
        (Some(n), _) => Prompts::Fixed(n as usize),
        (None, Some(k)) => Prompts::PerConcurrency { k: k as usize, min },
        (None, None) => match (file_fixed, file_k) {
            (Some(n), _) => Prompts::Fixed(n),
            (None, k) => Prompts::PerConcurrency {
                k: k.unwrap_or(DEFAULT_PROMPTS_PER_CONCURRENCY),
                min,
            },
        },
    };
    let max_error_rate = args.max_error_rate.or(file.max_error_rate).unwrap_or(0.0);
    threshold::check_max_error_rate(max_error_rate).map_err(anyhow::Error::msg)?;
    let threshold = args
        .threshold
        .as_ref()
        .or(file.threshold.as_ref())
        .map(|t| Threshold::parse(t))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let search = match (args.search, &file.search) {
        (Some(m), _) => m,
        (None, Some(s)) => <Mode as clap::ValueEnum>::from_str(s, true)
            .map_err(|_| anyhow::anyhow!("--config search: {s:?} is not ascending or bisect"))?,
        (None, None) => Mode::Ascending,
    };
    let repeats = match args.repeats.or(file.repeats) {
        Some(0) => bail!("--config repeats: must be at least 1, got 0"),
        r => r.unwrap_or(1),
    };
    let mut metadata: BTreeMap<String, String> = file
        .metadata
        .iter()
        .map(|(k, v)| {
            let v = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => serde_json::to_string(other).unwrap_or_default(),
            };
            (k.clone(), v)
        })
        .collect();
    metadata.extend(args.metadata.iter().cloned());
    let dtype = args
        .dtype
        .clone()
        .or(file.dtype.clone())
        .unwrap_or_else(|| "auto".into());
    if dtype.is_empty() || dtype.contains(['/', '\\']) {
        bail!("--dtype {dtype:?}: expected a dtype name such as fp16 or bfloat16");
    }
    if file.tp == Some(0) {
        bail!("--config tp: must be at least 1, got 0");
    }
    let server_metrics = match (&args.common.server_metrics, &file.server_metrics) {
        (Some(m), _) => m.clone(),
        (None, Some(s)) => {
            MetricsSource::parse(s).map_err(|e| anyhow::anyhow!("--config server_metrics: {e}"))?
        }
        (None, None) => MetricsSource::Auto,
    };
    let server_metrics_interval = match (
        args.common.server_metrics_interval,
        &file.server_metrics_interval,
    ) {
        (Some(d), _) => d,
        (None, Some(s)) => cluster::duration::parse(s)
            .map_err(|e| anyhow::anyhow!("--config server_metrics_interval: {s:?}: {e}"))?,
        (None, None) => crate::metrics_source::DEFAULT_INTERVAL,
    };
    if server_metrics_interval.is_zero() {
        bail!("--server-metrics-interval must be above 0");
    }
    let tp = args.tp.or(file.tp).or(args.common.gpu_count()).unwrap_or(1);
    loadgen::stats::parse_percentiles(&args.common.percentiles).map_err(anyhow::Error::msg)?;
    Ok(Plan {
        version: PLAN_VERSION,
        model_label: String::new(),
        tp,
        dtype,
        io,
        concurrency,
        axis: rate.axis,
        rates: rate.rates,
        rate_resolution: rate.resolution,
        burstiness: rate.burstiness,
        max_concurrency: rate.max_concurrency,
        prompts,
        warmup_requests: args
            .warmup_requests
            .or(file.warmup_requests)
            .map(|n| n as usize),
        threshold,
        max_error_rate,
        search,
        repeats,
        metadata,
        seed: args.common.seed,
        random_range_ratio: args.common.random_range_ratio,
        prefix_len: args.common.prefix_len.or(file.prefix_len).unwrap_or(0),
        prefix_groups: args
            .common
            .prefix_groups
            .or(file.prefix_groups)
            .unwrap_or(1),
        reset_prefix_cache: args.common.reset_prefix_cache || file.reset_prefix_cache == Some(true),
        percentiles: args.common.percentiles.clone(),
        server_metrics,
        server_metrics_interval,
        endpoint: args.common.endpoint.clone(),
        served_model: String::new(),
        conversation: conversation(args, &file)?,
        gpu_hour_cost: args.gpu_hour_cost,
        max_memory_bytes: args.common.max_memory.0,
    })
}

/// The search axis and a rate sweep's settings, flags over the file's keys.
struct RateSettings {
    axis: Axis,
    rates: Vec<Rate>,
    resolution: f64,
    burstiness: f64,
    max_concurrency: Option<u32>,
}

fn rate_settings(args: &SweepArgs, file: &SweepFile) -> anyhow::Result<RateSettings> {
    let axis = args.search_axis.or(file.search_axis).unwrap_or_default();
    let rates = match (&args.rates, &file.rates) {
        (Some(s), _) => Some(parse_rates(s).map_err(anyhow::Error::msg)?),
        (None, Some(v)) => {
            let s: Vec<String> = v.iter().map(f64::to_string).collect();
            Some(parse_rates(&s.join(",")).map_err(|e| {
                anyhow::anyhow!("--config rates: {}", e.trim_start_matches("--rates: "))
            })?)
        }
        (None, None) => None,
    };
    let resolution = match (args.rate_resolution, file.rate_resolution) {
        (Some(r), _) => axis::check_rate_resolution(r).map_err(anyhow::Error::msg)?,
        (None, Some(r)) => axis::check_rate_resolution(r).map_err(|e| {
            anyhow::anyhow!(
                "--config rate_resolution: {}",
                e.trim_start_matches("--rate-resolution: ")
            )
        })?,
        (None, None) => axis::DEFAULT_RATE_RESOLUTION,
    };
    let burstiness = args.burstiness.or(file.burstiness).unwrap_or(1.0);
    if !(burstiness.is_finite() && burstiness > 0.0) {
        bail!("--burstiness: {burstiness} is not a positive number (1 = Poisson arrivals)");
    }
    if file.max_concurrency == Some(0) {
        bail!("--config max_concurrency: must be at least 1, got 0");
    }
    let max_concurrency = args.max_concurrency.or(file.max_concurrency);
    let rate_only = [
        ("--rates", rates.is_some()),
        (
            "--rate-resolution",
            args.rate_resolution.or(file.rate_resolution).is_some(),
        ),
        (
            "--burstiness",
            args.burstiness.or(file.burstiness).is_some(),
        ),
        ("--max-concurrency", max_concurrency.is_some()),
    ];
    match axis {
        Axis::Rate => {
            if args.concurrency.is_some() {
                bail!(
                    "--concurrency does not apply to --search-axis rate: give the rates with                      --rates (and --max-concurrency to cap requests in flight)"
                );
            }
            let Some(rates) = rates else {
                bail!(
                    "--search-axis rate needs --rates (requests per second, e.g. --rates 1,2,4,8)"
                );
            };
            Ok(RateSettings {
                axis,
                rates,
                resolution,
                burstiness,
                max_concurrency,
            })
        }
        Axis::Concurrency => {
            if let Some((flag, _)) = rate_only.iter().find(|(_, given)| *given) {
                bail!(
                    "{flag} applies to --search-axis rate only (this sweep's axis is concurrency)"
                );
            }
            Ok(RateSettings {
                axis,
                rates: vec![],
                resolution,
                burstiness,
                max_concurrency: None,
            })
        }
    }
}

/// `--dataset conversations` (or the file's `dataset`): the sessions' spec (lengths from each
/// test's combination); flags over the file's keys.
fn conversation(
    args: &SweepArgs,
    file: &SweepFile,
) -> anyhow::Result<Option<loadgen::conversation::ConversationSpec>> {
    let path = args.dataset_path.clone().or(file.dataset_path.clone());
    match args.dataset.or(file.dataset) {
        None | Some(SweepDataset::Random) => {
            if path.is_some() {
                bail!("--dataset-path (dataset_path) needs --dataset conversations in a sweep");
            }
            Ok(None)
        }
        Some(SweepDataset::Conversations) => {
            let flags = crate::cmd::conversation_args::ConversationArgs {
                turns: args.conversation.turns.clone().or(file.turns.clone()),
                think_time: args
                    .conversation
                    .think_time
                    .clone()
                    .or(file.think_time.clone()),
            };
            flags.spec(0, 0, path).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> SweepArgs {
        let mut argv = vec!["benchctl", "sweep"];
        argv.extend(extra);
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        match cli.command {
            crate::cli::Command::Sweep(a) => a.args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_plan_round_trips_through_its_file() {
        let d = tempfile::tempdir().unwrap();
        let p = resolve(&args(&[
            "--threshold",
            "p99_ttft:200 tpot:20",
            "--io",
            "8x8",
        ]))
        .unwrap();
        assert_eq!(p.version, PLAN_VERSION);
        p.save(d.path()).unwrap();
        assert_eq!(Plan::load(d.path()).unwrap(), p);
    }

    #[test]
    fn defaults_are_the_seeds_grid() {
        let p = resolve(&args(&[])).unwrap();
        assert_eq!(p.io.len(), 3);
        assert_eq!(p.concurrency, vec![1, 2, 4, 8, 16, 32, 64, 128]);
        assert_eq!((p.search, p.repeats, p.tp), (Mode::Ascending, 1, 1));
        assert_eq!(p.prompts.for_concurrency(1), 10);
        assert_eq!(p.prompts.for_concurrency(32), 128);
        assert_eq!(p.warmup_for(crate::sweep::axis::Level::Concurrency(32)), 32);
        assert_eq!(p.dtype, "auto");
        let p = resolve(&args(&["--gpu-num", "8", "--num-prompts", "50"])).unwrap();
        assert_eq!((p.tp, p.prompts), (8, Prompts::Fixed(50)));
    }

    #[test]
    fn the_config_file_and_flags_over_it() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("s.toml");
        std::fs::write(
            &f,
            r#"
io = ["128x64", "256x32"]
concurrency = [4, 1, 2]
threshold = "p99_ttft:200 tpot:20"
search = "bisect"
repeats = 3
prompts_per_concurrency = 2
min_prompts = 5
dtype = "bf16"
prefix_len = 512
prefix_groups = 4
reset_prefix_cache = true
[metadata]
gpu = "H100"
tp = 8
"#,
        )
        .unwrap();
        let c = f.display().to_string();
        let p = resolve(&args(&["--config", &c])).unwrap();
        assert_eq!(p.io.len(), 2);
        assert_eq!(p.concurrency, vec![1, 2, 4]);
        assert_eq!((p.search, p.repeats), (Mode::Bisect, 3));
        assert_eq!(p.prompts.for_concurrency(1), 5);
        assert_eq!(p.prompts.for_concurrency(4), 8);
        assert_eq!(p.metadata["tp"], "8");
        assert_eq!(p.dtype, "bf16");
        assert_eq!((p.prefix_len, p.prefix_groups), (512, 4));
        assert!(p.reset_prefix_cache);
        let p = resolve(&args(&[
            "--prefix-groups",
            "2",
            "--config",
            &c,
            "--concurrency",
            "16",
            "--search",
            "ascending",
            "--metadata",
            "gpu=A100",
            "--num-prompts",
            "7",
        ]))
        .unwrap();
        assert_eq!(p.concurrency, vec![16]);
        assert_eq!(p.search, Mode::Ascending);
        assert_eq!(p.metadata["gpu"], "A100");
        assert_eq!(p.prompts, Prompts::Fixed(7));
        assert_eq!((p.prefix_len, p.prefix_groups), (512, 2));
    }

    #[test]
    fn a_rate_sweep_from_flags_and_file() {
        use crate::sweep::axis::Level;
        let p = resolve(&args(&[
            "--search-axis",
            "rate",
            "--rates",
            "4,1,2.5",
            "--max-concurrency",
            "64",
            "--burstiness",
            "0.5",
        ]))
        .unwrap();
        assert_eq!(p.axis, Axis::Rate);
        assert_eq!(p.steps(), vec![1000, 2500, 4000]);
        assert_eq!((p.max_concurrency, p.burstiness), (Some(64), 0.5));
        assert_eq!(p.rate_resolution, axis::DEFAULT_RATE_RESOLUTION);
        assert_eq!(p.max_in_flight(), 64);
        // k × rate requests (k seconds of arrivals), at least --min-prompts; a second's warm-up
        let r = p.levels()[1];
        assert_eq!(r, Level::Rate(Rate::from_per_s(2.5).unwrap()));
        assert_eq!(p.prompts.for_level(r), 10);
        assert_eq!(p.prompts.for_level(p.levels()[2]), 16);
        assert_eq!(p.warmup_for(r), 3);
        let d = tempfile::tempdir().unwrap();
        p.save(d.path()).unwrap();
        assert_eq!(Plan::load(d.path()).unwrap(), p, "resume keeps the axis");
        let f = d.path().join("r.toml");
        std::fs::write(
            &f,
            "search_axis = \"rate\"\nrates = [0.5, 1, 2]\nrate_resolution = 0.1\n",
        )
        .unwrap();
        let p = resolve(&args(&["--config", &f.display().to_string()])).unwrap();
        assert_eq!((p.axis, p.steps()), (Axis::Rate, vec![500, 1000, 2000]));
        assert_eq!(p.rate_resolution, 0.1);
    }

    #[test]
    fn bad_rate_settings_name_the_flag_and_value() {
        let err = |a: &[&str]| format!("{:#}", resolve(&args(a)).unwrap_err());
        let e = err(&["--search-axis", "rate", "--rates", "0"]);
        assert!(e.contains("--rates") && e.contains("\"0\""), "{e}");
        let e = err(&["--search-axis", "rate", "--rates", "1,x"]);
        assert!(e.contains("--rates") && e.contains("\"x\""), "{e}");
        let e = err(&["--search-axis", "rate"]);
        assert!(e.contains("--search-axis rate needs --rates"), "{e}");
        let e = err(&["--rates", "1,2"]);
        assert!(
            e.contains("--rates applies to --search-axis rate only"),
            "{e}"
        );
        let e = err(&[
            "--search-axis",
            "rate",
            "--rates",
            "1",
            "--concurrency",
            "4",
        ]);
        assert!(e.contains("--concurrency does not apply"), "{e}");
        let e = err(&[
            "--search-axis",
            "rate",
            "--rates",
            "1",
            "--rate-resolution",
            "1.5",
        ]);
        assert!(e.contains("--rate-resolution") && e.contains("1.5"), "{e}");
        let e = err(&["--search-axis", "rate", "--rates", "1", "--burstiness", "0"]);
        assert!(e.contains("--burstiness") && e.contains('0'), "{e}");
        let e = crate::cli::Cli::try_parse_from(["benchctl", "sweep", "--search-axis", "speed"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--search-axis") && e.contains("speed"), "{e}");
    }

    #[test]
    fn conversations_come_from_the_file_and_flags_win() {
        use loadgen::conversation::Dist;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("c.toml");
        std::fs::write(
            &f,
            "dataset = \"conversations\"\nturns = \"uniform:2:3\"\nthink_time = \"1s\"\nio = [\"64x16\"]\n",
        )
        .unwrap();
        let c = f.display().to_string();
        let conv = resolve(&args(&["--config", &c]))
            .unwrap()
            .conversation
            .unwrap();
        assert_eq!(conv.turns, Dist::parse_turns("uniform:2:3").unwrap());
        assert_eq!(
            conv.think_time,
            Dist::parse_duration("--think-time", "1s").unwrap()
        );
        let conv = resolve(&args(&["--config", &c, "--turns", "5"]))
            .unwrap()
            .conversation
            .unwrap();
        assert_eq!(conv.turns, Dist::parse_turns("5").unwrap());
        assert_eq!(
            conv.think_time,
            Dist::parse_duration("--think-time", "1s").unwrap()
        );
        // random prompts by flag over the file: no sessions
        let p = resolve(&args(&["--config", &c, "--dataset", "random"])).unwrap();
        assert_eq!(p.conversation, None);
        // a bad value names its key
        std::fs::write(&f, "dataset = \"conversations\"\nturns = \"zero\"\n").unwrap();
        let e = resolve(&args(&["--config", &c])).unwrap_err().to_string();
        assert!(e.contains("zero"), "{e}");
        std::fs::write(&f, "dataset = \"trace\"\n").unwrap();
        let e = resolve(&args(&["--config", &c])).unwrap_err().to_string();
        assert!(e.contains("dataset"), "{e}");
    }

    #[test]
    fn bad_settings_are_refused_before_anything_runs() {
        let e = |a: &[&str]| resolve(&args(a)).unwrap_err().to_string();
        assert!(e(&["--threshold", "latency:4"]).contains("\"latency\""));
        assert!(e(&["--threshold", "ttft:abc"]).contains("ttft:abc"));
        assert!(e(&["--io", "1024"]).contains("--io"));
        assert!(e(&["--concurrency", "0"]).contains("--concurrency"));
        assert!(e(&["--max-error-rate", "2"]).contains("--max-error-rate"));
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("s.toml");
        std::fs::write(&f, "concurency = [1]\n").unwrap();
        let msg = e(&["--config", &f.display().to_string()]);
        assert!(msg.contains("concurency"), "{msg}");
        std::fs::write(&f, "search = \"binary\"\n").unwrap();
        let msg = e(&["--config", &f.display().to_string()]);
        assert!(msg.contains("binary"), "{msg}");
        let cli = crate::cli::Cli::try_parse_from(["benchctl", "sweep", "--metadata", "tp"]);
        assert!(cli.unwrap_err().to_string().contains("KEY=VALUE"));
        // --resume runs the saved plan: grid flags beside it are refused, not ignored
        let e = crate::cli::Cli::try_parse_from([
            "benchctl",
            "sweep",
            "--resume",
            "d",
            "--threshold",
            "ttft:1",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("--resume") && e.contains("--threshold"), "{e}");
        // the original scripts' form: space-separated pairs after one flag
        let p = resolve(&args(&["--metadata", "tp=8", "dtype=fp16", "--io", "8x8"])).unwrap();
        assert_eq!(
            (p.metadata["tp"].as_str(), p.metadata["dtype"].as_str()),
            ("8", "fp16")
        );
        let cli = crate::cli::Cli::try_parse_from([
            "benchctl",
            "dashboard",
            "--json-file",
            "r.json",
            "--metadata",
            "tp=8",
            "dtype=fp16",
        ])
        .unwrap();
        let crate::cli::Command::Dashboard(d) = cli.command else {
            unreachable!()
        };
        assert_eq!(d.metadata.len(), 2);
    }

    #[test]
    fn the_example_config_parses() {
        let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/sweep.example.toml");
        let c = f.display().to_string();
        let p = resolve(&args(&["--config", &c])).unwrap();
        assert!(p.threshold.is_some() && !p.io.is_empty());
    }
}
