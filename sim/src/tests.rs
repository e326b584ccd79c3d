//! End-to-end tests of the simulator over real HTTP on 127.0.0.1.

use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use super::{SimConfig, SimServer, tokenizer};

mod metrics;
mod prefix;

#[test]
fn clap_args_and_defaults() {
    use clap::{CommandFactory as _, Parser as _};
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimConfig,
    }
    Cli::command().debug_assert();
    let c = Cli::try_parse_from(["sim"]).unwrap().sim;
    let d = SimConfig::default();
    assert_eq!((c.host.as_str(), c.port, d.port), ("127.0.0.1", 8000, 0));
    assert_eq!(c.model_name, d.model_name);
    assert_eq!(
        (c.max_batch, c.kv_cache_tokens, c.max_model_len),
        (256, 262_144, 32_768)
    );
    assert_eq!(
        (
            c.decode_step_base_ms,
            c.decode_step_per_seq_us,
            c.prefill_us_per_token
        ),
        (8.0, 150.0, 20.0)
    );
    assert!(!c.strict && !c.no_done && c.emission_log.is_none());
    let c = Cli::try_parse_from([
        "sim",
        "--strict",
        "--fault-stall-rate",
        "0.5",
        "--tokens-per-chunk",
        "4",
    ])
    .unwrap()
    .sim;
    assert!(c.strict && c.fault_stall_rate == 0.5 && c.tokens_per_chunk == 4);
    assert!(!c.preempt && c.prefix_cache_tokens == 0);
    assert!(!d.preempt && d.prefix_cache_tokens == 0);
    let c = Cli::try_parse_from(["sim", "--preempt", "--prefix-cache-tokens", "4096"])
        .unwrap()
        .sim;
    assert!(c.preempt && c.prefix_cache_tokens == 4096);
    let bad = SimConfig {
        prefix_cache_tokens: 8,
        ..d
    };
    let e = bad.validate().unwrap_err().to_string();
    assert!(
        e.contains("--prefix-cache-tokens") && e.contains('8'),
        "{e}"
    );
}

fn fast() -> SimConfig {
    SimConfig {
        decode_step_base_ms: 1.0,
        decode_step_per_seq_us: 0.0,
        prefill_us_per_token: 0.0,
        ..SimConfig::default()
    }
}

/// One streamed response: its SSE `data:` payloads, and whether the body
/// ended with an error (instead of a clean end).
struct Sse {
    events: Vec<String>,
    body_error: bool,
}

impl Sse {
    fn json(&self) -> Vec<Value> {
        self.events
            .iter()
            .filter(|e| *e != "[DONE]")
            .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}")))
            .collect()
    }
}

