//! Command line and environment (`BENCHCTL_AGENT_*`).

use std::time::Duration;

use clap::Parser;
use clap::builder::TypedValueParser;

use crate::poller::{Schedule, check_interval};
use crate::source::{GpuSelection, SourceKind};

/// benchctl-agent: samples this node's GPUs through NVML and streams the samples to the benchctl
/// controller over gRPC. Reconnects with backoff and replays what it buffered while
/// disconnected.
#[derive(Debug, Clone, Parser)]
#[command(name = "benchctl-agent", version)]
pub struct AgentConfig {
    /// Controller gRPC URL, e.g. http://benchctl-controller:50051.
    #[arg(
        long,
        env = "BENCHCTL_AGENT_CONTROLLER",
        value_name = "URL",
        required_unless_present_any = ["measure_cost", "endpoints"],
        conflicts_with = "endpoints"
    )]
    pub controller: Option<String>,

    /// Find the controller through etcd (the elected leader) instead of --controller, and
    /// register this node there under a lease.
    #[command(flatten)]
    pub etcd: cluster::EtcdArgs,

    /// mTLS towards the controller.
    #[command(flatten)]
    pub tls: cluster::TlsArgs,

    /// Health and metrics: /healthz, /readyz (a session with the controller is registered),
    /// /metrics (samples taken, NVML errors, connected).
    #[command(flatten)]
    pub metrics: ops::MetricsArgs,

    /// Node name reported to the controller [default: $NODE_NAME (Kubernetes downward API), else
    /// the host name].
    #[arg(long, env = "BENCHCTL_AGENT_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// Monitor these GPUs, by NVML index, comma-separated (e.g. 0,1,2) [default: all].
    #[arg(
        long,
        env = "BENCHCTL_AGENT_GPUS",
        value_name = "INDICES",
        value_delimiter = ',',
        conflicts_with = "gpu_num"
    )]
    pub gpus: Option<Vec<u32>>,

    /// Monitor the first N GPUs [default: all; with --source simulated: 1].
    #[arg(
        long,
        env = "BENCHCTL_AGENT_GPU_NUM",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub gpu_num: Option<u32>,

    /// Sampling interval (500ms, 1s, …; a bare number is seconds; at least 10ms). The controller
    /// may change it.
    #[arg(
        long,
        env = "BENCHCTL_AGENT_INTERVAL",
        value_name = "DURATION",
        default_value = "500ms",
        value_parser = parse_interval
    )]
    pub interval: Duration,

    /// Read the energy counter at most this often (0s: every poll; a bare number is seconds). NVML's energy query can cost
    /// milliseconds of CPU per GPU (about 4 ms on an H100), more than the rest of a poll
    /// together; samples between reads carry energy_mj 0 with the energy bit set in
    /// missing_fields.
    #[arg(
        long,
        env = "BENCHCTL_AGENT_ENERGY_INTERVAL",
        value_name = "DURATION",
        default_value = "0s",
        value_parser = cluster::duration::parse
    )]
    pub energy_interval: Duration,

    /// Where samples come from: NVML (needs the NVIDIA driver), or made-up values for demos and
    /// tests (labelled simulated in every output).
    #[arg(long, env = "BENCHCTL_AGENT_SOURCE", value_enum, default_value_t = SourceKind::Nvml)]
    pub source: SourceKind,

    /// Samples kept for replay while the controller is unreachable; when full, the oldest are
    /// dropped and counted.
    #[arg(
        long,
        env = "BENCHCTL_AGENT_BUFFER_SAMPLES",
        value_name = "N",
        default_value_t = 100_000,
        value_parser = clap::value_parser!(u64).range(1..).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    )]
    pub buffer_samples: usize,

    /// Testing only: pretend this agent's clock is off by N ns (positive: ahead).
    #[arg(
        long,
        env = "BENCHCTL_AGENT_CLOCK_SKEW_NS",
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true,
        hide = true
    )]
    pub clock_skew_ns: i64,

    /// Measure the poller's CPU cost over N polls at --interval, print it and exit (no
    /// controller needed).
    #[arg(long, env = "BENCHCTL_AGENT_MEASURE_COST", value_name = "N")]
    pub measure_cost: Option<usize>,
}

impl AgentConfig {
    /// An agent started in code, in the controller's process (local mode) or a test: `gpus` of
    /// `source` sampled every `interval`, named `node_name`; the flags' defaults otherwise (no
    /// etcd, no TLS).
    pub fn in_process(
        controller: String,
        node_name: String,
        source: SourceKind,
        gpus: GpuSelection,
        interval: Duration,
    ) -> Self {
        // the flags that [`AgentConfig::gpu_selection`] reads back
        let (gpus, gpu_num) = match gpus {
            GpuSelection::All => (None, None),
            GpuSelection::First(n) => (None, Some(u32::try_from(n).unwrap_or(u32::MAX))),
            GpuSelection::Indices(indices) => (Some(indices), None),
        };
        Self {
            controller: Some(controller),
            node_name: Some(node_name),
            gpus,
            gpu_num,
            interval,
            energy_interval: Duration::ZERO,
            source,
            buffer_samples: 100_000,
            clock_skew_ns: 0,
            measure_cost: None,
            etcd: cluster::EtcdArgs::default(),
            tls: cluster::TlsArgs::default(),
            metrics: ops::MetricsArgs::default(),
        }
    }

    /// The GPUs to monitor.
    pub fn gpu_selection(&self) -> GpuSelection {
        match (&self.gpus, self.gpu_num) {
            (Some(indices), _) => GpuSelection::Indices(indices.clone()),
            (None, Some(n)) => GpuSelection::First(usize::try_from(n).unwrap_or(usize::MAX)),
            (None, None) => GpuSelection::All,
        }
    }

