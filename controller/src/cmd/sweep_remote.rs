//! The client side of controller-run sweeps: `benchctl sweep --controller/--etcd` (submit and
//! follow), `benchctl sweep attach|cancel ID`, `benchctl sweeps`.
//!
//! Following survives a failover: when the stream from the controller breaks, the client finds
//! the leader again (through etcd, or the same `--controller` URL) and reattaches; the new
//! leader replays the sweep's recent lines and progress.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tonic::transport::Channel;

use super::sweep_args::{AttachArgs, FetchArgs, RemoteArgs, SweepArgs, SweepsArgs};
use crate::sweep::remote::Spec;
use crate::sweep::status::Status;

/// A connection to the controller, found again after a failover.
struct Conn {
    remote: RemoteArgs,
    leader: Option<tokio::sync::watch::Receiver<Option<String>>>,
    _follow: Option<tokio_util::sync::DropGuard>,
}

impl Conn {
    fn new(remote: &RemoteArgs) -> anyhow::Result<Conn> {
        if !remote.enabled() {
            anyhow::bail!("give --controller URL or --etcd URLS (where the controller is)");
        }
        let (leader, guard) = if remote.controller.is_none() {
            let cancel = tokio_util::sync::CancellationToken::new();
            let rx = cluster::follow_leader(remote.etcd.clone(), cancel.clone());
            (Some(rx), Some(cancel.drop_guard()))
        } else {
            (None, None)
        };
        Ok(Conn {
            remote: remote.clone(),
            leader,
            _follow: guard,
        })
    }

    /// The controller's URL now (waiting, bounded, for an election).
    async fn url(&mut self) -> anyhow::Result<String> {
        if let Some(u) = &self.remote.controller {
            return Ok(u.clone());
        }
        let rx = self.leader.as_mut().expect("etcd mode");
        let wait = tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|v| v.is_some()))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "--etcd {}: no controller has been elected within 60 s (is `benchctl controller --etcd …` running?)",
                    self.remote.etcd.endpoints.join(",")
                )
            })?;
        Ok(wait?.clone().expect("waited for some"))
    }

    async fn client(
        &mut self,
    ) -> anyhow::Result<(proto::sweeps_client::SweepsClient<Channel>, String)> {
        let url = self.url().await?;
        let endpoint = cluster::controller_endpoint(&url, self.remote.tls.client()?.as_ref())?;
        let from = if self.remote.controller.is_some() {
            "--controller"
        } else {
            "the leader elected in etcd"
        };
        let channel = endpoint
            .connect()
            .await
            .with_context(|| format!("controller {url} ({from}): cannot connect"))?;
        Ok((proto::sweeps_client::SweepsClient::new(channel), url))
    }

    /// Calls the controller, asking again (up to 10 times, a second apart) while it answers
    /// UNAVAILABLE: a controller that is stopping, a leader handing over. `refused` says what
    /// failed in the error. Returns the answer and the URL that gave it.
    async fn call<T, Fut>(
        &mut self,
        refused: &str,
        mut call: impl FnMut(proto::sweeps_client::SweepsClient<Channel>) -> Fut,
    ) -> anyhow::Result<(T, String)>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut tries = 0;
        loop {
            let (client, url) = self.client().await?;
            match call(client).await {
                Ok(r) => return Ok((r.into_inner(), url)),
                Err(s) if s.code() == tonic::Code::Unavailable && tries < 10 => {
                    tries += 1;
                    eprintln!("controller {url}: {}; asking again", s.message());
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(s) => anyhow::bail!("controller {url} {refused}: {}", s.message()),
            }
        }
    }
}

/// Whether `name` can be a sweep id (not a path): the check before asking a controller for it.
pub fn is_sweep_id(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && name != "." && name != ".."
}

/// `benchctl sweep --controller/--etcd …`: submits the sweep, then follows it (unless
/// `--detach`).
pub async fn submit(args: SweepArgs) -> anyhow::Result<ExitCode> {
    if args.common.sim {
        anyhow::bail!(
            "--sim with --controller/--etcd: start `benchctl sim` where the workers reach it and give --base-url"
        );
    }
    if args.resume.is_some() {
        anyhow::bail!(
            "--resume with --controller/--etcd: a controller resumes its sweeps itself; follow one with `benchctl sweep attach ID`"
        );
    }
    let plan = super::sweep_config::resolve(&args)?;
    gate_needs_threshold(&args, &plan)?;
    if args.common.api_key.is_some() {
        eprintln!(
            "note: the API key is not sent: the controllers use their own OPENAI_API_KEY (so it never lands in etcd)"
        );
    }
    let spec = Spec {
        plan,
        target: sweep_target(&args.common),
    };
    let mut conn = Conn::new(&args.remote)?;
    let spec_json = serde_json::to_string(&spec)?;
    let (r, url) = conn
        .call("refused the sweep", |mut client| {
            let req = proto::SubmitSweepRequest {
                spec_json: spec_json.clone(),
            };
            async move { client.submit_sweep(req).await }
        })
        .await?;
    eprintln!(
        "submitted sweep {} to {url}\nresults on the controller in {}",
        r.id, r.result_dir
    );
    if args.detach {
        eprintln!(
            "detached: follow it with `benchctl sweep attach {}`, stop it with `benchctl sweep cancel {}`",
            r.id, r.id
        );
        println!("{}", r.id);
        return Ok(ExitCode::SUCCESS);
    }
    follow(conn, &r.id, args.common.quiet, args.require_max_passing).await
}

