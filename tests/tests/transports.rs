//! Both transports — the HTTP/1.1 read path (`http://`) and reqwest (`https://`, forced here
//! over plain HTTP) — give the same records for the same server behaviour.

use std::time::Duration;

use benchctl_tests::{SimConfig, fast_sim, start};
use loadgen::{
    Arrivals, Backend, BodySpec, EndpointKind, ErrorKind, HttpClient, Prompt, RunConfig, Target,
    Transport,
};

async fn run(
    cfg: SimConfig,
    transport: Transport,
    endpoint: &str,
    stall: Option<Duration>,
) -> Vec<loadgen::RequestRecord> {
    let sim = start(cfg).await;
    let target = Target {
        url: format!("{}{endpoint}", sim.base_url()).parse().unwrap(),
        api_key: Some("secret-key".into()),
        body: BodySpec {
            kind: EndpointKind::from_path(endpoint),
            backend: Backend::Vllm,
            model: "benchctl-sim".into(),
            ignore_eos: true,
            temperature: 0.0,
            extra_body: Default::default(),
        },
        timeout: Duration::from_secs(3),
        stall_timeout: stall,
    };
    let client = HttpClient::with_transport(target, 4, transport).unwrap();
    let cfg = RunConfig {
        prompts: vec![
            Prompt {
                text: "one two three".into(),
                prompt_tokens: 3,
                output_len: 7,
                offset_ns: None,
            };
            8
        ],
        arrivals: Arrivals::closed_loop(),
        max_concurrency: Some(4),
        warmup_requests: 2,
        warmup_prompts: vec![],
        request_id_prefix: "t-".into(),
    };
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        loadgen::runner::run(&client, cfg, Default::default(), |_| {}),
    )
    .await
    .expect("no hang")
    .unwrap();
    sim.shutdown().await;
    assert_eq!(out.warmup_sent, 2);
    out.records
}

fn kinds(records: &[loadgen::RequestRecord]) -> Vec<Option<ErrorKind>> {
    records
        .iter()
        .map(|r| r.error.as_ref().map(|e| e.kind))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_transports_agree_on_success_and_on_every_fault() {
    let cases: Vec<(SimConfig, Option<ErrorKind>, Option<Duration>)> = vec![
        (fast_sim(), None, None),
        (
            SimConfig {
                no_done: true,
                ..fast_sim()
            },
            None,
            None,
        ),
        (
            SimConfig {
                fault_error_rate: 1.0,
                ..fast_sim()
            },
            Some(ErrorKind::Http5xx),
            None,
        ),
        (
            SimConfig {
                fault_malformed_rate: 1.0,
                ..fast_sim()
            },
            Some(ErrorKind::MalformedChunk),
            None,
        ),
        (
            SimConfig {
                fault_truncate_rate: 1.0,
                ..fast_sim()
            },
            Some(ErrorKind::TruncatedStream),
            None,
        ),
        (
            SimConfig {
                fault_stall_rate: 1.0,
                ..fast_sim()
            },
            Some(ErrorKind::Stall),
            Some(Duration::from_millis(200)),
        ),
        (
            SimConfig {
                strict: true,
                ..fast_sim()
            },
            Some(ErrorKind::Http4xx),
            None,
        ),
    ];
    for (cfg, expect, stall) in cases {
        for endpoint in ["/v1/completions", "/v1/chat/completions"] {
            let a = run(cfg.clone(), Transport::Auto, endpoint, stall).await;
            let b = run(cfg.clone(), Transport::Reqwest, endpoint, stall).await;
            assert_eq!(kinds(&a), vec![expect; 8], "http1 {endpoint} {cfg:?}");
            assert_eq!(kinds(&b), vec![expect; 8], "reqwest {endpoint} {cfg:?}");
            // the simulator's text depends on the seed and the arrival order, which concurrency
            // shuffles: the same texts, not necessarily in the same records
            let texts = |r: &[loadgen::RequestRecord]| {
                let mut t: Vec<String> = r.iter().map(|r| r.text.clone()).collect();
                t.sort();
                t
            };
            assert_eq!(texts(&a), texts(&b));
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.chunks.len(), y.chunks.len());
                assert_eq!(x.output_tokens_server, y.output_tokens_server);
                assert_eq!(x.status, y.status);
                if expect.is_none() {
                    assert_eq!(x.output_tokens_server, Some(7));
                    assert_eq!(x.done_marker, !cfg.no_done);
                }
            }
        }
    }
}
