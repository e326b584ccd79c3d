//! What the dashboard and the report show, read from a sweep's result directory (or a bare
//! `<model>_vllm_result.json`, as the original scripts' Streamlit page read it). Everything comes from files,
//! so the same page follows a sweep run by this process, by another one, or finished long ago.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use super::server_metrics::ServerSeries;
use crate::sweep::axis::{Axis, Level};
use crate::sweep::frontier::{self, FrontierPoint};

/// Where one sweep's data lives.
#[derive(Clone, Debug)]
pub enum Source {
    /// A `benchctl sweep` result directory.
    Dir(PathBuf),
    /// A result array file (`benchctl dashboard --json-file`).
    File(PathBuf),
}

impl Source {
    /// The result array file.
    pub fn result_file(&self) -> Option<PathBuf> {
        match self {
            Source::File(f) => Some(f.clone()),
            Source::Dir(d) => std::fs::read_dir(d)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with("_vllm_result.json")),
        }
    }

    fn dir(&self) -> PathBuf {
        match self {
            Source::Dir(d) => d.clone(),
            Source::File(f) => f
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Source::Dir(d) => d.file_name(),
            Source::File(f) => f.file_stem(),
        }
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
    }

    /// Changes whenever a file the page shows changes (size and modification time).
    pub fn version(&self) -> String {
        let dir = self.dir();
        let mut parts = vec![];
        let files = [self.result_file(), Some(dir.join("summary.json"))];
        for f in files.into_iter().flatten() {
            if let Ok(m) = std::fs::metadata(&f) {
                let t = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                parts.push(format!("{}-{t}", m.len()));
            }
        }
        parts.join(".")
    }
}

/// An input/output combination.
pub use crate::sweep::grid::Io;

/// A combination's largest passing and smallest failing concurrency.
pub type Boundary = (Io, Option<f64>, Option<f64>);

/// One bound of the threshold, for the lines on the latency charts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Line {
    /// `ttft`, `tpot`, `itl`, `e2el`.
    pub metric: String,
    /// `mean`, `median`, `p99`…
    pub stat: String,
    pub max_ms: f64,
}

/// One GPU's samples over the sweep.
#[derive(Clone, Debug, Default)]
pub struct GpuSeries {
    pub node: String,
    pub gpu: u32,
    /// (unix_s, utilisation %, memory MiB, temperature °C, power W)
    pub points: Vec<(f64, f64, f64, f64, f64)>,
}

/// A test's window, for the boundaries on the GPU charts.
#[derive(Clone, Debug)]
pub struct Window {
    pub id: String,
    pub start: f64,
    pub end: f64,
}

/// Everything one page shows.
#[derive(Clone, Debug, Default)]
pub struct SweepView {
    pub name: String,
    pub metadata: BTreeMap<String, String>,
    pub entries: Vec<Value>,
    /// `summary.json`, where there is one.
    pub summary: Option<Value>,
    pub thresholds: Vec<Line>,
    pub gpus: Vec<GpuSeries>,
    /// The server's own metrics, a series per test that has samples.
    pub server: Vec<ServerSeries>,
    /// The server kinds the tests detected (`vllm`, `llamacpp`…), where any did.
    pub server_kind: Option<String>,
    pub windows: Vec<Window>,
    pub simulated_target: bool,
    pub simulated_gpus: bool,
    /// `--gpu-hour-cost` (the sweep's, or the report's flag).
    pub gpu_hour_cost: Option<f64>,
}

