//! Client timestamps against the simulator's own emission log, and the result JSON's totals
//! against the per-request file.

use std::collections::HashMap;

use benchctl_tests::{bench, fast_sim, start};

#[derive(serde::Deserialize)]
struct Emission {
    request_id: String,
    seq: u32,
    kind: String,
    t_mono_ns: u64,
}

fn read_emissions(path: &std::path::Path) -> HashMap<String, Vec<u64>> {
    let mut by_req: HashMap<String, Vec<(u32, u64)>> = HashMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let e: Emission = serde_json::from_str(line).unwrap();
        if e.kind == "content" {
            by_req
                .entry(e.request_id)
                .or_default()
                .push((e.seq, e.t_mono_ns));
        }
    }
    by_req
        .into_iter()
        .map(|(k, mut v)| {
            v.sort();
            (k, v.into_iter().map(|(_, t)| t).collect())
        })
        .collect()
}

fn median(mut v: Vec<i64>) -> i64 {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttft_tpot_itl_e2el_agree_with_the_emission_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("emissions.jsonl");
    let sim = start(benchctl_tests::SimConfig {
        emission_log: Some(log.clone()),
        ..fast_sim()
    })
    .await;
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--num-prompts",
            "60",
            "--max-concurrency",
            "6",
            "--input-len",
            "64",
            "--output-len",
            "24",
        ],
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().expect("the run succeeds");
    let emitted = read_emissions(&log);
    assert_eq!(run.records.len(), 60);

    let (mut d_ttft, mut d_itl, mut d_e2el, mut d_tpot) = (vec![], vec![], vec![], vec![]);
    for r in &run.records {
        assert!(r.ok(), "{:?}", r.error);
        let sent = emitted
            .get(&r.request_id)
            .unwrap_or_else(|| panic!("{} not in the emission log", r.request_id));
        assert_eq!(
            r.chunks.len(),
            sent.len(),
            "{}: every emitted chunk received, none invented",
            r.request_id
        );
        for (c, &t) in r.chunks.iter().zip(sent) {
            // causality: a chunk cannot arrive before it was written. The kernel's loopback
            // receive stamp comes from TCP's cached clock: a few µs early at most (rxstamp.rs).
            assert!(
                c.t_ns + 100_000 >= t,
                "{}: arrived at {} before it was sent at {t}",
                r.request_id,
                c.t_ns
            );
        }
        // the same metrics computed from the server's side of the wire
        let ttft_sim = (sent[0] - r.send_ns) as i64;
        let e2el_sim = (sent[sent.len() - 1] - r.send_ns) as i64;
        let tpot_sim = (e2el_sim - ttft_sim) as f64 / (r.output_tokens() - 1) as f64;
        d_ttft.push(r.ttft_ns().unwrap() as i64 - ttft_sim);
        d_e2el.push(r.e2el_ns().unwrap() as i64 - e2el_sim);
        d_tpot.push((r.tpot_ns().unwrap() - tpot_sim) as i64);
        for (gap, w) in r.itl_ns().zip(sent.windows(2)) {
            d_itl.push(gap as i64 - (w[1] - w[0]) as i64);
        }
        assert_eq!(r.output_tokens_server, Some(24));
    }
    // Differences are delivery delays on loopback: sub-millisecond typically. The bounds leave room
    // for a loaded 2-core CI machine yet catch a wrong clock, a shifted chunk or a mis-paired gap
    // (each of those is off by a whole decode step, 2 ms, or far more).
    for (name, d) in [
        ("ttft", &d_ttft),
        ("itl", &d_itl),
        ("e2el", &d_e2el),
        ("tpot", &d_tpot),
    ] {
        let m = median(d.clone());
        assert!(
            m.abs() < 1_000_000,
            "{name}: median client−server difference {m} ns"
        );
    }
    assert!(
        d_ttft.iter().all(|&d| d >= -100_000),
        "TTFT can only be later at the client"
    );
    // Linux stamps receipts in the kernel (the first reads of a run may precede that switch)
    let kernel = run.records.iter().filter(|r| r.kernel_rx_stamps).count();
    assert!(kernel >= 50, "{kernel} of 60 requests kernel-stamped");
    let json = run.json();
    assert_eq!(json["completed"], 60);
    assert_eq!(json["target_is_simulator"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_totals_agree_with_the_per_request_file() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start(benchctl_tests::SimConfig {
        fault_error_rate: 0.2,
        ..fast_sim()
    })
    .await;
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--num-prompts",
            "50",
            "--max-concurrency",
            "8",
            "--input-len",
            "40",
            "--output-len",
            "12",
            "--random-range-ratio",
            "0.5",
            "--no-preflight",
            "--percentiles",
            "50,99.9",
        ],
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().expect("some requests succeed");
    let j = run.json();
    let ok: Vec<_> = run.records.iter().filter(|r| r.ok()).collect();
    let failed = run.records.len() - ok.len();
    assert!(failed > 0, "the fault injection failed some requests");
    assert_eq!(j["completed"].as_u64().unwrap() as usize, ok.len());
    assert_eq!(j["failed"].as_u64().unwrap() as usize, failed);
    assert_eq!(
        j["failed_by_kind"]["http_5xx"].as_u64().unwrap() as usize,
        failed
    );
    assert_eq!(
        j["failed_by_status"]["500"].as_u64().unwrap() as usize,
        failed
    );
    let out: u64 = ok
        .iter()
        .map(|r| r.output_tokens_server.unwrap() as u64)
        .sum();
    let inp: u64 = ok
        .iter()
        .map(|r| r.prompt_tokens_server.unwrap() as u64)
        .sum();
    assert_eq!(j["total_output_tokens"].as_u64().unwrap(), out);
    assert_eq!(j["total_input_tokens"].as_u64().unwrap(), inp);
    let start = run.records.iter().map(|r| r.send_ns).min().unwrap();
    let end = run.records.iter().map(|r| r.end_ns).max().unwrap();
    let duration = (end - start) as f64 / 1e9;
    assert!((j["duration"].as_f64().unwrap() - duration).abs() < 1e-9);
    assert!((j["output_throughput"].as_f64().unwrap() - out as f64 / duration).abs() < 1e-6);
    assert!((j["request_throughput"].as_f64().unwrap() - ok.len() as f64 / duration).abs() < 1e-6);
    // percentiles recomputed from the file, numpy's linear method
    let mut ttfts: Vec<f64> = ok
        .iter()
        .map(|r| r.ttft_ns().unwrap() as f64 / 1e6)
        .collect();
    ttfts.sort_by(f64::total_cmp);
    let p999 = loadgen::stats::percentile_sorted(&ttfts, 99.9);
    assert!((j["p99.9_ttft_ms"].as_f64().unwrap() - p999).abs() < 1e-9);
    let mean = ttfts.iter().sum::<f64>() / ttfts.len() as f64;
    assert!((j["mean_ttft_ms"].as_f64().unwrap() - mean).abs() < 1e-9);
    let itls: usize = ok.iter().map(|r| r.chunks.len() - 1).sum();
    assert!(itls > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_token_chunks_give_per_token_itl() {
    let dir = tempfile::tempdir().unwrap();
    let model = tempfile::tempdir().unwrap();
    benchctl_tests::write_tokenizer(model.path());
    let sim = start(benchctl_tests::SimConfig {
        tokens_per_chunk: 4,
        ..fast_sim()
    })
    .await;
    let run = bench(
        &sim.base_url(),
        dir.path(),
        &[
            "--num-prompts",
            "8",
            "--max-concurrency",
            "4",
            "--input-len",
            "32",
            "--output-len",
            "20",
            "--model-path",
            model.path().to_str().unwrap(),
        ],
    )
    .await;
    sim.shutdown().await;
    run.result.as_ref().unwrap();
    let j = run.json();
    assert_eq!(j["chunk_tokens"], "tokenizer");
    for r in &run.records {
        assert_eq!(r.chunks.len(), 5, "20 tokens in chunks of 4");
        let counted: u32 = r.chunks.iter().map(|c| c.tokens).sum();
        assert_eq!(Some(counted), r.output_tokens_client);
    }
    // a chunk of 4 tokens after a gap g is 4 per-token gaps of g/4: the per-token ITL is about a
    // quarter of the chunk ITL
    let ratio = j["mean_itl_ms"].as_f64().unwrap() / j["mean_itl_per_token_ms"].as_f64().unwrap();
    assert!(
        (3.0..5.0).contains(&ratio),
        "chunk ITL / per-token ITL = {ratio}"
    );
}
