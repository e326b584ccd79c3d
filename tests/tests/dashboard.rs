//! The dashboard and the report in a real browser: Debian's Chromium, headless, driven through
//! chromedriver (WebDriver). Screenshots are kept in `target/tmp/artifacts/`.
//!
//! Without chromium and chromedriver these tests say so and pass, unless
//! `BENCHCTL_REQUIRE_BROWSER=1` (set by `.ci/run`, which installs them) makes that a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use benchctl_tests::{SimConfig, start, sweep};
use cluster::testing::{free_port, try_result_array};
use controller::dashboard::data::Source;
use controller::dashboard::server::{DashboardConfig, Sources};
use serde_json::{Value, json};

struct Browser {
    client: fantoccini::Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, png).unwrap();
        p
    }
}

fn find(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(bin))
            .find(|p| p.is_file())
    })
}

/// Headless Chromium through chromedriver, or `None` where they are not installed.
async fn browser() -> Option<Browser> {
    let required = std::env::var("BENCHCTL_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let (Some(driver), Some(chromium)) = (find("chromedriver"), find("chromium")) else {
        assert!(
            !required,
            "BENCHCTL_REQUIRE_BROWSER=1 but chromium/chromedriver are not on PATH (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "SKIPPED: no chromium/chromedriver on PATH (apt-get install chromium chromium-driver)"
        );
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let caps: serde_json::Map<String, Value> = serde_json::from_value(json!({
        "goog:chromeOptions": {
            "binary": chromium,
            // no network beyond loopback: nothing in the background, nothing fetched
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1400,2000",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    }))
    .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        let mut b = fantoccini::ClientBuilder::rustls().expect("a TLS config");
        match b.capabilities(caps.clone()).connect(&url).await {
            Ok(c) => break c,
            Err(e) => {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("no WebDriver session from chromedriver: {e}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    Some(Browser {
        client,
        driver: child,
        _profile: profile,
    })
}

fn slow_capacity_sim() -> SimConfig {
    SimConfig {
        kv_cache_tokens: 960,
        decode_step_base_ms: 5.0,
        decode_step_per_seq_us: 0.0,
        prefill_us_per_token: 1.0,
        ..SimConfig::default()
    }
}

/// The finished tests of the one sweep under `root` (none yet: empty).
fn result_array(root: &Path) -> Vec<Value> {
    std::fs::read_dir(root)
        .ok()
        .and_then(|rd| rd.flatten().map(|e| e.path()).find(|p| p.is_dir()))
        .and_then(|dir| try_result_array(&dir))
        .unwrap_or_default()
}

async fn wait_js(b: &Browser, script: &str, what: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = b.js(script).await;
        if v != Value::Null && v != Value::Bool(false) {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_live_dashboard_follows_a_sweep_without_a_reload() {
    let Some(b) = browser().await else { return };
    let sim = start(slow_capacity_sim()).await;
    let root = tempfile::tempdir().unwrap();
    let port = free_port("127.0.0.1");
    let (url, r) = (sim.base_url(), root.path().to_path_buf());
    let addr = format!("127.0.0.1:{port}");
    let run = tokio::spawn(async move {
        sweep(
            &url,
            &r,
            &[
                "--io",
                "64x32,128x64",
                "--concurrency",
                "1,2,4,8,16",
                "--prompts-per-concurrency",
                "3",
                "--min-prompts",
                "6",
                "--threshold",
                "p99_ttft:60 tpot:20",
                "--search",
                "bisect",
                "--gpu-num",
                "2",
                "--telemetry-source",
                "simulated",
                "--telemetry-interval",
                "100ms",
                "--metadata",
                "gpu=2x simulated,server=benchctl sim",
                "--dashboard-addr",
                &addr,
            ],
        )
        .await
    });
    // the page is opened after the first test and before the last
    let deadline = Instant::now() + Duration::from_secs(60);
    while result_array(root.path()).is_empty() {
        assert!(Instant::now() < deadline, "no finished test in 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.client
        .goto(&format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    let link = wait_js(
        &b,
        "const a = document.querySelector('#sweeps a'); return a && a.href;",
        "the list of sweeps",
        10,
    )
    .await;
    b.client.goto(link.as_str().unwrap()).await.unwrap();
    // the page's script has run (WebDriver may hand control back while a large page is parsed)
    let loaded_at = wait_js(
        &b,
        "return document.readyState == 'complete' && window.benchctlLoadedAt",
        "the live page's script",
        10,
    )
    .await;
    let first = b
        .js("return document.querySelectorAll('tr.test').length")
        .await;
    let first = first.as_u64().unwrap();
    assert!(first >= 1, "the finished tests are listed");
    let text = b.js("return document.body.innerText").await;
    let text = text.as_str().unwrap();
    assert!(text.contains("SIMULATOR") && text.contains("server") && text.contains("benchctl sim"));
    b.screenshot("dashboard-live-early.png").await;

    // a test that finishes while the page is open appears without a reload
    wait_js(
        &b,
        &format!("return document.querySelectorAll('tr.test').length > {first}"),
        "a newly finished test on the open page",
        60,
    )
    .await;
    assert_eq!(
        b.js("return window.benchctlLoadedAt").await,
        loaded_at,
        "the page was not reloaded"
    );
    let partial = b.screenshot("dashboard-live.png").await;
    eprintln!("screenshot: {}", partial.display());
    let result = run.await.unwrap();
    result.result.as_ref().expect("the sweep succeeds");
    let total = result.results().len() as u64;
    // the sweep's own dashboard ended with it; `benchctl dashboard --result-dir` shows it after
    let d = controller::dashboard::server::start(DashboardConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        token: None,
        sources: Sources::Root(root.path().to_path_buf()),
        metadata: BTreeMap::new(),
    })
    .await
    .unwrap();
    let name = result
        .dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    b.client
        .goto(&format!("{}sweep/{name}", d.url()))
        .await
        .unwrap();
    wait_js(
        &b,
        &format!("return document.querySelectorAll('tr.test').length == {total} && document.getElementById('status').innerText == 'done'"),
        "every test and the final status",
        10,
    )
    .await;
    // the charts carry the data: a point per concurrency tested, threshold lines, GPU lines
    let points = b
        .js("return document.querySelectorAll('#chart-throughput svg circle').length")
        .await;
    assert_eq!(
        points.as_u64().unwrap(),
        total,
        "one point per (combination, concurrency)"
    );
    let boundary = b
        .js("return Array.from(document.querySelectorAll('#boundary tr')).map(r => r.innerText.replace(/\\s+/g, ' ').trim())")
        .await;
    assert_eq!(
        boundary,
        json!([
            "input output max passing first failing",
            "64 32 10 11",
            "128 64 5 6"
        ])
    );
    let ttft = b
        .js("return document.querySelector('#chart-ttft').innerHTML")
        .await;
    assert!(
        ttft.as_str().unwrap().contains("threshold p99_ttft"),
        "threshold line"
    );
    for id in [
        "gpu_utilization",
        "gpu_memory",
        "gpu_temperature",
        "gpu_power",
    ] {
        let lines = b
            .js(&format!(
                "return document.querySelectorAll('#chart-{id} svg polyline').length"
            ))
            .await;
        assert!(lines.as_u64().unwrap() >= 2, "{id}: a line per GPU");
    }
    let shot = b.screenshot("dashboard-done.png").await;
    eprintln!("screenshot: {}", shot.display());
    b.close().await;
    d.stop().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_report_opens_from_a_file_url_offline_with_every_chart() {
    let Some(b) = browser().await else { return };
    let sim = start(slow_capacity_sim()).await;
    let root = tempfile::tempdir().unwrap();
    let run = sweep(
        &sim.base_url(),
        root.path(),
        &[
            "--io",
            "64x32",
            "--concurrency",
            "4,8,16",
            "--num-prompts",
            "24",
            "--threshold",
            "p99_ttft:60",
            "--gpu-num",
            "1",
            "--telemetry-source",
            "simulated",
            "--telemetry-interval",
            "100ms",
            // the nine charts below; the server's own charts are checked on a fixture
            // (`the_report_shows_the_servers_metrics_beside_the_gpus`)
            "--server-metrics",
            "off",
            "--dashboard-addr",
            "off",
        ],
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().expect("the sweep succeeds");
    let out = root.path().join("shared-report");
    controller::cmd::dashboard::report(controller::cmd::dashboard::ReportArgs {
        dir: run.dir().to_path_buf(),
        out: Some(out.clone()),
        metadata: vec![("reviewer".into(), "ci".into())],
        gpu_hour_cost: Some(2.5),
    })
    .unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for bad in ["src=\"http", "href=\"http", "<script src", "<link "] {
        assert!(
            !html.contains(bad),
            "the report refers to something outside: {bad}"
        );
    }
    let svgs: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".svg"))
        .collect();
    // the frontier's variants: output, total, J/token (simulated energy), cost × 3 statistics
    let frontier = svgs.iter().filter(|n| n.starts_with("frontier_")).count();
    assert_eq!(frontier, 12, "{svgs:?}");
    assert_eq!(svgs.len(), 9 + frontier, "{svgs:?}");

    b.client
        .goto(&format!("file://{}", out.join("report.html").display()))
        .await
        .unwrap();
    // nothing was fetched: every byte is in the file
    let fetched = b
        .js("return performance.getEntriesByType('resource').length")
        .await;
    assert_eq!(fetched, json!(0));
    let charts = b
        .js("return Array.from(document.querySelectorAll('.chart')).map(c => [c.id, c.querySelectorAll('svg').length, c.querySelectorAll('svg polyline, svg rect, svg circle').length])")
        .await;
    let charts = charts.as_array().unwrap();
    assert_eq!(charts.len(), 10, "{charts:?}");
    for c in charts {
        let svgs = if c[0] == "chart-frontier" { 12 } else { 1 };
        assert_eq!(c[1], svgs, "{c:?}: its SVGs");
        assert!(c[2].as_u64().unwrap() > 3, "{c:?}: drawn data");
    }
    let text = b.js("return document.body.innerText").await;
    assert!(text.as_str().unwrap().contains("reviewer"));
    // one variant shown; choosing the cost axis and p90 shows that one alone
    let shown = "return Array.from(document.querySelectorAll('#chart-frontier [data-v]')).filter(d => d.style.display !== 'none').map(d => d.dataset.v)";
    assert_eq!(b.js(shown).await, json!(["frontier_output_mean"]));
    b.js("const c = document.querySelector('#chart-frontier'); c.querySelector('.fy').value = 'cost'; c.querySelector('.fx').value = 'p90'; c.querySelector('.fx').dispatchEvent(new Event('change')); return 0").await;
    assert_eq!(b.js(shown).await, json!(["frontier_cost_p90"]));
    let shot = b.screenshot("report.png").await;
    eprintln!("screenshot: {}", shot.display());
    b.close().await;
}

/// A sweep directory as `benchctl sweep --server-metrics` leaves it: two tests of 64x32 (c=4
/// calm, c=8 with a full KV cache, preemptions, a queue and a token mismatch), each with its
/// `server_metrics_*/samples.csv` from two replicas.
fn server_metrics_fixture(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let entry = |c: u64, start: f64, waiting: f64, kv: f64, preempted: u64, mismatch: Value| {
        json!({"test_id": format!("c{c}_in64_out32"), "concurrency": c, "input_len": 64,
               "output_len": 32, "run": 1, "completed": 20, "failed": 0,
               "output_throughput": 50.0 * c as f64, "mean_ttft_ms": 10.0 * c as f64,
               "p99_ttft_ms": 20.0 * c as f64, "mean_tpot_ms": 5.0, "mean_e2el_ms": 200.0,
               "threshold": "p99_ttft:100", "threshold_pass": c < 8, "threshold_violations": [],
               "started_at_unix_s": start, "ended_at_unix_s": start + 10.0,
               "server_kind": "vllm", "server_metrics_coverage": 1.0,
               "server_metrics_incomplete": false, "server_metrics_note": null,
               "server_waiting_mean": waiting, "server_kv_cache_usage_max": kv,
               "server_preemptions": preempted, "server_prefix_cache_hit_rate": 0.5,
               "server_tokens_mismatch": mismatch})
    };
    let entries = json!([
        entry(4, 1000.0, 0.0, 0.4, 0, Value::Null),
        entry(
            8,
            1012.0,
            3.5,
            0.97,
            2,
            json!({"generation_tokens": {"server": 600, "client": 640}})
        ),
    ]);
    std::fs::write(
        dir.join("m_vllm_result.json"),
        serde_json::to_vec(&entries).unwrap(),
    )
    .unwrap();
    for (c, start, load) in [(4u64, 1000.0, 1.0), (8, 1012.0, 2.0)] {
        let mut csv = String::from("unix_s,replica,metric,labels,value,quantity\n");
        for i in 0..=12 {
            for replica in 0..2 {
                let t = start - 0.5 + i as f64 + 0.01 * replica as f64;
                let k = i as f64;
                for (metric, value, quantity) in [
                    ("vllm:num_requests_running", 2.0 * load, "running"),
                    ("vllm:num_requests_waiting", (load - 1.0) * k, "waiting"),
                    (
                        "vllm:kv_cache_usage_perc",
                        0.4 * load.min(2.4) * k / 12.0,
                        "kv_cache_usage",
                    ),
                    (
                        "vllm:prefix_cache_hits_total",
                        50.0 * k,
                        "prefix_cache_hits",
                    ),
                    (
                        "vllm:prefix_cache_queries_total",
                        100.0 * k,
                        "prefix_cache_queries",
                    ),
                    ("vllm:request_success_total", k, ""),
                ] {
                    csv.push_str(&format!(
                        "{t:.3},{replica},{metric},model_name=m;engine=0,{value},{quantity}\n"
                    ));
                }
            }
        }
        let d = dir.join(format!("server_metrics_c{c}_in64_out32"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("samples.csv"), csv).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_shows_the_servers_metrics_beside_the_gpus() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("m_tp1_dtypeauto_server");
    server_metrics_fixture(&dir);
    let out = root.path().join("report");
    controller::cmd::dashboard::report(controller::cmd::dashboard::ReportArgs {
        dir: dir.clone(),
        out: Some(out.clone()),
        metadata: vec![],
        gpu_hour_cost: None,
    })
    .unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for title in [
        "Server queue depth (running and waiting)",
        "Server KV-cache usage",
        "Server prefix-cache hit rate",
        "Server requests waiting (mean) vs concurrency",
        "Server KV-cache usage (max) vs concurrency",
    ] {
        assert!(html.contains(title), "no chart {title:?}");
    }
    for bad in [
        "chart error",
        "no server metrics",
        "no prefix-cache",
        "no KV-cache",
    ] {
        assert!(!html.contains(bad), "{bad}");
    }
    assert!(html.contains("<td id=\"server-kind\">vllm</td>"));
    assert!(html.contains("≠ generation_tokens: server 600 / client 640"));
    for id in [
        "server_queue",
        "server_kv_cache",
        "server_prefix_cache",
        "server_waiting",
    ] {
        assert!(out.join(format!("{id}.svg")).is_file(), "{id}.svg");
    }

    let Some(b) = browser().await else { return };
    b.client
        .goto(&format!("file://{}", out.join("report.html").display()))
        .await
        .unwrap();
    let charts = b
        .js("return Array.from(document.querySelectorAll('.chart')).map(c => [c.id, c.querySelectorAll('svg').length, c.querySelectorAll('svg polyline').length, c.querySelector('h3').innerText, c.querySelector('svg').textContent])")
        .await;
    let charts = charts.as_array().unwrap();
    let get = |id: &str| {
        charts
            .iter()
            .find(|c| c[0] == format!("chart-{id}"))
            .unwrap_or_else(|| panic!("no #chart-{id} in {charts:?}"))
    };
    for c in charts.iter().filter(|c| c[0] != "chart-frontier") {
        assert_eq!(c[1], 1, "{c:?}: one SVG");
    }
    // the frontier's variants: output per GPU (no total throughput in the fixture) × mean,
    // median, p90 TPOT
    assert_eq!(get("frontier")[1], 3, "{:?}", get("frontier"));
    // a line per series and test (two tests), plus a line at each test's start
    let queue = get("server_queue");
    assert!(queue[2].as_u64().unwrap() >= 2 * 2 + 2, "{queue:?}");
    let legend = queue[4].as_str().unwrap();
    assert!(
        legend.contains("running") && legend.contains("waiting"),
        "{legend}"
    );
    for id in [
        "server_kv_cache",
        "server_prefix_cache",
        "server_waiting",
        "server_kv_cache_max",
    ] {
        assert!(get(id)[2].as_u64().unwrap() >= 2, "{id}: {:?}", get(id));
    }
    let mismatch = b
        .js("return document.querySelectorAll('#tests td.mismatch').length")
        .await;
    assert_eq!(mismatch, json!(1));
    let shot = b.screenshot("report-server-metrics.png").await;
    eprintln!("screenshot: {}", shot.display());
    b.js("document.getElementById('chart-gpu_power').scrollIntoView(); return true")
        .await;
    let shot = b.screenshot("report-server-metrics-over-time.png").await;
    eprintln!("screenshot: {}", shot.display());
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_page_follows_a_json_file_and_the_token_guards_other_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Qwen3-32B_vllm_result.json");
    let entry = |c: u64, pass: bool| {
        json!({"concurrency": c, "input_len": 1024, "output_len": 1024, "completed": 10, "failed": 0,
               "output_throughput": 100.0 * c as f64, "mean_ttft_ms": 50.0 * c as f64,
               "mean_tpot_ms": 10.0, "mean_e2el_ms": 1000.0, "threshold": "ttft:400",
               "threshold_pass": pass, "threshold_violations": []})
    };
    std::fs::write(&file, serde_json::to_vec(&json!([entry(1, true)])).unwrap()).unwrap();
    let d = controller::dashboard::server::start(DashboardConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        token: None,
        sources: Sources::Single(Source::File(file.clone())),
        metadata: BTreeMap::from([("tp".into(), "8".into()), ("dtype".into(), "fp16".into())]),
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let page = http.get(d.url()).send().await.unwrap();
    assert!(page.url().path().ends_with("/sweep/Qwen3-32B_vllm_result"));
    let body = page.text().await.unwrap();
    assert!(body.contains(">tp</th><td>8<") && body.contains(">dtype</th><td>fp16<"));
    let api = format!("{}api/sweep/Qwen3-32B_vllm_result", d.url());
    let v1 = http
        .get(format!("{api}/version"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // the file grows: the version changes and the sections carry the new test
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(
        &file,
        serde_json::to_vec(&json!([entry(1, true), entry(2, true), entry(4, false)])).unwrap(),
    )
    .unwrap();
    let v2 = http
        .get(format!("{api}/version"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_ne!(v1, v2);
    let sections: Value = http
        .get(format!("{api}/sections"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tests = sections["tests-section"].as_str().unwrap();
    assert_eq!(tests.matches("class=\"test\"").count(), 3);
    assert!(
        sections["boundary-section"]
            .as_str()
            .unwrap()
            .contains("<td>2</td><td>4</td>")
    );
    let svg = http
        .get(format!("{api}/chart/throughput.svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().starts_with("<svg"));
    d.stop().await;

    // beyond loopback: a token is required, and then checked
    let open = controller::dashboard::server::start(DashboardConfig {
        addr: "0.0.0.0:0".parse().unwrap(),
        token: None,
        sources: Sources::Single(Source::File(file.clone())),
        metadata: BTreeMap::new(),
    })
    .await;
    let e = format!("{:#}", open.err().expect("refused without a token"));
    assert!(e.contains("--dashboard-addr") && e.contains("token"), "{e}");
    let d = controller::dashboard::server::start(DashboardConfig {
        addr: "0.0.0.0:0".parse().unwrap(),
        token: Some("s3cret-token".into()),
        sources: Sources::Single(Source::File(file)),
        metadata: BTreeMap::new(),
    })
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", d.addr.port());
    let page = format!("{base}/sweep/Qwen3-32B_vllm_result");
    assert_eq!(http.get(&page).send().await.unwrap().status(), 401);
    assert_eq!(
        http.get(&page)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        http.get(&page)
            .bearer_auth("s3cret-token")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{page}?token=s3cret-token"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    d.stop().await;
}