async fn stream(url: &str, body: Value, request_id: Option<&str>) -> Sse {
    let mut req = reqwest::Client::new().post(url).json(&body);
    if let Some(id) = request_id {
        req = req.header("x-request-id", id);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut body_stream = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut body_error = false;
    while let Some(chunk) = body_stream.next().await {
        match chunk {
            Ok(b) => buf.extend_from_slice(&b),
            Err(_) => {
                body_error = true;
                break;
            }
        }
    }
    let text = String::from_utf8(buf).unwrap();
    let mut events = Vec::new();
    for ev in text.split("\n\n").filter(|e| !e.is_empty()) {
        events.push(ev.strip_prefix("data: ").expect(ev).to_owned());
    }
    if !body_error {
        assert!(text.ends_with("\n\n"));
    }
    Sse { events, body_error }
}

fn content_texts(events: &[Value], chat: bool) -> Vec<String> {
    events
        .iter()
        .filter(|e| !e["choices"].as_array().unwrap().is_empty())
        .filter_map(|e| {
            let c = &e["choices"][0];
            if chat {
                c["delta"]
                    .get("role")
                    .is_none()
                    .then(|| c["delta"]["content"].as_str().unwrap().to_owned())
            } else {
                Some(c["text"].as_str().unwrap().to_owned())
            }
        })
        .collect()
}

#[tokio::test]
async fn completions_stream_usage_and_done() {
    let s = SimServer::start(SimConfig {
        tokens_per_chunk: 3,
        ..fast()
    })
    .await
    .unwrap();
    let prompt = "Hello there, simulated world!";
    let p = tokenizer().encode(prompt, false).unwrap().len();
    let url = format!("{}/v1/completions", s.base_url());
    let body = json!({"model": "benchctl-sim", "prompt": prompt, "max_tokens": 10, "stream": true,
                      "stream_options": {"include_usage": true}, "ignore_eos": true});
    let r = stream(&url, body.clone(), Some("abc")).await;
    assert!(!r.body_error);
    assert_eq!(r.events.last().unwrap(), "[DONE]");
    let evs = r.json();
    assert_eq!(evs.len(), 5); // 3+3+3+1 tokens, then usage
    assert!(evs.iter().all(|e| e["id"] == "cmpl-abc"));
    assert_eq!(evs[0]["object"], "text_completion");
    assert_eq!(evs[3]["choices"][0]["finish_reason"], "length");
    assert!(evs[2]["choices"][0]["finish_reason"].is_null());
    assert_eq!(evs[4]["choices"], json!([]));
    assert_eq!(
        evs[4]["usage"],
        json!({"prompt_tokens": p, "completion_tokens": 10, "total_tokens": p + 10})
    );
    // Exactly 10 tokens of text, deterministic for the seed and arrival index.
    let text: String = content_texts(&evs, false).concat();
    let again = SimServer::start(SimConfig {
        tokens_per_chunk: 3,
        ..fast()
    })
    .await
    .unwrap();
    let r2 = stream(&format!("{}/v1/completions", again.base_url()), body, None).await;
    assert_eq!(content_texts(&r2.json(), false).concat(), text);
    again.shutdown().await;

    // Non-streaming: same text for the same arrival index, with usage.
    let fresh = SimServer::start(fast()).await.unwrap();
    let resp: Value = reqwest::Client::new()
        .post(format!("{}/v1/completions", fresh.base_url()))
        .json(&json!({"prompt": prompt, "max_tokens": 10}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["choices"][0]["text"].as_str().unwrap(), text);
    assert_eq!(resp["usage"]["completion_tokens"], 10);
    assert_eq!(resp["usage"]["prompt_tokens"], p);
    fresh.shutdown().await;
    s.shutdown().await;
}

#[tokio::test]
async fn chat_role_chunk_first_and_no_done() {
    let s = SimServer::start(SimConfig {
        no_done: true,
        ..fast()
    })
    .await
    .unwrap();
    let messages =
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]);
    let url = format!("{}/v1/chat/completions", s.base_url());
    let body = json!({"model": "benchctl-sim", "messages": messages, "max_completion_tokens": 4,
                      "stream": true, "stream_options": {"include_usage": true}});
    let r = stream(&url, body, None).await;
    assert!(!r.body_error);
    assert!(r.events.iter().all(|e| e != "[DONE]"));
    let evs = r.json();
    assert_eq!(evs[0]["object"], "chat.completion.chunk");
    assert_eq!(
        evs[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(content_texts(&evs, true).len(), 4);
    assert_eq!(evs[4]["choices"][0]["finish_reason"], "length");
    let usage = &evs.last().unwrap()["usage"];
    let rendered = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n";
    let p = tokenizer().encode(rendered, false).unwrap().len();
    assert_eq!(usage["prompt_tokens"], p);
    assert_eq!(usage["completion_tokens"], 4);
    // /tokenize with messages agrees.
    let t: Value = reqwest::Client::new()
        .post(format!("{}/tokenize", s.base_url()))
        .json(&json!({"messages": messages}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["count"], p);
    s.shutdown().await;
}

#[tokio::test]
async fn validation_errors() {
    let s = SimServer::start(SimConfig {
        strict: true,
        max_model_len: 100,
        ..fast()
    })
    .await
    .unwrap();
    let c = reqwest::Client::new();
    let url = format!("{}/v1/completions", s.base_url());
    let r = c
        .post(&url)
        .json(&json!({"prompt": "x", "max_tokens": 2, "ignore_eos": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"detail": "Unexpected fields in the request: ignore_eos"})
    );

    let r = c
        .post(&url)
        .json(&json!({"model": "gpt-9", "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("gpt-9"));

    let r = c
        .post(&url)
        .json(&json!({"prompt": "x", "max_tokens": 100}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let msg = r.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("101") && msg.contains("100"), "{msg}");
    s.shutdown().await;
}

#[tokio::test]
async fn models_tokenize_detokenize_metrics_health() {
    let s = SimServer::start(fast()).await.unwrap();
    let c = reqwest::Client::new();
    let base = s.base_url();
    let m: Value = c
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["data"][0]["id"], "benchctl-sim");
    assert_eq!(
        m["data"][0]["owned_by"],
        "benchctl-sim (simulator, not a real model)"
    );
    assert_eq!(m["data"][0]["max_model_len"], 32768);
    let prompt = "The quick brown fox jumps over the lazy dog. 12345 \u{e9}\u{e8}";
    let t: Value = c
        .post(format!("{base}/tokenize"))
        .json(&json!({"model": "benchctl-sim", "prompt": prompt}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids = tokenizer()
        .encode(prompt, false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(t["count"], ids.len());
    assert_eq!(t["tokens"], json!(ids));
    let d: Value = c
        .post(format!("{base}/detokenize"))
        .json(&json!({"tokens": ids}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["prompt"], prompt);
    assert_eq!(
        c.get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let _ = stream(
        &format!("{base}/v1/completions"),
        json!({"prompt": "hi", "max_tokens": 5, "stream": true}),
        None,
    )
    .await;
    let text = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "vllm:num_requests_running{model_name=\"benchctl-sim\"} 0",
        "vllm:num_requests_waiting{model_name=\"benchctl-sim\"} 0",
        "vllm:gpu_cache_usage_perc{model_name=\"benchctl-sim\"} 0",
        "vllm:kv_cache_usage_perc{model_name=\"benchctl-sim\"} 0",
        "benchctl_sim_requests_total{model_name=\"benchctl-sim\"} 1",
        "benchctl_sim_tokens_generated_total{model_name=\"benchctl-sim\"} 5",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
    s.shutdown().await;
}

fn completion_body(max_tokens: usize) -> Value {
    json!({"prompt": "fault", "max_tokens": max_tokens, "stream": true,
           "stream_options": {"include_usage": true}})
}

#[tokio::test]
async fn fault_error() {
    let s = SimServer::start(SimConfig {
        fault_error_rate: 1.0,
        ..fast()
    })
    .await
    .unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/completions", s.base_url()))
        .json(&completion_body(4))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "InternalServerError");
    assert_eq!(v["error"]["code"], 500);
    assert_eq!(
        v["error"]["message"],
        "simulated internal error (benchctl sim fault injection)"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn fault_malformed() {
    let s = SimServer::start(SimConfig {
        fault_malformed_rate: 1.0,
        ..fast()
    })
    .await
    .unwrap();
    let r = stream(
        &format!("{}/v1/completions", s.base_url()),
        completion_body(6),
        None,
    )
    .await;
    assert!(!r.body_error);
    assert_eq!(r.events[1], "{\"choices\": [");
    assert_eq!(r.events.len(), 6 + 2);
    assert!(serde_json::from_str::<Value>(&r.events[2]).is_ok());
    assert_eq!(r.events.last().unwrap(), "[DONE]");
    s.shutdown().await;
}

#[tokio::test]
async fn fault_truncate() {
    let s = SimServer::start(SimConfig {
        fault_truncate_rate: 1.0,
        ..fast()
    })
    .await
    .unwrap();
    let r = stream(
        &format!("{}/v1/completions", s.base_url()),
        completion_body(10),
        None,
    )
    .await;
    assert!(r.body_error, "the body must end with an error");
    // The first half arrived (flushed before the abort), nothing after it.
    assert_eq!(content_texts(&r.json(), false).len(), 5);
    s.shutdown().await;
}

#[tokio::test]
async fn fault_stall() {
    let s = SimServer::start(SimConfig {
        fault_stall_rate: 1.0,
        ..fast()
    })
    .await
    .unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", s.base_url()))
        .json(&json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 50, "stream": true}))
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    while text.matches("\n\n").count() < 2 {
        let b = tokio::time::timeout(Duration::from_secs(5), body.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&b).unwrap());
    }
    assert_eq!(text.matches("\n\n").count(), 2); // role chunk + first content chunk
    assert!(
        tokio::time::timeout(Duration::from_millis(300), body.next())
            .await
            .is_err()
    );
    // The stalled sequence no longer holds a batch slot or KV.
    let m = reqwest::get(format!("{}/metrics", s.base_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.contains("vllm:num_requests_running{model_name=\"benchctl-sim\"} 0"),
        "{m}"
    );
    // Shutdown ends the held stream.
    let shut = tokio::spawn(s.shutdown());
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
    assert!(end.is_ok());
    shut.await.unwrap();
}

#[tokio::test]
async fn emission_log_matches_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("emissions.jsonl");
    let s = SimServer::start(SimConfig {
        emission_log: Some(path.clone()),
        tokens_per_chunk: 2,
        ..fast()
    })
    .await
    .unwrap();
    let url = format!("{}/v1/completions", s.base_url());
    let (a, b) = tokio::join!(
        stream(&url, completion_body(7), Some("req-a")),
        stream(&url, completion_body(3), None),
    );
    let gen_id = b.json()[0]["id"].as_str().unwrap().to_owned();
    s.shutdown().await;
    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (id, r, tokens) in [
        ("req-a", &a, vec![2, 2, 2, 1]),
        (gen_id.as_str(), &b, vec![2, 1]),
    ] {
        let mine: Vec<&Value> = lines.iter().filter(|l| l["request_id"] == id).collect();
        let content: Vec<&&Value> = mine.iter().filter(|l| l["kind"] == "content").collect();
        assert_eq!(content.len(), content_texts(&r.json(), false).len());
        for (i, l) in content.iter().enumerate() {
            assert_eq!(l["seq"], i);
            assert_eq!(l["tokens"], tokens[i]);
        }
        let kinds: Vec<&str> = mine.iter().map(|l| l["kind"].as_str().unwrap()).collect();
        assert_eq!(&kinds[kinds.len() - 2..], ["usage", "done"]);
        let ts: Vec<u64> = mine
            .iter()
            .map(|l| l["t_mono_ns"].as_u64().unwrap())
            .collect();
        assert!(ts.windows(2).all(|w| w[0] <= w[1]));
        assert!(ts[0] > 0);
    }
}
