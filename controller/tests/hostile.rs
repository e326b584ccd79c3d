//! `benchctl bench` (the binary, as a user runs it) against servers that misbehave on a real
//! socket: each case ends within its limits with a counted failure of the right kind and a
//! sentence, never a panic, a hang or unbounded memory. Each test prints how long it took.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::hostile::{Behaviour, Hostile};

/// A run still going after this is a hang (every limit used below is far shorter).
const HANG: Duration = Duration::from_secs(90);

struct Outcome {
    ok: bool,
    stderr: String,
    json: Option<serde_json::Value>,
    took: Duration,
}

impl Outcome {
    fn json(&self) -> &serde_json::Value {
        self.json
            .as_ref()
            .unwrap_or_else(|| panic!("a result was written; stderr: {}", self.stderr))
    }

    fn failed(&self, kind: &str) -> u64 {
        self.json()["failed_by_kind"][kind].as_u64().unwrap_or(0)
    }

    fn first_error(&self, kind: &str) -> String {
        self.json()["first_error"][kind]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// `benchctl bench` with 2 requests at concurrency 2 against `server`, plus `extra`.
async fn bench(server: &Hostile, dir: &Path, extra: &[&str]) -> Outcome {
    let tok = dir.join("tokenizer.json");
    std::fs::write(&tok, sim::TOKENIZER_JSON).unwrap();
    let result = dir.join("result.json");
    let mut cmd = tokio::process::Command::new(common::BIN);
    cmd.args(["bench", "--base-url", &server.base_url, "--model-name", "m"])
        .arg("--tokenizer")
        .arg(&tok)
        .args(["--num-prompts", "2", "--max-concurrency", "2"])
        .args(["--input-len", "8", "--output-len", "4", "--quiet"])
        .arg("--save-result")
        .arg(&result)
        .args(extra)
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let start = Instant::now();
    let out = tokio::time::timeout(HANG, cmd.output())
        .await
        .expect("benchctl ends (no hang)")
        .unwrap();
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    Outcome {
        ok: out.status.success(),
        stderr,
        json: std::fs::read(&result)
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap()),
        took,
    }
}

/// Every request failed with `kind`, the exit status says so, in `[min, max]` seconds.
fn assert_all_failed(o: &Outcome, kind: &str, min: f64, max: f64) {
    assert!(!o.ok, "a run where every request failed exits non-zero");
    assert!(
        o.stderr.contains("every request failed") && o.stderr.contains(kind),
        "{}",
        o.stderr
    );
    assert_eq!(o.failed(kind), 2, "{}", o.json()["failed_by_kind"]);
    let took = o.took.as_secs_f64();
    assert!(
        (min..max).contains(&took),
        "ended after {took:.1}s, expected within [{min}, {max}]s"
    );
    eprintln!("{kind}: ended after {took:.2}s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_accepts_and_never_answers_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::start(Behaviour::Silent).await;
    let o = bench(&server, dir.path(), &["--no-preflight", "--timeout", "3s"]).await;
    assert_all_failed(&o, "timeout", 3.0, 30.0);
    assert!(
        o.first_error("timeout")
            .contains("within 3s (--timeout), waiting for the response headers"),
        "{}",
        o.first_error("timeout")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_then_nothing_is_a_stall() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::start(Behaviour::HeadersOnly).await;
    let args = [
        "--no-preflight",
        "--timeout",
        "60s",
        "--stall-timeout",
        "2s",
    ];
    let o = bench(&server, dir.path(), &args).await;
    assert_all_failed(&o, "stall", 2.0, 30.0);
    assert!(
        o.first_error("stall")
            .contains("no bytes for 2s (--stall-timeout)"),
        "{}",
        o.first_error("stall")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickle_of_one_byte_a_second_is_cut_by_the_request_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::start(Behaviour::Trickle).await;
    // each byte resets the stall timer: only the request's own limit ends it
    let args = ["--no-preflight", "--timeout", "5s", "--stall-timeout", "3s"];
    let o = bench(&server, dir.path(), &args).await;
    assert_all_failed(&o, "timeout", 5.0, 30.0);
    assert!(
        o.first_error("timeout").contains("reading the stream"),
        "{}",
        o.first_error("timeout")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_after_a_correct_start_is_a_truncated_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::start(Behaviour::ResetMidStream).await;
    let o = bench(&server, dir.path(), &["--no-preflight", "--timeout", "30s"]).await;
    assert_all_failed(&o, "truncated_stream", 0.0, 20.0);
    let e = o.first_error("truncated_stream");
    assert!(e.contains("reset"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_line_without_a_newline_is_refused_at_the_line_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::start(Behaviour::LongLine(10 << 20)).await;
    let o = bench(&server, dir.path(), &["--no-preflight", "--timeout", "60s"]).await;
    assert_all_failed(&o, "malformed_chunk", 0.0, 30.0);
    let e = o.first_error("malformed_chunk");
    assert!(e.contains("exceeds the 4194304 byte limit"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_character_split_across_reads_is_joined_and_invalid_utf8_is_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::start(Behaviour::SplitUtf8 { valid: true }).await;
    let start = Instant::now();
    let o = bench(
        &server,
        dir.path(),
        &["--timeout", "30s", "--save-detailed"],
    )
    .await;
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(o.json()["completed"], 2, "{}", o.stderr);
    assert_eq!(o.json()["generated_texts"][0], "aéb");

    let server = Hostile::start(Behaviour::SplitUtf8 { valid: false }).await;
    let o = bench(&server, dir.path(), &["--no-preflight", "--timeout", "30s"]).await;
    assert_all_failed(&o, "malformed_chunk", 0.0, 20.0);
    let e = o.first_error("malformed_chunk");
    assert!(e.contains("not valid JSON"), "{e}");
    eprintln!("both runs: {:.2}s", start.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_during_the_preflight_stops_the_run_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::start(Behaviour::CloseOnRequest).await;
    let o = bench(&server, dir.path(), &["--timeout", "60s"]).await;
    assert!(!o.ok);
    assert!(
        o.stderr
            .contains("the preflight request failed, no load was sent")
            && o.stderr.contains("closed"),
        "{}",
        o.stderr
    );
    assert!(o.json.is_none(), "no load, no result");
    assert!(o.took < Duration::from_secs(20), "{:?}", o.took);
    eprintln!("closed during the preflight: ended after {:.2?}", o.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_preflight_is_limited_and_says_what_it_waits_for() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::start(Behaviour::Silent).await;
    let o = bench(&server, dir.path(), &["--preflight-timeout", "7s"]).await;
    assert!(!o.ok);
    assert!(
        o.stderr
            .contains("waiting for the preflight request's answer from")
            && o.stderr.contains("(--preflight-timeout 7s) ("),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr
            .contains("no complete response within 7s (--preflight-timeout)")
            && o.stderr.contains("may be wedged"),
        "{}",
        o.stderr
    );
    assert!((7.0..30.0).contains(&o.took.as_secs_f64()), "{:?}", o.took);
    eprintln!("wedged preflight: ended after {:.2?}", o.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wedged_server_is_named_on_stderr_even_with_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let server = Hostile::start(Behaviour::Silent).await;
    let o = bench(&server, dir.path(), &["--no-preflight", "--timeout", "8s"]).await;
    assert!(
        o.stderr
            .contains("waiting for the server: no request has finished yet (")
            && o.stderr.contains(
                "s; warm-up, queueing, prefill or long outputs; a request ends at --timeout 8s, --stall-timeout off)"
            ),
        "{}",
        o.stderr
    );
    assert_all_failed(&o, "timeout", 8.0, 40.0);
}
