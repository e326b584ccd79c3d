//! HTTP handlers of the simulator (OpenAI/vLLM-compatible endpoints).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::channels::Channels;
use super::emission::EmissionLog;
use super::engine::{EngineHandle, Job};
use super::faults::{Fault, FaultRates};
use super::metrics::Metrics;
use super::prefix_cache::block_hashes;
use super::stream::{Render, SseBody, TokenRng, generate_text, json_escape};
use super::usage::json_usage;
use super::{SimConfig, tokenizer};

/// Request fields accepted in `--strict` mode.
const STANDARD_FIELDS: &[&str] = &[
    "model",
    "prompt",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "user",
    "logprobs",
    "presence_penalty",
    "frequency_penalty",
];

pub(crate) struct AppState {
    cfg: SimConfig,
    rates: FaultRates,
    engine: EngineHandle,
    metrics: Arc<Metrics>,
    log: Option<EmissionLog>,
    cancel: CancellationToken,
    arrivals: AtomicU64,
    /// Distinguishes the generated ids of different server instances.
    nonce: u64,
    created: u64,
}

impl AppState {
    pub(crate) fn new(
        cfg: SimConfig,
        engine: EngineHandle,
        metrics: Arc<Metrics>,
        log: Option<EmissionLog>,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let now = unix_now();
        Arc::new(Self {
            rates: cfg.fault_rates(),
            cfg,
            engine,
            metrics,
            log,
            cancel,
            arrivals: AtomicU64::new(0),
            nonce: super::faults::mix(now, std::process::id() as u64) & 0xffff_ffff,
            created: now,
        })
    }
}

type St = State<Arc<AppState>>;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/metrics", get(metrics))
        .route("/reset_prefix_cache", post(reset_prefix_cache))
        .with_state(state)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A request that is answered with an error.
#[derive(Debug)]
enum ApiError {
    /// An OpenAI-style error: `{"error": {"message", "type", "param", "code"}}`.
    OpenAi(StatusCode, &'static str, String),
    /// `transformers serve`'s 422 shape: `{"detail": …}`.
    Unprocessable(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::OpenAi(status, kind, message) => {
                let body = json!({"error": {"message": message, "type": kind, "param": null, "code": status.as_u16()}});
                (status, axum::Json(body)).into_response()
            }
            ApiError::Unprocessable(detail) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(json!({ "detail": detail })),
            )
                .into_response(),
        }
    }
}

/// An OpenAI-style error response.
fn error(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Response {
    ApiError::OpenAi(status, kind, message.into()).into_response()
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::OpenAi(StatusCode::BAD_REQUEST, "BadRequestError", message.into())
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad_request("the request body must be a JSON object")),
        Err(e) => Err(bad_request(format!("invalid JSON body: {e}"))),
    }
}

fn check_model(st: &AppState, m: &Map<String, Value>) -> Result<(), ApiError> {
    match m.get("model") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if *s == st.cfg.model_name => Ok(()),
        Some(v) => {
            let name = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            Err(ApiError::OpenAi(
                StatusCode::NOT_FOUND,
                "NotFoundError",
                format!(
                    "The model `{name}` does not exist. This server (benchctl sim, a simulator) serves only `{}`.",
                    st.cfg.model_name
                ),
            ))
        }
    }
}

/// The body of a `/tokenize` or `/detokenize` request: a JSON object that names no model or ours.
fn parse_for_model(st: &AppState, body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let m = parse_object(body)?;
    check_model(st, &m)?;
    Ok(m)
}

fn encode_len(text: &str) -> Result<Vec<u32>, ApiError> {
    tokenizer()
        .encode(text, false)
        .map(|e| e.get_ids().to_vec())
        .map_err(|e| bad_request(format!("tokenization failed: {e}")))
}

/// Renders chat messages with the ChatML template (see the module docs).
fn chat_template(messages: &Value) -> Result<String, ApiError> {
    let Some(list) = messages.as_array() else {
        return Err(bad_request("`messages` must be an array"));
    };
    let mut out = String::new();
    for msg in list {
        let role = msg
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request("every message needs a string `role`"))?;
        out.push_str("<|im_start|>");
        out.push_str(role);
        out.push('\n');
        match msg.get("content") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => out.push_str(s),
            Some(Value::Array(parts)) => {
                for p in parts {
                    if let Some(t) = p.get("text").and_then(Value::as_str) {
                        out.push_str(t);
                    }
                }
            }
            Some(_) => {
                return Err(bad_request(
                    "message `content` must be a string or an array of parts",
                ));
            }
        }
        out.push_str("<|im_end|>\n");
    }
    out.push_str("<|im_start|>assistant\n");
    Ok(out)
}

