//! The prefix cache seen by a client: `usage.prompt_tokens_details.cached_tokens`, equal to
//! the `/metrics` hit counter, and `POST /reset_prefix_cache`.

use serde_json::{Value, json};

use super::metrics::{delta, scrape};
use super::{fast, stream};
use crate::{SimConfig, SimServer};

/// One request's usage: streamed (the usage chunk) or not.
async fn usage(base: &str, prompt: &[u32], streamed: bool) -> Value {
    let url = format!("{base}/v1/completions");
    let body = json!({"prompt": prompt, "max_tokens": 3, "stream": streamed,
                      "stream_options": {"include_usage": true}});
    if streamed {
        return stream(&url, body, None).await.json().last().unwrap()["usage"].clone();
    }
    let v: Value = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["usage"].clone()
}

fn cached(u: &Value) -> u64 {
    u["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn cached_tokens_in_usage_equal_the_hit_counter_and_reset_empties_the_cache() {
    let s = SimServer::start(SimConfig {
        prefix_cache_tokens: 4096,
        ..fast()
    })
    .await
    .unwrap();
    let base = s.base_url();
    let before = scrape(&base).await;
    // 40 shared tokens (2 full blocks) then 10 of each request's own: 32 tokens hit after the
    // first; a hit never covers the last token, so a repeated 32-token prompt hits 16.
    let shared: Vec<u32> = (100..140).collect();
    let mut seen = Vec::new();
    for i in 0..4u32 {
        let mut p = shared.clone();
        p.extend(1000 * (i + 1)..1000 * (i + 1) + 10);
        seen.push(cached(&usage(&base, &p, i % 2 == 0).await));
    }
    let short: Vec<u32> = (100..132).collect();
    seen.push(cached(&usage(&base, &short, true).await));
    assert_eq!(seen, [0, 32, 32, 32, 16]);
    let after = scrape(&base).await;
    let hits = delta(&before, &after, "vllm:prefix_cache_hits_total", "");
    assert_eq!(hits, seen.iter().sum::<u64>() as f64);

    let resp = reqwest::Client::new()
        .post(format!("{base}/reset_prefix_cache"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(cached(&usage(&base, &shared, true).await), 0);
    assert_eq!(cached(&usage(&base, &shared, false).await), 32);
    s.shutdown().await;

    // Off (the default): no details, and the reset endpoint still answers.
    let s = SimServer::start(fast()).await.unwrap();
    let base = s.base_url();
    let u = usage(&base, &shared, true).await;
    assert!(u.get("prompt_tokens_details").is_none(), "{u}");
    let resp = reqwest::Client::new()
        .post(format!("{base}/reset_prefix_cache"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    s.shutdown().await;
}
