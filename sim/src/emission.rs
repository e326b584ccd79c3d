//! The emission log: one JSONL line per SSE event handed to hyper, stamped
//! with CLOCK_MONOTONIC so that a client on the same host can compare its own
//! receive times with the server's send times.
//!
//! Line format:
//! `{"request_id":"…","seq":N,"kind":"content","tokens":T,"t_mono_ns":NS}`
//! where `kind` is `role` (chat's role-only chunk), `content`, `malformed`
//! (the malformed fault's broken event), `usage` or `done`; `seq` is the
//! 0-based index of the content chunk (for the other kinds: the number of
//! content chunks before them); `request_id` is the request's `X-Request-Id`
//! header or else the generated response id.
//!
//! Recording never blocks the stream: events go over a large bounded channel
//! to one writer thread (drops are counted and reported at shutdown).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// Events held before the writer must run: 4M, about 80 s at 50k chunks/s.
const CAPACITY: usize = 1 << 22;

/// The clock the client stamps with too, so the two logs compare directly.
pub(crate) use loadgen::clock::mono_ns;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Role,
    Content,
    Malformed,
    Usage,
    Done,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Role => "role",
            Kind::Content => "content",
            Kind::Malformed => "malformed",
            Kind::Usage => "usage",
            Kind::Done => "done",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Event {
    pub request_id: Arc<str>,
    pub seq: u32,
    pub kind: Kind,
    pub tokens: u32,
    pub t_mono_ns: u64,
}

/// The recording side, cloned into every response body.
#[derive(Clone, Debug)]
pub(crate) struct EmissionLog {
    tx: mpsc::Sender<Event>,
    drops: Arc<AtomicU64>,
}

impl EmissionLog {
    pub(crate) fn record(&self, ev: Event) {
        if self.tx.try_send(ev).is_err() {
            self.drops.fetch_add(1, Relaxed);
        }
    }
}

/// The owner of the writer thread.
#[derive(Debug)]
pub(crate) struct EmissionWriter {
    stop: Arc<AtomicBool>,
    drops: Arc<AtomicU64>,
    done: oneshot::Receiver<std::io::Result<u64>>,
}

/// Creates the file and starts the writer thread. The thread polls the
/// channel's length instead of parking on it, so that a send never has to wake
/// a thread (no syscall on the streaming path), and writes only when the
/// channel is half full or at shutdown.
pub(crate) fn open(path: &Path) -> anyhow::Result<(EmissionLog, EmissionWriter)> {
    let file = File::create(path)
        .map_err(|e| anyhow::anyhow!("creating emission log {}: {e}", path.display()))?;
    let (tx, mut rx) = mpsc::channel::<Event>(CAPACITY);
    let stop = Arc::new(AtomicBool::new(false));
    let drops = Arc::new(AtomicU64::new(0));
    let (done_tx, done) = oneshot::channel();
    let stop2 = stop.clone();
    std::thread::Builder::new()
        .name("benchctl-sim-emission-log".into())
        .spawn(move || {
            // Lowest priority: on a core shared with the simulator, writing the log must not
            // preempt the streams it measures (a chunk stamped but not yet written would show up
            // as client error). Linux applies a tid's nice value to that thread alone.
            let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
            let mut w = BufWriter::with_capacity(1 << 16, file);
            let mut lines = 0u64;
            let res = (|| -> std::io::Result<u64> {
                loop {
                    let stopping = stop2.load(Relaxed);
                    // Write only when half the channel is used, or at shutdown: formatting runs
                    // for milliseconds, and the scheduler may let it finish its slice before the
                    // simulator's thread gets the core back (a delay between stamp and send).
                    if !stopping && rx.len() < CAPACITY / 2 {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    let mut wrote = false;
                    loop {
                        match rx.try_recv() {
                            Ok(ev) => {
                                write_line(&mut w, &ev)?;
                                lines += 1;
                                wrote = true;
                            }
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => {
                                w.flush()?;
                                return Ok(lines);
                            }
                        }
                    }
                    if stopping {
                        w.flush()?;
                        return Ok(lines);
                    }
                    if wrote {
                        w.flush()?;
                    }
                }
            })();
            let _ = done_tx.send(res);
        })?;
    Ok((
        EmissionLog {
            tx,
            drops: drops.clone(),
        },
        EmissionWriter { stop, drops, done },
    ))
}

impl EmissionWriter {
    /// Writes out everything recorded so far, flushes and stops the thread.
    pub(crate) async fn finish(self) {
        self.stop.store(true, Relaxed);
        match self.done.await {
            Ok(Ok(lines)) => tracing::info!("benchctl sim: emission log: {lines} lines written"),
            Ok(Err(e)) => tracing::error!("benchctl sim: emission log write failed: {e}"),
            Err(_) => tracing::error!("benchctl sim: emission log writer thread died"),
        }
        let drops = self.drops.load(Relaxed);
        if drops > 0 {
            tracing::warn!("benchctl sim: emission log dropped {drops} events (channel full)");
        }
    }
}

fn write_line(w: &mut impl Write, ev: &Event) -> std::io::Result<()> {
    let id = if ev
        .request_id
        .bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        std::borrow::Cow::Borrowed(&*ev.request_id)
    } else {
        std::borrow::Cow::Owned(super::json::json_escape(&ev.request_id))
    };
    writeln!(
        w,
        "{{\"request_id\":\"{id}\",\"seq\":{},\"kind\":\"{}\",\"tokens\":{},\"t_mono_ns\":{}}}",
        ev.seq,
        ev.kind.as_str(),
        ev.tokens,
        ev.t_mono_ns
    )
}
