//! Fixtures shared by the end-to-end tests in `tests/tests/`: an in-process `benchctl sim` on
//! 127.0.0.1 port 0, and `benchctl bench` run in-process through its real command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use controller::cli::{Cli, Command};
use loadgen::RequestRecord;
pub use sim::{SimConfig, SimServer};

/// A fast simulator: 2 ms decode steps, tiny prefill cost.
pub fn fast_sim() -> SimConfig {
    SimConfig {
        decode_step_base_ms: 2.0,
        decode_step_per_seq_us: 20.0,
        prefill_us_per_token: 1.0,
        ..SimConfig::default()
    }
}

pub async fn start(cfg: SimConfig) -> SimServer {
    SimServer::start(cfg)
        .await
        .expect("the simulator starts on port 0")
}

/// Writes the simulator's tokenizer to `dir/tokenizer.json` (a model directory).
pub fn write_tokenizer(dir: &Path) -> PathBuf {
    let p = dir.join("tokenizer.json");
    std::fs::write(&p, sim::TOKENIZER_JSON).unwrap();
    p
}

/// What one `benchctl bench` run left behind.
pub struct BenchRun {
    pub result: anyhow::Result<ExitCode>,
    pub json: Option<serde_json::Value>,
    pub records: Vec<RequestRecord>,
}

impl BenchRun {
    pub fn json(&self) -> &serde_json::Value {
        self.json.as_ref().expect("a result file was written")
    }

    pub fn failed_by_kind(&self, kind: &str) -> u64 {
        self.json()["failed_by_kind"][kind].as_u64().unwrap_or(0)
    }
}

/// Runs `benchctl bench --base-url URL --save-result DIR/result.json --quiet ARGS…` in-process.
pub async fn bench(base_url: &str, dir: &Path, args: &[&str]) -> BenchRun {
    let result_path = dir.join("result.json");
    let _ = std::fs::remove_file(&result_path);
    let mut argv: Vec<String> = vec![
        "benchctl".into(),
        "bench".into(),
        "--base-url".into(),
        base_url.into(),
    ];
    argv.extend([
        "--save-result".into(),
        result_path.display().to_string(),
        "--quiet".into(),
    ]);
    argv.extend(args.iter().map(|s| s.to_string()));
    let cli =
        Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("bad test arguments {argv:?}: {e}"));
    let Command::Bench(b) = cli.command else {
        unreachable!()
    };
    let result = controller::cmd::bench::run(*b).await;
    let json = std::fs::read(&result_path)
        .ok()
        .map(|b| serde_json::from_slice(&b).expect("result JSON parses"));
    let records = std::fs::read_to_string(controller::output::records_path(&result_path))
        .map(|s| {
            s.lines()
                .map(|l| serde_json::from_str(l).expect("a record line parses"))
                .collect()
        })
        .unwrap_or_default();
    BenchRun {
        result,
        json,
        records,
    }
}

/// What one `benchctl sweep` run left behind.
pub struct SweepRun {
    pub result: anyhow::Result<ExitCode>,
    /// The result directory it made (or resumed), if any.
    pub dir: Option<PathBuf>,
}

impl SweepRun {
    pub fn dir(&self) -> &Path {
        self.dir.as_deref().expect("a result directory was made")
    }

    /// The result array (`<model>_vllm_result.json`).
    pub fn results(&self) -> Vec<serde_json::Value> {
        cluster::testing::result_array(self.dir())
    }

    pub fn summary(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.dir().join("summary.json")).unwrap()).unwrap()
    }

    /// The summary of combination `INxOUT`.
    pub fn combination(&self, input_len: u64, output_len: u64) -> serde_json::Value {
        self.summary()["combinations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["input_len"] == input_len && c["output_len"] == output_len)
            .cloned()
            .expect("the combination is in the summary")
    }
}

/// Runs `benchctl sweep --base-url URL --result-dir ROOT --quiet ARGS…` in-process; the result
/// directory is the one directory under `root` (made by this run or resumed).
pub async fn sweep(base_url: &str, root: &Path, args: &[&str]) -> SweepRun {
    let mut argv: Vec<String> = vec![
        "benchctl".into(),
        "sweep".into(),
        "--base-url".into(),
        base_url.into(),
        "--result-dir".into(),
        root.display().to_string(),
        "--quiet".into(),
    ];
    argv.extend(args.iter().map(|s| s.to_string()));
    let cli =
        Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("bad test arguments {argv:?}: {e}"));
    let Command::Sweep(a) = cli.command else {
        unreachable!()
    };
    let result = controller::cmd::sweep::run(a.args).await;
    let dir = std::fs::read_dir(root)
        .ok()
        .and_then(|rd| rd.flatten().map(|e| e.path()).find(|p| p.is_dir()));
    SweepRun { result, dir }
}

/// The simulator's count of requests received (its `/metrics`).
pub async fn sim_requests(sim: &SimServer) -> u64 {
    let metrics = reqwest::get(format!("{}/metrics", sim.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metrics
        .lines()
        .find(|l| l.starts_with("benchctl_sim_requests_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("benchctl_sim_requests_total in /metrics")
}
