//! `--reset-prefix-cache`: empties each replica's prefix cache before a test, through whichever
//! endpoint the server has, tried in turn:
//!
//! - vLLM: `POST /reset_prefix_cache` (served with `VLLM_SERVER_DEV_MODE=1`); `benchctl sim`
//!   has it too.
//! - SGLang: `POST /flush_cache`.
//! - llama.cpp: `POST /slots/N?action=erase` for each of its `total_slots` (`GET /props`), which
//!   drops a slot's cached prompt (`tools/server/server-context.cpp`,
//!   `SERVER_TASK_TYPE_SLOT_ERASE`). llama-server answers it only when started with
//!   `--slot-save-path DIR`; its RAM prompt cache (`--cache-ram`, on by default) is not
//!   cleared by it, so only `--cache-ram 0` leaves nothing cached.
//!
//! The outcome is one sentence per test, kept in its result (`prefix_cache_reset`); a server
//! where none works says so, and the run goes on.

use std::time::Duration;

/// Resets the prefix cache of every replica; the sentence says how, or why not.
pub async fn reset(base_urls: &[String], api_key: Option<&str>) -> String {
    let client = match reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(c) => c,
        Err(e) => return format!("not done: no HTTP client ({e})"),
    };
    let mut said = Vec::new();
    for base in base_urls {
        said.push(match reset_one(&client, base, api_key).await {
            Ok(how) => how,
            Err(why) => format!("NOT DONE at {base}: {why}; the cache may hold earlier prompts"),
        });
    }
    said.dedup();
    said.join("; ")
}

/// One replica: the first endpoint that answers 2xx.
async fn reset_one(
    client: &reqwest::Client,
    base: &str,
    api_key: Option<&str>,
) -> Result<String, String> {
    let post = |path: String| {
        let mut r = client.post(format!("{base}{path}"));
        if let Some(k) = api_key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    let mut tried = Vec::new();
    for (server, path) in [("vLLM", "/reset_prefix_cache"), ("SGLang", "/flush_cache")] {
        match post(path.to_owned()).await {
            Ok(r) if r.status().is_success() => return Ok(format!("{server} POST {path}")),
            Ok(r) => tried.push(format!("{path}: HTTP {}", r.status().as_u16())),
            Err(e) => tried.push(format!("{path}: {e}")),
        }
    }
    let slots = match llama_slots(client, base).await {
        Some(n) => n,
        None => return Err(format!("no reset endpoint answered ({})", tried.join(", "))),
    };
    for id in 0..slots {
        let r = post(format!("/slots/{id}?action=erase"))
            .await
            .map_err(|e| format!("llama.cpp /slots/{id}?action=erase: {e}"))?;
        if !r.status().is_success() {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            return Err(format!(
                "llama.cpp /slots/{id}?action=erase: HTTP {status} {} (llama-server erases slots only with --slot-save-path)",
                body.chars().take(200).collect::<String>()
            ));
        }
    }
    Ok(format!(
        "llama.cpp POST /slots/N?action=erase, {slots} slots (its --cache-ram prompt cache is not cleared)"
    ))
}

/// llama.cpp's slot count (`GET /props` → `total_slots`); `None` for another server.
async fn llama_slots(client: &reqwest::Client, base: &str) -> Option<u64> {
    let r = client.get(format!("{base}/props")).send().await.ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    v.get("total_slots")?.as_u64()
}
