//! A minimal HTTP/1.1 client for the measured path (`http://` targets): one task per request
//! reads its own socket, stamps each read with the kernel's receive time of its last byte
//! ([`crate::rxstamp`]; else the moment `recvmsg` returns), and decodes the chunked body, the SSE
//! events and the JSON inline — no second task between the socket and the stamp.
//!
//! Keep-alive connections are pooled (a lock-free queue). A pooled connection that turns out
//! to be closed before any byte of the response arrived is replaced once by a fresh one.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep, sleep_until};

use crate::clock::mono_ns;
use crate::error::{ErrorKind, RequestError, server_message};
use crate::record::RequestRecord;
use crate::rxstamp;
use crate::stream::StreamParser;

/// Bytes read per `read()`; one SSE chunk is a few hundred.
const READ_BUF: usize = 4096;
/// Largest response head accepted.
const MAX_HEAD: usize = 64 << 10;
/// Most of an error body kept.
const MAX_ERROR_BODY: usize = 64 << 10;

/// Connections to one `host:port`.
pub struct Http1 {
    authority: String,
    /// The request line and fixed headers, up to the per-request ones.
    head_prefix: Vec<u8>,
    idle: ArrayQueue<TcpStream>,
    _stamping: Option<rxstamp::Keeper>,
}

/// Limits of one exchange.
pub struct Limits {
    pub deadline: Instant,
    pub timeout: Duration,
    pub stall: Option<Duration>,
}

