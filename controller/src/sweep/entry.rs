//! One test's object in the result array (`<model>_vllm_result.json`): vLLM's keys and
//! benchctl's run keys as the test run computed them ([`crate::test_run`]), then what the sweep
//! adds — which test it is, its verdict, its window in Unix time, who ran it, and the GPU
//! statistics of that window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::axis::Level;
use super::grid::Io;
use super::results::TestKey;
use super::threshold::Verdict;
use crate::gpu_stats::GpuStats;
use crate::server_metrics::ServerStats;

/// One finished (or aborted) test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// [`crate::test_run::RESULT_VERSION`] when written.
    #[serde(default, rename = "benchctl_result_version")]
    pub version: u32,
    /// `"concurrency": 32`, or a rate sweep's `"rate": 2.5` (req/s).
    #[serde(flatten)]
    pub level: Level,
    pub input_len: u32,
    pub output_len: u32,
    /// 1-based; > 1 with `--repeats`.
    #[serde(default = "first_run")]
    pub run: u32,
    /// `c32_in1024_out1024`, `…_r2`.
    pub test_id: String,
    #[serde(flatten)]
    pub verdict: Option<EntryVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// The test's window (first send, last end), Unix seconds.
    pub started_at_unix_s: f64,
    pub ended_at_unix_s: f64,
    /// `[{name, records}]`: the workers that ran it.
    #[serde(default)]
    pub load_workers: serde_json::Value,
    #[serde(default)]
    pub start_skew_ms: f64,
    /// Runs it took (> 1 when load workers were lost and it ran again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost_workers: Vec<String>,
    /// Why it is no verdict (every request failed): `--resume` runs it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    #[serde(flatten)]
    pub gpu: Option<GpuStats>,
    #[serde(flatten)]
    pub server: Option<ServerStats>,
    /// vLLM's keys and benchctl's run keys (`completed`, `mean_ttft_ms`, `output_throughput`…).
    #[serde(flatten)]
    pub run_result: serde_json::Map<String, serde_json::Value>,
}

fn first_run() -> u32 {
    1
}

/// The verdict keys of a test judged against `--threshold`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntryVerdict {
    pub threshold: String,
    pub threshold_pass: bool,
    pub threshold_violations: Vec<String>,
}

impl EntryVerdict {
    pub fn new(threshold: &str, v: &Verdict) -> EntryVerdict {
        EntryVerdict {
            threshold: threshold.into(),
            threshold_pass: v.pass,
            threshold_violations: v.violations.clone(),
        }
    }
}

impl Entry {
    pub fn key(&self) -> TestKey {
        TestKey {
            io: Io {
                input_len: self.input_len,
                output_len: self.output_len,
            },
            level: self.level,
            run: self.run,
        }
    }

    /// A number among the run's keys (`output_throughput`, `completed`…).
    pub fn number(&self, key: &str) -> Option<f64> {
        self.run_result.get(key).and_then(serde_json::Value::as_f64)
    }

    /// Requests it sent (completed and failed).
    pub fn requests(&self) -> u64 {
        let n = |k: &str| {
            self.run_result
                .get(k)
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0)
        };
        n("completed") + n("failed")
    }

    /// Not aborted: a verdict the search uses.
    pub fn is_kept(&self) -> bool {
        self.aborted.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry as benchctl wrote it before entries were typed and versioned: it reads back with
    /// every key, and is written back with the same keys and values.
    #[test]
    fn an_entry_of_the_first_format_round_trips() {
        let old: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/result-entry-v0.json"))
                .unwrap();
        let e: Entry = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(e.version, 0);
        assert_eq!(e.key().id(), e.test_id);
        assert!(e.verdict.is_some() && e.gpu.is_some());
        assert!(e.requests() > 0);
        let mut back = serde_json::to_value(&e).unwrap();
        assert_eq!(back["benchctl_result_version"], 0);
        back.as_object_mut()
            .unwrap()
            .remove("benchctl_result_version");
        assert_eq!(back, old);
        let bytes = serde_json::to_vec_pretty(&e).unwrap();
        let again: Entry = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(serde_json::to_vec_pretty(&again).unwrap(), bytes);
    }
}
