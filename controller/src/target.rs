//! The server a run measures: its URL(s), the model, the tokenizer, the request form and the API
//! key's source, as a plain serde type (what a submitted sweep carries and a checkpoint keeps,
//! never the key itself); and the checks made before any load: [`prepare`] resolves the model
//! and tokenizer against the server, [`preflight`] sends one request as the run will.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use loadgen::{Backend, BodySpec, EndpointKind, ErrorKind, HttpClient, RequestRecord, Tokenizer};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// The environment variable the API key is read from where no `--api-key` is given (the
/// controllers of the distributed mode read it from their own environment).
pub const API_KEY_ENV: &str = "OPENAI_API_KEY";

/// The server and the requests' form. Field names are those of the `benchctl bench` flags they
/// come from; the API key is never serialized. (`Debug` is written by hand: it must not show
/// the key.)
#[derive(Clone, Serialize, Deserialize)]
pub struct Target {
    /// One URL or several replicas, comma-separated (`--base-url`).
    pub base_url: String,
    pub endpoint: String,
    pub backend: Backend,
    pub model_path: Option<PathBuf>,
    pub model_name: Option<String>,
    pub tokenizer: Option<PathBuf>,
    pub timeout: Duration,
    pub stall_timeout: Option<Duration>,
    /// Limit of the preflight request (`--preflight-timeout`; absent in plans saved before it:
    /// [`DEFAULT_PREFLIGHT_TIMEOUT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight_timeout: Option<Duration>,
    pub ignore_eos: bool,
    pub temperature: f64,
    pub extra_body: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip)]
    pub api_key: Option<String>,
}

impl Target {
    /// `base_url` split into its replicas, without trailing slashes.
    pub fn base_urls(&self) -> Vec<String> {
        self.base_url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.trim_end_matches('/').to_string())
            .collect()
    }

    /// The key from this process's environment ([`API_KEY_ENV`]): a controller running a
    /// submitted sweep uses its own.
    pub fn with_key_from_env(mut self) -> Target {
        self.api_key = std::env::var(API_KEY_ENV).ok().filter(|k| !k.is_empty());
        self
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("base_url", &self.base_url)
            .field("endpoint", &self.endpoint)
            .field("backend", &self.backend)
            .field("model_path", &self.model_path)
            .field("model_name", &self.model_name)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("tokenizer", &self.tokenizer)
            .finish_non_exhaustive()
    }
}

/// The preflight request's limit where none is given (held under `--timeout`).
pub const DEFAULT_PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(60);
/// Limit of each question asked of the server before the run (`/v1/models`, `/tokenize`).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a run needs, resolved from the target and the server before any load is sent.
pub struct Prepared {
    pub client: HttpClient,
    pub tokenizer: Tokenizer,
    pub model: String,
    pub target_is_simulator: bool,
    /// The preflight request's limit.
    pub preflight_timeout: Duration,
}

/// Checks the URLs, resolves the model name and tokenizer, checks that the server answers.
/// `conns`: the connection pool's size (the largest concurrency that will be run).
pub async fn prepare(target: &Target, conns: usize) -> anyhow::Result<Prepared> {
    let urls = target.base_urls();
    if urls.is_empty() {
        bail!("--base-url {:?}: no URL in it", target.base_url);
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
        target.endpoint.trim_start_matches('/')
    ))
    .with_context(|| {
        format!(
            "--endpoint {:?} does not make a URL with --base-url",
            target.endpoint
        )
    })?;
    let probe = reqwest::Client::builder()
        .no_proxy()
        .timeout(PROBE_TIMEOUT)
        .build()?;
    let listed = crate::waiting::announced(
        &format!(
            "the server at {base_str} to answer GET /v1/models (at most {}s)",
            PROBE_TIMEOUT.as_secs()
        ),
        list_models(&probe, &base_str),
    )
    .await?;
    let model = match (&target.model_name, &target.model_path, listed.first()) {
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

    let tokenizer = match (&target.tokenizer, &target.model_path) {
        (Some(t), _) => Tokenizer::from_path(t)?,
        (None, Some(p)) if p.join("tokenizer.json").is_file() => Tokenizer::from_path(p)?,
        (None, other) => {
            if let Some(p) = other {
                tracing::warn!(
                    "--model-path {} has no tokenizer.json; trying the server's /tokenize",
                    p.display()
                );
            }
            crate::waiting::announced(
                &format!(
                    "the server's tokenizer at {base_str}/tokenize (at most {}s)",
                    PROBE_TIMEOUT.as_secs()
                ),
                Tokenizer::remote(probe.clone(), &base_str, &model),
            )
            .await?
        }
    };

    let client = HttpClient::new(
        loadgen::Target {
            url,
            api_key: target.api_key.clone(),
            body: BodySpec {
                kind: EndpointKind::from_path(&target.endpoint),
                backend: target.backend,
                model: model.clone(),
                ignore_eos: target.ignore_eos,
                temperature: target.temperature,
                extra_body: target.extra_body.clone().unwrap_or_default(),
            },
            timeout: target.timeout,
            stall_timeout: target.stall_timeout,
        },
        conns,
    )?;
    Ok(Prepared {
        client,
        tokenizer,
        model,
        target_is_simulator,
        preflight_timeout: target
            .preflight_timeout
            .unwrap_or(DEFAULT_PREFLIGHT_TIMEOUT)
            .min(target.timeout),
    })
}