impl SweepView {
    /// Reads a sweep; `extra` metadata (`--metadata`) is shown beside the sweep's own.
    pub fn load(source: &Source, extra: &BTreeMap<String, String>) -> anyhow::Result<SweepView> {
        let dir = source.dir();
        let entries: Vec<Value> = match source.result_file() {
            Some(f) => match std::fs::read(&f) {
                Ok(b) if b.is_empty() => vec![],
                Ok(b) => match serde_json::from_slice::<Value>(&b)
                    .with_context(|| format!("{} is not JSON", f.display()))?
                {
                    Value::Array(a) => a,
                    // a single `bench --save-result` object
                    v @ Value::Object(_) => vec![v],
                    _ => anyhow::bail!("{} is not a JSON array of results", f.display()),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", f.display())),
            },
            None => vec![],
        };
        let summary: Option<Value> = std::fs::read(dir.join("summary.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let plan: Option<Value> = std::fs::read(dir.join(crate::sweep::plan::PLAN_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());

        let mut metadata = BTreeMap::new();
        if let Some(p) = &plan {
            for k in ["served_model", "tp", "dtype", "search", "repeats"] {
                if let Some(v) = p.get(k) {
                    let v = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    metadata.insert(k.replace("served_model", "model"), v);
                }
            }
            if let Some(m) = p.get("metadata").and_then(Value::as_object) {
                for (k, v) in m {
                    metadata.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
                }
            }
        } else if let Some(e) = entries.first() {
            if let Some(m) = e.get("model_id").and_then(Value::as_str) {
                metadata.insert("model".into(), m.into());
            }
            if let Some(m) = e.get("metadata").and_then(Value::as_object) {
                for (k, v) in m {
                    metadata.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
                }
            }
        }
        metadata.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));

        let threshold = plan
            .as_ref()
            .and_then(|p| p.get("threshold"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                entries
                    .iter()
                    .find_map(|e| e.get("threshold").and_then(Value::as_str))
                    .map(str::to_string)
            });
        let thresholds = threshold
            .and_then(|t| crate::sweep::threshold::Threshold::parse(&t).ok())
            .map(|t| {
                t.bounds()
                    .iter()
                    .map(|b| {
                        let name = b.name();
                        let (stat, metric) = name.rsplit_once('_').unwrap_or(("mean", &name));
                        Line {
                            metric: metric.to_string(),
                            stat: stat.to_string(),
                            max_ms: b.max_ms,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(t) = plan
            .as_ref()
            .and_then(|p| p.get("threshold"))
            .and_then(Value::as_str)
        {
            metadata.insert("threshold".into(), t.into());
        }

        let windows: Vec<Window> = entries
            .iter()
            .filter_map(|e| {
                Some(Window {
                    id: e
                        .get("test_id")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_default(),
                    start: e.get("started_at_unix_s")?.as_f64()?,
                    end: e.get("ended_at_unix_s")?.as_f64()?,
                })
            })
            .collect();
        let gpus = read_gpu_series(&dir, &entries);
        let server = super::server_metrics::read(&dir, &entries);
        let mut kinds: Vec<&str> = entries
            .iter()
            .filter_map(|e| e.get("server_kind").and_then(Value::as_str))
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        let server_kind = (!kinds.is_empty()).then(|| kinds.join(", "));
        Ok(SweepView {
            name: source.name(),
            metadata,
            simulated_target: entries
                .iter()
                .any(|e| e.get("target_is_simulator") == Some(&Value::Bool(true))),
            simulated_gpus: entries
                .iter()
                .any(|e| e.get("gpu_telemetry_simulated") == Some(&Value::Bool(true))),
            entries,
            summary,
            thresholds,
            gpus,
            server,
            server_kind,
            windows,
            gpu_hour_cost: plan
                .as_ref()
                .and_then(|p| p.get("gpu_hour_cost"))
                .and_then(Value::as_f64),
        })
    }

    /// A combination's points on the frontier's axes: `summary.json`'s (pooled over runs),
    /// else each concurrency's first run; the cost from [`Self::gpu_hour_cost`]. Not marked.
    pub fn frontier(&self, io: Io) -> Vec<FrontierPoint> {
        let from_summary: Option<Vec<FrontierPoint>> = self
            .summary_combination(io)
            .and_then(|c| serde_json::from_value(c.get("frontier")?.clone()).ok())
            .filter(|v: &Vec<FrontierPoint>| !v.is_empty());
        let mut v = from_summary.unwrap_or_else(|| self.frontier_of_entries(io));
        for p in &mut v {
            p.cost_per_million_output_tokens = self
                .gpu_hour_cost
                .and_then(|c| frontier::cost_per_million(c, 1.0, p.output_tok_s_per_gpu));
        }
        v
    }

    fn frontier_of_entries(&self, io: Io) -> Vec<FrontierPoint> {
        let tp: f64 = self
            .metadata
            .get("tp")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1.0);
        let mut seen = vec![];
        let mut v = vec![];
        for e in self.entries.iter().filter(|e| io_of(e) == Some(io)) {
            let Some(c) = level_of(e) else {
                continue;
            };
            if seen.contains(&c) {
                continue;
            }
            seen.push(c);
            let (gpus, from) = match frontier::gpus_serving(e) {
                Some(n) => (n as f64, "telemetry"),
                None => (tp.max(1.0), "--tp"),
            };
            let n = |k: &str| e.get(k).and_then(Value::as_f64);
            v.push(FrontierPoint {
                level: c,
                gpus,
                gpus_from: from.into(),
                output_tok_s_per_gpu: n("output_throughput").unwrap_or(0.0) / gpus,
                total_tok_s_per_gpu: n("total_token_throughput").map(|t| t / gpus),
                tok_s_per_user: frontier::interactivity(n("mean_tpot_ms")),
                tok_s_per_user_median: frontier::interactivity(n("median_tpot_ms")),
                tok_s_per_user_p90: frontier::interactivity(n("p90_tpot_ms")),
                joules_per_output_token: n("gpu_joules_per_output_token"),
                cost_per_million_output_tokens: None,
                pass: e.get("threshold_pass").and_then(Value::as_bool),
                on_frontier: false,
            });
        }
        v
    }

    fn summary_combination(&self, io: Io) -> Option<&Value> {
        self.summary.as_ref()?["combinations"]
            .as_array()?
            .iter()
            .find(|c| {
                c["input_len"].as_u64() == Some(io.input_len.into())
                    && c["output_len"].as_u64() == Some(io.output_len.into())
            })
    }

    /// The input/output combinations, in the order they first appear.
    pub fn combinations(&self) -> Vec<Io> {
        let mut v = vec![];
        for e in &self.entries {
            if let Some(io) = io_of(e)
                && !v.contains(&io)
            {
                v.push(io);
            }
        }
        v
    }

    /// `(concurrency, value)` of `key` per combination: the statistic of all runs' requests
    /// pooled, as the verdict judged it (from `summary.json`); without a summary, the runs' own
    /// values, averaged where a concurrency ran several times.
    pub fn series(&self, io: Io, key: &str) -> Vec<(f64, f64)> {
        let pooled: Vec<(f64, f64)> = self
            .summary
            .as_ref()
            .and_then(|s| s["combinations"].as_array())
            .and_then(|cs| {
                cs.iter().find(|c| {
                    c["input_len"].as_u64() == Some(io.input_len.into())
                        && c["output_len"].as_u64() == Some(io.output_len.into())
                })
            })
            .and_then(|c| c["points"].as_array())
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        let c = Level::of(p)?.value();
                        let v = p["pooled"]
                            .get(key)
                            .or_else(|| p.get(key))
                            .and_then(Value::as_f64)?;
                        Some((c, v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !pooled.is_empty() {
            return pooled;
        }
        let mut by_c: BTreeMap<Level, Vec<f64>> = BTreeMap::new();
        for e in &self.entries {
            if io_of(e) != Some(io) {
                continue;
            }
            let (Some(c), Some(v)) = (level_of(e), e.get(key).and_then(Value::as_f64)) else {
                continue;
            };
            by_c.entry(c).or_default().push(v);
        }
        by_c.into_iter()
            .map(|(c, v)| (c.value(), v.iter().sum::<f64>() / v.len() as f64))
            .collect()
    }

    /// The largest passing concurrency per combination: from `summary.json` (pooled verdicts)
    /// where there is one, else from the tests' own verdicts.
    pub fn max_passing(&self) -> Vec<Boundary> {
        self.combinations()
            .into_iter()
            .map(|io| {
                let from_summary = self.summary.as_ref().and_then(|s| {
                    s["combinations"].as_array()?.iter().find_map(|c| {
                        (c["input_len"].as_u64() == Some(io.input_len.into())
                            && c["output_len"].as_u64() == Some(io.output_len.into()))
                        .then(|| (c["max_passing"].as_f64(), c["first_failing"].as_f64()))
                    })
                });
                let (max, first) = from_summary.unwrap_or_else(|| {
                    let verdicts: Vec<(Level, bool)> = self
                        .entries
                        .iter()
                        .filter(|e| io_of(e) == Some(io))
                        .filter_map(|e| Some((level_of(e)?, e.get("threshold_pass")?.as_bool()?)))
                        .collect();
                    (
                        verdicts
                            .iter()
                            .filter(|v| v.1)
                            .map(|v| v.0)
                            .max()
                            .map(Level::value),
                        verdicts
                            .iter()
                            .filter(|v| !v.1)
                            .map(|v| v.0)
                            .min()
                            .map(Level::value),
                    )
                });
                (io, max, first)
            })
            .collect()
    }

    /// Whether the server's metrics were scraped: samples, or a server kind a test detected.
    pub fn has_server_metrics(&self) -> bool {
        !self.server.is_empty() || self.server_kind.is_some()
    }

    /// Whether any test's result has a value (not null) for `key`.
    pub fn any_entry_has(&self, key: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.get(key).is_some_and(|v| !v.is_null()))
    }

    /// What the sweep varied: its summary's `axis`, else whether its tests have a `rate`.
    pub fn axis(&self) -> Axis {
        let from_summary = self
            .summary
            .as_ref()
            .and_then(|s| s.get("axis"))
            .and_then(|a| serde_json::from_value(a.clone()).ok());
        from_summary.unwrap_or_else(|| {
            if self.entries.iter().any(|e| e.get("rate").is_some()) {
                Axis::Rate
            } else {
                Axis::Concurrency
            }
        })
    }

    /// The sweep's state as the summary says (`running`, `done`, …), or `-`.
    pub fn status(&self) -> String {
        self.summary
            .as_ref()
            .and_then(|s| s["status"].as_str())
            .unwrap_or("-")
            .to_string()
    }
}

pub fn io_of(e: &Value) -> Option<Io> {
    // sweep entries name their combination; a bench result has only its random lengths
    let i = e.get("input_len").and_then(Value::as_u64);
    let o = e.get("output_len").and_then(Value::as_u64);
    let (input_len, output_len) = match (i, o) {
        (Some(i), Some(o)) => (i, o),
        _ => {
            let n = e.get("completed")?.as_u64()?.max(1);
            (
                e.get("total_input_tokens")?.as_u64()? / n,
                e.get("total_output_tokens")?.as_u64()? / n,
            )
        }
    };
    Some(Io {
        input_len: u32::try_from(input_len).ok()?,
        output_len: u32::try_from(output_len).ok()?,
    })
}

/// A sweep test's level (`concurrency` or `rate`), else a bench result's `max_concurrency`.
pub fn level_of(e: &Value) -> Option<Level> {
    Level::of(e).or_else(|| {
        let c = e.get("max_concurrency")?.as_u64()?;
        Some(Level::Concurrency(u32::try_from(c).ok()?))
    })
}

pub fn concurrency_of(e: &Value) -> Option<u64> {
    e.get("concurrency")
        .or_else(|| e.get("max_concurrency"))
        .and_then(Value::as_u64)
}

/// Every `samples.csv` under the test directories, merged per node and GPU, in time order.
fn read_gpu_series(dir: &Path, entries: &[Value]) -> Vec<GpuSeries> {
    let mut by: BTreeMap<(String, u32), GpuSeries> = BTreeMap::new();
    let mut files: Vec<PathBuf> = entries
        .iter()
        .filter_map(|e| {
            let key = crate::sweep::results::TestKey::of(e)?;
            Some(dir.join(key.gpu_dir()).join("samples.csv"))
        })
        .collect();
    files.dedup();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let c: Vec<&str> = line.split(',').collect();
            if c.len() != 7 {
                continue;
            }
            let num = |i: usize| c[i].parse::<f64>().ok();
            let (Some(t), Some(gpu), Some(u), Some(m), Some(temp), Some(p)) = (
                num(0),
                c[2].parse::<u32>().ok(),
                num(3),
                num(4),
                num(5),
                num(6),
            ) else {
                continue;
            };
            by.entry((c[1].to_string(), gpu))
                .or_insert_with(|| GpuSeries {
                    node: c[1].to_string(),
                    gpu,
                    points: vec![],
                })
                .points
                .push((t, u, m, temp, p));
        }
    }
    let mut v: Vec<GpuSeries> = by.into_values().collect();
    for s in &mut v {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    v
}

/// The sweep directories under `root` (newest first): a directory holding a result array.
pub fn list(root: &Path) -> Vec<PathBuf> {
    let mut v: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && Source::Dir(p.clone()).result_file().is_some())
        .map(|p| {
            let t = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            (t, p)
        })
        .collect();
    v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    v.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn charts_plot_the_pooled_statistic_the_verdict_judged() {
        // two runs at c=8: their own p99s average to 150, the pooled p99 is 290
        let entries = vec![
            json!({"concurrency": 8, "input_len": 64, "output_len": 32, "run": 1, "p99_ttft_ms": 100.0}),
            json!({"concurrency": 8, "input_len": 64, "output_len": 32, "run": 2, "p99_ttft_ms": 200.0}),
        ];
        let mut v = SweepView {
            entries,
            ..Default::default()
        };
        assert_eq!(v.series(Io::new(64, 32), "p99_ttft_ms"), vec![(8.0, 150.0)]);
        v.summary = Some(json!({"combinations": [{"input_len": 64, "output_len": 32,
            "points": [{"concurrency": 8, "output_throughput": 10.0, "pooled": {"p99_ttft_ms": 290.0}}]}]}));
        assert_eq!(v.series(Io::new(64, 32), "p99_ttft_ms"), vec![(8.0, 290.0)]);
        assert_eq!(
            v.series(Io::new(64, 32), "output_throughput"),
            vec![(8.0, 10.0)]
        );
    }
}
