//! A sweep's checkpoint, `/benchctl/v1/state/sweeps/<id>` in etcd: its plan and target, its
//! status, the test in flight and the tests finished. Written through the leader's
//! [`cluster::Fence`], so a deposed controller writes nothing.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::sweep::plan::Plan;
use crate::sweep::status::Status;

/// The server flags of a sweep (`--base-url`, `--model-name`, `--workers`…), without the API
/// key. The one place the checkpoint names their type.
pub type TargetSpec = crate::sweep::plan::SweepTarget;

/// The checkpoint format this controller writes. 0: written before the format had a version
/// (the same fields as 1).
pub const VERSION: u32 = 1;

/// A submitted sweep: what `SubmitSweep` carries and etcd keeps.
#[derive(Clone, Serialize, Deserialize)]
pub struct Spec {
    pub plan: Plan,
    /// The server flags, without the API key.
    pub target: TargetSpec,
}

impl Spec {
    /// The target with this controller's API key: the key never travels nor lands in etcd.
    pub(super) fn target_with_key(&self) -> TargetSpec {
        let mut run = self.target.clone();
        run.target = run.target.with_key_from_env();
        run
    }

    /// The plan's largest concurrency (what the target's connection pool must allow).
    pub(super) fn max_concurrency(&self) -> usize {
        self.plan.max_in_flight()
    }
}

/// A sweep's checkpoint (`state/sweeps/<id>` in etcd).
#[derive(Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The format ([`VERSION`]; 0 when missing).
    #[serde(default)]
    pub version: u32,
    pub id: String,
    pub spec: Spec,
    /// queued, running, done, failed, interrupted.
    pub status: Status,
    pub submitted_at_unix_s: f64,
    /// The controller (its advertised URL) that owns the sweep.
    pub leader: String,
    /// The test running now (discarded if this leader is lost).
    #[serde(default)]
    pub in_flight: Option<String>,
    /// Tests finished, in order; their files are in the result directory.
    #[serde(default)]
    pub done_tests: Vec<String>,
    #[serde(default)]
    pub failovers: Vec<serde_json::Value>,
    #[serde(default)]
    pub error: Option<String>,
    /// `CancelSweep` was asked: whoever runs it next finishes it as `interrupted`.
    #[serde(default)]
    pub cancel_requested: bool,
    /// GPUs the agents reported when the sweep started: a new leader waits for them.
    #[serde(default)]
    pub gpus: usize,
}

/// A change to a checkpoint, applied by the sweeps' owner task before it writes the checkpoint.
#[derive(Debug)]
pub(super) enum Change {
    /// This controller runs the sweep now (after a failover: with the failover recorded and the
    /// tests found on disk).
    Running {
        leader: String,
        failovers: Vec<serde_json::Value>,
        done_tests: Vec<String>,
        gpus: usize,
    },
    /// A test begins.
    TestStarted(String),
    /// A test is over; its files are written next.
    TestCommitted(String),
    /// `CancelSweep`.
    CancelRequested,
    /// The sweep ended (`done`, `failed`, `interrupted`).
    Finished {
        leader: String,
        status: Status,
        error: Option<String>,
    },
}

impl Checkpoint {
    /// A sweep just submitted to `leader`.
    pub(super) fn queued(id: String, spec: Spec, leader: String) -> Checkpoint {
        Checkpoint {
            version: VERSION,
            id,
            spec,
            status: Status::Queued,
            submitted_at_unix_s: unix_now(),
            leader,
            in_flight: None,
            done_tests: Vec::new(),
            failovers: Vec::new(),
            error: None,
            cancel_requested: false,
            gpus: 0,
        }
    }

    pub(super) fn apply(&mut self, change: Change) {
        match change {
            Change::Running {
                leader,
                failovers,
                done_tests,
                gpus,
            } => {
                self.status = Status::Running;
                self.leader = leader;
                self.in_flight = None;
                self.failovers = failovers;
                self.done_tests = done_tests;
                self.gpus = self.gpus.max(gpus);
            }
            Change::TestStarted(test) => self.in_flight = Some(test),
            Change::TestCommitted(test) => {
                self.in_flight = None;
                self.done_tests.push(test);
            }
            Change::CancelRequested => self.cancel_requested = true,
            Change::Finished {
                leader,
                status,
                error,
            } => {
                self.leader = leader;
                self.status = status;
                self.in_flight = None;
                self.error = error;
            }
        }
    }

