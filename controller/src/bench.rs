//! `benchctl bench`: one configuration against a running server — preflight, prompts, the run,
//! token accounting, the summary and the result files.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use loadgen::report::{RunInfo, parse_goodput, render_text, result_json, summarize};
use loadgen::{
    Arrivals, BodySpec, DatasetSpec, EndpointKind, ErrorKind, HttpClient, RequestRecord, Target,
    Tokenizer,
};
use tokio_util::sync::CancellationToken;

use crate::cli::{BenchArgs, CommonArgs, DatasetKind};
use crate::local::{GpuSelection, LocalSystem, TelemetrySpec};
use crate::service::JobSpec;
use crate::telemetry::NodeWindow;

/// Everything a run needs, resolved from the flags and the server before any load is sent.
pub struct Prepared {
    pub client: HttpClient,
    pub tokenizer: Tokenizer,
    pub model: String,
    pub target_is_simulator: bool,
}

/// Runs `benchctl bench`.
pub async fn run(mut args: BenchArgs) -> anyhow::Result<ExitCode> {
    sim::with_sim(args.common.sim, |sim_url| async move {
        if let Some(url) = sim_url {
            args.common.base_url = url;
        }
        run_against(args).await
    })
    .await
}

async fn run_against(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let percentiles =
        loadgen::stats::parse_percentiles(&args.common.percentiles).map_err(anyhow::Error::msg)?;
    let goodput = if args.goodput.is_empty() {
        Vec::new()
    } else {
        parse_goodput(&args.goodput.join(" ")).map_err(anyhow::Error::msg)?
    };
    let arrivals = Arrivals {
        rate: args.request_rate,
        burstiness: args.burstiness,
        seed: args.common.seed,
    };
    arrivals.validate()?;
    if args.max_concurrency == Some(0) {
        bail!("--max-concurrency must be at least 1, got 0");
    }
    if args.num_prompts == 0 {
        bail!("--num-prompts must be at least 1, got 0");
    }

    // GPU telemetry first: no NVIDIA driver is an error before any load is sent.
    let gpus = match (&args.common.gpu_num, &args.common.gpus) {
        (Some(n), _) => Some(GpuSelection::First(*n)),
        (None, Some(v)) => Some(GpuSelection::Indices(v.clone())),
        (None, None) => None,
    };
    let telemetry = gpus.map(|gpus| TelemetrySpec {
        gpus,
        source: args.common.telemetry_source,
        interval: args.common.telemetry_interval,
    });
    // The controller, a load worker and the agent in this process, over loopback gRPC.
    let system = LocalSystem::start(telemetry, args.common.workers.unwrap_or(1)).await?;
    let result = measure(&args, percentiles, goodput, arrivals, &system).await;
    system.stop().await;
    result
}

