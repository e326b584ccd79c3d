//! The [`Scraper`]: one owner task per test holds the [`ScrapeLog`]; every `interval` it starts
//! a scrape of each replica's endpoint (not while that replica's previous periodic scrape is
//! still running), and on demand ([`Scraper::sample_now`]) one of every endpoint at once. Each
//! scrape is its own task, bounded by the timeout, so a hung server never holds up another
//! replica, the ticks or the run. Samples are stamped with [`loadgen::clock::mono_ns`] when the
//! body has been read.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::log::{Failure, FailureKind, ScrapeLog, Scraped};
use super::parse::parse;
use super::vocabulary::ServerKind;

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// A body past this is not a metrics page.
const MAX_BODY: usize = 32 << 20;

/// The per-request timeout for an interval: the interval, at least 2 s and at most 5 s.
pub fn default_timeout(interval: Duration) -> Duration {
    interval.clamp(Duration::from_secs(2), Duration::from_secs(5))
}

enum Command {
    /// Scrape every endpoint now; reply with how many answered.
    Now(oneshot::Sender<usize>),
    Finish(oneshot::Sender<ScrapeLog>),
}

/// Scrapes a test's endpoints (one per replica) until [`Scraper::finish`]. Needs a Tokio runtime.
#[derive(Clone)]
pub struct Scraper {
    tx: mpsc::Sender<Command>,
    endpoints: Vec<String>,
    interval: Duration,
}

impl Scraper {
    /// Starts scraping `endpoints` every `interval`, with [`default_timeout`].
    pub fn start(endpoints: Vec<String>, interval: Duration) -> Scraper {
        Scraper::start_with_timeout(endpoints, interval, default_timeout(interval))
    }

    pub fn start_with_timeout(
        endpoints: Vec<String>,
        interval: Duration,
        timeout: Duration,
    ) -> Scraper {
        let client = http_client();
        let urls: Arc<[String]> = endpoints.clone().into();
        Scraper::spawn(endpoints, interval, timeout, move |replica| {
            let client = client.clone();
            let urls = urls.clone();
            async move { fetch(&client, &urls[replica]).await }
        })
    }

    /// The scraper over any fetch (the HTTP one in production; the unit tests script one).
    fn spawn<F, Fut>(
        endpoints: Vec<String>,
        interval: Duration,
        timeout: Duration,
        fetch: F,
    ) -> Scraper
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, Failure>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(8);
        let log = ScrapeLog::new(endpoints.clone(), interval);
        tokio::spawn(Owner::new(log, timeout, Arc::new(fetch)).run(rx));
        Scraper {
            tx,
            endpoints,
            interval,
        }
    }

    /// Scrapes every endpoint now and waits for all (at most the timeout): the samples just
    /// before and just after a test window. Returns how many endpoints answered.
    pub async fn sample_now(&self) -> usize {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Now(tx)).await.is_err() {
            return 0;
        }
        rx.await.unwrap_or(0)
    }

    /// Stops scraping (scrapes in flight are abandoned) and returns the log.
    pub async fn finish(self) -> ScrapeLog {
        let (tx, rx) = oneshot::channel();
        // the owner task is gone (a bug): an empty log, whose note names every endpoint
        let lost = || ScrapeLog::new(self.endpoints.clone(), self.interval);
        if self.tx.send(Command::Finish(tx)).await.is_err() {
            return lost();
        }
        rx.await.unwrap_or_else(|_| lost())
    }
}

type Fetch<Fut> = Arc<dyn Fn(usize) -> Fut + Send + Sync>;

/// The task that owns the log.
struct Owner<Fut> {
    log: ScrapeLog,
    timeout: Duration,
    fetch: Fetch<Fut>,
    tasks: JoinSet<Scraped>,
    round: u64,
    /// Per replica: a periodic scrape is in flight.
    busy: Vec<bool>,
    /// Per on-demand round: endpoints still to answer, endpoints that answered, the reply.
    waiting: HashMap<u64, (usize, usize, oneshot::Sender<usize>)>,
}

