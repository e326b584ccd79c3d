//! Executes one streamed request and fills its [`RequestRecord`].
//!
//! `http://` targets go through [`crate::http1`]: the request's own task reads its socket and
//! stamps each read with [`mono_ns`] the moment it returns, before looking at the bytes.
//! `https://` targets go through reqwest (TLS), stamped when each body frame is handed over.
//! Either way the bytes are then parsed by [`StreamParser`], which only copies the generated text
//! and a few numbers: no tokenizer and no metric is computed here.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;

use crate::clock::mono_ns;
use crate::error::{ErrorKind, RequestError, server_message};
use crate::http1::{Http1, Limits, humanize, timed_out};
use crate::openai::BodySpec;
use crate::record::RequestRecord;
use crate::stream::StreamParser;

/// Where and how requests are sent.
#[derive(Clone)]
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

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url.as_str())
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("body", &self.body)
            .field("timeout", &self.timeout)
            .field("stall_timeout", &self.stall_timeout)
            .finish()
    }
}

/// A connection pool bound to one target.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    target: Arc<Target>,
    auth: Option<HeaderValue>,
    /// The measured path for `http://` targets.
    http1: Option<Arc<Http1>>,
}

/// The most of an error body that is read.
const MAX_ERROR_BODY: usize = 64 << 10;

/// How requests travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// [`crate::http1`] for `http://`, reqwest for `https://`.
    Auto,
    /// reqwest for every scheme (the `https://` path, exercised over plain HTTP in tests).
    Reqwest,
}

impl HttpClient {
    pub fn new(target: Target, max_connections: usize) -> Result<Self, reqwest::Error> {
        Self::with_transport(target, max_connections, Transport::Auto)
    }

    pub fn with_transport(
        target: Target,
        max_connections: usize,
        transport: Transport,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            // Proxies are for the internet; a benchmark measures the server, not a proxy.
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(max_connections.max(1))
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        let bearer = target.api_key.as_ref().map(|k| format!("Bearer {k}"));
        let auth = bearer.as_ref().map(|b| {
            let mut v = HeaderValue::from_str(b).unwrap_or(HeaderValue::from_static(""));
            v.set_sensitive(true);
            v
        });
        let http1 = (transport == Transport::Auto && target.url.scheme() == "http")
            .then(|| Arc::new(Http1::new(&target.url, bearer.as_deref(), max_connections)));
        Ok(HttpClient {
            client,
            target: Arc::new(target),
            auth,
            http1,
        })
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
    pub async fn execute(
        &self,
        rec: &mut RequestRecord,
        body: Vec<u8>,
        cancel: &CancellationToken,
    ) {
        self.execute_within(rec, body, cancel, self.target.timeout)
            .await
    }

    /// [`HttpClient::execute`] with another limit than the target's `timeout` (the preflight's).
    pub async fn execute_within(
        &self,
        rec: &mut RequestRecord,
        body: Vec<u8>,
        cancel: &CancellationToken,
        timeout: Duration,
    ) {
        rec.send_ns = mono_ns();
        // the HTTP/1.1 path clears this on any read the kernel did not stamp
        rec.kernel_rx_stamps = self.http1.is_some();
        let limits = Limits {
            deadline: Instant::now() + timeout,
            timeout,
            stall: self.target.stall_timeout,
        };
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(RequestError::new(ErrorKind::Cancelled, "run cancelled")),
            r = async {
                match &self.http1 {
                    Some(h) => h.exchange(rec, &body, &limits).await,
                    None => self.exchange_reqwest(rec, body, &limits).await,
                }
            } => r,
        };
        rec.end_ns = mono_ns();
        if let Err(e) = result {
            rec.error = Some(e);
        }
    }

    async fn exchange_reqwest(
        &self,
        rec: &mut RequestRecord,
        body: Vec<u8>,
        limits: &Limits,
    ) -> Result<(), RequestError> {
        let mut req = self
            .client
            .post(self.target.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("x-request-id", &rec.request_id)
            .body(body);
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let deadline = limits.deadline;
        let mut resp = match timeout_at(deadline, req.send()).await {
            Err(_) => return Err(timed_out(limits.timeout, "waiting for response headers")),
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
        let mut parser = StreamParser::new();
        loop {
            let read_deadline = match limits.stall {
                Some(s) => deadline.min(Instant::now() + s),
                None => deadline,
            };
            let bytes = match timeout_at(read_deadline, resp.chunk()).await {
                Ok(Ok(Some(b))) => b,
                Ok(Ok(None)) => break,
                Ok(Err(e)) => {
                    return Err(RequestError::new(
                        ErrorKind::TruncatedStream,
                        error_chain(&e),
                    ));
                }
                Err(_) if read_deadline < deadline => {
                    return Err(RequestError::new(
                        ErrorKind::Stall,
                        format!(
                            "no bytes for {} (--stall-timeout) after {} content chunks",
                            humanize(limits.stall.unwrap_or_default()),
                            rec.chunks.len()
                        ),
                    ));
                }
                Err(_) => return Err(timed_out(limits.timeout, "reading the stream")),
            };
            // The timestamp of everything this frame completed: taken before any parsing.
            let t = mono_ns();
            parser.feed(rec, &bytes, t)?;
        }
        parser.finish(rec, mono_ns())
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
            let mut text = r.to_string();
            if let Some(u) = r.url() {
                text = text
                    .replace(&format!(" ({u})"), "")
                    .replace(u.as_str(), "<target>");
            }
            text
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
