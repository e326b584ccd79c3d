//! `--base-url A,B`: a test spread over server replicas (as behind a gateway), every request
//! measured; a bad URL in the list is named.

use benchctl_tests::{bench, fast_sim, sim_requests, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_spread_over_the_replicas() {
    let a = start(fast_sim()).await;
    let b = start(fast_sim()).await;
    let dir = tempfile::tempdir().unwrap();
    let urls = format!("{},{}", a.base_url(), b.base_url());
    let run = bench(
        &urls,
        dir.path(),
        &[
            "--num-prompts",
            "40",
            "--max-concurrency",
            "4",
            "--input-len",
            "32",
            "--output-len",
            "8",
        ],
    )
    .await;
    run.result.as_ref().expect("the run succeeds");
    assert_eq!(run.json()["completed"], 40);
    // the preflight goes to the first replica; the 40 requests half to each
    assert_eq!(sim_requests(&a).await, 21);
    assert_eq!(sim_requests(&b).await, 20);

    let bad = bench(
        &format!("{},ftp://x", a.base_url()),
        dir.path(),
        &["--num-prompts", "2"],
    )
    .await;
    let e = format!("{:#}", bad.result.unwrap_err());
    assert!(e.contains("--base-url ftp://x"), "{e}");
    a.shutdown().await;
    b.shutdown().await;
}