/// The prompt's token ids of a completions request.
fn completion_prompt(prompt: Option<&Value>) -> Result<Vec<u32>, ApiError> {
    match prompt {
        Some(Value::String(s)) => encode_len(s),
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            encode_len(a[0].as_str().unwrap_or_default())
        }
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_u64) => Ok(a
            .iter()
            .filter_map(Value::as_u64)
            .map(|x| x as u32)
            .collect()),
        Some(Value::Array(_)) => Err(bad_request(
            "benchctl sim accepts one prompt: a string, a one-string list, or a list of token ids",
        )),
        None | Some(Value::Null) => Err(bad_request("`prompt` is required")),
        Some(_) => Err(bad_request("`prompt` must be a string")),
    }
}

fn positive_int(m: &Map<String, Value>, key: &str) -> Result<Option<usize>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n as usize)),
            _ => Err(bad_request(format!(
                "`{key}` must be a positive integer, got {v}"
            ))),
        },
    }
}

struct GenRequest {
    prompt_tokens: usize,
    /// The prompt's block hashes for the prefix cache (empty when it is off).
    prompt_blocks: Vec<u64>,
    max_tokens: usize,
    stream: bool,
    include_usage: bool,
}

fn parse_gen(st: &AppState, body: &[u8], chat: bool) -> Result<GenRequest, ApiError> {
    let m = parse_object(body)?;
    if st.cfg.strict {
        let mut unexpected: Vec<&str> = m
            .keys()
            .map(String::as_str)
            .filter(|k| !STANDARD_FIELDS.contains(k))
            .collect();
        if !unexpected.is_empty() {
            unexpected.sort_unstable();
            let detail = format!(
                "Unexpected fields in the request: {}",
                unexpected.join(", ")
            );
            return Err(ApiError::Unprocessable(detail));
        }
    }
    check_model(st, &m)?;
    let prompt_ids = if chat {
        let messages = m
            .get("messages")
            .ok_or_else(|| bad_request("`messages` is required"))?;
        encode_len(&chat_template(messages)?)?
    } else {
        completion_prompt(m.get("prompt"))?
    };
    let prompt_tokens = prompt_ids.len();
    let prompt_blocks = if st.cfg.prefix_cache_tokens > 0 {
        block_hashes(&prompt_ids)
    } else {
        Vec::new()
    };
    let mut max_tokens = positive_int(&m, "max_tokens")?;
    if chat {
        max_tokens = positive_int(&m, "max_completion_tokens")?.or(max_tokens);
    }
    let max_tokens = max_tokens.unwrap_or(st.cfg.default_max_tokens);
    match m.get("n") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_u64() == Some(1) => {}
        Some(v) => {
            return Err(bad_request(format!(
                "benchctl sim supports only n = 1, got {v}"
            )));
        }
    }
    let stream = match m.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(bad_request(format!("`stream` must be a boolean, got {v}"))),
    };
    let include_usage = m
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let total = prompt_tokens + max_tokens;
    if total > st.cfg.max_model_len {
        return Err(bad_request(format!(
            "This model's maximum context length is {} tokens. However, you requested {total} tokens ({prompt_tokens} in the prompt, {max_tokens} in the completion). Please reduce the length of the prompt or completion. (benchctl sim)",
            st.cfg.max_model_len
        )));
    }
    if total > st.cfg.kv_cache_tokens {
        return Err(bad_request(format!(
            "The request needs {total} tokens of KV cache ({prompt_tokens} prompt + {max_tokens} completion) but the simulated KV cache holds only {} tokens. (benchctl sim)",
            st.cfg.kv_cache_tokens
        )));
    }
    Ok(GenRequest {
        prompt_tokens,
        prompt_blocks,
        max_tokens,
        stream,
        include_usage,
    })
}

async fn completions(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    generate(&st, &headers, &body, false).await
}

async fn chat_completions(State(st): St, headers: HeaderMap, body: Bytes) -> Response {
    generate(&st, &headers, &body, true).await
}