async fn measure(
    args: &BenchArgs,
    percentiles: Vec<f64>,
    goodput: Vec<loadgen::report::GoodputBound>,
    arrivals: Arrivals,
    system: &LocalSystem,
) -> anyhow::Result<ExitCode> {
    let prep = prepare(
        &args.common,
        args.max_concurrency.unwrap_or(args.num_prompts.min(10_000)),
    )
    .await?;
    let dataset = dataset_spec(args);
    eprintln!(
        "building {} prompts ({:?}) with tokenizer {}",
        args.num_prompts,
        args.dataset,
        prep.tokenizer.id()
    );
    // the warm-up gets prompts of its own (cycled past 1000), so that a server with prefix
    // caching does not serve measured prompts from its cache
    let warmup_distinct = args.warmup_requests.min(1000);
    let mut prompts = loadgen::dataset::build(
        &dataset,
        args.num_prompts + warmup_distinct,
        &prep.tokenizer,
        args.common.seed,
    )
    .await?;
    let warmup_prompts = prompts.split_off(args.num_prompts.min(prompts.len()));

    if !args.common.no_preflight {
        preflight(&prep.client, &prompts[0]).await?;
    }

    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: cancelling requests in flight and writing what was measured");
            on_signal.cancel();
        }
    });

    let bar = progress_bar(args.num_prompts as u64, args.common.quiet);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ticker = {
        let (bar, done) = (bar.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                bar.set_position(done.load(std::sync::atomic::Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let date = chrono::Local::now();
    let job = JobSpec {
        target_urls: args.common.base_urls(),
        spec: loadgen::wire::request_spec(&args.common.endpoint, prep.client.target()),
        prompts,
        max_concurrency: args.max_concurrency,
        request_rate: arrivals.rate,
        burstiness: arrivals.burstiness,
        seed: arrivals.seed,
        warmup_requests: args.warmup_requests,
        warmup_prompts,
        progress: Some(done.clone()),
        workers: args.common.workers.map(|w| w as usize),
    };
    let run = system.run_job(job);
    tokio::pin!(run);
    let result = tokio::select! {
        r = &mut run => r,
        _ = cancel.cancelled() => {
            system.cancel_job().await;
            run.await
        }
    };
    ticker.abort();
    bar.finish_and_clear();
    let job = result?;
    let load_workers = job.load_workers_json();
    let start_skew_ms = job.start_skew_ns as f64 / 1e6;
    let mut out = loadgen::RunOutput {
        records: job.records,
        start_ns: job.start_ns,
        end_ns: job.end_ns,
        warmup_sent: job.warmup_sent,
        warmup_failed: job.warmup_failed,
        not_sent: job.not_sent,
        panicked: 0,
    };

    let chunk_tokens = {
        let tok = prep.tokenizer.clone();
        let mut records = std::mem::take(&mut out.records);
        let (records, how) = tokio::task::spawn_blocking(move || {
            let how = loadgen::runner::count_tokens(&mut records, Some(&tok));
            (records, how)
        })
        .await?;
        out.records = records;
        how
    };

    let info = RunInfo {
        backend: args.common.backend.as_str().into(),
        endpoint: args.common.endpoint.clone(),
        model_id: prep.model.clone(),
        tokenizer_id: prep.tokenizer.id(),
        num_prompts: args.num_prompts,
        request_rate: args.request_rate,
        burstiness: args.burstiness,
        max_concurrency: args.max_concurrency,
        warmup_requests: out.warmup_sent,
        warmup_failed: out.warmup_failed,
        not_sent: out.not_sent,
        chunk_tokens,
        target_is_simulator: prep.target_is_simulator,
        date,
    };
    let summary = summarize(&out.records, &percentiles, &goodput);
    print!("{}", render_text(&info, &summary));
    std::io::stdout().flush().ok();

    let gpu = match system.has_telemetry() {
        true => {
            let t = system;
            let from = out
                .records
                .iter()
                .map(|r| r.send_ns)
                .min()
                .unwrap_or(out.start_ns);
            let to = out
                .records
                .iter()
                .map(|r| r.end_ns)
                .max()
                .unwrap_or(out.end_ns);
            let nodes = t.window(from, to).await;
            eprint!("{}", gpu_text(&nodes));
            Some((nodes, from))
        }
        false => None,
    };

    if let Some(path) = &args.save_result {
        let mut json = result_json(&info, &summary, &out.records, args.save_detailed);
        json["load_workers"] = load_workers;
        json["start_skew_ms"] = start_skew_ms.into();
        if let Some((nodes, from)) = &gpu {
            add_gpu_stats(&mut json, nodes, summary.total_output_tokens);
            let dir = path.parent().unwrap_or(std::path::Path::new(".")).join(
                crate::sweep::grid::gpu_dir_name(
                    args.max_concurrency,
                    crate::sweep::grid::Io {
                        input_len: args.input_len,
                        output_len: args.output_len.unwrap_or(1024),
                    },
                ),
            );
            write_gpu_logs(&dir, nodes, *from)?;
            eprintln!("saved GPU logs in {}", dir.display());
        }
        crate::output::write_atomic(path, &serde_json::to_vec_pretty(&json)?)?;
        let records_path = crate::output::records_path(path);
        let mut buf = Vec::new();
        for r in &out.records {
            if args.save_detailed {
                serde_json::to_writer(&mut buf, r)?;
            } else {
                let r = RequestRecord {
                    text: String::new(),
                    ..r.clone()
                };
                serde_json::to_writer(&mut buf, &r)?;
            }
            buf.push(b'\n');
        }
        crate::output::write_atomic(&records_path, &buf)?;
        eprintln!("saved {} and {}", path.display(), records_path.display());
    }

    if cancel.is_cancelled() {
        eprintln!(
            "the run was interrupted: {} requests not sent",
            out.not_sent
        );
        return Ok(ExitCode::from(130));
    }
    if out.panicked > 0 {
        bail!(
            "{} request tasks panicked (a bug in benchctl); their records are missing",
            out.panicked
        );
    }
    if summary.completed == 0 {
        bail!("every request failed: {}", summary.failures_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves the target, model name and tokenizer; checks that the server answers.
/// `conns`: the connection pool's size (the largest concurrency that will be run).
pub async fn prepare(args: &CommonArgs, conns: usize) -> anyhow::Result<Prepared> {
    let urls = args.base_urls();
    if urls.is_empty() {
        bail!("--base-url {:?}: no URL in it", args.base_url);
    }
    for u in &urls {
        let base = reqwest::Url::parse(u).with_context(|| {
            format!("--base-url {u:?} is not a URL (expected e.g. http://127.0.0.1:8000)")
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("--base-url {u}: the scheme must be http or https");
        }
    }
    // the first replica answers the model and tokenizer questions
    let base_str = urls[0].clone();
    let url = reqwest::Url::parse(&format!(
        "{base_str}/{}",
        args.endpoint.trim_start_matches('/')
    ))
    .with_context(|| {
        format!(
            "--endpoint {:?} does not make a URL with --base-url",
            args.endpoint
        )
    })?;
    let probe = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;

    // Reachable at all? One GET tells a refused connection from a server that answers.
    let models = match probe.get(format!("{base_str}/v1/models")).send().await {
        Err(e) if e.is_connect() || e.is_timeout() => bail!(
            "cannot reach the server at {base_str}: {}; is it running? (`benchctl sim` starts a simulated one)",
            loadgen::client::error_chain(&e)
        ),
        Err(e) => bail!(
            "cannot reach the server at {base_str}: {}",
            loadgen::client::error_chain(&e)
        ),
        Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
        Ok(_) => None, // some servers have no /v1/models (transformers serve answers 500)
    };
    let listed: Vec<(String, String)> = models
        .as_ref()
        .and_then(|m| m.get("data"))
        .and_then(|d| d.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    let id = m.get("id")?.as_str()?.to_string();
                    let owner = m
                        .get("owned_by")
                        .and_then(|o| o.as_str())
                        .unwrap_or("")
                        .to_string();
                    Some((id, owner))
                })
                .collect()
        })
        .unwrap_or_default();
    let model = match (&args.model_name, &args.model_path, listed.first()) {
        (Some(n), _, _) => n.clone(),
        (None, _, Some((id, _))) => id.clone(),
        (None, Some(p), None) => p.display().to_string(),
        (None, None, None) => bail!(
            "--model-name is needed: the server at {base_str} lists no model in /v1/models (and no --model-path was given)"
        ),
    };
    let target_is_simulator = listed
        .iter()
        .any(|(id, owner)| *id == model && owner.contains("benchctl-sim"));

    let tokenizer = match (&args.tokenizer, &args.model_path) {
        (Some(t), _) => Tokenizer::from_path(t)?,
        (None, Some(p)) if p.join("tokenizer.json").is_file() => Tokenizer::from_path(p)?,
        (None, other) => {
            if let Some(p) = other {
                tracing::warn!(
                    "--model-path {} has no tokenizer.json; trying the server's /tokenize",
                    p.display()
                );
            }
            Tokenizer::remote(probe.clone(), &base_str, &model).await?
        }
    };

    let target = Target {
        url,
        api_key: args.api_key.clone(),
        body: BodySpec {
            kind: EndpointKind::from_path(&args.endpoint),
            backend: args.backend,
            model: model.clone(),
            ignore_eos: args.ignore_eos,
            temperature: args.temperature,
            extra_body: args.extra_body.clone().unwrap_or_default(),
        },
        timeout: args.timeout,
        stall_timeout: args.stall_timeout,
    };
    let client = HttpClient::new(target, conns)?;
    Ok(Prepared {
        client,
        tokenizer,
        model,
        target_is_simulator,
    })
}

fn dataset_spec(args: &BenchArgs) -> DatasetSpec {
    let path = args.dataset_path.clone().unwrap_or_default();
    match args.dataset {
        DatasetKind::Random => DatasetSpec::Random {
            input_len: args.input_len,
            output_len: args.output_len.unwrap_or(1024),
            range_ratio: args.common.random_range_ratio,
            prefix_len: args.common.prefix_len,
        },
        DatasetKind::Sharegpt => DatasetSpec::Sharegpt {
            path,
            output_len: args.output_len,
        },
        DatasetKind::Jsonl => DatasetSpec::Jsonl {
            path,
            output_len: args.output_len.unwrap_or(1024),
        },
    }
}

/// Sends the first prompt once, as the run will (with at most 16 output tokens), so that a payload
/// the server rejects stops the run before any load.
pub async fn preflight(client: &HttpClient, prompt: &loadgen::Prompt) -> anyhow::Result<()> {
    let mut rec = RequestRecord {
        request_id: "benchctl-preflight".into(),
        ..Default::default()
    };
    let body = client
        .body_spec()
        .render(&prompt.text, prompt.output_len.min(16));
    client
        .execute(&mut rec, body, &CancellationToken::new())
        .await;
    match rec.error {
        None => Ok(()),
        Some(e) => {
            let hint = match (e.kind, e.status) {
                (ErrorKind::Http4xx, Some(422)) | (ErrorKind::Http4xx, Some(400)) => {
                    "; the server rejects the request body: try --backend openai (sends only standard fields) or change --extra-body"
                }
                (ErrorKind::Http4xx, Some(404)) => "; check --endpoint and --model-name",
                (ErrorKind::Http4xx, Some(401)) | (ErrorKind::Http4xx, Some(403)) => {
                    "; check --api-key / OPENAI_API_KEY"
                }
                _ => "",
            };
            bail!(
                "the preflight request failed, no load was sent: {e}{hint} (skip the check with --no-preflight)"
            )
        }
    }
}

/// The bar over a run's (or a sweep's) requests, with an ETA; hidden with `--quiet`. Records
/// reach the controller within 100 ms of each request's end (the worker batches them).
pub(crate) fn progress_bar(n: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(n);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} requests, ETA {eta} {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Adds the GPU statistics of the run's window to the result JSON: per node and GPU under
/// `gpu_telemetry`, and flat keys over all monitored GPUs for scripts.
pub(crate) fn add_gpu_stats(
    json: &mut serde_json::Value,
    nodes: &[NodeWindow],
    output_tokens: u64,
) {
    let gpus: Vec<_> = nodes.iter().flat_map(|n| n.gpus.iter()).collect();
    let mean_of = |f: fn(&crate::telemetry::GpuWindow) -> Option<f64>| {
        let v: Vec<f64> = gpus.iter().filter_map(|g| f(g)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let max_of = |f: fn(&crate::telemetry::GpuWindow) -> Option<f64>| {
        gpus.iter().filter_map(|g| f(g)).reduce(f64::max)
    };
    let energy: Option<f64> = gpus.iter().map(|g| g.energy_j).sum();
    let simulated = nodes.iter().any(|n| n.simulated);
    let seed = nodes.first().map(|n| &n.seed_filter);
    let o = json.as_object_mut().expect("the result is an object");
    o.insert(
        "gpu_telemetry_simulated".into(),
        serde_json::json!(simulated),
    );
    o.insert("gpu_count".into(), serde_json::json!(gpus.len()));
    // an agent lost (or stalled) during the test leaves a gap: reported, and flagged below 90 %
    let coverage = nodes.iter().map(|n| n.coverage).fold(1.0, f64::min);
    o.insert("gpu_telemetry_coverage".into(), serde_json::json!(coverage));
    o.insert(
        "gpu_telemetry_incomplete".into(),
        serde_json::json!(nodes.is_empty() || coverage < 0.9),
    );
    o.insert(
        "gpu_utilization_mean_pct".into(),
        serde_json::json!(mean_of(|g| g.utilization_pct.map(|x| x.mean))),
    );
    o.insert(
        "gpu_utilization_max_pct".into(),
        serde_json::json!(max_of(|g| g.utilization_pct.map(|x| x.max))),
    );
    o.insert(
        "gpu_memory_used_mean_mib".into(),
        serde_json::json!(mean_of(|g| g.memory_used_mib.map(|x| x.mean))),
    );
    o.insert(
        "gpu_memory_used_max_mib".into(),
        serde_json::json!(max_of(|g| g.memory_used_mib.map(|x| x.max))),
    );
    o.insert(
        "gpu_temperature_mean_c".into(),
        serde_json::json!(mean_of(|g| g.temperature_c.map(|x| x.mean))),
    );
    o.insert(
        "gpu_temperature_max_c".into(),
        serde_json::json!(max_of(|g| g.temperature_c.map(|x| x.max))),
    );
    o.insert(
        "gpu_power_mean_w".into(),
        serde_json::json!(mean_of(|g| g.power_w.map(|x| x.mean))),
    );
    o.insert("gpu_energy_j".into(), serde_json::json!(energy));
    o.insert(
        "gpu_joules_per_output_token".into(),
        serde_json::json!(
            energy
                .filter(|_| output_tokens > 0)
                .map(|e| e / output_tokens as f64)
        ),
    );
    o.insert(
        "gpu_seed_filter_utilization_pct".into(),
        serde_json::json!(seed.and_then(|s| s.utilization_pct)),
    );
    o.insert(
        "gpu_seed_filter_memory_used_mib".into(),
        serde_json::json!(seed.and_then(|s| s.memory_used_mib)),
    );
    o.insert(
        "gpu_seed_filter_temperature_c".into(),
        serde_json::json!(seed.and_then(|s| s.temperature_c)),
    );
    o.insert("gpu_telemetry".into(), serde_json::json!(nodes));
}

/// The GPU part of the printed summary.
pub(crate) fn gpu_text(nodes: &[NodeWindow]) -> String {
    use std::fmt::Write;
    let mut t = String::new();
    for n in nodes {
        let _ = writeln!(
            t,
            "{:-^50}",
            if n.simulated {
                " GPUs (SIMULATED telemetry) "
            } else {
                " GPUs "
            }
        );
        for g in &n.gpus {
            let f = |x: Option<crate::telemetry::Gauge>| {
                x.map(|x| format!("{:.0}/{:.0}", x.mean, x.max))
                    .unwrap_or("-".into())
            };
            let _ = writeln!(
                t,
                "{} GPU {}: util {}%  mem {} MiB  temp {}°C  power {} W (mean/max, {} samples){}",
                n.node,
                g.index,
                f(g.utilization_pct),
                f(g.memory_used_mib),
                f(g.temperature_c),
                f(g.power_w),
                g.samples,
                g.energy_j
                    .map(|e| format!("  energy {e:.0} J"))
                    .unwrap_or_default()
            );
        }
    }
    t
}

/// Writes the seed's `raw.log` and `result.log` of a test's window into `dir` (one pair per node;
/// with several nodes, suffixed `_<node>`).
pub(crate) fn write_gpu_logs(
    dir: &std::path::Path,
    nodes: &[NodeWindow],
    from: u64,
) -> anyhow::Result<()> {
    for w in nodes {
        let suffix = if nodes.len() > 1 {
            format!("_{}", w.node)
        } else {
            String::new()
        };
        crate::output::write_atomic(
            &dir.join(format!("raw{suffix}.log")),
            crate::telemetry::raw_log(w, from).as_bytes(),
        )?;
        crate::output::write_atomic(
            &dir.join(format!("result{suffix}.log")),
            crate::telemetry::result_log(w).as_bytes(),
        )?;
    }
    Ok(())
}