impl<Fut> Owner<Fut>
where
    Fut: Future<Output = Result<String, Failure>> + Send + 'static,
{
    fn new(log: ScrapeLog, timeout: Duration, fetch: Fetch<Fut>) -> Self {
        Owner {
            busy: vec![false; log.endpoints.len()],
            log,
            timeout,
            fetch,
            tasks: JoinSet::new(),
            round: 0,
            waiting: HashMap::new(),
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut tick = tokio::time::interval(self.log.interval.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => self.periodic(),
                command = rx.recv() => match command {
                    Some(Command::Now(reply)) => self.on_demand(reply),
                    Some(Command::Finish(reply)) => {
                        let _ = reply.send(self.log);
                        return;
                    }
                    None => return,
                },
                Some(done) = self.tasks.join_next() => match done {
                    Ok(scraped) => self.done(scraped),
                    // a scrape task cannot panic short of a bug in the parser: count it, go on
                    Err(e) => tracing::warn!("server metrics: a scrape task failed: {e}"),
                },
            }
        }
    }

    fn periodic(&mut self) {
        self.round += 1;
        for replica in 0..self.busy.len() {
            if !self.busy[replica] {
                self.busy[replica] = true;
                self.scrape(replica, false);
            }
        }
    }

    fn on_demand(&mut self, reply: oneshot::Sender<usize>) {
        self.round += 1;
        let n = self.busy.len();
        if n == 0 {
            let _ = reply.send(0);
            return;
        }
        self.waiting.insert(self.round, (n, 0, reply));
        for replica in 0..n {
            self.scrape(replica, true);
        }
    }

    fn scrape(&mut self, replica: usize, on_demand: bool) {
        let fetch = (self.fetch)(replica);
        let (round, timeout) = (self.round, self.timeout);
        self.tasks.spawn(async move {
            let outcome = match tokio::time::timeout(timeout, fetch).await {
                Ok(Ok(body)) => {
                    let t_ns = loadgen::clock::mono_ns();
                    parse(&body).map(|s| (t_ns, s)).map_err(|e| Failure {
                        kind: FailureKind::Unparsable,
                        message: e,
                    })
                }
                Ok(Err(failure)) => Err(failure),
                Err(_) => Err(Failure {
                    kind: FailureKind::Timeout,
                    message: format!("no answer within {timeout:?}"),
                }),
            };
            Scraped {
                replica,
                round,
                on_demand,
                outcome,
            }
        });
    }

    fn done(&mut self, scraped: Scraped) {
        if scraped.on_demand {
            if let Some((left, answered, _)) = self.waiting.get_mut(&scraped.round) {
                *left -= 1;
                *answered += usize::from(scraped.outcome.is_ok());
                if *left == 0
                    && let Some((_, answered, reply)) = self.waiting.remove(&scraped.round)
                {
                    let _ = reply.send(answered);
                }
            }
        } else if let Some(b) = self.busy.get_mut(scraped.replica) {
            *b = false;
        }
        self.log.record(scraped);
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a reqwest client without proxy or TLS settings builds")
}

/// One GET of a metrics page, its body read up to [`MAX_BODY`]. No timeout here: the caller's.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, Failure> {
    let failure = |kind, message: String| Failure { kind, message };
    let mut response = client
        .get(url)
        .header(
            reqwest::header::ACCEPT,
            "text/plain;version=0.0.4;q=1,*/*;q=0.1",
        )
        .send()
        .await
        .map_err(|e| failure(FailureKind::Unreachable, chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(failure(FailureKind::HttpStatus, format!("HTTP {status}")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| failure(FailureKind::Unreachable, chain(&e)))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY {
            let message = format!("a body over {} MiB", MAX_BODY >> 20);
            return Err(failure(FailureKind::Unparsable, message));
        }
    }
    String::from_utf8(body).map_err(|e| failure(FailureKind::Unparsable, format!("not UTF-8: {e}")))
}

/// An error and its causes, `a: b: c` (reqwest's own message names only the URL).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    s
}

/// One GET of `endpoint` (for `--server-metrics auto`): the server's kind, or why not.
pub async fn probe(endpoint: &str) -> Result<ServerKind, String> {
    probe_within(endpoint, default_timeout(DEFAULT_INTERVAL)).await
}

pub async fn probe_within(endpoint: &str, timeout: Duration) -> Result<ServerKind, String> {
    let body = match tokio::time::timeout(timeout, fetch(&http_client(), endpoint)).await {
        Ok(Ok(body)) => body,
        Ok(Err(f)) => return Err(format!("{endpoint}: {}", f.message)),
        Err(_) => return Err(format!("{endpoint}: no answer within {timeout:?}")),
    };
    let series = parse(&body).map_err(|e| format!("{endpoint}: {e}"))?;
    Ok(ServerKind::detect(series.iter().map(|s| s.name.as_str())))
}

#[cfg(test)]
mod tests;
