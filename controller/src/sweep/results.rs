//! A sweep's result directory (brief §4): the original scripts' layout, written so that a crash loses at
//! most the test in flight.
//!
//! ```text
//! <model>_tp<N>_dtype<dtype>_<YYYYmmdd_HHMMSS>/
//!   benchctl_sweep.json            the plan (for --resume)
//!   <model>_vllm_result.json       a JSON array, one object per finished test (the commit point)
//!   gpu_utilization_c<C>_in<I>_out<O>[_r<k>]/raw.log, result.log   (a rate sweep: r<R>, e.g. r2.5)
//!   client_log/<test>.log          each test's printed summary and verdict
//!   requests/<test>.jsonl          each test's per-request records (pooling, --resume)
//!   summary.json, summary.csv, summary.md   (see summary.rs)
//! ```
//!
//! A test's files are written first and its entry in the array last, each file atomically
//! (temporary file + rename), so the array only names tests whose files are complete.

use std::path::{Path, PathBuf};

use anyhow::Context;
use loadgen::RequestRecord;
use serde::{Deserialize, Serialize};

use super::axis::Level;
use super::grid::Io;
use crate::output::write_atomic;

/// One test: a level (concurrency or rate) of a combination, and which run of it (1-based; >1
/// with --repeats).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TestKey {
    pub io: Io,
    #[serde(flatten)]
    pub level: Level,
    pub run: u32,
}

impl TestKey {
    /// `c32_in1024_out1024` (run 1), `c32_in1024_out1024_r2`; a rate: `r2.5_in1024_out1024`.
    pub fn id(&self) -> String {
        let base = format!(
            "{}_in{}_out{}",
            self.level.tag(),
            self.io.input_len,
            self.io.output_len
        );
        if self.run > 1 {
            format!("{base}_r{}", self.run)
        } else {
            base
        }
    }

    /// The original scripts' GPU directory (run 1), suffixed `_r<k>` for later runs.
    pub fn gpu_dir(&self) -> String {
        let base = format!("gpu_utilization_{}", self.tail());
        if self.run > 1 {
            format!("{base}_r{}", self.run)
        } else {
            base
        }
    }

    /// `c32_in1024_out512` without the run.
    fn tail(&self) -> String {
        format!(
            "{}_in{}_out{}",
            self.level.tag(),
            self.io.input_len,
            self.io.output_len
        )
    }

    /// The server's metrics samples (`server_metrics_c32_in1024_out512[_r<k>]`): the GPU
    /// directory's name with `server_metrics_` for `gpu_utilization_`.
    pub fn server_metrics_dir(&self) -> String {
        let gpu = self.gpu_dir();
        match gpu.strip_prefix("gpu_utilization_") {
            Some(rest) => format!("server_metrics_{rest}"),
            None => format!("server_metrics_{gpu}"),
        }
    }

    /// Reads the key back from a result object.
    pub fn of(entry: &serde_json::Value) -> Option<TestKey> {
        let n = |k: &str| entry.get(k).and_then(|v| v.as_u64()).map(|v| v as u32);
        Some(TestKey {
            io: Io {
                input_len: n("input_len")?,
                output_len: n("output_len")?,
            },
            level: Level::of(entry)?,
            run: n("run").unwrap_or(1),
        })
    }
}

/// The result directory of one sweep. Held by one process at a time (an exclusive `flock` on
/// `DIR/.lock`), so that two processes never rewrite the same array.
pub struct ResultDir {
    pub dir: PathBuf,
    pub model_label: String,
    _lock: std::fs::File,
    /// The finished tests, in the order they ran.
    entries: Vec<serde_json::Value>,
}

impl ResultDir {
    /// The result array's file name.
    pub fn result_file_name(model_label: &str) -> String {
        format!("{model_label}_vllm_result.json")
    }

    pub fn result_path(&self) -> PathBuf {
        self.dir.join(Self::result_file_name(&self.model_label))
    }

