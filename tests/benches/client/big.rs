//! Scenario 4, big bodies, and what the client's memory costs. A canned server (a thread pinned to CPU 1)
//! answers every request with one prepared response, written in prepared pieces, so that only
//! the client's work is measured: MB request bodies, content chunks of 1 KB to 1 MB (across the
//! 64 KB mark), thousands of SSE events per write, a 100k-token output.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The process's resident memory, bytes.
pub fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * rustix::param::page_size() as u64
}

/// Samples [`rss`] every 20 ms until dropped; `peak()` is the largest seen.
pub struct RssPeak {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl RssPeak {
    pub fn start() -> RssPeak {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = rss();
            while !s.load(Ordering::Relaxed) {
                peak = peak.max(rss());
                std::thread::sleep(Duration::from_millis(20));
            }
            peak.max(rss())
        });
        RssPeak {
            stop,
            thread: Some(thread),
        }
    }

    pub fn peak(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// A server that answers each request (any path) with `writes`, one `write_all` each.
struct Canned {
    base_url: String,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<f64>>,
}

impl Canned {
    fn start(writes: Vec<Vec<u8>>) -> Canned {
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let writes = Arc::new(writes);
        let thread = std::thread::spawn(move || {
            super::pin(1);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                url_tx
                    .send(format!("http://{}", l.local_addr().unwrap()))
                    .unwrap();
                let cpu0 = super::thread_cpu_s();
                let accept = async {
                    while let Ok((s, _)) = l.accept().await {
                        tokio::spawn(serve(s, writes.clone()));
                    }
                };
                let stopped = tokio::task::spawn_blocking(move || stop_rx.recv());
                tokio::select! { _ = accept => {}, _ = stopped => {} }
                super::thread_cpu_s() - cpu0
            })
        });
        Canned {
            base_url: url_rx.recv().unwrap(),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Stops the server; its CPU seconds.
    fn stop(mut self) -> f64 {
        drop(self.stop.take());
        self.thread.take().unwrap().join().unwrap()
    }
}

async fn serve(mut s: tokio::net::TcpStream, writes: Arc<Vec<Vec<u8>>>) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(64 << 10);
    loop {
        // the head, then Content-Length bytes of body
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if read_more(&mut s, &mut buf).await == 0 {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            if read_more(&mut s, &mut buf).await == 0 {
                return;
            }
        }
        buf.drain(..head_end + len);
        for w in writes.iter() {
            if s.write_all(w).await.is_err() {
                return;
            }
        }
    }
}

async fn read_more(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> usize {
    let old = buf.len();
    buf.resize(old + (256 << 10), 0);
    let n = s.read(&mut buf[old..]).await.unwrap_or(0);
    buf.truncate(old + n);
    n
}

/// A content event whose text is `size` bytes.
fn event(size: usize) -> Vec<u8> {
    let mut e = b"data: {\"choices\":[{\"index\":0,\"text\":\"".to_vec();
    e.resize(e.len() + size, b'x');
    e.extend_from_slice(b"\",\"finish_reason\":null}]}\n\n");
    e
}

/// A streamed response of `events` content events of `size` bytes, `per_write` events in each
/// chunk of the chunked body (and each write).
fn response(events: usize, size: usize, per_write: usize) -> Vec<Vec<u8>> {
    let mut writes = vec![
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec(),
    ];
    let one = event(size);
    let mut left = events;
    while left > 0 {
        let k = per_write.min(left);
        left -= k;
        let data = one.repeat(k);
        let mut w = format!("{:x}\r\n", data.len()).into_bytes();
        w.extend_from_slice(&data);
        w.extend_from_slice(b"\r\n");
        writes.push(w);
    }
    let end = format!(
        "data: {{\"choices\":[{{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}}],\"usage\":{{\"prompt_tokens\":8,\"completion_tokens\":{events}}}}}\n\ndata: [DONE]\n\n"
    );
    writes.push(format!("{:x}\r\n{end}\r\n0\r\n\r\n", end.len()).into_bytes());
    writes
}

struct Case {
    name: String,
    requests: usize,
    concurrency: usize,
    prompt_bytes: usize,
    writes: Vec<Vec<u8>>,
}

fn run_case(c: Case) {
    let received: usize = c.writes.iter().map(Vec::len).sum::<usize>() * c.requests;
    let server = Canned::start(c.writes);
    let base = rss();
    let peak = RssPeak::start();
    let prompt = "x".repeat(c.prompt_bytes);
    let r = super::run_client_with(
        &server.base_url,
        c.requests,
        c.concurrency,
        prompt,
        Duration::from_secs(300),
    );
    let peak = peak.peak();
    let server_cpu = server.stop();
    let events = super::chunks(&r.out);
    let mb = |b: usize| b as f64 / (1 << 20) as f64;
    let sent = c.prompt_bytes * c.requests;
    println!(
        "| {} | {}×{} | {:.1} | {:.1} | {events} | {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.1} | {:.0} |",
        c.name,
        c.requests,
        c.concurrency,
        mb(sent),
        mb(received),
        super::failed(&r.out),
        r.wall_s,
        r.cpu_s,
        mb(sent + received) / r.cpu_s,
        events as f64 / r.cpu_s,
        mb(peak.saturating_sub(base) as usize),
        100.0 * server_cpu / r.wall_s,
    );
}

pub fn big_bodies(quick: bool) {
    println!("\n## 4. Big bodies (a canned server on CPU 1, the client on CPU 0)");
    println!(
        "| case | requests×concurrency | MB sent | MB received | content chunks | failed | wall s | client CPU s | MB per client CPU-s | chunks per client CPU-s | client RSS growth MB | server CPU % |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let scale = if quick { 1 } else { 4 };
    let small = || response(4, 4, 1);
    // ~4 bytes a token: 1 MiB is a 256k-token prompt
    run_case(Case {
        name: "1 MiB request bodies".into(),
        requests: 16 * scale,
        concurrency: 8,
        prompt_bytes: 1 << 20,
        writes: small(),
    });
    for size in [
        1 << 10,
        16 << 10,
        (64 << 10) - 1,
        (64 << 10) + 1,
        256 << 10,
        1 << 20,
    ] {
        let events = (8 << 20) / size;
        run_case(Case {
            name: format!("content chunks of {} B", size),
            requests: 2 * scale,
            concurrency: 2,
            prompt_bytes: 16,
            writes: response(events, size, 1),
        });
    }
    for per_write in [1, 100, 5000] {
        run_case(Case {
            name: format!("{per_write} SSE events per write"),
            requests: 4 * scale,
            concurrency: 4,
            prompt_bytes: 16,
            writes: response(25_000, 4, per_write),
        });
    }
    run_case(Case {
        name: "one 100k-token output".into(),
        requests: 1,
        concurrency: 1,
        prompt_bytes: 16,
        writes: response(100_000, 4, 100),
    });
}
