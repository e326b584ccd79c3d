//! `benchctl agents`: the agents and load workers a controller sees, their GPUs, last samples and
//! clock offsets; `--set-interval` changes the agents' sampling.

use std::fmt::Write;

use anyhow::Context;
use clap::Args;

/// `benchctl agents`.
#[derive(Clone, Debug, Args)]
pub struct AgentsArgs {
    /// The controller's gRPC URL.
    #[arg(
        long,
        env = "BENCHCTL_CONTROLLER",
        default_value = "http://127.0.0.1:7400"
    )]
    pub controller: String,
    /// Print JSON instead of a table.
    #[arg(long, env = "BENCHCTL_JSON")]
    pub json: bool,
    /// Change the sampling interval of the connected agents (all, or --node), e.g. 100ms.
    #[arg(long, env = "BENCHCTL_SET_INTERVAL", value_parser = cluster::duration::parse)]
    pub set_interval: Option<std::time::Duration>,
    /// With --set-interval: only this node's agent.
    #[arg(long, env = "BENCHCTL_NODE", requires = "set_interval")]
    pub node: Option<String>,
    /// mTLS towards the controller (an https:// URL).
    #[command(flatten)]
    pub tls: cluster::TlsArgs,
}

/// Prints the agents a controller knows.
pub async fn list(args: AgentsArgs) -> anyhow::Result<()> {
    let endpoint = cluster::controller_endpoint(&args.controller, args.tls.client()?.as_ref())?;
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("--controller {}: cannot connect", args.controller))?;
    let mut client = proto::controller_client::ControllerClient::new(channel);
    if let Some(interval) = args.set_interval {
        let interval_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
        let n = client
            .set_sampling(proto::SetSamplingRequest {
                node_name: args.node.clone().unwrap_or_default(),
                settings: Some(proto::SamplingSettings { interval_ms }),
            })
            .await
            .map_err(|s| {
                anyhow::anyhow!(
                    "--set-interval {}: {}",
                    humantime::format_duration(interval),
                    s.message()
                )
            })?
            .into_inner()
            .agents;
        eprintln!(
            "sampling interval {} sent to {n} agent(s)",
            humantime::format_duration(interval)
        );
    }
    let agents = client
        .list_agents(proto::ListAgentsRequest {})
        .await
        .with_context(|| format!("--controller {}: ListAgents failed", args.controller))?
        .into_inner()
        .agents;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&agents.iter().map(agent_json).collect::<Vec<_>>())?
        );
    } else {
        print!("{}", table(&agents));
        let workers = client
            .list_workers(proto::ListWorkersRequest {})
            .await
            .with_context(|| format!("--controller {}: ListWorkers failed", args.controller))?
            .into_inner()
            .workers;
        println!("load workers: {}", workers.len());
        for w in &workers {
            println!(
                "  {}  max {} streams  clock offset {:.3} ms",
                w.name,
                w.max_streams,
                w.clock_offset_ns as f64 / 1e6
            );
        }
    }
    Ok(())
}

fn agent_json(a: &proto::AgentStatus) -> serde_json::Value {
    serde_json::json!({
        "node": a.node_name,
        "agent_version": a.agent_version,
        "simulated": a.simulated,
        "connected": a.connected,
        "clock_offset_ns": a.clock_offset_ns,
        "clock_uncertainty_ns": a.clock_uncertainty_ns,
        "samples_received": a.samples_received,
        "dropped_samples": a.dropped_samples,
        "idle_s": a.idle_s,
        "gpus": a.gpus.iter().map(|g| serde_json::json!({
            "index": g.index, "uuid": g.uuid, "name": g.name,
            "memory_total_bytes": g.memory_total_bytes, "driver_version": g.driver_version,
            "last": a.last_samples.iter().find(|s| s.gpu_index == g.index).map(|s| serde_json::json!({
                "utilization_pct": s.utilization_pct, "memory_used_bytes": s.memory_used_bytes,
                "temperature_c": s.temperature_c, "power_w": s.power_w, "sm_clock_mhz": s.sm_clock_mhz,
                "energy_mj": s.energy_mj, "throttle_reasons": s.throttle_reasons,
            })),
        })).collect::<Vec<_>>(),
    })
}

/// The human-readable listing.
pub fn table(agents: &[proto::AgentStatus]) -> String {
    let mut t = String::new();
    if agents.is_empty() {
        t.push_str("no agent has registered with this controller\n");
        return t;
    }
    for a in agents {
        let unc = if a.clock_uncertainty_ns == u64::MAX {
            "not yet estimated".to_string()
        } else {
            format!(
                "{:+.3} ms ± {:.3} ms",
                a.clock_offset_ns as f64 / 1e6,
                a.clock_uncertainty_ns as f64 / 1e6
            )
        };
        let _ = writeln!(
            t,
            "{}{}  {}  agent {}  clock {}  samples {}  lost {}  idle {:.1} s",
            a.node_name,
            if a.simulated { " [SIMULATED]" } else { "" },
            if a.connected {
                "connected"
            } else {
                "DISCONNECTED"
            },
            a.agent_version,
            unc,
            a.samples_received,
            a.dropped_samples,
            a.idle_s
        );
        for g in &a.gpus {
            let last = a.last_samples.iter().find(|s| s.gpu_index == g.index);
            let now = match last {
                Some(s) => format!(
                    "util {:>3.0}%  mem {:>6.0}/{:.0} MiB  {:>3.0}°C  {:>5.1} W  SM {} MHz",
                    s.utilization_pct,
                    s.memory_used_bytes as f64 / 1048576.0,
                    g.memory_total_bytes as f64 / 1048576.0,
                    s.temperature_c,
                    s.power_w,
                    s.sm_clock_mhz
                ),
                None => "no sample yet".into(),
            };
            let _ = writeln!(
                t,
                "  GPU {} {} ({}, driver {}): {now}",
                g.index, g.name, g.uuid, g.driver_version
            );
        }
    }
    t
}
