//! A job split over its target URLs: one [`RunConfig`] per target, with that target's share of
//! the prompts, concurrency, rate and warm-up.

use anyhow::{Context, anyhow, bail};

use super::WorkerConfig;
use crate::client::HttpClient;
use crate::conversation::Session;
use crate::dataset::Prompt;
use crate::runner::RunConfig;
use crate::schedule::Arrivals;

/// Share `k` of `n` when `total` is split as evenly as possible, the remainder going to the
/// first shares (`split_even(10, k, 4)` is 3, 3, 2, 2).
pub fn split_even(total: usize, k: usize, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    total / n + usize::from(k < total % n)
}

/// One run per target URL: prompts round-robin over the targets by index.
pub(super) struct SubRun {
    pub(super) client: HttpClient,
    pub(super) cfg: RunConfig,
    /// A conversation job's sessions, shared like the prompts (their first turns); empty
    /// otherwise.
    pub(super) sessions: Vec<Session>,
}

/// Splits the assignment over its targets (prompt `i` goes to target `i mod m`, with that
/// target's share of the concurrency, rate and warm-up).
pub(super) fn plan(job: &proto::JobAssignment, cfg: &WorkerConfig) -> anyhow::Result<Vec<SubRun>> {
    let spec = job
        .spec
        .as_ref()
        .ok_or_else(|| anyhow!("JobAssignment.spec is missing"))?;
    if job.target_urls.is_empty() {
        bail!("JobAssignment.target_urls is empty");
    }
    let prompts: Vec<Prompt> = job.prompts.iter().cloned().map(Prompt::from).collect();
    let warmup: Vec<Prompt> = job
        .warmup_prompts
        .iter()
        .cloned()
        .map(Prompt::from)
        .collect();
    let sessions: Vec<Session> = job.sessions.iter().cloned().map(Session::from).collect();
    if !sessions.is_empty() && sessions.len() != prompts.len() {
        bail!(
            "JobAssignment: {} sessions but {} prompts (one first turn per session)",
            sessions.len(),
            prompts.len()
        );
    }
    let max_concurrency = (job.max_concurrency > 0).then_some(job.max_concurrency as usize);
    // 0 means "not set" on the wire; anything else must be valid
    let rate = if job.request_rate == 0.0 {
        f64::INFINITY
    } else {
        job.request_rate
    };
    let burstiness = if job.burstiness == 0.0 {
        1.0
    } else {
        job.burstiness
    };
    Arrivals {
        rate,
        burstiness,
        seed: job.seed,
    }
    .validate()?;
    // No target gets an empty share of prompts or a concurrency of 0 (which would mean no limit).
    let m = job
        .target_urls
        .len()
        .min(prompts.len().max(1))
        .min(max_concurrency.unwrap_or(usize::MAX));
    let mut runs = Vec::with_capacity(m);
    for (j, url) in job.target_urls.iter().take(m).enumerate() {
        let target = crate::wire::target(url, spec)?;
        let share: Vec<Prompt> = prompts.iter().skip(j).step_by(m).cloned().collect();
        let concurrency = max_concurrency.map(|c| split_even(c, j, m));
        let conns = concurrency
            .unwrap_or(share.len())
            .min(cfg.max_streams.max(1) as usize)
            .max(1);
        let client =
            HttpClient::new(target, conns).with_context(|| format!("an HTTP client for {url}"))?;
        let prefix = if m == 1 {
            format!("{}-{}-", cfg.name, job.job_id)
        } else {
            format!("{}-{}-t{j}-", cfg.name, job.job_id)
        };
        runs.push(SubRun {
            client,
            cfg: RunConfig {
                prompts: share,
                arrivals: Arrivals {
                    rate: rate / m as f64,
                    burstiness,
                    seed: job.seed.wrapping_add(j as u64),
                },
                max_concurrency: concurrency,
                warmup_requests: split_even(job.warmup_requests as usize, j, m),
                warmup_prompts: warmup.iter().skip(j).step_by(m).cloned().collect(),
                request_id_prefix: prefix,
            },
            sessions: sessions.iter().skip(j).step_by(m).cloned().collect(),
        });
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn even_splits_give_the_remainder_to_the_first() {
        let shares: Vec<usize> = (0..4).map(|k| split_even(10, k, 4)).collect();
        assert_eq!(shares, [3, 3, 2, 2]);
        assert_eq!((0..3).map(|k| split_even(2, k, 3)).sum::<usize>(), 2);
        assert_eq!(split_even(5, 0, 0), 0);
    }

    fn job(urls: &[&str], prompts: usize, concurrency: u32) -> proto::JobAssignment {
        let target = crate::Target {
            url: "http://h/v1/completions".parse().unwrap(),
            api_key: None,
            body: crate::BodySpec {
                kind: crate::EndpointKind::Completions,
                backend: crate::Backend::Vllm,
                model: "m".into(),
                ignore_eos: true,
                temperature: 0.0,
                extra_body: Default::default(),
            },
            timeout: Duration::from_secs(5),
            stall_timeout: None,
        };
        proto::JobAssignment {
            job_id: "j".into(),
            target_urls: urls.iter().map(|s| s.to_string()).collect(),
            spec: Some(crate::wire::request_spec("/v1/completions", &target)),
            prompts: (0..prompts)
                .map(|i| proto::Prompt {
                    text: format!("p{i}"),
                    prompt_tokens: 1,
                    output_len: 2,
                    offset_ns: None,
                })
                .collect(),
            max_concurrency: concurrency,
            request_rate: 10.0,
            burstiness: 0.0,
            seed: 3,
            warmup_requests: 3,
            warmup_prompts: vec![],
            start_on_signal: false,
            sessions: vec![],
        }
    }

    fn cfg() -> WorkerConfig {
        WorkerConfig {
            status: Default::default(),
            controller: "http://c".into(),
            name: "w".into(),
            max_streams: 100,
            etcd: None,
            tls: None,
        }
    }

    #[tokio::test]
    async fn prompts_go_round_robin_over_the_targets() {
        let runs = plan(&job(&["http://a:1", "http://b:2/"], 5, 3), &cfg()).unwrap();
        assert_eq!(runs.len(), 2);
        let texts = |r: &SubRun| {
            r.cfg
                .prompts
                .iter()
                .map(|p| p.text.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(&runs[0]), ["p0", "p2", "p4"]);
        assert_eq!(texts(&runs[1]), ["p1", "p3"]);
        assert_eq!(
            runs[1].client.target().url.as_str(),
            "http://b:2/v1/completions"
        );
        assert_eq!(
            (runs[0].cfg.max_concurrency, runs[1].cfg.max_concurrency),
            (Some(2), Some(1))
        );
        assert_eq!(runs[0].cfg.arrivals.rate, 5.0);
        assert_eq!(runs[1].cfg.arrivals.seed, 4);
        assert_eq!(runs[0].cfg.arrivals.burstiness, 1.0);
        assert_eq!(
            (runs[0].cfg.warmup_requests, runs[1].cfg.warmup_requests),
            (2, 1)
        );
        // a concurrency of 1 uses one target only: no share of 0 (= unlimited)
        let runs = plan(&job(&["http://a:1", "http://b:2"], 5, 1), &cfg()).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].cfg.prompts.len(), 5);
    }

    #[tokio::test]
    async fn jobs_that_cannot_run_are_refused() {
        assert!(plan(&job(&[], 5, 1), &cfg()).is_err());
        let Err(err) = plan(&job(&["nope"], 5, 1), &cfg()) else {
            panic!("a bad URL was accepted")
        };
        assert!(format!("{err:#}").contains("nope"), "{err:#}");
        let mut j = job(&["http://a:1"], 5, 1);
        j.spec = None;
        assert!(plan(&j, &cfg()).is_err());
        let mut j = job(&["http://a:1"], 5, 1);
        j.request_rate = f64::NAN;
        assert!(plan(&j, &cfg()).is_err());
    }
}
