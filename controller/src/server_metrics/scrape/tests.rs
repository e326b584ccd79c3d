//! The scraper's timing on a paused clock with a scripted fetch, then real HTTP servers on
//! 127.0.0.1 port 0: exact deltas, several replicas, and servers that answer 404, garbage, hang
//! or disappear mid-test (a note and incomplete coverage, never an error or a hang).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::Router;
use axum::routing::get;
use tokio::time::Instant;

use super::super::ServerStats;
use super::*;

type Page = Pin<Box<dyn Future<Output = Result<String, Failure>> + Send>>;

fn answer(text: String) -> Page {
    Box::pin(async move { Ok(text) })
}

fn hang() -> Page {
    Box::pin(std::future::pending())
}

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn one_round_per_interval_and_one_per_sample_now() {
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let scraper = Scraper::spawn(vec!["a".into()], SEC, 2 * SEC, move |_| {
        let n = c.fetch_add(1, Relaxed);
        answer(format!("vllm:generation_tokens_total {}\n", n * 10))
    });
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    assert_eq!(scraper.sample_now().await, 1);
    let log = scraper.finish().await;
    // ticks at 0, 1, …, 10 s, then the one on demand
    assert_eq!(log.samples().len(), 12);
    let mut rounds: Vec<u64> = log.samples().iter().map(|s| s.round).collect();
    rounds.dedup();
    assert_eq!(rounds, (1..=12).collect::<Vec<u64>>());
    assert_eq!(log.kind, ServerKind::Vllm);
    assert_eq!(log.failures[0].ok, 12);
}

#[tokio::test(start_paused = true)]
async fn a_hung_replica_costs_the_timeout_once_and_never_stacks_scrapes() {
    let scraper = Scraper::spawn(vec!["hung".into(), "ok".into()], SEC, 2 * SEC, |replica| {
        if replica == 0 {
            hang()
        } else {
            answer("llamacpp:requests_processing 4\n".into())
        }
    });
    let t0 = Instant::now();
    assert_eq!(scraper.sample_now().await, 1, "the live replica answered");
    let waited = t0.elapsed();
    assert!(
        waited >= 2 * SEC && waited < 2 * SEC + SEC / 10,
        "{waited:?}"
    );
    tokio::time::sleep(10 * SEC).await;
    let t1 = Instant::now();
    let log = scraper.finish().await;
    assert!(
        t1.elapsed() < SEC / 10,
        "finish does not wait for a hung scrape"
    );
    let hung = &log.failures[0];
    assert_eq!(hung.ok, 0);
    // one periodic scrape in flight at a time: ~12 s / 2 s, not one per tick
    assert!((4..=8).contains(&hung.timeout.count), "{hung:?}");
    assert!(log.failures[1].ok >= 12, "{:?}", log.failures[1]);
    let stats = log.stats(0, u64::MAX);
    assert_eq!(stats.server_metrics_coverage, 0.0);
    assert!(stats.server_metrics_incomplete);
    let note = stats.server_metrics_note.unwrap();
    assert!(note.starts_with("hung: no answer within 2s ("), "{note}");
}

/// A server on 127.0.0.1 port 0 that stops when `stop` fires (or is dropped).
async fn serve(app: Router) -> (String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    (url, stop)
}

/// A vLLM-named server whose counters the test sets.
async fn vllm_server(running: u64, tokens: Arc<AtomicU64>) -> (String, oneshot::Sender<()>) {
    serve(Router::new().route(
        "/metrics",
        get(move || {
            let t = tokens.load(Relaxed);
            async move {
                format!(
                    "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running {running}\n\
                     # TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total {t}.0\n"
                )
            }
        }),
    ))
    .await
}

