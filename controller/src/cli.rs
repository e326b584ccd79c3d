//! The command line: the subcommands and their dispatch to `cmd/`. Every flag can also be set
//! through a `BENCHCTL_…` environment variable; flags win.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd;

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
    Bench(Box<cmd::bench::BenchArgs>),
    /// Sweep a grid of input/output lengths × concurrencies, find the largest concurrency that
    /// meets --threshold per combination, record the GPUs (the original scripts' vllm_bench_with_gpu.sh).
    Sweep(Box<cmd::sweep_args::SweepCmd>),
    /// The sweeps a controller runs or ran (distributed mode).
    Sweeps(cmd::sweep_args::SweepsArgs),
    /// Serve the live dashboard of a result file (the original scripts' realtime page) or of every sweep in
    /// a directory.
    Dashboard(cmd::dashboard::DashboardArgs),
    /// Write a sweep's report: one self-contained HTML file (opens offline) and SVG charts.
    Report(cmd::dashboard::ReportArgs),
    /// Compare results (sweep directories or result files) against the first: per test and
    /// metric, the difference with a bootstrap confidence interval and a verdict; --fail-on
    /// makes it a CI gate.
    Compare(Box<cmd::compare::CompareArgs>),
    /// Run a SIMULATED OpenAI-compatible server (continuous-batching latency model, no GPU,
    /// no model): a test instrument and demo target, never a stand-in for real numbers.
    Sim(Box<sim::SimConfig>),
    /// Run the controller service: agents (GPU telemetry) and load workers connect to it.
    Controller(Box<cmd::controller::ControllerArgs>),
    /// List the agents connected to a controller, their GPUs and last samples.
    Agents(cmd::agents::AgentsArgs),
}

/// Logs to stderr. `benchctl bench` runs the controller, a worker and an agent in-process: their
/// routine INFO lines (registrations, job start/end) are shown only with `-v`; so are etcd's
/// (the leader followed) for the client commands.
pub fn init_tracing(cli: &Cli) {
    let local = matches!(
        cli.command,
        Command::Bench(_) | Command::Sweep(_) | Command::Sweeps(_) | Command::Compare(_)
    );
    let default = match (cli.verbose, local) {
        (0, true) => "info,controller::service=warn,loadgen::worker=warn,agent=warn,cluster=warn",
        (0, false) => "info",
        (1, _) => "debug",
        _ => "trace",
    };
    // escape sequences only for a terminal: `benchctl controller 2> log` writes plain text
    cluster::logging::init(default);
}

/// Runs a parsed command line; the exit code says whether the run succeeded.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Bench(args) => cmd::bench::run(*args).await,
        Command::Sweep(c) => cmd::sweep::dispatch(*c).await,
        Command::Sweeps(a) => cmd::sweep_remote::list(a).await,
        Command::Dashboard(a) => {
            cmd::dashboard::dashboard(a).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(a) => {
            cmd::dashboard::report(a)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare(a) => cmd::compare::run(*a).await,
        Command::Sim(cfg) => {
            sim::run(*cfg).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Controller(a) => {
            cmd::controller::serve(*a).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agents(a) => {
            cmd::agents::list(a).await?;
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
        for (argv, bad) in [
            (["benchctl", "controller", "--metrics-addr", "9464"], "9464"),
            (["benchctl", "sweep", "--require-max-passing", "0"], "0"),
        ] {
            let e = Cli::try_parse_from(argv).unwrap_err().to_string();
            assert!(e.contains(argv[2]) && e.contains(bad), "{e}");
        }
        for bad in ["512", "lots", "1.5 furlongs"] {
            let e = Cli::try_parse_from(["benchctl", "sweep", "--max-memory", bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains("--max-memory") && e.contains(bad), "{e}");
        }
    }

    #[test]
    fn max_memory_defaults_to_the_plans_default_and_off_is_no_limit() {
        let budget = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["benchctl", "bench"][..], args].concat()).unwrap();
            let Command::Bench(b) = cli.command else {
                unreachable!()
            };
            b.common.max_memory.0
        };
        assert_eq!(budget(&[]), Some(crate::sweep::plan::DEFAULT_MAX_MEMORY));
        assert_eq!(budget(&["--max-memory", "off"]), None);
        assert_eq!(budget(&["--max-memory", "512MiB"]), Some(512 << 20));
        assert_eq!(budget(&["--max-memory", "2GB"]), Some(2_000_000_000));
    }
}