    /// Reads a checkpoint of any format up to [`VERSION`] (an older one is upgraded).
    pub(super) fn parse(json: &[u8]) -> anyhow::Result<Checkpoint> {
        let mut doc: Checkpoint = serde_json::from_slice(json)?;
        if doc.version > VERSION {
            anyhow::bail!(
                "format {} is newer than this controller's ({VERSION}): left for a newer controller",
                doc.version
            );
        }
        // 0 → 1: the same fields
        doc.version = VERSION;
        Ok(doc)
    }

    /// The failovers recorded (a new leader took over), not counting warnings.
    pub(super) fn takeovers(&self) -> usize {
        self.failovers
            .iter()
            .filter(|f| f.get("new_leader").is_some())
            .count()
    }
}

fn key(id: &str) -> String {
    cluster::state_key(&format!("sweeps/{id}"))
}

/// Every sweep checkpointed in etcd, in the order they were submitted (those that cannot be read
/// are logged and left out).
pub(super) async fn load_all(fence: &cluster::Fence) -> anyhow::Result<Vec<Checkpoint>> {
    let mut docs: Vec<Checkpoint> = Vec::new();
    for (key, value) in fence.list(&cluster::state_key("sweeps/")).await? {
        match Checkpoint::parse(&value) {
            Ok(d) => docs.push(d),
            Err(e) => tracing::warn!("etcd: {key} is not a sweep checkpoint: {e:#}"),
        }
    }
    docs.sort_by(|a, b| a.submitted_at_unix_s.total_cmp(&b.submitted_at_unix_s));
    Ok(docs)
}

/// Writes a checkpoint, fenced (nothing without etcd). A refused write means another controller
/// leads now.
pub(super) async fn save(fence: Option<&cluster::Fence>, doc: &Checkpoint) -> anyhow::Result<()> {
    match fence {
        Some(f) => {
            let json = serde_json::to_vec(doc).context("a checkpoint that is not JSON")?;
            f.put(&key(&doc.id), &json).await
        }
        None => Ok(()),
    }
}

