//! Servers that misbehave, on a real socket (127.0.0.1 port 0): each answers `GET`s (the
//! model list) with 404 and misbehaves on the `POST` of a completion.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How a hostile server treats a completion request.
#[derive(Clone, Copy, Debug)]
pub enum Behaviour {
    /// Reads the request and never answers.
    Silent,
    /// Sends a `200` head (chunked) and then nothing.
    HeadersOnly,
    /// Sends a `200` head, then a correct body one byte a second.
    Trickle,
    /// Sends the head and two content events, then resets the connection (`SO_LINGER` 0)
    /// before the end of the body.
    ResetMidStream,
    /// Sends one SSE line of this many bytes without a newline.
    LongLine(usize),
    /// Sends a correct stream whose text has a multi-byte character split across two writes;
    /// `valid: false` makes its second byte an invalid continuation byte.
    SplitUtf8 { valid: bool },
    /// Closes the connection as soon as the request has arrived.
    CloseOnRequest,
}

/// A hostile server; stops when dropped.
pub struct Hostile {
    pub base_url: String,
    task: JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    pub async fn start(behaviour: Behaviour) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((s, _)) = listener.accept().await {
                conns.spawn(serve(s, behaviour));
            }
        });
        Hostile { base_url, task }
    }
}

async fn serve(mut s: TcpStream, behaviour: Behaviour) {
    let _ = s.set_nodelay(true);
    loop {
        let Some(is_post) = read_request(&mut s).await else {
            return;
        };
        if !is_post {
            let _ = s
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await;
            continue;
        }
        let _ = misbehave(&mut s, behaviour).await;
        return;
    }
}

/// Reads one request (head and `Content-Length` body): `Some(true)` for a POST, `None` when
/// the connection closed.
async fn read_request(s: &mut TcpStream) -> Option<bool> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    Some(head.starts_with("post"))
}

const HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

/// One chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// A content event carrying `text` (raw bytes: they may be invalid UTF-8).
pub fn event(text: &[u8]) -> Vec<u8> {
    let mut e = b"data: {\"choices\":[{\"index\":0,\"text\":\"".to_vec();
    e.extend_from_slice(text);
    e.extend_from_slice(b"\",\"finish_reason\":null}]}\n\n");
    e
}

/// The end of a correct stream: a finishing chunk with usage, `[DONE]`, the last chunk.
pub fn ending() -> Vec<u8> {
    let mut out = chunk(b"data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":3}}\n\n");
    out.extend(chunk(b"data: [DONE]\n\n"));
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

async fn misbehave(s: &mut TcpStream, behaviour: Behaviour) -> std::io::Result<()> {
    match behaviour {
        Behaviour::Silent => std::future::pending().await,
        Behaviour::HeadersOnly => {
            s.write_all(HEAD).await?;
            std::future::pending().await
        }
        Behaviour::Trickle => {
            s.write_all(HEAD).await?;
            let mut body = Vec::new();
            for _ in 0..3 {
                body.extend(chunk(&event(b"tok")));
            }
            body.extend(ending());
            for b in body {
                s.write_all(&[b]).await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(())
        }
        Behaviour::ResetMidStream => {
            s.write_all(HEAD).await?;
            s.write_all(&chunk(&event(b"one"))).await?;
            s.write_all(&chunk(&event(b"two"))).await?;
            // the client reads the events before the reset discards what it has not read
            tokio::time::sleep(Duration::from_millis(300)).await;
            s.set_zero_linger()?;
            Ok(())
        }
        Behaviour::LongLine(n) => {
            s.write_all(HEAD).await?;
            let mut line = b"data: {\"choices\":[{\"text\":\"".to_vec();
            line.resize(n, b'x');
            s.write_all(&chunk(&line)).await?;
            std::future::pending().await
        }
        Behaviour::SplitUtf8 { valid } => {
            // "é" is C3 A9; C3 28 is a lead byte followed by a non-continuation byte
            let second: u8 = if valid { 0xA9 } else { 0x28 };
            let wire = chunk(&event(&[b'a', 0xC3, second, b'b']));
            let cut = wire.iter().position(|&b| b == 0xC3).unwrap() + 1;
            s.write_all(HEAD).await?;
            s.write_all(&wire[..cut]).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            s.write_all(&wire[cut..]).await?;
            s.write_all(&ending()).await?;
            std::future::pending().await
        }
        Behaviour::CloseOnRequest => Ok(()),
    }
}