impl Http1 {
    pub fn new(url: &reqwest::Url, auth: Option<&str>, max_idle: usize) -> Http1 {
        let host = url.host_str().unwrap_or("127.0.0.1");
        let port = url.port_or_known_default().unwrap_or(80);
        // host_str() keeps an IPv6 address in brackets, as an authority needs
        let authority = format!("{host}:{port}");
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: benchctl/{}\r\nAccept: text/event-stream\r\nContent-Type: application/json\r\n",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(a) = auth {
            head.push_str("Authorization: ");
            head.push_str(a);
            head.push_str("\r\n");
        }
        Http1 {
            authority,
            head_prefix: head.into_bytes(),
            idle: ArrayQueue::new(max_idle.max(1)),
            _stamping: rxstamp::Keeper::new(),
        }
    }

    /// Sends `body` and reads the streamed response into `rec`.
    pub async fn exchange(
        self: &Arc<Self>,
        rec: &mut RequestRecord,
        body: &[u8],
        limits: &Limits,
    ) -> Result<(), RequestError> {
        let mut request = Vec::with_capacity(self.head_prefix.len() + 96 + body.len());
        request.extend_from_slice(&self.head_prefix);
        request.extend_from_slice(b"X-Request-Id: ");
        request.extend_from_slice(rec.request_id.as_bytes());
        request.extend_from_slice(format!("\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);

        let mut deadline = pin!(sleep_until(limits.deadline));
        // A pooled connection may have been closed by the server meanwhile: if it fails before
        // a single response byte, the request goes once more on a fresh connection.
        if let Some(conn) = self.idle.pop() {
            match self
                .on(conn, rec, &request, limits, deadline.as_mut())
                .await
            {
                Attempt::Done(r) => return r,
                Attempt::StaleConnection => {}
            }
        }
        let conn = tokio::select! {
            biased;
            r = TcpStream::connect(&self.authority) => r.map_err(|e| {
                RequestError::new(ErrorKind::Connect, format!("connecting to {}: {e}", self.authority))
            })?,
            _ = &mut deadline => return Err(timed_out(limits.timeout, "connecting")),
        };
        let _ = conn.set_nodelay(true);
        rxstamp::enable(&conn);
        match self
            .on(conn, rec, &request, limits, deadline.as_mut())
            .await
        {
            Attempt::Done(r) => r,
            Attempt::StaleConnection => Err(RequestError::new(
                ErrorKind::Request,
                "the server closed a new connection before answering",
            )),
        }
    }

    async fn on(
        &self,
        mut conn: TcpStream,
        rec: &mut RequestRecord,
        request: &[u8],
        limits: &Limits,
        mut deadline: std::pin::Pin<&mut Sleep>,
    ) -> Attempt {
        let written = tokio::select! {
            biased;
            r = conn.write_all(request) => r,
            _ = &mut deadline => return Attempt::Done(Err(timed_out(limits.timeout, "sending the request"))),
        };
        if written.is_err() {
            return Attempt::StaleConnection;
        }
        let mut buf = vec![0u8; READ_BUF];
        let mut stall = limits
            .stall
            .map(|s| Box::pin(sleep_until(Instant::now() + s)));
        let mut response = Response::default();
        loop {
            let read = tokio::select! {
                biased;
                r = async {
                    loop {
                        conn.readable().await?;
                        match rxstamp::try_recv(&conn, &mut buf) {
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                            other => return other,
                        }
                    }
                } => r,
                _ = &mut deadline => return Attempt::Done(Err(timed_out(limits.timeout, response.phase()))),
                _ = async { stall.as_mut().unwrap().as_mut().await }, if stall.is_some() => {
                    let s = limits.stall.unwrap_or_default();
                    return Attempt::Done(Err(RequestError::new(
                        ErrorKind::Stall,
                        format!("no bytes for {} (--stall-timeout) after {} content chunks", humanize(s), rec.chunks.len()),
                    )));
                }
            };
            // The timestamp of everything this read completed: the kernel's arrival time of its
            // last byte, or else when the read returned; taken before any parsing.
            let (n, t) = match read {
                Ok(s) => {
                    rec.kernel_rx_stamps &= s.kernel;
                    if s.kernel {
                        rec.read_lags_us
                            .push(u32::try_from(s.lag_ns / 1000).unwrap_or(u32::MAX));
                    }
                    (s.n, s.t_ns)
                }
                Err(e) if !response.started() => {
                    tracing::debug!("stale connection: {e}");
                    return Attempt::StaleConnection;
                }
                Err(e) => {
                    return Attempt::Done(Err(
                        response.broken(&format!("reading the response: {e}"))
                    ));
                }
            };
            if n == 0 {
                if !response.started() {
                    return Attempt::StaleConnection;
                }
                return Attempt::Done(response.eof(rec, mono_ns()));
            }
            if let Some(s) = stall.as_mut() {
                s.as_mut()
                    .reset(Instant::now() + limits.stall.unwrap_or_default());
            }
            match response.feed(rec, &buf[..n], t) {
                Ok(Progress::More) => {}
                Ok(Progress::Complete { reusable }) => {
                    if reusable {
                        let _ = self.idle.push(conn);
                    }
                    return Attempt::Done(response.result.take().unwrap_or(Ok(())));
                }
                Err(e) => return Attempt::Done(Err(e)),
            }
        }
    }
}

enum Attempt {
    Done(Result<(), RequestError>),
    StaleConnection,
}

pub(crate) enum Progress {
    More,
    /// The body ended; whether the connection can carry another request.
    Complete {
        reusable: bool,
    },
}

/// One response being read: head, then body (chunked, sized or until close).
#[derive(Default)]
pub(crate) struct Response {
    head: Vec<u8>,
    status: Option<u16>,
    framing: Option<Framing>,
    keep_alive: bool,
    body: Option<StreamParser>,
    error_body: Vec<u8>,
    /// Set when the body is complete: the parse result (an error status, a stream error…).
    result: Option<Result<(), RequestError>>,
    started_flag: bool,
}

enum Framing {
    Chunked(Chunked),
    Length(u64),
    UntilClose,
}

impl Response {
    fn started(&self) -> bool {
        self.started_flag
    }

    fn phase(&self) -> &'static str {
        if self.status.is_none() {
            "waiting for the response headers"
        } else {
            "reading the stream"
        }
    }

    fn broken(&self, what: &str) -> RequestError {
        let kind = if self.status.is_some() {
            ErrorKind::TruncatedStream
        } else {
            ErrorKind::Request
        };
        RequestError::new(kind, what.to_string())
    }

    pub(crate) fn feed(
        &mut self,
        rec: &mut RequestRecord,
        mut bytes: &[u8],
        t: u64,
    ) -> Result<Progress, RequestError> {
        self.started_flag = true;
        if self.status.is_none() {
            let old = self.head.len();
            self.head.extend_from_slice(bytes);
            let Some(end) = find_head_end(&self.head, old.saturating_sub(3)) else {
                if self.head.len() > MAX_HEAD {
                    return Err(RequestError::new(
                        ErrorKind::Request,
                        "response head over 64 KiB",
                    ));
                }
                return Ok(Progress::More);
            };
            self.parse_head(end)?;
            rec.headers_ns = Some(t);
            rec.status = self.status;
            let consumed = end - old;
            bytes = &bytes[consumed..];
        }
        let status = self.status.unwrap_or(0);
        let ok = (200..300).contains(&status);
        let mut body_err = None;
        let mut sink = |data: &[u8], rec: &mut RequestRecord| {
            if body_err.is_some() {
                return;
            }
            if ok {
                if let Err(e) = self
                    .body
                    .get_or_insert_with(StreamParser::new)
                    .feed(rec, data, t)
                {
                    body_err = Some(e);
                }
            } else if self.error_body.len() < MAX_ERROR_BODY {
                self.error_body.extend_from_slice(data);
            }
        };
        let done = match self.framing.as_mut().expect("framing is set with the head") {
            Framing::Chunked(c) => {
                let r = c.decode(bytes, |d| sink(d, rec));
                r.map_err(|e| {
                    RequestError::new(
                        ErrorKind::TruncatedStream,
                        format!("bad chunked encoding: {e}"),
                    )
                })?
            }
            Framing::Length(left) => {
                let n = (*left).min(bytes.len() as u64) as usize;
                sink(&bytes[..n], rec);
                *left -= n as u64;
                *left == 0
            }
            Framing::UntilClose => {
                sink(bytes, rec);
                false
            }
        };
        if let Some(e) = body_err {
            return Err(e);
        }
        if !done {
            return Ok(Progress::More);
        }
        self.result = Some(self.complete(rec, t));
        Ok(Progress::Complete {
            reusable: self.keep_alive,
        })
    }

    /// The connection closed at `t`.
    pub(crate) fn eof(&mut self, rec: &mut RequestRecord, t: u64) -> Result<(), RequestError> {
        match self.framing {
            Some(Framing::UntilClose) => self.complete(rec, t),
            None => Err(RequestError::new(
                ErrorKind::Request,
                "the connection closed inside the response head",
            )),
            Some(_) => {
                if let Some(s) = self.status.filter(|s| !(200..300).contains(s)) {
                    return Err(self.status_error(s));
                }
                Err(RequestError::new(
                    ErrorKind::TruncatedStream,
                    format!(
                        "the connection closed before the end of the body, after {} content chunks",
                        rec.chunks.len()
                    ),
                ))
            }
        }
    }

    fn complete(&mut self, rec: &mut RequestRecord, t: u64) -> Result<(), RequestError> {
        let status = self.status.unwrap_or(0);
        if !(200..300).contains(&status) {
            return Err(self.status_error(status));
        }
        self.body.take().unwrap_or_default().finish(rec, t)
    }

    fn status_error(&self, status: u16) -> RequestError {
        RequestError {
            kind: ErrorKind::from_status(status),
            status: Some(status),
            message: server_message(&self.error_body),
        }
    }

    fn parse_head(&mut self, end: usize) -> Result<(), RequestError> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let bad = |e: String| {
            RequestError::new(
                ErrorKind::Request,
                format!("invalid HTTP response head: {e}"),
            )
        };
        match resp.parse(&self.head[..end]) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => return Err(bad("incomplete".into())),
            Err(e) => return Err(bad(e.to_string())),
        }
        let status = resp.code.unwrap_or(0);
        let mut chunked = false;
        let mut length = None;
        let mut close = resp.version == Some(0);
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked |= String::from_utf8_lossy(h.value)
                    .to_ascii_lowercase()
                    .contains("chunked");
            } else if h.name.eq_ignore_ascii_case("content-length") {
                length = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
            } else if h.name.eq_ignore_ascii_case("connection") {
                let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                close |= v.contains("close");
                close &= !v.contains("keep-alive") || resp.version != Some(0);
            }
        }
        self.status = Some(status);
        self.framing = Some(if chunked {
            Framing::Chunked(Chunked::default())
        } else if let Some(n) = length {
            Framing::Length(n)
        } else if status == 204 || status == 304 {
            Framing::Length(0)
        } else {
            close = true;
            Framing::UntilClose
        });
        self.keep_alive = !close;
        self.head.clear();
        self.head.shrink_to_fit();
        Ok(())
    }
}

fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| from + p + 4)
}

/// Decoder of `Transfer-Encoding: chunked`.
#[derive(Default)]
pub(crate) struct Chunked {
    state: ChunkState,
    size: u64,
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum ChunkState {
    #[default]
    Size,
    SizeExt,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    EndLf,
    Done,
}

impl Chunked {
    /// Decodes `input`, handing each data slice to `out`; true once the final chunk and
    /// trailers have been read.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        mut out: impl FnMut(&[u8]),
    ) -> Result<bool, &'static str> {
        use ChunkState::*;
        let mut i = 0;
        while i < input.len() && self.state != Done {
            let b = input[i];
            match self.state {
                Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).unwrap() as u64;
                        self.size = self
                            .size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(d))
                            .ok_or("chunk size overflows")?;
                    }
                    b';' | b' ' | b'\t' => self.state = SizeExt,
                    b'\r' => self.state = SizeLf,
                    b'\n' => self.after_size(),
                    _ => return Err("invalid chunk size"),
                },
                SizeExt => match b {
                    b'\r' => self.state = SizeLf,
                    b'\n' => self.after_size(),
                    _ => {}
                },
                SizeLf => {
                    if b != b'\n' {
                        return Err("expected LF after the chunk size");
                    }
                    self.after_size();
                }
                Data => {
                    let n = (self.size as usize).min(input.len() - i);
                    out(&input[i..i + n]);
                    self.size -= n as u64;
                    i += n;
                    if self.size == 0 {
                        self.state = DataCr;
                    }
                    continue;
                }
                DataCr => match b {
                    b'\r' => self.state = DataLf,
                    b'\n' => self.state = Size,
                    _ => return Err("expected CRLF after chunk data"),
                },
                DataLf => {
                    if b != b'\n' {
                        return Err("expected LF after chunk data");
                    }
                    self.state = Size;
                }
                TrailerStart => match b {
                    b'\r' => self.state = EndLf,
                    b'\n' => self.state = Done,
                    _ => self.state = TrailerLine,
                },
                TrailerLine => {
                    if b == b'\n' {
                        self.state = TrailerStart;
                    }
                }
                EndLf => {
                    if b != b'\n' {
                        return Err("expected LF at the end of the body");
                    }
                    self.state = Done;
                }
                Done => {}
            }
            i += 1;
        }
        Ok(self.state == Done)
    }

    fn after_size(&mut self) {
        self.state = if self.size == 0 {
            ChunkState::TrailerStart
        } else {
            ChunkState::Data
        };
    }
}