async fn generate(st: &Arc<AppState>, headers: &HeaderMap, body: &[u8], chat: bool) -> Response {
    let index = st.arrivals.fetch_add(1, Relaxed);
    let req = match parse_gen(st, body, chat) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let fault = st.rates.decide(st.cfg.seed, index);
    if fault == Fault::Error {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "simulated internal error (benchctl sim fault injection)",
        );
    }
    let prefix = if chat { "chatcmpl" } else { "cmpl" };
    let header_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty());
    let id = match header_id {
        Some(h) => format!("{prefix}-{h}"),
        None => format!("{prefix}-sim{:08x}{index:08x}", st.nonce),
    };
    let log_id: Arc<str> = header_id.unwrap_or(&id).into();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let job = Job {
        prompt_tokens: req.prompt_tokens,
        max_tokens: req.max_tokens,
        prompt_blocks: req.prompt_blocks,
        tx,
    };
    if st.engine.submit(job).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableError",
            "benchctl sim is shutting down",
        );
    }
    st.metrics.requests_total.fetch_add(1, Relaxed);
    let created = unix_now().max(st.created);
    let model = &st.cfg.model_name;
    let rng = TokenRng::new(st.cfg.seed, index);

    if req.stream {
        let object = if chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        let head = format!(
            "{{\"id\":\"{}\",\"object\":\"{object}\",\"created\":{created},\"model\":\"{}\",",
            json_escape(&id),
            json_escape(model)
        );
        let usage = req
            .include_usage
            .then_some((req.prompt_tokens, req.max_tokens));
        let channels = Channels {
            reasoning_tokens: st.cfg.reasoning_tokens,
            tool_calls: st.cfg.tool_calls,
        };
        let render = Render::new(chat, &head, usage, !st.cfg.no_done, channels);
        let log = st.log.clone().map(|l| (l, log_id));
        let body = SseBody::new(
            rx,
            render,
            rng,
            fault,
            req.max_tokens,
            st.cancel.clone(),
            log,
        );
        let mut resp = Response::new(Body::from_stream(body));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return resp;
    }

    // Non-streaming: answer once the scheduler has produced every token.
    // (Only the error fault applies to non-streaming requests.)
    let mut generated = 0usize;
    let mut cached;
    loop {
        match rx.recv().await {
            Some(e) => {
                generated += e.tokens as usize;
                cached = e.cached_tokens;
                if e.finished {
                    break;
                }
            }
            None => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableError",
                    "benchctl sim is shutting down",
                );
            }
        }
    }
    let mut rng = rng;
    let text = generate_text(&mut rng, generated);
    let usage: Value = serde_json::from_str(&json_usage(req.prompt_tokens, generated, cached))
        .expect("the usage object is JSON");
    let body = if chat {
        json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": null, "finish_reason": "length", "stop_reason": null}],
            "usage": usage,
        })
    } else {
        json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": null,
                         "finish_reason": "length", "stop_reason": null}],
            "usage": usage,
        })
    };
    axum::Json(body).into_response()
}

async fn models(State(st): St) -> Response {
    let m = &st.cfg.model_name;
    axum::Json(json!({
        "object": "list",
        "data": [{
            "id": m,
            "object": "model",
            "created": st.created,
            "owned_by": "benchctl-sim (simulator, not a real model)",
            "root": m,
            "parent": null,
            "max_model_len": st.cfg.max_model_len,
        }],
    }))
    .into_response()
}

/// vLLM's `/tokenize`: `{model?, prompt | messages, add_special_tokens?}` →
/// `{"count", "max_model_len", "tokens", "token_strs": null}`; messages use
/// the same chat template as `/v1/chat/completions`.
async fn tokenize(State(st): St, body: Bytes) -> Result<Response, ApiError> {
    let m = parse_for_model(&st, &body)?;
    let add_special = m
        .get("add_special_tokens")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let text = if let Some(msgs) = m.get("messages") {
        chat_template(msgs)?
    } else if let Some(p) = m.get("prompt").and_then(Value::as_str) {
        p.to_owned()
    } else {
        return Err(bad_request("`prompt` (a string) or `messages` is required"));
    };
    let enc = tokenizer()
        .encode(text.as_str(), add_special)
        .map_err(|e| bad_request(format!("tokenization failed: {e}")))?;
    Ok(axum::Json(json!({
        "count": enc.len(),
        "max_model_len": st.cfg.max_model_len,
        "tokens": enc.get_ids(),
        "token_strs": null,
    }))
    .into_response())
}

/// vLLM's `/detokenize`: `{model?, tokens}` → `{"prompt"}`.
async fn detokenize(State(st): St, body: Bytes) -> Result<Response, ApiError> {
    let m = parse_for_model(&st, &body)?;
    let vocab_size = tokenizer().get_vocab_size(true) as u64;
    let ids: Option<Vec<u32>> = m.get("tokens").and_then(Value::as_array).and_then(|a| {
        a.iter()
            .map(|v| v.as_u64().filter(|&x| x < vocab_size).map(|x| x as u32))
            .collect()
    });
    let Some(ids) = ids else {
        return Err(bad_request(format!(
            "`tokens` must be a list of token ids below {vocab_size}"
        )));
    };
    let prompt = tokenizer()
        .decode(&ids, false)
        .map_err(|e| bad_request(format!("detokenization failed: {e}")))?;
    Ok(axum::Json(json!({ "prompt": prompt })).into_response())
}

/// vLLM's `POST /reset_prefix_cache` (served by vLLM with `VLLM_SERVER_DEV_MODE=1`): empties
/// the simulated prefix cache before the next step and answers 200 with no body.
async fn reset_prefix_cache(State(st): St) -> Response {
    if st.engine.reset_prefix_cache().await {
        StatusCode::OK.into_response()
    } else {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailableError",
            "benchctl sim is shutting down",
        )
    }
}

async fn metrics(State(st): St) -> Response {
    let text = st
        .metrics
        .render(&st.cfg.model_name, st.cfg.kv_cache_tokens);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
