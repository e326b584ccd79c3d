//! The `benchctl-agent` binary: environment variables, flag errors, exit codes.

use std::process::{Command, Output};

fn agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_benchctl-agent"));
    for (key, _) in std::env::vars() {
        if key.starts_with("BENCHCTL_AGENT_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(args).envs(env.iter().copied()).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn measure_cost_from_env() {
    let out = agent(
        &[],
        &[
            ("BENCHCTL_AGENT_SOURCE", "simulated"),
            ("BENCHCTL_AGENT_GPU_NUM", "2"),
            ("BENCHCTL_AGENT_INTERVAL", "10ms"),
            ("BENCHCTL_AGENT_MEASURE_COST", "3"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("interval 10ms: "), "{stdout}");
    assert!(
        stdout.contains("ms CPU per poll of 2 GPUs (3 polls"),
        "{stdout}"
    );
}

#[test]
fn env_interval_below_minimum_names_the_flag() {
    let out = agent(
        &["--controller", "http://127.0.0.1:1"],
        &[("BENCHCTL_AGENT_INTERVAL", "1ms")],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--interval") && stderr.contains("1ms"),
        "{stderr}"
    );
}

#[test]
fn env_gpus_conflict_with_gpu_num() {
    let out = agent(
        &["--controller", "http://127.0.0.1:1"],
        &[
            ("BENCHCTL_AGENT_GPUS", "0,1"),
            ("BENCHCTL_AGENT_GPU_NUM", "2"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--gpus") && stderr.contains("--gpu-num"),
        "{stderr}"
    );
}

#[test]
fn no_driver_exits_non_zero_with_a_clear_error() {
    if agent::source::open(agent::SourceKind::Nvml, &agent::GpuSelection::All).is_ok() {
        return; // A GPU node.
    }
    let out = agent(&["--controller", "http://127.0.0.1:1"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("Error: cannot open NVML (libnvidia-ml.so.1)"),
        "{stderr}"
    );
    assert!(stderr.contains("--source simulated"), "{stderr}");
}
