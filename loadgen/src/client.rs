//! Executes one streamed request and fills its [`RequestRecord`].
//!
//! The read loop stamps each read with [`mono_ns`] *before* looking at the bytes, then feeds
//! them to the SSE reader and the chunk parser, which only copy the generated text and a few
//! numbers. No tokenizer and no metric is computed here.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::clock::mono_ns;
use crate::error::{ErrorKind, RequestError, server_message};
use crate::openai::{BodySpec, parse_chunk};
use crate::record::{ContentChunk, RequestRecord};
use crate::sse::SseReader;

/// Where and how requests are sent.
#[derive(Clone, Debug)]
pub struct Target {
    /// The full endpoint URL, e.g. `http://127.0.0.1:8000/v1/completions`.
    pub url: reqwest::Url,
    /// Sent as `Authorization: Bearer …`; never printed or logged.
    pub api_key: Option<String>,
    pub body: BodySpec,
    /// Limit for a whole request, from send to the end of the body.
    pub timeout: Duration,
    /// Limit for a silence between two reads of the body (`None`: only `timeout` applies).
    pub stall_timeout: Option<Duration>,
}

/// A connection pool bound to one target.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    target: Arc<Target>,
    auth: Option<HeaderValue>,
}

/// The most of an error body that is read.
const MAX_ERROR_BODY: usize = 64 << 10;

impl HttpClient {
    pub fn new(target: Target, max_connections: usize) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            // Proxies are for the internet; a benchmark measures the server, not a proxy.
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(max_connections.max(1))
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        let auth = target.api_key.as_ref().map(|k| {
            let mut v = HeaderValue::from_str(&format!("Bearer {k}")).unwrap_or(HeaderValue::from_static(""));
            v.set_sensitive(true);
            v
        });
        Ok(HttpClient { client, target: Arc::new(target), auth })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn body_spec(&self) -> &BodySpec {
        &self.target.body
    }