/// Now, in Unix seconds.
pub(super) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep_cmd(flags: &[&str]) -> crate::cmd::sweep_args::SweepArgs {
        use clap::Parser;
        let argv = ["benchctl", "sweep"].iter().chain(flags);
        let cli = crate::cli::Cli::try_parse_from(argv).unwrap();
        let crate::cli::Command::Sweep(cmd) = cli.command else {
            unreachable!()
        };
        cmd.args
    }

    #[test]
    fn a_checkpoint_round_trips_without_the_api_key() {
        let args = sweep_cmd(&[
            "--base-url",
            "http://127.0.0.1:9",
            "--api-key",
            "sk-secret",
            "--io",
            "64x32",
            "--concurrency",
            "1,2",
        ]);
        let plan = crate::cmd::sweep_config::resolve(&args).unwrap();
        let doc = Checkpoint::queued(
            "x".into(),
            Spec {
                plan,
                target: crate::cmd::sweep_remote::sweep_target(&args.common),
            },
            "http://a".into(),
        );
        let json = serde_json::to_string(&doc).unwrap();
        assert!(!json.contains("sk-secret"), "{json}");
        assert!(json.contains(r#""status":"queued""#), "{json}");
        assert!(json.contains(r#""version":1"#), "{json}");
        let back = Checkpoint::parse(json.as_bytes()).unwrap();
        assert_eq!(back.spec.target.target.base_url, "http://127.0.0.1:9");
        assert_eq!(back.spec.target.target.api_key, None);
        assert_eq!(back.spec.plan, doc.spec.plan);
        assert_eq!(back.status, Status::Queued);
    }

    /// Written by the code before checkpoints had a version (see the fixture's commit).
    const V0: &str = include_str!("../../../tests/fixtures/checkpoint-v0.json");

    #[test]
    fn a_checkpoint_written_before_versioning_still_loads() {
        let raw: Checkpoint = serde_json::from_str(V0).unwrap();
        assert_eq!(raw.version, 0, "no version field: 0");
        let d = Checkpoint::parse(V0.as_bytes()).unwrap();
        assert_eq!(d.version, VERSION);
        assert_eq!(d.id, "m_tp2_20260101-120000");
        assert_eq!(d.status, Status::Running);
        assert!(d.status.is_pending());
        assert_eq!(d.submitted_at_unix_s, 1767268800.25);
        assert_eq!(d.leader, "http://10.0.0.2:50051");
        assert_eq!(d.in_flight.as_deref(), Some("c4_in1024_out128"));
        assert_eq!(d.done_tests, ["c1_in1024_out128"]);
        assert_eq!(d.failovers.len(), 1);
        assert_eq!(d.failovers[0]["previous_leader"], "http://10.0.0.1:50051");
        assert_eq!(d.failovers[0]["tests_kept"], 1);
        assert_eq!(d.takeovers(), 1);
        assert_eq!((d.error, d.cancel_requested, d.gpus), (None, false, 2));
        assert_eq!(d.spec.target.workers, Some(2));
        let t = &d.spec.target.target;
        assert_eq!(t.base_url, "http://127.0.0.1:8000");
        assert_eq!(t.model_name.as_deref(), Some("m"));
        assert_eq!(t.timeout, std::time::Duration::from_secs(600));
        assert_eq!(t.api_key, None);
        let p = &d.spec.plan;
        assert_eq!(p.concurrency, [1, 4, 16]);
        assert_eq!(p.io.len(), 2);
        assert_eq!((p.io[0].input_len, p.io[0].output_len), (1024, 128));
        assert_eq!(
            p.threshold.as_ref().map(|t| t.as_str()),
            Some("p99_ttft:2000 tpot:50")
        );
        assert!(p.thresholds().is_some());
        assert_eq!((p.tp, p.served_model.as_str()), (2, "m"));
        assert_eq!(p.metadata["gpu"], "h200");
        assert_eq!(d.spec.max_concurrency(), 16);
        // the plan a v0 checkpoint holds is the one these flags resolve to today
        let mut now = crate::cmd::sweep_config::resolve(&sweep_cmd(&[
            "--base-url",
            "http://127.0.0.1:8000",
            "--io",
            "1024x128,128x1024",
            "--concurrency",
            "1,4,16",
            "--threshold",
            "p99_ttft:2000 tpot:50",
            "--tp",
            "2",
            "--metadata",
            "gpu=h200",
        ]))
        .unwrap();
        now.served_model = "m".into();
        // (a v0 plan has no version, and no server metrics)
        now.version = 0;
        now.server_metrics = crate::metrics_source::MetricsSource::Off;
        now.model_label = "m".into();
        assert_eq!(*p, now);
    }

    #[test]
    fn a_newer_format_is_left_alone() {
        let mut v: serde_json::Value = serde_json::from_str(V0).unwrap();
        v["version"] = (VERSION + 1).into();
        let Err(e) = Checkpoint::parse(v.to_string().as_bytes()) else {
            panic!("a newer format was read");
        };
        assert!(format!("{e:#}").contains("newer"), "{e:#}");
    }

    #[test]
    fn changes_apply_in_order() {
        let mut d = Checkpoint::parse(V0.as_bytes()).unwrap();
        d.apply(Change::Running {
            leader: "http://b".into(),
            failovers: vec![],
            done_tests: vec!["t1".into()],
            gpus: 1,
        });
        assert_eq!(
            (d.status, d.gpus, d.in_flight.is_none()),
            (Status::Running, 2, true)
        );
        d.apply(Change::TestStarted("t2".into()));
        assert_eq!(d.in_flight.as_deref(), Some("t2"));
        d.apply(Change::TestCommitted("t2".into()));
        assert_eq!((d.in_flight.as_deref(), d.done_tests.len()), (None, 2));
        d.apply(Change::CancelRequested);
        d.apply(Change::Finished {
            leader: "http://b".into(),
            status: Status::Interrupted,
            error: None,
        });
        assert!(d.cancel_requested);
        assert_eq!(
            (d.status, d.leader.as_str()),
            (Status::Interrupted, "http://b")
        );
    }
}