    /// A new, empty directory.
    pub fn create(dir: PathBuf, model_label: String) -> anyhow::Result<ResultDir> {
        if dir.exists() {
            anyhow::bail!(
                "{} already exists; use --resume {} to continue it",
                dir.display(),
                dir.display()
            );
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the result directory {}", dir.display()))?;
        let d = ResultDir {
            _lock: lock(&dir)?,
            dir,
            model_label,
            entries: Vec::new(),
        };
        d.write_array()?;
        Ok(d)
    }

    /// An existing directory (`--resume`): the finished tests are read back; temporary files of an
    /// interrupted write are removed.
    pub fn open(dir: PathBuf, model_label: String) -> anyhow::Result<ResultDir> {
        let mut d = ResultDir {
            _lock: lock(&dir)?,
            dir,
            model_label,
            entries: Vec::new(),
        };
        let path = d.result_path();
        d.entries = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| {
                format!(
                    "--resume: {} is not a JSON array of results",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        for e in &d.entries {
            TestKey::of(e).with_context(|| {
                format!(
                    "--resume: an entry of {} has no concurrency (or rate)/input_len/output_len",
                    path.display()
                )
            })?;
        }
        remove_temporaries(&d.dir);
        Ok(d)
    }

    pub fn entries(&self) -> &[serde_json::Value] {
        &self.entries
    }

    pub fn find(&self, key: &TestKey) -> Option<&serde_json::Value> {
        self.entries
            .iter()
            .find(|e| TestKey::of(e).as_ref() == Some(key))
    }

    /// The finished tests' entries (a test aborted because every request failed is not one:
    /// it runs again on `--resume`).
    pub fn kept(&self) -> impl Iterator<Item = &serde_json::Value> {
        self.entries.iter().filter(|e| e.get("aborted").is_none())
    }

    /// Runs of `(io, level)` already finished.
    pub fn runs_of(&self, io: Io, level: Level) -> Vec<TestKey> {
        let mut v: Vec<TestKey> = self
            .kept()
            .filter_map(TestKey::of)
            .filter(|k| k.io == io && k.level == level)
            .collect();
        v.sort();
        v
    }

    pub fn requests_path(&self, key: &TestKey) -> PathBuf {
        self.dir
            .join("requests")
            .join(format!("{}.jsonl", key.id()))
    }

    pub fn client_log_path(&self, key: &TestKey) -> PathBuf {
        self.dir
            .join("client_log")
            .join(format!("{}.log", key.id()))
    }

    /// Reads a finished test's records back.
    pub fn load_records(&self, key: &TestKey) -> anyhow::Result<Vec<RequestRecord>> {
        let mut out = Vec::new();
        self.each_record(key, |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// Reads a finished test's records back one at a time (never the whole file in memory).
    pub fn each_record(
        &self,
        key: &TestKey,
        mut f: impl FnMut(RequestRecord) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        use std::io::BufRead;
        let p = self.requests_path(key);
        let file = std::fs::File::open(&p)
            .with_context(|| format!("cannot read the records of test {}", key.id()))?;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line =
                line.with_context(|| format!("cannot read the records of test {}", key.id()))?;
            let r = serde_json::from_str(&line)
                .with_context(|| format!("{} line {}: not a request record", p.display(), i + 1))?;
            f(r)?;
        }
        Ok(())
    }

    /// Commits a finished test: its records and log first, then the array.
    pub fn commit(
        &mut self,
        key: &TestKey,
        entry: impl Serialize,
        records: &loadgen::RecordStore,
        client_log: &str,
    ) -> anyhow::Result<()> {
        let entry = serde_json::to_value(entry)?;
        crate::output::write_records(&self.requests_path(key), records, false)?;
        write_atomic(&self.client_log_path(key), client_log.as_bytes())?;
        self.entries
            .retain(|e| TestKey::of(e).as_ref() != Some(key));
        self.entries.push(entry);
        self.write_array()
    }

    fn write_array(&self) -> anyhow::Result<()> {
        write_atomic(
            &self.result_path(),
            &serde_json::to_vec_pretty(&self.entries)?,
        )
    }
}

/// Takes the directory's lock, or says who holds it.
fn lock(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|_| {
        anyhow::anyhow!(
            "another benchctl sweep is writing {} (it holds {}); wait for it or stop it",
            dir.display(),
            path.display()
        )
    })?;
    Ok(f)
}

/// Removes `.tmp*` files left by a write that a kill interrupted.
fn remove_temporaries(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().starts_with(".tmp") {
                let _ = std::fs::remove_file(&p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--resume` reads the array and writes it back: every number must come back as the same
    /// text, or the finished tests are not byte-identical (serde_json's default float parser
    /// is off by one ulp on values like these; `float_roundtrip` makes it exact).
    #[test]
    fn resume_writes_the_finished_tests_back_byte_for_byte() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        let values = [
            1.4892055499999999,
            9.883113999999999,
            12.252233050000001,
            445.90113567206083,
            0.1 + 0.2,
        ];
        let entries: Vec<serde_json::Value> = values
            .iter()
            .enumerate()
            .map(|(i, v)| serde_json::json!({"concurrency": i + 1, "input_len": 1, "output_len": 1, "run": 1, "x": v}))
            .collect();
        let text = serde_json::to_vec_pretty(&entries).unwrap();
        let path = dir.join(ResultDir::result_file_name("m"));
        std::fs::write(&path, &text).unwrap();
        let d = ResultDir::open(dir.clone(), "m".into()).unwrap();
        d.write_array().unwrap();
        assert_eq!(
            String::from_utf8(std::fs::read(&path).unwrap()).unwrap(),
            String::from_utf8(text).unwrap()
        );
    }

    fn key(c: u32, run: u32) -> TestKey {
        TestKey {
            io: Io {
                input_len: 1024,
                output_len: 512,
            },
            level: Level::Concurrency(c),
            run,
        }
    }

    #[test]
    fn names_follow_the_seed() {
        assert_eq!(key(32, 1).id(), "c32_in1024_out512");
        assert_eq!(key(32, 1).gpu_dir(), "gpu_utilization_c32_in1024_out512");
        assert_eq!(key(8, 3).gpu_dir(), "gpu_utilization_c8_in1024_out512_r3");
        assert_eq!(
            key(8, 3).server_metrics_dir(),
            "server_metrics_c8_in1024_out512_r3"
        );
        let rate = TestKey {
            level: Level::Rate(crate::sweep::axis::Rate::from_per_s(2.5).unwrap()),
            ..key(1, 2)
        };
        assert_eq!(rate.id(), "r2.5_in1024_out512_r2");
        assert_eq!(rate.gpu_dir(), "gpu_utilization_r2.5_in1024_out512_r2");
        assert_eq!(
            ResultDir::result_file_name("Qwen3-32B"),
            "Qwen3-32B_vllm_result.json"
        );
    }

    #[test]
    fn commit_then_reopen() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("m_tp1_dtypeauto_x");
        let mut d = ResultDir::create(dir.clone(), "m".into()).unwrap();
        assert!(
            ResultDir::create(dir.clone(), "m".into()).is_err(),
            "never overwritten"
        );
        let k = key(4, 1);
        let entry =
            serde_json::json!({"concurrency": 4, "input_len": 1024, "output_len": 512, "run": 1});
        let rec = RequestRecord {
            request_id: "r0".into(),
            text: "not kept".into(),
            ..Default::default()
        };
        d.commit(
            &k,
            entry.clone(),
            &loadgen::RecordStore::from(vec![rec]),
            "log",
        )
        .unwrap();
        std::fs::write(dir.join(".tmpXYZ"), b"half").unwrap();
        drop(d);
        let d = ResultDir::open(dir.clone(), "m".into()).unwrap();
        assert_eq!(d.entries(), &[entry]);
        assert_eq!(d.runs_of(k.io, Level::Concurrency(4)), vec![k]);
        let back = d.load_records(&k).unwrap();
        assert_eq!(back[0].request_id, "r0");
        assert!(back[0].text.is_empty());
        assert!(!dir.join(".tmpXYZ").exists());
        // one writer at a time
        let e = ResultDir::open(dir.clone(), "m".into()).err().unwrap();
        assert!(e.to_string().contains("another benchctl sweep"), "{e}");
        drop(d);
        ResultDir::open(dir, "m".into()).unwrap();
    }
}