/// `--require-max-passing` judges the search's boundary: without a threshold there is none.
pub(super) fn gate_needs_threshold(
    args: &SweepArgs,
    plan: &crate::sweep::plan::Plan,
) -> anyhow::Result<()> {
    if let Some(n) = args.require_max_passing
        && plan.threshold.is_none()
    {
        anyhow::bail!(
            "--require-max-passing {n} needs --threshold (or `threshold` in --config): without one no concurrency passes or fails"
        );
    }
    if let Some(n) = args.require_max_passing
        && plan.axis == crate::sweep::axis::Axis::Rate
    {
        anyhow::bail!(
            "--require-max-passing {n} gates a concurrency sweep; this one searches --search-axis rate"
        );
    }
    Ok(())
}

/// `benchctl sweep attach ID`.
pub async fn attach(a: AttachArgs) -> anyhow::Result<ExitCode> {
    let conn = Conn::new(&a.remote)?;
    follow(conn, &a.id, a.quiet, None).await
}

/// `benchctl sweep cancel ID`.
pub async fn cancel(a: AttachArgs) -> anyhow::Result<ExitCode> {
    let mut conn = Conn::new(&a.remote)?;
    let (mut client, url) = conn.client().await?;
    client
        .cancel_sweep(proto::CancelSweepRequest { id: a.id.clone() })
        .await
        .map_err(|s| anyhow::anyhow!("controller {url}: {}", s.message()))?;
    eprintln!(
        "sweep {}: cancel sent (the test in flight is discarded, finished tests are kept)",
        a.id
    );
    Ok(ExitCode::SUCCESS)
}

/// Fetches sweep `id`'s result directory from the controller into `dest` (replaced if it
/// exists), asking again while a controller hands over.
pub async fn fetch_to(
    remote: &RemoteArgs,
    id: &str,
    dest: &std::path::Path,
) -> anyhow::Result<crate::sweep::remote::fetch::Fetched> {
    let mut conn = Conn::new(remote)?;
    let (stream, url) = conn
        .call("cannot send the sweep", |mut client| {
            let req = proto::FetchSweepRequest { id: id.to_string() };
            async move { client.fetch_sweep(req).await }
        })
        .await?;
    crate::sweep::remote::fetch::receive(stream, dest)
        .await
        .with_context(|| format!("fetching sweep {id} from {url}"))
}

/// `benchctl sweep fetch ID`: the sweep's result directory, copied here.
pub async fn fetch(a: FetchArgs) -> anyhow::Result<ExitCode> {
    if !is_sweep_id(&a.id) {
        anyhow::bail!(
            "sweep fetch {:?}: not a sweep id (`benchctl sweeps` lists them)",
            a.id
        );
    }
    let dest = a.out.join(&a.id);
    let f = fetch_to(&a.remote, &a.id, &dest).await?;
    eprintln!(
        "sweep {} ({}): {} files, {} bytes in {}",
        a.id,
        f.status,
        f.files,
        f.bytes,
        f.dir.display()
    );
    println!("{}", f.dir.display());
    Ok(ExitCode::SUCCESS)
}

