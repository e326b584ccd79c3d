//! One side of a comparison read from disk: a sweep's result directory or a result file
//! (`bench --save-result`, or a sweep's `<model>_vllm_result.json`), or a comma list of them
//! (`A1,A2,A3`: runs of the same tests), with each test's per-request records, run by run (a
//! sweep's `--repeats` are its tests' runs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

use loadgen::RequestRecord;

use super::bootstrap::{Runs, Side};
use super::metric::Sample;
use crate::dashboard::data::{Io, Source, SweepView, io_of, level_of};
use crate::sweep::axis::Level;
use crate::sweep::results::TestKey;

/// A test of a comparison: its combination and concurrency (or rate).
pub type TestId = (Io, Level);

/// One result (a sweep, or a bench run).
pub struct Run {
    /// The name printed for it: the directory's (or file's) name.
    pub name: String,
    /// Each test's runs.
    pub tests: BTreeMap<TestId, Runs>,
    /// Each result file or sweep directory it was read from (`A1,A2,A3`: 3), by name, with the
    /// page's view of it (boundaries, frontier).
    pub views: Vec<(String, SweepView)>,
}

impl Run {
    /// The first source's view: the axis and thresholds of the side.
    pub fn view(&self) -> &SweepView {
        &self.views[0].1
    }

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
        let mut by: BTreeMap<TestId, Vec<Side>> = BTreeMap::new();
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
            by.entry((io, c))
                .or_default()
                .push(side(&read_records(&records)?, e));
        }
        let tests = by
            .into_iter()
            .map(|(id, runs)| (id, Runs::new(runs)))
            .collect();
        Ok(Run {
            name: source.name(),
            tests,
            views: vec![(source.name(), view)],
        })
    }

    /// `A` or a comma list `A1,A2,A3` of result files or sweep directories: one side whose
    /// tests have the runs of all of them (the page's view is the first's).
    pub fn load_list(spec: &str) -> anyhow::Result<Run> {
        let paths: Vec<&str> = spec.split(',').map(str::trim).collect();
        if paths.iter().any(|p| p.is_empty()) {
            bail!("benchctl compare {spec:?}: an empty name in the comma list (expected A1,A2,A3)");
        }
        let mut runs = paths
            .iter()
            .map(|p| Run::load(Path::new(p)))
            .collect::<anyhow::Result<Vec<Run>>>()?;
        let mut first = runs.remove(0);
        if runs.is_empty() {
            return Ok(first);
        }
        let mut names = vec![first.name.clone()];
        for r in runs {
            names.push(r.name);
            first.views.extend(r.views);
            for (id, more) in r.tests {
                let merged = match first.tests.remove(&id) {
                    Some(have) => have.extend(more),
                    None => more,
                };
                first.tests.insert(id, merged);
            }
        }
        first.name = names.join(",");
        Ok(first)
    }
}

/// One run of a test: its requests and the throughputs its result measured.
fn side(records: &[RequestRecord], entry: &Value) -> Side {
    let n = |k: &str| entry.get(k).and_then(Value::as_f64);
    Side {
        samples: Sample::of(records),
        output_throughput: n("output_throughput"),
        request_throughput: n("request_throughput"),
        total_token_throughput: n("total_token_throughput"),
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
