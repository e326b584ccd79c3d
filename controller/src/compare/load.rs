//! One side of a comparison read from disk: a sweep's result directory or a result file
//! (`bench --save-result`, or a sweep's `<model>_vllm_result.json`), with each test's
//! per-request records (runs of one test pooled, as the sweep's verdicts pool them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use loadgen::RequestRecord;

use super::bootstrap::Side;
use super::metric::Sample;
use crate::dashboard::data::{Io, Source, SweepView, io_of, level_of};
use crate::sweep::axis::Level;
use crate::sweep::results::TestKey;

/// A test of a comparison: its combination and concurrency (the runs pooled).
/// A test: its combination and its concurrency (or rate).
pub type TestId = (Io, Level);

/// One result (a sweep, or a bench run).
pub struct Run {
    /// The name printed for it: the directory's (or file's) name.
    pub name: String,
    pub tests: BTreeMap<TestId, Side>,
    /// The page's view of it (boundaries, frontier).
    pub view: SweepView,
}

impl Run {
    /// Reads `path`; `what` names it in errors (`A`, `B`…).
    pub fn load(path: &Path) -> anyhow::Result<Run> {
        let source = if path.is_dir() {
            Source::Dir(path.to_path_buf())
        } else if path.is_file() {
            Source::File(path.to_path_buf())
        } else {
            bail!(
                "benchctl compare {}: no such file or directory",
                path.display()
            );
        };
        let Some(file) = source.result_file() else {
            bail!(
                "benchctl compare {}: no *_vllm_result.json in it (not a sweep directory?)",
                path.display()
            );
        };
        let view = SweepView::load(&source, &BTreeMap::new())?;
        let dir = file
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let mut by: BTreeMap<TestId, (Vec<RequestRecord>, Vec<&Value>)> = BTreeMap::new();
        for e in &view.entries {
            if e.get("aborted").is_some_and(|a| !a.is_null()) {
                continue;
            }
            let (Some(io), Some(c)) = (io_of(e), level_of(e)) else {
                continue;
            };
            let records = match TestKey::of(e) {
                Some(k) => dir.join("requests").join(format!("{}.jsonl", k.id())),
                None => crate::output::records_path(&file),
            };
            let slot = by.entry((io, c)).or_default();
            slot.0.extend(read_records(&records)?);
            slot.1.push(e);
        }
        let tests = by
            .into_iter()
            .map(|(id, (records, entries))| (id, side(&records, &entries)))
            .collect();
        Ok(Run {
            name: source.name(),
            tests,
            view,
        })
    }
}

/// The pooled side of a test: its requests, and each throughput as the mean of its runs'.
fn side(records: &[RequestRecord], entries: &[&Value]) -> Side {
    let mean = |k: &str| {
        let v: Vec<f64> = entries.iter().filter_map(|e| e.get(k)?.as_f64()).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    Side {
        samples: Sample::of(records),
        output_throughput: mean("output_throughput"),
        request_throughput: mean("request_throughput"),
        total_token_throughput: mean("total_token_throughput"),
    }
}

fn read_records(path: &Path) -> anyhow::Result<Vec<RequestRecord>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "benchctl compare: cannot read the per-request records {} (the intervals need them)",
            path.display()
        )
    })?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{} line {}: not a request record", path.display(), i + 1))
        })
        .collect()
}