pub(crate) fn timed_out(limit: Duration, during: &str) -> RequestError {
    RequestError::new(
        ErrorKind::Timeout,
        format!(
            "no complete response within {} (--timeout), {during}",
            humanize(limit)
        ),
    )
}

pub(crate) fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(parts: &[&[u8]]) -> (Vec<u8>, bool) {
        let mut c = Chunked::default();
        let mut out = Vec::new();
        let mut done = false;
        for p in parts {
            done = c.decode(p, |d| out.extend_from_slice(d)).unwrap();
        }
        (out, done)
    }

    #[test]
    fn chunked_decoding_across_any_split() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
        assert_eq!(decode_all(&[wire]), (b"hello, world".to_vec(), true));
        for cut in 0..wire.len() {
            let (a, b) = wire.split_at(cut);
            assert_eq!(
                decode_all(&[a, b]),
                (b"hello, world".to_vec(), true),
                "cut at {cut}"
            );
        }
        assert_eq!(
            decode_all(&[b"A\r\n0123456789\r\n"]),
            (b"0123456789".to_vec(), false),
            "no final chunk yet"
        );
        assert!(Chunked::default().decode(b"zz\r\n", |_| {}).is_err());
    }

    #[test]
    fn head_end_is_found_across_reads() {
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n";
        let end = find_head_end(head, 0).unwrap();
        assert_eq!(&head[end..], b"5\r\n");
    }
}