/// `benchctl sweeps`.
pub async fn list(a: SweepsArgs) -> anyhow::Result<ExitCode> {
    let mut conn = Conn::new(&a.remote)?;
    let (mut client, url) = conn.client().await?;
    let sweeps = client
        .list_sweeps(proto::ListSweepsRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("controller {url}: {}", s.message()))?
        .into_inner()
        .sweeps;
    if a.json {
        let v: Vec<serde_json::Value> = sweeps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.id, "status": s.status, "result_dir": s.result_dir,
                    "tests_done": s.tests_done, "submitted_at_unix_s": s.submitted_at_unix_s,
                    "detail": s.detail, "failovers": s.failovers,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if sweeps.is_empty() {
        println!("no sweep on {url}");
    } else {
        println!(
            "{:<48} {:<11} {:>5} {:>9}  detail",
            "id", "status", "tests", "failovers"
        );
        for s in &sweeps {
            println!(
                "{:<48} {:<11} {:>5} {:>9}  {}",
                s.id, s.status, s.tests_done, s.failovers, s.detail
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows a sweep to its end, reattaching after a failover. Ctrl-C detaches (the sweep goes on).
async fn follow(
    mut conn: Conn,
    id: &str,
    quiet: bool,
    require_max_passing: Option<u32>,
) -> anyhow::Result<ExitCode> {
    let bar = crate::progress::bar(0, quiet);
    // lines already printed, to skip them when a reattach replays the backlog
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut failures = 0u32;
    let give_up = Duration::from_secs(600);
    let mut lost_since: Option<tokio::time::Instant> = None;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let mut attached = false;
        let r = tokio::select! {
            r = watch(&mut conn, id, &bar, &mut seen, &mut attached) => r,
            _ = &mut ctrl_c => {
                bar.finish_and_clear();
                eprintln!(
                    "detached from sweep {id}: it goes on on the controller. `benchctl sweep attach {id}` follows it again, `benchctl sweep cancel {id}` stops it"
                );
                return Ok(ExitCode::from(130));
            }
        };
        // attached again once the controller sent something (a controller that accepts the
        // watch and ends it at once does not reset the backoff)
        if attached {
            lost_since = None;
            failures = 0;
        }
        match r {
            Ok(Some(f)) => {
                bar.finish_and_clear();
                return finished(id, f, require_max_passing);
            }
            Ok(None) | Err(_) if lost_since.is_some_and(|t| t.elapsed() > give_up) => {
                anyhow::bail!(
                    "lost the controller for {} s: sweep {id} may still run; `benchctl sweep attach {id}` follows it again",
                    give_up.as_secs()
                );
            }
            Err(e) if e.downcast_ref::<NotFound>().is_some() && failures >= 5 => {
                return Err(e);
            }
            r => {
                let why = match r {
                    Err(e) => format!("{e:#}"),
                    _ => "the stream ended".into(),
                };
                failures += 1;
                if lost_since.is_none() {
                    lost_since = Some(tokio::time::Instant::now());
                    say(&bar, &format!("lost the controller ({why}); reattaching…"));
                }
                tokio::time::sleep(Duration::from_millis(500 * u64::from(failures.min(6)))).await;
            }
        }
    }
}

/// Prints a line above the progress bar (or alone when it is hidden).
fn say(bar: &indicatif::ProgressBar, s: &str) {
    if bar.is_hidden() {
        eprintln!("{s}");
    } else {
        bar.println(s);
    }
}

/// Watches a sweep on the controller now, showing its lines and progress, until its end
/// (`Some`) or the stream's (`None`). `attached`: the controller sent something.
async fn watch(
    conn: &mut Conn,
    id: &str,
    bar: &indicatif::ProgressBar,
    seen: &mut std::collections::HashSet<String>,
    attached: &mut bool,
) -> anyhow::Result<Option<proto::SweepFinished>> {
    let (mut client, url) = conn.client().await?;
    let mut stream = client
        .watch_sweep(proto::WatchSweepRequest { id: id.to_string() })
        .await
        .map_err(|s| {
            if s.code() == tonic::Code::NotFound {
                anyhow::Error::new(NotFound(s.message().to_string()))
            } else {
                anyhow::anyhow!("controller {url}: {}", s.message())
            }
        })?
        .into_inner();
    while let Some(e) = stream.message().await? {
        *attached = true;
        match e.event {
            Some(proto::sweep_event::Event::Line(l)) if seen.insert(l.clone()) => {
                say(bar, &l);
            }
            Some(proto::sweep_event::Event::Progress(p)) => {
                bar.set_length(p.total.max(p.done));
                bar.set_position(p.done);
                bar.set_message(p.message);
            }
            Some(proto::sweep_event::Event::Finished(f)) => return Ok(Some(f)),
            Some(proto::sweep_event::Event::Line(_)) | None => {}
        }
    }
    Ok(None)
}

/// The end of a sweep followed: its closing table, where its results are, the exit status (a
/// sweep done fails `--require-max-passing N` when a combination falls short).
fn finished(
    id: &str,
    f: proto::SweepFinished,
    require_max_passing: Option<u32>,
) -> anyhow::Result<ExitCode> {
    if !f.summary_text.is_empty() {
        eprint!("{}", f.summary_text);
    }
    eprintln!("results on the controller in {}", f.result_dir);
    match Status::parse(&f.status) {
        Some(Status::Done) => {
            if let Some(n) = require_max_passing {
                crate::sweep::verdict::require_max_passing(n, &f.combinations)
                    .map_err(|e| anyhow::anyhow!("sweep {id} is done, but {e}"))?;
                eprintln!(
                    "--require-max-passing {n}: every IO combination passed at concurrency {n} or more"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(Status::Interrupted) => {
            anyhow::bail!("sweep {id} was cancelled; its finished tests are kept")
        }
        _ => anyhow::bail!("sweep {id} {}: {}", f.status, f.error),
    }
}

#[derive(Debug)]
struct NotFound(String);

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFound {}

/// What a submitted sweep carries beside its plan (never the API key).
pub fn sweep_target(common: &super::common::CommonArgs) -> crate::sweep::plan::SweepTarget {
    let mut target = common.target();
    target.api_key = None;
    crate::sweep::plan::SweepTarget {
        target,
        workers: common.workers,
        gpu_num: common.gpu_num,
        no_preflight: common.no_preflight,
    }
}