const FAST: Duration = Duration::from_millis(50);
const SHORT: Duration = Duration::from_millis(300);
/// For the tests that assert full coverage and no note on a loaded machine: the before and
/// after samples alone cover a 200 ms window, and no scrape times out.
const CALM: Duration = Duration::from_millis(100);
const PATIENT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn http_counter_deltas_are_exact_and_replicas_add_up() {
    let (a, b) = (
        Arc::new(AtomicU64::new(100)),
        Arc::new(AtomicU64::new(1000)),
    );
    let (url_a, _stop_a) = vllm_server(2, a.clone()).await;
    let (url_b, _stop_b) = vllm_server(3, b.clone()).await;
    let scraper = Scraper::start_with_timeout(vec![url_a, url_b], CALM, PATIENT);
    assert_eq!(scraper.sample_now().await, 2);
    let from = loadgen::clock::mono_ns();
    a.store(300, Relaxed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.store(1500, Relaxed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let to = loadgen::clock::mono_ns();
    assert_eq!(scraper.sample_now().await, 2);
    let log = scraper.finish().await;
    let s = log.stats(from, to);
    assert_eq!(s.server_kind, ServerKind::Vllm);
    assert_eq!(s.server_generation_tokens, Some(200 + 500));
    assert_eq!(s.server_running_max, Some(5.0));
    assert_eq!(s.server_running_mean, Some(5.0));
    assert_eq!(s.server_metrics_coverage, 1.0);
    assert_eq!(s.server_metrics_note, None, "{s:?}");
    let csv = log.samples_csv(&|t| t as f64 / 1e9);
    assert!(csv.lines().count() > 8, "{csv}");
}

/// Scrapes `url` around a short window; the window's statistics.
async fn scrape_window(url: String) -> ServerStats {
    let scraper = Scraper::start_with_timeout(vec![url], FAST, SHORT);
    scraper.sample_now().await;
    let from = loadgen::clock::mono_ns();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let to = loadgen::clock::mono_ns();
    scraper.sample_now().await;
    scraper.finish().await.stats(from, to)
}

#[tokio::test]
async fn a_missing_endpoint_gives_a_note_not_an_error() {
    let (url, _stop) = serve(Router::new()).await;
    let s = scrape_window(url.clone()).await;
    assert!(s.server_metrics_incomplete);
    assert_eq!(s.server_metrics_coverage, 0.0);
    let note = s.server_metrics_note.unwrap();
    assert!(
        note.starts_with(&format!("{url}: HTTP 404 Not Found (")),
        "{note}"
    );
    let e = probe(&url).await.unwrap_err();
    assert!(e.contains("HTTP 404"), "{e}");
}

#[tokio::test]
async fn garbage_gives_a_note() {
    let app = Router::new().route("/metrics", get(|| async { "<html><body>hi</body></html>" }));
    let (url, _stop) = serve(app).await;
    let s = scrape_window(url.clone()).await;
    assert!(s.server_metrics_incomplete);
    let note = s.server_metrics_note.unwrap();
    assert!(note.contains("no Prometheus series in 28 bytes"), "{note}");
    assert!(
        probe(&url)
            .await
            .unwrap_err()
            .contains("no Prometheus series")
    );
}

#[tokio::test]
async fn a_hanging_server_costs_the_timeout_not_the_run() {
    let app = Router::new().route("/metrics", get(std::future::pending::<String>));
    let (url, _stop) = serve(app).await;
    let t0 = std::time::Instant::now();
    let s = scrape_window(url.clone()).await;
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(s.server_metrics_incomplete);
    let note = s.server_metrics_note.unwrap();
    assert!(note.contains("no answer within 300ms"), "{note}");
    let e = probe_within(&url, SHORT).await.unwrap_err();
    assert!(e.contains("no answer within"), "{e}");
}

#[tokio::test]
async fn a_server_that_disappears_mid_test_leaves_partial_coverage() {
    let tokens = Arc::new(AtomicU64::new(0));
    let (url, stop) = vllm_server(1, tokens.clone()).await;
    let scraper = Scraper::start_with_timeout(vec![url.clone()], FAST, SHORT);
    assert_eq!(scraper.sample_now().await, 1);
    let from = loadgen::clock::mono_ns();
    tokens.store(64, Relaxed);
    assert_eq!(scraper.sample_now().await, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    let to = loadgen::clock::mono_ns();
    assert_eq!(scraper.sample_now().await, 0);
    let s = scraper.finish().await.stats(from, to);
    assert!(s.server_metrics_incomplete);
    assert!(
        s.server_metrics_coverage < 0.6,
        "{}",
        s.server_metrics_coverage
    );
    assert_eq!(
        s.server_generation_tokens,
        Some(64),
        "up to the last sample"
    );
    let note = s.server_metrics_note.unwrap();
    assert!(note.starts_with(&format!("{url}: ")), "{note}");
    assert!(probe(&url).await.is_err());
}

#[tokio::test]
async fn probe_names_the_server() {
    let fixture =
        |text: &'static str| Router::new().route("/metrics", get(move || async move { text }));
    let (url, _stop) = serve(fixture(include_str!(
        "../../../tests/fixtures/metrics/vllm.txt"
    )))
    .await;
    assert_eq!(probe(&url).await, Ok(ServerKind::Vllm));
    let (url, _stop) = serve(fixture(include_str!(
        "../../../tests/fixtures/metrics/llamacpp.txt"
    )))
    .await;
    assert_eq!(probe(&url).await, Ok(ServerKind::LlamaCpp));
    let e = probe("http://127.0.0.1:1/metrics").await.unwrap_err();
    assert!(e.starts_with("http://127.0.0.1:1/metrics: "), "{e}");
}