/// The models `/v1/models` lists, with their owners. One GET also tells a refused connection
/// from a server that answers; a server without the endpoint lists none.
async fn list_models(probe: &reqwest::Client, base: &str) -> anyhow::Result<Vec<(String, String)>> {
    let models = match probe.get(format!("{base}/v1/models")).send().await {
        Err(e) if e.is_timeout() => bail!(
            "the server at {base} accepted the connection but did not answer GET /v1/models within {}s: it may be wedged or overloaded",
            PROBE_TIMEOUT.as_secs()
        ),
        Err(e) if e.is_connect() => bail!(
            "cannot reach the server at {base}: {}; is it running? (`benchctl sim` starts a simulated one)",
            loadgen::client::error_chain(&e)
        ),
        Err(e) => bail!(
            "cannot reach the server at {base}: {}",
            loadgen::client::error_chain(&e)
        ),
        Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
        Ok(_) => None, // some servers have no /v1/models (transformers serve answers 500)
    };
    Ok(models
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
        .unwrap_or_default())
}

/// Sends the first prompt once, as the run will (with at most 16 output tokens), so that a payload
/// the server rejects, or a server that does not answer, stops the run before any load. It is
/// limited by `--preflight-timeout`, and says what it waits for when it takes a while.
pub async fn preflight(prep: &Prepared, prompt: &loadgen::Prompt) -> anyhow::Result<()> {
    let client = &prep.client;
    let mut rec = RequestRecord {
        request_id: "benchctl-preflight".into(),
        ..Default::default()
    };
    let body = client
        .body_spec()
        .render(&prompt.text, prompt.output_len.min(16));
    let what = format!(
        "the preflight request's answer from {} (--preflight-timeout {})",
        client.target().url,
        humantime::format_duration(prep.preflight_timeout)
    );
    crate::waiting::announced(
        &what,
        client.execute_within(
            &mut rec,
            body,
            &CancellationToken::new(),
            prep.preflight_timeout,
        ),
    )
    .await;
    match rec.error {
        None => Ok(()),
        Some(mut e) => {
            let hint = match (e.kind, e.status) {
                (ErrorKind::Http4xx, Some(422)) | (ErrorKind::Http4xx, Some(400)) => {
                    "; the server rejects the request body: try --backend openai (sends only standard fields) or change --extra-body"
                }
                (ErrorKind::Http4xx, Some(404)) => "; check --endpoint and --model-name",
                (ErrorKind::Http4xx, Some(401)) | (ErrorKind::Http4xx, Some(403)) => {
                    "; check --api-key / OPENAI_API_KEY"
                }
                (ErrorKind::Timeout | ErrorKind::Stall, _) => {
                    "; the server accepted the request but did not finish answering: it may be wedged, overloaded or still loading"
                }
                _ => "",
            };
            if e.kind == ErrorKind::Timeout {
                e.message = e.message.replace("(--timeout)", "(--preflight-timeout)");
            }
            bail!(
                "the preflight request failed, no load was sent: {e}{hint} (skip the check with --no-preflight)"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            base_url: "http://a:1/, http://b:2".into(),
            endpoint: "/v1/completions".into(),
            backend: Backend::Vllm,
            model_path: None,
            model_name: Some("m".into()),
            tokenizer: None,
            timeout: Duration::from_secs(600),
            stall_timeout: None,
            preflight_timeout: None,
            ignore_eos: true,
            temperature: 0.0,
            extra_body: None,
            api_key: Some("sk-very-secret".into()),
        }
    }

    #[test]
    fn the_key_is_neither_serialized_nor_shown() {
        let t = target();
        let json = serde_json::to_string(&t).unwrap();
        assert!(!json.contains("sk-very-secret"), "{json}");
        assert!(!format!("{t:?}").contains("sk-very-secret"));
        let back: Target = serde_json::from_str(&json).unwrap();
        assert_eq!(back.api_key, None);
        assert_eq!(back.base_urls(), ["http://a:1", "http://b:2"]);
    }
}