    /// When the poller samples.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            interval: self.interval,
            energy_interval: self.energy_interval,
        }
    }

    /// The node name: `--node-name`, else `$NODE_NAME`, else the host name.
    pub fn resolved_node_name(&self) -> String {
        self.node_name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()))
            .unwrap_or_else(cluster::process::host_name)
    }

    /// Checks what clap's parsers check, for configs built in code.
    pub fn validate(&self) -> anyhow::Result<()> {
        check_interval(self.interval).map_err(|e| anyhow::anyhow!("--interval: {e}"))?;
        anyhow::ensure!(
            self.gpus.is_none() || self.gpu_num.is_none(),
            "--gpus and --gpu-num cannot be used together"
        );
        anyhow::ensure!(
            self.buffer_samples > 0,
            "--buffer-samples must be at least 1"
        );
        Ok(())
    }
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let interval = cluster::duration::parse(s)?;
    check_interval(interval)?;
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<AgentConfig, clap::Error> {
        AgentConfig::try_parse_from(std::iter::once("benchctl-agent").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let cfg = parse(&["--controller", "http://c:1"]).unwrap();
        assert_eq!(cfg.interval, Duration::from_millis(500));
        assert_eq!(cfg.source, SourceKind::Nvml);
        assert_eq!(cfg.buffer_samples, 100_000);
        assert_eq!(cfg.clock_skew_ns, 0);
        assert_eq!(cfg.gpu_selection(), GpuSelection::All);
        cfg.validate().unwrap();
    }

    #[test]
    fn gpu_flags() {
        let cfg = parse(&["--controller", "http://c:1", "--gpus", "0,2"]).unwrap();
        assert_eq!(cfg.gpu_selection(), GpuSelection::Indices(vec![0, 2]));
        let cfg = parse(&["--controller", "http://c:1", "--gpu-num", "4"]).unwrap();
        assert_eq!(cfg.gpu_selection(), GpuSelection::First(4));
        let e = parse(&["--controller", "x", "--gpus", "0,1", "--gpu-num", "2"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ArgumentConflict);
        let text = e.to_string();
        assert!(
            text.contains("--gpus") && text.contains("--gpu-num"),
            "{text}"
        );
        assert!(parse(&["--controller", "x", "--gpu-num", "0"]).is_err());
    }

    #[test]
    fn interval_below_minimum_is_rejected_naming_the_flag() {
        let text = parse(&["--controller", "x", "--interval", "1ms"])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("--interval") && text.contains("1ms"),
            "{text}"
        );
        assert!(text.contains("10ms"), "{text}");
        let text = parse(&["--controller", "x", "--interval", "fast"])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("--interval") && text.contains("fast"),
            "{text}"
        );
        let cfg = AgentConfig::in_process(
            "x".into(),
            "n".into(),
            SourceKind::Simulated,
            GpuSelection::First(1),
            Duration::from_millis(1),
        );
        let text = cfg.validate().unwrap_err().to_string();
        assert!(
            text.contains("--interval") && text.contains("1ms"),
            "{text}"
        );
    }

    #[test]
    fn in_process_keeps_the_gpu_selection() {
        for gpus in [
            GpuSelection::All,
            GpuSelection::First(2),
            GpuSelection::Indices(vec![3, 1]),
        ] {
            let cfg = AgentConfig::in_process(
                "x".into(),
                "n".into(),
                SourceKind::Simulated,
                gpus.clone(),
                Duration::from_millis(500),
            );
            assert_eq!(cfg.gpu_selection(), gpus);
            cfg.validate().unwrap();
        }
    }

    #[test]
    fn duration_flags_take_units_and_bare_seconds() {
        for (value, expected) in [
            ("5s", Duration::from_secs(5)),
            ("500ms", Duration::from_millis(500)),
            ("2m", Duration::from_secs(120)),
            ("5", Duration::from_secs(5)),
        ] {
            let cfg = parse(&["--controller", "x", "--interval", value]).unwrap();
            assert_eq!(cfg.interval, expected, "--interval {value}");
            let cfg = parse(&["--controller", "x", "--energy-interval", value]).unwrap();
            assert_eq!(cfg.energy_interval, expected, "--energy-interval {value}");
        }
        let text = parse(&["--controller", "x", "--energy-interval", "often"])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("--energy-interval") && text.contains("often"),
            "{text}"
        );
    }

    #[test]
    fn controller_required_unless_measuring() {
        assert!(parse(&[]).is_err());
        let cfg = parse(&["--measure-cost", "10", "--source", "simulated"]).unwrap();
        assert_eq!(cfg.measure_cost, Some(10));
    }

    #[test]
    fn negative_skew_parses() {
        let cfg = parse(&["--controller", "x", "--clock-skew-ns", "-5000"]).unwrap();
        assert_eq!(cfg.clock_skew_ns, -5000);
    }

    #[test]
    fn help_documents_every_flag() {
        use clap::CommandFactory;
        let cmd = AgentConfig::command();
        for arg in cmd.get_arguments() {
            if arg.get_id() == "help" || arg.get_id() == "version" {
                continue;
            }
            assert!(arg.get_help().is_some(), "--{} has no doc", arg.get_id());
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            let env = env.as_deref().unwrap_or("");
            // the flags every binary shares (etcd, mTLS, health and metrics) keep one name
            if env.starts_with("BENCHCTL_ETCD")
                || env.starts_with("BENCHCTL_TLS_")
                || env == "BENCHCTL_METRICS_ADDR"
            {
                continue;
            }
            let expected = format!("BENCHCTL_AGENT_{}", arg.get_id().as_str().to_uppercase());
            assert_eq!(env, expected.as_str());
        }
    }
}