    pub fn reqwest(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `body` (already rendered) and reads the stream into `rec`. `rec.send_ns` and
    /// `rec.end_ns` are set here; on failure `rec.error` says why.
    pub async fn execute(&self, rec: &mut RequestRecord, body: Vec<u8>, cancel: &CancellationToken) {
        let mut req = self
            .client
            .post(self.target.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("x-request-id", &rec.request_id)
            .body(body);
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        rec.send_ns = mono_ns();
        let deadline = Instant::now() + self.target.timeout;
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(RequestError::new(ErrorKind::Cancelled, "run cancelled")),
            r = self.exchange(rec, req, deadline) => r,
        };
        rec.end_ns = mono_ns();
        if let Err(e) = result {
            rec.error = Some(e);
        }
    }

    async fn exchange(
        &self,
        rec: &mut RequestRecord,
        req: reqwest::RequestBuilder,
        deadline: Instant,
    ) -> Result<(), RequestError> {
        let timeout = self.target.timeout;
        let mut resp = match timeout_at(deadline, req.send()).await {
            Err(_) => return Err(timed_out(timeout, "waiting for response headers")),
            Ok(Err(e)) => return Err(transport_error(&e)),
            Ok(Ok(r)) => r,
        };
        rec.headers_ns = Some(mono_ns());
        let status = resp.status();
        rec.status = Some(status.as_u16());
        if !status.is_success() {
            let body = read_error_body(&mut resp, deadline).await;
            return Err(RequestError {
                kind: ErrorKind::from_status(status.as_u16()),
                status: Some(status.as_u16()),
                message: server_message(&body),
            });
        }

        let mut sse = SseReader::new();
        let mut failure: Option<RequestError> = None;
        let mut saw_usage = false;
        loop {
            let read_deadline = match self.target.stall_timeout {
                Some(s) => deadline.min(Instant::now() + s),
                None => deadline,
            };
            let next = timeout_at(read_deadline, resp.chunk()).await;
            let bytes = match next {
                Ok(Ok(Some(b))) => b,
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return Err(RequestError::new(ErrorKind::TruncatedStream, error_chain(&e))),
                Err(_) if read_deadline < deadline => {
                    let s = self.target.stall_timeout.unwrap_or_default();
                    return Err(RequestError::new(
                        ErrorKind::Stall,
                        format!("no bytes for {} (--stall-timeout) after {} content chunks", humanize(s), rec.chunks.len()),
                    ));
                }
                Err(_) => return Err(timed_out(timeout, "reading the stream")),
            };
            // The timestamp of everything this read completed: taken before any parsing.
            let t = mono_ns();
            rec.first_byte_ns.get_or_insert(t);
            let fed = sse.feed(&bytes, |payload| {
                if failure.is_none() {
                    on_event(rec, payload, t, &mut failure, &mut saw_usage);
                }
            });
            if let Err(crate::sse::SseError::LineTooLong(n)) = fed {
                return Err(RequestError::new(
                    ErrorKind::MalformedChunk,
                    format!("an SSE line of {n} bytes exceeds the {} byte limit", crate::sse::MAX_LINE),
                ));
            }
            if let Some(f) = failure {
                return Err(f);
            }
        }
        let t = mono_ns();
        sse.finish(|payload| {
            if failure.is_none() {
                on_event(rec, payload, t, &mut failure, &mut saw_usage);
            }
        });
        if let Some(f) = failure {
            return Err(f);
        }
        if !(rec.done_marker || saw_usage || rec.finish_reason.is_some()) {
            return Err(RequestError::new(
                ErrorKind::TruncatedStream,
                format!(
                    "the body ended after {} content chunks without a finish_reason, usage or [DONE]",
                    rec.chunks.len()
                ),
            ));
        }
        if rec.chunks.is_empty() {
            return Err(RequestError::new(ErrorKind::NoContent, "the stream completed without any generated content"));
        }
        Ok(())
    }
}

/// Handles one SSE event's data, read at `t`.
fn on_event(rec: &mut RequestRecord, payload: &[u8], t: u64, failure: &mut Option<RequestError>, saw_usage: &mut bool) {
    if payload == b"[DONE]" {
        rec.done_marker = true;
        return;
    }
    let chunk = match parse_chunk(payload) {
        Ok(c) => c,
        Err(e) => {
            let shown = String::from_utf8_lossy(&payload[..payload.len().min(200)]);
            *failure = Some(RequestError::new(
                ErrorKind::MalformedChunk,
                format!("chunk {} is not valid JSON ({e}): {shown}", rec.chunks.len()),
            ));
            return;
        }
    };
    if let Some(msg) = chunk.error {
        *failure = Some(RequestError::new(ErrorKind::ServerError, msg));
        return;
    }
    if chunk.has_choices {
        rec.last_choice_ns = Some(t);
        if !chunk.content.is_empty() {
            rec.text.push_str(&chunk.content);
            rec.chunks.push(ContentChunk { t_ns: t, text_end: rec.text.len() as u32, tokens: 0 });
        }
        if let Some(f) = chunk.finish_reason {
            rec.finish_reason = Some(f.into_owned());
        }
    }
    if let Some(u) = chunk.usage {
        *saw_usage = true;
        if u.prompt_tokens.is_some() {
            rec.prompt_tokens_server = u.prompt_tokens;
        }
        if u.completion_tokens.is_some() {
            rec.output_tokens_server = u.completion_tokens;
        }
    }
}

async fn read_error_body(resp: &mut reqwest::Response, deadline: Instant) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(b))) => body.extend_from_slice(&b),
            _ => break,
        }
    }
    body
}

fn timed_out(limit: Duration, during: &str) -> RequestError {
    RequestError::new(ErrorKind::Timeout, format!("no complete response within {} (--timeout), {during}", humanize(limit)))
}

fn transport_error(e: &reqwest::Error) -> RequestError {
    let kind = if e.is_connect() {
        ErrorKind::Connect
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        ErrorKind::Request
    };
    RequestError::new(kind, error_chain(e))
}

/// An error with its causes, `a: b: c`, without the URL (it may carry credentials).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = match e.downcast_ref::<reqwest::Error>() {
        Some(r) => {
            let mut r = format!("{r}");
            if let Some(u) = e.downcast_ref::<reqwest::Error>().and_then(|x| x.url()) {
                r = r.replace(&format!(" ({u})"), "").replace(u.as_str(), "<target>");
            }
            r
        }
        None => e.to_string(),
    };
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{ms}ms") }
}
